//! The two-way checks (Trio's `check_two_way_stream`: the one-way checks in
//! both directions, data both ways at once, closing) and the half-close
//! checks (Trio's `check_half_closeable_stream`).

use std::rc::Rc;

use crate::kernel::error::BoxError;
use crate::kernel::rng::Rng;
use crate::nursery::open_nursery;
use crate::stream::{HalfCloseableStream, Resource, SendStream, Stream};
use crate::testing::check_streams::support::{
    checked, describe_err, expect_err, make, op_then, receive_expecting, settle, CloseBoth, Ctx, IfBlocked, Want,
};
use crate::testing::check_streams::{one_way, Flipped, PairMaker};
use crate::testing::wait_all_tasks_blocked;

/// Bytes sent each way at once: 256 KiB, several times a socket's default
/// buffers, so both directions block and unblock many times while the
/// other flows. (Trio sends 1 MiB; a quarter finds the same bugs in a
/// quarter of the time.)
const DUPLEX_BYTES: usize = 256 * 1024;

/// Largest chunk sent or received at once in the duplex check (Trio's
/// `CHUNK_SIZE_MAX`); sizes are drawn from 1 to this.
const CHUNK_MAX: usize = 16 * 1024;

pub(super) async fn check_two_way<M>(ctx: Ctx, maker: &mut M, mut clogged: Option<&mut M>) -> Result<(), BoxError>
where
    M: PairMaker,
    M::A: Stream + 'static,
    M::B: Stream + 'static,
{
    one_way::check(ctx, maker, clogged.as_deref_mut()).await?;
    let mut flipped = Flipped(&mut *maker);
    let mut flipped_clogged = clogged.map(Flipped);
    let swapped = Ctx { swapped: true, ..ctx };
    one_way::check(swapped, &mut flipped, flipped_clogged.as_mut()).await?;

    let (s1, s2) = make(ctx, maker).await?;
    let _close = CloseBoth(s1.clone(), s2.clone());
    duplex(ctx, &s1, &s2).await?;

    const P: &str = "closing one end makes receive_some on the other return 0";
    let out = open_nursery(|n| async move {
        n.start_soon(async move {
            receive_expecting(ctx, P, &*s2, 10, b"").await?;
            s2.close();
            Ok::<_, BoxError>(())
        })?;
        n.start_soon(async move { s1.close() })?;
        Ok::<_, BoxError>(())
    })
    .await;
    settle(ctx, P, out)
}

/// `len` bytes from a seeded generator.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A chunk size from 1 to [`CHUNK_MAX`].
fn chunk_size(rng: &mut Rng) -> usize {
    1 + (rng.next_u64() % CHUNK_MAX as u64) as usize
}

const DUPLEX: &str = "data flows both ways at once (256 KiB each way in random chunks), intact and in order";

async fn send_chunks(ctx: Ctx, s: &impl Stream, data: &[u8], seed: u64) -> Result<(), BoxError> {
    let mut rng = Rng::new(seed);
    let mut rest = data;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(chunk_size(&mut rng).min(rest.len()));
        s.send_all(chunk).await.map_err(|e| {
            let at = data.len() - rest.len();
            ctx.fail(DUPLEX, format!("send_all failed at byte {at}: {}", describe_err(&e)))
        })?;
        rest = tail;
    }
    Ok(())
}

async fn receive_chunks(ctx: Ctx, s: &impl Stream, want: &[u8], seed: u64) -> Result<(), BoxError> {
    let mut rng = Rng::new(seed);
    let mut buf = vec![0u8; CHUNK_MAX];
    let mut got = 0;
    while got < want.len() {
        let max = chunk_size(&mut rng);
        let n = s
            .receive_some(&mut buf[..max])
            .await
            .map_err(|e| ctx.fail(DUPLEX, format!("receive_some failed after {got} bytes: {}", describe_err(&e))))?;
        if n == 0 {
            return Err(ctx.fail(DUPLEX, format!("the stream ended after {got} of {} bytes", want.len())));
        }
        if n > max || got + n > want.len() {
            return Err(
                ctx.fail(DUPLEX, format!("receive_some returned {n} bytes for a {max}-byte buffer after {got} bytes"))
            );
        }
        if let Some(i) = buf[..n].iter().zip(&want[got..got + n]).position(|(a, b)| a != b) {
            let at = got + i;
            return Err(ctx.fail(DUPLEX, format!("byte {at} differs: got {}, sent {}", buf[i], want[at])));
        }
        got += n;
    }
    Ok(())
}

