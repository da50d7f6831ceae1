//! The replicated key-value store of `examples/sim_kv.rs` and its
//! simulated world, shared with `tests/sim_kv.rs` (which runs it for 200
//! seeds in the debug suite). See the example for the design.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use trioxide::sim::{self, Case, Host, NetConfig};
use trioxide::{
    current_time, move_on_after, open_nursery, open_tcp_stream, sleep, BoxError, BufferedReceiveStream, Server,
    TcpStream, TASK_STATUS_IGNORED,
};

/// Writes the client makes.
pub const WRITES: u32 = 24;
/// A host's disk: survives restarts.
type Store = Rc<RefCell<BTreeMap<String, String>>>;

/// What one run saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub acked: u32,
    pub reads: u32,
    pub faults: u32,
    /// Virtual time the run took.
    pub virtual_time: Duration,
    /// The first acknowledged write found missing or wrong, if any.
    pub violation: Option<String>,
}

/// Sends one request line to `host:port` on a new connection and returns
/// the reply line.
async fn request(host: &str, port: u16, line: &str) -> Result<String, BoxError> {
    let s = open_tcp_stream(host, port).await?;
    let (rx, tx) = s.into_split();
    tx.send_all(line.as_bytes()).await?;
    tx.send_all(b"\n").await?;
    let reply = BufferedReceiveStream::new(rx).next_line(256).await?.ok_or("connection closed")?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// `request` with a deadline: `None` if it failed or took too long.
async fn try_request(host: &str, port: u16, line: &str, timeout: Duration) -> Option<String> {
    match move_on_after(timeout, request(host, port, line)).await {
        Ok(Some(reply)) => Some(reply),
        _ => None,
    }
}

/// Serves request lines on `s` with `answer` until the client closes.
async fn serve_lines(s: TcpStream, answer: impl AsyncAnswer) -> Result<(), BoxError> {
    let (rx, tx) = s.into_split();
    let rx = BufferedReceiveStream::new(rx);
    while let Some(line) = rx.next_line(256).await? {
        let reply = answer.answer(String::from_utf8_lossy(&line).into_owned()).await;
        tx.send_all(reply.as_bytes()).await?;
        tx.send_all(b"\n").await?;
    }
    Ok(())
}

/// The server side of one protocol.
trait AsyncAnswer {
    async fn answer(&self, line: String) -> String;
}

/// A backup: applies `SET k v` to its disk and answers `OK`.
#[derive(Clone)]
struct Backup(Store);

impl AsyncAnswer for Backup {
    async fn answer(&self, line: String) -> String {
        match line.split_once(' ').and_then(|(op, rest)| Some((op, rest.split_once(' ')?))) {
            Some(("SET", (k, v))) => {
                self.0.borrow_mut().insert(k.to_string(), v.to_string());
                "OK".to_string()
            }
            _ => "ERR bad request".to_string(),
        }
    }
}

/// The primary: replicates a `SET` to both backups, stores it, then acks;
/// answers `GET k` from its store.
#[derive(Clone)]
struct Primary {
    /// Where acked writes go: the disk, or (the planted bug) memory.
    store: Store,
}

impl AsyncAnswer for Primary {
    async fn answer(&self, line: String) -> String {
        let mut parts = line.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("SET"), Some(k), Some(v)) => {
                let acks = Rc::new(Cell::new(0));
                let a = acks.clone();
                let line = line.clone();
                let replicated = open_nursery(|n| async move {
                    for backup in ["kv2", "kv3"] {
                        let (a, line) = (a.clone(), line.clone());
                        n.start_soon(async move {
                            if try_request(backup, 7001, &line, Duration::from_secs(1)).await.as_deref() == Some("OK") {
                                a.set(a.get() + 1);
                            }
                            Ok::<_, BoxError>(())
                        })?;
                    }
                    Ok::<_, BoxError>(())
                })
                .await;
                if replicated.is_ok() && acks.get() == 2 {
                    self.store.borrow_mut().insert(k.to_string(), v.to_string());
                    "OK".to_string()
                } else {
                    "ERR not replicated".to_string()
                }
            }
            (Some("GET"), Some(k), None) => match self.store.borrow().get(k) {
                Some(v) => format!("VAL {v}"),
                None => "NONE".to_string(),
            },
            _ => format!("ERR bad request {line:?}"),
        }
    }
}

/// Serves `answer` on `port` of the current host with `serve_tcp`'s
/// machinery; a connection's errors (resets, timeouts) just end it.
async fn serve(port: u16, answer: impl AsyncAnswer + Clone + 'static) -> Result<(), BoxError> {
    let handler = move |s: TcpStream| {
        let answer = answer.clone();
        async move { serve_lines(s, answer).await }
    };
    Server::new(handler).on_handler_error(|_, _| {}).serve_tcp(port, None, TASK_STATUS_IGNORED).await
}

/// The client: writes `k{i} = v{i}` until acknowledged (or it gives up on
/// that key), and after each acked write reads an earlier acked key back.
async fn client(acked: Rc<RefCell<Vec<u32>>>, reads: Rc<Cell<u32>>) -> Result<Option<String>, BoxError> {
    let net = sim::net();
    for i in 0..WRITES {
        for _attempt in 0..40 {
            let reply = try_request("kv1", 7000, &format!("SET k{i} v{i}"), Duration::from_secs(3)).await;
            if reply.as_deref() == Some("OK") {
                acked.borrow_mut().push(i);
                break;
            }
            sleep(Duration::from_millis(100 + net.random(400))).await?;
        }
        let done = acked.borrow().clone();
        if done.is_empty() {
            continue;
        }
        let j = done[net.random(done.len() as u64) as usize];
        if let Some(reply) = try_request("kv1", 7000, &format!("GET k{j}"), Duration::from_secs(3)).await {
            reads.set(reads.get() + 1);
            if reply != format!("VAL v{j}") {
                return Ok(Some(format!("read of acked k{j} gave {reply:?} during the faults")));
            }
        }
    }
    Ok(None)
}

