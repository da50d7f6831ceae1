//! The simulated network of `trioxide::sim`: the ordinary TCP API between
//! simulated hosts, exact virtual timings for latency, refusal, resets,
//! partitions and clogs, killed and restarted hosts, the stream
//! conformance checks, and determinism of the whole.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use trioxide::sim::{self, Host, NetConfig};
use trioxide::testing::check_half_closeable_stream;
use trioxide::{
    current_time, fail_after, open_nursery, open_tcp_stream, serve_tcp, sleep, sleep_forever, BoxError, Instant,
    TcpListener, TcpStream,
};

const LAT: Duration = Duration::from_millis(5);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cfg() -> NetConfig {
    NetConfig::new().latency(LAT)
}

fn since(t0: Instant) -> Duration {
    current_time().saturating_duration_since(t0)
}

/// Two hosts, `a` (10.0.0.1) and `b` (10.0.0.2).
fn two_hosts() -> (Host, Host) {
    let net = sim::net();
    (net.add_host("a", ip("10.0.0.1")).unwrap(), net.add_host("b", ip("10.0.0.2")).unwrap())
}

/// Accepts on port 80 and holds every connection open, reading.
async fn hold_connections() -> Result<(), BoxError> {
    let l = TcpListener::bind("0.0.0.0:80".parse()?)?;
    open_nursery(|n| async move {
        loop {
            let (s, _) = l.accept().await?;
            n.start_soon(async move {
                let mut buf = [0u8; 16];
                while s.receive_some(&mut buf).await? > 0 {}
                Ok::<_, BoxError>(())
            })?;
        }
        #[allow(unreachable_code)]
        Ok::<_, BoxError>(())
    })
    .await?;
    Ok(())
}

/// Answers each connection on port 5 by echoing its first message.
async fn echo_once_each() -> Result<(), BoxError> {
    let l = TcpListener::bind("0.0.0.0:5".parse()?)?;
    loop {
        let (s, _) = l.accept().await?;
        let mut buf = [0u8; 32];
        let k = s.receive_some(&mut buf).await?;
        let _ = s.send_all(&buf[..k]).await;
    }
}

/// A connection from `a` to a listener on `b`: (a's end, b's end).
async fn connect_pair(a: &Host, b: &Host, port: u16) -> Result<(TcpStream, TcpStream), BoxError> {
    let listener = b.enter(async move { TcpListener::bind(SocketAddr::new(ip("0.0.0.0"), port)) }).await?;
    let client = a.enter(open_tcp_stream("b", port)).await?;
    let (server, peer) = listener.accept().await?;
    assert_eq!(peer, client.local_addr()?);
    Ok((client, server))
}

async fn read_exact(s: &TcpStream, n: usize) -> io::Result<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < n {
        let k = s.receive_some(&mut buf[..(n - got.len()).min(256)]).await?;
        if k == 0 {
            break;
        }
        got.extend_from_slice(&buf[..k]);
    }
    Ok(got)
}

#[test]
fn a_write_arrives_exactly_one_latency_later_and_connect_takes_a_round_trip() {
    let out = sim::Builder::new().net(cfg()).run(async {
        let (a, b) = two_hosts();
        let t0 = current_time();
        let (client, server) = connect_pair(&a, &b, 80).await?;
        let connect_time = since(t0);
        let t1 = current_time();
        client.send_all(b"hello").await?;
        let got = read_exact(&server, 5).await?;
        Ok::<_, BoxError>((connect_time, since(t1), got, server.local_addr()?.to_string()))
    });
    let (connect_time, one_way, got, server_addr) = out.unwrap();
    assert_eq!(connect_time, 2 * LAT);
    assert_eq!(one_way, LAT);
    assert_eq!(got, b"hello");
    assert_eq!(server_addr, "10.0.0.2:80");
}

#[test]
fn connecting_where_nobody_listens_is_refused_after_a_round_trip() {
    let out = sim::Builder::new().net(cfg()).run(async {
        let (a, _b) = two_hosts();
        let t0 = current_time();
        let e = a.enter(TcpStream::connect("10.0.0.2:9".parse()?)).await.unwrap_err();
        let e = e.downcast::<io::Error>().map_err(|_| "not an io::Error")?;
        let unknown = a.enter(open_tcp_stream("nosuchhost", 9)).await.unwrap_err();
        let unknown = unknown.downcast::<io::Error>().map_err(|_| "not an io::Error")?;
        Ok::<_, BoxError>((e.kind(), since(t0), unknown.kind()))
    });
    assert_eq!(out.unwrap(), (io::ErrorKind::ConnectionRefused, 2 * LAT, io::ErrorKind::NotFound));
}

