//! `trioxide::testing` itself: the memory and lockstep streams' own
//! behaviour (rules I1-I3 as for sockets) and `assert_checkpoints` /
//! `assert_no_checkpoints`.

mod io_support;

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use io_support::{assert_kind, run_io};
use trioxide::testing::{
    assert_checkpoints, assert_no_checkpoints, lockstep_stream_one_way_pair, lockstep_stream_pair,
    memory_stream_one_way_pair, memory_stream_pair, wait_all_tasks_blocked,
};
use trioxide::{
    cancel_shielded_checkpoint, checkpoint, checkpoint_if_cancelled, open_nursery, run, sleep, BoxError, CancelScope,
    Cancelled, IoErrorKind,
};

/// Seeds for tests whose outcome must not depend on the scheduling order.
const SEEDS: [u64; 4] = [1, 2, 3, 4];

/// Where a task leaves its result.
type Slot<T> = Rc<RefCell<Option<T>>>;

fn slot<T>() -> Slot<T> {
    Rc::new(RefCell::new(None))
}

/// A task that runs `fut` and stores its output in `slot`.
fn keep<T: 'static>(slot: &Slot<T>, fut: impl Future<Output = T> + 'static) -> impl Future<Output = ()> {
    let slot = slot.clone();
    async move {
        let v = fut.await;
        *slot.borrow_mut() = Some(v);
    }
}

fn taken<T>(slot: &Slot<T>) -> T {
    slot.borrow_mut().take().expect("the task has not finished")
}

// ---- Memory streams ----

#[test]
fn memory_send_all_buffers_without_waiting_and_receive_takes_at_most_its_buffer_length() {
    run_io(1, async {
        let (tx, rx) = memory_stream_one_way_pair();
        tx.send_all(b"hello").await?;
        tx.send_all(b" world").await?;
        assert_eq!(tx.buffered(), 11);
        assert_eq!(rx.buffered(), 11);
        let mut small = [0u8; 4];
        assert_eq!(rx.receive_some(&mut small).await?, 4);
        assert_eq!(&small, b"hell");
        let mut big = [0u8; 100];
        assert_eq!(rx.receive_some(&mut big).await?, 7);
        assert_eq!(&big[..7], b"o world");
        assert_eq!(tx.buffered(), 0);
        Ok(())
    });
}

#[test]
fn memory_receive_waits_for_data_and_a_send_wakes_it() {
    for seed in SEEDS {
        run_io(seed, async {
            let (tx, rx) = memory_stream_one_way_pair();
            let got = slot();
            open_nursery(|n| async move {
                n.start_soon(keep(&got, async move {
                    let mut buf = [0u8; 8];
                    let k = rx.receive_some(&mut buf).await?;
                    Ok::<_, io::Error>(buf[..k].to_vec())
                }))?;
                wait_all_tasks_blocked().await?;
                assert!(got.borrow().is_none(), "receive_some returned with nothing sent");
                tx.send_all(b"ab").await?;
                wait_all_tasks_blocked().await?;
                assert_eq!(taken(&got)?, b"ab");
                Ok::<_, BoxError>(())
            })
            .await?;
            Ok(())
        });
    }
}

#[test]
fn i1_memory_a_second_concurrent_receive_gets_busy_and_the_first_keeps_waiting() {
    for seed in SEEDS {
        run_io(seed, async {
            let (tx, rx) = memory_stream_one_way_pair();
            let rx = Rc::new(rx);
            let (a, b) = (slot(), slot());
            open_nursery(|n| async move {
                for s in [&a, &b] {
                    let rx = rx.clone();
                    n.start_soon(keep(s, async move {
                        let mut buf = [0u8; 8];
                        rx.receive_some(&mut buf).await.map(|k| buf[..k].to_vec())
                    }))?;
                }
                wait_all_tasks_blocked().await?;
                // Exactly one has finished, with Busy; the other waits.
                let (first_done, busy) = match (a.borrow_mut().take(), b.borrow_mut().take()) {
                    (Some(r), None) => (true, r),
                    (None, Some(r)) => (false, r),
                    other => panic!("expected exactly one finished receive, got {other:?}"),
                };
                assert_kind(&busy, IoErrorKind::Busy);
                tx.send_all(b"z").await?;
                wait_all_tasks_blocked().await?;
                let waiter = if first_done { &b } else { &a };
                assert_eq!(taken(waiter)?, b"z");
                Ok::<_, BoxError>(())
            })
            .await?;
            Ok(())
        });
    }
}

