//! Conformance checks for stream types (Trio's `check_one_way_stream`,
//! `check_two_way_stream` and `check_half_closeable_stream`): run them on
//! your own implementation of the [stream traits](crate::SendStream) to
//! learn whether it keeps the rules every trioxide stream keeps.
//!
//! Each check makes fresh pairs with the `maker` you give it, exercises one
//! property at a time, and returns the first property that does not hold
//! as a [`CheckFailed`] naming it. The properties, in order:
//!
//! * one-way ([`check_one_way_stream`]): data sent arrives; an empty send
//!   is allowed and means nothing; `receive_some` into an empty buffer is
//!   `InvalidInput`; two concurrent receives are `BusyResource`;
//!   `wait_send_all_might_not_block` returns while a receive waits; closing
//!   the receiver makes sends fail with `BrokenResource` (for good) and
//!   receives with `ClosedResource`; closing the sender makes its
//!   operations fail with `ClosedResource`; data sent before a close is
//!   received, then 0; operations in a cancelled scope report `Cancelled`
//!   and change nothing; closing wakes a blocked receive with
//!   `ClosedResource`; a cancelled receive loses no bytes. With a clogged
//!   maker also: `wait_send_all_might_not_block` waits for the receiver;
//!   concurrent send-side operations are `BusyResource`; closing either end
//!   wakes blocked send-side operations; cancellation wakes them.
//!   Every operation that succeeds must be a checkpoint.
//! * two-way ([`check_two_way_stream`]): the one-way checks in both
//!   directions, then a few hundred KB both ways at once in random chunks,
//!   and closing one end ending the other's stream.
//! * half-closeable ([`check_half_closeable_stream`]): the two-way checks,
//!   then `send_eof`: the peer reads the data then 0, later sends are
//!   `ClosedResource`, a second `send_eof` is fine, data still flows back;
//!   with a clogged maker, `send_eof` during a send-side operation is
//!   `BusyResource`.
//!
//! The checks use [`wait_all_tasks_blocked`](crate::testing::wait_all_tasks_blocked)
//! to let operations reach their blocking point, and never sleep. Where a
//! rule says an operation must wake (closing wakes waiters), a check that
//! finds it still blocked once everything is idle reports that instead of
//! hanging; where an operation may legitimately wait for the other side,
//! a broken stream can make the check hang, as Trio's would: wrap the call
//! in [`fail_after`](crate::fail_after) if that matters.

mod clogged;
mod one_way;
mod support;
mod two_way;

use std::fmt;
use std::future::Future;
use std::io;

use crate::kernel::error::BoxError;
use crate::stream::{HalfCloseableStream, ReceiveStream, SendStream, Stream};
use support::Ctx;

/// A conformance check found a property that does not hold. Returned
/// (boxed) by [`check_one_way_stream`] and its siblings.
///
/// ```
/// use trioxide::testing::CheckFailed;
/// # #[allow(dead_code)] fn f(err: trioxide::BoxError) {
/// if let Some(failed) = err.downcast_ref::<CheckFailed>() {
///     eprintln!("property {:?} does not hold: {}", failed.property(), failed.detail());
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CheckFailed {
    check: &'static str,
    swapped: bool,
    property: &'static str,
    detail: String,
}