#[test]
fn sockets_opened_outside_any_host_are_refused() {
    let kind = sim::Builder::new()
        .net(cfg())
        .run(async { TcpListener::bind("0.0.0.0:80".parse().unwrap()).unwrap_err().kind() });
    assert_eq!(kind, io::ErrorKind::AddrNotAvailable);
}

#[test]
fn killing_a_host_resets_its_peers_one_latency_later_and_leaves_nothing_behind() {
    let (out, report, _) = sim::Builder::new().net(cfg()).run_with_trace(open_nursery(|n| async move {
        let (a, b) = two_hosts();
        let server = b.clone();
        n.start_soon(async move { server.run(hold_connections).await })?;
        sleep(Duration::from_millis(1)).await?;
        let client = a.enter(open_tcp_stream("b", 80)).await?;
        sleep(Duration::from_secs(1)).await?;
        let t_kill = current_time();
        b.kill();
        let e = client.receive_some(&mut [0u8; 8]).await.unwrap_err();
        let reset_after = since(t_kill);
        let refused = a.enter(open_tcp_stream("b", 80)).await.unwrap_err();
        let refused = refused.downcast::<io::Error>().map_err(|_| "not an io::Error")?.kind();
        Ok::<_, BoxError>((e.kind(), reset_after, refused, b.kills(), b.is_up()))
    }));
    assert_eq!(out.unwrap(), Some((io::ErrorKind::ConnectionReset, LAT, io::ErrorKind::ConnectionRefused, 1, false)));
    assert_eq!((report.tasks_left, report.timers_left, report.task_allocations_left), (0, 0, 0));
}

#[test]
fn a_restarted_host_runs_main_again_and_refuses_connects_while_down() {
    let out = sim::Builder::new().net(cfg()).run(open_nursery(|n| async move {
        let (a, b) = two_hosts();
        let server = b.clone();
        let boots = Rc::new(std::cell::Cell::new(0u32));
        let bt = boots.clone();
        n.start_soon(async move {
            server
                .run(move || {
                    bt.set(bt.get() + 1);
                    let boot = bt.get();
                    async move {
                        let l = TcpListener::bind("0.0.0.0:80".parse()?)?;
                        loop {
                            let (s, _) = l.accept().await?;
                            s.send_all(&[boot as u8]).await?;
                        }
                        #[allow(unreachable_code)]
                        Ok::<(), BoxError>(())
                    }
                })
                .await
        })?;
        sleep(Duration::from_millis(1)).await?;
        let first = read_exact(&a.enter(open_tcp_stream("b", 80)).await?, 1).await?;
        b.restart(Duration::from_secs(10));
        let t0 = current_time();
        sleep(Duration::from_secs(5)).await?;
        let down = a.enter(open_tcp_stream("b", 80)).await.unwrap_err();
        let down = down.downcast::<io::Error>().map_err(|_| "not an io::Error")?.kind();
        sleep(Duration::from_secs(6)).await?;
        let second = read_exact(&a.enter(open_tcp_stream("b", 80)).await?, 1).await?;
        let took = since(t0);
        b.kill();
        Ok::<_, BoxError>((first, down, second, boots.get(), took))
    }));
    // 5 s, a refused connect (a round trip), 6 s, a connect (a round trip;
    // the greeting arrives with its answer).
    let took = Duration::from_secs(11) + 4 * LAT;
    assert_eq!(out.unwrap(), Some((vec![1], io::ErrorKind::ConnectionRefused, vec![2], 2, took)));
}

