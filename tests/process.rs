//! `trioxide::process`: `run_process` captures exactly, checks the exit,
//! feeds stdin without deadlocking, and on cancellation stops the child with
//! SIGTERM, then SIGKILL after exactly `TERMINATE_GRACE` of virtual time,
//! and reaps it before reporting `Cancelled`; `open_process` gives pipe
//! streams and a `wait` that can be cancelled and called again.
//!
//! Every run is on a `MockClock` with autojump: virtual time passes only
//! after some real quiet (while every task is blocked on a child), and a
//! `HANG_GUARD` deadline turns a hang into a failure.

use std::cell::Cell;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use trioxide::process::{open_process, run_process, PipeReceiveStream, ProcessError, TERMINATE_GRACE};
use trioxide::{
    current_time, fail_after, is_cancelled_error, move_on_after, open_nursery, sleep, wait_all_tasks_blocked, BoxError,
    Builder, CancelScope, Instant, MockClock, TooSlow,
};

/// Virtual-time bound on every run.
const HANG_GUARD: Duration = Duration::from_secs(600);

/// Real quiet before the clock jumps when a test races real children
/// against virtual deadlines: long enough that a child that is about to act
/// (a shell starting, `sleep` dying of SIGTERM) always does so first, even
/// on a loaded machine.
const PATIENT: Duration = Duration::from_secs(2);

/// Real quiet before the clock jumps when no child's timing matters.
const QUICK: Duration = Duration::from_millis(50);

fn run_v<T>(threshold: Duration, seed: u64, main: impl std::future::Future<Output = Result<T, BoxError>>) -> T {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(threshold));
    let (out, report) = Builder::new().seed(seed).clock(clock).run_with_report(fail_after(HANG_GUARD, main));
    assert_eq!(report.tasks_left, 0, "tasks left behind");
    assert_eq!(report.timers_left, 0, "timers left behind");
    match out {
        Ok(v) => v,
        Err(e) if e.is::<TooSlow>() => panic!("the run hung: virtual time reached the {HANG_GUARD:?} guard"),
        Err(e) => panic!("the run failed: {e}"),
    }
}

fn sh(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]);
    cmd
}

