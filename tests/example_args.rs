//! The examples' command-line parser (`examples/common/args.rs`): strict,
//! so a misspelt flag is an error rather than silently ignored.

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