#[test]
fn a_partition_holds_traffic_until_it_heals() {
    let out = sim::Builder::new().net(cfg()).run(async {
        let (a, b) = two_hosts();
        let net = sim::net();
        let (client, server) = connect_pair(&a, &b, 80).await?;
        net.partition(&[&a], &[&b]);
        let t0 = current_time();
        client.send_all(b"held").await?;
        let n1 = net.clone();
        let healer = async move {
            sleep(Duration::from_secs(10)).await?;
            let net = n1;
            net.heal();
            Ok::<_, BoxError>(())
        };
        let (got, healed) = open_nursery(|n| async move {
            n.start_soon(healer)?;
            Ok::<_, BoxError>(read_exact(&server, 4).await?)
        })
        .await
        .map(|got| (got, since(t0)))?;
        let got = got.ok_or("cancelled")?;
        Ok::<_, BoxError>((got, healed))
    });
    assert_eq!(out.unwrap(), (b"held".to_vec(), Duration::from_secs(10) + LAT));
}

#[test]
fn a_partition_longer_than_the_timeout_resets_the_connection_with_timed_out() {
    let pto = Duration::from_secs(3);
    let out = sim::Builder::new().net(cfg().partition_timeout(Some(pto))).run(async {
        let (a, b) = two_hosts();
        let net = sim::net();
        let (client, server) = connect_pair(&a, &b, 80).await?;
        let t0 = current_time();
        net.partition(&[&a], &[&b]);
        client.send_all(b"request").await?;
        // Waits for an answer that the partition holds back.
        let e = client.receive_some(&mut [0u8; 8]).await.unwrap_err();
        let client_after = since(t0);
        let server_e = server.receive_some(&mut [0u8; 8]).await.unwrap_err();
        let t1 = current_time();
        let connect_e = a.enter(open_tcp_stream("b", 80)).await.unwrap_err();
        let connect_e = connect_e.downcast::<io::Error>().map_err(|_| "not an io::Error")?.kind();
        Ok::<_, BoxError>((e.kind(), client_after, server_e.kind(), connect_e, since(t1)))
    });
    assert_eq!(out.unwrap(), (io::ErrorKind::TimedOut, pto, io::ErrorKind::TimedOut, io::ErrorKind::TimedOut, pto));
}

#[test]
fn a_clogged_link_holds_traffic_until_unclogged_and_never_times_out() {
    let out = sim::Builder::new().net(cfg().partition_timeout(Some(Duration::from_secs(1)))).run(async {
        let (a, b) = two_hosts();
        let net = sim::net();
        let (client, server) = connect_pair(&a, &b, 80).await?;
        net.clog_link(&a, &b);
        let t0 = current_time();
        client.send_all(b"x").await?;
        client.send_all(b"yz").await?;
        let n2 = net.clone();
        let (a2, b2) = (a.clone(), b.clone());
        let srv = &server;
        let got = open_nursery(|n| async move {
            n.start_soon(async move {
                sleep(Duration::from_secs(30)).await?;
                n2.unclog_link(&b2, &a2);
                Ok::<_, BoxError>(())
            })?;
            Ok::<_, BoxError>(read_exact(srv, 3).await?)
        })
        .await?;
        let clogged_for = since(t0);
        // A clogged host holds its traffic too.
        net.clog_host(&b);
        let t1 = current_time();
        client.send_all(b"!").await?;
        let n3 = net.clone();
        let b3 = b.clone();
        let got2 = open_nursery(|n| async move {
            n.start_soon(async move {
                sleep(Duration::from_secs(2)).await?;
                n3.unclog_host(&b3);
                Ok::<_, BoxError>(())
            })?;
            Ok::<_, BoxError>(read_exact(srv, 1).await?)
        })
        .await?;
        Ok::<_, BoxError>((got, clogged_for, got2, since(t1)))
    });
    let want =
        (Some(b"xyz".to_vec()), Duration::from_secs(30) + LAT, Some(b"!".to_vec()), Duration::from_secs(2) + LAT);
    assert_eq!(out.unwrap(), want);
}

#[test]
fn jitter_and_loss_delay_but_never_reorder_or_lose_bytes() {
    let cfg = cfg().jitter(Duration::from_millis(20)).loss_per_mille(200);
    let out = sim::Builder::new().seed(3).net(cfg).run(async {
        let (a, b) = two_hosts();
        let (client, server) = connect_pair(&a, &b, 80).await?;
        let t0 = current_time();
        for i in 0..200u8 {
            client.send_all(&[i]).await?;
        }
        client.send_eof().await?;
        let mut got = Vec::new();
        while server.receive_into(&mut got).await? != 0 {}
        Ok::<_, BoxError>((got, since(t0)))
    });
    let (got, took) = out.unwrap();
    assert_eq!(got, (0..200u8).collect::<Vec<_>>());
    assert!(took > LAT, "jitter and loss delay delivery: {took:?}");
}

