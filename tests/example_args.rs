//! The examples' command-line parser (`examples/common/args.rs`): strict,
//! so a misspelt flag is an error rather than silently ignored; and
//! `http_server`'s own flags (`--threads`, `--balance`, `--work-us`), run
//! as a process.

#[path = "../examples/common/args.rs"]
mod args;

use args::{Args, Flag};

const FLAGS: &[Flag] = &[
    Flag { name: "port", value: "PORT", default: "8000", help: "port" },
    Flag { name: "virtual", value: "", default: "", help: "a switch" },
];

fn parse(argv: &[&str]) -> Result<Option<Args>, String> {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    Args::parse_from("prog", FLAGS, &argv)
}

#[test]
fn defaults_apply_when_a_flag_is_absent() {
    let args = parse(&[]).unwrap().unwrap();
    assert_eq!(args.get::<u16>("port"), 8000);
    assert!(!args.switch("virtual"));
}

#[test]
fn both_value_forms_are_accepted() {
    assert_eq!(parse(&["--port", "8123"]).unwrap().unwrap().get::<u16>("port"), 8123);
    assert_eq!(parse(&["--port=8123"]).unwrap().unwrap().get::<u16>("port"), 8123);
    assert!(parse(&["--virtual"]).unwrap().unwrap().switch("virtual"));
}

#[test]
fn help_is_recognised_in_both_spellings() {
    assert!(parse(&["--help"]).unwrap().is_none());
    assert!(parse(&["--port", "1", "-h"]).unwrap().is_none());
}

#[test]
fn misspelt_missing_and_repeated_flags_are_errors() {
    assert_eq!(parse(&["--prot", "1"]).err().unwrap(), "unknown flag `--prot`");
    assert_eq!(parse(&["--port"]).err().unwrap(), "`--port` needs a value (PORT)");
    assert_eq!(parse(&["--port", "1", "--port=2"]).err().unwrap(), "`--port` given twice");
    assert_eq!(parse(&["--virtual=yes"]).err().unwrap(), "`--virtual` takes no value");
    assert_eq!(parse(&["8000"]).err().unwrap(), "unexpected argument `8000` (flags start with --)");
}

/// The `http_server` example of this build profile, built if needed
/// (`cargo test --test example_args` does not build the examples).
fn http_server_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "--quiet", "--example", "http_server"]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    if let Some(target) = profile_dir.parent() {
        build.env("CARGO_TARGET_DIR", target);
    }
    assert!(build.status().expect("run cargo build").success(), "cargo build --example http_server failed");
    profile_dir.join("examples").join("http_server")
}

/// Runs `http_server` with `args`; returns its exit code and stderr.
fn http_server(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(http_server_binary())
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run http_server");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn http_server_refuses_bad_threads_balance_and_work_flags_with_status_2() {
    let (code, _, err) = http_server(&["--threads", "0"]);
    assert_eq!((code, err.as_str()), (Some(2), "http_server: --threads must be at least 1\n"));
    let (code, _, err) = http_server(&["--threads", "two"]);
    assert_eq!(code, Some(2));
    assert!(err.starts_with("http_server: `--threads two`: invalid digit found in string\n"), "{err}");
    let (code, _, err) = http_server(&["--balance", "round-robin"]);
    assert_eq!(code, Some(2));
    assert!(
        err.starts_with(
            "http_server: `--balance round-robin`: unknown balance mode `round-robin` (reuseport or least-loaded)\n"
        ),
        "{err}"
    );
    let (code, _, err) = http_server(&["--work-us", "-5"]);
    assert_eq!(code, Some(2));
    assert!(err.starts_with("http_server: `--work-us -5`: invalid digit found in string\n"), "{err}");
}

#[test]
fn http_server_help_lists_threads_balance_and_work_with_their_defaults() {
    let (code, out, _) = http_server(&["--help"]);
    assert_eq!(code, Some(0));
    for line in [
        "  --threads N            shards (threads) serving the port (default: 1)",
        "  --balance MODE         with --threads > 1: reuseport or least-loaded (default: reuseport)",
        "  --work-us US           CPU to burn per request, in microseconds (default: 0)",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in:\n{out}");
    }
}
