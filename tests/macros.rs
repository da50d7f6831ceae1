//! `#[trioxide::main]` and `#[trioxide::test]` (feature `macros`).

use std::cell::RefCell;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use trioxide::{checkpoint, current_seed, current_time, open_nursery, sleep, BoxError, Builder, Instant, SEED_ENV};

/// The order in which two tasks, each taking 8 checkpoints, interleave.
async fn interleaving() -> Result<Vec<u8>, BoxError> {
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    open_nursery(|n| async move {
        for who in [b'a', b'b'] {
            let l = l.clone();
            n.start_soon(async move {
                for _ in 0..8 {
                    l.borrow_mut().push(who);
                    checkpoint().await?;
                }
                Ok::<_, BoxError>(())
            })?;
        }
        Ok::<_, BoxError>(())
    })
    .await?;
    let v = log.borrow().clone();
    Ok(v)
}

/// The interleaving under `seed`, by the hand-written Builder call, on a
/// thread of its own (so it can be asked from inside a run).
fn hand_written_interleaving(seed: u64) -> Vec<u8> {
    std::thread::spawn(move || Builder::new().seed(seed).run(interleaving()).map_err(|e| e.to_string()))
        .join()
        .expect("the hand-written run panicked")
        .expect("the hand-written run failed")
}

#[trioxide::test(seed = 7)]
async fn test_seed_option_gives_the_interleaving_of_builder_seed() -> Result<(), BoxError> {
    assert_eq!(current_seed(), 7);
    let got = interleaving().await?;
    assert_eq!(got, hand_written_interleaving(7));
    // The seed matters: another one interleaves differently, so the
    // equality above is the seed's doing.
    assert_ne!(got, hand_written_interleaving(8));
    Ok(())
}

#[trioxide::main(seed = 7)]
async fn main_with_seed_7() -> Result<Vec<u8>, BoxError> {
    assert_eq!(current_seed(), 7);
    interleaving().await
}

#[test]
fn main_seed_option_gives_the_interleaving_of_builder_seed() {
    assert_eq!(main_with_seed_7().unwrap(), Builder::new().seed(7).run(interleaving()).unwrap());
}

/// `?` in the body: the async block's output is inferred from the
/// function's return type.
#[trioxide::main]
async fn main_with_question_mark() -> Result<u32, BoxError> {
    sleep(Duration::ZERO).await?;
    let n: u32 = "41".parse()?;
    Ok(n + 1)
}

#[test]
fn main_returns_the_body_output_and_question_mark_converts_errors() {
    assert_eq!(main_with_question_mark().unwrap(), 42);
}

#[trioxide::main]
async fn main_returning_an_error() -> Result<(), BoxError> {
    let _: u32 = "not a number".parse()?;
    Ok(())
}

#[test]
fn main_returns_the_body_error() {
    assert_eq!(main_returning_an_error().unwrap_err().to_string(), "invalid digit found in string");
}

#[trioxide::test(clock = autojump)]
async fn autojump_clock_makes_an_hour_long_sleep_end_at_once() -> Result<(), BoxError> {
    let real = std::time::Instant::now();
    assert_eq!(current_time(), Instant::ZERO);
    sleep(Duration::from_secs(3600)).await?;
    assert_eq!(current_time(), Instant::ZERO + Duration::from_secs(3600));
    assert!(real.elapsed() < Duration::from_secs(60), "took {:?} of real time", real.elapsed());
    Ok(())
}

#[trioxide::test(clock = mock)]
async fn mock_clock_stands_still_without_autojump() {
    assert_eq!(current_time(), Instant::ZERO);
    std::thread::sleep(Duration::from_millis(5)); // real time passes...
    checkpoint().await.unwrap();
    assert_eq!(current_time(), Instant::ZERO); // ...virtual time does not
}

#[trioxide::test]
async fn unit_test_body_runs_inside_a_run() {
    // Outside a run current_seed panics; here it is the run's seed.
    let seed = current_seed();
    checkpoint().await.unwrap();
    assert_eq!(current_seed(), seed);
}

