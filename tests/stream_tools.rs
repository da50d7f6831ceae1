//! Stream tools (issue 10, B): owned halves of a stream used from two
//! tasks, and `BufferedReceiveStream` under hostile input.

use std::io;
use std::time::Duration;

use trioxide::testing::{
    check_half_closeable_stream, check_one_way_stream, memory_stream_one_way_pair, memory_stream_pair,
    MemoryReceiveStream,
};
use trioxide::{
    checkpoint, fail_after, io_error_kind, open_nursery, split, BoxError, BufferedReceiveStream, Builder, FrameTooLong,
    IoErrorKind, MockClock, ReceiveHalf, ReceiveStream, SendHalf, SendStream, StapledStream, TcpListener, TcpStream,
    UnixStream,
};

/// Real sockets: autojump only after 50 ms of quiet; every test is bounded.
fn run_bounded<F: std::future::Future<Output = Result<(), BoxError>>>(f: F) {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::from_millis(50)));
    Builder::new().clock(clock).run(fail_after(Duration::from_secs(60), f)).unwrap();
}

const N: usize = 200_000;

fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// One task sends N bytes through `tx` while another receives N through
/// `rx`; `peer_*` is the other end of the connection, echoing.
async fn two_tasks<S, R, PS, PR>(rx: R, tx: S, peer_rx: PR, peer_tx: PS) -> Result<(), BoxError>
where
    S: SendStream + 'static,
    R: ReceiveStream + 'static,
    PS: SendStream + 'static,
    PR: ReceiveStream + 'static,
{
    open_nursery(|n| async move {
        // The peer echoes everything back.
        n.start_soon(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let got = peer_rx.receive_some(&mut buf).await?;
                if got == 0 {
                    return Ok::<_, BoxError>(());
                }
                peer_tx.send_all(&buf[..got]).await?;
            }
        })?;
        // The sending task owns only the send half.
        n.start_soon(async move {
            let data: Vec<u8> = (0..N).map(pattern).collect();
            for chunk in data.chunks(7_000) {
                tx.send_all(chunk).await?;
            }
            Ok::<_, BoxError>(())
        })?;
        // The receiving task (here: the body) owns only the receive half.
        let mut seen = 0;
        let mut buf = vec![0u8; 3000];
        while seen < N {
            let got = rx.receive_some(&mut buf).await?;
            assert!(got > 0, "end of stream after {seen} bytes");
            for (k, b) in buf[..got].iter().enumerate() {
                assert_eq!(*b, pattern(seen + k));
            }
            seen += got;
        }
        // Done: close our receive half; the send half closed when its task
        // ended, so the stream is closed and the echoing peer sees the end.
        rx.close();
        Ok::<_, BoxError>(())
    })
    .await?;
    Ok(())
}

#[test]
fn halves_from_two_tasks_tcp() {
    run_bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
        let client = TcpStream::connect(listener.local_addr()?).await?;
        let (server, _) = listener.accept().await?;
        let (rx, tx) = client.into_split();
        let (prx, ptx) = server.into_split();
        two_tasks(rx, tx, prx, ptx).await
    });
}

#[test]
fn halves_from_two_tasks_unix() {
    run_bounded(async {
        let (a, b) = UnixStream::pair()?;
        let (rx, tx) = a.into_split();
        let (prx, ptx) = b.into_split();
        two_tasks(rx, tx, prx, ptx).await
    });
}

#[test]
fn halves_from_two_tasks_memory() {
    run_bounded(async {
        let (a, b) = memory_stream_pair();
        let (rx, tx) = split(a);
        let (prx, ptx) = split(b);
        two_tasks(rx, tx, prx, ptx).await
    });
}

#[test]
fn halves_pass_the_conformance_checks() {
    run_bounded(async {
        // One-way: the send half of one end, the receive half of the other.
        check_one_way_stream(
            || async {
                let (a, b) = memory_stream_pair();
                let (_, tx) = split(a);
                let (rx, _) = split(b);
                Ok((tx, rx))
            },
            None,
        )
        .await?;
        check_one_way_stream(
            || async {
                let (a, b) = UnixStream::pair()?;
                let (_, tx) = a.into_split();
                let (rx, _) = b.into_split();
                Ok((tx, rx))
            },
            None,
        )
        .await?;
        // Both halves stapled back: a half-closeable two-way stream again.
        check_half_closeable_stream(
            || async {
                let (a, b) = UnixStream::pair()?;
                let (ra, ta) = a.into_split();
                let (rb, tb) = b.into_split();
                Ok((StapledStream::new(ta, ra), StapledStream::new(tb, rb)))
            },
            None,
        )
        .await?;
        check_half_closeable_stream(
            || async {
                let (a, b) = memory_stream_pair();
                let (ra, ta) = split(a);
                let (rb, tb) = split(b);
                Ok((StapledStream::new(ta, ra), StapledStream::new(tb, rb)))
            },
            None,
        )
        .await?;
        Ok(())
    });
}

