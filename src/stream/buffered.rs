//! [`BufferedReceiveStream`]: a receive stream with a buffer, for
//! delimiter-framed (lines, `\r\n\r\n`), length-prefixed and fixed-size
//! protocols.
//!
//! Every framing call takes an explicit limit, so a peer that never sends
//! the delimiter cannot make the buffer grow without bound: past the limit
//! the call fails with [`FrameTooLong`] (inside an `io::Error` of kind
//! `InvalidData`) and the bytes stay in the buffer. The end of the stream
//! in the middle of a frame fails with `UnexpectedEof`, again keeping the
//! bytes. A cancelled call loses nothing either: what was received stays
//! buffered for the next call. [`into_inner`](BufferedReceiveStream::into_inner)
//! gives back the stream and the bytes not yet consumed.
//!
//! At the poll level it is a [`PollReceive`] when the stream underneath is
//! one (buffered bytes first, with the poll layer's checkpoint; else the
//! stream's own `poll_receive`), and with the `futures-io` feature an
//! `AsyncBufRead` whose `poll_fill_buf` lends the buffer itself.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::task::{ready, Context, Poll};

use crate::kernel::error::{BusyResource, Cancelled};
use crate::stream::poll::PollReceive;
use crate::stream::poll_checkpoint::PollCheckpoint;
use crate::stream::{ReceiveStream, Resource};

/// Bytes asked of the stream per receive (more if a frame needs more).
const READ_SIZE: usize = 8 * 1024;

/// A framing call found no delimiter within its limit. The bytes received
/// so far stay in the buffer. Carried in an `io::Error` of kind
/// [`InvalidData`](io::ErrorKind::InvalidData).
///
/// ```
/// use trioxide::{run, BoxError, BufferedReceiveStream, FrameTooLong};
/// use trioxide::testing::memory_stream_one_way_pair;
/// run(async {
///     let (tx, rx) = memory_stream_one_way_pair();
///     tx.send_all(b"way too long a line\n").await?;
///     let rx = BufferedReceiveStream::new(rx);
///     let e = rx.receive_until(b"\n", 8).await.unwrap_err();
///     assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
///     assert_eq!(e.get_ref().unwrap().downcast_ref::<FrameTooLong>(), Some(&FrameTooLong { limit: 8 }));
///     assert_eq!(e.to_string(), "no delimiter within the first 8 bytes");
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTooLong {
    /// The limit the call was given.
    pub limit: usize,
}

impl fmt::Display for FrameTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no delimiter within the first {} bytes", self.limit)
    }
}

impl std::error::Error for FrameTooLong {}

/// The buffer: `data[start..end]` are received bytes not yet consumed;
/// `data[end..]` is zeroed room to receive into.
#[derive(Default)]
struct Buf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Buf {
    fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    fn len(&self) -> usize {
        self.end - self.start
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Takes `n` bytes off the front.
    fn take(&mut self, n: usize) -> Vec<u8> {
        let out = self.data[self.start..self.start + n].to_vec();
        self.consume(n);
        out
    }

    /// Makes room for at least `want` more bytes after `end`.
    fn make_room(&mut self, want: usize) {
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.data.len() < self.end + want {
            self.data.resize(self.end + want, 0);
        }
    }
}

/// A [`ReceiveStream`] with a buffer in front, for framed protocols:
/// [`receive_until`](Self::receive_until) a delimiter,
/// [`receive_exactly`](Self::receive_exactly) `n` bytes, or
/// [`next_line`](Self::next_line). It is itself a `ReceiveStream`
/// (buffered bytes first), so it can be handed to code that reads raw
/// bytes after the framed part (an HTTP body after its head).
///
/// Every call is a checkpoint, even one served from the buffer. One task at
/// a time: a second call while one waits fails with
/// [`BusyResource`](crate::BusyResource).
///
/// ```
/// use trioxide::{run, BoxError, BufferedReceiveStream};
/// use trioxide::testing::memory_stream_one_way_pair;
/// run(async {
///     let (tx, rx) = memory_stream_one_way_pair();
///     tx.send_all(b"HELLO\r\nlen 3\r\nabcrest").await?;
///     let rx = BufferedReceiveStream::new(rx);
///     assert_eq!(rx.next_line(64).await?.as_deref(), Some(&b"HELLO"[..]));
///     assert_eq!(rx.receive_until(b"\r\n", 64).await?.as_deref(), Some(&b"len 3"[..]));
///     assert_eq!(rx.receive_exactly(3).await?, b"abc");
///     let (_rx, rest) = rx.into_inner();
///     assert_eq!(rest, b"rest");
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub struct BufferedReceiveStream<R> {
    inner: R,
    buf: RefCell<Buf>,
    busy: Cell<bool>,
    /// The schedule point of poll-level receives served from the buffer.
    poll: PollCheckpoint,
}

/// Holds the buffer out of its cell while an operation runs, and puts it
/// back however the operation ends (cancelled included): nothing received
/// is lost.
struct Taken<'a> {
    cell: &'a RefCell<Buf>,
    busy: &'a Cell<bool>,
    buf: Buf,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        *self.cell.borrow_mut() = std::mem::take(&mut self.buf);
        self.busy.set(false);
    }
}

