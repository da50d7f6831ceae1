//! [`run_process`]: run a command to completion, feeding its input and
//! collecting its output concurrently, with Trio's cancellation sequence.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::{Command, ExitStatus, Stdio};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::kernel::cancel::CancelScope;
use crate::kernel::error::{is_cancelled_error, BoxError, Cancellation, Cancelled, MultiError};
use crate::kernel::Core;
use crate::nursery::{open_nursery, Nursery};
use crate::time::sleep;

use super::{open_process, PipeReceiveStream, PipeSendStream, Process};

/// How long the default cancellation waits after `SIGTERM` before sending
/// `SIGKILL`: 5 s, Trio's `_posix_deliver_cancel`.
///
/// ```
/// assert_eq!(trioxide::process::TERMINATE_GRACE.as_secs(), 5);
/// ```
pub const TERMINATE_GRACE: Duration = Duration::from_secs(5);

/// A custom way to stop a cancelled child, boxed (what
/// [`RunProcess::deliver_cancel`] stores).
///
/// ```
/// use trioxide::process::DeliverCancel;
/// let kill_now: DeliverCancel = Box::new(|p| Box::pin(async move { p.kill() }));
/// # drop(kill_now);
/// ```
pub type DeliverCancel = Box<dyn FnOnce(Rc<Process>) -> Pin<Box<dyn Future<Output = io::Result<()>>>>>;

/// Runs `cmd` to completion. Configure it with the builder methods, then
/// `.await` it.
///
/// Defaults: `check(true)` (a non-zero exit is a [`ProcessError::Failed`]
/// carrying the output), stdin is `/dev/null` unless [`RunProcess::stdin`]
/// gives data, and stdout and stderr are both captured.
///
/// Input is fed and output collected by tasks of a nursery running while
/// the child runs, so a child that writes a lot before it has read all of
/// its input never deadlocks against us.
///
/// **Cancellation.** If cancelled, the child is stopped with the
/// [`deliver_cancel`](RunProcess::deliver_cancel) function, by default
/// `SIGTERM`, then `SIGKILL` if it still runs after [`TERMINATE_GRACE`].
/// Meanwhile `run_process` waits for the child to exit, in a shielded scope
/// (the wait answers the cancellation, so it must not be cut short by it),
/// reaps it, and only then reports [`ProcessError::Cancelled`]. As soon as
/// the child exits, the deliver-cancel function is itself cancelled, so a
/// child that obeys `SIGTERM` costs no 5 s wait. If the future is dropped
/// instead of cancelled (e.g. by a `select!`), the child is sent `SIGKILL`
/// and reaped if it has exited by then (a drop cannot wait).
///
/// ```
/// use std::process::Command;
/// use trioxide::process::{run_process, ProcessError};
/// trioxide::run(async {
///     let mut cmd = Command::new("sh");
///     cmd.args(["-c", "cat; exit 2"]);
///     match run_process(cmd).stdin(b"echo".to_vec()).await {
///         Err(ProcessError::Failed { status, stdout, .. }) => {
///             assert_eq!(status.code(), Some(2));
///             assert_eq!(stdout, b"echo");
///         }
///         other => panic!("{other:?}"),
///     }
/// });
/// ```
pub fn run_process(cmd: Command) -> RunProcess {
    let config =
        Config { cmd, check: true, input: None, capture_stdout: true, capture_stderr: true, deliver_cancel: None };
    RunProcess { config: Some(config), running: None }
}

/// The builder and future of [`run_process`]: configure it with its
/// methods, then await it (or pass it to `move_on_after` and friends).
/// Nothing happens until it is first polled.
///
/// ```
/// use std::process::Command;
/// trioxide::run(async {
///     let mut cmd = Command::new("sh");
///     cmd.args(["-c", "read a; echo \"got $a\"; exit 1"]);
///     let run = trioxide::process::run_process(cmd).stdin(b"x\n".to_vec()).check(false);
///     let done = trioxide::move_on_after(std::time::Duration::from_secs(60), run).await?.expect("in time");
///     assert_eq!((done.status.code(), &done.stdout[..]), (Some(1), &b"got x\n"[..]));
///     Ok::<_, trioxide::process::ProcessError>(())
/// }).unwrap();
/// ```
#[must_use = "run_process does nothing until awaited"]
pub struct RunProcess {
    /// `Some` until the first poll starts the run.
    config: Option<Config>,
    running: Option<Running>,
}

/// The started run.
type Running = Pin<Box<dyn Future<Output = Result<CompletedProcess, ProcessError>>>>;

