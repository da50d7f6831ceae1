//! hyper on trioxide: HTTP/1.1 and HTTP/2 (prior knowledge) on one port,
//! through hyper-util's auto builder, with a graceful shutdown on Ctrl-C.
//!
//! ```text
//! cargo run --release --features hyper --example hyper_server -- --port 8000
//! curl http://127.0.0.1:8000/
//! curl --http2-prior-knowledge http://127.0.0.1:8000/
//! curl --http2-prior-knowledge -d 'echo me' http://127.0.0.1:8000/echo
//! ```
//! Binds 127.0.0.1 (`--port 0`, the default: any free port) and prints
//! `listening on http://127.0.0.1:PORT`. `GET /` answers with the protocol
//! version, `POST /echo` sends the body back, anything else is 404.
//!
//! Structure: every connection is a task of the server's nursery, and each
//! has a nursery of its own that is hyper's executor, so its HTTP/2 streams
//! are its children. On SIGINT (Ctrl-C) or SIGTERM the server stops
//! accepting (the listener closes), asks every connection to shut down
//! gracefully (hyper's `graceful_shutdown`: HTTP/1 finishes the request in
//! flight and closes, HTTP/2 sends GOAWAY and finishes its open streams),
//! waits up to `--grace SECS` (default 5) and then cancels what is left:
//! no task outlives the server's nursery. A second signal during the drain
//! ends the process at once.
//!
//! Plain TCP only: HTTPS comes with the `rustls` feature (trioxide's TLS
//! streams are hyper I/O through `trioxide::hyper::HyperIo`).

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::net::{IpAddr, Ipv4Addr};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use trioxide::hyper::{cancel_aware, server_builder};
use trioxide::signal::open_signal_receiver;
use trioxide::sync::Event;
use trioxide::{current_time, open_nursery, open_tcp_listeners, secs_f64, BoxError, CancelScope, TcpStream};

#[path = "common/args.rs"]
mod args;

const FLAGS: &[args::Flag] = &[
    args::Flag { name: "port", value: "PORT", default: "0", help: "port on 127.0.0.1 (0: any free port)" },
    args::Flag {
        name: "grace",
        value: "SECS",
        default: "5",
        help: "how long connections may finish their requests at shutdown",
    },
];

/// The service: `GET /` names the protocol, `POST /echo` echoes the body.
async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, BoxError> {
    let answer = match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => {
            Response::new(Full::new(Bytes::from(format!("hello from trioxide over {:?}\n", req.version()))))
        }
        (&Method::POST, "/echo") => Response::new(Full::new(req.into_body().collect().await?.to_bytes())),
        _ => {
            let mut resp = Response::new(Full::new(Bytes::from_static(b"not found\n")));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            resp
        }
    };
    Ok(answer)
}

/// Serves one connection until it ends, or until `stop` is set: then asks
/// hyper to shut it down gracefully and waits for that. Its HTTP/2 streams
/// are children of its own nursery.
async fn serve_connection(stream: TcpStream, stop: Rc<Event>) -> Result<(), BoxError> {
    open_nursery(|streams| async move {
        let builder = server_builder(&streams);
        let mut conn = pin!(builder.serve_connection(stream, service_fn(handle)));
        let mut stopped = pin!(stop.wait());
        let ended = poll_fn(|cx| {
            if let Poll::Ready(out) = conn.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            stopped.as_mut().poll(cx).map(|_| None)
        })
        .await;
        match ended {
            Some(out) => cancel_aware(async { out }).await,
            None => {
                conn.as_mut().graceful_shutdown();
                cancel_aware(conn).await
            }
        }
    })
    .await?;
    Ok(())
}

fn main() {
    let args = args::Args::parse(
        "hyper_server",
        "HTTP/1.1 and HTTP/2 with hyper on trioxide; Ctrl-C or SIGTERM shuts it down gracefully.",
        FLAGS,
    );
    let port: u16 = args.get("port");
    let grace = match secs_f64(args.get("grace")) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("hyper_server: --grace: {e}");
            std::process::exit(2);
        }
    };
    let result = trioxide::run(async move {
        let signals = open_signal_receiver(&[libc::SIGINT, libc::SIGTERM])?;
        let listener = open_tcp_listeners(port, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)))?.remove(0);
        println!("listening on http://{}", listener.local_addr()?);
        let stop = Rc::new(Event::new());
        let served = Rc::new(Cell::new(0u64));
        let (stop2, served2) = (stop.clone(), served.clone());
        let outcome = open_nursery(|server| async move {
            let accepting = CancelScope::new();
            let (acc, srv) = (accepting.clone(), server.clone());
            server.start_soon_named("accept loop", async move {
                acc.run(async move {
                    loop {
                        let (stream, peer) = listener.accept().await?;
                        served2.set(served2.get() + 1);
                        let stop = stop2.clone();
                        srv.start_soon_named("connection", async move {
                            if let Err(e) = serve_connection(stream, stop).await {
                                if !trioxide::is_cancelled_error(&*e) {
                                    eprintln!("hyper_server: {peer}: {e}");
                                }
                            }
                        })?;
                    }
                    #[allow(unreachable_code)]
                    Ok::<_, BoxError>(())
                })
                .await
                .map(|_| ())
            })?;
            let sig = signals.receive().await?;
            drop(signals); // a second signal acts at once
            let name = if sig == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
            eprintln!("hyper_server: {name}: shutting down (grace {:.3} s)", grace.as_secs_f64());
            let t0 = current_time();
            accepting.cancel(); // the listener closes
            stop.set(); // every connection shuts down gracefully
            let scope = server.cancel_scope();
            scope.set_deadline(t0 + grace); // then whatever is left is cancelled
            Ok::<_, BoxError>((t0, scope))
        })
        .await?;
        if let Some((t0, scope)) = outcome {
            let took: Duration = current_time().saturating_duration_since(t0);
            let how = if scope.cancel_called() { "cancelled what was left at the grace deadline" } else { "all done" };
            println!(
                "hyper_server: shut down in {:.3} s ({how}); {} connection(s) served",
                took.as_secs_f64(),
                served.get()
            );
        }
        Ok::<_, BoxError>(())
    });
    if let Err(e) = result {
        eprintln!("hyper_server: {e}");
        std::process::exit(1);
    }
}
