//! hyper 1.x on trioxide (feature `hyper`): the three things hyper asks of
//! a runtime, built on trioxide's own.
//!
//! * **I/O**: `hyper::rt::Read` and `hyper::rt::Write` over the poll layer
//!   ([`PollReceive`](crate::PollReceive), [`PollSend`](crate::PollSend)),
//!   for [`TcpStream`](crate::TcpStream) and
//!   [`UnixStream`](crate::UnixStream) as they are and for any other
//!   stream through [`HyperIo`]. A cancelled task's I/O fails with an
//!   `io::Error` carrying [`Cancelled`](crate::Cancelled), which a cancel
//!   scope recognises inside hyper's error.
//! * **Executor**: [`NurseryExecutor`], a [`Nursery`]: every task hyper
//!   spawns (an HTTP/2 stream, an HTTP/2 client connection) is a child of
//!   your nursery, so none outlives its scope, and stopping a server
//!   cancels and waits for them all. Its futures need not be `Send`.
//! * **Timer**: [`HyperTimer`], on the run's clock, so hyper's timeouts
//!   run in virtual time under a [`MockClock`](crate::MockClock).
//!
//! * **Errors**: [`cancel_aware`] makes an HTTP/2 connection's failure
//!   under cancellation count as [`Cancelled`](crate::Cancelled) (`h2`
//!   keeps only the message of an I/O error).
//!
//! [`server_builder`] puts the executor and the timer into hyper-util's
//! auto builder, which serves HTTP/1 and HTTP/2 on one connection type.
//! DESIGN.md ("hyper") says how each part works and why it is sound.
//!
//! ```
//! use std::convert::Infallible;
//! use http_body_util::{BodyExt, Full};
//! use hyper::body::{Bytes, Incoming};
//! use hyper::{Request, Response};
//! use trioxide::hyper::server_builder;
//! use trioxide::{open_nursery, run, BoxError, TcpListener, TcpStream};
//!
//! async fn hello(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
//!     Ok(Response::new(Full::new(Bytes::from(format!("hello over {:?}", req.version())))))
//! }
//!
//! run(open_nursery(|n| async move {
//!     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
//!     let addr = listener.local_addr()?;
//!     let server = n.clone();
//!     n.start_soon(async move {
//!         let (stream, _peer) = listener.accept().await?;
//!         // An HTTP/2 connection's streams are children of `server`.
//!         server_builder(&server).serve_connection(stream, hyper::service::service_fn(hello)).await
//!     })?;
//!     let (mut sender, conn) = hyper::client::conn::http1::handshake(TcpStream::connect(addr).await?).await?;
//!     n.start_soon(conn)?;
//!     let resp = sender.send_request(Request::new(Full::new(Bytes::new()))).await?;
//!     assert_eq!(resp.into_body().collect().await?.to_bytes(), "hello over HTTP/1.1");
//!     drop(sender); // ends the connection: both sides return
//!     Ok::<_, BoxError>(())
//! })).unwrap();
//! ```

mod cancel;
mod exec;
mod io;
mod timer;

pub use cancel::{cancel_aware, CancelAware};
pub use exec::NurseryExecutor;
pub use io::HyperIo;
pub use timer::{HyperSleep, HyperTimer};

use crate::nursery::Nursery;

/// hyper-util's auto builder (HTTP/1 and HTTP/2 on one port, told apart by
/// the HTTP/2 preface) with a [`NurseryExecutor`] spawning into `nursery`
/// and a [`HyperTimer`] for both protocols, so hyper's timeouts (HTTP/1's
/// `header_read_timeout`, 30 s by default, is on) are on the run's clock.
/// Set anything else on the returned builder as usual.
///
/// ```
/// use std::time::Duration;
/// use trioxide::hyper::server_builder;
/// use trioxide::{open_nursery, run, BoxError};
/// run(open_nursery(|n| async move {
///     let mut builder = server_builder(&n);
///     builder.http1().header_read_timeout(Duration::from_secs(5)).keep_alive(true);
///     builder.http2().max_concurrent_streams(100);
///     assert!(builder.is_http1_available() && builder.is_http2_available());
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
pub fn server_builder(nursery: &Nursery) -> hyper_util::server::conn::auto::Builder<NurseryExecutor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(NurseryExecutor::new(nursery));
    builder.http1().timer(HyperTimer::new());
    builder.http2().timer(HyperTimer::new());
    builder
}
