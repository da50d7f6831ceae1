//! Rules I1–I3 of RULES.md (at the repository root), section "I/O", one or
//! more tests per rule, named after the rule.
//!
//! Sockets are on 127.0.0.1 (or socket pairs and pipes). Runs use a mock
//! clock with a 50 ms autojump threshold (`io_support::AUTOJUMP`): virtual
//! deadlines pass without real waiting, and the clock never jumps while
//! loopback data is still arriving. Every run sits inside a virtual-time
//! hang guard, so a lost wake-up fails the test instead of hanging it.

mod io_support;

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use io_support::*;
use trioxide::{
    checkpoint, current_time, happy_eyeballs, io_stats, move_on_after, notify_closing, open_nursery, open_tcp_stream,
    task_tree, wait_all_tasks_blocked, wait_readable, wait_writable, BoxError, Builder, CancelScope, Instant,
    Instrument, IoErrorKind, TaskId, TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream,
};

type Slot<T> = Rc<RefCell<Option<T>>>;

/// Operation name and the trioxide condition its error carried.
type Outcomes = Vec<(&'static str, Option<IoErrorKind>)>;

fn slot<T>() -> Slot<T> {
    Rc::new(RefCell::new(None))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn at_ms(n: u64) -> Instant {
    Instant::ZERO + ms(n)
}

/// The names of what the live tasks other than main are blocked on.
fn blocked_on() -> Vec<&'static str> {
    task_tree().into_iter().filter(|t| t.parent.is_some()).map(|t| t.waiting_on).collect()
}

// ---------------------------------------------------------------- I1

#[test]
fn i1_second_receiver_on_one_tcp_stream_gets_busy_resource_and_the_first_still_receives() {
    run_io(1, async {
        let (client, server) = tcp_pair(false);
        let server = Rc::new(server);
        let first: Slot<io::Result<Vec<u8>>> = slot();
        let (server_ref, first_ref, client_ref) = (&server, &first, &client);
        open_nursery(|n| async move {
            let (s, f) = (server_ref.clone(), first_ref.clone());
            n.start_soon(async move {
                let mut buf = [0u8; 64];
                let r = s.receive_some(&mut buf).await;
                *f.borrow_mut() = Some(r.map(|k| buf[..k].to_vec()));
            })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(blocked_on(), ["wait_readable"], "the first receiver waits for data");

            let mut buf = [0u8; 64];
            let second = server_ref.receive_some(&mut buf).await;
            assert_kind(&second, IoErrorKind::Busy);
            let mut vec_buf = Vec::new();
            assert_kind(&server_ref.receive_into(&mut vec_buf).await, IoErrorKind::Busy);
            assert!(first_ref.borrow().is_none(), "the Busy attempt must not disturb the first receiver");

            client_ref.send_all(b"for the first receiver").await?;
            Ok::<_, BoxError>(())
        })
        .await?;
        let got = first.borrow_mut().take().expect("the first receiver finished");
        assert_eq!(got?, b"for the first receiver");

        // The direction is free again once the first receive is over.
        client.send_all(b"next").await?;
        assert_eq!(recv_exact(&*server, 4).await?, b"next");
        Ok(())
    });
}

#[test]
fn i1_second_sender_while_the_first_is_blocked_on_a_full_buffer_gets_busy_resource() {
    run_io(1, async {
        let (client, server) = tcp_pair(true);
        let client = Rc::new(client);
        let data = pattern(1, 256 * 1024);
        let first: Slot<io::Result<()>> = slot();
        let (client_ref, server_ref, first_ref, data_ref) = (&client, &server, &first, &data);
        open_nursery(|n| async move {
            let (c, f, d) = (client_ref.clone(), first_ref.clone(), data_ref.clone());
            n.start_soon(async move {
                let r = c.send_all(&d).await;
                *f.borrow_mut() = Some(r);
            })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(blocked_on(), ["wait_writable"], "256 KiB cannot fit in the small buffers");

            // Every operation that sends claims the sending direction.
            assert_kind(&client_ref.send_all(b"intruder").await, IoErrorKind::Busy);
            assert_kind(&client_ref.send_all_vectored(&[b"in", b"truder"]).await, IoErrorKind::Busy);
            assert_kind(&client_ref.send_eof().await, IoErrorKind::Busy);
            assert_kind(&client_ref.wait_send_all_might_not_block().await, IoErrorKind::Busy);
            let exe = std::fs::File::open(std::env::current_exe()?)?;
            assert_kind(&client_ref.send_file(&exe, 0, 10).await, IoErrorKind::Busy);
            assert!(first_ref.borrow().is_none());

            // Draining the peer lets the first sender finish: exactly its
            // bytes arrive, none of the refused ones.
            let got = recv_exact(server_ref, data_ref.len()).await?;
            assert_same_bytes(&got, data_ref);
            Ok::<_, BoxError>(())
        })
        .await?;
        first.borrow_mut().take().expect("the first sender finished")?;
        client.send_all(b"after").await?;
        assert_eq!(recv_exact(&server, 5).await?, b"after");
        Ok(())
    });
}

#[test]
fn i1_second_wait_readable_on_one_pipe_fd_gets_busy_resource() {
    run_io(1, async {
        let (reader, mut writer) = io::pipe()?;
        let fd = reader.as_raw_fd();
        let first: Slot<io::Result<()>> = slot();
        let first_ref = &first;
        let writer_ref = &mut writer;
        open_nursery(|n| async move {
            let f = first_ref.clone();
            n.start_soon(async move {
                let r = wait_readable(fd).await;
                *f.borrow_mut() = Some(r);
            })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(blocked_on(), ["wait_readable"]);
            assert_kind(&wait_readable(fd).await, IoErrorKind::Busy);
            assert!(first_ref.borrow().is_none());
            writer_ref.write_all(b"x")?;
            Ok::<_, BoxError>(())
        })
        .await?;
        first.borrow_mut().take().expect("the first waiter finished")?;
        notify_closing(fd);
        Ok(())
    });
}

#[test]
fn i1_second_wait_writable_on_one_full_pipe_gets_busy_resource() {
    run_io(1, async {
        let (mut reader, writer) = io::pipe()?;
        let fd = writer.as_raw_fd();
        set_nonblocking(fd);
        let filled = fill_nonblocking(&writer);
        assert!(filled > 0);
        let first: Slot<io::Result<()>> = slot();
        let first_ref = &first;
        let reader_ref = &mut reader;
        open_nursery(|n| async move {
            let f = first_ref.clone();
            n.start_soon(async move {
                let r = wait_writable(fd).await;
                *f.borrow_mut() = Some(r);
            })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(blocked_on(), ["wait_writable"], "the pipe is full");
            assert_kind(&wait_writable(fd).await, IoErrorKind::Busy);
            // Drain the pipe; the first waiter wakes.
            let mut sink = vec![0u8; filled];
            reader_ref.read_exact(&mut sink)?;
            Ok::<_, BoxError>(())
        })
        .await?;
        first.borrow_mut().take().expect("the first waiter finished")?;
        notify_closing(fd);
        Ok(())
    });
}

#[test]
fn i1_second_datagram_receiver_on_one_udp_socket_gets_busy_resource() {
    run_io(1, async {
        let a = UdpSocket::bind("127.0.0.1:0".parse()?)?;
        let b = Rc::new(UdpSocket::bind("127.0.0.1:0".parse()?)?);
        let first: Slot<io::Result<Vec<u8>>> = slot();
        let (a_ref, b_ref, first_ref) = (&a, &b, &first);
        open_nursery(|n| async move {
            let (b2, f) = (b_ref.clone(), first_ref.clone());
            n.start_soon(async move {
                let mut buf = [0u8; 64];
                let r = b2.recv_from(&mut buf).await;
                *f.borrow_mut() = Some(r.map(|(k, _)| buf[..k].to_vec()));
            })?;
            wait_all_tasks_blocked().await?;
            let mut buf = [0u8; 64];
            assert_kind(&b_ref.recv_from(&mut buf).await, IoErrorKind::Busy);
            // The other direction is free: sending while a receive waits.
            b_ref.send_to(b"to a", a_ref.local_addr()?).await?;
            a_ref.send_to(b"datagram", b_ref.local_addr()?).await?;
            Ok::<_, BoxError>(())
        })
        .await?;
        assert_eq!(first.borrow_mut().take().expect("the first receiver finished")?, b"datagram");
        let mut buf = [0u8; 64];
        let (k, _) = a.recv_from(&mut buf).await?;
        assert_eq!(&buf[..k], b"to a");
        Ok(())
    });
}

#[test]
fn i1_closing_a_stream_wakes_its_blocked_receiver_with_closed_resource() {
    run_io(1, async {
        let (client, server) = tcp_pair(false);
        let server = Rc::new(server);
        let result: Slot<(io::Result<usize>, Instant)> = slot();
        let (server_ref, result_ref) = (&server, &result);
        open_nursery(|n| async move {
            let (s, r) = (server_ref.clone(), result_ref.clone());
            n.start_soon(async move {
                let mut buf = [0u8; 16];
                let out = s.receive_some(&mut buf).await;
                *r.borrow_mut() = Some((out, current_time()));
            })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(io_stats().registered_now, 1);
            server_ref.close();
            // Freed from the driver at once, with no epoll_ctl call.
            assert_eq!(io_stats().registered_now, 0);
            assert_eq!(io_stats().deregistrations, 0);
            Ok::<_, BoxError>(())
        })
        .await?;
        let (out, when) = result.borrow_mut().take().expect("the receiver finished");
        assert_kind(&out, IoErrorKind::Closed);
        assert_eq!(when, Instant::ZERO, "woken at once, not by a timeout");
        // The peer sees the end of the stream.
        assert_eq!(recv_to_end(&client).await?, b"");
        Ok(())
    });
}

#[test]
fn i1_closing_wakes_a_blocked_sender_an_acceptor_and_a_datagram_receiver_with_closed_resource() {
    run_io(1, async {
        let (client, _server) = tcp_pair(true);
        let client = Rc::new(client);
        let listener = Rc::new(TcpListener::bind("127.0.0.1:0".parse()?)?);
        let udp = Rc::new(UdpSocket::bind("127.0.0.1:0".parse()?)?);
        let results: Rc<RefCell<Outcomes>> = Rc::default();
        let (c, l, u, res) = (&client, &listener, &udp, &results);
        open_nursery(|n| async move {
            let (c2, r) = (c.clone(), res.clone());
            n.start_soon(async move {
                let out = c2.send_all(&vec![1u8; 256 * 1024]).await;
                r.borrow_mut().push(("send_all", kind_of(&out)));
            })?;
            let (l2, r) = (l.clone(), res.clone());
            n.start_soon(async move {
                let out = l2.accept().await;
                r.borrow_mut().push(("accept", kind_of(&out)));
            })?;
            let (u2, r) = (u.clone(), res.clone());
            n.start_soon(async move {
                let mut buf = [0u8; 16];
                let out = u2.recv_from(&mut buf).await;
                r.borrow_mut().push(("recv_from", kind_of(&out)));
            })?;
            wait_all_tasks_blocked().await?;
            let mut waits = blocked_on();
            waits.sort();
            assert_eq!(waits, ["wait_readable", "wait_readable", "wait_writable"]);
            assert!(res.borrow().is_empty());
            c.close();
            l.close();
            u.close();
            Ok::<_, BoxError>(())
        })
        .await?;
        let mut got = results.borrow().clone();
        got.sort_by_key(|(op, _)| *op);
        let closed = Some(IoErrorKind::Closed);
        assert_eq!(got, [("accept", closed), ("recv_from", closed), ("send_all", closed)]);
        assert_eq!(current_time(), Instant::ZERO);
        Ok(())
    });
}

#[test]
fn i1_notify_closing_wakes_a_raw_fd_waiter_with_closed_resource_and_deregisters_the_fd() {
    run_io(1, async {
        let (reader, mut writer) = io::pipe()?;
        let fd = reader.as_raw_fd();
        let before = io_stats();
        let result: Slot<io::Result<()>> = slot();
        let result_ref = &result;
        open_nursery(|n| async move {
            let r = result_ref.clone();
            n.start_soon(async move {
                let out = wait_readable(fd).await;
                *r.borrow_mut() = Some(out);
            })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(blocked_on(), ["wait_readable"]);
            notify_closing(fd);
            Ok::<_, BoxError>(())
        })
        .await?;
        assert_kind(&result.borrow_mut().take().expect("the waiter finished"), IoErrorKind::Closed);
        let after = io_stats();
        assert_eq!(after.registrations - before.registrations, 1);
        assert_eq!(after.deregistrations - before.deregistrations, 1, "a raw fd is deregistered explicitly");
        assert_eq!(after.registered_now, 0);

        // The fd itself is still open: waiting on it again starts afresh.
        writer.write_all(b"y")?;
        wait_readable(fd).await?;
        notify_closing(fd);
        let last = io_stats();
        assert_eq!(last.registrations - after.registrations, 1);
        assert_eq!(last.deregistrations - after.deregistrations, 1);
        // notify_closing on an fd nobody waits on does nothing.
        notify_closing(fd);
        assert_eq!(io_stats().deregistrations, last.deregistrations);
        Ok(())
    });
}

#[test]
fn i1_operations_on_a_closed_stream_report_closed_resource() {
    run_io(1, async {
        let (client, server) = tcp_pair(false);
        server.close();
        server.close(); // closing twice is harmless
        let mut buf = [0u8; 8];
        assert_kind(&server.receive_some(&mut buf).await, IoErrorKind::Closed);
        assert_kind(&server.send_all(b"x").await, IoErrorKind::Closed);
        assert_kind(&server.send_all_vectored(&[b"x"]).await, IoErrorKind::Closed);
        assert_kind(&server.send_eof().await, IoErrorKind::Closed);
        assert_kind(&server.wait_send_all_might_not_block().await, IoErrorKind::Closed);
        assert!(server.local_addr().is_err());

        let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
        listener.close();
        assert_kind(&listener.accept().await, IoErrorKind::Closed);

        let (a, _b) = UnixStream::pair()?;
        a.close();
        assert_kind(&a.receive_some(&mut buf).await, IoErrorKind::Closed);

        let udp = UdpSocket::bind("127.0.0.1:0".parse()?)?;
        let to = udp.local_addr()?;
        udp.close();
        assert_kind(&udp.send_to(b"x", to).await, IoErrorKind::Closed);
        assert_kind(&udp.recv_from(&mut buf).await, IoErrorKind::Closed);
        drop(client);
        Ok(())
    });
}

// ---------------------------------------------------------------- I2

#[test]
fn i2_every_operation_in_a_cancelled_scope_reports_cancelled_without_touching_the_socket() {
    run_io(1, async {
        // Everything is ready before the scope: data to receive, a
        // connection to accept, a datagram to read, a pipe to read.
        let (std_client, std_server) = std_tcp_pair(false);
        (&std_client).write_all(b"waiting data")?;
        block_until_readable(std_server.as_raw_fd());
        let (client, server) = (TcpStream::from_std(std_client)?, TcpStream::from_std(std_server)?);

        let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
        let laddr = listener.local_addr()?;
        let pending = std::net::TcpStream::connect(laddr)?;
        block_until_readable(listener.as_raw_fd());

        let dir = temp_name("i2-unix");
        std::fs::create_dir(&dir)?;
        let path = dir.join("sock");
        let unix_listener = UnixListener::bind(&path)?;
        let _unixpending = std::os::unix::net::UnixStream::connect(&path)?;

        let (ua, ub) = (UdpSocket::bind("127.0.0.1:0".parse()?)?, UdpSocket::bind("127.0.0.1:0".parse()?)?);
        ua.send_to(b"dgram", ub.local_addr()?).await?;
        block_until_readable(ub.as_raw_fd());

        let (pipe_r, mut pipe_w) = io::pipe()?;
        pipe_w.write_all(b"p")?;
        let exe = std::fs::File::open(std::env::current_exe()?)?;

        let before = io_stats();
        let scope = CancelScope::new();
        scope.cancel();
        let results = scope
            .run(async {
                let mut buf = [0u8; 64];
                let mut batch = Vec::new();
                let mut vec_buf = Vec::with_capacity(64);
                let r: Vec<(&str, Option<IoErrorKind>)> = vec![
                    ("receive_some with data available", kind_of(&server.receive_some(&mut buf).await)),
                    ("receive_into with data available", kind_of(&server.receive_into(&mut vec_buf).await)),
                    ("send_all", kind_of(&client.send_all(b"never").await)),
                    ("send_all_vectored", kind_of(&client.send_all_vectored(&[b"ne", b"ver"]).await)),
                    ("send_file", kind_of(&client.send_file(&exe, 0, 100).await)),
                    ("send_eof", kind_of(&client.send_eof().await)),
                    ("wait_send_all_might_not_block", kind_of(&client.wait_send_all_might_not_block().await)),
                    ("accept with a connection queued", kind_of(&listener.accept().await)),
                    ("accept_batch", kind_of(&listener.accept_batch(&mut batch, 8).await)),
                    ("TcpStream::connect", kind_of(&TcpStream::connect(laddr).await)),
                    ("open_tcp_stream", kind_of(&open_tcp_stream("127.0.0.1", laddr.port()).await)),
                    ("happy_eyeballs", kind_of(&happy_eyeballs(vec![laddr], ms(250), TcpStream::connect).await)),
                    ("UnixStream::connect", kind_of(&UnixStream::connect(&path).await)),
                    ("UnixListener::accept", kind_of(&unix_listener.accept().await)),
                    ("wait_readable", kind_of(&wait_readable(pipe_r.as_raw_fd()).await)),
                    ("wait_writable", kind_of(&wait_writable(pipe_w.as_raw_fd()).await)),
                    ("send_to", kind_of(&ua.send_to(b"never", ub.local_addr()?).await)),
                    ("recv_from with a datagram queued", kind_of(&ub.recv_from(&mut buf).await)),
                ];
                assert!(vec_buf.is_empty(), "a cancelled receive_into appends nothing");
                Ok::<_, BoxError>(r)
            })
            .await?
            .expect("the body returns its results");
        for (op, kind) in &results {
            assert_eq!(*kind, Some(IoErrorKind::Cancelled), "{op}");
        }
        assert_eq!(results.len(), 18);
        // Reported before any registration: nothing touched the driver.
        assert_eq!(io_stats().registrations, before.registrations);
        assert_eq!(current_time(), Instant::ZERO);

        // Nothing was consumed and nothing was sent.
        let mut buf = [0u8; 64];
        let n = server.receive_some(&mut buf).await?;
        assert_eq!(&buf[..n], b"waiting data");
        client.send_all(b"after").await?;
        assert_eq!(recv_exact(&server, 5).await?, b"after", "none of the cancelled sends' bytes went out");
        let (accepted, _) = listener.accept().await?;
        assert_eq!(accepted.peer_addr()?, pending.local_addr()?, "the queued connection was not lost");
        let none = move_on_after(ms(500), listener.accept()).await?;
        assert!(none.is_none(), "the cancelled connects made no connection");
        unix_listener.accept().await?;
        let (n, from) = ub.recv_from(&mut buf).await?;
        assert_eq!((&buf[..n], from), (&b"dgram"[..], ua.local_addr()?));
        let none = move_on_after(ms(500), ub.recv_from(&mut buf)).await?;
        assert!(none.is_none(), "the cancelled send_to sent nothing");
        wait_readable(pipe_r.as_raw_fd()).await?;
        notify_closing(pipe_r.as_raw_fd());
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    });
}

/// Which immediate operation the busy task of the interleaving test makes.
#[derive(Clone, Copy, Debug)]
enum Op {
    Checkpoint,
    Send,
    Receive,
}

const ROUNDS: usize = 40;

/// Two tasks: "S" makes `ROUNDS` operations of kind `op`, each of which
/// completes at once; "C" counts with `checkpoint()`. Returns the order in
/// which their steps ran, one letter per step.
fn interleaving(seed: u64, op: Op) -> String {
    let (a, b) = UnixStream::pair().unwrap();
    Builder::new().seed(seed).run(async move {
        // Data for the receives, queued up front (also for the other
        // variants, so every run makes the same scheduler passes).
        a.send_all(&vec![7u8; ROUNDS * 100]).await.unwrap();
        let trace = Rc::new(RefCell::new(String::new()));
        let (a, b) = (Rc::new(a), Rc::new(b));
        let t = trace.clone();
        open_nursery(|n| async move {
            let (t1, a1, b1) = (t.clone(), a.clone(), b.clone());
            n.start_soon(async move {
                let mut buf = [0u8; 100];
                for _ in 0..ROUNDS {
                    t1.borrow_mut().push('S');
                    match op {
                        Op::Checkpoint => checkpoint().await?,
                        Op::Send => a1.send_all(&[1u8; 100]).await?,
                        Op::Receive => assert_eq!(b1.receive_some(&mut buf).await?, 100),
                    }
                }
                Ok::<_, BoxError>(())
            })?;
            let t2 = t.clone();
            n.start_soon(async move {
                for _ in 0..ROUNDS {
                    t2.borrow_mut().push('C');
                    checkpoint().await?;
                }
                Ok::<_, BoxError>(())
            })?;
            Ok::<_, BoxError>(())
        })
        .await
        .unwrap();
        let out = trace.borrow().clone();
        out
    })
}

#[test]
fn i2_an_operation_that_completes_at_once_still_lets_another_runnable_task_run() {
    let mut saw_reversed_pass = false;
    for seed in 1..=6 {
        let reference = interleaving(seed, Op::Checkpoint);
        for op in [Op::Send, Op::Receive] {
            let trace = interleaving(seed, op);
            // An immediate send or receive schedules exactly like a
            // checkpoint: same seed, same interleaving, step for step.
            assert_eq!(trace, reference, "seed {seed}, {op:?}");
            // Round robin: every pass runs each task once, so each pair of
            // steps holds one step of each (in either order).
            assert_eq!(trace.len(), 2 * ROUNDS);
            for (i, pair) in trace.as_bytes().chunks(2).enumerate() {
                assert!(pair == b"SC" || pair == b"CS", "seed {seed}, {op:?}: pass {i} ran {pair:?}: {trace}");
            }
        }
        saw_reversed_pass |= reference.contains("SS") || reference.contains("CC");
    }
    assert!(saw_reversed_pass, "the seeds should exercise both batch orders");
}

/// Counts the steps of the main task (it is the only task in the budget
/// test, so every step after the first is a yield).
#[derive(Default)]
struct StepCount(Cell<u64>);

impl Instrument for StepCount {
    fn before_task_step(&self, _task: TaskId) {
        self.0.set(self.0.get() + 1);
    }
}

/// Steps and epoll polls taken by `ops` immediate operations of a lone
/// task, with or without a source registered with the driver.
fn budget_run(ops: usize, registered: bool) -> (u64, u64) {
    let steps = Rc::new(StepCount::default());
    let s = steps.clone();
    Builder::new().seed(1).instrument(steps.clone()).run(async move {
        let (a, b) = UnixStream::pair().unwrap();
        let b = Rc::new(b);
        let (a_ref, b_ref) = (&a, &b);
        if registered {
            // Make one socket wait, so that the driver has a source.
            open_nursery(|n| async move {
                let b2 = b_ref.clone();
                n.start_soon(async move {
                    let mut buf = [0u8; 1];
                    b2.receive_some(&mut buf).await.map(drop)
                })?;
                wait_all_tasks_blocked().await?;
                a_ref.send_all(b"x").await?;
                Ok::<_, BoxError>(())
            })
            .await
            .unwrap();
            assert_eq!(io_stats().registered_now, 1);
        }
        let (c, d) = UnixStream::pair().unwrap();
        let (steps0, stats0) = (s.0.get(), io_stats());
        // Alternate (a Unix socket's buffer holds only a few hundred small
        // sends): every operation finds its data or its buffer space ready.
        let mut buf = [0u8; 10];
        for _ in 0..ops {
            c.send_all(&[3u8; 10]).await.unwrap();
            assert_eq!(d.receive_some(&mut buf).await.unwrap(), 10);
        }
        let stats1 = io_stats();
        assert_eq!(stats1.registrations, stats0.registrations, "immediate operations never register");
        (s.0.get() - steps0, stats1.polls - stats0.polls)
    })
}

#[test]
fn i2_a_lone_task_doing_immediate_operations_yields_and_polls_io_once_per_32_operations() {
    // 320 sends and 320 receives, every one completing at once, nobody
    // else runnable: `after_io` yields on every 32nd (IO_BUDGET), and each
    // such yield has the next pass poll epoll with timeout 0; in between
    // the task does not yield at all. The streak starts at 0 here (the
    // setup's last step followed a blocking epoll wait), and 640 / 32 = 20.
    assert_eq!(budget_run(320, true), (20, 20));
    // The budget is exactly 32: 30 operations never yield, the 32nd does.
    assert_eq!(budget_run(15, true), (0, 0));
    assert_eq!(budget_run(16, true), (1, 1));
    // With no source registered, the yields still happen but there is
    // nothing to poll for.
    assert_eq!(budget_run(320, false), (20, 0));
}

// ---------------------------------------------------------------- I3

#[test]
fn i3_a_receive_cancelled_while_waiting_loses_no_bytes() {
    run_io(1, async {
        let (client, server) = tcp_pair(false);
        let data = pattern(3, 100_000);
        let mut buf = vec![0u8; 4096];
        // Each round: a receive waits and is cancelled by its deadline, then
        // data is sent, then a receive in a new scope gets all of it.
        for (i, piece) in data.chunks(40_000).enumerate() {
            let out = move_on_after(ms(1000), server.receive_some(&mut buf)).await?;
            assert_eq!(out, None, "nothing to receive yet");
            assert_eq!(current_time(), at_ms(1000 * (i as u64 + 1)), "cancelled by its deadline");
            client.send_all(piece).await?;
            let got = recv_exact(&server, piece.len()).await?;
            assert_same_bytes(&got, piece);
        }
        // Several cancelled receives in a row, then one send: still intact.
        for _ in 0..3 {
            assert_eq!(move_on_after(ms(10), server.receive_some(&mut buf)).await?, None);
        }
        client.send_all(&data).await?;
        let got = recv_exact(&server, data.len()).await?;
        assert_same_bytes(&got, &data);
        Ok(())
    });
}

#[test]
fn i3_a_receive_cancelled_while_blocked_by_another_task_loses_no_bytes() {
    run_io(1, async {
        let (a, b) = UnixStream::pair()?;
        let b = Rc::new(b);
        let scope = CancelScope::new();
        let result: Slot<Result<Option<usize>, io::Error>> = slot();
        let (b_ref, scope_ref, result_ref) = (&b, &scope, &result);
        open_nursery(|n| async move {
            let (b2, sc, r) = (b_ref.clone(), scope_ref.clone(), result_ref.clone());
            n.start_soon(async move {
                let mut buf = [0u8; 64];
                let out = sc.run(b2.receive_some(&mut buf)).await;
                *r.borrow_mut() = Some(out);
            })?;
            wait_all_tasks_blocked().await?;
            scope_ref.cancel();
            Ok::<_, BoxError>(())
        })
        .await?;
        assert_eq!(result.borrow_mut().take().expect("receiver done")?, None);
        assert!(scope.cancelled_caught());
        a.send_all(b"all of it").await?;
        assert_eq!(recv_exact(&*b, 9).await?, b"all of it");
        Ok(())
    });
}

/// What became of a receive whose data was there at once, when another task
/// cancels its scope in the same pass.
#[derive(Debug, PartialEq)]
enum Race {
    /// The cancel came first: the receive reported Cancelled and read
    /// nothing.
    CancelledBeforeReading,
    /// The receive had its data when the cancel came (during its
    /// post-operation yield): it returned the data, and the next checkpoint
    /// reported Cancelled.
    DataThenCancelledAtNextCheckpoint,
}

fn receive_racing_a_cancel(seed: u64) -> Race {
    run_io(seed, async {
        let (a, b) = UnixStream::pair()?;
        a.send_all(b"precious").await?;
        let b = Rc::new(b);
        let scope = CancelScope::new();
        let log: Rc<RefCell<Vec<String>>> = Rc::default();
        let (b_ref, scope_ref, log_ref) = (&b, &scope, &log);
        open_nursery(|n| async move {
            let (b2, sc, l) = (b_ref.clone(), scope_ref.clone(), log_ref.clone());
            n.start_soon(async move {
                let out = sc
                    .run(async {
                        let mut buf = [0u8; 64];
                        let got = b2.receive_some(&mut buf).await;
                        l.borrow_mut().push(match &got {
                            Ok(k) => String::from_utf8_lossy(&buf[..*k]).into_owned(),
                            Err(e) => format!("receive: {e}"),
                        });
                        got?;
                        checkpoint().await?;
                        l.borrow_mut().push("checkpoint passed".into());
                        Ok::<_, io::Error>(())
                    })
                    .await;
                assert_eq!(out?, None, "the scope catches its cancellation");
                Ok::<_, io::Error>(())
            })?;
            let sc = scope_ref.clone();
            n.start_soon(async move { sc.cancel() })?;
            Ok::<_, BoxError>(())
        })
        .await?;
        // Whatever the receive did not take is still in the socket.
        let rest = recv_exact(&*b, bytes_queued(b.as_raw_fd())).await?;
        let log = log.borrow().clone();
        if log == ["precious"] {
            assert_eq!(rest, b"", "seed {seed}");
            Ok(Race::DataThenCancelledAtNextCheckpoint)
        } else {
            assert_eq!(log, ["receive: cancelled"], "seed {seed}");
            assert_eq!(rest, b"precious", "seed {seed}");
            Ok(Race::CancelledBeforeReading)
        }
    })
}

#[test]
fn i3_a_receive_that_already_has_its_data_is_not_cancelled_by_its_post_operation_yield() {
    let outcomes: Vec<Race> = (1..=16).map(receive_racing_a_cancel).collect();
    // Both orders occur among these seeds; in both, no byte is lost.
    assert!(outcomes.contains(&Race::DataThenCancelledAtNextCheckpoint), "{outcomes:?}");
    assert!(outcomes.contains(&Race::CancelledBeforeReading), "{outcomes:?}");
}

#[test]
fn i3_a_send_cancelled_part_way_breaks_the_stream_for_sending_but_receiving_still_works() {
    run_io(1, async {
        let (client, server) = tcp_pair(true);
        let data = pattern(4, 256 * 1024);
        let out = move_on_after(ms(1000), client.send_all(&data)).await?;
        assert_eq!(out, None, "the peer does not read, so the send cannot finish");
        assert_eq!(current_time(), at_ms(1000));
        let queued = bytes_queued(server.as_raw_fd());
        assert!(queued > 0 && queued < data.len(), "part of the data went out: {queued} bytes");

        // Sending is refused from now on, and the error says why.
        let err = client.send_all(b"more").await.unwrap_err();
        assert_eq!(trioxide::io_error_kind(&err), Some(IoErrorKind::Broken));
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        let msg = err.to_string();
        assert!(msg.contains("cancelled after sending part of its data"), "{msg}");
        assert_kind(&client.send_all_vectored(&[b"more"]).await, IoErrorKind::Broken);
        let exe = std::fs::File::open(std::env::current_exe()?)?;
        assert_kind(&client.send_file(&exe, 0, 10).await, IoErrorKind::Broken);

        // Receiving still works.
        server.send_all(b"pong").await?;
        assert_eq!(recv_exact(&client, 4).await?, b"pong");

        // The peer gets a prefix of the data (more of it arrives as it
        // reads and the window opens), and nothing else: read until 500 ms
        // of virtual time pass with nothing new (50 ms of real quiet).
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while let Some(n) = move_on_after(ms(500), server.receive_some(&mut buf)).await? {
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.len() >= queued && got.len() < data.len(), "{} of {} bytes", got.len(), data.len());
        assert_same_bytes(&got, &data[..got.len()]);
        Ok(())
    });
}

#[test]
fn i3_a_send_future_dropped_part_way_also_breaks_the_stream_for_sending() {
    run_io(1, async {
        let (client, server) = tcp_pair(true);
        let data = pattern(5, 256 * 1024);
        {
            let mut send = pin!(client.send_all(&data));
            // One poll: it sends what fits, then waits for buffer space.
            poll_fn(|cx| {
                assert!(send.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
        } // dropped here, part-way
        assert!(bytes_queued(server.as_raw_fd()) > 0);
        assert_kind(&client.send_all(b"x").await, IoErrorKind::Broken);
        Ok(())
    });
}

#[test]
fn i3_a_send_cancelled_before_any_byte_went_leaves_the_stream_usable() {
    run_io(1, async {
        let (client, server) = tcp_pair(false);
        let scope = CancelScope::new();
        scope.cancel();
        let out = scope
            .run(async {
                client.send_all(b"never sent").await?;
                Ok::<_, io::Error>(())
            })
            .await?;
        assert_eq!(out, None);
        assert!(scope.cancelled_caught());

        client.send_all(b"sent").await?;
        client.send_eof().await?;
        assert_eq!(recv_to_end(&server).await?, b"sent");
        Ok(())
    });
}

/// Makes a unique path under the temp dir (not created).
fn temp_name(tag: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("trioxide-{tag}-{}-{n}", std::process::id()))
}
