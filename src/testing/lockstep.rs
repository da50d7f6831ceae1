//! Lockstep streams (Trio's `lockstep_stream_one_way_pair` and
//! `lockstep_stream_pair`): in-memory streams with no buffering at all.
//! `send_all` returns only once the receiver has taken every byte, so each
//! send waits for a receive: flow control at its most extreme, and a
//! ready-made "clogged" stream for the conformance checks.
//!
//! A `send_all` cancelled (or dropped) before the receiver took anything
//! takes its data back and leaves the stream as it was; cancelled after the
//! receiver took part of it, it leaves the peer holding an unknown prefix,
//! so the stream refuses further sends with
//! [`BrokenResource`](crate::BrokenResource), as a socket does (rule I3).
//!
//! **The poll level** ([`PollSend`], [`PollReceive`], and so `futures-io`).
//! `poll_receive` is `receive_some` one poll at a time. `poll_send` offers
//! its data to the receiver and returns `Pending` until the receiver has
//! taken some of it; the poll after that takes the rest back and reports
//! how many bytes were taken, as `write(2)` reports a prefix. Between the
//! two polls the offer stays in the stream, so the caller must poll again
//! with data that starts with the same bytes (every `AsyncWrite` caller
//! does): if it comes back with other bytes after the receiver took part
//! of the offer, the peer holds a prefix nobody can account for and the
//! stream is broken for sending, as after a cancelled `send_all`. A
//! cancelled poll with nothing taken yet takes the offer back; once bytes
//! were taken, their count wins over the cancel.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use crate::kernel::budget::after_io;
use crate::kernel::error::{BrokenResource, Cancelled, ClosedResource};
use crate::kernel::Core;
use crate::stream::poll::{PollReceive, PollSend};
use crate::stream::stapled::StapledStream;
use crate::testing::direction::{empty_buffer, Direction};
use crate::testing::halves::{one_way_halves, stapled_pair};
use crate::testing::memory_stream::take_into;

/// The state shared by the two ends of a one-way lockstep stream.
#[derive(Default)]
struct Lockstep {
    /// The data of the `send_all` in progress that the receiver has not
    /// taken yet. Empty whenever no send is in progress.
    data: RefCell<VecDeque<u8>>,
    sender_closed: Cell<bool>,
    receiver_closed: Cell<bool>,
    /// A `receive_some` is blocked waiting for data (what
    /// `wait_send_all_might_not_block` waits for).
    receiver_waiting: Cell<bool>,
    /// A send stopped after the receiver took part of its data.
    send_broken: Cell<bool>,
    /// The data a poll-level send offered (all of it; `data` holds what
    /// the receiver has not taken yet), until a later poll reports it.
    poll_offer: RefCell<Option<Vec<u8>>>,
    send: Direction,
    receive: Direction,
}

const RECEIVER_CLOSED: BrokenResource =
    BrokenResource { reason: "the receiving end of the lockstep stream was closed before it took all the data" };
const SEND_CANCELLED: BrokenResource =
    BrokenResource { reason: "an earlier send on this stream was cancelled after the receiver took part of its data" };
const POLL_OTHER_DATA: BrokenResource = BrokenResource {
    reason: "poll_send was polled again with other data after the receiver took part of the data it offered",
};

impl Lockstep {
    /// Takes back what an abandoned poll-level send offered; the stream is
    /// broken for sending if the receiver took part of it.
    fn take_back_poll_offer(&self) {
        if let Some(offer) = self.poll_offer.take() {
            let mut data = self.data.borrow_mut();
            if data.len() < offer.len() {
                self.send_broken.set(true);
            }
            data.clear();
        }
    }

    fn close_sender(&self) {
        self.sender_closed.set(true);
        self.receive.wake();
        self.send.wake();
    }

    fn close_receiver(&self) {
        self.receiver_closed.set(true);
        self.receive.wake();
        self.send.wake();
    }
}