/// Trio's duplex check: each end sends while the other does, in random
/// chunks, and each receiver compares every byte.
async fn duplex<A, B>(ctx: Ctx, s1: &Rc<A>, s2: &Rc<B>) -> Result<(), BoxError>
where
    A: Stream + 'static,
    B: Stream + 'static,
{
    let forth: Rc<[u8]> = random_bytes(0, DUPLEX_BYTES).into();
    let back: Rc<[u8]> = forth.iter().rev().copied().collect();
    let (a1, a2, b1, b2) = (s1.clone(), s1.clone(), s2.clone(), s2.clone());
    let out = open_nursery(|n| async move {
        let (f1, f2, k1, k2) = (forth.clone(), forth, back.clone(), back);
        n.start_soon(async move { send_chunks(ctx, &*a1, &f1, 1).await })?;
        n.start_soon(async move { send_chunks(ctx, &*b1, &k1, 2).await })?;
        n.start_soon(async move { receive_chunks(ctx, &*a2, &k2, 3).await })?;
        n.start_soon(async move { receive_chunks(ctx, &*b2, &f2, 4).await })?;
        Ok::<_, BoxError>(())
    })
    .await;
    settle(ctx, DUPLEX, out)
}

/// Sends "x" then `send_eof` (which must be a checkpoint).
async fn send_x_then_eof(ctx: Ctx, property: &'static str, s: &impl HalfCloseableStream) -> Result<(), BoxError> {
    checked(ctx, property, "send_all", s.send_all(b"x")).await?;
    checked(ctx, property, "send_eof", s.send_eof()).await
}

/// Once the sender is as far as it gets, receives "x" then the end.
async fn expect_x_then_eof(ctx: Ctx, property: &'static str, r: &impl HalfCloseableStream) -> Result<(), BoxError> {
    wait_all_tasks_blocked().await?;
    receive_expecting(ctx, property, r, 10, b"x").await?;
    receive_expecting(ctx, property, r, 10, b"").await
}

async fn half_close_one_way<A, B>(ctx: Ctx, property: &'static str, s: &Rc<A>, r: &Rc<B>) -> Result<(), BoxError>
where
    A: HalfCloseableStream + 'static,
    B: HalfCloseableStream + 'static,
{
    let (s, r) = (s.clone(), r.clone());
    let out = open_nursery(|n| async move {
        n.start_soon(async move { send_x_then_eof(ctx, property, &*s).await })?;
        n.start_soon(async move { expect_x_then_eof(ctx, property, &*r).await })?;
        Ok::<_, BoxError>(())
    })
    .await;
    settle(ctx, property, out)
}

pub(super) async fn check_half_close<M>(ctx: Ctx, maker: &mut M, clogged: Option<&mut M>) -> Result<(), BoxError>
where
    M: PairMaker,
    M::A: HalfCloseableStream + 'static,
    M::B: HalfCloseableStream + 'static,
{
    let (s1, s2) = make(ctx, maker).await?;
    let _close = CloseBoth(s1.clone(), s2.clone());
    const EOF: &str = "after send_all and send_eof, the peer receives the data, then 0";
    half_close_one_way(ctx, EOF, &s1, &s2).await?;
    const SEND: &str = "after send_eof, send_all fails with ClosedResource";
    expect_err(ctx, SEND, "send_all", s1.send_all(b"y").await, Want::Closed)?;
    checked(ctx, "send_eof a second time succeeds", "send_eof", s1.send_eof()).await?;
    const BACK: &str = "after one end's send_eof, data and send_eof still flow from the other end";
    half_close_one_way(ctx, BACK, &s2, &s1).await?;

    let Some(clogged) = clogged else { return Ok(()) };
    const DURING_SEND: &str = "send_eof while a send_all is blocked fails with BusyResource";
    const DURING_WAIT: &str = "send_eof while a wait_send_all_might_not_block is blocked fails with BusyResource";
    for (property, send) in [(DURING_SEND, true), (DURING_WAIT, false)] {
        let (s1, s2) = make(ctx, clogged).await?;
        let _close = CloseBoth(s1.clone(), s2.clone());
        let s = s1.clone();
        let op = async move {
            if send {
                s.send_all(b"x").await
            } else {
                s.wait_send_all_might_not_block().await
            }
        };
        let (_, eof) = op_then(ctx, property, op, s1.send_eof(), IfBlocked::Cancel).await?;
        expect_err(ctx, property, "send_eof", eof, Want::Busy)?;
    }
    Ok(())
}
