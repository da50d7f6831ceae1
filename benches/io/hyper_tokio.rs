//! hyper on tokio's current-thread runtime, the way hyper-util documents it
//! (`TokioIo`, `TokioExecutor`, `TokioTimer`, the auto builder for HTTP/1
//! and HTTP/2 on one port), optionally behind tokio-rustls: the side
//! trioxide's hyper integration is measured against in `benches/hyper.sh`.
//!
//! ```text
//! bench_hyper_tokio --port N [--body BYTES] [--tls]
//! ```
//!
//! Binds 127.0.0.1:N (0 picks a port), prints `listening on 127.0.0.1:PORT`
//! as its first line and serves until killed. Every request is answered
//! with `--body` bytes (default 1024) of `x`, status 200, after its body
//! has been read. With `--tls` it accepts TLS (ALPN h2 and http/1.1) with a
//! self-signed certificate made at start-up (`bench_tls::server_config`).

#[path = "tls_config.rs"]
mod tls_config;

use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

struct Args {
    port: u16,
    body: usize,
    tls: bool,
}

fn usage() -> ! {
    eprintln!("usage: bench_hyper_tokio --port N [--body BYTES] [--tls]");
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut args = Args { port: 0, body: 1024, tls: false };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--tls" => args.tls = true,
            "--port" => args.port = it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()),
            "--body" => args.body = it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()),
            _ => usage(),
        }
    }
    args
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("build tokio runtime");
    rt.block_on(serve(args));
}

async fn serve(args: Args) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await.expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    println!("listening on {addr}");
    std::io::stdout().flush().ok();
    let body = Bytes::from(vec![b'x'; args.body]);
    let acceptor = args.tls.then(|| tokio_rustls::TlsAcceptor::from(Arc::new(tls_config::server_config())));
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        stream.set_nodelay(true).ok();
        let body = body.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let body = body.clone();
                async move {
                    // Read the request body as trioxide's side does.
                    let _ = req.into_body().collect().await;
                    Ok::<_, Infallible>(Response::new(Full::new(body)))
                }
            });
            // A timer for both protocols, as `trioxide::hyper::server_builder`
            // sets one: hyper then enforces HTTP/1's header_read_timeout (30 s)
            // on both servers, which costs ~1500 instructions per request.
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new());
            builder.http2().timer(TokioTimer::new());
            match acceptor {
                Some(acceptor) => {
                    let Ok(tls) = acceptor.accept(stream).await else { return };
                    let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                }
                None => {
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                }
            }
        });
    }
}
