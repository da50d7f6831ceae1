//! Remote children (issue 13, part 2): a nursery on one shard starting
//! children on another (`start_soon_on`, `start_on`), their errors and
//! panics reaching the nursery, cancellation crossing once per shard, and
//! the clear errors for a finished shard or an index out of range.
//!
//! Shards are threads, so every sharded call runs on a helper thread and
//! fails (instead of hanging) if it takes longer than `SAFETY`.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::{self, ThreadId};
use std::time::Duration;

use trioxide::{
    checkpoint, current_time, move_on_after, open_nursery, run, sleep_forever, BoxError, Builder, CancelScope,
    Cancelled, MockClock, MultiError, RemoteError, RemoteTaskStatus, ShardedBuilder, StartError,
};

mod shard_support;
use shard_support::{bounded, no_leftovers, SAFETY};

/// A mock clock that jumps as soon as its shard is idle.
fn autojump() -> Builder {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::ZERO));
    Builder::new().clock(clock).seed(7)
}

/// Polls a future, turning a panic in it into `Err(payload)`.
struct CatchPanic<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(p) => Poll::Ready(Err(p)),
        }
    }
}

fn payload(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default()
}

#[derive(Debug)]
struct Tagged(u32);
impl std::fmt::Display for Tagged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tagged {}", self.0)
    }
}
impl std::error::Error for Tagged {}

#[test]
fn remote_children_errors_join_the_owning_nurserys_multierror_unwrapped() {
    let out = bounded(|| {
        ShardedBuilder::new(2).run(|shard| async move {
            if shard.index() == 1 {
                return Ok::<_, BoxError>(Vec::new());
            }
            let err = open_nursery(|n| async move {
                for tag in [1, 2] {
                    // Fails at its first poll, before any checkpoint: the
                    // nursery's cancellation cannot pre-empt it.
                    n.start_soon_on(1, move || async move { Err::<(), BoxError>(Box::new(Tagged(tag))) })?;
                }
                n.start_soon_on(1, || async { Ok::<(), BoxError>(()) })?;
                n.start_soon(async { Err::<(), BoxError>("local".into()) })?;
                Ok::<_, BoxError>(())
            })
            .await
            .unwrap_err();
            let mut got: Vec<String> = err
                .iter()
                .map(|e| match e.downcast_ref::<Tagged>() {
                    Some(t) => format!("remote {}", t.0), // not wrapped: downcasts as it was returned
                    None => e.to_string(),
                })
                .collect();
            got.sort();
            Ok(got)
        })
    });
    assert_eq!(out.unwrap(), [vec!["local", "remote 1", "remote 2"], vec![]]);
}

#[test]
fn a_remote_child_runs_on_the_target_shards_thread_and_may_hold_rc() {
    let out = bounded(|| {
        ShardedBuilder::new(2).run(|shard| async move {
            let me = thread::current().id();
            if shard.index() == 1 {
                return Ok::<_, BoxError>((me, None));
            }
            let seen: Arc<Mutex<Option<ThreadId>>> = Arc::default();
            let s = seen.clone();
            open_nursery(|n| async move {
                n.start_soon_on(1, move || {
                    let rc = Rc::new(thread::current().id()); // !Send, built there
                    async move {
                        checkpoint().await?;
                        *s.lock().unwrap() = Some(*rc);
                        Ok::<(), BoxError>(())
                    }
                })?;
                Ok::<_, BoxError>(())
            })
            .await?;
            let got = *seen.lock().unwrap();
            Ok((me, got))
        })
    });
    let v = out.unwrap();
    assert_eq!(v[0].1, Some(v[1].0));
    assert_ne!(v[0].0, v[1].0);
}

#[test]
fn a_panic_in_a_remote_child_resumes_in_the_owning_nurserys_parent_after_the_others_finish() {
    let out = bounded(|| {
        ShardedBuilder::new(2).run(|shard| async move {
            if shard.index() == 1 {
                return Ok::<_, BoxError>((String::new(), 0));
            }
            let sibling_done = Arc::new(AtomicUsize::new(0));
            let d = sibling_done.clone();
            let r = CatchPanic(Box::pin(open_nursery(|n| async move {
                n.start_soon_on(1, || async {
                    if true {
                        panic!("remote boom");
                    }
                })?;
                n.start_soon_on(1, move || async move {
                    let r = sleep_forever().await; // cancelled by the panic
                    d.fetch_add(1, Ordering::SeqCst);
                    r.map(|_| ())
                })?;
                Ok::<_, BoxError>(())
            })))
            .await;
            let msg = payload(&*r.expect_err("the nursery resumes the remote panic"));
            Ok((msg, sibling_done.load(Ordering::SeqCst)))
        })
    });
    assert_eq!(out.unwrap(), [("remote boom".to_string(), 1), (String::new(), 0)]);
}