struct Config {
    cmd: Command,
    check: bool,
    input: Option<Vec<u8>>,
    capture_stdout: bool,
    capture_stderr: bool,
    deliver_cancel: Option<DeliverCancel>,
}

impl fmt::Debug for RunProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.config {
            Some(c) => f
                .debug_struct("RunProcess")
                .field("cmd", &c.cmd)
                .field("check", &c.check)
                .field("input_len", &c.input.as_ref().map(Vec::len))
                .field("capture_stdout", &c.capture_stdout)
                .field("capture_stderr", &c.capture_stderr)
                .field("custom_deliver_cancel", &c.deliver_cancel.is_some())
                .finish(),
            None => f.write_str("RunProcess(running)"),
        }
    }
}

impl RunProcess {
    /// Whether a non-zero exit (or death by a signal) is an error,
    /// [`ProcessError::Failed`] (default `true`, as in Trio: errors should
    /// not pass silently).
    ///
    /// ```
    /// use std::process::Command;
    /// trioxide::run(async {
    ///     let done = trioxide::process::run_process(Command::new("false")).check(false).await?;
    ///     assert_eq!(done.status.code(), Some(1));
    ///     Ok::<_, trioxide::process::ProcessError>(())
    /// }).unwrap();
    /// ```
    pub fn check(mut self, check: bool) -> RunProcess {
        self.config().check = check;
        self
    }

    /// Feeds `input` to the child's stdin, then closes it. Without this,
    /// stdin is `/dev/null`. If the child exits without reading it all,
    /// the rest is dropped (no error).
    ///
    /// ```
    /// use std::process::Command;
    /// trioxide::run(async {
    ///     let done = trioxide::process::run_process(Command::new("cat")).stdin(b"abc".to_vec()).await?;
    ///     assert_eq!(done.stdout, b"abc");
    ///     Ok::<_, trioxide::process::ProcessError>(())
    /// }).unwrap();
    /// ```
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> RunProcess {
        self.config().input = Some(input.into());
        self
    }

    /// Whether to collect stdout (default `true`). If `false`, stdout is
    /// whatever `cmd` says (inherited by default; a pipe set on `cmd` is
    /// closed, since nobody would read it).
    ///
    /// ```
    /// use std::process::{Command, Stdio};
    /// trioxide::run(async {
    ///     let mut cmd = Command::new("echo");
    ///     cmd.stdout(Stdio::null());
    ///     let done = trioxide::process::run_process(cmd).capture_stdout(false).await?;
    ///     assert!(done.stdout.is_empty());
    ///     Ok::<_, trioxide::process::ProcessError>(())
    /// }).unwrap();
    /// ```
    pub fn capture_stdout(mut self, capture: bool) -> RunProcess {
        self.config().capture_stdout = capture;
        self
    }

    /// Whether to collect stderr (default `true`); see
    /// [`capture_stdout`](RunProcess::capture_stdout).
    ///
    /// ```
    /// use std::process::{Command, Stdio};
    /// trioxide::run(async {
    ///     let mut cmd = Command::new("sh");
    ///     cmd.args(["-c", "echo oops >&2"]).stderr(Stdio::null());
    ///     let done = trioxide::process::run_process(cmd).capture_stderr(false).await?;
    ///     assert!(done.stderr.is_empty());
    ///     Ok::<_, trioxide::process::ProcessError>(())
    /// }).unwrap();
    /// ```
    pub fn capture_stderr(mut self, capture: bool) -> RunProcess {
        self.config().capture_stderr = capture;
        self
    }

    /// How to stop the child when `run_process` is cancelled. `f` gets the
    /// process and runs as a task in a shielded scope, which is cancelled as
    /// soon as the child exits; `run_process` waits for the exit either
    /// way. The default sends `SIGTERM`, sleeps [`TERMINATE_GRACE`], and
    /// sends `SIGKILL`. An error from `f` is reported as
    /// [`ProcessError::Io`].
    ///
    /// ```
    /// use std::process::Command;
    /// use std::time::Duration;
    /// use trioxide::process::run_process;
    /// trioxide::run(async {
    ///     let mut cmd = Command::new("sleep");
    ///     cmd.arg("10");
    ///     // Kill at once instead of asking first.
    ///     let r = trioxide::move_on_after(
    ///         Duration::from_millis(10),
    ///         run_process(cmd).deliver_cancel(|p| async move { p.kill() }),
    ///     ).await;
    ///     assert!(matches!(r, Ok(None))); // cancelled and caught by the scope
    /// });
    /// ```
    pub fn deliver_cancel<F, Fut>(mut self, f: F) -> RunProcess
    where
        F: FnOnce(Rc<Process>) -> Fut + 'static,
        Fut: Future<Output = io::Result<()>> + 'static,
    {
        self.config().deliver_cancel = Some(Box::new(move |p| Box::pin(f(p))));
        self
    }

