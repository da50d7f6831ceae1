//! Randomised trees of nurseries, cancel scopes, deadlines, cancels, errors
//! and panics, run in virtual time, checking three invariants of structured
//! concurrency:
//!
//! (a) every nursery waits for all its children: each child logs when it
//!     ends, each nursery logs when its `open_nursery` future returned, and
//!     every child's end comes first;
//! (b) no error is lost: every `err-N` a node actually returned appears
//!     exactly once in the final `MultiError` tree (no nursery is ever
//!     dropped here), and no stray `Cancelled` escapes the top (every
//!     cancellation source in these trees is a scope that catches its own);
//!     an injected panic comes out of the run, with one of the injected
//!     messages;
//! (c) when the run returns, nothing is left: no task, timer or task
//!     allocation.
//!
//! Replay one seed with `RANDOM_TREES_SEED=<seed> cargo test --test
//! random_trees -- --nocapture` (prints the tree and the log); change the
//! number of seeds with `RANDOM_TREES_SEEDS=<n>`.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::task::{Context, Poll};
use std::time::Duration;

use trioxide::{
    fail_after, move_on_after, open_nursery, sleep, sleep_forever, BoxError, Builder, CancelScope, Cancelled,
    MockClock, MultiError, Nursery, RunReport, TooSlow,
};

// ---------------------------------------------------------------------------
// A small seeded generator (SplitMix64).

struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `num / den`.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// A virtual duration: often zero (to make ties), else 1..=60 ms.
    fn duration(&mut self) -> Duration {
        if self.chance(1, 6) {
            Duration::ZERO
        } else {
            Duration::from_millis(1 + self.below(60))
        }
    }
}

// ---------------------------------------------------------------------------
// The tree.

const MAX_DEPTH: usize = 3; // levels 0..=3: at most four levels of nodes
const MAX_NODES: usize = 40;
/// The whole tree runs inside `move_on_after(TOP_DEADLINE)`, so a
/// `sleep_forever` leaf always gets out.
const TOP_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Ok,
    /// Returns `Err("err-<id>")`.
    Err,
    /// Panics with `"injected panic-<id>"`.
    Panic,
}

#[derive(Debug)]
enum Wrap {
    /// The nursery as it is.
    Plain,
    /// Inside `move_on_after(d)`.
    MoveOnAfter(Duration),
    /// Inside `fail_after(d)` (which reports `TooSlow`).
    FailAfter(Duration),
    /// Inside a shielded scope, with or without a relative deadline.
    Shield(Option<Duration>),
    /// Inside a scope that a sibling task (`canceller`, spawned into the
    /// parent nursery) cancels after sleeping `after`.
    SiblingCancel { after: Duration, canceller: usize },
}

#[derive(Debug)]
enum Body {
    /// Spawns the children and returns `Ok` at once.
    Return,
    /// Spawns the children, sleeps, then ends as given.
    SleepThen { sleep: Duration, end: End, id: usize },
    /// Spawns the children, sleeps, then cancels its own nursery.
    CancelOwnNursery(Duration),
}

#[derive(Debug)]
enum Kind {
    /// Sleeps, then ends as given.
    Leaf {
        sleep: Duration,
        end: End,
    },
    /// Sleeps until cancelled.
    Forever,
    Nursery {
        wrap: Wrap,
        body: Body,
        children: Vec<Rc<Node>>,
    },
}

#[derive(Debug)]
struct Node {
    id: usize,
    kind: Kind,
}

struct Gen {
    rng: SplitMix64,
    next_id: usize,
    nodes: usize,
    allow_panics: bool,
}

impl Gen {
    fn id(&mut self) -> usize {
        self.next_id += 1;
        self.next_id
    }

    fn end(&mut self) -> End {
        match self.rng.below(12) {
            0..=5 => End::Ok,
            6..=10 => End::Err,
            _ if self.allow_panics => End::Panic,
            _ => End::Err,
        }
    }