#[test]
fn i1_memory_closing_the_receiver_wakes_its_waiting_receive_with_closed_and_later_sends_are_broken() {
    run_io(2, async {
        let (tx, rx) = memory_stream_one_way_pair();
        tx.send_all(b"unread").await?;
        let rx = Rc::new(rx);
        let got = slot();
        let rx1 = rx.clone();
        open_nursery(|n| async move {
            // Drain, then wait.
            n.start_soon(keep(&got, async move {
                let mut buf = [0u8; 64];
                rx1.receive_some(&mut buf).await?;
                rx1.receive_some(&mut buf).await
            }))?;
            wait_all_tasks_blocked().await?;
            assert!(got.borrow().is_none());
            tx.send_all(b"more").await?;
            rx.close();
            wait_all_tasks_blocked().await?;
            // The close came before the receiver ran again: the data it
            // would have had is discarded with the stream.
            assert_kind(&taken(&got), IoErrorKind::Closed);
            assert_eq!(tx.buffered(), 0);
            assert_kind(&tx.send_all(b"x").await, IoErrorKind::Broken);
            assert_kind(&rx.receive_some(&mut [0u8; 4]).await, IoErrorKind::Closed);
            // The sender's wait still returns: the next send will not block (it will fail).
            tx.wait_send_all_might_not_block().await?;
            Ok::<_, BoxError>(())
        })
        .await?;
        Ok(())
    });
}

#[test]
fn memory_closing_the_sender_lets_the_receiver_drain_then_read_zero_and_sender_operations_fail_closed() {
    run_io(1, async {
        let (tx, rx) = memory_stream_one_way_pair();
        tx.send_all(b"abc").await?;
        tx.close();
        tx.close();
        assert_kind(&tx.send_all(b"x").await, IoErrorKind::Closed);
        assert_kind(&tx.send_all(b"").await, IoErrorKind::Closed);
        assert_kind(&tx.wait_send_all_might_not_block().await, IoErrorKind::Closed);
        let mut buf = [0u8; 2];
        assert_eq!(rx.receive_some(&mut buf).await?, 2);
        assert_eq!(&buf, b"ab");
        assert_eq!(rx.receive_some(&mut buf).await?, 1);
        assert_eq!(buf[0], b'c');
        assert_eq!(rx.receive_some(&mut buf).await?, 0);
        assert_eq!(rx.receive_some(&mut buf).await?, 0);
        Ok(())
    });
}

#[test]
fn memory_dropping_an_end_closes_it() {
    run_io(1, async {
        let (tx, rx) = memory_stream_one_way_pair();
        drop(rx);
        assert_kind(&tx.send_all(b"x").await, IoErrorKind::Broken);
        let (tx, rx) = memory_stream_one_way_pair();
        tx.send_all(b"last").await?;
        drop(tx);
        let mut buf = [0u8; 8];
        assert_eq!(rx.receive_some(&mut buf).await?, 4);
        assert_eq!(rx.receive_some(&mut buf).await?, 0);
        Ok(())
    });
}