impl CheckFailed {
    /// The check that failed, such as `"check_two_way_stream"`.
    ///
    /// ```
    /// use trioxide::{run, BoxError};
    /// use trioxide::testing::{check_one_way_stream, CheckFailed, MemoryReceiveStream, MemorySendStream};
    ///
    /// run(async {
    ///     // A broken "pair": the receiver is not connected to the sender, and
    ///     // holds a byte nobody sent.
    ///     let maker = || async {
    ///         let rx = MemoryReceiveStream::new();
    ///         rx.put_data(b"?")?;
    ///         Ok((MemorySendStream::new(), rx))
    ///     };
    ///     let err = check_one_way_stream(maker, None).await.unwrap_err();
    ///     let failed = err.downcast_ref::<CheckFailed>().unwrap();
    ///     assert_eq!(failed.check(), "check_one_way_stream");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn check(&self) -> &'static str {
        self.check
    }

    /// The property that does not hold, as a sentence: the first one found
    /// (the checks stop there).
    ///
    /// ```
    /// use trioxide::{run, BoxError};
    /// use trioxide::testing::{check_one_way_stream, CheckFailed, MemoryReceiveStream, MemorySendStream};
    ///
    /// run(async {
    ///     // A broken "pair": the receiver is not connected to the sender, and
    ///     // holds a byte nobody sent.
    ///     let maker = || async {
    ///         let rx = MemoryReceiveStream::new();
    ///         rx.put_data(b"?")?;
    ///         Ok((MemorySendStream::new(), rx))
    ///     };
    ///     let err = check_one_way_stream(maker, None).await.unwrap_err();
    ///     let failed = err.downcast_ref::<CheckFailed>().unwrap();
    ///     assert_eq!(failed.property(), "a byte sent with send_all comes out of receive_some");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn property(&self) -> &'static str {
        self.property
    }

    /// What was observed instead.
    ///
    /// ```
    /// use trioxide::{run, BoxError};
    /// use trioxide::testing::{check_one_way_stream, CheckFailed, MemoryReceiveStream, MemorySendStream};
    ///
    /// run(async {
    ///     // A broken "pair": the receiver is not connected to the sender, and
    ///     // holds a byte nobody sent.
    ///     let maker = || async {
    ///         let rx = MemoryReceiveStream::new();
    ///         rx.put_data(b"?")?;
    ///         Ok((MemorySendStream::new(), rx))
    ///     };
    ///     let err = check_one_way_stream(maker, None).await.unwrap_err();
    ///     let failed = err.downcast_ref::<CheckFailed>().unwrap();
    ///     assert!(failed.detail().contains("received"), "{}", failed.detail());
    ///     assert!(failed.to_string().starts_with("check_one_way_stream failed: "));
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// True if the failure was found with the pair's ends swapped (a
    /// two-way check runs the one-way checks in both directions).
    ///
    /// ```
    /// use trioxide::{run, BoxError, StapledStream};
    /// use trioxide::testing::{check_two_way_stream, memory_stream_one_way_pair, CheckFailed};
    ///
    /// run(async {
    ///     // Sound from a to b; from b to a, a byte appears that b never sent.
    ///     let maker = || async {
    ///         let (a_to_b, b_from_a) = memory_stream_one_way_pair();
    ///         let (b_to_a, a_from_b) = memory_stream_one_way_pair();
    ///         a_from_b.put_data(b"?")?;
    ///         Ok((StapledStream::new(a_to_b, a_from_b), StapledStream::new(b_to_a, b_from_a)))
    ///     };
    ///     let err = check_two_way_stream(maker, None).await.unwrap_err();
    ///     let failed = err.downcast_ref::<CheckFailed>().unwrap();
    ///     assert_eq!(failed.check(), "check_two_way_stream");
    ///     assert!(failed.with_ends_swapped()); // found sending from b to a
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn with_ends_swapped(&self) -> bool {
        self.swapped
    }
}

impl fmt::Display for CheckFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let swapped = if self.swapped { " (with the ends swapped)" } else { "" };
        write!(f, "{} failed{swapped}: {}: {}", self.check, self.property, self.detail)
    }
}

impl std::error::Error for CheckFailed {}

/// Something that makes connected stream pairs: what the checks call
/// `maker`. Implemented for every `FnMut() -> impl Future<Output =
/// io::Result<(A, B)>>`.
pub(super) trait PairMaker {
    type A;
    type B;
    fn make(&mut self) -> impl Future<Output = io::Result<(Self::A, Self::B)>>;
}

impl<M, Fut, A, B> PairMaker for M
where
    M: FnMut() -> Fut,
    Fut: Future<Output = io::Result<(A, B)>>,
{
    type A = A;
    type B = B;

    fn make(&mut self) -> impl Future<Output = io::Result<(A, B)>> {
        self()
    }
}

/// A maker whose pairs come out with their ends swapped.
pub(super) struct Flipped<'a, M>(&'a mut M);

impl<M: PairMaker> PairMaker for Flipped<'_, M> {
    type A = M::B;
    type B = M::A;

    async fn make(&mut self) -> io::Result<(M::B, M::A)> {
        let (a, b) = self.0.make().await?;
        Ok((b, a))
    }
}