#[test]
fn the_bandwidth_limit_spaces_out_segments() {
    // 1000 bytes/s: a 500-byte write occupies the link for 0.5 s.
    let out = sim::Builder::new().net(cfg().bandwidth(Some(1000))).run(async {
        let (a, b) = two_hosts();
        let (client, server) = connect_pair(&a, &b, 80).await?;
        let t0 = current_time();
        client.send_all(&[1u8; 500]).await?;
        client.send_all(&[2u8; 500]).await?;
        read_exact(&server, 500).await?;
        let first = since(t0);
        read_exact(&server, 500).await?;
        Ok::<_, BoxError>((first, since(t0)))
    });
    assert_eq!(out.unwrap(), (Duration::from_millis(500) + LAT, Duration::from_millis(1000) + LAT));
}

#[test]
fn serve_tcp_and_open_tcp_stream_work_unchanged_on_simulated_hosts() {
    let out = sim::Builder::new().net(cfg()).run(open_nursery(|n| async move {
        let (a, b) = two_hosts();
        let server = b.clone();
        let addrs = n
            .start(|status| async move {
                server
                    .enter(serve_tcp(
                        |s: TcpStream| async move {
                            let mut buf = vec![0u8; 64];
                            loop {
                                let k = s.receive_some(&mut buf).await?;
                                if k == 0 {
                                    return Ok::<_, BoxError>(());
                                }
                                s.send_all(&buf[..k]).await?;
                            }
                        },
                        7,
                        None,
                        status,
                    ))
                    .await
            })
            .await?;
        let echoed = a
            .enter(async {
                let s = open_tcp_stream("b", 7).await?;
                s.send_all(b"echo me").await?;
                s.send_eof().await?;
                let mut got = Vec::new();
                while s.receive_into(&mut got).await? != 0 {}
                Ok::<_, BoxError>(got)
            })
            .await?;
        n.cancel_scope().cancel();
        Ok::<_, BoxError>((addrs[0].to_string(), echoed))
    }));
    assert_eq!(out.unwrap(), Some(("10.0.0.2:7".to_string(), b"echo me".to_vec())));
}

#[test]
fn the_stream_conformance_checks_pass_over_simulated_tcp() {
    let out = sim::Builder::new().net(cfg()).run(async {
        let (a, b) = two_hosts();
        let port = std::cell::Cell::new(1000u16);
        let maker = || {
            let (a, b) = (a.clone(), b.clone());
            port.set(port.get() + 1);
            let p = port.get();
            async move { connect_pair(&a, &b, p).await.map_err(io::Error::other) }
        };
        check_half_closeable_stream(maker, None).await
    });
    out.unwrap();
}

/// Three hosts exchanging messages under jitter, loss and a partition:
/// the trace hash of a seed.
fn chatty(seed: u64) -> u64 {
    let cfg = NetConfig::swarm(seed).partition_timeout(Some(Duration::from_secs(1)));
    sim::Builder::new()
        .seed(seed)
        .net(cfg)
        .check_determinism(|| {
            open_nursery(|n| async move {
                let net = sim::net();
                let hosts: Vec<Host> =
                    (1..=3).map(|i| net.add_host(&format!("h{i}"), ip(&format!("10.0.0.{i}"))).unwrap()).collect();
                for h in &hosts {
                    let h2 = h.clone();
                    n.start_soon(async move { h2.run(echo_once_each).await })?;
                }
                let from = hosts[0].clone();
                let n2 = net.clone();
                let (h1, h2) = (hosts[1].clone(), hosts[2].clone());
                n.start_soon(async move {
                    sleep(Duration::from_millis(n2.random(50))).await?;
                    n2.partition(&[&h1], &[&h2]);
                    sleep(Duration::from_millis(n2.random(500))).await?;
                    n2.heal();
                    Ok::<_, BoxError>(())
                })?;
                for round in 0..10u8 {
                    for to in ["h2", "h3"] {
                        let _ = from
                            .enter(async {
                                let s = open_tcp_stream(to, 5).await?;
                                s.send_all(&[round]).await?;
                                read_exact(&s, 1).await?;
                                Ok::<_, BoxError>(())
                            })
                            .await;
                    }
                }
                n.cancel_scope().cancel();
                sleep_forever().await?;
                Ok::<_, BoxError>(())
            })
        })
        .hash()
}