#[test]
fn i3_memory_cancelled_receive_takes_no_bytes_even_when_the_data_and_the_cancel_arrive_together() {
    for seed in SEEDS {
        run_io(seed, async {
            let (tx, rx) = memory_stream_one_way_pair();
            let rx = Rc::new(rx);
            let scope = CancelScope::new();
            let out = slot();
            let (rx1, scope1) = (rx.clone(), scope.clone());
            open_nursery(|n| async move {
                n.start_soon(keep(
                    &out,
                    async move { scope1.run(async { rx1.receive_some(&mut [0u8; 8]).await }).await },
                ))?;
                wait_all_tasks_blocked().await?;
                // Both before the receiver runs again (the send appends
                // before it lets the woken receiver run): the cancel wins and
                // the data stays in the stream.
                scope.cancel();
                tx.send_all(b"xyz").await?;
                wait_all_tasks_blocked().await?;
                assert!(matches!(taken(&out), Ok(None)), "the receive was not cancelled");
                assert_eq!(tx.buffered(), 3);
                let mut buf = [0u8; 8];
                assert_eq!(rx.receive_some(&mut buf).await?, 3);
                assert_eq!(&buf[..3], b"xyz");
                Ok::<_, BoxError>(())
            })
            .await?;
            Ok(())
        });
    }
}

#[test]
fn memory_receive_into_an_empty_buffer_is_invalid_input_even_with_data_waiting() {
    run_io(1, async {
        let (tx, rx) = memory_stream_one_way_pair();
        tx.send_all(b"x").await?;
        let err = rx.receive_some(&mut []).await.expect_err("an empty buffer was accepted");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(trioxide::io_error_kind(&err), None);
        assert_eq!(rx.buffered(), 1);
        Ok(())
    });
}

#[test]
fn c1_memory_operations_in_a_cancelled_scope_report_cancelled_and_change_nothing() {
    run_io(1, async {
        let (a, b) = memory_stream_pair();
        b.send_all(b"waiting").await?;
        let scope = CancelScope::new();
        scope.cancel();
        let results = scope
            .run(async {
                let send = a.send_all(b"x").await;
                let receive = a.receive_some(&mut [0u8; 8]).await;
                let wait = a.wait_send_all_might_not_block().await;
                let eof = a.send_eof().await;
                Ok::<_, Cancelled>((send, receive, wait, eof))
            })
            .await?
            .expect("the body ran to its end");
        assert_kind(&results.0, IoErrorKind::Cancelled);
        assert_kind(&results.1, IoErrorKind::Cancelled);
        assert_kind(&results.2, IoErrorKind::Cancelled);
        assert_kind(&results.3, IoErrorKind::Cancelled);
        // Nothing was sent, nothing received, the sending half is open.
        assert_eq!(a.send_stream().buffered(), 0);
        assert_eq!(a.receive_stream().buffered(), 7);
        a.send_all(b"still open").await?;
        assert_eq!(b.receive_stream().buffered(), 10);
        Ok(())
    });
}

#[test]
fn memory_send_eof_ends_the_peers_stream_while_data_still_flows_back() {
    run_io(1, async {
        let (a, b) = memory_stream_pair();
        a.send_all(b"1").await?;
        a.send_eof().await?;
        assert_kind(&a.send_all(b"x").await, IoErrorKind::Closed);
        a.send_eof().await?; // a second one does nothing
        let mut buf = [0u8; 4];
        assert_eq!(b.receive_some(&mut buf).await?, 1);
        assert_eq!(b.receive_some(&mut buf).await?, 0);
        b.send_all(b"2").await?;
        assert_eq!(a.receive_some(&mut buf).await?, 1);
        assert_eq!(buf[0], b'2');
        a.close();
        assert_kind(&a.send_eof().await, IoErrorKind::Closed);
        assert_kind(&a.receive_some(&mut buf).await, IoErrorKind::Closed);
        assert_kind(&b.send_all(b"3").await, IoErrorKind::Broken);
        Ok(())
    });
}

#[test]
fn i2_memory_operations_are_checkpoints_even_when_they_complete_at_once() {
    run_io(1, async {
        let (a, b) = memory_stream_pair();
        assert_checkpoints(a.send_all(b"x")).await?;
        assert_checkpoints(a.send_all(b"")).await?;
        assert_checkpoints(b.receive_some(&mut [0u8; 1])).await?;
        assert_checkpoints(a.wait_send_all_might_not_block()).await?;
        assert_checkpoints(a.send_eof()).await?;
        assert_checkpoints(a.send_eof()).await?;
        assert_checkpoints(b.receive_some(&mut [0u8; 1])).await?; // end of stream
        Ok(())
    });
}