#[trioxide::test]
async fn result_test_passes_with_ok_and_its_question_marks() -> Result<(), BoxError> {
    let n: u8 = "200".parse()?;
    sleep(Duration::ZERO).await?;
    assert_eq!(n, 200);
    Ok(())
}

// Tests that fail on purpose, only when the driver tests below run this
// binary again with FAIL_ON_PURPOSE set (otherwise they pass).
const FAIL_ON_PURPOSE: &str = "TRIOXIDE_MACROS_FAIL_ON_PURPOSE";

fn failing_on_purpose() -> bool {
    std::env::var_os(FAIL_ON_PURPOSE).is_some()
}

#[trioxide::test]
async fn selftest_panics() {
    checkpoint().await.unwrap();
    if failing_on_purpose() {
        panic!("deliberate panic");
    }
}

#[trioxide::test]
async fn selftest_returns_err() -> Result<(), String> {
    checkpoint().await.map_err(|e| e.to_string())?;
    if failing_on_purpose() {
        return Err("deliberate error".into());
    }
    Ok(())
}

#[trioxide::test(seed = 9)]
async fn selftest_fixed_seed_panics() {
    if failing_on_purpose() {
        panic!("deliberate panic");
    }
}

#[trioxide::test]
async fn selftest_passes() {
    checkpoint().await.unwrap();
}

/// Runs one test of this binary with TRIOXIDE_SEED=1234 and the failures
/// on: (passed, stdout + stderr).
fn run_selftest(name: &str) -> (bool, String) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args(["--exact", name, "--test-threads=1"])
        .env(SEED_ENV, "1234")
        .env(FAIL_ON_PURPOSE, "1")
        .output()
        .expect("running the test binary again");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("running 1 test"), "{name} did not run:\n{text}");
    (out.status.success(), text)
}

const SEED_LINE_1234: &str = "trioxide: this test ran with seed 1234; re-run with TRIOXIDE_SEED=1234";

#[test]
fn a_panicking_test_prints_its_seed_after_the_panic_and_still_fails() {
    let (passed, out) = run_selftest("selftest_panics");
    assert!(!passed, "{out}");
    assert_eq!(out.matches(SEED_LINE_1234).count(), 1, "{out}");
    let panic_at = out.find("deliberate panic").expect("the panic message");
    assert!(panic_at < out.find(SEED_LINE_1234).unwrap(), "{out}");
    assert!(out.contains("test selftest_panics ... FAILED"), "{out}");
}

#[test]
fn an_err_test_prints_its_seed_then_fails_with_its_error() {
    let (passed, out) = run_selftest("selftest_returns_err");
    assert!(!passed, "{out}");
    assert_eq!(out.matches(SEED_LINE_1234).count(), 1, "{out}");
    let error_at = out.find("Error: \"deliberate error\"").expect("libtest's report of the Err");
    assert!(out.find(SEED_LINE_1234).unwrap() < error_at, "{out}");
    assert!(out.contains("test selftest_returns_err ... FAILED"), "{out}");
}

#[test]
fn a_fixed_seed_test_names_its_seed_option_not_the_environment() {
    let (passed, out) = run_selftest("selftest_fixed_seed_panics");
    assert!(!passed, "{out}");
    assert_eq!(out.matches("trioxide: this test ran with seed 9 (fixed by its `seed = 9` option)").count(), 1, "{out}");
    assert!(!out.contains("1234"), "{out}");
}

#[test]
fn a_passing_test_prints_no_seed() {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args(["--exact", "selftest_passes", "--nocapture"])
        .env(SEED_ENV, "1234")
        .env(FAIL_ON_PURPOSE, "1")
        .output()
        .expect("running the test binary again");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("test selftest_passes ... ok"), "{text}");
    assert!(!text.contains("trioxide:"), "{text}");
}
