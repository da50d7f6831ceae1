//! `ParkingLot`'s own behaviours: FIFO unpark, unpark_all, repark order,
//! break_lot, cancellation withdrawing a waiter, and dropped parks.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::Poll;

use trioxide::sync::{Park, ParkError, ParkingLot};
use trioxide::{current_task, open_nursery, wait_all_tasks_blocked, BoxError, Builder, CancelScope, Nursery, TaskId};

type Log = Rc<RefCell<Vec<String>>>;

fn run<F: Future<Output = Result<(), BoxError>>>(seed: u64, main: F) {
    if let Err(e) = Builder::new().seed(seed).run(main) {
        panic!("seed {seed}: the run failed: {e}");
    }
}

/// Parks `count` tasks on `lot` one at a time, so they arrive in index
/// order; each logs `"{name}{i} {outcome}"` when its park returns.
/// Returns their task ids and cancel scopes.
async fn park_tasks(
    n: &Nursery,
    lot: &Rc<ParkingLot>,
    log: &Log,
    name: &'static str,
    count: usize,
) -> Result<(Vec<TaskId>, Vec<CancelScope>), BoxError> {
    let ids = Rc::new(RefCell::new(Vec::new()));
    let mut scopes = Vec::new();
    for i in 0..count {
        let (lot, log, ids) = (lot.clone(), log.clone(), ids.clone());
        let scope = CancelScope::new();
        scopes.push(scope.clone());
        n.start_soon(async move {
            ids.borrow_mut().push(current_task().id);
            let outcome = match scope.run(lot.park()).await {
                Ok(Some(())) => "unparked".to_string(),
                Ok(None) => "cancelled".to_string(),
                Err(e) => format!("{e:?}"),
            };
            log.borrow_mut().push(format!("{name}{i} {outcome}"));
        })?;
        wait_all_tasks_blocked().await?;
    }
    let ids = ids.borrow().clone();
    Ok((ids, scopes))
}

fn entries(log: &Log) -> Vec<String> {
    log.borrow().clone()
}

/// Polls a park once from the current task; it must stay pending.
async fn poll_pending(mut fut: Pin<&mut Park<'_>>) {
    poll_fn(|cx| {
        assert!(fut.as_mut().poll(cx).is_pending());
        Poll::Ready(())
    })
    .await
}