    /// `guarded`: some scope between here and the nearest enclosing shield
    /// (or the top) is sure to be cancelled eventually, so a
    /// `sleep_forever` leaf is allowed (else the run would hang).
    fn node(&mut self, depth: usize, guarded: bool, root: bool) -> Node {
        self.nodes += 1;
        let id = self.id();
        let inner = root || (depth < MAX_DEPTH && self.nodes < MAX_NODES && self.rng.chance(3, 4 + depth as u64));
        if !inner {
            let kind = if guarded && self.rng.chance(1, 5) {
                Kind::Forever
            } else {
                Kind::Leaf { sleep: self.rng.duration(), end: self.end() }
            };
            return Node { id, kind };
        }
        let wrap = if root {
            Wrap::Plain
        } else {
            match self.rng.below(6) {
                0 | 1 => Wrap::Plain,
                2 => Wrap::MoveOnAfter(self.rng.duration()),
                3 => Wrap::FailAfter(self.rng.duration()),
                4 => Wrap::Shield(if self.rng.chance(1, 2) { Some(self.rng.duration()) } else { None }),
                _ => {
                    let after = self.rng.duration();
                    Wrap::SiblingCancel { after, canceller: self.id() }
                }
            }
        };
        let body = match self.rng.below(5) {
            0..=2 => Body::Return,
            3 => {
                let sleep = self.rng.duration();
                let end = self.end();
                Body::SleepThen { sleep, end, id: self.id() }
            }
            _ => Body::CancelOwnNursery(self.rng.duration()),
        };
        let mut guarded = match wrap {
            Wrap::Plain => guarded,
            Wrap::MoveOnAfter(_) | Wrap::FailAfter(_) | Wrap::SiblingCancel { .. } | Wrap::Shield(Some(_)) => true,
            Wrap::Shield(None) => false,
        };
        if let Body::CancelOwnNursery(_) = body {
            guarded = true;
        }
        let n_children = if root { 2 + self.rng.below(3) } else { 1 + self.rng.below(4) } as usize;
        let mut children = Vec::new();
        for _ in 0..n_children {
            if self.nodes >= MAX_NODES {
                break;
            }
            children.push(Rc::new(self.node(depth + 1, guarded, false)));
        }
        Node { id, kind: Kind::Nursery { wrap, body, children } }
    }
}

fn generate(seed: u64) -> Node {
    let mut rng = SplitMix64(seed ^ 0x0005_EED0_F7EE);
    let allow_panics = rng.chance(1, 2);
    let mut g = Gen { rng, next_id: 0, nodes: 0, allow_panics };
    g.node(0, true, true)
}

// ---------------------------------------------------------------------------
// Running a tree.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Event {
    /// The task of node (or canceller) `id` ended (returned or unwound).
    Ended(usize),
    /// The `open_nursery` future of nursery `id` returned (or unwound).
    Returned(usize),
}

#[derive(Default)]
struct Ctx {
    log: RefCell<Vec<Event>>,
    /// Errors the nodes actually returned (a node cancelled first does not).
    errors: RefCell<Vec<String>>,
    /// Panic messages of the panics that actually happened.
    panics: RefCell<Vec<String>>,
}

/// Logs its event when dropped: at the end of the block that holds it, or
/// while a panic unwinds through it.
struct LogOnDrop(Rc<Ctx>, Event);

impl Drop for LogOnDrop {
    fn drop(&mut self) {
        self.0.log.borrow_mut().push(self.1);
    }
}

type TaskFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>>>>;

fn boxed(e: MultiError) -> BoxError {
    Box::new(e)
}

fn finish(ctx: &Ctx, id: usize, end: End) -> Result<(), BoxError> {
    match end {
        End::Ok => Ok(()),
        End::Err => {
            let msg = format!("err-{id}");
            ctx.errors.borrow_mut().push(msg.clone());
            Err(msg.into())
        }
        End::Panic => {
            let msg = format!("injected panic-{id}");
            ctx.panics.borrow_mut().push(msg.clone());
            std::panic::panic_any(msg)
        }
    }
}