#[test]
fn an_outer_deadline_in_virtual_time_cancels_a_remote_child_which_runs_its_shielded_cleanup() {
    let out = bounded(|| {
        ShardedBuilder::new(2).configure(|shard| if shard.index() == 0 { autojump() } else { Builder::new() }).run(
            |shard| async move {
                if shard.index() == 1 {
                    return Ok::<_, BoxError>(None);
                }
                let log: Arc<Mutex<Vec<String>>> = Arc::default();
                let l = log.clone();
                let t0 = current_time();
                let caught = move_on_after(Duration::from_secs(10), async move {
                    open_nursery(|n| async move {
                        n.start_soon_on(1, move || async move {
                            let r = sleep_forever().await;
                            l.lock().unwrap().push(format!("woke with {r:?}"));
                            // Async cleanup, shielded from the cancellation.
                            CancelScope::shielded()
                                .run(async {
                                    checkpoint().await?;
                                    l.lock().unwrap().push("cleaned up".into());
                                    Ok::<_, Cancelled>(())
                                })
                                .await?;
                            r.map(|_| ())
                        })?;
                        Ok::<_, BoxError>(())
                    })
                    .await
                })
                .await?;
                let elapsed = current_time().saturating_duration_since(t0);
                let log = log.lock().unwrap().clone();
                Ok(Some((caught.is_none(), elapsed, log)))
            },
        )
    });
    let v = out.unwrap();
    assert_eq!(
        v[0],
        Some((true, Duration::from_secs(10), vec!["woke with Err(Cancelled)".to_string(), "cleaned up".to_string()]))
    );
}

#[test]
fn cancelling_a_nursery_with_1000_children_on_one_shard_sends_one_cancel_message_per_shard() {
    let (out, reports) = bounded(|| {
        ShardedBuilder::new(3).run_with_report(|shard| async move {
            if shard.index() != 0 {
                return Ok::<_, BoxError>(0);
            }
            let running = Arc::new(AtomicUsize::new(0));
            let cancelled = Arc::new(AtomicUsize::new(0));
            let (r, c) = (running.clone(), cancelled.clone());
            open_nursery(|n| async move {
                for i in 0..1010 {
                    let (r, c) = (r.clone(), c.clone());
                    n.start_soon_on(1 + usize::from(i >= 1000), move || async move {
                        r.fetch_add(1, Ordering::SeqCst);
                        let out = sleep_forever().await;
                        if out == Err(Cancelled) {
                            c.fetch_add(1, Ordering::SeqCst);
                        }
                        out.map(|_| ())
                    })?;
                }
                // Every child is running (and blocked) before the cancel.
                while r.load(Ordering::SeqCst) < 1010 {
                    checkpoint().await?;
                }
                n.cancel_scope().cancel();
                Ok::<_, BoxError>(())
            })
            .await?;
            Ok(cancelled.load(Ordering::SeqCst))
        })
    });
    assert_eq!(out.unwrap(), [1010, 0, 0]);
    let counts: Vec<(u64, u64)> =
        reports.iter().map(|r| (r.remote_children_hosted, r.remote_cancels_received)).collect();
    assert_eq!(counts, [(0, 0), (1000, 1), (10, 1)]);
    assert_eq!(no_leftovers(&reports), [(0, 0, 0); 3]);
}

