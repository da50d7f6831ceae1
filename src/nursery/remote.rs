//! `Nursery::start_soon_on` and `Nursery::start_on`: children on another
//! shard of a sharded run. The protocol itself lives in
//! `shard/remote.rs`; this file is the nursery's side of it.

use std::future::Future;
use std::rc::Rc;

use crate::kernel::error::BoxError;
use crate::nursery::{Nursery, TaskOutput};
use crate::shard::remote::{
    current_host, GroupProxy, OwnerGroup, RemoteError, RemoteTaskStatus, StartGuard, StartSlot, StartWrap, WaitStarted,
    PROXY_NAME,
};

impl Nursery {
    /// Starts a child on shard `shard` of the sharded run: `make` is sent
    /// there and called on that shard's thread, so the future it builds
    /// need not be `Send` (only `make` is). The child belongs to this
    /// nursery as a local child would:
    ///
    /// * the nursery waits for it;
    /// * its error joins the nursery's [`MultiError`](crate::MultiError)
    ///   as it is (not wrapped: downcast it as a local child's), and
    ///   cancels the nursery (rule N1);
    /// * its panic resumes in the nursery's parent, on this shard, once
    ///   everyone has finished (its payload crosses threads);
    /// * cancelling the nursery or any scope around it (a deadline
    ///   included) cancels it: one message per target shard, whatever the
    ///   number of children there.
    ///
    /// `shard` equal to this shard's index starts a local child at once,
    /// with no message (`make` called here). Outside a sharded run (a
    /// plain [`run`](crate::run), or one shard) there is one shard, 0.
    ///
    /// # Errors
    /// [`RemoteError::NoSuchShard`] for an index out of range;
    /// [`RemoteError::ShardFinished`] if the hosts are closed: every
    /// shard's main has returned (a shard whose own main has returned, or
    /// failed, still hosts children until then), so only a task outliving
    /// the mains meets it; a close racing with the start message brings the
    /// same error into the nursery's `MultiError` instead.
    /// [`RemoteError::NurseryClosed`] if the nursery is closed.
    ///
    /// ```
    /// use std::rc::Rc; // built on the target shard: !Send is fine
    /// use trioxide::{open_nursery, BoxError, ShardedBuilder};
    /// let out = ShardedBuilder::new(2).run(|shard| async move {
    ///     if shard.index() == 1 {
    ///         return Ok::<_, BoxError>(String::new());
    ///     }
    ///     let err = open_nursery(|n| async move {
    ///         n.start_soon_on(1, || {
    ///             let local = Rc::new("failed on shard 1");
    ///             async move { Err::<(), BoxError>((*local).into()) }
    ///         })?;
    ///         Ok::<_, BoxError>(())
    ///     })
    ///     .await
    ///     .unwrap_err();
    ///     Ok(err.errors()[0].to_string()) // the child's error, as it is
    /// });
    /// assert_eq!(out.unwrap(), ["failed on shard 1", ""]);
    /// ```
    pub fn start_soon_on<M, Fut>(&self, shard: usize, make: M) -> Result<(), RemoteError>
    where
        M: FnOnce() -> Fut + Send + 'static,
        Fut: Future + 'static,
        Fut::Output: TaskOutput,
    {
        if self.inner.is_closed() {
            return Err(RemoteError::NurseryClosed);
        }
        let Some(host) = current_host() else {
            if shard != 0 {
                return Err(RemoteError::NoSuchShard { shard, count: 1 });
            }
            return self.start_soon(make()).map_err(|_| RemoteError::NurseryClosed);
        };
        if shard >= host.count() {
            return Err(RemoteError::NoSuchShard { shard, count: host.count() });
        }
        if shard == host.index {
            return self.start_soon(make()).map_err(|_| RemoteError::NurseryClosed);
        }
        let existing = self.inner.remote_groups.borrow().iter().find(|g| g.target == shard).cloned();
        let group = match existing {
            Some(g) => g,
            None => {
                let g = Rc::new(OwnerGroup::new(&host, shard)?);
                let proxy = GroupProxy { group: g.clone(), nursery: self.inner.clone() };
                let proxy = self.spawn_child(Some(PROXY_NAME), proxy).map_err(|_| RemoteError::NurseryClosed)?;
                g.proxy.set(proxy); // the children's parent in the task tree
                self.inner.remote_groups.borrow_mut().push(g.clone());
                g
            }
        };
        group.send_start(&host, make)
    }

    /// Starts a child on shard `shard` (as
    /// [`start_soon_on`](Nursery::start_soon_on)) and waits until it
    /// calls [`RemoteTaskStatus::started`]`(value)`; returns that value,
    /// which crosses back to this shard. From then on the child's outcome
    /// goes to the nursery; before that, to this call: its error
    /// (unwrapped), [`StartError::NotStarted`](crate::StartError) if it
    /// returned without calling `started`, its panic resumed here, or a
    /// [`RemoteError`].
    ///
    /// Unlike a local [`start`](Nursery::start), the child runs under the
    /// nursery's cancel scope from the beginning (a scope around this call
    /// does not reach it), and waiting here is not a cancel point.
    ///
    /// ```
    /// use trioxide::{open_nursery, BoxError, RemoteTaskStatus, ShardedBuilder, sleep_forever};
    /// let out = ShardedBuilder::new(2).run(|shard| async move {
    ///     if shard.index() == 1 {
    ///         return Ok::<_, BoxError>(None);
    ///     }
    ///     let port = open_nursery(|n| async move {
    ///         let port = n
    ///             .start_on(1, |status: RemoteTaskStatus<u16>| async move {
    ///                 status.started(4242);
    ///                 sleep_forever().await?; // goes on in the nursery, on shard 1
    ///                 Ok::<_, BoxError>(())
    ///             })
    ///             .await?;
    ///         n.cancel_scope().cancel(); // reaches shard 1
    ///         Ok::<_, BoxError>(port)
    ///     })
    ///     .await?;
    ///     Ok(port)
    /// });
    /// assert_eq!(out.unwrap(), [Some(4242), None]);
    /// ```
    pub async fn start_on<S, F, V>(&self, shard: usize, spawn: S) -> Result<V, BoxError>
    where
        S: FnOnce(RemoteTaskStatus<V>) -> F + Send + 'static,
        F: Future + 'static,
        F::Output: TaskOutput,
        V: Send + 'static,
    {
        let slot = StartSlot::new();
        let guard = StartGuard { slot: slot.clone(), shard };
        self.start_soon_on(shard, move || {
            let fut = spawn(RemoteTaskStatus { slot: guard.slot.clone() });
            StartWrap { fut, guard }
        })?;
        WaitStarted { slot }.await
    }
}