/// The task of a non-root node. `scope` is the scope of a `SiblingCancel`
/// wrap (its canceller holds a clone).
fn node_task(node: Rc<Node>, ctx: Rc<Ctx>, scope: Option<CancelScope>) -> TaskFuture {
    Box::pin(async move {
        let _ended = LogOnDrop(ctx.clone(), Event::Ended(node.id));
        match &node.kind {
            Kind::Leaf { sleep: d, end } => {
                sleep(*d).await?;
                finish(&ctx, node.id, *end)
            }
            Kind::Forever => match sleep_forever().await {
                Ok(never) => match never {},
                Err(c) => Err(c.into()),
            },
            Kind::Nursery { .. } => wrapped_nursery(node.clone(), ctx.clone(), scope).await,
        }
    })
}

/// Runs a nursery node's nursery inside its wrap, logging `Returned` as
/// soon as the nursery future has returned.
async fn wrapped_nursery(node: Rc<Node>, ctx: Rc<Ctx>, scope: Option<CancelScope>) -> Result<(), BoxError> {
    let Kind::Nursery { wrap, .. } = &node.kind else { unreachable!() };
    let nursery = {
        let (node, ctx) = (node.clone(), ctx.clone());
        open_nursery(move |n| nursery_body(n, node, ctx))
    };
    let returned = LogOnDrop(ctx.clone(), Event::Returned(node.id));
    let res = match wrap {
        Wrap::Plain => nursery.await.map(drop).map_err(boxed),
        Wrap::MoveOnAfter(d) => move_on_after(*d, nursery).await.map(drop).map_err(boxed),
        Wrap::FailAfter(d) => fail_after(*d, async { nursery.await.map_err(boxed) }).await.map(drop),
        Wrap::Shield(deadline) => {
            let s = CancelScope::shielded();
            if let Some(d) = deadline {
                s.set_relative_deadline(*d);
            }
            s.run(nursery).await.map(drop).map_err(boxed)
        }
        Wrap::SiblingCancel { .. } => {
            let s = scope.expect("a SiblingCancel node gets its scope from its parent");
            s.run(nursery).await.map(drop).map_err(boxed)
        }
    };
    drop(returned);
    res
}

async fn nursery_body(n: Nursery, node: Rc<Node>, ctx: Rc<Ctx>) -> Result<(), BoxError> {
    let Kind::Nursery { body, children, .. } = &node.kind else { unreachable!() };
    for child in children {
        let mut scope = None;
        if let Kind::Nursery { wrap: Wrap::SiblingCancel { after, canceller }, .. } = &child.kind {
            let s = CancelScope::new();
            let (after, canceller, s2, ctx2) = (*after, *canceller, s.clone(), ctx.clone());
            n.start_soon(async move {
                let _ended = LogOnDrop(ctx2, Event::Ended(canceller));
                sleep(after).await?;
                s2.cancel();
                Ok::<_, BoxError>(())
            })?;
            scope = Some(s);
        }
        n.start_soon(node_task(child.clone(), ctx.clone(), scope))?;
    }
    match body {
        Body::Return => Ok(()),
        Body::SleepThen { sleep: d, end, id } => {
            sleep(*d).await?;
            finish(&ctx, *id, *end)
        }
        Body::CancelOwnNursery(d) => {
            sleep(*d).await?;
            n.cancel_scope().cancel();
            Ok(())
        }
    }
}

/// Polls a future inside `catch_unwind`, so a panic out of the tree ends
/// `main` normally and the run's report can still be checked.
struct CatchPanic<F> {
    inner: Option<Pin<Box<F>>>,
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.inner.as_mut().expect("CatchPanic polled after completion");
        let res = catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx)));
        match res {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => {
                self.inner = None;
                Poll::Ready(Ok(v))
            }
            Err(p) => {
                self.inner = None;
                Poll::Ready(Err(p))
            }
        }
    }
}

type TopResult = Result<Option<()>, BoxError>;

fn top_future(root: Rc<Node>, ctx: Rc<Ctx>) -> impl Future<Output = TopResult> {
    move_on_after(TOP_DEADLINE, wrapped_nursery(root, ctx, None))
}

// ---------------------------------------------------------------------------
// Checking.

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

/// Every leaf error in an error tree, by its message; nested `MultiError`s
/// are walked. Cancellations and `TooSlow`s are counted apart.
#[derive(Default, Debug)]
struct Found {
    messages: Vec<String>,
    cancelled: usize,
    too_slow: usize,
}

