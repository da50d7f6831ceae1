//! futures-io conformance: futures-util's `AsyncReadExt`/`AsyncWriteExt`
//! (and `AsyncBufReadExt`) over trioxide's streams (TCP, Unix, the memory
//! and lockstep pairs, a child's pipes), and a WebSocket echo with
//! async-tungstenite over trioxide TCP.
//!
//! The runs use `io_support`'s mock clock (autojump after 50 ms of real
//! quiet) inside its hang guard, with a fixed seed; the WebSocket test
//! also has a 10 s real-clock safety net.

#[path = "../../tests/io_support/mod.rs"]
mod io_support;

use std::io;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use futures_util::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_util::StreamExt;
use io_support::*;
use trioxide::process::open_process;
use trioxide::testing::{lockstep_stream_pair, memory_stream_one_way_pair, memory_stream_pair};
use trioxide::{
    fail_after, move_on_after, open_nursery, BoxError, BufferedReceiveStream, Builder, Cancelled, IoErrorKind,
    SystemClock, TcpListener, TcpStream, UnixStream,
};

/// The exchange every kind of two-way pair must get right: `read_exact`,
/// `write_all`, `close` (the peer's `read_to_end` sees the end while the
/// other direction still works), then the other side's close.
async fn conformance<T>(kind: &'static str, mut a: T, mut b: T) -> Result<(), BoxError>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    open_nursery(|n| async move {
        n.start_soon(async move {
            let mut hello = [0u8; 5];
            b.read_exact(&mut hello).await?;
            assert_eq!(&hello, b"hello", "{kind}");
            b.write_all(b"world").await?;
            let mut rest = Vec::new();
            b.read_to_end(&mut rest).await?; // until a's close
            assert_eq!(rest, b" and the rest", "{kind}");
            b.write_all(b"after your close").await?; // a half-close: still open this way
            b.close().await?;
            Ok::<_, BoxError>(())
        })?;
        a.write_all(b"hello").await?;
        let mut world = [0u8; 5];
        a.read_exact(&mut world).await?;
        assert_eq!(&world, b"world", "{kind}");
        a.write_all(b" and the rest").await?;
        a.close().await?;
        let mut tail = Vec::new();
        a.read_to_end(&mut tail).await?;
        assert_eq!(tail, b"after your close", "{kind}");
        // read_exact past the end: UnexpectedEof.
        let e = a.read_exact(&mut [0u8; 1]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{kind}");
        Ok::<_, BoxError>(())
    })
    .await?;
    Ok(())
}

#[test]
fn read_exact_write_all_and_close_over_tcp_unix_memory_and_lockstep_pairs() {
    run_io(1, async {
        let (a, b) = tcp_pair(false);
        conformance("tcp", a, b).await?;
        let (a, b) = UnixStream::pair()?;
        conformance("unix", a, b).await?;
        let (a, b) = memory_stream_pair();
        conformance("memory", a, b).await?;
        let (a, b) = lockstep_stream_pair();
        conformance("lockstep", a, b).await?;
        Ok(())
    });
}

#[test]
fn shared_references_read_and_write_one_tcp_stream_from_two_tasks() {
    run_io(1, async {
        let (a, b) = tcp_pair(false);
        let (a, b) = (Rc::new(a), Rc::new(b));
        let msg = pattern(5, 256 * 1024); // more than the socket buffers hold
        let want = msg.clone();
        let got = open_nursery(|n| async move {
            let writer = a.clone();
            n.start_soon(async move {
                let mut w: &TcpStream = &writer;
                w.write_all(&msg).await?;
                AsyncWriteExt::close(&mut w).await?; // half-close: the echo ends
                Ok::<_, BoxError>(())
            })?;
            // The peer echoes with its own two references, in two tasks.
            let (pr, pw) = (b.clone(), b);
            n.start_soon(async move {
                let (mut r, mut w): (&TcpStream, &TcpStream) = (&pr, &pw);
                let copied = futures_util::io::copy(&mut r, &mut w).await?;
                assert_eq!(copied, 256 * 1024);
                AsyncWriteExt::close(&mut w).await?;
                Ok::<_, BoxError>(())
            })?;
            let mut r: &TcpStream = &a;
            let mut got = Vec::new();
            r.read_to_end(&mut got).await?;
            Ok::<_, BoxError>(got)
        })
        .await?
        .expect("not cancelled");
        assert_same_bytes(&got, &want);
        Ok(())
    });
}