    fn config(&mut self) -> &mut Config {
        match self.config.as_mut() {
            Some(c) => c,
            None => panic!("run_process configured after it was first polled"),
        }
    }
}

impl Config {
    async fn run(self) -> Result<CompletedProcess, ProcessError> {
        // Like Trio's `await open_process(...)`: a cancelled caller starts
        // no child.
        if Core::current().is_cancelled() {
            return Err(ProcessError::Cancelled);
        }
        let Config { mut cmd, check, input, capture_stdout, capture_stderr, deliver_cancel } = self;
        cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
        if capture_stdout {
            cmd.stdout(Stdio::piped());
        }
        if capture_stderr {
            cmd.stderr(Stdio::piped());
        }
        let mut process = open_process(cmd)?;
        let stdin = process.stdin.take();
        let stdout = process.stdout.take().filter(|_| capture_stdout);
        let stderr = process.stderr.take().filter(|_| capture_stderr);
        let process = Rc::new(process);
        let _reap = KillIfDropped(&process);
        let out = Rc::new(RefCell::new(Vec::new()));
        let err = Rc::new(RefCell::new(Vec::new()));
        let deliver_cancel = deliver_cancel.unwrap_or_else(|| Box::new(|p| Box::pin(terminate_then_kill(p))));

        let outcome = open_nursery(|n| {
            let (process, out, err) = (process.clone(), out.clone(), err.clone());
            async move {
                if let Some(stdin) = stdin {
                    n.start_soon_named("trioxide run_process stdin", feed(stdin, input.unwrap_or_default()))?;
                }
                if let Some(s) = stdout {
                    n.start_soon_named("trioxide run_process stdout", collect(s, out))?;
                }
                if let Some(s) = stderr {
                    n.start_soon_named("trioxide run_process stderr", collect(s, err))?;
                }
                match process.wait().await {
                    Ok(status) => Ok::<_, BoxError>(status),
                    Err(Cancelled) => {
                        stop(&n, &process, deliver_cancel).await?;
                        Err(ProcessError::Cancelled.into())
                    }
                }
            }
        })
        .await;
        let status = match outcome {
            Ok(Some(status)) => status,
            // Only the nursery's own scope could produce this, and nothing
            // cancels it but a failing child, which is an error instead.
            Ok(None) => return Err(ProcessError::Cancelled),
            Err(errors) => return Err(ProcessError::from_multi(errors)),
        };
        let stdout = out.take();
        let stderr = err.take();
        if check && !status.success() {
            return Err(ProcessError::Failed { status, stdout, stderr });
        }
        Ok(CompletedProcess { status, stdout, stderr })
    }
}

impl Future for RunProcess {
    type Output = Result<CompletedProcess, ProcessError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(config) = this.config.take() {
            this.running = Some(Box::pin(config.run()));
        }
        match this.running.as_mut() {
            Some(fut) => fut.as_mut().poll(cx),
            None => panic!("run_process polled after it completed"),
        }
    }
}

/// Stops a child after `run_process` was cancelled: runs `deliver_cancel`
/// as a task and waits for the exit, both shielded; then cancels
/// `deliver_cancel` (Trio's `killer_cscope`).
async fn stop(n: &Nursery, process: &Rc<Process>, deliver_cancel: DeliverCancel) -> Result<(), BoxError> {
    let killing = CancelScope::shielded();
    let fut = deliver_cancel(process.clone());
    let scope = killing.clone();
    n.start_soon_named("trioxide deliver_cancel", async move { scope.run(fut).await.map(drop) })?;
    CancelScope::shielded()
        .run(async {
            // Shielded: this wait cannot report Cancelled, so it ends only
            // when the child has exited and been reaped.
            let reaped = process.wait().await;
            killing.cancel();
            reaped.map(drop)
        })
        .await?;
    Ok(())
}

/// The default `deliver_cancel` (Trio's `_posix_deliver_cancel`).
async fn terminate_then_kill(p: Rc<Process>) -> io::Result<()> {
    p.terminate()?;
    sleep(TERMINATE_GRACE).await?;
    eprintln!(
        "trioxide: process {} ignored SIGTERM for {} s; sending SIGKILL (pass a custom deliver_cancel to change this)",
        p.pid(),
        TERMINATE_GRACE.as_secs()
    );
    p.kill()
}