#[test]
fn i2_memory_operations_that_complete_at_once_let_other_runnable_tasks_run() {
    for seed in SEEDS {
        run_io(seed, async {
            let (tx, rx) = memory_stream_one_way_pair();
            let ticks = Rc::new(Cell::new(0u32));
            let t = ticks.clone();
            open_nursery(|n| async move {
                n.start_soon(async move {
                    for _ in 0..100 {
                        checkpoint().await?;
                        t.set(t.get() + 1);
                    }
                    Ok::<_, Cancelled>(())
                })?;
                for _ in 0..10 {
                    tx.send_all(b"x").await?;
                }
                let mut buf = [0u8; 1];
                for _ in 0..10 {
                    rx.receive_some(&mut buf).await?;
                }
                // Each of the 20 operations let the ticker run once. Its
                // first run only reaches its first checkpoint, and the batch
                // order decides whether it runs once more before this line.
                let n = ticks.get();
                assert!((18..=20).contains(&n), "the ticker counted {n} times during 20 stream operations");
                Ok::<_, BoxError>(())
            })
            .await?;
            Ok(())
        });
    }
}

// ---- Lockstep streams ----

#[test]
fn lockstep_send_all_returns_only_once_the_receiver_has_taken_every_byte() {
    for seed in SEEDS {
        run_io(seed, async {
            let (tx, rx) = lockstep_stream_one_way_pair();
            let sent = slot();
            open_nursery(|n| async move {
                n.start_soon(keep(&sent, async move { tx.send_all(b"hello").await }))?;
                wait_all_tasks_blocked().await?;
                assert!(sent.borrow().is_none(), "send_all returned before anything was received");
                let mut buf = [0u8; 2];
                assert_eq!(rx.receive_some(&mut buf).await?, 2);
                assert_eq!(&buf, b"he");
                wait_all_tasks_blocked().await?;
                assert!(sent.borrow().is_none(), "send_all returned with 3 bytes not received");
                let mut buf = [0u8; 16];
                assert_eq!(rx.receive_some(&mut buf).await?, 3);
                assert_eq!(&buf[..3], b"llo");
                wait_all_tasks_blocked().await?;
                taken(&sent)?;
                Ok::<_, BoxError>(())
            })
            .await?;
            Ok(())
        });
    }
}

#[test]
fn lockstep_close_during_a_waiting_send_all_delivers_none_of_its_bytes() {
    for seed in SEEDS {
        run_io(seed, async {
            let (tx, rx) = lockstep_stream_one_way_pair();
            let tx = Rc::new(tx);
            let sent = slot();
            open_nursery(|n| async move {
                let t = tx.clone();
                n.start_soon(keep(&sent, async move { t.send_all(b"hello").await }))?;
                wait_all_tasks_blocked().await?;
                tx.close();
                // The send fails, so its bytes must not arrive: the
                // receiver reads the end of the stream at once.
                let mut buf = [0u8; 16];
                assert_eq!(rx.receive_some(&mut buf).await?, 0);
                wait_all_tasks_blocked().await?;
                assert_kind(&taken(&sent), IoErrorKind::Closed);
                Ok::<_, BoxError>(())
            })
            .await?;
            Ok(())
        });
    }
}

