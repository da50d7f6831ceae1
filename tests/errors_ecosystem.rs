//! Errors that work with the ecosystem (issue 10, A): `Send + Sync` errors,
//! `?` into `anyhow::Error` and `Box<dyn Error + Send + Sync>`, a
//! `Cancelled` recognised through wrappers by the scope that was cancelled,
//! `MultiError`'s text, and the shape of a cancelled I/O call.
//!
//! Needs the `anyhow` feature: `cargo test --all-features`.
#![cfg(feature = "anyhow")]

use std::cell::{Cell, RefCell};
use std::error::Error;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context as _;
use trioxide::testing::memory_stream_one_way_pair;
use trioxide::{
    checkpoint, fail_after, io_error_kind, is_cancelled_error, move_on_after, open_nursery, run, sleep, sleep_forever,
    BoxError, Builder, CancelScope, Cancellation, Cancelled, IoErrorKind, MockClock, MultiError, TcpListener,
    TcpStream, TooSlow,
};

type SendBox = Box<dyn Error + Send + Sync + 'static>;

fn clock() -> MockClock {
    let c = MockClock::new();
    c.set_autojump_threshold(Some(Duration::ZERO));
    c
}

fn assert_send_sync<T: Send + Sync + 'static>() {}

#[test]
fn public_errors_are_send_and_sync() {
    assert_send_sync::<BoxError>();
    assert_send_sync::<MultiError>();
    assert_send_sync::<Cancelled>();
    assert_send_sync::<TooSlow>();
    assert_send_sync::<trioxide::NurseryClosed>();
    assert_send_sync::<trioxide::StartError>();
    assert_send_sync::<trioxide::ClosedResource>();
    assert_send_sync::<trioxide::BusyResource>();
    assert_send_sync::<trioxide::BrokenResource>();
    assert_send_sync::<trioxide::InvalidTime>();
    assert_send_sync::<trioxide::WouldBlock>();
    assert_send_sync::<trioxide::sync::ParkError>();
    assert_send_sync::<trioxide::sync::LockError>();
    assert_send_sync::<trioxide::channel::ReceiveError>();
    assert_send_sync::<trioxide::channel::SendError<u32>>();
    assert_send_sync::<trioxide::testing::CheckFailed>();
}

// ---- `?` into anyhow and Box<dyn Error + Send + Sync> ----

/// What `fn main() -> anyhow::Result<()>` looks like.
fn anyhow_main(fail: bool) -> anyhow::Result<Option<u32>> {
    let out = run(open_nursery(move |n| async move {
        n.start_soon(async move {
            checkpoint().await?;
            if fail {
                anyhow::bail!("child failed");
            }
            Ok::<_, anyhow::Error>(())
        })?;
        checkpoint().await?;
        Ok::<_, anyhow::Error>(5)
    }))?;
    Ok(out)
}

#[test]
fn anyhow_round_trip() {
    assert_eq!(anyhow_main(false).unwrap(), Some(5));
    let err = anyhow_main(true).unwrap_err();
    let multi = err.downcast_ref::<MultiError>().expect("the nursery's MultiError");
    assert_eq!(multi.to_string(), "1 error:\n  [0] child failed");
}

fn boxed_main(fail: bool) -> Result<Option<u32>, SendBox> {
    let out = run(open_nursery(move |n| async move {
        n.start_soon(async move {
            if fail {
                return Err::<(), SendBox>("child failed".into());
            }
            Ok(())
        })?;
        Ok::<_, SendBox>(6)
    }))?;
    Ok(out)
}

#[test]
fn send_sync_box_round_trip() {
    assert_eq!(boxed_main(false).unwrap(), Some(6));
    let err = boxed_main(true).unwrap_err();
    assert_eq!(err.to_string(), "1 error:\n  [0] child failed");
    // And it crosses threads.
    let text = std::thread::spawn(move || err.to_string()).join().unwrap();
    assert_eq!(text, "1 error:\n  [0] child failed");
}

// ---- the scope that was cancelled catches Cancelled through wrappers ----

#[test]
fn self_cancelling_nursery_with_anyhow_body_and_children() {
    let out = run(open_nursery(|n| async move {
        n.start_soon(async {
            sleep_forever().await.context("child waiting forever")?;
            Ok::<_, anyhow::Error>(())
        })?;
        n.start_soon(async {
            sleep_forever().await?;
            Ok::<_, anyhow::Error>(())
        })?;
        checkpoint().await?;
        n.cancel_scope().cancel();
        checkpoint().await.context("body's checkpoint")?;
        Ok::<_, anyhow::Error>(1)
    }));
    assert!(matches!(out, Ok(None)), "{out:?}");
}

#[test]
fn self_cancelling_nursery_with_send_sync_box_body() {
    let out = run(open_nursery(|n| async move {
        n.start_soon(async {
            sleep_forever().await?;
            Ok::<_, SendBox>(())
        })?;
        n.cancel_scope().cancel();
        checkpoint().await?;
        Ok::<_, SendBox>(1)
    }));
    assert!(matches!(out, Ok(None)), "{out:?}");
}

