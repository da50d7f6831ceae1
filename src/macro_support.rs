//! What `#[trioxide::test]` expands to call: not API, may change with
//! trioxide-macros (hidden from the docs).
//!
//! [`run_test`] runs the test's body through a [`Builder`], learns the
//! run's seed on the body's first poll ([`current_seed`]) and, when the
//! test fails (a panic, or an output that [`TestOutcome::is_failure`]),
//! prints [`seed_line`] to stderr before failing as it would have.

use std::cell::Cell;
use std::future::Future;
use std::process::ExitCode;

use crate::kernel::rng::{current_seed, SEED_ENV};
use crate::kernel::run::Builder;

/// What a test function returns: `()`, a `Result`, or an `ExitCode`.
///
/// ```
/// use trioxide::macro_support::TestOutcome;
/// assert!(!().is_failure());
/// assert!(Err::<(), _>("boom").is_failure());
/// assert!(!Ok::<_, ()>(1).is_failure());
/// ```
pub trait TestOutcome {
    /// Whether the test failed (libtest will report it).
    ///
    /// ```
    /// use std::process::ExitCode;
    /// use trioxide::macro_support::TestOutcome;
    /// assert!(ExitCode::FAILURE.is_failure());
    /// assert!(!ExitCode::SUCCESS.is_failure());
    /// ```
    fn is_failure(&self) -> bool;
}

impl TestOutcome for () {
    fn is_failure(&self) -> bool {
        false
    }
}

impl<T, E> TestOutcome for Result<T, E> {
    fn is_failure(&self) -> bool {
        self.is_err()
    }
}

impl TestOutcome for ExitCode {
    fn is_failure(&self) -> bool {
        *self != ExitCode::SUCCESS
    }
}

/// The line a failing test prints: the seed, and how to replay it.
///
/// ```
/// use trioxide::macro_support::seed_line;
/// assert_eq!(seed_line(1234, false), "trioxide: this test ran with seed 1234; re-run with TRIOXIDE_SEED=1234");
/// assert_eq!(seed_line(7, true), "trioxide: this test ran with seed 7 (fixed by its `seed = 7` option)");
/// ```
pub fn seed_line(seed: u64, fixed: bool) -> String {
    if fixed {
        format!("trioxide: this test ran with seed {seed} (fixed by its `seed = {seed}` option)")
    } else {
        format!("trioxide: this test ran with seed {seed}; re-run with {SEED_ENV}={seed}")
    }
}

/// Prints the seed line if the thread unwinds past it (a panicking test).
struct SeedOnPanic<'a> {
    seed: &'a Cell<Option<u64>>,
    fixed: bool,
}

impl Drop for SeedOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(seed) = self.seed.get() {
                eprintln!("{}", seed_line(seed, self.fixed));
            }
        }
    }
}

/// Runs a test's body on `builder`; if it panics or fails, prints
/// [`seed_line`] first (`fixed`: the seed came from the test's `seed`
/// option), then fails the same way (the panic goes on unwinding, the
/// `Err` is returned).
///
/// ```
/// use trioxide::macro_support::run_test;
/// use trioxide::Builder;
/// let out: Result<u8, &str> = run_test(Builder::new().seed(5), true, async { Err("boom") });
/// assert_eq!(out, Err("boom")); // and stderr got the seed line
/// ```
#[track_caller]
pub fn run_test<F>(builder: Builder, fixed: bool, body: F) -> F::Output
where
    F: Future,
    F::Output: TestOutcome,
{
    let seed = Cell::new(None);
    let guard = SeedOnPanic { seed: &seed, fixed };
    let out = builder.run(async {
        seed.set(Some(current_seed()));
        body.await
    });
    if out.is_failure() {
        if let Some(seed) = seed.get() {
            eprintln!("{}", seed_line(seed, fixed));
        }
    }
    drop(guard);
    out
}