#[test]
fn buffered_stream_passes_the_one_way_checks() {
    run_bounded(async {
        check_one_way_stream(
            || async {
                let (tx, rx) = memory_stream_one_way_pair();
                Ok((tx, BufferedReceiveStream::new(rx)))
            },
            None,
        )
        .await?;
        check_one_way_stream(
            || async {
                let (a, b) = UnixStream::pair()?;
                Ok((a, BufferedReceiveStream::new(b)))
            },
            None,
        )
        .await?;
        Ok(())
    });
}

#[test]
fn half_close_and_reunite() {
    run_bounded(async {
        let (a, b) = UnixStream::pair()?;
        let (rx, tx) = a.into_split();
        // Closing the receive half alone leaves the stream open.
        rx.close();
        let e = rx.receive_some(&mut [0u8; 1]).await.unwrap_err();
        assert_eq!(io_error_kind(&e), Some(IoErrorKind::Closed));
        tx.send_all(b"still sending").await?;
        let mut buf = [0u8; 32];
        assert_eq!(b.receive_some(&mut buf).await?, 13);
        // A closed half cannot be reunited; the halves come back.
        let err = rx.reunite(tx).unwrap_err();
        drop(err.send); // both closed now: the stream closes
        assert_eq!(b.receive_some(&mut buf).await?, 0);

        // Reunite gives the stream back, open.
        let (c, d) = UnixStream::pair()?;
        let (rx, tx): (ReceiveHalf<UnixStream>, SendHalf<UnixStream>) = split(c);
        let c = rx.reunite(tx).map_err(|_| "reunite failed")?;
        c.send_all(b"ok").await?;
        assert_eq!(d.receive_some(&mut buf).await?, 2);
        Ok(())
    });
}

#[test]
fn closing_a_half_stops_a_wait_on_it() {
    run_bounded(async {
        let (a, _b) = memory_stream_pair();
        let (rx, _tx) = split(a);
        let rx = std::rc::Rc::new(rx);
        open_nursery(|n| async move {
            let r = rx.clone();
            n.start_soon(async move {
                let e = r.receive_some(&mut [0u8; 4]).await.unwrap_err();
                assert_eq!(io_error_kind(&e), Some(IoErrorKind::Closed));
                Ok::<_, BoxError>(())
            })?;
            trioxide::wait_all_tasks_blocked().await?;
            rx.close();
            Ok::<_, BoxError>(())
        })
        .await?;
        Ok(())
    });
}

// ---- BufferedReceiveStream under hostile input ----

/// Sends `data` in pieces of `piece` bytes with a checkpoint between, then
/// closes (if `close`).
async fn feed(
    tx: trioxide::testing::MemorySendStream,
    data: Vec<u8>,
    piece: usize,
    close: bool,
) -> Result<(), BoxError> {
    for p in data.chunks(piece) {
        tx.send_all(p).await?;
        checkpoint().await?;
    }
    if close {
        tx.close();
    }
    Ok(())
}

/// Runs `body` on a buffered receiver fed `data` `piece` bytes at a time.
fn with_feed<F, Fut>(data: &[u8], piece: usize, close: bool, body: F)
where
    F: FnOnce(BufferedReceiveStream<MemoryReceiveStream>) -> Fut + 'static,
    Fut: std::future::Future<Output = Result<(), BoxError>>,
{
    let data = data.to_vec();
    run_bounded(async move {
        open_nursery(|n| async move {
            let (tx, rx) = memory_stream_one_way_pair();
            n.start_soon(feed(tx, data, piece, close))?;
            body(BufferedReceiveStream::new(rx)).await
        })
        .await?;
        Ok(())
    });
}

#[test]
fn no_delimiter_before_eof() {
    with_feed(b"a line without its end", 5, true, |rx| async move {
        let e = rx.receive_until(b"\n", 1024).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(e.to_string(), "the stream ended in the middle of a frame");
        assert_eq!(rx.buffered(), 22);
        // next_line returns an unterminated last line as it is.
        assert_eq!(rx.next_line(1024).await?.as_deref(), Some(&b"a line without its end"[..]));
        assert_eq!(rx.next_line(1024).await?, None);
        assert_eq!(rx.receive_until(b"\n", 1024).await?, None);
        Ok(())
    });
}

