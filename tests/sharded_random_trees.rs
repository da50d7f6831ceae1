//! Random trees of nurseries spanning shards (tests/random_trees.rs's idea,
//! across threads): each node is a leaf (ends Ok, fails, sleeps, sleeps
//! forever) or a nursery (optionally inside `move_on_after`, optionally
//! cancelling itself after a sleep) whose children run locally or on any
//! shard of a 3-shard run (remote children may start children anywhere,
//! back on the owner's shard included). Every shard runs on a MockClock
//! that autojumps, so the trees end in virtual time; the order in which
//! shards act is still real-time (and not asserted). Checks:
//!
//! (a) every nursery ended after every one of its children, wherever they
//!     ran (one global sequence counter);
//! (b) no error is lost: every `err-N` a node returned is in the final
//!     error tree exactly once, and nothing else is (no stray `Cancelled`,
//!     no `RemoteError`);
//! (c) every shard's run leaves 0 tasks, 0 timers, 0 task allocations.
//!
//! Panics are not injected here (a panic resumes out of the run, so no
//! report): tests/sharded_remote.rs pins remote panics. Replay one seed
//! with `SHARDED_TREES_SEED=<seed> cargo test --test sharded_random_trees
//! -- --nocapture`; change the number of cases with `SHARDED_TREES_SEEDS`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use trioxide::{
    move_on_after, open_nursery, sleep, sleep_forever, BoxError, Builder, MockClock, MultiError, ShardError,
    ShardReport, ShardedBuilder,
};

const SHARDS: usize = 3;
const MAX_DEPTH: usize = 3;
const MAX_NODES: u32 = 30;
const TOP_DEADLINE: Duration = Duration::from_secs(10);
const SAFETY: Duration = Duration::from_secs(60);

struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
    fn duration(&mut self) -> Duration {
        if self.chance(1, 6) {
            Duration::ZERO
        } else {
            Duration::from_millis(1 + self.below(60))
        }
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Ok,
    Err,
    Sleep(Duration),
    SleepThenErr(Duration),
    Forever,
    Nursery { deadline: Option<Duration>, cancel_after: Option<Duration>, children: Vec<(Option<usize>, Node)> },
}

#[derive(Debug, Clone)]
struct Node {
    id: u32,
    kind: Kind,
}

fn gen(rng: &mut SplitMix64, depth: usize, next_id: &mut u32) -> Node {
    let id = *next_id;
    *next_id += 1;
    let leaf = depth >= MAX_DEPTH || *next_id >= MAX_NODES || (depth > 0 && rng.chance(1, 2));
    let kind = if leaf {
        match rng.below(6) {
            0 => Kind::Ok,
            1 => Kind::Err,
            2 | 3 => Kind::Sleep(rng.duration()),
            4 => Kind::SleepThenErr(rng.duration()),
            _ => Kind::Forever,
        }
    } else {
        let deadline = rng.chance(1, 3).then(|| rng.duration());
        let cancel_after = rng.chance(1, 4).then(|| rng.duration());
        let n = 1 + rng.below(4);
        let mut children = Vec::new();
        for _ in 0..n {
            if *next_id >= MAX_NODES {
                break;
            }
            // None: local; Some(i): start_soon_on(i) (i may be the own shard).
            let place = if rng.chance(1, 3) { None } else { Some(rng.below(SHARDS as u64) as usize) };
            children.push((place, gen(rng, depth + 1, next_id)));
        }
        Kind::Nursery { deadline, cancel_after, children }
    };
    Node { id, kind }
}

#[derive(Default)]
struct Log {
    seq: AtomicU64,
    ends: Mutex<HashMap<u32, u64>>,
    returned: Mutex<Vec<u32>>,
}

impl Log {
    fn end(&self, id: u32) {
        let s = self.seq.fetch_add(1, Ordering::SeqCst);
        let prev = self.ends.lock().unwrap().insert(id, s);
        assert_eq!(prev, None, "node {id} ended twice");
    }
    fn fail(&self, id: u32) -> Result<(), BoxError> {
        self.returned.lock().unwrap().push(id);
        Err(format!("err-{id}").into())
    }
}

type BoxFut = Pin<Box<dyn Future<Output = Result<(), BoxError>>>>;

fn run_node(node: Node, log: Arc<Log>) -> BoxFut {
    Box::pin(async move {
        let id = node.id;
        let l = log.clone();
        let r: Result<(), BoxError> = async move {
            match node.kind {
                Kind::Ok => Ok(()),
                Kind::Err => l.fail(id),
                Kind::Sleep(d) => Ok(sleep(d).await?),
                Kind::SleepThenErr(d) => {
                    sleep(d).await?;
                    l.fail(id)
                }
                Kind::Forever => match sleep_forever().await {
                    Err(c) => Err(c.into()),
                },
                Kind::Nursery { deadline, cancel_after, children } => {
                    let body = open_nursery(move |n| async move {
                        for (place, child) in children {
                            let l2 = l.clone();
                            match place {
                                None => n.start_soon(run_node(child, l2))?,
                                Some(shard) => n.start_soon_on(shard, move || run_node(child, l2))?,
                            }
                        }
                        if let Some(d) = cancel_after {
                            sleep(d).await?;
                            n.cancel_scope().cancel();
                        }
                        Ok::<_, BoxError>(())
                    });
                    match deadline {
                        Some(d) => move_on_after(d, body).await.map(|_| ()).map_err(Into::into),
                        None => body.await.map(|_| ()).map_err(Into::into),
                    }
                }
            }
        }
        .await;
        log.end(id);
        r
    })
}