fn walk(e: &(dyn StdError + 'static), found: &mut Found) {
    if let Some(m) = e.downcast_ref::<MultiError>() {
        for inner in m.errors() {
            walk(inner.as_ref(), found);
        }
    } else if e.is::<Cancelled>() {
        found.cancelled += 1;
    } else if e.is::<TooSlow>() {
        found.too_slow += 1;
    } else {
        found.messages.push(e.to_string());
    }
}

/// For each nursery id, the task ids of its children (cancellers included).
fn children_of(node: &Node, out: &mut HashMap<usize, Vec<usize>>, tasks: &mut Vec<usize>) {
    if let Kind::Nursery { children, .. } = &node.kind {
        let mut ids = Vec::new();
        for c in children {
            if let Kind::Nursery { wrap: Wrap::SiblingCancel { canceller, .. }, .. } = &c.kind {
                ids.push(*canceller);
                tasks.push(*canceller);
            }
            ids.push(c.id);
            tasks.push(c.id);
            children_of(c, out, tasks);
        }
        out.insert(node.id, ids);
    }
}

fn check_log(root: &Node, log: &[Event]) -> Result<(), String> {
    let mut nurseries = HashMap::new();
    let mut tasks = Vec::new();
    children_of(root, &mut nurseries, &mut tasks);
    let mut pos: HashMap<Event, usize> = HashMap::new();
    for (i, &ev) in log.iter().enumerate() {
        if pos.insert(ev, i).is_some() {
            return Err(format!("{ev:?} logged twice"));
        }
    }
    for &t in &tasks {
        if !pos.contains_key(&Event::Ended(t)) {
            return Err(format!("task {t} never ended"));
        }
    }
    for (&nursery, kids) in &nurseries {
        let Some(&ret) = pos.get(&Event::Returned(nursery)) else {
            return Err(format!("nursery {nursery} never returned"));
        };
        for &k in kids {
            let ended = pos[&Event::Ended(k)];
            if ended > ret {
                return Err(format!(
                    "(a) nursery {nursery} returned (log position {ret}) before its child {k} ended (position {ended})"
                ));
            }
        }
    }
    if log.len() != tasks.len() + nurseries.len() {
        return Err(format!("log has {} events, expected {}", log.len(), tasks.len() + nurseries.len()));
    }
    Ok(())
}

/// Returns how many `TooSlow`s were found.
fn check_errors(result: &TopResult, ctx: &Ctx) -> Result<usize, String> {
    let mut found = Found::default();
    if let Err(e) = result {
        walk(e.as_ref(), &mut found);
    }
    if found.cancelled > 0 {
        return Err(format!("a stray Cancelled reached the top ({} of them): {result:?}", found.cancelled));
    }
    let mut expected = ctx.errors.borrow().clone();
    let mut got = found.messages.clone();
    expected.sort();
    got.sort();
    if expected != got {
        return Err(format!(
            "(b) errors returned by the nodes {expected:?} but found {got:?} in the result (TooSlow: {})",
            found.too_slow
        ));
    }
    if result.is_err() && expected.is_empty() && found.too_slow == 0 {
        return Err(format!("an error result with nothing in it: {result:?}"));
    }
    Ok(found.too_slow)
}

fn check_report(report: &RunReport) -> Result<(), String> {
    if report.tasks_left != 0 || report.timers_left != 0 || report.task_allocations_left != 0 {
        return Err(format!("(c) the run left things behind: {report:?}"));
    }
    Ok(())
}

fn check_panic(panic: Option<&(dyn Any + Send)>, ctx: &Ctx) -> Result<(), String> {
    let injected = ctx.panics.borrow();
    match panic {
        None if injected.is_empty() => Ok(()),
        None => Err(format!("panics {injected:?} happened but the run did not panic")),
        Some(p) => {
            let msg = panic_message(p);
            if injected.contains(&msg) {
                Ok(())
            } else {
                Err(format!("the run panicked with {msg:?}, not one of the injected panics {injected:?}"))
            }
        }
    }
}

/// What a run did, for the summary.
#[derive(Default, Debug)]
pub(crate) struct Stats {
    runs: usize,
    nodes: usize,
    errors: usize,
    panicked_runs: usize,
    too_slow: usize,
}

thread_local! {
    /// The schedule `run_seed` runs under: Trio's batch pass here;
    /// tests/schedules.rs includes this file and sets the others.
    pub(crate) static SCHEDULE: std::cell::Cell<trioxide::Schedule> = const { std::cell::Cell::new(trioxide::Schedule::Batch) };
    /// Whether `run_seed` runs under `trioxide::sim` (tests/sim_self.rs)
    /// instead of an ordinary run with a mock clock.
    pub(crate) static IN_SIM: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs one tree's main: in simulation if `IN_SIM` is set, else on an
/// ordinary run with an autojumping mock clock; both with `seed` and
/// `SCHEDULE`.
fn run_main<F: Future>(seed: u64, main: F) -> (F::Output, RunReport) {
    if IN_SIM.get() {
        let (out, report, _) = trioxide::sim::Builder::new().seed(seed).schedule(SCHEDULE.get()).run_with_trace(main);
        return (out, report);
    }
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::ZERO));
    Builder::new().seed(seed).clock(clock).schedule(SCHEDULE.get()).run_with_report(main)
}

