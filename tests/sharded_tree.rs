//! One task tree across shards (issue 13, item 5): `sharded_task_tree`
//! gathers every shard's tasks by sending one query job to each other
//! shard, links hosted remote children to the proxy of their owning
//! nursery, answers `Finished` for a shard whose run is over, is a cancel
//! point, and gets answers from busy shards at their next pass.
//! `Shard::current` lets a per-shard instrument tell its shard.
//!
//! Shards are threads, so every sharded call runs on a helper thread and
//! fails (instead of hanging) if it takes longer than `SAFETY`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll};
use std::thread;
use std::time::Duration;

use trioxide::{
    checkpoint, current_time, move_on_after, open_nursery, run, sharded_task_tree, sleep, sleep_forever, BoxError,
    Builder, CancelScope, Cancelled, Instrument, MockClock, Shard, ShardState, ShardTasks, ShardedBuilder, TaskId,
};

mod shard_support;
use shard_support::{bounded, no_leftovers, SAFETY};

/// A remote child with a type name of its own (`sharded_tree::Worker`):
/// remote children are named after their future's type.
struct Worker(Pin<Box<dyn Future<Output = Result<(), BoxError>>>>);

impl Worker {
    fn new(f: impl Future<Output = Result<(), BoxError>> + 'static) -> Worker {
        Worker(Box::pin(f))
    }
}