#[test]
fn copy_moves_every_byte_from_a_tcp_stream_into_a_memory_stream() {
    run_io(1, async {
        let (client, server) = tcp_pair(false);
        let (tx, mut rx) = memory_stream_one_way_pair();
        let msg = pattern(9, 300 * 1024);
        let want = msg.clone();
        let got = open_nursery(|n| async move {
            n.start_soon(async move {
                client.send_all(&msg).await?;
                Ok::<_, BoxError>(()) // dropping the client ends the stream
            })?;
            n.start_soon(async move {
                let mut server = server;
                let mut tx = tx;
                let copied = futures_util::io::copy(&mut server, &mut tx).await?;
                assert_eq!(copied, 300 * 1024);
                AsyncWriteExt::close(&mut tx).await?;
                Ok::<_, BoxError>(())
            })?;
            let mut got = Vec::new();
            rx.read_to_end(&mut got).await?;
            Ok::<_, BoxError>(got)
        })
        .await?
        .expect("not cancelled");
        assert_same_bytes(&got, &want);
        Ok(())
    });
}

#[test]
fn futures_util_split_halves_of_a_tcp_stream_echo_in_two_tasks() {
    run_io(1, async {
        let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
        let addr = listener.local_addr()?;
        let msg = pattern(11, 100 * 1024);
        let want = msg.clone();
        let got = open_nursery(|n| async move {
            n.start_soon(async move {
                let (stream, _) = listener.accept().await?;
                let (mut rd, mut wr) = AsyncReadExt::split(stream);
                let copied = futures_util::io::copy(&mut rd, &mut wr).await?;
                assert_eq!(copied, 100 * 1024);
                wr.close().await?;
                Ok::<_, BoxError>(())
            })?;
            let stream = TcpStream::connect(addr).await?;
            let (mut rd, mut wr) = AsyncReadExt::split(stream);
            n.start_soon(async move {
                wr.write_all(&msg).await?;
                wr.close().await?;
                Ok::<_, BoxError>(())
            })?;
            let mut got = Vec::new();
            rd.read_to_end(&mut got).await?;
            Ok::<_, BoxError>(got)
        })
        .await?
        .expect("not cancelled");
        assert_same_bytes(&got, &want);
        Ok(())
    });
}

#[test]
fn write_all_and_read_to_end_through_the_pipes_of_cat() {
    run_io(1, async {
        let mut cmd = Command::new("cat");
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = open_process(cmd)?;
        let mut stdin = child.stdin.take().expect("piped");
        let mut stdout = child.stdout.take().expect("piped");
        let msg = pattern(13, 200 * 1024); // more than a pipe holds
        let want = msg.clone();
        let got = open_nursery(|n| async move {
            n.start_soon(async move {
                stdin.write_all(&msg).await?;
                AsyncWriteExt::close(&mut stdin).await?; // a pipe has no half-close: this closes it
                AsyncWriteExt::close(&mut stdin).await?; // and a second close does nothing
                Ok::<_, BoxError>(())
            })?;
            let mut got = Vec::new();
            stdout.read_to_end(&mut got).await?;
            Ok::<_, BoxError>(got)
        })
        .await?
        .expect("not cancelled");
        assert_same_bytes(&got, &want);
        assert!(child.wait().await?.success());
        Ok(())
    });
}

#[test]
fn write_vectored_is_one_writev_on_a_socket_and_one_buffer_on_a_memory_stream() {
    run_io(1, async {
        let bufs = [io::IoSlice::new(b"head "), io::IoSlice::new(b"body")];
        let (mut a, b) = UnixStream::pair()?;
        assert_eq!(a.write_vectored(&bufs).await?, 9);
        let mut got = [0u8; 9];
        (&b).read_exact(&mut got).await?;
        assert_eq!(&got, b"head body");
        let (mut tx, _rx) = memory_stream_one_way_pair();
        assert_eq!(tx.write_vectored(&bufs).await?, 5);
        Ok(())
    });
}

