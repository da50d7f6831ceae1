//! hyper on trioxide: HTTP/1.1 and HTTP/2 (prior knowledge) on one port,
//! through hyper-util's auto builder, with a graceful shutdown on Ctrl-C.
//!
//! ```text
//! cargo run --release -p trioxide-ecosystem --example hyper_server -- --port 8000
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
//! HTTPS with `--tls` (needs the `rustls` feature): a CA and a certificate
//! for `localhost` and 127.0.0.1 are made with rcgen at start-up (nothing
//! is stored; `--ca-out FILE` writes the CA certificate as PEM, for a
//! client to trust), ALPN offers `h2` and `http/1.1`, and the protocol it
//! agrees on is the one hyper-util's auto builder serves. It prints
//! `listening on https://127.0.0.1:PORT` then.
//!
//! ```text
//! cargo run --release -p trioxide-ecosystem --example hyper_server -- --tls --ca-out ca.pem --port 8443
//! curl --cacert ca.pem https://localhost:8443/             # HTTP/2, by ALPN
//! curl --cacert ca.pem --http1.1 https://localhost:8443/
//! ```
//! Each TLS connection is a `TlsStream<TcpStream>` given to hyper through
//! `trioxide::hyper::HyperIo`; its handshake has 10 s to finish.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::net::{IpAddr, Ipv4Addr};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::rt::{Read, Write};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use trioxide::hyper::{cancel_aware, server_builder};
use trioxide::signal::open_signal_receiver;
use trioxide::sync::Event;
use trioxide::{current_time, open_nursery, open_tcp_listeners, secs_f64, BoxError, CancelScope};

#[path = "../../examples/common/args.rs"]
mod args;

