//! Sockets end to end: an echo server under many concurrent clients, the
//! "one epoll_ctl per socket" rule checked through `io_stats()`, half-close,
//! vectored sends, `send_file`, UDP, Unix sockets, refused connections, and
//! `wait_readable` / `wait_writable` on a pipe.
//!
//! Everything is on 127.0.0.1 (or socket pairs, socket files in the temp
//! dir, pipes), on a mock clock with a 50 ms autojump threshold, inside a
//! virtual-time hang guard (see `io_support`). Data is a position-dependent
//! pattern, checked byte for byte.

mod io_support;

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use io_support::*;
use trioxide::{
    current_time, io_error_kind, io_stats, move_on_after, notify_closing, open_nursery, serve_tcp, sleep, task_tree,
    wait_all_tasks_blocked, wait_readable, wait_writable, BoxError, Instant, IoErrorKind, ReceiveStream, SendStream,
    TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn at_ms(n: u64) -> Instant {
    Instant::ZERO + ms(n)
}

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A unique path under the temp dir, removed (file or directory) on drop.
struct TempPath(PathBuf);

impl TempPath {
    fn new(tag: &str) -> TempPath {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        TempPath(std::env::temp_dir().join(format!("trioxide-{tag}-{}-{n}", std::process::id())))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------- echo server

/// Counts handler tasks that started and that ended (however they ended).
#[derive(Default)]
struct Handlers {
    started: Cell<usize>,
    ended: Cell<usize>,
}

struct EndGuard(Rc<Handlers>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0.ended.set(self.0.ended.get() + 1);
    }
}

async fn echo(stream: TcpStream, handlers: Rc<Handlers>) -> Result<(), BoxError> {
    handlers.started.set(handlers.started.get() + 1);
    let _end = EndGuard(handlers);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.receive_some(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.send_all(&buf[..n]).await?;
    }
}

/// The messages client `id` sends: varied sizes, up to 64 KiB.
fn messages(id: usize) -> Vec<Vec<u8>> {
    let sizes: Vec<usize> = if valgrind() {
        vec![1 + id, 1000 + 37 * id, 4096]
    } else {
        vec![1 + id, 1000 + 37 * id, 16 * 1024, 65536 - id, (300 * id) % 5000 + 1, 65536]
    };
    sizes.iter().enumerate().map(|(m, &len)| pattern((id * 100 + m) as u64, len)).collect()
}

/// Sends its messages from one task while another receives the echo, and
/// checks every byte.
async fn echo_client(addr: SocketAddr, id: usize) -> Result<(), BoxError> {
    let stream = Rc::new(TcpStream::connect(addr).await?);
    let msgs = messages(id);
    let expected: Vec<u8> = msgs.concat();
    let s = stream.clone();
    open_nursery(|n| async move {
        n.start_soon(async move {
            for m in &msgs {
                s.send_all(m).await?;
            }
            Ok::<_, BoxError>(())
        })?;
        let got = recv_exact(&*stream, expected.len()).await?;
        assert_same_bytes(&got, &expected);
        Ok::<_, BoxError>(())
    })
    .await?;
    Ok(())
}

#[test]
fn echo_server_with_50_concurrent_clients_echoes_every_byte_and_cancelling_it_leaves_no_task() {
    let clients = if valgrind() { 10 } else { 50 };
    run_io(7, async {
        let handlers = Rc::new(Handlers::default());
        let h = handlers.clone();
        let handler = move |stream: TcpStream| echo(stream, h.clone());
        let handlers_ref = &handlers;
        let out = open_nursery(|server| async move {
            let addrs = server.start(|status| serve_tcp(handler, 0, Some(LOCALHOST), status)).await?;
            assert_eq!(addrs.len(), 1);
            assert_eq!(addrs[0].ip(), LOCALHOST);
            let addr = addrs[0];

            open_nursery(|n| async move {
                for id in 0..clients {
                    n.start_soon(echo_client(addr, id))?;
                }
                Ok::<_, BoxError>(())
            })
            .await?;
            assert_eq!(handlers_ref.started.get(), clients, "one handler per connection");

            // The clients closed their streams: each handler reads the end
            // of its stream and returns.
            for _ in 0..100 {
                if handlers_ref.ended.get() == clients {
                    break;
                }
                wait_all_tasks_blocked().await?;
            }
            assert_eq!(handlers_ref.ended.get(), clients);
            let tree = task_tree();
            let names: Vec<&str> = tree.iter().map(|t| t.name.as_str()).collect();
            assert_eq!(tree.len(), 3, "main, serve_tcp and its accept loop: {names:?}");
            let accept_loop = tree.iter().find(|t| t.name == "trioxide accept loop").expect("accept loop alive");
            assert_eq!(accept_loop.waiting_on, "wait_readable");

            server.cancel_scope().cancel();
            Ok::<_, BoxError>("body done")
        })
        .await;
        // The server stopped because it was cancelled, not because it failed.
        assert_eq!(out.map_err(|e| e.to_string())?, Some("body done"));
        let tree = task_tree();
        assert_eq!(tree.len(), 1, "only main is left: {tree:?}");
        assert_eq!(tree[0].parent, None);
        assert_eq!(handlers.started.get(), handlers.ended.get());
        let stats = io_stats();
        assert_eq!(stats.registered_now, 0, "every socket closed and its driver slot freed");
        assert_eq!(stats.deregistrations, 0, "closing never costs an epoll_ctl");
        Ok(())
    });
}

// ---------------------------------------------------------------- io_stats

/// 100 rounds of ping-pong over a connected pair: from the second round
/// on, each side's receive finds nothing and waits.
async fn ping_pong<S: SendStream + ReceiveStream + 'static>(a: S, b: S) -> Result<(), BoxError> {
    const ROUNDS: u8 = 100;
    let before = io_stats();
    let (a, b) = (Rc::new(a), Rc::new(b));
    let (a_ref, b_ref) = (&a, &b);
    open_nursery(|n| async move {
        let b2 = b_ref.clone();
        n.start_soon(async move {
            let mut buf = [0u8; 1];
            for i in 0..ROUNDS {
                assert_eq!(b2.receive_some(&mut buf).await?, 1);
                assert_eq!(buf[0], i);
                b2.send_all(&[i ^ 0xFF]).await?;
            }
            Ok::<_, BoxError>(())
        })?;
        let mut buf = [0u8; 1];
        for i in 0..ROUNDS {
            a_ref.send_all(&[i]).await?;
            assert_eq!(a_ref.receive_some(&mut buf).await?, 1);
            assert_eq!(buf[0], i ^ 0xFF);
        }
        Ok::<_, BoxError>(())
    })
    .await?;
    let after = io_stats();
    assert_eq!(after.registrations - before.registrations, 2, "one EPOLL_CTL_ADD per socket, for ~200 waits");
    assert!(after.polls - before.polls >= u64::from(ROUNDS) - 1, "the receives really waited for events");
    assert_eq!(after.registered_now, 2);
    a.close();
    b.close();
    let closed = io_stats();
    assert_eq!(closed.registered_now, 0);
    assert_eq!(closed.deregistrations, 0, "closing a socket makes no epoll_ctl call");
    Ok(())
}

#[test]
fn a_read_loop_registers_each_tcp_socket_once_and_closing_deregisters_nothing() {
    run_io(1, async {
        let (a, b) = tcp_pair(false);
        ping_pong(a, b).await
    });
}

#[test]
fn a_read_loop_registers_each_unix_socket_once_and_closing_deregisters_nothing() {
    run_io(1, async {
        let (a, b) = UnixStream::pair()?;
        ping_pong(a, b).await
    });
}

#[test]
fn sockets_whose_operations_never_block_are_never_registered() {
    run_io(1, async {
        let (client, server) = tcp_pair(false);
        let udp_a = UdpSocket::bind("127.0.0.1:0".parse()?)?;
        let udp_b = UdpSocket::bind("127.0.0.1:0".parse()?)?;
        let to_b = udp_b.local_addr()?;
        let mut buf = [0u8; 64];
        for i in 0..100u8 {
            client.send_all(&[i; 10]).await?;
            // Loopback delivery is synchronous, but don't rely on it: a
            // receive that had to wait would register the socket.
            block_until_readable(server.as_raw_fd());
            assert_eq!(server.receive_some(&mut buf[..10]).await?, 10);
            assert_eq!(buf[..10], [i; 10]);

            udp_a.send_to(&[i; 3], to_b).await?;
            block_until_readable(udp_b.as_raw_fd());
            assert_eq!(udp_b.recv_from(&mut buf).await?.0, 3);
        }
        let stats = io_stats();
        assert_eq!(stats.registrations, 0);
        assert_eq!(stats.registered_now, 0);
        Ok(())
    });
}

#[test]
fn a_socket_that_outlives_its_run_is_registered_again_in_the_next_run() {
    let (a, b) = UnixStream::pair().unwrap();
    run_io(1, async {
        let mut buf = [0u8; 8];
        assert_eq!(move_on_after(ms(100), b.receive_some(&mut buf)).await?, None);
        assert_eq!(io_stats().registrations, 1);
        Ok(())
    });
    // The first run's epoll is gone; the socket's cached token is stale.
    let (a, b) = (Rc::new(a), Rc::new(b));
    run_io(2, async {
        let (a_ref, b_ref) = (&a, &b);
        open_nursery(|n| async move {
            let b2 = b_ref.clone();
            n.start_soon(async move {
                let mut buf = [0u8; 8];
                let k = b2.receive_some(&mut buf).await?;
                assert_eq!(&buf[..k], b"again");
                Ok::<_, BoxError>(())
            })?;
            wait_all_tasks_blocked().await?;
            a_ref.send_all(b"again").await?;
            Ok::<_, BoxError>(())
        })
        .await?;
        assert_eq!(io_stats().registrations, 1, "registered afresh with this run's driver");
        Ok(())
    });
}

#[test]
fn accept_batch_takes_the_queued_connections_up_to_its_maximum() {
    run_io(1, async {
        let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
        let addr = listener.local_addr()?;
        let clients: Vec<std::net::TcpStream> =
            (0..5).map(|_| std::net::TcpStream::connect(addr)).collect::<Result<_, _>>()?;
        block_until_readable(listener.as_raw_fd());
        let mut batch = Vec::new();
        assert_eq!(listener.accept_batch(&mut batch, 3).await?, 3);
        assert_eq!(listener.accept_batch(&mut batch, 64).await?, 2, "the rest of the queue");
        assert_eq!(batch.len(), 5, "appended, not replaced");
        // In the order the clients connected.
        let peers: Vec<SocketAddr> = batch.iter().map(|(_, peer)| *peer).collect();
        let locals: Vec<SocketAddr> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
        assert_eq!(peers, locals);
        for (stream, peer) in &batch {
            assert_eq!(stream.peer_addr()?, *peer);
        }
        // The queue is empty now: the next batch waits.
        assert!(move_on_after(ms(100), listener.accept_batch(&mut batch, 64)).await?.is_none());
        assert_eq!(batch.len(), 5);
        Ok(())
    });
}

// ---------------------------------------------------------------- EOF

/// Both transports: the peer's last data and its end of stream arrive
/// before the reader, which has waited on the socket before (so it is
/// registered, as in any read loop), reads again. Edge-triggered epoll
/// reports both in one event; the read of the data is short, and the end of
/// stream must still be seen (regression test for the hang fixed by making
/// hang-up readiness sticky, commit 8823824).
async fn data_then_eof_on_a_registered_socket<S: SendStream + ReceiveStream>(
    reader: &S,
    writer: &S,
    send_eof: impl std::future::Future<Output = io::Result<()>>,
) -> Result<(), BoxError> {
    let mut buf = [0u8; 64];
    assert_eq!(move_on_after(ms(100), reader.receive_some(&mut buf)).await?, None);
    assert_eq!(io_stats().registered_now, 1, "the reader waited, so it is registered");
    writer.send_all(b"last words").await?;
    send_eof.await?;
    let n = reader.receive_some(&mut buf).await?;
    assert_eq!(&buf[..n], b"last words");
    // A read shorter than the buffer, but the end of the stream is also
    // there: the next receive must report it, not wait for an event that
    // will never come.
    let eof = move_on_after(ms(10_000), reader.receive_some(&mut buf)).await?;
    assert_eq!(eof, Some(0), "the end of the stream was not reported (still waiting at {:?})", current_time());
    Ok(())
}

#[test]
fn receive_reports_eof_when_the_last_data_and_the_fin_arrived_together_tcp() {
    run_io(1, async {
        let (client, server) = tcp_pair(false);
        data_then_eof_on_a_registered_socket(&client, &server, server.send_eof()).await
    });
}

#[test]
fn receive_reports_eof_when_the_last_data_and_the_shutdown_arrived_together_unix() {
    run_io(1, async {
        let (a, b) = UnixStream::pair()?;
        data_then_eof_on_a_registered_socket(&a, &b, b.send_eof()).await
    });
}

// ---------------------------------------------------------------- receive_into

#[test]
fn receive_into_appends_to_the_spare_capacity_and_reserves_8_kib_when_there_is_none() {
    run_io(1, async {
        let (client, server) = tcp_pair(false);
        let data = pattern(17, 30_000);
        client.send_all(&data).await?;
        block_until_readable(server.as_raw_fd());

        // Spare capacity is filled after what the vector holds.
        let mut buf = Vec::with_capacity(10);
        buf.extend_from_slice(b"abc");
        assert_eq!(server.receive_into(&mut buf).await?, 7);
        assert_eq!(&buf[..3], b"abc");
        assert_eq!(&buf[3..], &data[..7]);

        // No spare capacity: it reserves 8 KiB and reads into that.
        assert_eq!(buf.len(), buf.capacity());
        let n = server.receive_into(&mut buf).await?;
        assert!(n >= 8 * 1024 && buf.len() == 10 + n, "read {n}, len {}", buf.len());
        assert_eq!(&buf[3..], &data[..7 + n]);

        // The rest, then the end of the stream: 0 and nothing appended.
        let mut rest = Vec::with_capacity(64 * 1024);
        while rest.len() < data.len() - 7 - n {
            assert!(server.receive_into(&mut rest).await? > 0);
        }
        assert_same_bytes(&rest, &data[7 + n..]);
        client.send_eof().await?;
        let before = rest.len();
        assert_eq!(server.receive_into(&mut rest).await?, 0);
        assert_eq!(rest.len(), before);
        Ok(())
    });
}

// ---------------------------------------------------------------- half-close

#[test]
fn send_eof_lets_the_peer_read_to_the_end_while_data_still_flows_back() {
    run_io(1, async {
        let (client, server) = tcp_pair(false);
        client.send_all(b"request").await?;
        client.send_eof().await?;
        // The server reads the request and then the end of the stream...
        assert_eq!(recv_to_end(&server).await?, b"request");
        // ...and keeps reading 0 after it.
        let mut buf = [0u8; 8];
        assert_eq!(server.receive_some(&mut buf).await?, 0);

        // The other direction is still open.
        let response = pattern(9, 50_000);
        server.send_all(&response).await?;
        server.send_eof().await?;
        let got = recv_to_end(&client).await?;
        assert_same_bytes(&got, &response);

        // Sending after send_eof is refused; a second send_eof does nothing.
        let err = client.send_all(b"too late").await.unwrap_err();
        assert_eq!(io_error_kind(&err), Some(IoErrorKind::Closed), "{err}");
        assert_kind(&client.send_all_vectored(&[b"too", b"late"]).await, IoErrorKind::Closed);
        client.send_eof().await?;
        assert_eq!(current_time(), Instant::ZERO);
        Ok(())
    });
}

// ---------------------------------------------------------------- vectored

#[test]
fn send_all_vectored_with_thousands_of_chunks_including_empty_ones_arrives_intact_and_in_order() {
    let chunks_n = if valgrind() { 1500 } else { 3000 };
    run_io(1, async {
        // Small buffers: the writes come back short many times, cutting
        // chunks in the middle and crossing the 1024-buffer batches.
        let (client, server) = tcp_pair(true);
        let data = pattern(11, chunks_n * 1500);
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut pos = 0;
        for i in 0..chunks_n {
            let len = if i % 10 == 3 { 0 } else { (i * 7919) % 1500 };
            chunks.push(&data[pos..pos + len]);
            pos += len;
        }
        let total = pos;
        assert!(chunks.len() > 1024 && chunks.iter().filter(|c| c.is_empty()).count() >= chunks_n / 10);
        let (sent, received) = futures_join(client.send_all_vectored(&chunks), recv_exact(&server, total)).await;
        sent?;
        let received = received?;
        assert_same_bytes(&received, &data[..total]);

        // Nothing at all to send: returns at once.
        client.send_all_vectored(&[]).await?;
        client.send_all_vectored(&[b"", b""]).await?;
        Ok(())
    });
}

/// Polls two futures until both are done (a two-way `join!` without a
/// dependency): both run in the current task.
async fn futures_join<A: std::future::Future, B: std::future::Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let std::task::Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            std::task::Poll::Ready((ra.take().unwrap(), rb.take().unwrap()))
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

// ---------------------------------------------------------------- send_file

/// A temp file holding `pattern(seed, len)`, deleted on drop.
fn temp_file(len: usize) -> (TempPath, std::fs::File, Vec<u8>) {
    let path = TempPath::new("send-file");
    let contents = pattern(21, len);
    std::fs::write(&path.0, &contents).unwrap();
    let file = std::fs::File::open(&path.0).unwrap();
    (path, file, contents)
}

#[test]
fn send_file_sends_exactly_the_requested_range_of_a_multi_megabyte_file() {
    let (len, offset, count) = if valgrind() { (300_000, 1_234, 200_000) } else { (3_000_000, 12_345, 2_000_000) };
    run_io(1, async {
        let (_path, file, contents) = temp_file(len);
        let (client, server) = tcp_pair(false);
        let (sent, got) =
            futures_join(client.send_file(&file, offset as u64, count as u64), recv_exact(&server, count)).await;
        assert_eq!(sent?, count as u64);
        assert_same_bytes(&got?, &contents[offset..offset + count]);
        // Nothing more was sent.
        client.send_all(b"end").await?;
        assert_eq!(recv_exact(&server, 3).await?, b"end");
        Ok(())
    });
}

#[test]
fn send_file_with_a_count_past_the_end_returns_the_bytes_actually_sent() {
    run_io(1, async {
        let (_path, file, contents) = temp_file(50_000);
        let (client, server) = tcp_pair(false);
        let sent = move_on_after(ms(10_000), client.send_file(&file, 49_000, 5_000)).await?;
        assert_eq!(sent, Some(1_000), "send_file must return at the end of the file");
        assert_eq!(recv_exact(&server, 1_000).await?, &contents[49_000..]);
        // A short file is not a cancelled send: the stream is still usable.
        client.send_all(b"after").await?;
        assert_eq!(recv_exact(&server, 5).await?, b"after");
        Ok(())
    });
}

#[test]
fn send_file_with_a_count_past_the_end_returns_on_a_socket_that_has_waited_before() {
    run_io(1, async {
        let (_path, file, contents) = temp_file(50_000);
        let (client, server) = tcp_pair(false);
        // The client waits once (as any connection serving requests does),
        // so it is registered with epoll and gets no event at registration.
        let mut buf = [0u8; 16];
        assert_eq!(move_on_after(ms(100), client.receive_some(&mut buf)).await?, None);
        let start = current_time();
        let sent = move_on_after(ms(10_000), client.send_file(&file, 49_000, 5_000)).await?;
        assert_eq!(
            sent,
            Some(1_000),
            "send_file past the end of the file waited for writability that never changes \
             (gave up after {:?})",
            current_time().saturating_duration_since(start)
        );
        assert_eq!(recv_exact(&server, 1_000).await?, &contents[49_000..]);
        Ok(())
    });
}

// ---------------------------------------------------------------- UDP

#[test]
fn udp_send_to_and_recv_from_round_trip_keeps_datagram_boundaries_and_senders() {
    run_io(1, async {
        let a = Rc::new(UdpSocket::bind("127.0.0.1:0".parse()?)?);
        let b = UdpSocket::bind("127.0.0.1:0".parse()?)?;
        let (a_addr, b_addr) = (a.local_addr()?, b.local_addr()?);
        assert_eq!(a.send_to(b"one", b_addr).await?, 3);
        let big = pattern(5, 2000);
        assert_eq!(a.send_to(&big, b_addr).await?, 2000);
        let mut buf = vec![0u8; 4096];
        let (n, from) = b.recv_from(&mut buf).await?;
        assert_eq!((&buf[..n], from), (&b"one"[..], a_addr));
        let (n, from) = b.recv_from(&mut buf).await?;
        assert_eq!((&buf[..n], from), (&big[..], a_addr));

        // A receive that waits is woken by the datagram; the reply comes
        // back to the sender's address.
        let a_ref = &a;
        let b_ref = &b;
        open_nursery(|n| async move {
            let a2 = a_ref.clone();
            n.start_soon(async move {
                let mut buf = [0u8; 64];
                let (n, from) = a2.recv_from(&mut buf).await?;
                assert_eq!((&buf[..n], from), (&b"reply"[..], b_addr));
                assert_eq!(current_time(), at_ms(1000));
                Ok::<_, BoxError>(())
            })?;
            sleep(ms(1000)).await?;
            b_ref.send_to(b"reply", a_addr).await?;
            Ok::<_, BoxError>(())
        })
        .await?;

        // A datagram longer than the buffer is cut; the rest is discarded.
        a.send_to(&big, b_addr).await?;
        a.send_to(b"next", b_addr).await?;
        let mut small = [0u8; 10];
        let (n, _) = b.recv_from(&mut small).await?;
        assert_eq!(&small[..n], &big[..10]);
        let (n, _) = b.recv_from(&mut buf).await?;
        assert_eq!(&buf[..n], b"next");
        Ok(())
    });
}

/// Runs `f` on a thread of its own; fails the test if it has not finished
/// within `limit` (a runtime spinning without yielding cannot be stopped by
/// its own deadlines; the thread is then left to die with the process).
fn bounded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            handle.join().unwrap();
            v
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread sent nothing but did not panic"),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("the run did not finish within {limit:?}"),
    }
}