#[test]
fn lockstep_wait_send_all_might_not_block_waits_until_a_receive_is_waiting() {
    for seed in SEEDS {
        run_io(seed, async {
            let (tx, rx) = lockstep_stream_one_way_pair();
            let (waited, received) = (slot(), slot());
            let tx = Rc::new(tx);
            let tx1 = tx.clone();
            open_nursery(|n| async move {
                n.start_soon(keep(&waited, async move { tx1.wait_send_all_might_not_block().await }))?;
                wait_all_tasks_blocked().await?;
                assert!(waited.borrow().is_none(), "returned with no receiver");
                n.start_soon(keep(&received, async move {
                    let mut buf = [0u8; 8];
                    rx.receive_some(&mut buf).await.map(|k| buf[..k].to_vec())
                }))?;
                wait_all_tasks_blocked().await?;
                taken(&waited)?;
                assert!(received.borrow().is_none());
                tx.send_all(b"now").await?; // taken at once by the waiting receiver
                assert_eq!(taken(&received)?, b"now");
                Ok::<_, BoxError>(())
            })
            .await?;
            Ok(())
        });
    }
}

#[test]
fn lockstep_send_of_no_data_returns_at_once_without_a_receiver() {
    run_io(1, async {
        let (tx, _rx) = lockstep_stream_one_way_pair();
        assert_checkpoints(tx.send_all(b"")).await?;
        Ok(())
    });
}

#[test]
fn i3_lockstep_send_cancelled_before_the_receiver_took_anything_takes_its_data_back() {
    run_io(1, async {
        let (tx, rx) = lockstep_stream_pair();
        let (tx, rx) = (Rc::new(tx), Rc::new(rx));
        let scope = CancelScope::new();
        let out = slot();
        let (tx1, scope1) = (tx.clone(), scope.clone());
        open_nursery(|n| async move {
            n.start_soon(keep(&out, async move { scope1.run(tx1.send_all(b"never")).await }))?;
            wait_all_tasks_blocked().await?;
            scope.cancel();
            wait_all_tasks_blocked().await?;
            assert!(matches!(taken(&out), Ok(None)), "the send was not cancelled");
            // The stream is intact: the next send is the next data.
            let rx1 = rx.clone();
            n.start_soon(async move {
                let mut buf = [0u8; 8];
                let k = rx1.receive_some(&mut buf).await?;
                assert_eq!(&buf[..k], b"ok");
                Ok::<_, io::Error>(())
            })?;
            tx.send_all(b"ok").await?;
            Ok::<_, BoxError>(())
        })
        .await?;
        Ok(())
    });
}

#[test]
fn i3_lockstep_send_cancelled_after_the_receiver_took_part_of_it_breaks_the_stream_for_sending() {
    run_io(1, async {
        let (tx, rx) = lockstep_stream_pair();
        let (tx, rx) = (Rc::new(tx), Rc::new(rx));
        let scope = CancelScope::new();
        let out = slot();
        let (tx1, scope1) = (tx.clone(), scope.clone());
        open_nursery(|n| async move {
            n.start_soon(keep(&out, async move { scope1.run(tx1.send_all(b"hello")).await }))?;
            wait_all_tasks_blocked().await?;
            let mut buf = [0u8; 2];
            assert_eq!(rx.receive_some(&mut buf).await?, 2);
            scope.cancel();
            wait_all_tasks_blocked().await?;
            assert!(matches!(taken(&out), Ok(None)), "the send was not cancelled");
            let err = tx.send_all(b"more").await.expect_err("a broken stream accepted a send");
            assert_eq!(trioxide::io_error_kind(&err), Some(IoErrorKind::Broken));
            assert!(err.to_string().contains("cancelled after the receiver took part of its data"), "{err}");
            // The rest of the cancelled send is gone; receiving still works.
            tx.send_eof().await?;
            assert_eq!(rx.receive_some(&mut [0u8; 8]).await?, 0);
            Ok::<_, BoxError>(())
        })
        .await?;
        Ok(())
    });
}

#[test]
fn i3_lockstep_send_dropped_part_way_breaks_the_stream_and_dropped_untouched_does_not() {
    run_io(1, async {
        let (tx, rx) = lockstep_stream_one_way_pair();
        // Dropped before the receiver took anything: no harm done.
        {
            let mut send = pin!(tx.send_all(b"abc"));
            assert!(poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx).is_pending())).await);
        }
        assert_eq!(format!("{tx:?}"), "LockstepSendStream { closed: false, broken: false }");
        // Dropped after the receiver took one byte: broken.
        {
            let mut send = pin!(tx.send_all(b"abc"));
            assert!(poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx).is_pending())).await);
            let mut buf = [0u8; 1];
            assert_eq!(rx.receive_some(&mut buf).await?, 1);
            assert_eq!(&buf, b"a");
        }
        assert_kind(&tx.send_all(b"x").await, IoErrorKind::Broken);
        Ok(())
    });
}

