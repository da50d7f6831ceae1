//! Sharded listening (`ShardedListener`): both balance modes serve every
//! connection with two shards; `LeastLoaded` spreads long-lived
//! connections evenly, in a fixed order; `ReusePort` listens with one
//! socket per shard on one port; a shutdown requested from another thread
//! drains every shard, letting requests in flight finish, and the grace
//! deadline cancels what is left on every shard (virtual time).
//!
//! The servers run in `run_sharded` on the test thread and one scoped
//! thread; the clients are blocking std sockets on another thread, with
//! read timeouts. A watchdog aborts the process if a test hangs.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use trioxide::{
    open_nursery, run_sharded, sleep_forever, to_thread, Balance, BoxError, Builder, GracefulShutdown, MockClock,
    ShardedBuilder, ShardedListener, ShutdownReport, TcpStream, TASK_STATUS_IGNORED,
};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Aborts the process if still alive after `secs`: a hung test must not
/// hang the suite. Dropping it disarms it.
struct Watchdog(#[allow(dead_code)] mpsc::Sender<()>);

fn watchdog(what: &'static str) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(60)) {
            eprintln!("{what}: hung for 60 s; aborting");
            std::process::abort();
        }
    });
    Watchdog(tx)
}

fn connect(addr: SocketAddr) -> StdStream {
    let c = StdStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(TIMEOUT)).expect("set_read_timeout");
    c
}

fn read_byte(c: &mut StdStream) -> u8 {
    let mut b = [0u8; 1];
    c.read_exact(&mut b).expect("a byte from the server");
    b[0]
}

/// Serves `listener` on each of its shards with `handler_for(shard index,
/// that shard's shutdown)`; returns each shard's shutdown report.
fn serve_all<H, F>(listener: &ShardedListener, handler_for: H) -> Vec<Option<ShutdownReport>>
where
    H: Fn(usize, GracefulShutdown) -> F + Sync,
    F: Fn(TcpStream) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), BoxError>>>> + 'static,
{
    run_sharded(listener.shards(), |shard| {
        let handler = &handler_for;
        async move {
            let shutdown = GracefulShutdown::new();
            let h = handler(shard.index(), shutdown.clone());
            listener.serve(shard, h, &shutdown, TASK_STATUS_IGNORED).await?;
            Ok::<_, BoxError>(shutdown.report())
        }
    })
    .expect("the sharded run failed")
}

type Handler = Box<dyn Fn(TcpStream) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), BoxError>>>>>;

/// A handler that writes the shard's index, then waits for the client to
/// close.
fn answer_index(index: usize) -> Handler {
    Box::new(move |s: TcpStream| {
        Box::pin(async move {
            s.send_all(&[index as u8]).await?;
            let mut buf = [0u8; 16];
            while s.receive_some(&mut buf).await? > 0 {}
            Ok(())
        })
    })
}

fn every_connection_is_answered(balance: Balance) -> Vec<usize> {
    let _dog = watchdog("every_connection_is_answered");
    const CONNS: usize = 20;
    let listener = ShardedListener::bind("127.0.0.1:0".parse().unwrap(), 2, balance).unwrap();
    let (addr, l) = (listener.local_addr(), listener.clone());
    let client = std::thread::spawn(move || {
        let answers: Vec<u8> = (0..CONNS)
            .map(|_| {
                let mut c = connect(addr);
                let b = read_byte(&mut c);
                // Closed by us: the handler sees the end and returns.
                drop(c);
                b
            })
            .collect();
        l.shutdown(Duration::from_secs(5));
        answers
    });
    let reports = serve_all(&listener, |i, _| answer_index(i));
    let answers = client.join().unwrap();
    assert_eq!(answers.len(), CONNS);
    assert!(answers.iter().all(|&b| b < 2), "{answers:?}");
    let served = listener.connections_served();
    assert_eq!(served.iter().sum::<usize>(), CONNS, "{served:?}");
    for (shard, &n) in served.iter().enumerate() {
        assert_eq!(n, answers.iter().filter(|&&b| b as usize == shard).count());
    }
    assert!(reports.iter().all(Option::is_some), "every shard drained: {reports:?}");
    assert_eq!(listener.live_connections(), [0, 0]);
    served
}

#[test]
fn reuseport_answers_every_connection_with_two_shards() {
    let served = every_connection_is_answered(Balance::ReusePort);
    // The kernel hashes 20 connections (distinct source ports) over the
    // two sockets: all on one shard has probability 2^-19.
    assert!(served.iter().all(|&n| n > 0), "{served:?}");
}