#[test]
fn starting_on_a_shard_once_every_main_has_returned_gives_shard_finished_without_hanging() {
    // Only a task outliving the mains can try: a system task of shard 0
    // (from_thread's `RuntimeHandle::run`). The run cancels it once shard
    // 0's main has returned, which is after every main has returned (a
    // shard's main waits for the others before returning): every host is
    // closed by then.
    let (tx, rx) = mpsc::channel();
    let out = bounded(move || {
        ShardedBuilder::new(2).run(move |shard| {
            let tx = tx.clone();
            async move {
                if shard.index() == 0 {
                    let handle = trioxide::from_thread::current_handle();
                    let spawned = Arc::new(AtomicUsize::new(0));
                    let sp = spawned.clone();
                    thread::spawn(move || {
                        let r = handle.run(move || async move {
                            sp.store(1, Ordering::SeqCst);
                            let woke = sleep_forever().await; // until main has returned
                            let tried = CancelScope::shielded()
                                .run(open_nursery(|n| async move {
                                    let soon = n.start_soon_on(1, || async {});
                                    let start = n.start_on(1, |st: RemoteTaskStatus<()>| async move { st.started(()) });
                                    let start = start.await.unwrap_err().downcast::<RemoteError>().map(|e| *e).ok();
                                    Ok::<_, BoxError>((soon, start))
                                }))
                                .await;
                            (woke, tried.map_err(|e| e.to_string()))
                        });
                        let _ = tx.send(format!("{r:?}"));
                    });
                    while spawned.load(Ordering::SeqCst) == 0 {
                        checkpoint().await?;
                    }
                }
                Ok::<_, BoxError>(())
            }
        })
    });
    assert_eq!(out.unwrap(), [(), ()]);
    let got = rx.recv_timeout(SAFETY).expect("the system task reported");
    assert_eq!(got, "Ok((Err(Cancelled), Ok(Some(Some((Err(ShardFinished(1)), Some(ShardFinished(1))))))))");
}

#[test]
fn starts_in_flight_when_the_hosts_close_either_run_or_come_back_as_shard_finished() {
    // A system task of shard 0 sends starts to shard 1 in a loop while the
    // mains finish; the hosts close under it. Each start sent either ran
    // on shard 1 or reached the nursery as ShardFinished(1): none is lost,
    // and the loop ends on the synchronous ShardFinished(1).
    let (tx, rx) = mpsc::channel();
    let out = bounded(move || {
        ShardedBuilder::new(2).run(move |shard| {
            let tx = tx.clone();
            async move {
                if shard.index() == 0 {
                    let handle = trioxide::from_thread::current_handle();
                    let spawned = Arc::new(AtomicUsize::new(0));
                    let sp = spawned.clone();
                    thread::spawn(move || {
                        let r = handle.run(move || async move {
                            let ran = Arc::new(AtomicUsize::new(0));
                            let sent = Rc::new(std::cell::Cell::new(0));
                            let (r2, s2) = (ran.clone(), sent.clone());
                            let tried = CancelScope::shielded()
                                .run(open_nursery(|n| async move {
                                    loop {
                                        let r3 = r2.clone();
                                        match n.start_soon_on(1, move || async move {
                                            r3.fetch_add(1, Ordering::SeqCst);
                                        }) {
                                            Ok(()) => s2.set(s2.get() + 1),
                                            Err(e) => return Ok::<_, BoxError>(e),
                                        }
                                        sp.store(1, Ordering::SeqCst);
                                        checkpoint().await?;
                                    }
                                }))
                                .await;
                            let (stop, lost_in_flight) = match tried {
                                Ok(Some(Some(stop))) => (Some(stop), 0),
                                Err(e) => {
                                    let all = e.iter().all(|e| {
                                        e.downcast_ref::<RemoteError>() == Some(&RemoteError::ShardFinished(1))
                                    });
                                    (all.then_some(RemoteError::ShardFinished(1)), e.len())
                                }
                                _ => (None, 0),
                            };
                            (stop, ran.load(Ordering::SeqCst) + lost_in_flight == sent.get(), sent.get() > 0)
                        });
                        let _ = tx.send(r);
                    });
                    while spawned.load(Ordering::SeqCst) == 0 {
                        checkpoint().await?;
                    }
                }
                Ok::<_, BoxError>(())
            }
        })
    });
    assert_eq!(out.unwrap(), [(), ()]);
    let got = rx.recv_timeout(SAFETY).expect("the system task reported");
    assert_eq!(got, Ok((Some(RemoteError::ShardFinished(1)), true, true)));
}