fn cancelled_io(c: Cancelled) -> io::Error {
    c.into()
}

impl<R: ReceiveStream> BufferedReceiveStream<R> {
    /// Wraps `inner`; the buffer starts empty and grows only as frames
    /// need (up to a call's limit plus 8 KiB).
    ///
    /// ```
    /// use trioxide::BufferedReceiveStream;
    /// use trioxide::testing::memory_stream_one_way_pair;
    /// let (_tx, rx) = memory_stream_one_way_pair();
    /// let rx = BufferedReceiveStream::new(rx);
    /// assert_eq!(rx.buffered(), 0);
    /// ```
    pub fn new(inner: R) -> Self {
        BufferedReceiveStream {
            inner,
            buf: RefCell::new(Buf::default()),
            busy: Cell::new(false),
            poll: PollCheckpoint::default(),
        }
    }

    fn take(&self) -> io::Result<Taken<'_>> {
        if self.busy.replace(true) {
            return Err(BusyResource.into());
        }
        let buf = std::mem::take(&mut *self.buf.borrow_mut());
        Ok(Taken { cell: &self.buf, busy: &self.busy, buf })
    }

    /// Receives more bytes into the buffer (at least `want` bytes of room);
    /// returns how many came, 0 at the end of the stream.
    async fn fill(&self, buf: &mut Buf, want: usize) -> io::Result<usize> {
        buf.make_room(want.max(1));
        let n = self.inner.receive_some(&mut buf.data[buf.end..]).await?;
        buf.end += n;
        Ok(n)
    }

    /// Receives up to the first `delimiter` and returns the bytes before it
    /// (the delimiter is consumed, not returned). `Ok(None)` at the end of
    /// the stream with nothing buffered.
    ///
    /// `max` bounds the frame: if `max` bytes have arrived with no
    /// delimiter, fails with [`FrameTooLong`] (`InvalidData`). If the
    /// stream ends in the middle of a frame, fails with `UnexpectedEof`.
    /// Either way, and on cancellation, the bytes stay buffered.
    ///
    /// ```
    /// use trioxide::{run, BoxError, BufferedReceiveStream};
    /// use trioxide::testing::memory_stream_one_way_pair;
    /// run(async {
    ///     let (tx, rx) = memory_stream_one_way_pair();
    ///     tx.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody").await?;
    ///     tx.close();
    ///     let rx = BufferedReceiveStream::new(rx);
    ///     let head = rx.receive_until(b"\r\n\r\n", 8192).await?.expect("a head");
    ///     assert_eq!(head, b"GET / HTTP/1.1\r\nHost: x");
    ///     // "body" has no delimiter after it: the end comes mid-frame.
    ///     let e = rx.receive_until(b"\r\n\r\n", 8192).await.unwrap_err();
    ///     assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    ///     assert_eq!(rx.into_inner().1, b"body"); // not lost
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    ///
    /// # Panics
    /// If `delimiter` is empty ("BufferedReceiveStream::receive_until needs
    /// a non-empty delimiter"), when called, at the caller's line.
    #[track_caller]
    pub fn receive_until<'a>(
        &'a self,
        delimiter: &'a [u8],
        max: usize,
    ) -> impl Future<Output = io::Result<Option<Vec<u8>>>> + 'a {
        assert!(!delimiter.is_empty(), "BufferedReceiveStream::receive_until needs a non-empty delimiter");
        self.receive_until_nonempty(delimiter, max)
    }

    /// [`receive_until`](Self::receive_until) once `delimiter` is known to be
    /// non-empty.
    async fn receive_until_nonempty(&self, delimiter: &[u8], max: usize) -> io::Result<Option<Vec<u8>>> {
        let mut t = self.take()?;
        let buf = &mut t.buf;
        let mut searched = 0; // bytes of the buffer known to hold no delimiter start
        let mut received = false;
        loop {
            let hay = buf.filled();
            // A frame of at most `max` bytes ends within the first
            // `max + delimiter.len()` bytes.
            let window = hay.len().min(max.saturating_add(delimiter.len()));
            if let Some(i) = find(&hay[searched.min(window)..window], delimiter) {
                let at = searched + i;
                if !received {
                    crate::time::checkpoint().await.map_err(cancelled_io)?;
                }
                let out = buf.take(at);
                buf.consume(delimiter.len());
                return Ok(Some(out));
            }
            if hay.len() >= max.saturating_add(delimiter.len()) {
                if !received {
                    crate::time::checkpoint().await.map_err(cancelled_io)?;
                }
                return Err(io::Error::new(io::ErrorKind::InvalidData, FrameTooLong { limit: max }));
            }
            searched = hay.len().saturating_sub(delimiter.len() - 1);
            if self.fill(buf, READ_SIZE).await? == 0 {
                return if buf.len() == 0 {
                    Ok(None)
                } else {
                    Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the stream ended in the middle of a frame"))
                };
            }
            received = true;
        }
    }

    /// Receives the next line and returns it without its `\n` (nor a `\r`
    /// before it); `Ok(None)` at the end of the stream. A last line with no
    /// `\n` before the end is returned as it is. A line longer than
    /// `max_line` bytes fails with [`FrameTooLong`], the bytes kept.
    ///
    /// ```
    /// use trioxide::{run, BoxError, BufferedReceiveStream};
    /// use trioxide::testing::memory_stream_one_way_pair;
    /// run(async {
    ///     let (tx, rx) = memory_stream_one_way_pair();
    ///     tx.send_all(b"one\r\ntwo\nthree").await?;
    ///     tx.close();
    ///     let rx = BufferedReceiveStream::new(rx);
    ///     let mut lines = Vec::new();
    ///     while let Some(line) = rx.next_line(1024).await? {
    ///         lines.push(String::from_utf8(line)?);
    ///     }
    ///     assert_eq!(lines, ["one", "two", "three"]);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn next_line(&self, max_line: usize) -> io::Result<Option<Vec<u8>>> {
        // A `\r` before the `\n` is part of the line until stripped.
        match self.receive_until_nonempty(b"\n", max_line.saturating_add(1)).await {
            Ok(Some(mut line)) => {
                if line.last() == Some(&b'\r') {
                    line.pop();
                } else if line.len() > max_line {
                    self.buf.borrow_mut().unconsume(&line, b"\n");
                    return Err(io::Error::new(io::ErrorKind::InvalidData, FrameTooLong { limit: max_line }));
                }
                Ok(Some(line))
            }
            Ok(None) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                let mut b = self.buf.borrow_mut();
                let n = b.len();
                if n > max_line {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, FrameTooLong { limit: max_line }));
                }
                Ok(Some(b.take(n)))
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData && e.get_ref().is_some_and(|i| i.is::<FrameTooLong>()) => {
                Err(io::Error::new(io::ErrorKind::InvalidData, FrameTooLong { limit: max_line }))
            }
            Err(e) => Err(e),
        }
    }

    /// Receives exactly `n` bytes. If the stream ends first, fails with
    /// `UnexpectedEof`, the bytes kept. `n` is the limit: check a length
    /// that came from the peer before passing it.
    ///
    /// ```
    /// use trioxide::{run, BoxError, BufferedReceiveStream};
    /// use trioxide::testing::memory_stream_one_way_pair;
    /// run(async {
    ///     let (tx, rx) = memory_stream_one_way_pair();
    ///     tx.send_all(&[0, 3, b'a', b'b', b'c']).await?;
    ///     let rx = BufferedReceiveStream::new(rx);
    ///     let len = rx.receive_exactly(2).await?;
    ///     let len = u16::from_be_bytes([len[0], len[1]]) as usize;
    ///     assert!(len <= 1024, "checked before use");
    ///     assert_eq!(rx.receive_exactly(len).await?, b"abc");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn receive_exactly(&self, n: usize) -> io::Result<Vec<u8>> {
        let mut t = self.take()?;
        let buf = &mut t.buf;
        let mut received = false;
        while buf.len() < n {
            let want = (n - buf.len()).max(READ_SIZE.min(n));
            if self.fill(buf, want).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the stream ended after {} of {n} bytes", buf.len()),
                ));
            }
            received = true;
        }
        if !received {
            crate::time::checkpoint().await.map_err(cancelled_io)?;
        }
        Ok(buf.take(n))
    }

    /// How many received bytes wait in the buffer.
    ///
    /// ```
    /// use trioxide::{run, BoxError, BufferedReceiveStream};
    /// use trioxide::testing::memory_stream_one_way_pair;
    /// run(async {
    ///     let (tx, rx) = memory_stream_one_way_pair();
    ///     tx.send_all(b"a\nbc").await?;
    ///     let rx = BufferedReceiveStream::new(rx);
    ///     rx.next_line(8).await?;
    ///     assert_eq!(rx.buffered(), 2);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn buffered(&self) -> usize {
        self.buf.borrow().len()
    }

    /// The stream underneath.
    ///
    /// ```
    /// use trioxide::BufferedReceiveStream;
    /// use trioxide::testing::memory_stream_one_way_pair;
    /// let (_tx, rx) = memory_stream_one_way_pair();
    /// let rx = BufferedReceiveStream::new(rx);
    /// assert_eq!(rx.get_ref().buffered(), 0);
    /// ```
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Gives back the stream and the bytes received but not consumed.
    ///
    /// ```
    /// use trioxide::{run, BoxError, BufferedReceiveStream};
    /// use trioxide::testing::memory_stream_one_way_pair;
    /// run(async {
    ///     let (tx, rx) = memory_stream_one_way_pair();
    ///     tx.send_all(b"head\nrest").await?;
    ///     let rx = BufferedReceiveStream::new(rx);
    ///     rx.next_line(16).await?;
    ///     let (_raw, rest) = rx.into_inner();
    ///     assert_eq!(rest, b"rest");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn into_inner(self) -> (R, Vec<u8>) {
        let buf = self.buf.into_inner();
        (self.inner, buf.data[buf.start..buf.end].to_vec())
    }

    /// Receives at least one byte into `out`: buffered bytes first, else
    /// straight from the stream. 0 at the end of the stream.
    ///
    /// ```
    /// use trioxide::{run, BoxError, BufferedReceiveStream};
    /// use trioxide::testing::memory_stream_one_way_pair;
    /// run(async {
    ///     let (tx, rx) = memory_stream_one_way_pair();
    ///     tx.send_all(b"k\nraw").await?;
    ///     let rx = BufferedReceiveStream::new(rx);
    ///     rx.next_line(8).await?;
    ///     let mut out = [0u8; 8];
    ///     let n = rx.receive_some(&mut out).await?;
    ///     assert_eq!(&out[..n], b"raw");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn receive_some(&self, out: &mut [u8]) -> io::Result<usize> {
        let mut t = self.take()?;
        let buf = &mut t.buf;
        if buf.len() == 0 {
            return self.inner.receive_some(out).await;
        }
        crate::time::checkpoint().await.map_err(cancelled_io)?;
        let n = buf.len().min(out.len());
        out[..n].copy_from_slice(&buf.filled()[..n]);
        buf.consume(n);
        Ok(n)
    }

    /// Closes the stream underneath.
    ///
    /// ```
    /// use trioxide::BufferedReceiveStream;
    /// use trioxide::testing::memory_stream_one_way_pair;
    /// let (_tx, rx) = memory_stream_one_way_pair();
    /// BufferedReceiveStream::new(rx).close();
    /// ```
    pub fn close(&self) {
        self.inner.close();
    }
}