#[test]
fn async_buf_read_lines_come_from_the_buffer_of_a_buffered_receive_stream() {
    run_io(1, async {
        let (tx, rx) = memory_stream_one_way_pair();
        let mut rx = BufferedReceiveStream::new(rx);
        tx.send_all(b"HEAD\r\nfirst line\nsecond").await?;
        // The framed part through trioxide's own API ...
        assert_eq!(rx.receive_until(b"\r\n", 64).await?.as_deref(), Some(&b"HEAD"[..]));
        // ... and the rest through AsyncBufRead, from the same buffer.
        let mut line = String::new();
        assert_eq!(rx.read_line(&mut line).await?, 11);
        assert_eq!(line, "first line\n");
        tx.close();
        let mut rest = Vec::new();
        rx.read_until(b'\n', &mut rest).await?;
        assert_eq!(rest, b"second");
        assert_eq!(rx.buffered(), 0);
        Ok(())
    });
}

#[test]
fn a_timeout_cancels_read_exact_and_its_scope_catches_the_io_error() {
    run_io(1, async {
        let (mut a, mut b) = memory_stream_pair();
        b.write_all(b"abc").await?; // 3 of the 8 bytes asked for
        let mut buf = [0u8; 8];
        let out = move_on_after(Duration::from_secs(1), a.read_exact(&mut buf)).await?;
        assert_eq!(out, None, "the timeout's scope caught the cancelled read");
        // The error itself carries Cancelled, through futures-util.
        let e = trioxide::CancelScope::new();
        e.cancel();
        let inner = e
            .run(async {
                let err = a.read_exact(&mut buf).await.unwrap_err();
                assert!(err.get_ref().is_some_and(|i| i.is::<Cancelled>()), "{err:?}");
                assert_eq!(trioxide::io_error_kind(&err), Some(IoErrorKind::Cancelled));
                Err::<(), _>(err)
            })
            .await;
        assert!(matches!(inner, Ok(None)));
        Ok(())
    });
}

// ----------------------------------------------------------- WebSocket

/// Echoes text and binary messages until the close handshake is done.
async fn ws_echo_server(listener: TcpListener) -> Result<(), BoxError> {
    let (stream, _) = listener.accept().await?;
    let mut ws = async_tungstenite::accept_async(stream).await?;
    while let Some(msg) = ws.next().await {
        // Text and binary come back; the close frame is answered by
        // tungstenite, whose next `next` sends the answer and ends the stream.
        if let m @ (Message::Text(_) | Message::Binary(_)) = msg? {
            ws.send(m).await?;
        }
    }
    Ok(())
}

async fn ws_client(addr: SocketAddr) -> Result<Vec<Message>, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    let (mut ws, response) = async_tungstenite::client_async(format!("ws://{addr}/echo"), stream).await?;
    assert_eq!(response.status(), 101);
    let sent = [Message::text("hello"), Message::binary(vec![0u8, 1, 2, 255]), Message::text("ünïcödé")];
    for m in &sent {
        ws.send(m.clone()).await?;
    }
    let mut replies = Vec::new();
    for _ in 0..sent.len() {
        replies.push(ws.next().await.expect("a reply")?);
    }
    ws.close(None).await?;
    // The server's answering close frame, then the end.
    while let Some(m) = ws.next().await {
        assert!(m?.is_close(), "only the close handshake is left");
    }
    Ok(replies)
}

#[test]
fn websocket_echo_over_trioxide_tcp_with_async_tungstenite() {
    // Real sockets and a real clock: fail_after is a safety net only.
    let replies = Builder::new()
        .seed(1)
        .clock(SystemClock::new())
        .run(fail_after(Duration::from_secs(10), async {
            let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
            let addr = listener.local_addr()?;
            open_nursery(|n| async move {
                n.start_soon(ws_echo_server(listener))?;
                ws_client(addr).await
            })
            .await
            .map_err(BoxError::from)
        }))
        .expect("the exchange finished in time, with no error")
        .expect("not cancelled");
    assert_eq!(replies, [Message::text("hello"), Message::binary(vec![0u8, 1, 2, 255]), Message::text("ünïcödé")]);
}