#[test]
fn move_on_after_accepts_anyhow_and_boxes() {
    let r = Builder::new().clock(clock()).run(move_on_after(Duration::from_secs(1), async {
        sleep(Duration::from_secs(5)).await.context("sleeping")?;
        Ok::<_, anyhow::Error>(1)
    }));
    assert!(matches!(r, Ok(None)), "{r:?}");

    let r = Builder::new().clock(clock()).run(move_on_after(Duration::from_secs(1), async {
        sleep(Duration::from_secs(5)).await?;
        Ok::<_, SendBox>(1)
    }));
    assert!(matches!(r, Ok(None)), "{r:?}");

    let r = Builder::new().clock(clock()).run(move_on_after(Duration::from_secs(1), async {
        sleep(Duration::from_secs(5)).await?;
        Ok::<_, Box<dyn Error>>(1)
    }));
    assert!(matches!(r, Ok(None)), "{r:?}");

    // The body finishing in time gives its value.
    let r = Builder::new().clock(clock()).run(move_on_after(Duration::from_secs(10), async {
        sleep(Duration::from_secs(5)).await?;
        Ok::<_, anyhow::Error>(2)
    }));
    assert_eq!(r.unwrap(), Some(2));
}

#[test]
fn fail_after_and_cancel_scope_accept_anyhow() {
    let r = Builder::new().clock(clock()).run(fail_after(Duration::from_secs(1), async {
        sleep(Duration::from_secs(5)).await?;
        Ok::<_, anyhow::Error>(())
    }));
    assert!(r.unwrap_err().is::<TooSlow>());

    let r = run(async {
        let scope = CancelScope::new();
        let out = scope
            .run(async {
                checkpoint().await?;
                Err::<(), _>(anyhow::anyhow!("not a cancellation"))
            })
            .await;
        (out.map_err(|e| e.to_string()), scope.cancelled_caught())
    });
    assert_eq!(r, (Err("not a cancellation".to_string()), false));

    let r = run(async {
        let scope = CancelScope::new();
        scope.cancel();
        let out = scope
            .run(async {
                checkpoint().await.context("a")?;
                Ok::<_, anyhow::Error>(3)
            })
            .await;
        (matches!(out, Ok(None)), scope.cancelled_caught())
    });
    assert_eq!(r, (true, true));
}

#[test]
fn cancelled_in_io_error_in_anyhow_in_multierror_is_caught() {
    let inner_result = Rc::new(RefCell::new(None));
    let seen = inner_result.clone();
    let out = run(open_nursery(move |n| async move {
        let (_tx, rx) = memory_stream_one_way_pair();
        n.start_soon(async move {
            let mut buf = [0u8; 8];
            // io::Error(Cancelled) inside anyhow (with context)
            rx.receive_some(&mut buf).await.context("reading the request")?;
            Ok::<_, anyhow::Error>(())
        })?;
        checkpoint().await?;
        // An inner nursery whose child fails with an anyhow-wrapped Cancelled
        // of the OUTER scope: the inner nursery was not cancelled itself, so
        // its MultiError passes through to the outer one.
        let cancel = n.cancel_scope();
        let inner = open_nursery(|m| async move {
            m.start_soon(async {
                sleep_forever().await.map_err(io::Error::from).context("inner child")?;
                Ok::<_, anyhow::Error>(())
            })?;
            checkpoint().await?;
            cancel.cancel();
            Ok::<_, anyhow::Error>(())
        })
        .await;
        let text = match &inner {
            Ok(_) => "ok".to_string(),
            Err(m) => format!("{} {}", m.is_cancelled(), m),
        };
        *seen.borrow_mut() = Some(text);
        inner?;
        Ok::<_, anyhow::Error>(1)
    }));
    assert!(matches!(out, Ok(None)), "{out:?}");
    assert_eq!(inner_result.borrow().as_deref(), Some("true 1 error:\n  [0] inner child"));
}

#[test]
fn outer_cancellation_passes_through_inner_scope() {
    let out = run(async {
        let outer = CancelScope::new();
        let inner = CancelScope::new();
        let inner_out = Rc::new(Cell::new((false, false)));
        let record = inner_out.clone();
        let (o, i) = (outer.clone(), inner.clone());
        let r = outer
            .run(async move {
                let r = i
                    .run(async {
                        o.cancel();
                        checkpoint().await.context("inner body")?;
                        Ok::<_, anyhow::Error>(())
                    })
                    .await;
                let passed = match &r {
                    Err(e) => is_cancelled_error(&**e),
                    Ok(_) => false,
                };
                record.set((passed, i.cancelled_caught()));
                r?;
                Ok::<_, anyhow::Error>(())
            })
            .await;
        (matches!(r, Ok(None)), outer.cancelled_caught(), inner_out.get())
    });
    // The inner scope let the outer Cancelled through as Err; the outer caught it.
    assert_eq!(out, (true, true, (true, false)));

    // The same through move_on_after (a deadline far away) and a nursery.
    let out = Builder::new().clock(clock()).run(async {
        let outer = CancelScope::new();
        let o = outer.clone();
        let r = outer
            .run(async move {
                let r = move_on_after(Duration::from_secs(100), async {
                    open_nursery(|n| async move {
                        n.start_soon(async {
                            sleep_forever().await?;
                            Ok::<_, anyhow::Error>(())
                        })?;
                        o.cancel();
                        sleep_forever().await?;
                        Ok::<_, anyhow::Error>(())
                    })
                    .await?;
                    Ok::<_, anyhow::Error>(())
                })
                .await;
                let through = r.as_ref().err().map(|e| e.is::<MultiError>() && is_cancelled_error(&**e));
                assert_eq!(through, Some(true));
                r?;
                Ok::<_, anyhow::Error>(())
            })
            .await;
        matches!(r, Ok(None))
    });
    assert!(out);
}