/// Takes the data of a send that did not finish back out of the stream when
/// the send's future ends early (cancelled, failed or dropped). If the
/// receiver already took part of it, the stream is broken for sending.
struct PendingSend<'a> {
    state: &'a Lockstep,
    len: usize,
    finished: bool,
}

impl Drop for PendingSend<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut data = self.state.data.borrow_mut();
        if !data.is_empty() && data.len() < self.len {
            self.state.send_broken.set(true);
        }
        data.clear();
    }
}

/// The sending end of a one-way lockstep stream, made by
/// [`lockstep_stream_one_way_pair`]. Dropping it closes it.
///
/// ```
/// use trioxide::{run, open_nursery, BoxError};
/// use trioxide::testing::lockstep_stream_one_way_pair;
///
/// run(open_nursery(|n| async move {
///     let (tx, rx) = lockstep_stream_one_way_pair();
///     n.start_soon(async move {
///         let mut buf = [0u8; 3];
///         assert_eq!(rx.receive_some(&mut buf).await?, 3);
///         Ok::<_, BoxError>(())
///     })?;
///     tx.send_all(b"abc").await?; // returns once the receiver has all 3 bytes
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
pub struct LockstepSendStream {
    state: Rc<Lockstep>,
}

/// The receiving end of a one-way lockstep stream, made by
/// [`lockstep_stream_one_way_pair`]. Dropping it closes it.
///
/// ```
/// use trioxide::{run, BoxError};
/// use trioxide::testing::lockstep_stream_one_way_pair;
///
/// run(async {
///     let (tx, rx) = lockstep_stream_one_way_pair();
///     tx.close();
///     let mut buf = [0u8; 8];
///     assert_eq!(rx.receive_some(&mut buf).await?, 0);
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub struct LockstepReceiveStream {
    state: Rc<Lockstep>,
}

impl fmt::Debug for LockstepSendStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockstepSendStream")
            .field("closed", &self.state.sender_closed.get())
            .field("broken", &self.state.send_broken.get())
            .finish()
    }
}

impl fmt::Debug for LockstepReceiveStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockstepReceiveStream").field("closed", &self.state.receiver_closed.get()).finish()
    }
}

/// A connected one-way stream with no buffering: each `send_all` waits
/// until `receive_some` calls have taken all of its data.
///
/// ```
/// use trioxide::{run, open_nursery, BoxError};
/// use trioxide::testing::lockstep_stream_one_way_pair;
///
/// run(open_nursery(|n| async move {
///     let (tx, rx) = lockstep_stream_one_way_pair();
///     n.start_soon(async move { tx.send_all(b"hello").await })?;
///     let mut buf = [0u8; 2];
///     assert_eq!(rx.receive_some(&mut buf).await?, 2); // "he"; the send still waits
///     let mut rest = [0u8; 8];
///     assert_eq!(rx.receive_some(&mut rest).await?, 3); // "llo"; now it returns
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
pub fn lockstep_stream_one_way_pair() -> (LockstepSendStream, LockstepReceiveStream) {
    let state = Rc::new(Lockstep::default());
    (LockstepSendStream { state: state.clone() }, LockstepReceiveStream { state })
}