/// Feeds `input` to the child and closes its stdin.
async fn feed(stdin: PipeSendStream, input: Vec<u8>) -> io::Result<()> {
    match stdin.send_all(&input).await {
        // The child closed its stdin without reading everything: its
        // business (Trio ignores BrokenResourceError here too). This needs
        // SIGPIPE ignored, as every Rust program has it.
        Err(e) if e.raw_os_error() == Some(libc::EPIPE) => Ok(()),
        other => other,
    }
    // `stdin` is dropped here: the child sees end-of-file.
}

/// Reads a pipe to its end into `into`.
async fn collect(from: PipeReceiveStream, into: Rc<RefCell<Vec<u8>>>) -> io::Result<()> {
    let mut buf = Vec::new();
    while from.receive_into(&mut buf).await? > 0 {}
    *into.borrow_mut() = buf;
    Ok(())
}

/// If the `run_process` future is dropped before the child was reaped,
/// kills it (a drop cannot wait; it reaps it if it is already gone).
struct KillIfDropped<'a>(&'a Rc<Process>);

impl Drop for KillIfDropped<'_> {
    fn drop(&mut self) {
        if self.0.try_wait().is_none() {
            let _ = self.0.kill();
            let _ = self.0.try_wait();
        }
    }
}

/// What [`run_process`] returns for a child that ran to completion.
///
/// ```
/// trioxide::run(async {
///     let done = trioxide::process::run_process(std::process::Command::new("true")).await?;
///     assert!(done.status.success() && done.stdout.is_empty() && done.stderr.is_empty());
///     Ok::<_, trioxide::process::ProcessError>(())
/// }).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedProcess {
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output (empty if not captured).
    pub stdout: Vec<u8>,
    /// Its standard error (empty if not captured).
    pub stderr: Vec<u8>,
}

/// Why [`run_process`] did not return a [`CompletedProcess`].
///
/// The `Cancelled` case has [`Cancelled`] as its
/// [`source`](std::error::Error::source), so a cancel scope recognises it
/// as its own cancellation after `?` has boxed it.
///
/// ```
/// use std::process::Command;
/// use trioxide::process::{run_process, ProcessError};
/// trioxide::run(async {
///     let err = run_process(Command::new("no-such-program-xyz")).await.unwrap_err();
///     match err {
///         ProcessError::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
///         other => panic!("{other}"),
///     }
/// });
/// ```
#[derive(Debug)]
pub enum ProcessError {
    /// The caller was cancelled; the child (if started) has been stopped
    /// and reaped.
    Cancelled,
    /// Starting the child or talking to it failed.
    Io(io::Error),
    /// The child exited unsuccessfully and `check` was on.
    Failed {
        /// How it exited.
        status: ExitStatus,
        /// Its standard output (empty if not captured).
        stdout: Vec<u8>,
        /// Its standard error (empty if not captured).
        stderr: Vec<u8>,
    },
}

impl ProcessError {
    /// The nursery's errors: only cancellations means Cancelled; otherwise
    /// the first other error.
    fn from_multi(errors: MultiError) -> ProcessError {
        if errors.is_cancelled() {
            return ProcessError::Cancelled;
        }
        let first = errors.into_errors().into_iter().find(|e| !is_cancelled_error(e.as_ref()));
        match first {
            None => ProcessError::Cancelled,
            Some(e) => match e.downcast::<io::Error>() {
                Ok(io) => ProcessError::Io(*io),
                Err(e) => match e.downcast::<ProcessError>() {
                    Ok(p) => *p,
                    Err(e) => ProcessError::Io(io::Error::other(e.to_string())),
                },
            },
        }
    }
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessError::Cancelled => Cancelled.fmt(f),
            ProcessError::Io(e) => write!(f, "running the process failed: {e}"),
            ProcessError::Failed { status, .. } => write!(f, "the process failed ({status})"),
        }
    }
}

impl std::error::Error for ProcessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProcessError::Cancelled => Some(&Cancelled),
            ProcessError::Io(e) => Some(e),
            ProcessError::Failed { .. } => None,
        }
    }
}

impl From<Cancelled> for ProcessError {
    fn from(_: Cancelled) -> Self {
        ProcessError::Cancelled
    }
}

impl From<io::Error> for ProcessError {
    /// An I/O error carrying [`Cancelled`] becomes `Cancelled`.
    fn from(e: io::Error) -> Self {
        if e.get_ref().is_some_and(|i| is_cancelled_error(i)) {
            ProcessError::Cancelled
        } else {
            ProcessError::Io(e)
        }
    }
}

impl Cancellation for ProcessError {
    fn split_cancelled(self) -> (bool, Option<Self>) {
        match self {
            ProcessError::Cancelled => (true, None),
            other => (false, Some(other)),
        }
    }
}