/// Runs the tree of `seed` and checks it; `Err` describes the failure.
pub(crate) fn run_seed(seed: u64, verbose: bool, stats: &mut Stats) -> Result<(), String> {
    let root = Rc::new(generate(seed));
    if verbose {
        eprintln!("seed {seed}: tree {root:#?}");
    }
    let ctx = Rc::new(Ctx::default());
    stats.runs += 1;
    stats.nodes += count_nodes(&root);
    // Odd seeds catch a panic outside `run` (as a user would); even seeds
    // catch it inside `main`, so the report can be checked as well.
    let catch_inside = seed.is_multiple_of(2);
    let outcome = if catch_inside {
        let main = CatchPanic { inner: Some(Box::pin(top_future(root.clone(), ctx.clone()))) };
        catch_unwind(AssertUnwindSafe(|| run_main(seed, main)))
            .map_err(|p| format!("a panic escaped main although main catches panics: {}", panic_message(&*p)))?
    } else {
        match catch_unwind(AssertUnwindSafe(|| run_main(seed, top_future(root.clone(), ctx.clone())))) {
            Ok((res, report)) => (Ok(res), report),
            Err(p) => {
                stats.panicked_runs += 1;
                check_panic(Some(&*p), &ctx)?;
                check_log(&root, &ctx.log.borrow())?;
                return Ok(());
            }
        }
    };
    let (result, report) = outcome;
    if verbose {
        eprintln!("seed {seed}: log {:?}", ctx.log.borrow());
        eprintln!("seed {seed}: errors returned {:?}, panics {:?}", ctx.errors.borrow(), ctx.panics.borrow());
        eprintln!("seed {seed}: result {result:?}");
        eprintln!("seed {seed}: {report:?}");
    }
    stats.errors += ctx.errors.borrow().len();
    check_report(&report)?;
    check_log(&root, &ctx.log.borrow())?;
    match &result {
        Ok(res) => {
            check_panic(None, &ctx)?;
            stats.too_slow += check_errors(res, &ctx)?;
        }
        // With a panic, a nursery's other errors go to stderr: only the
        // panic is checked.
        Err(p) => {
            stats.panicked_runs += 1;
            check_panic(Some(&**p), &ctx)?
        }
    }
    Ok(())
}

/// Keeps the expected panics of the trees out of the test output.
pub(crate) fn quiet_injected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = panic_message(info.payload());
            if !msg.starts_with("injected panic-") {
                default(info);
            }
        }));
    });
}

/// A hang is a failure too (a task that can no longer be cancelled, a lost
/// wake-up): if no seed finishes for this long, say which seed hangs and
/// abort, since the harness cannot time a test out.
const HANG_LIMIT: Duration = Duration::from_secs(120);

