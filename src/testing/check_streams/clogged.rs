//! The checks that need a clogged stream (one whose sends block until the
//! receiver receives): blocked send-side operations, their conflicts, and
//! how closing and cancelling wake them. Trio's `clogged_stream_maker`
//! part of `check_one_way_stream`, plus the cancellation of blocked sends.

use std::cell::RefCell;
use std::rc::Rc;

use crate::kernel::cancel::CancelScope;
use crate::kernel::error::BoxError;
use crate::nursery::open_nursery;
use crate::stream::{ReceiveStream, Resource, SendStream};
use crate::testing::check_streams::one_way::describe_scoped;
use crate::testing::check_streams::support::{
    checked, describe_err, expect_err, expect_one_busy, make, measured, op_then, settle, CloseBoth, Ctx, IfBlocked,
    Want,
};
use crate::testing::check_streams::PairMaker;
use crate::testing::wait_all_tasks_blocked;

/// The receive buffer of the receiver that unclogs the stream (Trio's
/// figure).
const UNCLOG_BUFFER: usize = 16834;

pub(super) async fn check<M>(ctx: Ctx, maker: &mut M) -> Result<(), BoxError>
where
    M: PairMaker,
    M::A: SendStream + 'static,
    M::B: ReceiveStream + 'static,
{
    wait_send_waits_for_receiver(ctx, maker).await?;
    send_side_conflicts(ctx, maker).await?;
    receiver_close_releases_wait(ctx, maker).await?;
    sender_close_wakes_send_side(ctx, maker).await?;
    cancel_wakes_send_side(ctx, maker).await
}

async fn wait_send_waits_for_receiver<M>(ctx: Ctx, maker: &mut M) -> Result<(), BoxError>
where
    M: PairMaker,
    M::A: SendStream + 'static,
    M::B: ReceiveStream + 'static,
{
    const P: &str = "on a clogged stream, wait_send_all_might_not_block waits until the receiver receives";
    let (s, r) = make(ctx, maker).await?;
    let _close = CloseBoth(s.clone(), r.clone());
    let record: Rc<RefCell<Vec<&'static str>>> = Rc::default();
    let rec = record.clone();
    let out = open_nursery(|n| async move {
        let scope = n.cancel_scope();
        let rec1 = rec.clone();
        n.start_soon(async move {
            rec1.borrow_mut().push("waiter sleeping");
            checked(ctx, P, "wait_send_all_might_not_block", s.wait_send_all_might_not_block()).await?;
            rec1.borrow_mut().push("waiter woke up");
            scope.cancel();
            Ok::<_, BoxError>(())
        })?;
        wait_all_tasks_blocked().await?;
        n.start_soon(async move {
            // Give wait_send_all_might_not_block a chance to return early.
            wait_all_tasks_blocked().await?;
            rec.borrow_mut().push("receiver starting");
            let mut buf = vec![0u8; UNCLOG_BUFFER];
            while r.receive_some(&mut buf).await? > 0 {}
            Ok::<_, BoxError>(())
        })?;
        Ok::<_, BoxError>(())
    })
    .await;
    settle(ctx, P, out)?;
    let got = record.borrow().clone();
    let want = ["waiter sleeping", "receiver starting", "waiter woke up"];
    ctx.ensure(got == want, P, || format!("the events happened in the order {got:?}, expected {want:?}"))
}

async fn send_side_conflicts<M>(ctx: Ctx, maker: &mut M) -> Result<(), BoxError>
where
    M: PairMaker,
    M::A: SendStream + 'static,
    M::B: ReceiveStream + 'static,
{
    let (s, r) = make(ctx, maker).await?;
    let _close = CloseBoth(s.clone(), r.clone());
    let (s1, s2) = (s.clone(), s.clone());
    expect_one_busy(
        ctx,
        "two wait_send_all_might_not_block calls at once: one fails with BusyResource",
        async move { s1.wait_send_all_might_not_block().await },
        async move { s2.wait_send_all_might_not_block().await },
    )
    .await?;
    // The blocked wait was cancelled, which leaves a stream as it was, so
    // this pair serves once more. A blocked send_all that is cancelled may
    // break a stream (a TLS stream cancelled mid-record), so after the
    // conflict involving send_all, the next one gets a fresh pair (as in
    // Trio).
    let (s1, s2) = (s.clone(), s.clone());
    expect_one_busy(
        ctx,
        "wait_send_all_might_not_block and send_all at once: one fails with BusyResource",
        async move { s1.wait_send_all_might_not_block().await },
        async move { s2.send_all(b"123").await },
    )
    .await?;

    let (s, r) = make(ctx, maker).await?;
    let _close = CloseBoth(s.clone(), r.clone());
    let (s1, s2) = (s.clone(), s.clone());
    expect_one_busy(
        ctx,
        "two send_all calls at once: one fails with BusyResource",
        async move { s1.send_all(b"123").await },
        async move { s2.send_all(b"123").await },
    )
    .await
}