#[test]
fn same_seed_gives_the_same_trace_hash_and_seeds_differ() {
    let hashes: BTreeSet<u64> = (0..20).map(chatty).collect();
    assert!(hashes.len() >= 15, "only {} distinct traces among 20 seeds", hashes.len());
    assert_eq!(chatty(7), chatty(7));
}

#[test]
fn killing_a_host_leaves_traffic_between_other_hosts_alone() {
    // Found by sim_kv seed 2941: a kill dropped bytes in flight on every
    // connection, not only on the killed host's.
    let out = sim::Builder::new().net(cfg()).run(async {
        let (a, b) = two_hosts();
        let c = sim::net().add_host("c", ip("10.0.0.3"))?;
        let (client, server) = connect_pair(&a, &b, 80).await?;
        client.send_all(b"in flight").await?;
        c.kill();
        // Bounded: without the fix the bytes never come.
        Ok::<_, BoxError>(fail_after(Duration::from_secs(60), read_exact(&server, 9)).await?)
    });
    assert_eq!(out.unwrap(), b"in flight");
}

/// Counts a handler as closed when it ends, however it ends.
struct Closed(Rc<std::cell::Cell<u32>>);

impl Drop for Closed {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// One seed of `serve_tcp` under faults: an echo server on `b` (killed and
/// restarted, partitioned from the client) and 20 client connections.
/// Returns (handlers started, handlers ended, echoes completed).
fn serve_under_faults(case: sim::Case) -> Result<(u32, u32, u32), String> {
    let (opened, closed, echoed) =
        (Rc::new(std::cell::Cell::new(0)), Rc::new(std::cell::Cell::new(0)), Rc::new(std::cell::Cell::new(0)));
    let (o, c, e) = (opened.clone(), closed.clone(), echoed.clone());
    let cfg = NetConfig::swarm(case.seed).partition_timeout(Some(Duration::from_secs(1)));
    let (out, report, _) = case.builder().net(cfg).run_with_trace(open_nursery(|n| async move {
        let (a, b) = two_hosts();
        let server = b.clone();
        n.start_soon(async move {
            server
                .run(move || {
                    let (o, c) = (o.clone(), c.clone());
                    let handler = move |s: TcpStream| {
                        o.set(o.get() + 1);
                        let guard = Closed(c.clone());
                        async move {
                            let _guard = guard;
                            let mut buf = [0u8; 64];
                            loop {
                                let k = s.receive_some(&mut buf).await?;
                                if k == 0 {
                                    return Ok::<_, BoxError>(());
                                }
                                s.send_all(&buf[..k]).await?;
                            }
                        }
                    };
                    trioxide::Server::new(handler).on_handler_error(|_, _| {}).serve_tcp(
                        7,
                        None,
                        trioxide::TASK_STATUS_IGNORED,
                    )
                })
                .await
        })?;
        let net = sim::net();
        let (fa, fb) = (a.clone(), b.clone());
        n.start_soon(async move {
            for _ in 0..3 {
                sleep(Duration::from_millis(net.random(300))).await?;
                match net.random(2) {
                    0 => {
                        net.partition(&[&fa], &[&fb]);
                        sleep(Duration::from_millis(net.random(2000))).await?;
                        net.heal();
                    }
                    _ => fb.restart(Duration::from_millis(net.random(500))),
                }
            }
            Ok::<_, BoxError>(())
        })?;
        sleep(Duration::from_millis(1)).await?;
        for i in 0..20u8 {
            let done = a
                .enter(trioxide::move_on_after(Duration::from_secs(2), async {
                    let s = open_tcp_stream("b", 7).await?;
                    s.send_all(&[i; 10]).await?;
                    let got = read_exact(&s, 10).await?;
                    Ok::<_, BoxError>(got == [i; 10])
                }))
                .await;
            if let Ok(Some(true)) = done {
                e.set(e.get() + 1);
            }
        }
        sleep(Duration::from_secs(5)).await?;
        b.kill();
        Ok::<_, BoxError>(())
    }));
    out.map_err(|e| e.to_string())?;
    if (report.tasks_left, report.timers_left, report.task_allocations_left) != (0, 0, 0) {
        return Err(format!("left behind: {report:?}"));
    }
    Ok((opened.get(), closed.get(), echoed.get()))
}

#[test]
fn serve_tcp_under_faults_closes_every_connection_and_leaks_nothing_over_200_seeds() {
    let mut echoed = 0;
    let ran = sim::explore(0..200, trioxide::Schedule::Batch, |case| -> Result<(), String> {
        let (opened, closed, e) = serve_under_faults(case)?;
        echoed += e;
        if opened != closed {
            return Err(format!("{opened} handlers started, {closed} ended"));
        }
        if opened < e {
            return Err(format!("{e} echoes from {opened} handlers"));
        }
        Ok(())
    });
    assert_eq!(ran, Ok(200));
    // Faults cost some connections, not most; the count is a function of
    // the seeds (pinned: the runs are deterministic). It was 2562 while a
    // restart during another's downtime did not move the boot (some seeds
    // restart twice in a row; now the later restart's downtime counts).
    assert_eq!(echoed, 2570);
}

#[test]
fn the_poll_layer_works_over_simulated_tcp_with_the_same_timings() {
    use std::future::poll_fn;
    use trioxide::{PollReceive, PollSend};
    let out = sim::Builder::new().net(cfg()).run(async {
        let (a, b) = two_hosts();
        let (client, server) = connect_pair(&a, &b, 80).await?;
        let t0 = current_time();
        let sent = poll_fn(|cx| client.poll_send(cx, b"poll")).await?;
        poll_fn(|cx| client.poll_send_eof(cx)).await?;
        let mut buf = [0u8; 16];
        let n = poll_fn(|cx| server.poll_receive(cx, &mut buf)).await?;
        let arrived = since(t0);
        let end = poll_fn(|cx| server.poll_receive(cx, &mut buf[n..])).await?;
        Ok::<_, BoxError>((sent, buf[..n].to_vec(), arrived, end))
    });
    assert_eq!(out.unwrap(), (4, b"poll".to_vec(), LAT, 0));
}

#[test]
fn udp_datagrams_arrive_one_latency_later_and_a_partition_drops_them() {
    use trioxide::UdpSocket;
    let out = sim::Builder::new().net(cfg()).run(async {
        let (a, b) = two_hosts();
        let net = sim::net();
        let rx = b.enter(async { UdpSocket::bind("0.0.0.0:53".parse().unwrap()) }).await?;
        let tx = a.enter(async { UdpSocket::bind("0.0.0.0:0".parse().unwrap()) }).await?;
        let t0 = current_time();
        tx.send_to(b"query", "10.0.0.2:53".parse()?).await?;
        let mut buf = [0u8; 16];
        let (n, from) = rx.recv_from(&mut buf).await?;
        let arrived = since(t0);
        // A partition drops datagrams (UDP sees loss, not delay).
        net.partition(&[&a], &[&b]);
        tx.send_to(b"lost", "10.0.0.2:53".parse()?).await?;
        net.heal();
        tx.send_to(b"after", "10.0.0.2:53".parse()?).await?;
        let (m, _) = rx.recv_from(&mut buf[n..]).await?;
        Ok::<_, BoxError>((buf[..n].to_vec(), from, tx.local_addr()?, arrived, buf[n..n + m].to_vec()))
    });
    let (first, from, tx_addr, arrived, second) = out.unwrap();
    assert_eq!((first, from, arrived, second), (b"query".to_vec(), tx_addr, LAT, b"after".to_vec()));
}

#[test]
fn send_file_over_simulated_tcp_sends_the_range_and_stops_where_the_file_ends() {
    let path = std::env::temp_dir().join(format!("trioxide-sim-sendfile-{}", std::process::id()));
    std::fs::write(&path, b"0123456789").unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let out = sim::Builder::new().net(cfg()).run(async {
        let (a, b) = two_hosts();
        let (client, server) = connect_pair(&a, &b, 80).await?;
        let first = client.send_file(&file, 2, 5).await?;
        let second = client.send_file(&file, 8, 100).await?;
        client.send_eof().await?;
        let mut got = Vec::new();
        while server.receive_into(&mut got).await? != 0 {}
        Ok::<_, BoxError>((first, second, got))
    });
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.unwrap(), (5, 2, b"2345689".to_vec()));
}