impl Future for Worker {
    type Output = Result<(), BoxError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

/// Draws the combined tree: each shard's main task at the top, each task
/// under its local parent, except hosted remote children, drawn under
/// their owner's proxy on the owning shard (`@i`: the task runs on shard
/// `i`). Siblings are sorted, so the drawing does not depend on task ids.
fn draw(tree: &[ShardTasks]) -> String {
    fn node(tree: &[ShardTasks], shard: usize, id: TaskId, depth: usize) -> String {
        let t = tree[shard].tasks.iter().find(|t| t.info.id == id).unwrap();
        let name = if t.info.parent.is_none() { format!("shard {shard} main") } else { t.info.name.clone() };
        let mut line = format!("{}{name} @{shard}", "  ".repeat(depth));
        if t.info.parent.is_some() {
            line += &format!(" [{}]", t.info.waiting_on);
        }
        let mut children: Vec<String> = Vec::new();
        for s in tree {
            for c in &s.tasks {
                let local = s.shard == shard && c.info.parent == Some(id) && c.remote_parent.is_none();
                let remote = c.remote_parent.is_some_and(|p| p.shard == shard && p.task == id);
                if local || remote {
                    children.push(node(tree, s.shard, c.info.id, depth + 1));
                }
            }
        }
        children.sort();
        std::iter::once(line).chain(children).collect::<Vec<_>>().join("\n")
    }
    let mut out = Vec::new();
    for s in tree {
        for t in s.tasks.iter().filter(|t| t.info.parent.is_none() && t.remote_parent.is_none()) {
            out.push(node(tree, s.shard, t.info.id, 0));
        }
    }
    out.join("\n")
}

#[test]
fn the_tree_of_three_shards_links_remote_children_to_their_owners_proxy() {
    let stop = Arc::new(AtomicBool::new(false));
    let out = bounded(move || {
        ShardedBuilder::new(3).configure(|shard| Builder::new().seed(40 + shard.index() as u64)).run(move |shard| {
            let stop = stop.clone();
            async move {
                match shard.index() {
                    0 => {}
                    1 => {
                        // A local child that runs until shard 0 has looked.
                        return Ok(open_nursery(|n| async move {
                            n.start_soon_named("local-1", async move {
                                while !stop.load(Ordering::SeqCst) {
                                    sleep(Duration::from_millis(1)).await?;
                                }
                                Ok::<_, BoxError>(())
                            })?;
                            Ok::<_, BoxError>(None)
                        })
                        .await?
                        .flatten());
                    }
                    _ => return Ok::<_, BoxError>(None), // returns at once; still hosts
                }
                Ok(open_nursery(|n| async move {
                    n.start_soon_named("local-0", async {
                        sleep_forever().await?;
                        Ok::<_, BoxError>(())
                    })?;
                    for _ in 0..2 {
                        n.start_soon_on(1, || {
                            Worker::new(async {
                                sleep_forever().await?;
                                Ok(())
                            })
                        })?;
                    }
                    n.start_soon_on(2, || {
                        Worker::new(async {
                            open_nursery(|n| async move {
                                n.start_soon_named("leaf", async {
                                    sleep_forever().await?;
                                    Ok::<_, BoxError>(())
                                })?;
                                Ok::<_, BoxError>(())
                            })
                            .await?;
                            Ok(())
                        })
                    })?;
                    // Until every task has blocked once and shard 2's main
                    // has returned.
                    let tree = loop {
                        let tree = sharded_task_tree().await?;
                        let settled = tree
                            .iter()
                            .flat_map(|s| &s.tasks)
                            .all(|t| t.info.parent.is_none() || !t.info.waiting_on.is_empty());
                        let hosted = tree.iter().map(|s| s.tasks.len()).collect::<Vec<_>>();
                        if settled && hosted == [4, 4, 3] && tree[2].state == ShardState::MainReturned {
                            break tree;
                        }
                        sleep(Duration::from_millis(1)).await?;
                    };
                    stop.store(true, Ordering::SeqCst);
                    n.cancel_scope().cancel();
                    Ok::<_, BoxError>(Some(tree))
                })
                .await?
                .flatten())
            }
        })
    });
    let tree = out.unwrap().remove(0).unwrap();
    assert_eq!(
        tree.iter().map(|s| (s.shard, s.state)).collect::<Vec<_>>(),
        [(0, ShardState::Running), (1, ShardState::Running), (2, ShardState::MainReturned)]
    );
    assert_eq!(
        draw(&tree),
        [
            "shard 0 main @0",
            "  local-0 @0 [sleep]",
            "  trioxide remote children @0 [remote children]",
            "    sharded_tree::Worker @1 [sleep]",
            "    sharded_tree::Worker @1 [sleep]",
            "  trioxide remote children @0 [remote children]",
            "    sharded_tree::Worker @2 [nursery]",
            "      leaf @2 [sleep]",
            "shard 1 main @1",
            "  local-1 @1 [sleep]",
            "shard 2 main @2",
        ]
        .join("\n")
    );
    // The links themselves: each hosted child names shard 0 and the proxy
    // of its group there (one per target shard), a child of shard 0's main;
    // locally its parent is the main task of the shard hosting it.
    let main_of = |s: usize| tree[s].tasks.iter().find(|t| t.info.parent.is_none()).unwrap().info.id;
    let owners: BTreeMap<usize, Vec<_>> = (1..3)
        .map(|s| {
            let hosted: Vec<_> = tree[s].tasks.iter().filter(|t| t.remote_parent.is_some()).collect();
            assert!(hosted.iter().all(|t| t.info.parent == Some(main_of(s))));
            (s, hosted.iter().map(|t| t.remote_parent.unwrap()).collect())
        })
        .collect();
    assert_eq!(owners[&1].len(), 2);
    assert_eq!(owners[&1][0], owners[&1][1]);
    assert_eq!(owners[&2].len(), 1);
    assert_ne!(owners[&1][0].task, owners[&2][0].task);
    for p in [owners[&1][0], owners[&2][0]] {
        assert_eq!(p.shard, 0);
        let proxy = tree[0].tasks.iter().find(|t| t.info.id == p.task).unwrap();
        assert_eq!(
            (proxy.info.name.as_str(), proxy.info.parent, proxy.remote_parent),
            ("trioxide remote children", Some(main_of(0)), None)
        );
    }
}

#[test]
fn a_shard_whose_run_is_over_answers_finished_and_the_query_does_not_hang() {
    // Only a task outliving the mains can see a shard's run over (a shard
    // hosts until every main has returned): a system task of shard 0,
    // shielded once its main has returned, waits for shard 1's run to end
    // (its instrument's after_run), then asks.
    struct Ended(Arc<AtomicBool>);
    impl Instrument for Ended {
        fn after_run(&self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let ended = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let e = ended.clone();
    let out = bounded(move || {
        ShardedBuilder::new(2)
            .configure(move |shard| {
                let b = Builder::new().seed(3);
                if shard.index() == 1 {
                    b.instrument(Rc::new(Ended(e.clone())))
                } else {
                    b
                }
            })
            .run_with_report(move |shard| {
                let (tx, ended) = (tx.clone(), ended.clone());
                async move {
                    if shard.index() == 0 {
                        let handle = trioxide::from_thread::current_handle();
                        let spawned = Arc::new(AtomicBool::new(false));
                        let sp = spawned.clone();
                        thread::spawn(move || {
                            let r = handle.run(move || async move {
                                sp.store(true, Ordering::SeqCst);
                                let woke = sleep_forever().await; // until main has returned
                                let seen = CancelScope::shielded()
                                    .run(async move {
                                        // Queries while shard 1 winds down: each
                                        // returns, and states only move forward.
                                        let mut states = Vec::new();
                                        loop {
                                            let tree = sharded_task_tree().await?;
                                            if states.last() != Some(&tree[1].state) {
                                                states.push(tree[1].state);
                                            }
                                            if ended.load(Ordering::SeqCst) && tree[1].state == ShardState::Finished {
                                                let names: Vec<_> =
                                                    tree[0].tasks.iter().map(|t| t.info.name.clone()).collect();
                                                return Ok::<_, Cancelled>((
                                                    states,
                                                    tree[0].state,
                                                    names,
                                                    tree[1].clone(),
                                                ));
                                            }
                                            sleep(Duration::from_micros(200)).await?;
                                        }
                                    })
                                    .await;
                                (woke, seen)
                            });
                            let _ = tx.send(r);
                        });
                        while !spawned.load(Ordering::SeqCst) {
                            checkpoint().await?;
                        }
                    }
                    Ok::<_, BoxError>(())
                }
            })
    });
    let (values, reports) = out;
    values.unwrap();
    assert_eq!(no_leftovers(&reports), [(0, 0, 0), (0, 0, 0)]);
    let (woke, seen) = rx.recv_timeout(SAFETY).expect("the system task reported").unwrap();
    assert_eq!(woke, Err(Cancelled));
    let (states, own_state, own_names, finished) = seen.unwrap().unwrap();
    // Shard 1's main had returned before the first query; then its run ended.
    assert_eq!(states.last(), Some(&ShardState::Finished));
    assert!(
        states == [ShardState::Finished] || states == [ShardState::MainReturned, ShardState::Finished],
        "{states:?}"
    );
    // Shard 0's main has returned too: only the system task is left.
    assert_eq!(own_state, ShardState::MainReturned);
    assert_eq!(own_names.len(), 1);
    assert_eq!(finished, ShardTasks { shard: 1, state: ShardState::Finished, tasks: Vec::new() });
}

#[test]
fn a_shard_whose_main_has_returned_answers_with_its_main_waiting_for_the_others() {
    let returned = Arc::new(AtomicBool::new(false));
    let out = bounded(move || {
        ShardedBuilder::new(2).run(move |shard| {
            let returned = returned.clone();
            async move {
                if shard.index() == 1 {
                    returned.store(true, Ordering::SeqCst);
                    return Ok::<_, BoxError>(None);
                }
                while !returned.load(Ordering::SeqCst) {
                    sleep(Duration::from_millis(1)).await?;
                }
                // Its main returns just after the flag: ask until it shows.
                loop {
                    let tree = sharded_task_tree().await?;
                    if tree[1].state == ShardState::MainReturned && !tree[1].tasks[0].info.waiting_on.is_empty() {
                        return Ok(Some(tree[1].clone()));
                    }
                    sleep(Duration::from_millis(1)).await?;
                }
            }
        })
    });
    let one = out.unwrap().remove(0).unwrap();
    assert_eq!(one.tasks.len(), 1);
    assert_eq!((one.tasks[0].info.parent, one.tasks[0].info.waiting_on), (None, "other shards' mains"));
}

#[test]
fn a_query_cancelled_by_a_deadline_returns_cancelled_and_its_late_answer_is_dropped() {
    // Shard 1 blocks its thread for 300 ms in one step, so it cannot
    // answer; shard 0 (a mock clock that jumps when idle) gives the query
    // 10 virtual seconds: the deadline cancels it long before the answer.
    let blocking = Arc::new(AtomicBool::new(false));
    let unblocked = Arc::new(AtomicBool::new(false));
    let out = bounded(move || {
        ShardedBuilder::new(2)
            .configure(|shard| {
                if shard.index() == 0 {
                    let clock = MockClock::new();
                    clock.set_autojump_threshold(Some(Duration::ZERO));
                    Builder::new().clock(clock).seed(5)
                } else {
                    Builder::new().seed(6)
                }
            })
            .run_with_report(move |shard| {
                let (blocking, unblocked) = (blocking.clone(), unblocked.clone());
                async move {
                    if shard.index() == 1 {
                        checkpoint().await?;
                        blocking.store(true, Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(500));
                        unblocked.store(true, Ordering::SeqCst);
                        return Ok::<_, BoxError>(None);
                    }
                    while !blocking.load(Ordering::SeqCst) {
                        checkpoint().await?;
                    }
                    let t0 = current_time();
                    let r = move_on_after(Duration::from_secs(10), sharded_task_tree()).await;
                    let took = (current_time().saturating_duration_since(t0), unblocked.load(Ordering::SeqCst));
                    // Already cancelled: no question is even sent.
                    let again = CancelScope::new();
                    again.cancel();
                    let before = again.run(sharded_task_tree()).await;
                    // The answer comes in after the cancellation, unread; a
                    // new query still works.
                    let tree = sharded_task_tree().await?;
                    Ok(Some((r.map(|t| t.is_some()), took, before.map(|t| t.is_some()), tree.len())))
                }
            })
    });
    let (values, reports) = out;
    let (r, (virt, shard1_done), before, len) = values.unwrap().remove(0).unwrap();
    assert_eq!(r, Ok(false), "move_on_after caught the query's Cancelled");
    assert_eq!(virt, Duration::from_secs(10));
    assert!(!shard1_done, "cancelled while shard 1 was still blocked, before it could answer");
    assert_eq!(before, Ok(false));
    assert_eq!(len, 2);
    assert_eq!(no_leftovers(&reports), [(0, 0, 0), (0, 0, 0)]);
}

#[test]
fn busy_shards_answer_at_their_next_pass() {
    // Shards 1 and 2 run a task that computes for 200 µs between
    // checkpoints; shard 1 then blocks its thread 100 ms in one step and
    // starts a child at the end of that step. The query answers within
    // bounded real time, and shard 1's answer was taken after that step
    // (between passes, never in the middle of one).
    let stop = Arc::new(AtomicBool::new(false));
    let steps: Arc<Vec<AtomicU64>> = Arc::new((0..3).map(|_| AtomicU64::new(0)).collect());
    let blocking = Arc::new(AtomicBool::new(false));
    let out = bounded(move || {
        ShardedBuilder::new(3).run(move |shard| {
            let (stop, steps, blocking) = (stop.clone(), steps.clone(), blocking.clone());
            async move {
                let me = shard.index();
                if me > 0 {
                    return Ok(open_nursery(|n| async move {
                        let nn = n.clone();
                        n.start_soon_named("busy", async move {
                            while !stop.load(Ordering::SeqCst) {
                                let t = std::time::Instant::now();
                                while t.elapsed() < Duration::from_micros(200) {
                                    std::hint::spin_loop();
                                }
                                let k = steps[me].fetch_add(1, Ordering::SeqCst);
                                if me == 1 && k == 20 {
                                    blocking.store(true, Ordering::SeqCst);
                                    thread::sleep(Duration::from_millis(100));
                                    nn.start_soon_named("after the long step", async { Ok::<_, BoxError>(()) })?;
                                }
                                checkpoint().await?;
                            }
                            Ok::<_, BoxError>(())
                        })?;
                        Ok::<_, BoxError>(None)
                    })
                    .await?
                    .flatten());
                }
                while !blocking.load(Ordering::SeqCst) || steps[2].load(Ordering::SeqCst) == 0 {
                    sleep(Duration::from_millis(1)).await?;
                }
                let real = std::time::Instant::now();
                let tree = sharded_task_tree().await?;
                let took = real.elapsed();
                stop.store(true, Ordering::SeqCst);
                let names: Vec<Vec<String>> = tree
                    .iter()
                    .map(|s| s.tasks.iter().filter(|t| t.info.parent.is_some()).map(|t| t.info.name.clone()).collect())
                    .collect();
                Ok::<_, BoxError>(Some((names, took)))
            }
        })
    });
    let (names, took) = out.unwrap().remove(0).unwrap();
    assert_eq!(names, [vec![], vec!["busy".to_string(), "after the long step".to_string()], vec!["busy".to_string()]]);
    assert!(took < Duration::from_secs(5), "answers took {took:?}");
}

/// Records, for each task a shard's run spawns, the shard its hook ran on
/// and the task's name (`main` for the main task).
type Seen = Arc<Mutex<Vec<(Option<Shard>, TaskId, String)>>>;

struct SeenSpawns {
    shard: usize,
    seen: Seen,
    before_run: Arc<Mutex<Option<Shard>>>,
}

impl Instrument for SeenSpawns {
    fn before_run(&self) {
        *self.before_run.lock().unwrap() = Shard::current();
    }
    fn task_spawned(&self, id: TaskId) {
        let t = trioxide::task_tree().into_iter().find(|t| t.id == id).unwrap();
        let name = if t.parent.is_none() { format!("main {}", self.shard) } else { t.name };
        self.seen.lock().unwrap().push((Shard::current(), id, name));
    }
}

#[test]
fn each_shards_instrument_sees_its_own_tasks_hosted_remote_children_included() {
    let seen: Arc<Vec<Seen>> = Arc::new((0..2).map(|_| Seen::default()).collect());
    let before: Arc<Vec<Arc<Mutex<Option<Shard>>>>> = Arc::new((0..2).map(|_| Arc::default()).collect());
    let (s, b) = (seen.clone(), before.clone());
    // Shard 0 starts one Worker on shard 1, shard 1 two on shard 0; once
    // all three run, shard 1 takes the whole tree, then both cancel.
    let ready = Arc::new(AtomicUsize::new(0));
    let looked = Arc::new(AtomicBool::new(false));
    let out = bounded(move || {
        ShardedBuilder::new(2)
            .configure(move |shard| {
                let i = shard.index();
                Builder::new().seed(9).instrument(Rc::new(SeenSpawns {
                    shard: i,
                    seen: s[i].clone(),
                    before_run: b[i].clone(),
                }))
            })
            .run(move |shard| {
                let (ready, looked) = (ready.clone(), looked.clone());
                async move {
                    let me = shard.index();
                    let tree = open_nursery(|n| async move {
                        n.start_soon_named(format!("local-{me}"), async { Ok::<_, BoxError>(()) })?;
                        for _ in 0..me + 1 {
                            let r = ready.clone();
                            n.start_soon_on(1 - me, move || {
                                Worker::new(async move {
                                    r.fetch_add(1, Ordering::SeqCst);
                                    sleep_forever().await?;
                                    Ok(())
                                })
                            })?;
                        }
                        while ready.load(Ordering::SeqCst) < 3 {
                            sleep(Duration::from_millis(1)).await?;
                        }
                        let tree = if me == 1 {
                            let tree = sharded_task_tree().await?;
                            looked.store(true, Ordering::SeqCst);
                            tree
                        } else {
                            while !looked.load(Ordering::SeqCst) {
                                sleep(Duration::from_millis(1)).await?;
                            }
                            Vec::new()
                        };
                        n.cancel_scope().cancel();
                        Ok::<_, BoxError>(tree)
                    })
                    .await?
                    .unwrap_or_default();
                    Ok::<_, BoxError>(tree)
                }
            })
    });
    let tree = out.unwrap().remove(1);
    assert_eq!(tree.len(), 2);
    for i in 0..2 {
        assert_eq!(before[i].lock().unwrap().map(|s| (s.index(), s.count())), Some((i, 2)));
    }
    let names = |i: usize| {
        let mut v: Vec<String> = seen[i]
            .lock()
            .unwrap()
            .iter()
            .map(|(s, _, n)| {
                assert_eq!(s.map(|s| s.index()), Some(i), "hook ran on shard {i}");
                n.clone()
            })
            .collect();
        v.sort();
        v
    };
    // Shard 0 hosts shard 1's two Workers; shard 1 hosts shard 0's one.
    assert_eq!(
        names(0),
        ["local-0", "main 0", "sharded_tree::Worker", "sharded_tree::Worker", "trioxide remote children"]
    );
    assert_eq!(names(1), ["local-1", "main 1", "sharded_tree::Worker", "trioxide remote children"]);
    // The hosted children in the tree are among those each shard's own
    // instrument saw spawned, with the same ids.
    for s in &tree {
        let ids: Vec<TaskId> = seen[s.shard].lock().unwrap().iter().map(|(_, id, _)| *id).collect();
        let hosted: Vec<_> = s.tasks.iter().filter(|t| t.remote_parent.is_some()).collect();
        assert_eq!(hosted.len(), 2 - s.shard);
        assert!(hosted.iter().all(|t| ids.contains(&t.info.id) && t.remote_parent.unwrap().shard == 1 - s.shard));
    }
}

#[test]
fn outside_a_sharded_run_the_tree_is_this_runs_as_shard_zero() {
    let (tree, local) = run(async {
        let tree = sharded_task_tree().await.unwrap();
        (tree, trioxide::task_tree())
    });
    assert_eq!(tree.len(), 1);
    assert_eq!((tree[0].shard, tree[0].state), (0, ShardState::Running));
    assert_eq!(
        tree[0].tasks.iter().map(|t| (t.info.clone(), t.remote_parent)).collect::<Vec<_>>(),
        [(local[0].clone(), None)]
    );
    // A sharded run of one shard is the same, and Shard::current says so.
    let one = ShardedBuilder::new(1)
        .run(|_| async { Ok::<_, BoxError>((sharded_task_tree().await?.len(), Shard::current())) })
        .unwrap();
    assert_eq!(one[0].0, 1);
    assert_eq!(one[0].1.map(|s| (s.index(), s.count())), Some((0, 1)));
    // Cancelled: the query is a checkpoint.
    let r = run(async {
        let scope = CancelScope::new();
        scope.cancel();
        scope.run(sharded_task_tree()).await
    });
    assert_eq!(r.map(|t| t.is_some()), Ok(false));
}

#[test]
#[should_panic(expected = "trioxide::sharded_task_tree must be called from inside trioxide::run")]
fn asking_outside_a_run_panics_with_a_clear_message() {
    drop(sharded_task_tree());
}

/// Round trip of one `sharded_task_tree` asked from shard 0 while every
/// other shard is idle (its main has returned: it is parked in its I/O
/// wait, hosting). Not a timed test: it measures and prints, and is
/// ignored by default. Run it in release:
///
/// ```text
/// cargo test --release --test sharded_tree -- --ignored --nocapture
/// ```
#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn query_round_trip_to_idle_shards() {
    const ROUNDS: usize = 2000;
    for n in [2, 4] {
        let lat = ShardedBuilder::new(n)
            .run(|shard| async move {
                let mut lat = Vec::with_capacity(ROUNDS);
                if shard.index() != 0 {
                    return Ok::<_, BoxError>(lat);
                }
                // Let the others return and park.
                sleep(Duration::from_millis(20)).await?;
                for _ in 0..ROUNDS {
                    let t0 = std::time::Instant::now();
                    let tree = sharded_task_tree().await?;
                    lat.push(t0.elapsed());
                    assert_eq!(tree.len(), n);
                    std::thread::sleep(Duration::from_micros(200)); // the others park again
                }
                Ok(lat)
            })
            .unwrap();
        let mut lat = lat.into_iter().next().unwrap();
        lat.sort();
        let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
        println!(
            "{n} shards, {ROUNDS} queries: p50 {:?} p90 {:?} p99 {:?} max {:?}",
            p(0.5),
            p(0.9),
            p(0.99),
            lat[lat.len() - 1]
        );
    }
}

/// What a remote child costs from start to end (shard 0 starts 20,000
/// empty children on shard 1 in one nursery and waits for them), to check
/// that recording each hosted child's owner for the tree adds nothing
/// measurable. Ignored by default; run it in release:
///
/// ```text
/// cargo test --release --test sharded_tree remote_child -- --ignored --nocapture
/// ```
#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn remote_child_start_to_end_cost() {
    const N: usize = 20_000;
    let mut per = Vec::new();
    for _ in 0..9 {
        let d = ShardedBuilder::new(2)
            .run(|shard| async move {
                if shard.index() == 1 {
                    return Ok::<_, BoxError>(Duration::ZERO);
                }
                let t0 = std::time::Instant::now();
                open_nursery(|n| async move {
                    for _ in 0..N {
                        n.start_soon_on(1, || async {})?;
                    }
                    Ok::<_, BoxError>(())
                })
                .await?;
                Ok(t0.elapsed())
            })
            .unwrap()[0];
        per.push(d.as_nanos() as f64 / N as f64);
    }
    per.sort_by(|a, b| a.total_cmp(b));
    println!(
        "remote child, start to end: ns per child over 9 runs: min {:.0} median {:.0} max {:.0}",
        per[0], per[4], per[8]
    );
}