/// Every leaf error message in the tree, and anything unexpected.
fn collect(e: &(dyn std::error::Error + 'static), errs: &mut Vec<u32>, other: &mut Vec<String>) {
    if let Some(m) = e.downcast_ref::<MultiError>() {
        m.iter().for_each(|e| collect(&**e, errs, other));
    } else if let Some(s) = e.downcast_ref::<ShardError>() {
        collect(&**s.error(), errs, other);
    } else {
        match e.to_string().strip_prefix("err-").and_then(|n| n.parse().ok()) {
            Some(id) => errs.push(id),
            None => other.push(e.to_string()),
        }
    }
}

fn nursery_edges(node: &Node, out: &mut Vec<(u32, u32)>, all: &mut Vec<u32>) {
    all.push(node.id);
    if let Kind::Nursery { children, .. } = &node.kind {
        for (_, c) in children {
            out.push((node.id, c.id));
            nursery_edges(c, out, all);
        }
    }
}

/// Returns (remote children hosted, errors returned, cancels received).
fn check_seed(seed: u64, verbose: bool) -> (u64, usize, u64) {
    let mut rng = SplitMix64(seed);
    let mut next_id = 0;
    let tree = gen(&mut rng, 0, &mut next_id);
    if verbose {
        println!("seed {seed}: {tree:#?}");
    }
    let log = Arc::new(Log::default());
    let (l, t) = (log.clone(), tree.clone());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let out = ShardedBuilder::new(SHARDS)
            .configure(move |shard| {
                let clock = MockClock::new();
                clock.set_autojump_threshold(Some(Duration::ZERO));
                Builder::new().clock(clock).seed(seed.wrapping_mul(31).wrapping_add(shard.index() as u64))
            })
            .run_with_report(move |shard| {
                let (l, t) = (l.clone(), t.clone());
                async move {
                    if shard.index() == 0 {
                        move_on_after(TOP_DEADLINE, run_node(t, l)).await?;
                    }
                    Ok::<_, BoxError>(())
                }
            });
        let _ = tx.send(out);
    });
    let (out, reports): (Result<Vec<()>, MultiError>, Vec<ShardReport>) =
        rx.recv_timeout(SAFETY).unwrap_or_else(|_| panic!("seed {seed}: the sharded run hung"));

    // (b) no error lost, nothing unexpected.
    let (mut errs, mut other) = (Vec::new(), Vec::new());
    if let Err(e) = &out {
        collect(e, &mut errs, &mut other);
    }
    errs.sort();
    let mut returned = log.returned.lock().unwrap().clone();
    returned.sort();
    assert_eq!(errs, returned, "seed {seed}: errors returned vs reported");
    assert!(other.is_empty(), "seed {seed}: unexpected errors {other:?}");

    // (a) every node ended once; nurseries after their children.
    let (mut edges, mut all) = (Vec::new(), Vec::new());
    nursery_edges(&tree, &mut edges, &mut all);
    let ends = log.ends.lock().unwrap();
    assert_eq!(ends.len(), all.len(), "seed {seed}: every node ends once");
    for (parent, child) in edges {
        assert!(ends[&child] < ends[&parent], "seed {seed}: nursery {parent} ended before its child {child}");
    }

    // (c) nothing left on any shard.
    let left: Vec<(usize, usize, usize)> =
        reports.iter().map(|r| (r.run.tasks_left, r.run.timers_left, r.run.task_allocations_left)).collect();
    assert_eq!(left, [(0, 0, 0); SHARDS], "seed {seed}: leftovers per shard");
    let hosted = reports.iter().map(|r| r.remote_children_hosted).sum();
    let cancels = reports.iter().map(|r| r.remote_cancels_received).sum();
    (hosted, returned.len(), cancels)
}

#[test]
fn random_trees_spanning_shards_lose_no_error_and_leave_nothing_behind() {
    if let Some(seed) = std::env::var("SHARDED_TREES_SEED").ok().and_then(|s| s.parse().ok()) {
        println!("{:?}", check_seed(seed, true));
        return;
    }
    let default = if std::env::var_os("TRIOXIDE_VALGRIND").is_some() { 20 } else { 200 };
    let n = std::env::var("SHARDED_TREES_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    let (mut hosted, mut errors, mut cancels) = (0u64, 0usize, 0u64);
    for seed in 0..n {
        let (h, e, c) = check_seed(seed, false);
        (hosted, errors, cancels) = (hosted + h, errors + e, cancels + c);
    }
    println!("{n} trees: {hosted} remote children, {errors} errors, {cancels} cross-shard cancels");
    // The trees did cross shards, fail and cancel across them.
    assert!(hosted >= n && errors as u64 >= n / 2 && cancels >= n / 4, "{hosted} {errors} {cancels}");
}

#[test]
fn the_generator_makes_remote_children_and_nested_nurseries() {
    // Guards the test above against a generator that stopped generating
    // what it is meant to test.
    let (mut remote, mut nested) = (0, 0);
    for seed in 0..200 {
        let mut next_id = 0;
        let tree = gen(&mut SplitMix64(seed), 0, &mut next_id);
        fn walk(n: &Node, depth: usize, remote: &mut u32, nested: &mut u32) {
            if let Kind::Nursery { children, .. } = &n.kind {
                if depth > 0 {
                    *nested += 1;
                }
                for (p, c) in children {
                    *remote += u32::from(p.is_some_and(|s| s != 0));
                    walk(c, depth + 1, remote, nested);
                }
            }
        }
        walk(&tree, 0, &mut remote, &mut nested);
    }
    assert!(remote > 200 && nested > 50, "remote {remote}, nested {nested}");
}
