//! Child processes: [`run_process`] (run a command like a function call)
//! and [`open_process`] (a [`Process`] to talk to), Trio's `run_process` and
//! `open_process`.
//!
//! * The child's pipes are trioxide streams ([`PipeSendStream`],
//!   [`PipeReceiveStream`]): non-blocking, waited on by the run's I/O
//!   driver, every operation a checkpoint.
//! * Its exit is learned from a pidfd waited on like any fd, or, on kernels
//!   without pidfd, from a helper thread (see `exit.rs`).
//! * [`run_process`] feeds stdin and collects stdout and stderr at the same
//!   time, so a child that writes a lot before reading everything never
//!   deadlocks; if cancelled it asks the child to stop (SIGTERM), kills it
//!   after [`TERMINATE_GRACE`] if it did not, reaps it, and only then
//!   reports `Cancelled`.
//!
//! ```
//! use std::process::Command;
//! use trioxide::process::run_process;
//! trioxide::run(async {
//!     let mut cmd = Command::new("sh");
//!     cmd.args(["-c", "printf out; printf err >&2"]);
//!     let done = run_process(cmd).await?;
//!     assert!(done.status.success());
//!     assert_eq!((&done.stdout[..], &done.stderr[..]), (&b"out"[..], &b"err"[..]));
//!     Ok::<_, trioxide::process::ProcessError>(())
//! }).unwrap();
//! ```

mod exit;
mod pipe;
mod run;

use crate::kernel::sys::syscall;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};

use libc::c_int;

use crate::kernel::budget::after_io;
use crate::kernel::error::Cancelled;
use crate::kernel::Core;
use crate::sync::ParkingLot;

use exit::{ExitWatch, WatchKind};

pub use pipe::{PipeReceiveStream, PipeSendStream};
pub use run::{run_process, CompletedProcess, DeliverCancel, ProcessError, RunProcess, TERMINATE_GRACE};

/// Starts `cmd` as a child process. Set `Stdio::piped()` on `cmd` for each
/// of stdin, stdout and stderr you want a stream for; the others are what
/// `cmd` says (inherited by default).
///
/// Spawning runs `fork`/`exec` on the calling thread, as
/// `Command::spawn` does (a few hundred µs to a few ms; Trio uses a worker
/// thread for it). Errors are `Command::spawn`'s, e.g. `NotFound` for a
/// missing program.
///
/// Dropping the [`Process`] does not kill the child, as with
/// `std::process::Child`; its pipe ends and pidfd are closed. A child that
/// is never waited for stays a zombie until this process exits. Use
/// [`run_process`], or [`Process::kill`] and [`Process::wait`], to clean up.
///
/// ```
/// use std::process::{Command, Stdio};
/// trioxide::run(async {
///     let mut cmd = Command::new("cat");
///     cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
///     let mut cat = trioxide::process::open_process(cmd)?;
///     let (stdin, stdout) = (cat.stdin.take().unwrap(), cat.stdout.take().unwrap());
///     stdin.send_all(b"ping").await?;
///     let mut buf = [0u8; 4];
///     let n = stdout.receive_some(&mut buf).await?;
///     assert_eq!(&buf[..n], b"ping"); // a short message arrives in one piece
///     drop(stdin);
///     assert_eq!(cat.wait().await?.code(), Some(0));
///     Ok::<_, Box<dyn std::error::Error>>(())
/// }).unwrap();
/// ```
pub fn open_process(cmd: Command) -> io::Result<Process> {
    Process::spawn(cmd, WatchKind::Best)
}

/// A running (or finished) child process, from [`open_process`].
///
/// `wait` may be called by several tasks at once (share the process with
/// an `Rc`); all of them get the status.
///
/// ```
/// use std::process::{Command, Stdio};
/// use trioxide::process::open_process;
/// use trioxide::{run, BoxError};
/// run(async {
///     let mut cmd = Command::new("sh");
///     cmd.args(["-c", "read line; echo got $line"]).stdin(Stdio::piped()).stdout(Stdio::piped());
///     let mut p = open_process(cmd)?;
///     let (stdin, stdout) = (p.stdin.take().unwrap(), p.stdout.take().unwrap());
///     stdin.send_all(b"hi\n").await?;
///     drop(stdin); // end of input
///     let mut out = Vec::new();
///     let mut buf = [0u8; 64];
///     loop {
///         let n = stdout.receive_some(&mut buf).await?;
///         if n == 0 { break; }
///         out.extend_from_slice(&buf[..n]);
///     }
///     assert_eq!(out, b"got hi\n");
///     assert!(p.wait().await?.success());
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub struct Process {
    /// The child's standard input, if `cmd` had `Stdio::piped()` for it.
    /// Drop or close it to send end-of-file.
    pub stdin: Option<PipeSendStream>,
    /// The child's standard output, if piped.
    pub stdout: Option<PipeReceiveStream>,
    /// The child's standard error, if piped.
    pub stderr: Option<PipeReceiveStream>,
    pid: u32,
    child: RefCell<Child>,
    /// Set once the child is reaped.
    status: Cell<Option<ExitStatus>>,
    exit: ExitWatch,
    /// A task is waiting on `exit`; the others park in `waiters`.
    watching: Cell<bool>,
    waiters: ParkingLot,
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.pid)
            .field("status", &self.status.get())
            .field("exit_watch", &self.exit)
            .finish()
    }
}