#[test]
fn least_loaded_answers_every_connection_with_two_shards() {
    every_connection_is_answered(Balance::LeastLoaded);
}

#[test]
fn least_loaded_spreads_ten_long_lived_connections_five_and_five_alternately() {
    let _dog = watchdog("least_loaded_spreads");
    let listener = ShardedListener::bind("127.0.0.1:0".parse().unwrap(), 2, Balance::LeastLoaded).unwrap();
    let (addr, l) = (listener.local_addr(), listener.clone());
    let client = std::thread::spawn(move || {
        let mut open = Vec::new();
        let mut order = Vec::new();
        for _ in 0..10 {
            let mut c = connect(addr);
            // Answered: handed over and counted before the next connects.
            order.push(read_byte(&mut c));
            open.push(c);
        }
        let live = l.live_connections();
        drop(open);
        l.shutdown(Duration::from_secs(5));
        (order, live)
    });
    serve_all(&listener, |i, _| answer_index(i));
    let (order, live) = client.join().unwrap();
    // Ties go to the lowest index: 0, 1, 0, 1, ...
    assert_eq!(order, [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]);
    assert_eq!(live, [5, 5]);
    assert_eq!(listener.connections_served(), [5, 5]);
    assert_eq!(listener.live_connections(), [0, 0]);
}

/// Listening TCP sockets on `port` in `/proc/net/tcp` (IPv4).
fn listening_sockets_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            local_port == Some(port) && fields[3] == "0A" // TCP_LISTEN
        })
        .count()
}

#[test]
fn reuseport_listens_with_one_socket_per_shard_on_one_port() {
    let _dog = watchdog("reuseport_listens");
    let listener = ShardedListener::bind("127.0.0.1:0".parse().unwrap(), 3, Balance::ReusePort).unwrap();
    let addr = listener.local_addr();
    assert_ne!(addr.port(), 0);
    assert_eq!(listening_sockets_on(addr.port()), 3);
    let reported = run_sharded(3, |shard| {
        let listener = &listener;
        async move {
            let shutdown = GracefulShutdown::new();
            let addrs = open_nursery(|n| async move {
                let sd = shutdown.clone();
                let addrs = n.start(|status| listener.serve(shard, answer_index(shard.index()), &sd, status)).await?;
                shutdown.shutdown(Duration::ZERO); // this shard alone
                Ok::<_, BoxError>(addrs)
            })
            .await?;
            Ok::<_, BoxError>(addrs)
        }
    })
    .unwrap();
    assert_eq!(reported, [Some(vec![addr]), Some(vec![addr]), Some(vec![addr])]);
    // Each shard closed its own socket when it drained.
    assert_eq!(listening_sockets_on(addr.port()), 0);
}

#[test]
fn least_loaded_listens_with_one_socket() {
    let listener = ShardedListener::bind("127.0.0.1:0".parse().unwrap(), 2, Balance::LeastLoaded).unwrap();
    assert_eq!(listening_sockets_on(listener.local_addr().port()), 1);
}

#[test]
fn serving_with_another_shard_count_or_twice_is_an_error() {
    let listener = ShardedListener::bind("127.0.0.1:0".parse().unwrap(), 2, Balance::ReusePort).unwrap();
    let err = run_sharded(1, |shard| {
        let listener = &listener;
        async move { listener.serve(shard, answer_index(0), &GracefulShutdown::new(), TASK_STATUS_IGNORED).await }
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "1 error:\n  [0] shard 0: ShardedListener bound for 2 shard(s) served by shard 0 of 1");

    let one = ShardedListener::bind("127.0.0.1:0".parse().unwrap(), 1, Balance::LeastLoaded).unwrap();
    one.shutdown(Duration::ZERO); // the first serve drains at once
    let err = run_sharded(1, |shard| {
        let one = &one;
        async move {
            one.serve(shard, answer_index(0), &GracefulShutdown::new(), TASK_STATUS_IGNORED).await?;
            one.serve(shard, answer_index(0), &GracefulShutdown::new(), TASK_STATUS_IGNORED).await
        }
    })
    .unwrap_err();
    let e = err.errors()[0].downcast_ref::<trioxide::ShardError>().unwrap();
    let io = e.error().downcast_ref::<std::io::Error>().expect("an io::Error");
    assert_eq!(io.kind(), ErrorKind::AddrInUse);
}

/// A gate the handlers wait at (in a worker thread), opened by the test.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn wait(&self) {
        let (open, cv) = &*self.0;
        let mut o = open.lock().unwrap();
        while !*o {
            o = cv.wait(o).unwrap();
        }
    }

    fn open(&self) {
        let (open, cv) = &*self.0;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
}