impl Buf {
    /// Puts `frame` and `delimiter` back at the front (they were just
    /// taken off it, so the room is there).
    fn unconsume(&mut self, frame: &[u8], delimiter: &[u8]) {
        let n = frame.len() + delimiter.len();
        if self.start >= n {
            self.start -= n;
        } else {
            let mut data = Vec::with_capacity(n + self.len());
            data.extend_from_slice(frame);
            data.extend_from_slice(delimiter);
            data.extend_from_slice(self.filled());
            self.end = data.len();
            self.start = 0;
            self.data = data;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if hay.len() < needle.len() {
        return None;
    }
    if needle.len() == 1 {
        return hay.iter().position(|&b| b == needle[0]);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

impl<R: ReceiveStream> Resource for BufferedReceiveStream<R> {
    fn close(&self) {
        BufferedReceiveStream::close(self);
    }
}

impl<R: ReceiveStream> ReceiveStream for BufferedReceiveStream<R> {
    fn receive_some(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> {
        BufferedReceiveStream::receive_some(self, buf)
    }
}

/// Buffered bytes first, with the poll layer's checkpoint; with nothing
/// buffered, the stream's own `poll_receive`. `BusyResource` while an
/// `async fn` call holds the buffer.
impl<R: ReceiveStream + PollReceive> PollReceive for BufferedReceiveStream<R> {
    fn poll_receive(&self, cx: &mut Context<'_>, out: &mut [u8]) -> Poll<io::Result<usize>> {
        if self.busy.get() {
            return Poll::Ready(Err(BusyResource.into()));
        }
        if self.buf.borrow().len() == 0 {
            return self.inner.poll_receive(cx, out);
        }
        if out.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(self.poll.poll_begin(cx, "trioxide::BufferedReceiveStream::poll_receive"))?;
        let mut buf = self.buf.borrow_mut();
        let n = buf.len().min(out.len());
        out[..n].copy_from_slice(&buf.filled()[..n]);
        buf.consume(n);
        Poll::Ready(Ok(n))
    }
}

#[cfg(feature = "futures-io")]
impl<R: ReceiveStream + PollReceive> BufferedReceiveStream<R> {
    /// `AsyncBufRead::poll_fill_buf`: the buffered bytes (after the poll
    /// layer's checkpoint), or, with none, what one `poll_receive` of the
    /// stream brings (empty at the end of the stream).
    pub(crate) fn poll_fill_buf_mut(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let buf = self.buf.get_mut();
        if buf.len() > 0 {
            ready!(self.poll.poll_begin(cx, "trioxide::BufferedReceiveStream::poll_fill_buf"))?;
            return Poll::Ready(Ok(buf.filled()));
        }
        buf.make_room(READ_SIZE);
        let n = ready!(self.inner.poll_receive(cx, &mut buf.data[buf.end..]))?;
        buf.end += n;
        Poll::Ready(Ok(buf.filled()))
    }

    /// `AsyncBufRead::consume`: drops `amt` bytes (at most what is
    /// buffered) off the front.
    pub(crate) fn consume_mut(&mut self, amt: usize) {
        let buf = self.buf.get_mut();
        buf.consume(amt.min(buf.len()));
    }
}

impl<R: fmt::Debug> fmt::Debug for BufferedReceiveStream<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let buffered = self.buf.try_borrow().map(|b| b.len()).ok();
        f.debug_struct("BufferedReceiveStream").field("inner", &self.inner).field("buffered", &buffered).finish()
    }
}