impl Process {
    pub(crate) fn spawn(mut cmd: Command, kind: WatchKind) -> io::Result<Process> {
        let mut child = cmd.spawn()?;
        let pid = child.id();
        // From here on an error must not leave an unreaped child behind
        // nobody knows about: kill and reap it before reporting.
        let built = (|| {
            let stdin = child.stdin.take().map(|s| PipeSendStream::new(s.into())).transpose()?;
            let stdout = child.stdout.take().map(|s| PipeReceiveStream::new(s.into())).transpose()?;
            let stderr = child.stderr.take().map(|s| PipeReceiveStream::new(s.into())).transpose()?;
            let exit = ExitWatch::open(pid, kind)?;
            Ok::<_, io::Error>((stdin, stdout, stderr, exit))
        })();
        match built {
            Ok((stdin, stdout, stderr, exit)) => Ok(Process {
                stdin,
                stdout,
                stderr,
                pid,
                child: RefCell::new(child),
                status: Cell::new(None),
                exit,
                watching: Cell::new(false),
                waiters: ParkingLot::new(),
            }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// The child's process id.
    ///
    /// ```
    /// trioxide::run(async {
    ///     let p = trioxide::process::open_process(std::process::Command::new("true"))?;
    ///     assert!(p.pid() > 0);
    ///     p.wait().await?;
    ///     Ok::<_, Box<dyn std::error::Error>>(())
    /// }).unwrap();
    /// ```
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status if the child has exited (reaping it), else `None`.
    /// Never blocks.
    ///
    /// ```
    /// use std::process::Command;
    /// trioxide::run(async {
    ///     let mut cmd = Command::new("sleep");
    ///     cmd.arg("10");
    ///     let p = trioxide::process::open_process(cmd)?;
    ///     assert_eq!(p.try_wait(), None);
    ///     p.kill()?;
    ///     p.wait().await?;
    ///     assert!(p.try_wait().is_some());
    ///     Ok::<_, Box<dyn std::error::Error>>(())
    /// }).unwrap();
    /// ```
    pub fn try_wait(&self) -> Option<ExitStatus> {
        if let Some(s) = self.status.get() {
            return Some(s);
        }
        let polled = self.child.borrow_mut().try_wait();
        let status = match polled {
            Ok(s) => s?,
            // ECHILD: someone else reaped it (SIGCHLD set to SIG_IGN makes
            // the kernel do so). The status is gone; like CPython's
            // subprocess, report 0.
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => ExitStatus::from_raw(0),
            // waitpid(WNOHANG) on our own child fails in no other way.
            Err(e) => panic!("trioxide: waitpid on child {} failed: {e}", self.pid),
        };
        self.status.set(Some(status));
        self.exit.close();
        Some(status)
    }

    /// Waits for the child to exit, reaps it, and returns its status. A
    /// checkpoint: `Cancelled` if the scope is cancelled first. A cancelled
    /// wait changes nothing; the process can be waited for again.
    ///
    /// ```
    /// use std::process::Command;
    /// trioxide::run(async {
    ///     let mut cmd = Command::new("sh");
    ///     cmd.args(["-c", "exit 3"]);
    ///     let p = trioxide::process::open_process(cmd)?;
    ///     assert_eq!(p.wait().await?.code(), Some(3));
    ///     Ok::<_, Box<dyn std::error::Error>>(())
    /// }).unwrap();
    /// ```
    pub async fn wait(&self) -> Result<ExitStatus, Cancelled> {
        if Core::current().is_cancelled() {
            return Err(Cancelled);
        }
        if let Some(status) = self.try_wait() {
            after_io().await;
            return Ok(status);
        }
        loop {
            if self.watching.get() {
                // Another task watches the exit; it wakes us when it stops
                // watching, whether the child exited or its wait ended.
                self.waiters.park().await.map_err(|_| Cancelled)?;
            } else {
                let _watch = Watching::start(self);
                self.exit.wait().await?;
            }
            if let Some(status) = self.try_wait() {
                return Ok(status);
            }
        }
    }

    /// Sends signal `sig` to the child. Does nothing if it has exited and
    /// been reaped (its pid may belong to another process by now); a child
    /// that exited but is not reaped yet is reaped here.
    ///
    /// ```
    /// use std::os::unix::process::ExitStatusExt;
    /// use std::process::Command;
    /// trioxide::run(async {
    ///     let mut cmd = Command::new("sleep");
    ///     cmd.arg("10");
    ///     let p = trioxide::process::open_process(cmd)?;
    ///     p.send_signal(libc::SIGINT)?;
    ///     assert_eq!(p.wait().await?.signal(), Some(libc::SIGINT));
    ///     p.send_signal(libc::SIGINT)?; // reaped: nothing happens
    ///     Ok::<_, Box<dyn std::error::Error>>(())
    /// }).unwrap();
    /// ```
    pub fn send_signal(&self, sig: c_int) -> io::Result<()> {
        if self.try_wait().is_some() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(self.pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
        // SAFETY: kill takes a pid and a signal number. The pid is still
        // our unreaped child (try_wait just said so), so it names no other
        // process.
        syscall!(kill(pid, sig))?;
        Ok(())
    }

    /// Asks the child to stop: `SIGTERM`, which it may catch or ignore.
    ///
    /// ```
    /// trioxide::run(async {
    ///     let mut cmd = std::process::Command::new("sleep");
    ///     cmd.arg("10");
    ///     let p = trioxide::process::open_process(cmd)?;
    ///     p.terminate()?;
    ///     assert!(!p.wait().await?.success());
    ///     Ok::<_, Box<dyn std::error::Error>>(())
    /// }).unwrap();
    /// ```
    pub fn terminate(&self) -> io::Result<()> {
        self.send_signal(libc::SIGTERM)
    }

    /// Kills the child: `SIGKILL`, which it cannot catch. It still has to
    /// be waited for.
    ///
    /// ```
    /// use std::os::unix::process::ExitStatusExt;
    /// trioxide::run(async {
    ///     let mut cmd = std::process::Command::new("sleep");
    ///     cmd.arg("10");
    ///     let p = trioxide::process::open_process(cmd)?;
    ///     p.kill()?;
    ///     assert_eq!(p.wait().await?.signal(), Some(libc::SIGKILL));
    ///     Ok::<_, Box<dyn std::error::Error>>(())
    /// }).unwrap();
    /// ```
    pub fn kill(&self) -> io::Result<()> {
        self.send_signal(libc::SIGKILL)
    }
}

/// Marks a task as the one watching the child's exit; when its watch ends
/// (the exit seen, cancelled, or dropped) it wakes the other waiters, one
/// of which takes over if the child still runs.
struct Watching<'a>(&'a Process);

impl<'a> Watching<'a> {
    fn start(p: &'a Process) -> Watching<'a> {
        p.watching.set(true);
        Watching(p)
    }
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.0.watching.set(false);
        self.0.waiters.unpark_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{move_on_after, run, Builder, MockClock};
    use std::time::Duration;

    /// The waiter-thread fallback, forced on a kernel that has pidfd.
    #[test]
    fn exit_is_seen_through_the_waiter_thread_when_there_is_no_pidfd() {
        let clock = MockClock::new();
        clock.set_autojump_threshold(Some(Duration::from_millis(50)));
        Builder::new().clock(clock).run(async {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", "read x; exit 7"]).stdin(std::process::Stdio::piped());
            let mut p = Process::spawn(cmd, WatchKind::Thread).expect("spawn");
            assert!(matches!(p.exit, ExitWatch::Thread(_)));
            // A cancelled wait leaves the process waitable.
            let r = move_on_after(Duration::from_secs(1), p.wait()).await;
            assert_eq!(r, Ok(None));
            assert_eq!(p.try_wait(), None);
            drop(p.stdin.take()); // EOF: `read` fails, the shell exits 7
            assert_eq!(p.wait().await.map(|s| s.code()), Ok(Some(7)));
        });
    }

    #[test]
    fn pidfd_is_used_when_the_kernel_has_it() {
        run(async {
            let p = Process::spawn(Command::new("true"), WatchKind::Best).expect("spawn");
            if exit::tests_pidfd_available() {
                assert!(matches!(p.exit, ExitWatch::Pidfd(_)));
            }
            assert_eq!(p.wait().await.map(|s| s.code()), Ok(Some(0)));
        });
    }
}