#[test]
fn an_index_out_of_range_is_no_such_shard_and_the_own_index_starts_a_local_child() {
    let out = bounded(|| {
        ShardedBuilder::new(2).run_with_report(|shard| async move {
            let me = thread::current().id();
            let ran_on: Arc<Mutex<Option<ThreadId>>> = Arc::default();
            let r = ran_on.clone();
            let bad = open_nursery(|n| async move {
                let bad = n.start_soon_on(2, || async {});
                n.start_soon_on(shard.index(), move || async move {
                    *r.lock().unwrap() = Some(thread::current().id());
                })?;
                Ok::<_, BoxError>(bad)
            })
            .await?;
            let local = *ran_on.lock().unwrap() == Some(me);
            Ok::<_, BoxError>(bad.map(|bad| (bad, local)))
        })
    });
    let (values, reports) = out;
    let bad = Err(RemoteError::NoSuchShard { shard: 2, count: 2 });
    assert_eq!(values.unwrap(), [Some((bad, true)), Some((bad, true))]);
    // Local starts send no message and are not counted as hosted.
    assert_eq!(reports.iter().map(|r| r.remote_children_hosted).collect::<Vec<_>>(), [0, 0]);
}

#[test]
fn outside_a_sharded_run_shard_zero_is_the_run_itself() {
    let out = run(open_nursery(|n| async move {
        let log = Rc::new(std::cell::RefCell::new(Vec::new()));
        let no = n.start_soon_on(1, || async {});
        let l = Arc::new(Mutex::new(Vec::new()));
        let l2 = l.clone();
        n.start_soon_on(0, move || async move { l2.lock().unwrap().push("local child") })?;
        let v = n.start_on(0, |st: RemoteTaskStatus<u8>| async move { st.started(5) }).await?;
        log.borrow_mut().push(v);
        let pushed = log.borrow().clone();
        Ok::<_, BoxError>((no, l, pushed))
    }))
    .unwrap()
    .unwrap();
    assert_eq!(out.0, Err(RemoteError::NoSuchShard { shard: 1, count: 1 }));
    assert_eq!(*out.1.lock().unwrap(), ["local child"]);
    assert_eq!(out.2, [5]);
}

#[test]
fn start_on_returns_the_value_started_on_another_shard_and_the_child_then_belongs_to_the_nursery() {
    let out = bounded(|| {
        ShardedBuilder::new(2).run(|shard| async move {
            if shard.index() == 1 {
                return Ok::<_, BoxError>(None);
            }
            let got: Arc<Mutex<Option<(u16, bool)>>> = Arc::default();
            let g = got.clone();
            let err = open_nursery(|n| async move {
                let caller = thread::current().id();
                let (port, on) = n
                    .start_on(1, |status: RemoteTaskStatus<(u16, ThreadId)>| async move {
                        status.started((4242, thread::current().id()));
                        checkpoint().await?;
                        Err::<(), BoxError>("after started".into()) // goes to the nursery
                    })
                    .await?;
                *g.lock().unwrap() = Some((port, on != caller));
                Ok::<_, BoxError>(())
            })
            .await
            .unwrap_err();
            let errs: Vec<String> = err.iter().map(|e| e.to_string()).collect();
            let got = *got.lock().unwrap();
            Ok(Some((got, errs)))
        })
    });
    assert_eq!(out.unwrap()[0], Some((Some((4242, true)), vec!["after started".to_string()])));
}

#[test]
fn start_on_reports_a_failure_before_started_to_the_caller_not_the_nursery() {
    let out = bounded(|| {
        ShardedBuilder::new(2).run(|shard| async move {
            if shard.index() == 1 {
                return Ok::<_, BoxError>(Vec::new());
            }
            let r = open_nursery(|n| async move {
                let failed = n
                    .start_on(
                        1,
                        |_status: RemoteTaskStatus<u8>| async move { Err::<(), BoxError>(Box::new(Tagged(9))) },
                    )
                    .await
                    .unwrap_err();
                let not_started = n.start_on(1, |_status: RemoteTaskStatus<u8>| async move {}).await.unwrap_err();
                let panicked = CatchPanic(Box::pin(n.start_on(1, |_status: RemoteTaskStatus<u8>| async move {
                    if true {
                        panic!("before started");
                    }
                })))
                .await
                .map(|_| ())
                .unwrap_err();
                Ok::<_, BoxError>(vec![
                    failed.downcast_ref::<Tagged>().map(|t| t.0.to_string()).unwrap_or_default(),
                    format!("{:?}", not_started.downcast_ref::<StartError>()),
                    payload(&*panicked),
                ])
            })
            .await?;
            Ok(r.unwrap()) // the nursery itself saw no error
        })
    });
    assert_eq!(out.unwrap()[0], ["9", "Some(NotStarted)", "before started"]);
}