#[test]
fn i1_lockstep_concurrent_send_side_operations_get_busy() {
    for seed in SEEDS {
        run_io(seed, async {
            let (a, _b) = lockstep_stream_pair();
            let a = Rc::new(a);
            let (first, second, eof) = (slot(), slot(), slot());
            let (a1, a2, a3) = (a.clone(), a.clone(), a.clone());
            open_nursery(|n| async move {
                n.start_soon(keep(&first, async move { a1.send_all(b"1").await }))?;
                wait_all_tasks_blocked().await?;
                n.start_soon(keep(&second, async move { a2.send_all(b"2").await }))?;
                wait_all_tasks_blocked().await?;
                assert_kind(&taken(&second), IoErrorKind::Busy);
                n.start_soon(keep(&eof, async move { a3.send_eof().await }))?;
                wait_all_tasks_blocked().await?;
                assert_kind(&taken(&eof), IoErrorKind::Busy);
                assert_kind(&a.wait_send_all_might_not_block().await, IoErrorKind::Busy);
                assert!(first.borrow().is_none(), "the first send did not keep waiting");
                n.cancel_scope().cancel();
                Ok::<_, BoxError>(())
            })
            .await?;
            Ok(())
        });
    }
}

#[test]
fn i1_lockstep_closing_an_end_wakes_the_blocked_send_closed_for_the_sender_broken_for_the_receiver() {
    for close_sender in [true, false] {
        run_io(1, async move {
            let (tx, rx) = lockstep_stream_one_way_pair();
            let tx = Rc::new(tx);
            let out = slot();
            let tx1 = tx.clone();
            open_nursery(|n| async move {
                n.start_soon(keep(&out, async move { tx1.send_all(b"stuck").await }))?;
                wait_all_tasks_blocked().await?;
                if close_sender {
                    tx.close();
                } else {
                    rx.close();
                }
                wait_all_tasks_blocked().await?;
                let want = if close_sender { IoErrorKind::Closed } else { IoErrorKind::Broken };
                assert_kind(&taken(&out), want);
                Ok::<_, BoxError>(())
            })
            .await?;
            Ok(())
        });
    }
}

#[test]
fn i2_lockstep_operations_are_checkpoints() {
    run_io(1, async {
        let (a, b) = lockstep_stream_pair();
        let (a, b) = (Rc::new(a), Rc::new(b));
        let b1 = b.clone();
        open_nursery(|n| async move {
            n.start_soon(async move {
                let mut buf = [0u8; 4];
                assert_checkpoints(b1.receive_some(&mut buf)).await?;
                Ok::<_, io::Error>(())
            })?;
            assert_checkpoints(a.wait_send_all_might_not_block()).await?;
            assert_checkpoints(a.send_all(b"data")).await?;
            assert_checkpoints(a.send_eof()).await?;
            assert_checkpoints(b.receive_some(&mut [0u8; 4])).await?;
            Ok::<_, BoxError>(())
        })
        .await?;
        Ok(())
    });
}

// ---- assert_checkpoints / assert_no_checkpoints ----

#[test]
fn assert_checkpoints_passes_on_checkpoint_sleep_and_stream_operations() {
    run_io(1, async {
        assert_checkpoints(checkpoint()).await?;
        assert_checkpoints(sleep(Duration::ZERO)).await?;
        assert_checkpoints(sleep(Duration::from_secs(1))).await?;
        assert_checkpoints(wait_all_tasks_blocked()).await?;
        let (a, b) = memory_stream_pair();
        assert_checkpoints(a.send_all(b"x")).await?;
        assert_checkpoints(b.receive_some(&mut [0u8; 1])).await?;
        // Several awaits inside one block count together.
        assert_checkpoints(async {
            checkpoint_if_cancelled()?;
            cancel_shielded_checkpoint().await;
            Ok::<_, Cancelled>(())
        })
        .await?;
        Ok(())
    });
}