#[test]
fn a_kill_during_a_restarts_downtime_keeps_the_host_down() {
    // `restart(d)` then `kill()` before `d` is over: the kill is for good,
    // `run` returns without booting again. A second `restart` during the
    // downtime moves the boot to its own time.
    let boots = Rc::new(std::cell::RefCell::new(Vec::new()));
    let ended = Rc::new(std::cell::Cell::new(None));
    let (bt, end) = (boots.clone(), ended.clone());
    let out = sim::Builder::new().net(cfg()).run(open_nursery(|n| async move {
        let (_a, b) = two_hosts();
        let server = b.clone();
        let t0 = current_time();
        n.start_soon(async move {
            server
                .run(move || {
                    bt.borrow_mut().push(since(t0));
                    async {
                        sleep_forever().await?;
                        Ok::<_, BoxError>(())
                    }
                })
                .await?;
            end.set(Some(since(t0)));
            Ok::<_, BoxError>(())
        })?;
        sleep(Duration::from_secs(1)).await?;
        b.restart(Duration::from_secs(10)); // boot 2 due at 11 s ...
        sleep(Duration::from_secs(1)).await?;
        b.restart(Duration::from_secs(2)); // ... moved to 4 s
        sleep(Duration::from_secs(4)).await?;
        let up_at_6 = b.is_up();
        b.restart(Duration::from_secs(10)); // boot 3 due at 16 s ...
        sleep(Duration::from_secs(1)).await?;
        b.kill(); // ... cancelled: down for good, `run` returns now
        Ok::<_, BoxError>((up_at_6, b.is_up(), b.kills()))
    }));
    assert_eq!(out.unwrap(), Some((true, false, 4)));
    assert_eq!(*boots.borrow(), [Duration::ZERO, Duration::from_secs(4)]);
    assert_eq!(ended.get(), Some(Duration::from_secs(7)));
}

