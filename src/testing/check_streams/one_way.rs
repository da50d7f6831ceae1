//! The one-way checks (Trio's `check_one_way_stream`), each on the pair
//! Trio uses for it, in Trio's order, plus two of trioxide's rules: a
//! receive cancelled while waiting takes nothing (I3), and an operation
//! cancelled before it started changes nothing.

use std::io;
use std::rc::Rc;

use crate::kernel::cancel::CancelScope;
use crate::kernel::error::{BoxError, Cancelled};
use crate::nursery::open_nursery;
use crate::stream::{ReceiveStream, Resource, SendStream};
use crate::testing::check_streams::support::{
    checked, describe, describe_err, expect_err, expect_one_busy, make, measured, op_then, receive_expecting, settle,
    CloseBoth, Ctx, IfBlocked, Want,
};
use crate::testing::check_streams::{clogged, PairMaker};
use crate::testing::wait_all_tasks_blocked;

/// How many 100-byte sends may still succeed after the receiving end was
/// closed before the check gives up on seeing `BrokenResource`: 1 MB, far
/// more than any kernel socket buffer that might take data before the
/// peer's reset arrives (Trio loops without a bound).
const MAX_SENDS_AFTER_CLOSE: usize = 10_000;

/// The one-way checks on pairs from `maker`, and the clogged ones if a
/// clogged maker is given.
pub(super) async fn check<M>(ctx: Ctx, maker: &mut M, clogged: Option<&mut M>) -> Result<(), BoxError>
where
    M: PairMaker,
    M::A: SendStream + 'static,
    M::B: ReceiveStream + 'static,
{
    basics_and_closing(ctx, maker).await?;
    data_then_close(ctx, maker).await?;
    receiver_closed_first(ctx, maker).await?;
    sender_closed_first(ctx, maker).await?;
    cancelled_before_starting(ctx, maker).await?;
    close_wakes_receive(ctx, maker).await?;
    cancelled_receive_takes_nothing(ctx, maker).await?;
    if let Some(clogged_maker) = clogged {
        clogged::check(ctx, clogged_maker).await?;
    }
    Ok(())
}

/// Sends `sends` one after the other in one task while another receives
/// `want` with buffers of `max` bytes; every operation's first call must
/// be a checkpoint.
pub(super) async fn transfer<S, R>(
    ctx: Ctx,
    property: &'static str,
    s: &Rc<S>,
    r: &Rc<R>,
    sends: &'static [&'static [u8]],
    max: usize,
    want: &'static [u8],
) -> Result<(), BoxError>
where
    S: SendStream + 'static,
    R: ReceiveStream + 'static,
{
    let (s, r) = (s.clone(), r.clone());
    let out = open_nursery(|n| async move {
        n.start_soon(async move {
            for data in sends {
                checked(ctx, property, "send_all", s.send_all(data)).await?;
            }
            Ok::<_, BoxError>(())
        })?;
        n.start_soon(async move { receive_expecting(ctx, property, &*r, max, want).await })?;
        Ok::<_, BoxError>(())
    })
    .await;
    settle(ctx, property, out)
}

/// Sends 100 bytes at a time until `send_all` fails, which must be with
/// `BrokenResource` (the receiving end is closed).
async fn send_until_broken(ctx: Ctx, property: &'static str, s: &impl SendStream) -> Result<(), BoxError> {
    for _ in 0..MAX_SENDS_AFTER_CLOSE {
        match measured(ctx, property, "send_all", s.send_all(&[b'x'; 100])).await? {
            Ok(()) => {}
            Err(e) if Want::Broken.matches(&e) => return Ok(()),
            Err(e) => return Err(ctx.fail(property, format!("send_all failed with {}", describe_err(&e)))),
        }
    }
    Err(ctx.fail(property, format!("send_all still succeeded after {MAX_SENDS_AFTER_CLOSE} sends of 100 bytes")))
}

