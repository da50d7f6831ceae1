//! Waiting on raw file descriptors that no trioxide object owns: Trio's
//! `wait_readable`, `wait_writable` and `notify_closing`.
//!
//! The fd is registered with epoll (edge-triggered, once) on its first wait
//! and stays registered until [`notify_closing`]. Because the caller does
//! the I/O itself, trioxide never sees its `WouldBlock`s, so each wait first
//! asks the kernel with a zero-timeout `poll(2)` whether the fd is ready
//! now; only if not does it wait for the next edge, which cannot be missed
//! since the fd is registered before that check.

use crate::kernel::sys::syscall;
use std::io;
use std::os::fd::RawFd;

use crate::kernel::budget::after_io;
use crate::kernel::error::Cancelled;
use crate::kernel::io::readiness::{Dir, Ready};
use crate::kernel::Core;

/// Waits until `fd` is readable (or at its end, or in error). A checkpoint.
///
/// For fds trioxide does not own (a pipe from elsewhere, a device). Before
/// closing such an fd, call [`notify_closing`]. Errors: `Cancelled` (inside
/// the `io::Error`), [`BusyResource`](crate::BusyResource) if another task
/// already waits for the same direction, [`ClosedResource`](crate::ClosedResource)
/// if `notify_closing` was called meanwhile, or the OS error for a bad fd.
///
/// ```
/// use std::io::Write;
/// use std::os::fd::AsRawFd;
/// let (reader, mut writer) = std::io::pipe()?;
/// writer.write_all(b"x")?;
/// trioxide::run(async move {
///     trioxide::wait_readable(reader.as_raw_fd()).await?;
///     trioxide::notify_closing(reader.as_raw_fd());
///     Ok::<_, std::io::Error>(())
/// })?;
/// # Ok::<_, std::io::Error>(())
/// ```
pub async fn wait_readable(fd: RawFd) -> io::Result<()> {
    wait_raw(fd, Dir::Read).await
}

/// Waits until `fd` is writable. See [`wait_readable`].
///
/// ```
/// use std::os::fd::AsRawFd;
/// use trioxide::{run, wait_writable, BoxError};
/// run(async {
///     let (a, _b) = std::os::unix::net::UnixStream::pair()?;
///     a.set_nonblocking(true)?;
///     wait_writable(a.as_raw_fd()).await?; // an empty socket buffer: at once
///     trioxide::notify_closing(a.as_raw_fd()); // before the fd is closed
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub async fn wait_writable(fd: RawFd) -> io::Result<()> {
    wait_raw(fd, Dir::Write).await
}

/// Tells trioxide that `fd` is about to be closed: tasks waiting on it wake
/// with [`ClosedResource`](crate::ClosedResource), and it is removed from
/// epoll. Call it before closing an fd passed to [`wait_readable`] or
/// [`wait_writable`]. Does nothing for an fd never waited on.
///
/// # Panics
/// Outside [`run`](crate::run): "trioxide::notify_closing must be called
/// from inside trioxide::run", at the caller's line.
///
/// ```
/// use std::os::fd::AsRawFd;
/// use trioxide::{io_error_kind, notify_closing, open_nursery, run, wait_all_tasks_blocked, wait_readable};
/// use trioxide::{BoxError, IoErrorKind};
/// run(open_nursery(|n| async move {
///     let (a, _b) = std::os::unix::net::UnixStream::pair()?;
///     a.set_nonblocking(true)?;
///     let fd = a.as_raw_fd();
///     n.start_soon(async move {
///         let e = wait_readable(fd).await.unwrap_err(); // nothing to read: waits
///         assert_eq!(io_error_kind(&e), Some(IoErrorKind::Closed));
///         Ok::<_, BoxError>(())
///     })?;
///     wait_all_tasks_blocked().await?;
///     notify_closing(fd); // wakes the waiter
///     drop(a); // now the fd can be closed
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
#[track_caller]
pub fn notify_closing(fd: RawFd) {
    let state = Core::current_for("trioxide::notify_closing").driver.borrow_mut().forget_raw(fd);
    if let Some(state) = state {
        state.mark_closed();
    }
}

async fn wait_raw(fd: RawFd, dir: Dir) -> io::Result<()> {
    let core = Core::current();
    if core.is_cancelled() {
        return Err(Cancelled.into());
    }
    let state = core.driver.borrow_mut().raw_state(fd)?;
    let _guard = state.begin(dir)?;
    if ready_now(fd, dir)? {
        after_io().await;
        return Ok(());
    }
    state.clear(dir);
    Ready { state: &state, dir, fd, suspended: false }.await?;
    Ok(())
}

/// Asks the kernel whether `fd` is ready for `dir` right now.
fn ready_now(fd: RawFd, dir: Dir) -> io::Result<bool> {
    let events = match dir {
        Dir::Read => libc::POLLIN,
        Dir::Write => libc::POLLOUT,
    };
    let mut pfd = libc::pollfd { fd, events, revents: 0 };
    loop {
        // SAFETY: `pfd` is a valid, exclusively borrowed pollfd and we pass
        // a count of 1; a zero timeout never blocks.
        match syscall!(poll(&mut pfd, 1, 0)) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if pfd.revents & libc::POLLNVAL != 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    Ok(pfd.revents != 0)
}