#[test]
fn udp_recv_from_after_a_reported_icmp_error_waits_for_the_next_datagram_instead_of_spinning() {
    // With IP_RECVERR, an ICMP "port unreachable" is reported on the socket
    // (EPOLLERR) and returned once by the next receive; after that the
    // socket is an ordinary empty socket again, and a receive must wait.
    // Takes ~0.1 s when it works; a spinning runtime fails it at the bound.
    let limit = Duration::from_secs(if valgrind() { 10 } else { 2 });
    let out = bounded(limit, || {
        run_io(1, async {
            let udp = UdpSocket::bind("127.0.0.1:0".parse()?)?;
            let on: libc::c_int = 1;
            // SAFETY: `on` is a live c_int and we pass its size.
            let r = unsafe {
                libc::setsockopt(
                    udp.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_RECVERR,
                    &on as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(r, 0);
            let mut buf = [0u8; 16];
            // Registered with epoll, as any socket that has waited.
            assert_eq!(move_on_after(ms(100), udp.recv_from(&mut buf)).await?, None);
            udp.send_to(b"anyone?", refused_addr()).await?;
            let err = udp.recv_from(&mut buf).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
            let start = current_time();
            let next = move_on_after(ms(1000), udp.recv_from(&mut buf)).await?;
            assert!(next.is_none(), "nothing was sent: {next:?}");
            Ok(current_time().saturating_duration_since(start))
        })
    });
    assert_eq!(out, ms(1000), "the receive waited until its deadline");
}

// ---------------------------------------------------------------- Unix

#[test]
fn unix_listener_and_connect_round_trip_through_a_socket_file() {
    run_io(1, async {
        let dir = TempPath::new("unix");
        std::fs::create_dir(&dir.0)?;
        let path = dir.0.join("server.sock");
        let listener = UnixListener::bind(&path)?;
        let listener_ref = &listener;
        let client_path = path.clone();
        open_nursery(|n| async move {
            n.start_soon(async move {
                let client = UnixStream::connect(&client_path).await?;
                client.send_all(b"hello over a socket file").await?;
                let reply = recv_exact(&client, 24).await?;
                assert_eq!(reply, b"HELLO OVER A SOCKET FILE");
                Ok::<_, BoxError>(())
            })?;
            let conn = listener_ref.accept().await?;
            let request = recv_exact(&conn, 24).await?;
            conn.send_all(&request.to_ascii_uppercase()).await?;
            Ok::<_, BoxError>(())
        })
        .await?;
        // Connecting to a path nobody listens on fails at once.
        listener.close();
        std::fs::remove_file(&path)?;
        let err = UnixStream::connect(&path).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        Ok(())
    });
}

#[test]
fn unix_stream_pair_carries_data_both_ways() {
    run_io(1, async {
        let (a, b) = UnixStream::pair()?;
        let data = pattern(13, 300_000); // more than the socket buffer
        let (sent, got) = futures_join(a.send_all(&data), recv_exact(&b, data.len())).await;
        sent?;
        assert_same_bytes(&got?, &data);
        b.send_all(b"back").await?;
        assert_eq!(recv_exact(&a, 4).await?, b"back");
        Ok(())
    });
}

// ---------------------------------------------------------------- connect errors

#[test]
fn tcp_connect_to_a_refused_port_reports_connection_refused() {
    run_io(1, async {
        let addr = refused_addr();
        let err = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        assert_eq!(io_error_kind(&err), None, "an OS error, not one of trioxide's conditions");
        assert_eq!(current_time(), Instant::ZERO, "refused at once");
        Ok(())
    });
}

// ---------------------------------------------------------------- raw fds

#[test]
fn wait_readable_on_a_pipe_waits_for_a_writer_and_rechecks_the_level_after_partial_reads() {
    run_io(1, async {
        let (mut reader, writer) = io::pipe()?;
        let fd = reader.as_raw_fd();
        let writer = Rc::new(writer);

        // Waits until another task writes, at t = 1 s.
        let w = writer.clone();
        open_nursery(|n| async move {
            n.start_soon(async move {
                sleep(ms(1000)).await?;
                (&*w).write_all(b"0123456789")?;
                Ok::<_, BoxError>(())
            })?;
            wait_readable(fd).await?;
            assert_eq!(current_time(), at_ms(1000));
            Ok::<_, BoxError>(())
        })
        .await?;

        // After a partial read the pipe is still readable: no waiting.
        let mut buf = [0u8; 3];
        reader.read_exact(&mut buf)?;
        assert_eq!(&buf, b"012");
        assert_eq!(move_on_after(ms(1000), wait_readable(fd)).await?, Some(()));
        assert_eq!(current_time(), at_ms(1000), "returned at once");

        // Drained: the level check says not readable, so it waits.
        let mut rest = [0u8; 7];
        reader.read_exact(&mut rest)?;
        assert_eq!(&rest, b"3456789");
        assert_eq!(move_on_after(ms(1000), wait_readable(fd)).await?, None);
        assert_eq!(current_time(), at_ms(2000));

        // And is woken again by the next write.
        let w = writer.clone();
        open_nursery(|n| async move {
            n.start_soon(async move {
                sleep(ms(500)).await?;
                (&*w).write_all(b"again")?;
                Ok::<_, BoxError>(())
            })?;
            wait_readable(fd).await?;
            assert_eq!(current_time(), at_ms(2500));
            Ok::<_, BoxError>(())
        })
        .await?;
        notify_closing(fd);
        Ok(())
    });
}

#[test]
fn wait_readable_on_a_descriptor_that_is_not_open_reports_ebadf() {
    run_io(1, async {
        let fd = 1_000_000; // beyond any fd limit: never open
        let err = wait_readable(fd).await.unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
        assert_eq!(io_stats().registered_now, 0, "nothing left behind");
        notify_closing(fd); // a no-op
        Ok(())
    });
}

#[test]
fn wait_writable_on_a_full_pipe_waits_until_a_reader_drains_it() {
    run_io(1, async {
        let (reader, writer) = io::pipe()?;
        let fd = writer.as_raw_fd();
        set_nonblocking(fd);
        wait_writable(fd).await?; // empty pipe: at once
        assert_eq!(current_time(), Instant::ZERO);
        let filled = fill_nonblocking(&writer);
        assert_eq!(move_on_after(ms(1000), wait_writable(fd)).await?, None, "a full pipe is not writable");
        assert_eq!(current_time(), at_ms(1000));

        let reader = Rc::new(std::cell::RefCell::new(reader));
        let r = reader.clone();
        open_nursery(|n| async move {
            n.start_soon(async move {
                sleep(ms(300)).await?;
                let mut sink = vec![0u8; filled];
                r.borrow_mut().read_exact(&mut sink)?;
                Ok::<_, BoxError>(())
            })?;
            wait_writable(fd).await?;
            assert_eq!(current_time(), at_ms(1300));
            Ok::<_, BoxError>(())
        })
        .await?;
        wait_writable(fd).await?;
        assert_eq!(current_time(), at_ms(1300));
        notify_closing(fd);
        drop(reader);
        Ok(())
    });
}
