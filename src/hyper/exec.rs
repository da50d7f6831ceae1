//! hyper's executor: a nursery.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;

use crate::nursery::Nursery;

/// hyper's executor (`hyper::rt::Executor`) as a trioxide [`Nursery`]: each
/// task hyper spawns (an HTTP/2 stream, an HTTP/2 client connection) is a
/// child of the nursery you give it.
///
/// So no hyper task outlives the nursery's scope: the nursery does not
/// finish before they do, and cancelling its scope cancels them and waits
/// for them. The futures need not be `Send`: a service and a body that
/// hold an `Rc` serve HTTP/2 too.
///
/// If the nursery has closed (its body and children are all done) when
/// hyper spawns, the future is dropped unpolled, as a runtime that has shut
/// down does, and counted in [`dropped`](NurseryExecutor::dropped): running
/// it elsewhere would break the rule that it lives in that nursery. hyper
/// then sees the stream or connection as gone (a reset stream, a
/// "connection closed" error), never a hang.
///
/// ```
/// use std::convert::Infallible;
/// use http_body_util::Full;
/// use hyper::body::{Bytes, Incoming};
/// use hyper::{Request, Response};
/// use trioxide::hyper::NurseryExecutor;
/// use trioxide::{open_nursery, run, BoxError, UnixStream};
/// run(open_nursery(|n| async move {
///     let (server_io, client_io) = UnixStream::pair()?;
///     let exec = NurseryExecutor::new(&n);
///     let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
///         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"over h2"))))
///     });
///     let server = hyper::server::conn::http2::Builder::new(exec.clone()).serve_connection(server_io, service);
///     n.start_soon(server)?;
///     // The client's connection task is spawned into the nursery too.
///     let (mut sender, conn) = hyper::client::conn::http2::handshake(exec, client_io).await?;
///     n.start_soon(conn)?;
///     let resp = sender.send_request(Request::new(Full::new(Bytes::new()))).await?;
///     let body = http_body_util::BodyExt::collect(resp.into_body()).await?.to_bytes();
///     assert_eq!(&body[..], b"over h2");
///     drop(sender); // the client connection ends, and the server's with it
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct NurseryExecutor {
    nursery: Nursery,
    dropped: Rc<Cell<u64>>,
}

impl NurseryExecutor {
    /// An executor that spawns into `nursery` (it keeps a handle).
    ///
    /// ```
    /// use trioxide::hyper::NurseryExecutor;
    /// use trioxide::{open_nursery, run, BoxError};
    /// run(open_nursery(|n| async move {
    ///     let exec = NurseryExecutor::new(&n);
    ///     hyper::rt::Executor::execute(&exec, async { println!("a child of n") });
    ///     Ok::<_, BoxError>(())
    /// })).unwrap(); // waits for the child
    /// ```
    pub fn new(nursery: &Nursery) -> NurseryExecutor {
        NurseryExecutor { nursery: nursery.clone(), dropped: Rc::new(Cell::new(0)) }
    }

    /// The nursery it spawns into.
    ///
    /// ```
    /// use trioxide::hyper::NurseryExecutor;
    /// use trioxide::{open_nursery, run, BoxError};
    /// run(open_nursery(|n| async move {
    ///     let exec = NurseryExecutor::new(&n);
    ///     exec.nursery().cancel_scope().cancel(); // stops every task hyper spawned
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub fn nursery(&self) -> &Nursery {
        &self.nursery
    }

    /// How many futures hyper handed over after the nursery had closed
    /// (dropped unpolled), counted over this executor and its clones.
    ///
    /// ```
    /// use trioxide::hyper::NurseryExecutor;
    /// use trioxide::{open_nursery, run, BoxError};
    /// run(async {
    ///     let exec = open_nursery(|n| async move { Ok::<_, BoxError>(NurseryExecutor::new(&n)) }).await?.unwrap();
    ///     assert!(exec.nursery().is_closed());
    ///     hyper::rt::Executor::execute(&exec, async { unreachable!() });
    ///     assert_eq!(exec.dropped(), 1);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

impl<F> ::hyper::rt::Executor<F> for NurseryExecutor
where
    F: Future<Output = ()> + 'static,
{
    fn execute(&self, fut: F) {
        if self.nursery.start_soon_named("hyper task", fut).is_err() {
            self.dropped.set(self.dropped.get() + 1);
        }
    }
}