impl LockstepSendStream {
    /// Hands `data` to the receiver and waits until it has taken all of it
    /// (an empty `data` returns at once). A checkpoint.
    ///
    /// Errors: `ClosedResource` if this end is closed (also while waiting),
    /// `BusyResource` during another send-side operation, `BrokenResource`
    /// if the receiving end is closed before it took everything, or if an
    /// earlier send was cancelled part-way.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use std::time::Duration;
    /// use trioxide::{io_error_kind, move_on_after, open_nursery, BoxError, Builder, IoErrorKind, MockClock};
    /// use trioxide::testing::lockstep_stream_one_way_pair;
    ///
    /// let clock = MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::ZERO));
    /// Builder::new().clock(clock).run(open_nursery(|n| async move {
    ///     let (tx, rx) = lockstep_stream_one_way_pair();
    ///     // Nobody receives: the send waits; cancelled, it takes its data back.
    ///     assert_eq!(move_on_after(Duration::from_secs(1), tx.send_all(b"abc")).await?, None);
    ///     let rx = Rc::new(rx);
    ///     let r = rx.clone();
    ///     n.start_soon(async move {
    ///         assert_eq!(r.receive_some(&mut [0u8; 1]).await?, 1); // takes "a" only
    ///         Ok::<_, BoxError>(())
    ///     })?;
    ///     // Cancelled after the receiver took part of it: the peer holds a
    ///     // prefix nobody can account for, so the stream refuses to send more.
    ///     assert_eq!(move_on_after(Duration::from_secs(1), tx.send_all(b"abc")).await?, None);
    ///     let err = tx.send_all(b"x").await.unwrap_err();
    ///     assert_eq!(io_error_kind(&err), Some(IoErrorKind::Broken));
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub async fn send_all(&self, data: &[u8]) -> io::Result<()> {
        let st = &*self.state;
        let claim = st.send.claim(st.sender_closed.get(), "trioxide::testing::LockstepSendStream::send_all")?;
        st.take_back_poll_offer();
        if st.receiver_closed.get() {
            return Err(RECEIVER_CLOSED.into());
        }
        if st.send_broken.get() {
            return Err(SEND_CANCELLED.into());
        }
        if data.is_empty() {
            after_io().await;
            return Ok(());
        }
        debug_assert!(st.data.borrow().is_empty(), "only one send can be in progress");
        st.data.borrow_mut().extend(data);
        st.receive.wake();
        let mut pending = PendingSend { state: st, len: data.len(), finished: false };
        std::future::poll_fn(|cx| -> Poll<io::Result<()>> {
            // All taken: the hand-over is done and wins over a cancel.
            if st.data.borrow().is_empty() {
                return Poll::Ready(Ok(()));
            }
            if st.sender_closed.get() {
                return Poll::Ready(Err(ClosedResource.into()));
            }
            if st.receiver_closed.get() {
                return Poll::Ready(Err(RECEIVER_CLOSED.into()));
            }
            if claim.is_cancelled() {
                return Poll::Ready(Err(Cancelled.into()));
            }
            claim.park(cx, "lockstep stream send_all");
            Poll::Pending
        })
        .await?;
        pending.finished = true;
        Ok(())
    }

    /// Waits until a receiver is blocked in `receive_some` (or the receiving
    /// end is closed), so that a `send_all` would be taken at once. A
    /// checkpoint. `ClosedResource` if this end is closed (also while
    /// waiting), `BusyResource` during another send-side operation.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{move_on_after, open_nursery, BoxError, Builder, MockClock};
    /// use trioxide::testing::lockstep_stream_one_way_pair;
    ///
    /// let clock = MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::ZERO));
    /// Builder::new().clock(clock).run(open_nursery(|n| async move {
    ///     let (tx, rx) = lockstep_stream_one_way_pair();
    ///     // Nobody receiving: it waits (here until its timeout).
    ///     let waited = move_on_after(Duration::from_secs(1), tx.wait_send_all_might_not_block()).await?;
    ///     assert_eq!(waited, None);
    ///     n.start_soon(async move {
    ///         assert_eq!(rx.receive_some(&mut [0u8; 4]).await?, 4);
    ///         Ok::<_, BoxError>(())
    ///     })?;
    ///     tx.wait_send_all_might_not_block().await?; // the receiver is waiting now
    ///     tx.send_all(b"data").await?;
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub async fn wait_send_all_might_not_block(&self) -> io::Result<()> {
        let st = &*self.state;
        let claim = st
            .send
            .claim(st.sender_closed.get(), "trioxide::testing::LockstepSendStream::wait_send_all_might_not_block")?;
        let mut waited = false;
        std::future::poll_fn(|cx| -> Poll<io::Result<()>> {
            if st.sender_closed.get() {
                return Poll::Ready(Err(ClosedResource.into()));
            }
            if st.receiver_waiting.get() || st.receiver_closed.get() {
                return Poll::Ready(Ok(()));
            }
            if waited && claim.is_cancelled() {
                return Poll::Ready(Err(Cancelled.into()));
            }
            waited = true;
            claim.park(cx, "lockstep stream wait_send_all_might_not_block");
            Poll::Pending
        })
        .await?;
        if !waited {
            after_io().await;
        }
        Ok(())
    }