const FLAGS: &[args::Flag] = &[
    args::Flag { name: "port", value: "PORT", default: "0", help: "port on 127.0.0.1 (0: any free port)" },
    args::Flag {
        name: "grace",
        value: "SECS",
        default: "5",
        help: "how long connections may finish their requests at shutdown",
    },
    args::Flag { name: "tls", value: "", default: "", help: "serve HTTPS (needs the `rustls` feature)" },
    args::Flag {
        name: "ca-out",
        value: "FILE",
        default: "",
        help: "with --tls: write the CA certificate (PEM) there, for curl --cacert",
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

/// Which protocols a connection may speak: both (told apart by the HTTP/2
/// preface), or the one TLS's ALPN agreed on.
#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "rustls"), allow(dead_code))] // only TLS restricts them
enum Protocols {
    Both,
    Http1,
    Http2,
}

/// Serves one connection until it ends, or until `stop` is set: then asks
/// hyper to shut it down gracefully and waits for that. Its HTTP/2 streams
/// are children of its own nursery.
async fn serve_connection<I>(io: I, protocols: Protocols, stop: Rc<Event>) -> Result<(), BoxError>
where
    I: Read + Write + Unpin + 'static,
{
    open_nursery(|streams| async move {
        let builder = match protocols {
            Protocols::Both => server_builder(&streams),
            Protocols::Http1 => server_builder(&streams).http1_only(),
            Protocols::Http2 => server_builder(&streams).http2_only(),
        };
        let mut conn = pin!(builder.serve_connection(io, service_fn(handle)));
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

/// HTTPS: the certificates made at start-up and the TLS handshake of each
/// connection.
#[cfg(feature = "rustls")]
mod tls {
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::pki_types::PrivateKeyDer;
    use rustls::ServerConfig;
    use trioxide::hyper::HyperIo;
    use trioxide::tls::TlsStream;
    use trioxide::{fail_after, BoxError, TcpStream};

    use super::Protocols;

    /// How long a client has for its TLS handshake.
    const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

    /// A fresh CA and a certificate from it for `localhost` and 127.0.0.1;
    /// a server config offering `h2` and `http/1.1` by ALPN, and the CA
    /// certificate as PEM.
    pub(crate) fn make_config() -> Result<(Arc<ServerConfig>, String), BoxError> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, "trioxide hyper_server example CA");
        let ca_cert = ca.self_signed(&ca_key)?;
        let key = rcgen::KeyPair::generate()?;
        let mut leaf = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        leaf.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
        let leaf = leaf.signed_by(&key, &ca_cert, &ca_key)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], PrivateKeyDer::Pkcs8(key.serialize_der().into()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok((Arc::new(config), ca_cert.pem()))
    }

    /// The server side of TLS over `tcp`, handshaken: hyper's I/O and the
    /// protocols ALPN allows.
    pub(crate) async fn accept(
        tcp: TcpStream,
        config: Arc<ServerConfig>,
    ) -> Result<(HyperIo<TlsStream<TcpStream>>, Protocols), BoxError> {
        // HTTPS clients often close without close_notify; HTTP frames its
        // own messages, so a cut one is seen anyway.
        let tls = TlsStream::server(tcp, config)?.ignore_missing_close_notify(true);
        fail_after(HANDSHAKE_TIMEOUT, tls.handshake()).await?;
        let protocols = match tls.alpn_protocol().as_deref() {
            Some(b"h2") => Protocols::Http2,
            Some(b"http/1.1") => Protocols::Http1,
            _ => Protocols::Both,
        };
        Ok((HyperIo::new(tls), protocols))
    }
}

/// What `--tls` needs: the server config, or no TLS.
#[cfg(feature = "rustls")]
type TlsConfig = Option<std::sync::Arc<rustls::ServerConfig>>;
#[cfg(not(feature = "rustls"))]
type TlsConfig = Option<std::convert::Infallible>;

/// `--tls` and `--ca-out`: makes the certificates and writes the CA file,
/// or exits (status 2 for a bad command line).
fn tls_config(args: &args::Args) -> TlsConfig {
    let ca_out: String = args.get("ca-out");
    if !args.switch("tls") {
        if !ca_out.is_empty() {
            eprintln!("hyper_server: --ca-out needs --tls");
            std::process::exit(2);
        }
        return None;
    }
    #[cfg(feature = "rustls")]
    {
        let (config, ca_pem) = match tls::make_config() {
            Ok(made) => made,
            Err(e) => {
                eprintln!("hyper_server: making the certificates: {e}");
                std::process::exit(1);
            }
        };
        if !ca_out.is_empty() {
            if let Err(e) = std::fs::write(&ca_out, ca_pem) {
                eprintln!("hyper_server: --ca-out {ca_out}: {e}");
                std::process::exit(1);
            }
        }
        Some(config)
    }
    #[cfg(not(feature = "rustls"))]
    {
        eprintln!(
            "hyper_server: --tls needs this crate's `rustls` feature (on by default): \
             cargo run --release -p trioxide-ecosystem --example hyper_server -- --tls"
        );
        std::process::exit(2);
    }
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
    let tls = tls_config(&args);
    let result = trioxide::run(async move {
        let signals = open_signal_receiver(&[libc::SIGINT, libc::SIGTERM])?;
        let listener = open_tcp_listeners(port, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)))?.remove(0);
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!("listening on {scheme}://{}", listener.local_addr()?);
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
                        #[cfg_attr(not(feature = "rustls"), allow(clippy::clone_on_copy))] // Option<Infallible>
                        let tls = tls.clone();
                        srv.start_soon_named("connection", async move {
                            let served = match tls {
                                None => serve_connection(stream, Protocols::Both, stop).await,
                                #[cfg(feature = "rustls")]
                                Some(config) => match tls::accept(stream, config).await {
                                    Ok((io, protocols)) => serve_connection(io, protocols, stop).await,
                                    Err(e) => Err(e),
                                },
                                #[cfg(not(feature = "rustls"))]
                                Some(never) => match never {},
                            };
                            if let Err(e) = served {
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