#[test]
fn unpark_wakes_waiters_in_arrival_order_and_returns_their_tasks() {
    for seed in 1..=8 {
        run(seed, async {
            let lot = Rc::new(ParkingLot::new());
            let log: Log = Rc::default();
            open_nursery(|n| {
                let (lot, log) = (lot.clone(), log.clone());
                async move {
                    let (ids, _) = park_tasks(&n, &lot, &log, "w", 4).await?;
                    assert_eq!(lot.len(), 4);
                    for (i, id) in ids.iter().enumerate() {
                        assert_eq!(lot.unpark_one(), Some(*id));
                        assert_eq!(lot.len(), 3 - i);
                        wait_all_tasks_blocked().await?;
                        assert_eq!(log.borrow().last().cloned(), Some(format!("w{i} unparked")));
                    }
                    assert_eq!(lot.unpark_one(), None);
                    assert_eq!(lot.unpark(5), 0);
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            assert_eq!(entries(&log), ["w0 unparked", "w1 unparked", "w2 unparked", "w3 unparked"]);
            Ok(())
        });
    }
}

#[test]
fn unpark_n_wakes_at_most_n_and_unpark_all_wakes_the_rest() {
    run(1, async {
        let lot = Rc::new(ParkingLot::new());
        let log: Log = Rc::default();
        open_nursery(|n| {
            let (lot, log) = (lot.clone(), log.clone());
            async move {
                park_tasks(&n, &lot, &log, "w", 5).await?;
                assert_eq!(lot.unpark(2), 2);
                assert_eq!(lot.len(), 3);
                wait_all_tasks_blocked().await?;
                assert_eq!(log.borrow().len(), 2);
                assert_eq!(lot.unpark_all(), 3);
                assert!(lot.is_empty());
                Ok::<_, BoxError>(())
            }
        })
        .await?;
        let mut all = entries(&log);
        all.sort();
        assert_eq!(all, ["w0 unparked", "w1 unparked", "w2 unparked", "w3 unparked", "w4 unparked"]);
        Ok(())
    });
}

#[test]
fn repark_moves_the_oldest_waiters_to_the_back_of_the_other_lot() {
    for seed in 1..=8 {
        run(seed, async {
            let a = Rc::new(ParkingLot::new());
            let b = Rc::new(ParkingLot::new());
            let log: Log = Rc::default();
            open_nursery(|n| {
                let (a, b, log) = (a.clone(), b.clone(), log.clone());
                async move {
                    let (a_ids, _) = park_tasks(&n, &a, &log, "a", 3).await?;
                    let (b_ids, _) = park_tasks(&n, &b, &log, "b", 1).await?;
                    assert_eq!(a.repark(&b, 2), 2);
                    assert_eq!(a.repark(&a, 1), 0, "reparking onto itself moves nothing");
                    assert_eq!((a.len(), b.len()), (1, 3));
                    // Moved, not woken.
                    wait_all_tasks_blocked().await?;
                    assert!(entries(&log).is_empty());
                    let order: Vec<TaskId> = std::iter::from_fn(|| b.unpark_one()).collect();
                    assert_eq!(order, [b_ids[0], a_ids[0], a_ids[1]]);
                    assert_eq!(a.repark_all(&b), 1);
                    assert_eq!(b.unpark_one(), Some(a_ids[2]));
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            assert_eq!(entries(&log).len(), 4);
            Ok(())
        });
    }
}

#[test]
fn break_lot_fails_every_waiter_and_every_later_park() {
    run(1, async {
        let lot = Rc::new(ParkingLot::new());
        let other = Rc::new(ParkingLot::new());
        let log: Log = Rc::default();
        let me = current_task().id;
        open_nursery(|n| {
            let (lot, other, log) = (lot.clone(), other.clone(), log.clone());
            async move {
                park_tasks(&n, &lot, &log, "w", 2).await?;
                park_tasks(&n, &other, &log, "o", 1).await?;
                assert_eq!(lot.broken_by(), Vec::new());
                assert_eq!(lot.break_lot(me), 2);
                assert_eq!((lot.len(), lot.broken_by()), (0, vec![me]));
                // A waiter moved onto a broken lot fails too.
                assert_eq!(other.repark(&lot, 1), 1);
                Ok::<_, BoxError>(())
            }
        })
        .await?;
        let mut all = entries(&log);
        all.sort();
        let broken =
            "Broken(BrokenResource { reason: \"the parking lot was broken (a lock's owner task ended holding it)\" })";
        assert_eq!(all, [format!("o0 {broken}"), format!("w0 {broken}"), format!("w1 {broken}")]);
        assert!(matches!(lot.park().await, Err(ParkError::Broken(_))));
        Ok(())
    });
}

#[test]
fn cancelling_a_waiter_withdraws_it_from_its_lot() {
    for seed in 1..=8 {
        run(seed, async {
            let lot = Rc::new(ParkingLot::new());
            let moved_to = Rc::new(ParkingLot::new());
            let log: Log = Rc::default();
            open_nursery(|n| {
                let (lot, moved_to, log) = (lot.clone(), moved_to.clone(), log.clone());
                async move {
                    let (ids, scopes) = park_tasks(&n, &lot, &log, "w", 4).await?;
                    scopes[1].cancel();
                    wait_all_tasks_blocked().await?;
                    assert_eq!(lot.len(), 3);
                    assert_eq!(entries(&log), ["w1 cancelled"]);
                    // After a repark, cancelling withdraws from the new lot.
                    assert_eq!(lot.repark(&moved_to, 2), 2);
                    scopes[2].cancel();
                    wait_all_tasks_blocked().await?;
                    assert_eq!((lot.len(), moved_to.len()), (1, 1));
                    assert_eq!(moved_to.unpark_one(), Some(ids[0]));
                    assert_eq!(lot.unpark_one(), Some(ids[3]));
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            assert_eq!(entries(&log)[..2], ["w1 cancelled", "w2 cancelled"]);
            Ok(())
        });
    }
}

#[test]
fn unpark_beats_a_later_cancel() {
    run(1, async {
        let lot = Rc::new(ParkingLot::new());
        let log: Log = Rc::default();
        open_nursery(|n| {
            let (lot, log) = (lot.clone(), log.clone());
            async move {
                let (_, scopes) = park_tasks(&n, &lot, &log, "w", 1).await?;
                assert_eq!(lot.unpark(1), 1);
                scopes[0].cancel();
                Ok::<_, BoxError>(())
            }
        })
        .await?;
        assert_eq!(entries(&log), ["w0 unparked"]);
        Ok(())
    });
}

#[test]
fn dropping_parks_leaves_the_lot_consistent() {
    run(1, async {
        let lot = ParkingLot::new();
        let me = current_task().id;
        // Dropped while queued: withdrawn.
        {
            let mut p = pin!(lot.park());
            poll_pending(p.as_mut()).await;
            assert!(p.is_parked() && !p.is_unparked());
            assert_eq!(lot.len(), 1);
        }
        assert_eq!(lot.len(), 0);
        // Dropped after being unparked: nothing left behind, and the
        // next unpark goes to the next waiter.
        let mut first = Box::pin(lot.park());
        poll_pending(first.as_mut()).await;
        let mut second = Box::pin(lot.park());
        poll_pending(second.as_mut()).await;
        assert_eq!(lot.unpark_one(), Some(me));
        assert!(first.is_unparked() && !first.is_parked());
        drop(first);
        assert_eq!(lot.len(), 1);
        assert_eq!(lot.unpark_one(), Some(me));
        assert_eq!(second.as_mut().await, Ok(()));
        assert!(!second.is_unparked(), "reported, so no longer pending a hand-over");
        assert!(lot.is_empty());
        // Never polled: nothing to undo.
        drop(lot.park());
        assert!(lot.is_empty());
        Ok(())
    });
}