#[test]
fn split_cancelled_on_anyhow_and_boxes() {
    let e = anyhow::Error::from(io::Error::from(Cancelled)).context("outer context");
    assert!(is_cancelled_error(&*e));
    assert!(matches!(e.split_cancelled(), (true, None)));

    let m = MultiError::new(vec![Box::new(Cancelled), "boom".into()]);
    let (matched, rest) = anyhow::Error::from(m).split_cancelled();
    assert!(matched);
    assert_eq!(rest.unwrap().to_string(), "1 error:\n  [0] boom");

    let b: Box<dyn Error> = Box::new(io::Error::from(Cancelled));
    assert!(matches!(b.split_cancelled(), (true, None)));
    let b: Box<dyn Error + Send> = Box::new(std::fmt::Error);
    assert!(matches!(b.split_cancelled(), (false, Some(_))));
}

// ---- MultiError's text and filtering ----

#[test]
fn multierror_display_exact() {
    let nested = MultiError::new(vec!["a".into(), "b\nsecond line".into()]);
    let m = MultiError::new(vec!["boom".into(), Box::new(nested), Box::new(Cancelled)]);
    assert_eq!(
        m.to_string(),
        "3 errors:\n  [0] boom\n  [1] 2 errors:\n      [0] a\n      [1] b\n        second line\n  [2] cancelled"
    );
    assert_eq!(MultiError::new(vec!["only".into()]).to_string(), "1 error:\n  [0] only");
    assert_eq!(MultiError::default().to_string(), "0 errors");

    let rest = m.without_cancellations().unwrap();
    assert_eq!(
        rest.to_string(),
        "2 errors:\n  [0] boom\n  [1] 2 errors:\n      [0] a\n      [1] b\n        second line"
    );

    let mixed = MultiError::new(vec![
        Box::new(Cancelled),
        Box::new(MultiError::new(vec![Box::new(Cancelled), "deep".into()])),
        Box::new(io::Error::from(Cancelled)),
    ]);
    assert_eq!(mixed.without_cancellations().unwrap().to_string(), "1 error:\n  [0] 1 error:\n      [0] deep");
    let only = MultiError::new(vec![Box::new(Cancelled), Box::new(io::Error::from(Cancelled))]);
    assert!(only.is_cancelled());
    assert!(only.without_cancellations().is_none());
}

// ---- a cancelled I/O call ----

fn check_cancelled_io(e: &io::Error) {
    assert_eq!(e.kind(), io::ErrorKind::Other);
    assert_eq!(e.to_string(), "cancelled");
    assert_eq!(format!("{e:?}"), "Custom { kind: Other, error: Cancelled }");
    assert!(e.get_ref().is_some_and(|i| i.is::<Cancelled>()));
    assert!(is_cancelled_error(e));
    assert_eq!(io_error_kind(e), Some(IoErrorKind::Cancelled));
}

#[test]
fn cancelled_io_kind_memory_stream() {
    let err = run(async {
        let (_tx, rx) = memory_stream_one_way_pair();
        let scope = CancelScope::new();
        scope.cancel();
        let slot = RefCell::new(None);
        let out = scope
            .run(async {
                let mut buf = [0u8; 4];
                let r = rx.receive_some(&mut buf).await;
                let e = r.expect_err("cancelled");
                check_cancelled_io(&e);
                *slot.borrow_mut() = Some(e.kind());
                Err::<(), _>(e)
            })
            .await;
        assert!(matches!(out, Ok(None)));
        slot.into_inner()
    });
    assert_eq!(err, Some(io::ErrorKind::Other));
}

#[test]
fn cancelled_io_kind_tcp() {
    let ok = Builder::new().clock(clock_real()).run(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
        let addr = listener.local_addr()?;
        let client = TcpStream::connect(addr).await?;
        let (_server, _) = listener.accept().await?;
        let out = move_on_after(Duration::from_millis(20), async {
            let mut buf = [0u8; 4];
            let e = client.receive_some(&mut buf).await.expect_err("nothing is sent");
            check_cancelled_io(&e);
            Err::<(), _>(e)
        })
        .await;
        assert!(matches!(out, Ok(None)));
        Ok::<_, BoxError>(true)
    });
    assert!(ok.unwrap());
}

fn clock_real() -> MockClock {
    let c = MockClock::new();
    c.set_autojump_threshold(Some(Duration::from_millis(50)));
    c
}