#[test]
fn waits_for_a_network_change_that_end_by_their_deadline_leave_nothing_behind() {
    // Each run waits for a network change until a deadline, with no fault
    // change after it (which would wake, and so drop, what the wait left
    // behind): the wait must take its task's waker (and so the task's
    // allocation) back from the network itself.
    let left = |r: &trioxide::RunReport| (r.tasks_left, r.timers_left, r.task_allocations_left);
    // A connect across a partition that is never healed: it times out.
    let cfg = cfg().partition_timeout(Some(Duration::from_secs(1)));
    let (out, report, _) = sim::Builder::new().net(cfg).run_with_trace(async {
        let (a, b) = two_hosts();
        sim::net().partition(&[&a], &[&b]);
        let t0 = current_time();
        let e = a.enter(TcpStream::connect("10.0.0.2:80".parse()?)).await.unwrap_err();
        let e = e.downcast::<io::Error>().map_err(|_| "not an io::Error")?;
        Ok::<_, BoxError>((e.kind(), since(t0)))
    });
    assert_eq!(out.unwrap(), (io::ErrorKind::TimedOut, Duration::from_secs(1)));
    assert_eq!(left(&report), (0, 0, 0));
    // A restart: the host waits out its downtime, boots, and main returns.
    let (out, report, _) = sim::Builder::new().net(cfg).run_with_trace(open_nursery(|n| async move {
        let (a, _b) = two_hosts();
        let (host, boots) = (a.clone(), Rc::new(std::cell::Cell::new(0u32)));
        let b2 = boots.clone();
        n.start_soon(async move {
            host.run(move || {
                b2.set(b2.get() + 1);
                let first = b2.get() == 1;
                async move {
                    if first {
                        sleep_forever().await?;
                    }
                    Ok::<_, BoxError>(())
                }
            })
            .await
        })?;
        sleep(Duration::from_secs(1)).await?;
        a.restart(Duration::from_secs(2));
        Ok::<_, BoxError>(boots)
    }));
    assert_eq!(out.unwrap().map(|b| b.get()), Some(2));
    assert_eq!(left(&report), (0, 0, 0));
}