#[test]
#[should_panic(expected = "assert_checkpoints block did not yield!")]
fn assert_checkpoints_panics_on_a_plain_async_block() {
    run(assert_checkpoints(async { 1 + 1 }));
}

#[test]
#[should_panic(expected = "assert_checkpoints block did not yield! (1 cancel point(s), 0 schedule point(s)")]
fn assert_checkpoints_panics_on_a_cancel_check_without_a_schedule_point() {
    run(assert_checkpoints(async { checkpoint_if_cancelled() })).unwrap();
}

#[test]
#[should_panic(expected = "assert_checkpoints block did not yield! (0 cancel point(s), 1 schedule point(s)")]
fn assert_checkpoints_panics_on_a_schedule_point_without_a_cancel_check() {
    run(assert_checkpoints(cancel_shielded_checkpoint()));
}

#[test]
fn assert_checkpoints_panic_names_the_callers_location() {
    let panic = catch_unwind(AssertUnwindSafe(|| run(assert_checkpoints(async {})))).expect_err("no panic");
    let msg = panic.downcast_ref::<String>().expect("a formatted message");
    assert!(msg.starts_with("assert_checkpoints block did not yield! (0 cancel point(s), 0 schedule point(s); at "));
    assert!(msg.contains("tests/testing_kit.rs:"), "{msg}");
}

#[test]
fn assert_no_checkpoints_passes_on_code_that_neither_checks_nor_yields() {
    let out = run(async {
        let (tx, rx) = memory_stream_one_way_pair();
        assert_no_checkpoints(async {
            tx.close();
            rx.buffered()
        })
        .await
    });
    assert_eq!(out, 0);
}

#[test]
#[should_panic(expected = "assert_no_checkpoints block yielded! (2 cancel point(s), 1 schedule point(s)")]
fn assert_no_checkpoints_panics_on_a_checkpoint() {
    run(assert_no_checkpoints(checkpoint())).unwrap();
}

#[test]
#[should_panic(expected = "assert_no_checkpoints block yielded! (1 cancel point(s), 0 schedule point(s)")]
fn assert_no_checkpoints_panics_on_a_bare_cancel_check() {
    run(assert_no_checkpoints(async { checkpoint_if_cancelled() })).unwrap();
}

#[test]
#[should_panic(expected = "assert_no_checkpoints block yielded! (1 cancel point(s), 1 schedule point(s)")]
fn assert_no_checkpoints_panics_on_a_stream_operation_that_completes_at_once() {
    // Nobody else is runnable, so the send does not really yield; its offer
    // to is the schedule point.
    run(async {
        let (tx, _rx) = memory_stream_one_way_pair();
        assert_no_checkpoints(tx.send_all(b"x")).await
    })
    .unwrap();
}

#[test]
#[should_panic(expected = "assert_checkpoints block did not yield! (0 cancel point(s), 5 schedule point(s)")]
fn checkpoints_other_tasks_make_while_the_wrapped_future_waits_do_not_count() {
    // Shielded checkpoints yield without a cancel check; during those five
    // passes the other task runs at least four times, making cancel checks. Counting the runtime's
    // totals from start to end would see those and pass; the wrapper reads
    // the counters around its own polls only, and panics.
    run(open_nursery(|n| async move {
        n.start_soon(async {
            for _ in 0..10 {
                checkpoint().await?;
            }
            Ok::<_, Cancelled>(())
        })?;
        assert_checkpoints(async {
            for _ in 0..5 {
                cancel_shielded_checkpoint().await;
            }
        })
        .await;
        Ok::<_, BoxError>(())
    }))
    .unwrap();
}