/// 1 MiB of a pattern that no short period repeats.
fn megabyte() -> Vec<u8> {
    (0..1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

/// Whether `pid` names no process any more (reaped, not a zombie).
fn is_gone(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Reads the first line (a pid the script echoes) from `from`.
async fn read_pid(from: &PipeReceiveStream) -> Result<i32, BoxError> {
    let mut got = Vec::new();
    while !got.contains(&b'\n') {
        if from.receive_into(&mut got).await? == 0 {
            return Err(format!("the child closed the pipe before a full line: {got:?}").into());
        }
    }
    let line = String::from_utf8(got)?;
    Ok(line.trim().parse()?)
}

// ---------------------------------------------------------------- run_process

#[test]
fn run_process_captures_stdout_and_stderr_exactly() {
    let done =
        run_v(QUICK, 1, async { Ok(run_process(sh("printf out; printf 'e\\0r\\nr' >&2; printf ' more'")).await?) });
    assert_eq!(done.status.code(), Some(0));
    assert_eq!(done.stdout, b"out more");
    assert_eq!(done.stderr, b"e\0r\nr");
}

#[test]
fn run_process_with_check_reports_failure_with_status_and_output() {
    let err = run_v(QUICK, 1, async {
        Ok(run_process(sh("printf o; printf e >&2; exit 3")).await.expect_err("exit 3 passed the check"))
    });
    match err {
        ProcessError::Failed { status, stdout, stderr } => {
            assert_eq!(status.code(), Some(3));
            assert_eq!(stdout, b"o");
            assert_eq!(stderr, b"e");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    // Death by a signal fails the check too.
    let err = run_v(QUICK, 1, async { Ok(run_process(sh("kill -9 $$")).await.expect_err("killed passed the check")) });
    match err {
        ProcessError::Failed { status, .. } => assert_eq!(status.signal(), Some(libc::SIGKILL)),
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[test]
fn run_process_without_check_returns_the_failed_status() {
    let done = run_v(QUICK, 1, async { Ok(run_process(sh("printf x; exit 42")).check(false).await?) });
    assert_eq!(done.status.code(), Some(42));
    assert_eq!(done.stdout, b"x");
    assert!(done.stderr.is_empty());
}

#[test]
fn run_process_feeds_stdin_and_otherwise_gives_dev_null() {
    let (fed, none) = run_v(QUICK, 1, async {
        let fed = run_process(Command::new("cat")).stdin(b"line 1\nline 2".to_vec()).await?;
        // Without input, stdin is /dev/null: cat sees EOF at once (an
        // inherited stdin would leave it waiting on the terminal).
        let none = run_process(Command::new("cat")).await?;
        Ok((fed, none))
    });
    assert_eq!(fed.stdout, b"line 1\nline 2");
    assert_eq!(none.stdout, b"");
    assert!(none.status.success());
}

#[test]
fn run_process_round_trips_one_megabyte_through_cat_without_deadlock() {
    let data = megabyte();
    let want = data.clone();
    let done = run_v(PATIENT, 1, async move {
        // 16 times a pipe's capacity in each direction: feeding all of it
        // before reading any would deadlock against cat.
        Ok(run_process(Command::new("cat")).stdin(data).await?)
    });
    assert_eq!(done.stdout.len(), want.len());
    assert!(done.stdout == want, "the data came back changed");
}

#[test]
fn run_process_input_the_child_does_not_read_is_not_an_error() {
    let done = run_v(QUICK, 1, async { Ok(run_process(sh("exit 0")).stdin(megabyte()).await?) });
    assert!(done.status.success());
}

#[test]
fn run_process_cancelled_child_that_obeys_sigterm_is_reaped_without_the_grace_wait() {
    run_v(PATIENT, 1, async {
        let (reader, writer) = io::pipe()?;
        let reader = PipeReceiveStream::new(reader.into())?;
        let mut cmd = sh("echo $$ >&2; exec sleep 1000");
        cmd.stderr(Stdio::from(writer));
        let scope = CancelScope::new();
        let pid = Rc::new(Cell::new(0));
        let cancelled_at = Rc::new(Cell::new(Instant::ZERO));
        let (scope2, pid2, at2) = (scope.clone(), pid.clone(), cancelled_at.clone());
        open_nursery(|n| async move {
            n.start_soon(async move {
                pid2.set(read_pid(&reader).await?);
                at2.set(current_time());
                scope2.cancel();
                Ok::<_, BoxError>(())
            })?;
            let out = scope.run(run_process(cmd).capture_stderr(false)).await;
            assert!(matches!(out, Ok(None)), "{out:?}");
            Ok::<_, BoxError>(())
        })
        .await?;
        assert_eq!(current_time().saturating_duration_since(cancelled_at.get()), Duration::ZERO);
        assert!(is_gone(pid.get()), "the child {} was not reaped", pid.get());
        Ok(())
    });
}

#[test]
fn run_process_cancelled_child_that_ignores_sigterm_is_killed_after_exactly_the_grace_period() {
    assert_eq!(TERMINATE_GRACE, Duration::from_secs(5));
    run_v(PATIENT, 1, async {
        let (reader, writer) = io::pipe()?;
        let reader = PipeReceiveStream::new(reader.into())?;
        // SIG_IGN survives exec, so `sleep` ignores SIGTERM too. The pid
        // is written after the trap is set: then it is safe to cancel.
        let mut cmd = sh("trap '' TERM; echo $$ >&2; exec sleep 1000");
        cmd.stderr(Stdio::from(writer));
        let scope = CancelScope::new();
        let pid = Rc::new(Cell::new(0));
        let cancelled_at = Rc::new(Cell::new(Instant::ZERO));
        let (scope2, pid2, at2) = (scope.clone(), pid.clone(), cancelled_at.clone());
        open_nursery(|n| async move {
            n.start_soon(async move {
                pid2.set(read_pid(&reader).await?);
                at2.set(current_time());
                scope2.cancel();
                Ok::<_, BoxError>(())
            })?;
            let out = scope.run(run_process(cmd).capture_stderr(false)).await;
            assert!(matches!(out, Ok(None)), "{out:?}");
            Ok::<_, BoxError>(())
        })
        .await?;
        assert_eq!(current_time().saturating_duration_since(cancelled_at.get()), TERMINATE_GRACE);
        assert!(is_gone(pid.get()), "the child {} was not reaped", pid.get());
        Ok(())
    });
}

#[test]
fn run_process_uses_a_custom_deliver_cancel_and_is_cancelled_by_a_deadline() {
    run_v(PATIENT, 1, async {
        let used = Rc::new(Cell::new(false));
        let used2 = used.clone();
        let t = current_time();
        let out = move_on_after(
            Duration::from_secs(3),
            run_process(sh("trap '' TERM; exec sleep 1000")).deliver_cancel(move |p| async move {
                used2.set(true);
                p.kill()
            }),
        )
        .await;
        assert!(matches!(out, Ok(None)), "{out:?}");
        assert!(used.get());
        // SIGKILL at once: no grace period.
        assert_eq!(current_time().saturating_duration_since(t), Duration::from_secs(3));
        Ok(())
    });
}

#[test]
fn run_process_in_a_cancelled_scope_starts_no_child() {
    let dir = std::env::temp_dir().join(format!("trioxide-never-{}", std::process::id()));
    let marker = dir.to_string_lossy().into_owned();
    run_v(QUICK, 1, async move {
        let scope = CancelScope::new();
        scope.cancel();
        let out = scope.run(run_process(sh(&format!("touch '{marker}'")))).await;
        assert!(matches!(out, Ok(None)), "{out:?}");
        Ok(())
    });
    assert!(!dir.exists(), "the child ran");
}

#[test]
fn process_error_cancelled_counts_as_cancellation_and_the_others_do_not() {
    assert!(is_cancelled_error(&ProcessError::Cancelled));
    let boxed: BoxError = Box::new(ProcessError::Cancelled);
    assert!(is_cancelled_error(boxed.as_ref()));
    assert!(!is_cancelled_error(&ProcessError::Io(io::Error::other("x"))));
    let err: ProcessError = io::Error::from(trioxide::Cancelled).into();
    assert!(matches!(err, ProcessError::Cancelled));
}

#[test]
fn a_missing_program_is_an_io_not_found_error() {
    run_v(QUICK, 1, async {
        let err = open_process(Command::new("/nonexistent/trioxide-no-such-program")).expect_err("spawned");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        match run_process(Command::new("trioxide-no-such-program-xyz")).await {
            Err(ProcessError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            other => panic!("expected Io(NotFound), got {other:?}"),
        }
        Ok(())
    });
}

// ---------------------------------------------------------------- open_process

#[test]
fn open_process_pipes_round_trip_through_cat() {
    let data: Vec<u8> = megabyte()[..200 * 1024].to_vec();
    let want = data.clone();
    let got = run_v(PATIENT, 1, async move {
        let mut cmd = Command::new("cat");
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut p = open_process(cmd)?;
        let stdin = p.stdin.take().expect("stdin piped");
        let stdout = p.stdout.take().expect("stdout piped");
        let stderr = p.stderr.take().expect("stderr piped");
        let got = open_nursery(|n| async move {
            n.start_soon(async move {
                stdin.send_all(&data).await?;
                drop(stdin); // EOF for cat
                Ok::<_, io::Error>(())
            })?;
            let mut got = Vec::new();
            let mut buf = vec![0u8; 10_000];
            loop {
                let k = stdout.receive_some(&mut buf).await?;
                if k == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..k]);
            }
            let mut err = Vec::new();
            while stderr.receive_into(&mut err).await? > 0 {}
            assert!(err.is_empty());
            Ok::<_, BoxError>(got)
        })
        .await?
        .expect("not cancelled");
        assert_eq!(p.wait().await?.code(), Some(0));
        Ok(got)
    });
    assert!(got == want, "cat returned {} bytes, not the {} sent", got.len(), want.len());
}

#[test]
fn a_cancelled_wait_leaves_the_process_waitable_again() {
    run_v(QUICK, 1, async {
        let mut cmd = sh("read x; exit 7");
        cmd.stdin(Stdio::piped());
        let mut p = open_process(cmd)?;
        let t = current_time();
        assert_eq!(move_on_after(Duration::from_secs(1), p.wait()).await?, None);
        assert_eq!(current_time().saturating_duration_since(t), Duration::from_secs(1));
        assert_eq!(p.try_wait(), None);
        // A wait in a cancelled scope is a checkpoint: Cancelled, nothing else.
        let scope = CancelScope::new();
        scope.cancel();
        assert_eq!(scope.run(p.wait()).await, Ok(None));
        drop(p.stdin.take()); // EOF: `read` fails and the shell exits 7
        assert_eq!(p.wait().await?.code(), Some(7));
        // Waiting again returns the same status at once.
        assert_eq!(p.wait().await?.code(), Some(7));
        Ok(())
    });
}

#[test]
fn several_tasks_wait_at_once_and_one_cancelled_watcher_hands_over() {
    // Which of the two waiters watches the exit depends on the scheduling
    // order; both orders occur over these seeds.
    for seed in 0..6 {
        run_v(QUICK, seed, async {
            let mut cmd = sh("read x; exit 4");
            cmd.stdin(Stdio::piped());
            let mut p = open_process(cmd)?;
            let stdin = p.stdin.take();
            let p = Rc::new(p);
            let got = Rc::new(Cell::new(None));
            open_nursery(|n| {
                let (p, got) = (p.clone(), got.clone());
                async move {
                    let (pa, pb, got_b) = (p.clone(), p.clone(), got.clone());
                    n.start_soon(async move {
                        let r = move_on_after(Duration::from_secs(1), pa.wait()).await?;
                        assert_eq!(r, None);
                        Ok::<_, BoxError>(())
                    })?;
                    n.start_soon(async move {
                        got_b.set(Some(pb.wait().await?));
                        Ok::<_, BoxError>(())
                    })?;
                    sleep(Duration::from_secs(2)).await?;
                    wait_all_tasks_blocked().await?;
                    assert_eq!(got.get(), None);
                    drop(stdin); // the shell exits 4
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            assert_eq!(got.get().and_then(|s| s.code()), Some(4));
            Ok(())
        });
    }
}

/// The pipe inodes (`pipe:[N]`) our process holds an fd to.
fn pipe_inodes_of(fds: &[i32]) -> Vec<String> {
    fds.iter()
        .filter_map(|fd| std::fs::read_link(format!("/proc/self/fd/{fd}")).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

fn all_open_fd_targets() -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn dropping_a_process_closes_its_pipes_and_does_not_kill_the_child() {
    use std::os::fd::AsRawFd;
    let (pid, pipes) = run_v(QUICK, 1, async {
        let mut cmd = sh("exec sleep 1000");
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let p = open_process(cmd)?;
        let fds = [
            p.stdin.as_ref().map(|s| s.as_raw_fd()),
            p.stdout.as_ref().map(|s| s.as_raw_fd()),
            p.stderr.as_ref().map(|s| s.as_raw_fd()),
        ];
        let pipes = pipe_inodes_of(&fds.iter().flatten().copied().collect::<Vec<_>>());
        assert_eq!(pipes.len(), 3);
        assert!(pipes.iter().all(|t| t.starts_with("pipe:")), "{pipes:?}");
        let pid = p.pid() as i32;
        drop(p);
        Ok((pid, pipes))
    });
    // The child still runs (dropping does not kill, as with std).
    // SAFETY: kill with signal 0 only checks that the process exists.
    assert_eq!(unsafe { libc::kill(pid, 0) }, 0, "dropping the Process killed the child");
    // None of its pipes is open in this process any more. (Other tests'
    // pipes have other inodes.)
    let open = all_open_fd_targets();
    for p in &pipes {
        assert!(!open.contains(p), "{p} is still open");
    }
    // Clean up: kill and reap it with std, which knows nothing of it.
    // SAFETY: `pid` is our unreaped child; SIGKILL then waitpid reaps it.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}