    /// Closes this end: the receiver reads 0, and a waiting send-side
    /// operation wakes with `ClosedResource`. Immediate and idempotent.
    ///
    /// ```
    /// use trioxide::{io_error_kind, open_nursery, run, wait_all_tasks_blocked, BoxError, IoErrorKind};
    /// use trioxide::testing::lockstep_stream_one_way_pair;
    ///
    /// run(open_nursery(|n| async move {
    ///     let (tx, rx) = lockstep_stream_one_way_pair();
    ///     let tx = std::rc::Rc::new(tx);
    ///     let t = tx.clone();
    ///     n.start_soon(async move {
    ///         // Waits for a receiver until the close wakes it.
    ///         let err = t.send_all(b"never taken").await.unwrap_err();
    ///         assert_eq!(io_error_kind(&err), Some(IoErrorKind::Closed));
    ///         Ok::<_, BoxError>(())
    ///     })?;
    ///     wait_all_tasks_blocked().await?;
    ///     tx.close();
    ///     wait_all_tasks_blocked().await?; // the failed send takes its data back
    ///     assert_eq!(rx.receive_some(&mut [0u8; 8]).await?, 0); // the end, not the data
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub fn close(&self) {
        self.state.close_sender();
    }
}

impl LockstepReceiveStream {
    /// Takes up to `buf.len()` bytes of the send in progress, waiting for
    /// one if there is none; 0 once the sending end is closed. A
    /// checkpoint; a cancelled receive takes nothing.
    ///
    /// Errors: `InvalidInput` for an empty `buf`, `ClosedResource` if this
    /// end is closed (also while waiting), `BusyResource` if another task is
    /// receiving.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{move_on_after, open_nursery, BoxError, Builder, MockClock};
    /// use trioxide::testing::lockstep_stream_one_way_pair;
    ///
    /// let clock = MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::ZERO));
    /// Builder::new().clock(clock).run(open_nursery(|n| async move {
    ///     let (tx, rx) = lockstep_stream_one_way_pair();
    ///     let mut buf = [0u8; 8];
    ///     // No send in progress: the receive waits, and its timeout cancels it.
    ///     assert_eq!(move_on_after(Duration::from_secs(1), rx.receive_some(&mut buf)).await?, None);
    ///     n.start_soon(async move { tx.send_all(b"hi").await })?;
    ///     assert_eq!(rx.receive_some(&mut buf).await?, 2);
    ///     assert_eq!(&buf[..2], b"hi");
    ///     assert_eq!(rx.receive_some(&mut buf).await?, 0); // the sender's task ended
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub async fn receive_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Err(empty_buffer());
        }
        let st = &*self.state;
        let claim =
            st.receive.claim(st.receiver_closed.get(), "trioxide::testing::LockstepReceiveStream::receive_some")?;
        let _waiting = WaitingFlag(&st.receiver_waiting);
        let mut waited = false;
        let n = std::future::poll_fn(|cx| -> Poll<io::Result<usize>> {
            if st.receiver_closed.get() {
                return Poll::Ready(Err(ClosedResource.into()));
            }
            if waited && claim.is_cancelled() {
                return Poll::Ready(Err(Cancelled.into()));
            }
            // Closed first: bytes still offered belong to a send that the
            // close makes fail with `ClosedResource`, so they must not be
            // delivered (the receiver reads 0, as `close` documents).
            if st.sender_closed.get() {
                return Poll::Ready(Ok(0));
            }
            let mut data = st.data.borrow_mut();
            if !data.is_empty() {
                let n = take_into(&mut data, buf);
                if data.is_empty() {
                    // The send is complete: let it return.
                    st.send.wake();
                }
                return Poll::Ready(Ok(n));
            }
            if !waited {
                waited = true;
                st.receiver_waiting.set(true);
                // A `wait_send_all_might_not_block` is waiting for this.
                st.send.wake();
            }
            claim.park(cx, "lockstep stream receive_some");
            Poll::Pending
        })
        .await?;
        if !waited {
            after_io().await;
        }
        Ok(n)
    }

    /// Closes this end: a waiting receive wakes with `ClosedResource`, and
    /// the send in progress (and every later one) fails with
    /// `BrokenResource`. Immediate and idempotent.
    ///
    /// ```
    /// use trioxide::{io_error_kind, open_nursery, run, wait_all_tasks_blocked, BoxError, IoErrorKind};
    /// use trioxide::testing::lockstep_stream_one_way_pair;
    ///
    /// run(open_nursery(|n| async move {
    ///     let (tx, rx) = lockstep_stream_one_way_pair();
    ///     n.start_soon(async move {
    ///         let err = tx.send_all(b"abc").await.unwrap_err(); // waiting, then woken
    ///         assert_eq!(io_error_kind(&err), Some(IoErrorKind::Broken));
    ///         Ok::<_, BoxError>(())
    ///     })?;
    ///     wait_all_tasks_blocked().await?;
    ///     rx.close();
    ///     rx.close(); // idempotent
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub fn close(&self) {
        self.state.close_receiver();
    }
}