/// Runs the generic one-way stream checks on pairs from `maker`: a
/// [`SendStream`] and the [`ReceiveStream`] it is connected to. Returns
/// the first property that does not hold as a [`CheckFailed`] (boxed).
///
/// `clogged_maker`, if given, makes pairs in which `send_all` and
/// `wait_send_all_might_not_block` block until the receiver receives (for
/// sockets: fill the send buffer first); it enables the checks of
/// blocked send-side operations. It has the same type as `maker`, so
/// `None` needs no annotation; for two different makers, write one
/// function with a "clogged" flag and pass two calls of it (second
/// example).
///
/// Tasks are `'static`, so the ends are shared through `Rc` internally;
/// both ends must be `'static`.
///
/// ```
/// use trioxide::{run, BoxError};
/// use trioxide::testing::{check_one_way_stream, lockstep_stream_one_way_pair, memory_stream_one_way_pair};
///
/// run(async {
///     check_one_way_stream(|| async { Ok(memory_stream_one_way_pair()) }, None).await?;
///     // A lockstep stream is always clogged: one maker in both roles.
///     let lockstep = || async { Ok(lockstep_stream_one_way_pair()) };
///     check_one_way_stream(lockstep, Some(lockstep)).await?;
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
///
/// Two makers of the same type: one closure per flag value.
///
/// ```no_run
/// use std::io;
/// use trioxide::{run, UnixStream};
/// use trioxide::testing::check_one_way_stream;
///
/// async fn unix_pair(clogged: bool) -> io::Result<(UnixStream, UnixStream)> {
///     let (a, b) = UnixStream::pair()?;
///     if clogged {
///         // fill a's send buffer so that its next send blocks
///     }
///     Ok((a, b))
/// }
///
/// run(async {
///     let maker = |clogged| move || unix_pair(clogged);
///     check_one_way_stream(maker(false), Some(maker(true))).await
/// }).unwrap();
/// ```
pub async fn check_one_way_stream<M, Fut, S, R>(mut maker: M, mut clogged_maker: Option<M>) -> Result<(), BoxError>
where
    M: FnMut() -> Fut,
    Fut: Future<Output = io::Result<(S, R)>>,
    S: SendStream + 'static,
    R: ReceiveStream + 'static,
{
    let ctx = Ctx { check: "check_one_way_stream", swapped: false };
    one_way::check(ctx, &mut maker, clogged_maker.as_mut()).await
}

/// Runs the generic two-way stream checks on pairs from `maker`: the
/// one-way checks in both directions, then data flowing both ways at once
/// and closing. See [`check_one_way_stream`] for `clogged_maker`.
///
/// ```
/// use trioxide::run;
/// use trioxide::testing::{check_two_way_stream, lockstep_stream_pair};
///
/// run(async {
///     let maker = || async { Ok(lockstep_stream_pair()) };
///     check_two_way_stream(maker, Some(maker)).await
/// }).unwrap();
/// ```
pub async fn check_two_way_stream<M, Fut, S1, S2>(mut maker: M, mut clogged_maker: Option<M>) -> Result<(), BoxError>
where
    M: FnMut() -> Fut,
    Fut: Future<Output = io::Result<(S1, S2)>>,
    S1: Stream + 'static,
    S2: Stream + 'static,
{
    let ctx = Ctx { check: "check_two_way_stream", swapped: false };
    two_way::check_two_way(ctx, &mut maker, clogged_maker.as_mut()).await
}

/// Runs the generic half-closeable stream checks on pairs from `maker`:
/// the two-way checks, then `send_eof`. See [`check_one_way_stream`] for
/// `clogged_maker`.
///
/// ```
/// use trioxide::{run, UnixStream};
/// use trioxide::testing::check_half_closeable_stream;
///
/// run(async {
///     check_half_closeable_stream(|| async { UnixStream::pair() }, None).await
/// }).unwrap();
/// ```
pub async fn check_half_closeable_stream<M, Fut, S1, S2>(
    mut maker: M,
    mut clogged_maker: Option<M>,
) -> Result<(), BoxError>
where
    M: FnMut() -> Fut,
    Fut: Future<Output = io::Result<(S1, S2)>>,
    S1: HalfCloseableStream + 'static,
    S2: HalfCloseableStream + 'static,
{
    let ctx = Ctx { check: "check_half_closeable_stream", swapped: false };
    two_way::check_two_way(ctx, &mut maker, clogged_maker.as_mut()).await?;
    two_way::check_half_close(ctx, &mut maker, clogged_maker.as_mut()).await
}