/// Injects faults drawn from the seed until `stop`, then heals everything
/// and waits for every host to be up again.
async fn faults(hosts: Vec<Host>, stop: Rc<Cell<bool>>, count: Rc<Cell<u32>>) -> Result<(), BoxError> {
    let net = sim::net();
    while !stop.get() {
        sleep(Duration::from_millis(net.random(2000))).await?;
        let a = &hosts[net.random(hosts.len() as u64) as usize];
        let b = &hosts[net.random(hosts.len() as u64) as usize];
        let hold = Duration::from_millis(100 + net.random(4000));
        count.set(count.get() + 1);
        match net.random(4) {
            0 if a != b => {
                net.partition(&[a], &[b]);
                sleep(hold).await?;
                net.heal();
            }
            1 => {
                net.clog_host(a);
                sleep(hold).await?;
                net.unclog_host(a);
            }
            2 if a.name() != "client" => {
                a.restart(hold);
                sleep(hold + Duration::from_millis(1)).await?;
            }
            _ => count.set(count.get() - 1),
        }
    }
    net.heal();
    Ok(())
}

/// One simulated world: the hosts, the faults, the client, then the check
/// that every acked write is readable.
pub async fn world(bug: bool) -> Result<Outcome, BoxError> {
    let t0 = current_time();
    let out = open_nursery(|n| async move {
        let net = sim::net();
        let ip = |last: u8| std::net::IpAddr::from([10, 0, 0, last]);
        let kv1 = net.add_host("kv1", ip(1))?;
        let kv2 = net.add_host("kv2", ip(2))?;
        let kv3 = net.add_host("kv3", ip(3))?;
        let client_host = net.add_host("client", ip(10))?;
        let disks: Vec<Store> = (0..3).map(|_| Store::default()).collect();
        for (host, disk) in [&kv2, &kv3].into_iter().zip(&disks[1..]) {
            let (host, disk) = (host.clone(), disk.clone());
            n.start_soon(async move { host.run(|| serve(7001, Backup(disk.clone()))).await })?;
        }
        let (host, disk) = (kv1.clone(), disks[0].clone());
        n.start_soon(async move {
            host.run(|| {
                // The planted bug: acked writes kept in memory, lost by a restart.
                let store = if bug { Store::default() } else { disk.clone() };
                serve(7000, Primary { store })
            })
            .await
        })?;
        let (acked, reads, fault_count) =
            (Rc::new(RefCell::new(Vec::new())), Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
        let stop = Rc::new(Cell::new(false));
        let hosts = vec![kv1.clone(), kv2.clone(), kv3.clone(), client_host.clone()];
        let (a2, r2, f2, s2) = (acked.clone(), reads.clone(), fault_count.clone(), stop.clone());
        let ch = client_host.clone();
        let during = open_nursery(|m| async move {
            m.start_soon(faults(hosts, s2, f2))?;
            let v = ch.enter(client(a2, r2)).await?;
            stop.set(true);
            Ok::<_, BoxError>(v)
        })
        .await?
        .flatten();
        // Healed, every host up: every acked write must be readable.
        let mut violation = during;
        let acked_keys = acked.borrow().clone();
        for &j in &acked_keys {
            if violation.is_some() {
                break;
            }
            let mut reply = None;
            for _ in 0..10 {
                reply = client_host
                    .enter(async {
                        Ok::<_, BoxError>(try_request("kv1", 7000, &format!("GET k{j}"), Duration::from_secs(5)).await)
                    })
                    .await?;
                if reply.is_some() {
                    break;
                }
            }
            if reply.as_deref() != Some(&format!("VAL v{j}")) {
                violation = Some(format!("acked write k{j}=v{j} reads {reply:?} after healing"));
            }
        }
        n.cancel_scope().cancel();
        let acked = acked.borrow().len() as u32;
        Ok::<_, BoxError>(Outcome {
            acked,
            reads: reads.get(),
            faults: fault_count.get(),
            virtual_time: Duration::ZERO,
            violation,
        })
    })
    .await?;
    let mut out = out.ok_or("the world was cancelled")?;
    out.virtual_time = current_time().saturating_duration_since(t0);
    Ok(out)
}

/// The network of a seed: swarm-drawn, with a partition timeout always on
/// (so a partitioned connection fails rather than waits for the heal).
pub fn config(seed: u64) -> NetConfig {
    let cfg = NetConfig::swarm(seed);
    cfg.partition_timeout(Some(Duration::from_secs(2)))
}

/// Runs one case: its outcome and trace hash (or why it failed).
pub fn run_case(case: Case, bug: bool) -> Result<(Outcome, u64), String> {
    let (out, report, trace) = case.builder().net(config(case.seed)).run_with_trace(world(bug));
    let out = out.map_err(|e| format!("the run failed: {e}"))?;
    if report.tasks_left != 0 || report.timers_left != 0 {
        return Err(format!("leaked {} tasks, {} timers", report.tasks_left, report.timers_left));
    }
    Ok((out, trace.hash()))
}