fn watchdog(current: Arc<AtomicU64>) {
    std::thread::spawn(move || {
        let mut last = u64::MAX;
        let mut since = std::time::Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = current.load(Ordering::Relaxed);
            if now == u64::MAX - 1 {
                return;
            }
            if now != last {
                last = now;
                since = std::time::Instant::now();
            } else if since.elapsed() > HANG_LIMIT {
                use std::io::Write;
                // Straight to the process's stderr: the harness captures
                // `eprintln!` of the test thread only.
                let _ = writeln!(
                    std::io::stderr(),
                    "random_trees: seed {now} has not finished after {HANG_LIMIT:?}: it hangs \
                     (replay: RANDOM_TREES_SEED={now} cargo test --test random_trees -- --nocapture)"
                );
                std::process::abort();
            }
        }
    });
}

struct Failure {
    seed: u64,
    what: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {}: {} (replay: RANDOM_TREES_SEED={} cargo test --test random_trees)",
            self.seed, self.what, self.seed
        )
    }
}

#[test]
fn random_trees_keep_structured_concurrency() {
    quiet_injected_panics();
    if let Ok(s) = std::env::var("RANDOM_TREES_SEED") {
        let seed: u64 = s.parse().expect("RANDOM_TREES_SEED must be a u64");
        if let Err(what) = run_seed(seed, true, &mut Stats::default()) {
            panic!("{}", Failure { seed, what });
        }
        return;
    }
    let n: u64 = std::env::var("RANDOM_TREES_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let mut failures = Vec::new();
    let mut stats = Stats::default();
    let current = Arc::new(AtomicU64::new(0));
    watchdog(current.clone());
    for seed in 0..n {
        current.store(seed, Ordering::Relaxed);
        match catch_unwind(AssertUnwindSafe(|| run_seed(seed, false, &mut stats))) {
            Ok(Ok(())) => {}
            Ok(Err(what)) => failures.push(Failure { seed, what }),
            Err(p) => failures.push(Failure { seed, what: format!("the checker panicked: {}", panic_message(&*p)) }),
        }
    }
    current.store(u64::MAX - 1, Ordering::Relaxed);
    eprintln!("{stats:?}");
    if !failures.is_empty() {
        let list: Vec<String> = failures.iter().map(|f| f.to_string()).collect();
        panic!("{} of {n} seeds failed:\n{}", failures.len(), list.join("\n"));
    }
}

fn count_nodes(node: &Node) -> usize {
    match &node.kind {
        Kind::Nursery { children, .. } => 1 + children.iter().map(|c| count_nodes(c)).sum::<usize>(),
        _ => 1,
    }
}

/// The generator itself: trees stay within bounds, and the seeds cover
/// every kind of node.
#[test]
fn generator_stays_within_bounds_and_covers_every_kind() {
    fn visit(node: &Node, depth: usize, seen: &mut [usize; 10], max_depth: &mut usize) {
        *max_depth = (*max_depth).max(depth);
        match &node.kind {
            Kind::Leaf { end: End::Ok, .. } => seen[0] += 1,
            Kind::Leaf { end: End::Err, .. } => seen[1] += 1,
            Kind::Leaf { end: End::Panic, .. } => seen[2] += 1,
            Kind::Forever => seen[3] += 1,
            Kind::Nursery { wrap, children, .. } => {
                seen[4 + match wrap {
                    Wrap::Plain => 0,
                    Wrap::MoveOnAfter(_) => 1,
                    Wrap::FailAfter(_) => 2,
                    Wrap::Shield(_) => 3,
                    Wrap::SiblingCancel { .. } => 4,
                }] += 1;
                seen[9] += usize::from(!children.is_empty());
                for c in children {
                    visit(c, depth + 1, seen, max_depth);
                }
            }
        }
    }
    let mut seen = [0usize; 10];
    for seed in 0..300 {
        let root = generate(seed);
        let n = count_nodes(&root);
        assert!(n <= MAX_NODES, "seed {seed}: {n} nodes");
        let mut depth = 0;
        visit(&root, 0, &mut seen, &mut depth);
        assert!(depth <= MAX_DEPTH, "seed {seed}: depth {depth}");
    }
    assert!(seen.iter().all(|&k| k > 0), "some kind of node never generated: {seen:?}");
}