#[test]
fn huge_line_over_the_limit_loses_nothing() {
    let mut data = vec![b'x'; 100_000];
    data.push(b'\n');
    data.extend_from_slice(b"next\n");
    with_feed(&data, 4096, true, |rx| async move {
        let e = rx.next_line(1000).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(e.get_ref().and_then(|i| i.downcast_ref::<FrameTooLong>()), Some(&FrameTooLong { limit: 1000 }));
        // The buffer stopped growing near the limit: limit + one read.
        let held = rx.buffered();
        assert!((1001..=1001 + 8192).contains(&held), "{held}");
        // Nothing was lost: drain the long line by count.
        let first = rx.receive_exactly(100_000).await?;
        assert!(first.iter().all(|&b| b == b'x'));
        assert_eq!(rx.next_line(1000).await?.as_deref(), Some(&b""[..]));
        assert_eq!(rx.next_line(1000).await?.as_deref(), Some(&b"next"[..]));
        assert_eq!(rx.next_line(1000).await?, None);
        Ok(())
    });
}

#[test]
fn limit_is_exact() {
    // A line of exactly max bytes passes; one byte more fails.
    with_feed(b"12345\n123456\n", 3, true, |rx| async move {
        assert_eq!(rx.next_line(5).await?.as_deref(), Some(&b"12345"[..]));
        let e = rx.next_line(5).await.unwrap_err();
        assert_eq!(e.to_string(), "no delimiter within the first 5 bytes");
        assert_eq!(rx.buffered(), 7);
        assert_eq!(rx.next_line(6).await?.as_deref(), Some(&b"123456"[..]));
        Ok(())
    });
    with_feed(b"abcd\r\n\r\nabcde\r\n\r\n", 4, true, |rx| async move {
        assert_eq!(rx.receive_until(b"\r\n\r\n", 4).await?.as_deref(), Some(&b"abcd"[..]));
        let e = rx.receive_until(b"\r\n\r\n", 4).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(rx.receive_until(b"\r\n\r\n", 5).await?.as_deref(), Some(&b"abcde"[..]));
        Ok(())
    });
}

#[test]
fn byte_at_a_time_delivery() {
    let text = b"GET / HTTP/1.1\r\nHost: example\r\n\r\nline one\nline two\r\n12345tail";
    with_feed(text, 1, true, |rx| async move {
        let head = rx.receive_until(b"\r\n\r\n", 256).await?.unwrap();
        assert_eq!(head, b"GET / HTTP/1.1\r\nHost: example");
        assert_eq!(rx.next_line(64).await?.as_deref(), Some(&b"line one"[..]));
        assert_eq!(rx.next_line(64).await?.as_deref(), Some(&b"line two"[..]));
        assert_eq!(rx.receive_exactly(5).await?, b"12345");
        let mut rest = Vec::new();
        let mut buf = [0u8; 2];
        loop {
            let got = rx.receive_some(&mut buf).await?;
            if got == 0 {
                break;
            }
            rest.extend_from_slice(&buf[..got]);
        }
        assert_eq!(rest, b"tail");
        Ok(())
    });
}

#[test]
fn delimiter_split_across_reads() {
    // Every split point of the delimiter, and pieces of 1..=5 bytes.
    for piece in 1..=5 {
        with_feed(b"ab\r\n\r\ncd\r\n\r\n", piece, false, |rx| async move {
            assert_eq!(rx.receive_until(b"\r\n\r\n", 16).await?.as_deref(), Some(&b"ab"[..]));
            assert_eq!(rx.receive_until(b"\r\n\r\n", 16).await?.as_deref(), Some(&b"cd"[..]));
            assert_eq!(rx.buffered(), 0);
            Ok(())
        });
    }
}

#[test]
fn exact_counts_and_early_end() {
    with_feed(&[7u8; 10], 3, true, |rx| async move {
        assert_eq!(rx.receive_exactly(0).await?, b"");
        assert_eq!(rx.receive_exactly(4).await?, [7u8; 4]);
        let e = rx.receive_exactly(10).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(e.to_string(), "the stream ended after 6 of 10 bytes");
        let (_rx, rest) = rx.into_inner();
        assert_eq!(rest, [7u8; 6]);
        Ok(())
    });
}

#[test]
fn cancelled_call_keeps_the_bytes() {
    run_bounded(async {
        let (tx, rx) = memory_stream_one_way_pair();
        let rx = BufferedReceiveStream::new(rx);
        tx.send_all(b"partial").await?;
        let r = trioxide::move_on_after(Duration::from_secs(1), async {
            rx.receive_until(b"\n", 64).await?;
            Ok::<_, io::Error>(())
        })
        .await?;
        assert_eq!(r, None);
        assert_eq!(rx.buffered(), 7);
        tx.send_all(b" line\n").await?;
        assert_eq!(rx.next_line(64).await?.as_deref(), Some(&b"partial line"[..]));
        Ok(())
    });
}