/// Closing the receiver lets a waiting (or later)
/// `wait_send_all_might_not_block` return: the next send will not block,
/// it will fail.
async fn receiver_close_releases_wait<M>(ctx: Ctx, maker: &mut M) -> Result<(), BoxError>
where
    M: PairMaker,
    M::A: SendStream + 'static,
    M::B: ReceiveStream + 'static,
{
    const WAKES: &str =
        "closing the receiving end wakes a blocked wait_send_all_might_not_block (Ok or BrokenResource)";
    const AFTER: &str =
        "once the receiving end is closed, wait_send_all_might_not_block returns (Ok or BrokenResource)";
    for (property, close_first) in [(WAKES, false), (AFTER, true)] {
        let (s, r) = make(ctx, maker).await?;
        let _close = CloseBoth(s.clone(), r.clone());
        if close_first {
            r.close();
        }
        let s1 = s.clone();
        let wait = async move {
            measured(ctx, property, "wait_send_all_might_not_block", s1.wait_send_all_might_not_block()).await
        };
        let (out, ()) = op_then(ctx, property, wait, async { r.close() }, IfBlocked::Wait).await?;
        match out {
            None => return Err(ctx.fail(property, "wait_send_all_might_not_block was still blocked")),
            Some(Err(failed)) => return Err(failed),
            Some(Ok(Ok(()))) => {}
            Some(Ok(Err(e))) if Want::Broken.matches(&e) => {}
            Some(Ok(Err(e))) => {
                return Err(
                    ctx.fail(property, format!("wait_send_all_might_not_block failed with {}", describe_err(&e)))
                )
            }
        }
    }
    Ok(())
}

/// Closing the sending end wakes its own blocked send-side operations with
/// `ClosedResource`.
async fn sender_close_wakes_send_side<M>(ctx: Ctx, maker: &mut M) -> Result<(), BoxError>
where
    M: PairMaker,
    M::A: SendStream + 'static,
    M::B: ReceiveStream + 'static,
{
    const SEND: &str = "closing the sending end wakes a blocked send_all with ClosedResource";
    const WAIT: &str = "closing the sending end wakes a blocked wait_send_all_might_not_block with ClosedResource";
    for (property, send) in [(SEND, true), (WAIT, false)] {
        let (s, r) = make(ctx, maker).await?;
        let _close = CloseBoth(s.clone(), r.clone());
        let s1 = s.clone();
        let op = async move {
            if send {
                s1.send_all(b"xyzzy").await
            } else {
                s1.wait_send_all_might_not_block().await
            }
        };
        let (out, ()) = op_then(ctx, property, op, async { s.close() }, IfBlocked::Cancel).await?;
        match out {
            None => return Err(ctx.fail(property, "the operation was still blocked after the close")),
            Some(res) => expect_err(
                ctx,
                property,
                if send { "send_all" } else { "wait_send_all_might_not_block" },
                res,
                Want::Closed,
            )?,
        }
    }
    Ok(())
}

/// Cancelling the scope of a blocked send-side operation wakes it with
/// `Cancelled` (rule C15). (A send cancelled part-way may leave the stream
/// broken for sending; each case gets a fresh pair.)
async fn cancel_wakes_send_side<M>(ctx: Ctx, maker: &mut M) -> Result<(), BoxError>
where
    M: PairMaker,
    M::A: SendStream + 'static,
    M::B: ReceiveStream + 'static,
{
    const SEND: &str = "cancelling a blocked send_all wakes it with Cancelled";
    const WAIT: &str = "cancelling a blocked wait_send_all_might_not_block wakes it with Cancelled";
    for (property, send) in [(SEND, true), (WAIT, false)] {
        let (s, r) = make(ctx, maker).await?;
        let _close = CloseBoth(s.clone(), r.clone());
        let scope = CancelScope::new();
        let (scope1, s1) = (scope.clone(), s.clone());
        let op = async move {
            scope1
                .run(async {
                    if send {
                        s1.send_all(b"xyzzy").await
                    } else {
                        s1.wait_send_all_might_not_block().await
                    }
                })
                .await
        };
        let (out, ()) = op_then(ctx, property, op, async { scope.cancel() }, IfBlocked::Cancel).await?;
        match out {
            Some(Ok(None)) => {}
            Some(other) => return Err(ctx.fail(property, format!("the operation gave {}", describe_scoped(&other)))),
            None => return Err(ctx.fail(property, "the operation was still blocked after its scope was cancelled")),
        }
    }
    Ok(())
}