#[test]
fn remote_children_can_start_children_back_on_the_owning_shard() {
    let (out, reports) = bounded(|| {
        ShardedBuilder::new(2).run_with_report(|shard| async move {
            if shard.index() == 1 {
                return Ok::<_, BoxError>(None);
            }
            let here = thread::current().id();
            let r = open_nursery(|n| async move {
                n.start_soon_on(1, move || async move {
                    // On shard 1: a nursery there, one child back on shard 0.
                    open_nursery(|m| async move {
                        m.start_soon_on(0, move || async move {
                            if thread::current().id() == here {
                                Err::<(), BoxError>("back home".into())
                            } else {
                                Err("elsewhere".into())
                            }
                        })?;
                        Ok::<_, BoxError>(())
                    })
                    .await?;
                    Ok::<(), BoxError>(())
                })?;
                Ok::<_, BoxError>(())
            })
            .await;
            // shard 0's nursery ← shard 1's nursery ← the child on shard 0
            let inner = r.unwrap_err();
            let nested = inner.errors()[0].downcast_ref::<MultiError>().map(|m| m.errors()[0].to_string());
            Ok(Some(nested))
        })
    });
    assert_eq!(out.unwrap()[0], Some(Some("back home".to_string())));
    assert_eq!(no_leftovers(&reports), [(0, 0, 0); 2]);
    assert_eq!((reports[0].remote_children_hosted, reports[1].remote_children_hosted), (1, 1));
}

#[test]
fn a_shard_whose_main_panics_hosts_its_remote_children_until_their_owners_cancel_them() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    let running = Arc::new(AtomicUsize::new(0));
    let panic = bounded(move || {
        catch_unwind(AssertUnwindSafe(|| {
            ShardedBuilder::new(2).run(|shard| {
                let (s, running) = (s.clone(), running.clone());
                async move {
                    if shard.index() == 1 {
                        // Panic once shard 0's child runs here.
                        while running.load(Ordering::SeqCst) == 0 {
                            checkpoint().await?;
                        }
                        panic!("shard 1 down");
                    }
                    let s2 = s.clone();
                    let r = open_nursery(|n| async move {
                        n.start_soon_on(1, move || async move {
                            running.store(1, Ordering::SeqCst);
                            let r = sleep_forever().await;
                            s2.lock().unwrap().push(format!("child: {r:?}"));
                            r.map(|_| ())
                        })?;
                        Ok::<_, BoxError>(())
                    })
                    .await;
                    let errs: Vec<String> = r.unwrap_err().iter().map(|e| e.to_string()).collect();
                    s.lock().unwrap().push(format!("nursery: {errs:?}"));
                    Ok::<_, BoxError>(())
                }
            })
        }))
    });
    assert_eq!(payload(&*panic.unwrap_err()), "shard 1 down");
    // Shard 1's panic cancelled shard 0, whose nursery cancelled its group
    // on shard 1, which was still hosting it.
    assert_eq!(*seen.lock().unwrap(), ["child: Err(Cancelled)", "nursery: [\"cancelled\"]"]);
}

/// Counts the tasks spawned in one shard's run.
struct Spawned(Arc<AtomicUsize>);

impl trioxide::Instrument for Spawned {
    fn task_spawned(&self, _: trioxide::TaskId) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn instruments_are_per_shard_and_see_the_children_a_shard_hosts() {
    let counts: Arc<Vec<Arc<AtomicUsize>>> = Arc::new((0..3).map(|_| Arc::default()).collect());
    let c = counts.clone();
    let out = bounded(move || {
        ShardedBuilder::new(3)
            .configure(move |shard| Builder::new().instrument(Rc::new(Spawned(c[shard.index()].clone()))))
            .run(|shard| async move {
                if shard.index() == 0 {
                    open_nursery(|n| async move {
                        for _ in 0..3 {
                            n.start_soon_on(1, || async {})?;
                        }
                        Ok::<_, BoxError>(())
                    })
                    .await?;
                }
                Ok::<_, BoxError>(())
            })
    });
    out.unwrap();
    let spawned: Vec<usize> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    // Shard 2: its main only. Shard 1: its main and the 3 hosted children.
    // Shard 0: its main and the one proxy of its group on shard 1.
    assert_eq!(spawned, [2, 4, 1]);
}