/// Trio's first pair: basic transfers, argument checking, busy receivers,
/// `wait_send_all_might_not_block`, then closing each end.
async fn basics_and_closing<M>(ctx: Ctx, maker: &mut M) -> Result<(), BoxError>
where
    M: PairMaker,
    M::A: SendStream + 'static,
    M::B: ReceiveStream + 'static,
{
    let (s, r) = make(ctx, maker).await?;
    let _close = CloseBoth(s.clone(), r.clone());

    transfer(ctx, "a byte sent with send_all comes out of receive_some", &s, &r, &[b"x"], 1, b"x").await?;
    transfer(ctx, "sending no data is allowed and sends nothing", &s, &r, &[b"", b"y"], 1, b"y").await?;
    const EMPTY: &str = "receive_some into an empty buffer fails with InvalidInput";
    expect_err(ctx, EMPTY, "receive_some(&mut [])", r.receive_some(&mut []).await, Want::InvalidInput)?;
    transfer(ctx, "receive_some with a large buffer returns what was sent", &s, &r, &[b"x"], 4096, b"x").await?;

    let (r1, r2) = (r.clone(), r.clone());
    expect_one_busy(
        ctx,
        "two receive_some calls at once: one fails with BusyResource",
        async move { r1.receive_some(&mut [0u8; 1]).await },
        async move { r2.receive_some(&mut [0u8; 1]).await },
    )
    .await?;

    // A stream need not buffer, so `wait_send_all_might_not_block` may wait
    // for a receiver; with one waiting it must return.
    const WAIT: &str = "wait_send_all_might_not_block returns while a receive_some is waiting";
    let (s1, r1) = (s.clone(), r.clone());
    let out = open_nursery(|n| async move {
        let scope = n.cancel_scope();
        n.start_soon(async move {
            checked(ctx, WAIT, "wait_send_all_might_not_block", s1.wait_send_all_might_not_block()).await?;
            scope.cancel();
            Ok::<_, BoxError>(())
        })?;
        n.start_soon(async move {
            let _ = r1.receive_some(&mut [0u8; 1]).await;
        })?;
        Ok::<_, BoxError>(())
    })
    .await;
    settle(ctx, WAIT, out)?;

    const BROKEN: &str = "after the receiving end is closed, send_all fails with BrokenResource";
    let (s1, r1) = (s.clone(), r.clone());
    let out = open_nursery(|n| async move {
        n.start_soon(async move { send_until_broken(ctx, BROKEN, &*s1).await })?;
        n.start_soon(async move { r1.close() })?;
        Ok::<_, BoxError>(())
    })
    .await;
    settle(ctx, BROKEN, out)?;
    const STAYS: &str = "once a send has failed with BrokenResource, send_all keeps failing with it";
    expect_err(ctx, STAYS, "send_all", s.send_all(&[b'x'; 100]).await, Want::Broken)?;
    const CLOSED_RX: &str = "after close, receive_some fails with ClosedResource";
    expect_err(ctx, CLOSED_RX, "receive_some", r.receive_some(&mut [0u8; 4096]).await, Want::Closed)?;

    // Closing twice is fine.
    r.close();
    r.close();
    s.close();
    const CLOSED_TX: &str =
        "after close, send_all (even of no data) and wait_send_all_might_not_block fail with ClosedResource";
    expect_err(ctx, CLOSED_TX, "send_all", s.send_all(&[b'x'; 100]).await, Want::Closed)?;
    expect_err(ctx, CLOSED_TX, "send_all(b\"\")", s.send_all(b"").await, Want::Closed)?;
    let waited = s.wait_send_all_might_not_block().await;
    expect_err(ctx, CLOSED_TX, "wait_send_all_might_not_block", waited, Want::Closed)?;
    s.close();
    s.close();
    Ok(())
}

/// Data sent just before the sender closes is all received, then the end
/// of the stream, even if the receiver starts late.
async fn data_then_close<M>(ctx: Ctx, maker: &mut M) -> Result<(), BoxError>
where
    M: PairMaker,
    M::A: SendStream + 'static,
    M::B: ReceiveStream + 'static,
{
    const P: &str = "data sent before the sending end closes is received, then receive_some returns 0";
    let (s, r) = make(ctx, maker).await?;
    let _close = CloseBoth(s.clone(), r.clone());
    let out = open_nursery(|n| async move {
        n.start_soon(async move {
            checked(ctx, P, "send_all", s.send_all(b"y")).await?;
            s.close();
            Ok::<_, BoxError>(())
        })?;
        n.start_soon(async move {
            // Let the sender get as far as it can (some streams block in
            // send_all until the data is received).
            wait_all_tasks_blocked().await?;
            receive_expecting(ctx, P, &*r, 1, b"y").await?;
            receive_expecting(ctx, P, &*r, 1, b"").await?;
            r.close();
            Ok::<_, BoxError>(())
        })?;
        Ok::<_, BoxError>(())
    })
    .await;
    settle(ctx, P, out)
}

async fn receiver_closed_first<M>(ctx: Ctx, maker: &mut M) -> Result<(), BoxError>
where
    M: PairMaker,
    M::A: SendStream + 'static,
    M::B: ReceiveStream + 'static,
{
    let (s, r) = make(ctx, maker).await?;
    let _close = CloseBoth(s.clone(), r.clone());
    r.close();
    send_until_broken(ctx, "sending to a closed receiving end fails with BrokenResource", &*s).await?;
    const P: &str = "after close, receive_some fails with ClosedResource";
    expect_err(ctx, P, "receive_some", r.receive_some(&mut [0u8; 4096]).await, Want::Closed)
}