/// The poll level (see the module docs).
impl LockstepSendStream {
    fn close_on_drop(&self) {
        self.close();
    }

    fn poll_send_impl(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let st = &*self.state;
        let pending = st.poll_offer.borrow().as_ref().map(|offer| (offer.len(), offer.len() - st.data.borrow().len()));
        if let Some((offered, taken)) = pending {
            if taken > 0 {
                // The receiver took a prefix: report it, take the rest back.
                let offer = st.poll_offer.take().unwrap_or_default();
                st.data.borrow_mut().clear();
                if data.get(..taken) != Some(&offer[..taken]) {
                    st.send_broken.set(true);
                    return Poll::Ready(Err(POLL_OTHER_DATA.into()));
                }
                return Poll::Ready(Ok(taken));
            }
            let gone = if st.sender_closed.get() {
                Some(io::Error::from(ClosedResource))
            } else if st.receiver_closed.get() {
                Some(RECEIVER_CLOSED.into())
            } else if Core::current_for("trioxide::testing::LockstepSendStream::poll_send").is_cancelled() {
                Some(Cancelled.into())
            } else {
                None
            };
            if let Some(e) = gone {
                st.take_back_poll_offer();
                return Poll::Ready(Err(e));
            }
            if data.len() != offered || st.poll_offer.borrow().as_deref() != Some(data) {
                // Nothing taken yet: the new data replaces the offer.
                st.take_back_poll_offer();
                if data.is_empty() {
                    return Poll::Ready(Ok(0));
                }
                st.data.borrow_mut().extend(data);
                *st.poll_offer.borrow_mut() = Some(data.to_vec());
            }
            st.send.poll_park(cx, "lockstep stream poll_send");
            return Poll::Pending;
        }
        if data.is_empty() {
            return Poll::Ready(st.send.poll_check(st.sender_closed.get()).map(|()| 0));
        }
        ready!(st.send.poll_begin(st.sender_closed.get(), cx, "trioxide::testing::LockstepSendStream::poll_send"))?;
        if st.receiver_closed.get() {
            return Poll::Ready(Err(RECEIVER_CLOSED.into()));
        }
        if st.send_broken.get() {
            return Poll::Ready(Err(SEND_CANCELLED.into()));
        }
        st.data.borrow_mut().extend(data);
        *st.poll_offer.borrow_mut() = Some(data.to_vec());
        st.receive.wake();
        st.send.poll_park(cx, "lockstep stream poll_send");
        Poll::Pending
    }

