//! hyper on trioxide (features `hyper` and `rustls`), the way `src/hyper/`
//! documents it: `trioxide::hyper::server_builder` (hyper-util's auto
//! builder with a nursery as executor and the run's clock as timer) serving
//! a `TcpStream` directly, or `HyperIo<TlsStream<TcpStream>>` with `--tls`.
//! The same server as `hyper_tokio.rs`, for `benches/hyper.sh`.
//!
//! ```text
//! bench_hyper_trioxide --port N [--body BYTES] [--tls]
//! ```
//!
//! Binds 127.0.0.1:N (0 picks a port), prints `listening on 127.0.0.1:PORT`
//! as its first line and serves until killed. Every request is answered
//! with `--body` bytes (default 1024) of `x`, status 200, after its body
//! has been read. With `--tls` it accepts TLS (ALPN h2 and http/1.1) with a
//! self-signed certificate made at start-up (`tls_config::server_config`).
//!
//! Each connection is a child of the server's nursery; hyper's own tasks
//! (HTTP/2 streams) are children of that nursery too. `TCP_NODELAY` is on
//! for every trioxide `TcpStream` (the tokio server sets it by hand).

#[path = "tls_config.rs"]
mod tls_config;

use std::convert::Infallible;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use trioxide::hyper::{server_builder, HyperIo};
use trioxide::tls::TlsStream;
use trioxide::{open_nursery, BoxError, TcpListener, TcpStream};

struct Args {
    port: u16,
    body: usize,
    tls: bool,
}

fn usage() -> ! {
    eprintln!("usage: bench_hyper_trioxide --port N [--body BYTES] [--tls]");
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
    if let Err(e) = trioxide::run(serve(args)) {
        eprintln!("bench_hyper_trioxide: {e}");
        std::process::exit(1);
    }
}

async fn serve(args: Args) -> Result<(), BoxError> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, args.port)))?;
    let addr = listener.local_addr()?;
    println!("listening on {addr}");
    std::io::stdout().flush().ok();
    let body = Bytes::from(vec![b'x'; args.body]);
    let tls = args.tls.then(|| Arc::new(tls_config::server_config()));
    open_nursery(|server| async move {
        loop {
            // As the tokio side: an accept error (EMFILE, a reset before
            // accept) skips that connection.
            let Ok((stream, _peer)) = listener.accept().await else { continue };
            let (body, tls, nursery) = (body.clone(), tls.clone(), server.clone());
            server.start_soon_named("connection", async move {
                // A failed connection (a reset, a TLS error) is not the
                // server's failure: its error is dropped, as on the tokio side.
                let _ = serve_connection(stream, body, tls, &nursery).await;
            })?;
        }
        #[allow(unreachable_code)]
        Ok::<_, BoxError>(())
    })
    .await?;
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    body: Bytes,
    tls: Option<Arc<rustls::ServerConfig>>,
    nursery: &trioxide::Nursery,
) -> Result<(), BoxError> {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let body = body.clone();
        async move {
            // Read the request body as the tokio side does.
            let _ = req.into_body().collect().await;
            Ok::<_, Infallible>(Response::new(Full::new(body)))
        }
    });
    let builder = server_builder(nursery);
    match tls {
        Some(config) => {
            let tls = TlsStream::server(stream, config)?;
            // The handshake first, as tokio-rustls's `accept` does.
            tls.handshake().await?;
            builder.serve_connection(HyperIo::new(tls), service).await
        }
        None => builder.serve_connection(stream, service).await,
    }
}