#[test]
fn shutdown_from_another_thread_drains_every_shard_and_requests_in_flight_finish() {
    let _dog = watchdog("shutdown_drains_every_shard");
    let listener = ShardedListener::bind("127.0.0.1:0".parse().unwrap(), 2, Balance::LeastLoaded).unwrap();
    let (addr, l) = (listener.local_addr(), listener.clone());
    let gate = Gate::default();
    let g = gate.clone();
    let client = std::thread::spawn(move || {
        // Two requests in flight, one per shard (least-loaded: 0 then 1).
        let mut busy: Vec<StdStream> = (0..2).map(|_| connect(addr)).collect();
        let mut acks = Vec::new();
        for c in &mut busy {
            c.write_all(b"x").unwrap();
            acks.push(read_byte(c)); // the handler has the request
        }
        l.shutdown(TIMEOUT);
        // New clients are refused once shard 0 (the acceptor) has drained.
        let mut refused = false;
        for _ in 0..500 {
            match StdStream::connect(addr) {
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    refused = true;
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        g.open();
        let answers: Vec<Vec<u8>> = busy
            .iter_mut()
            .map(|c| {
                let mut got = Vec::new();
                c.read_to_end(&mut got).expect("the answer, then the end");
                got
            })
            .collect();
        (acks, refused, answers)
    });
    let reports = serve_all(&listener, |index, shutdown| {
        let gate = gate.clone();
        let handler = move |s: TcpStream| {
            let (gate, shutdown) = (gate.clone(), shutdown.clone());
            Box::pin(async move {
                let idle = shutdown.idle_waiter();
                let mut buf = [0u8; 1];
                loop {
                    match idle.abandon_on_drain(s.receive_some(&mut buf)).await? {
                        None | Some(0) => return Ok(()), // idle at the drain, or closed
                        Some(_) => {}
                    }
                    s.send_all(&[index as u8]).await?;
                    let g = gate.clone();
                    to_thread::run_sync(move || g.wait()).await?;
                    s.send_all(b"done").await?;
                }
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), BoxError>>>>
        };
        handler
    });
    let (acks, refused, answers) = client.join().unwrap();
    assert_eq!(acks, [0, 1]);
    assert!(refused, "the listener stayed open after the shutdown");
    assert_eq!(answers, [b"done".to_vec(), b"done".to_vec()]);
    let counts: Vec<_> = reports.iter().map(|r| r.map(|r| (r.open_at_drain, r.finished, r.cancelled))).collect();
    assert_eq!(counts, [Some((1, 1, 0)), Some((1, 1, 0))]);
}

#[test]
fn the_grace_deadline_cancels_what_is_left_on_every_shard_in_virtual_time() {
    let _dog = watchdog("grace_deadline");
    const GRACE: Duration = Duration::from_secs(10);
    let listener = ShardedListener::bind("127.0.0.1:0".parse().unwrap(), 2, Balance::LeastLoaded).unwrap();
    let (addr, l) = (listener.local_addr(), listener.clone());
    let client = std::thread::spawn(move || {
        let mut stuck: Vec<StdStream> = (0..2).map(|_| connect(addr)).collect();
        let acks: Vec<u8> = stuck.iter_mut().map(read_byte).collect();
        l.shutdown(GRACE);
        // Cut off: the end of the stream, nothing more.
        let ends: Vec<usize> = stuck.iter_mut().map(|c| c.read_to_end(&mut Vec::new()).unwrap()).collect();
        (acks, ends)
    });
    let reports = ShardedBuilder::new(2)
        .configure(|_| {
            let clock = MockClock::new();
            clock.set_autojump_threshold(Some(Duration::ZERO));
            Builder::new().clock(clock)
        })
        .run(|shard| {
            let listener = &listener;
            async move {
                let shutdown = GracefulShutdown::new();
                let index = shard.index() as u8;
                let stuck = move |s: TcpStream| async move {
                    s.send_all(&[index]).await?;
                    sleep_forever().await?; // never finishes: only the deadline ends it
                    Ok::<_, BoxError>(())
                };
                listener.serve(shard, stuck, &shutdown, TASK_STATUS_IGNORED).await?;
                Ok::<_, BoxError>(shutdown.report())
            }
        })
        .unwrap();
    let (acks, ends) = client.join().unwrap();
    assert_eq!(acks, [0, 1]);
    assert_eq!(ends, [0, 0]);
    for r in reports {
        let r = r.expect("drained");
        assert_eq!((r.open_at_drain, r.finished, r.cancelled), (1, 0, 1), "{r}");
        assert_eq!((r.grace, r.took), (GRACE, GRACE), "{r}");
    }
}