    fn poll_send_eof_impl(&self) -> Poll<io::Result<()>> {
        if let Err(e) = self.state.send.poll_check(false) {
            return Poll::Ready(Err(e));
        }
        if Core::current_for("trioxide::testing::LockstepSendStream::poll_send_eof").is_cancelled() {
            return Poll::Ready(Err(Cancelled.into()));
        }
        self.close();
        Poll::Ready(Ok(()))
    }
}

impl PollSend for LockstepSendStream {
    fn poll_send(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_send_impl(cx, data)
    }

    fn poll_send_eof(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_send_eof_impl()
    }
}

/// The poll level: `receive_some`, one poll at a time.
impl LockstepReceiveStream {
    fn close_on_drop(&self) {
        self.close();
    }

    fn poll_receive_impl(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let st = &*self.state;
        if buf.is_empty() {
            return Poll::Ready(st.receive.poll_check(st.receiver_closed.get()).map(|()| 0));
        }
        let op = "trioxide::testing::LockstepReceiveStream::poll_receive";
        ready!(st.receive.poll_begin(st.receiver_closed.get(), cx, op))?;
        // As in `receive_some`: a closed sender's offer is not delivered.
        if st.sender_closed.get() {
            st.receiver_waiting.set(false);
            return Poll::Ready(Ok(0));
        }
        let mut data = st.data.borrow_mut();
        if !data.is_empty() {
            st.receiver_waiting.set(false);
            let n = take_into(&mut data, buf);
            // The sender (async: its send is complete once `data` is
            // empty; poll-level: it reports what was taken) goes on.
            st.send.wake();
            return Poll::Ready(Ok(n));
        }
        if !st.receiver_waiting.replace(true) {
            // A `wait_send_all_might_not_block` is waiting for this.
            st.send.wake();
        }
        st.receive.poll_park(cx, "lockstep stream poll_receive");
        Poll::Pending
    }
}

impl PollReceive for LockstepReceiveStream {
    fn poll_receive(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.poll_receive_impl(cx, buf)
    }
}

/// Clears `receiver_waiting` when a receive ends, however it ends.
struct WaitingFlag<'a>(&'a Cell<bool>);

impl Drop for WaitingFlag<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

one_way_halves!(LockstepSendStream, LockstepReceiveStream, shared: state);

/// One end of a two-way lockstep stream, made by [`lockstep_stream_pair`]:
/// a [`LockstepSendStream`] and a [`LockstepReceiveStream`] joined by a
/// [`StapledStream`], whose methods it has.
/// [`send_eof`](StapledStream::send_eof) closes the sending half only.
///
/// ```
/// use trioxide::{run, open_nursery, BoxError};
/// use trioxide::testing::lockstep_stream_pair;
///
/// run(open_nursery(|n| async move {
///     let (a, b) = lockstep_stream_pair();
///     n.start_soon(async move {
///         let mut buf = [0u8; 4];
///         assert_eq!(b.receive_some(&mut buf).await?, 4);
///         b.send_all(b"pong").await
///     })?;
///     a.send_all(b"ping").await?;
///     let mut buf = [0u8; 4];
///     assert_eq!(a.receive_some(&mut buf).await?, 4);
///     assert_eq!(&buf, b"pong");
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
pub type LockstepStream = StapledStream<LockstepSendStream, LockstepReceiveStream>;

/// A connected pair of two-way lockstep streams, built from two one-way
/// pairs.
///
/// ```
/// use trioxide::{run, BoxError};
/// use trioxide::testing::lockstep_stream_pair;
///
/// run(async {
///     let (a, b) = lockstep_stream_pair();
///     a.send_eof().await?;
///     let mut buf = [0u8; 1];
///     assert_eq!(b.receive_some(&mut buf).await?, 0);
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub fn lockstep_stream_pair() -> (LockstepStream, LockstepStream) {
    stapled_pair(lockstep_stream_one_way_pair)
}