async fn sender_closed_first<M>(ctx: Ctx, maker: &mut M) -> Result<(), BoxError>
where
    M: PairMaker,
    M::A: SendStream + 'static,
    M::B: ReceiveStream + 'static,
{
    let (s, r) = make(ctx, maker).await?;
    let _close = CloseBoth(s.clone(), r.clone());
    s.close();
    const SEND: &str = "after close, send_all fails with ClosedResource";
    expect_err(ctx, SEND, "send_all", s.send_all(b"123").await, Want::Closed)?;
    // Either a clean end of stream or BrokenResource; not data, not a hang.
    const P: &str = "after the sending end closes, receive_some returns 0 (or fails with BrokenResource)";
    match measured(ctx, P, "receive_some", r.receive_some(&mut [0u8; 1])).await? {
        Ok(0) => Ok(()),
        Err(e) if Want::Broken.matches(&e) => Ok(()),
        other => Err(ctx.fail(P, format!("receive_some gave {}", describe(&other)))),
    }
}

/// Operations in an already cancelled scope report `Cancelled` and change
/// nothing: the stream works normally afterwards.
async fn cancelled_before_starting<M>(ctx: Ctx, maker: &mut M) -> Result<(), BoxError>
where
    M: PairMaker,
    M::A: SendStream + 'static,
    M::B: ReceiveStream + 'static,
{
    const P: &str = "send_all and receive_some in a cancelled scope fail with Cancelled";
    let (s, r) = make(ctx, maker).await?;
    let _close = CloseBoth(s.clone(), r.clone());
    let scope = CancelScope::new();
    scope.cancel();
    let out = scope
        .run(async {
            let sent = s.send_all(b"x").await;
            let received = r.receive_some(&mut [0u8; 1]).await;
            Ok::<_, Cancelled>((sent, received))
        })
        .await?;
    let Some((sent, received)) = out else {
        return Err(ctx.fail(P, "the cancelled scope caught a Cancelled the body did not return"));
    };
    expect_err(ctx, P, "send_all", sent, Want::Cancelled)?;
    expect_err(ctx, P, "receive_some", received, Want::Cancelled)?;
    const AFTER: &str = "a send_all or receive_some that failed with Cancelled changed nothing";
    transfer(ctx, AFTER, &s, &r, &[b"z"], 1, b"z").await
}

async fn close_wakes_receive<M>(ctx: Ctx, maker: &mut M) -> Result<(), BoxError>
where
    M: PairMaker,
    M::A: SendStream + 'static,
    M::B: ReceiveStream + 'static,
{
    const P: &str = "closing the receiving end wakes a blocked receive_some with ClosedResource";
    let (s, r) = make(ctx, maker).await?;
    let _close = CloseBoth(s.clone(), r.clone());
    let r1 = r.clone();
    let (out, ()) =
        op_then(ctx, P, async move { r1.receive_some(&mut [0u8; 10]).await }, async { r.close() }, IfBlocked::Cancel)
            .await?;
    match out {
        Some(res) => expect_err(ctx, P, "receive_some", res, Want::Closed),
        None => Err(ctx.fail(P, "receive_some was still blocked after the close")),
    }
}

/// Rule I3: a receive cancelled while it waits takes nothing, so the next
/// one gets every byte.
async fn cancelled_receive_takes_nothing<M>(ctx: Ctx, maker: &mut M) -> Result<(), BoxError>
where
    M: PairMaker,
    M::A: SendStream + 'static,
    M::B: ReceiveStream + 'static,
{
    const P: &str = "cancelling a blocked receive_some wakes it with Cancelled";
    let (s, r) = make(ctx, maker).await?;
    let _close = CloseBoth(s.clone(), r.clone());
    let scope = CancelScope::new();
    let (scope1, r1) = (scope.clone(), r.clone());
    let receive = async move { scope1.run(async { r1.receive_some(&mut [0u8; 10]).await }).await };
    let (out, ()) = op_then(ctx, P, receive, async { scope.cancel() }, IfBlocked::Cancel).await?;
    match out {
        Some(Ok(None)) => {}
        Some(other) => return Err(ctx.fail(P, format!("the cancelled receive_some gave {}", describe_scoped(&other)))),
        None => return Err(ctx.fail(P, "receive_some was still blocked after its scope was cancelled")),
    }
    const AFTER: &str = "a receive_some cancelled while waiting takes no data: the next one gets every byte";
    transfer(ctx, AFTER, &s, &r, &[b"ab"], 10, b"ab").await
}

/// The outcome of an operation run in a cancel scope, for a message.
pub(super) fn describe_scoped<T: std::fmt::Debug>(r: &io::Result<Option<T>>) -> String {
    match r {
        Ok(None) => "Cancelled".to_string(),
        Ok(Some(v)) => format!("Ok({v:?})"),
        Err(e) => describe_err(e),
    }
}
