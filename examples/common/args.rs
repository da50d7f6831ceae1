//! Strict command-line parsing shared by the examples (no extra
//! dependency). Each example declares its flags; anything else is an
//! error, so a misspelt flag is never silently ignored.
//!
//! Accepted forms: `--name VALUE`, `--name=VALUE`, and `--name` alone for a
//! switch. `--help` (or `-h`) prints the usage and exits with status 0; a
//! bad command line prints what is wrong and the usage, and exits with
//! status 2, as getopt-style tools do.

// Each example uses the part it needs (the tour has only a switch).
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

/// One flag an example accepts.
pub struct Flag {
    /// `port` for `--port`.
    pub name: &'static str,
    /// What the value is (`PORT`, `SECS`), or `""` for a switch.
    pub value: &'static str,
    /// The value used when the flag is not given (ignored for switches).
    pub default: &'static str,
    /// One line of help.
    pub help: &'static str,
}

/// The parsed command line.
pub struct Args {
    prog: &'static str,
    flags: &'static [Flag],
    given: HashMap<&'static str, String>,
}

impl Args {
    /// Parses `std::env::args()` against `flags`; exits on `--help` or on
    /// an error.
    pub fn parse(prog: &'static str, about: &'static str, flags: &'static [Flag]) -> Args {
        let argv: Vec<String> = std::env::args().skip(1).collect();
        match Args::parse_from(prog, flags, &argv) {
            Ok(Some(args)) => args,
            Ok(None) => {
                println!("{about}\n\n{}", usage(prog, flags));
                std::process::exit(0);
            }
            Err(msg) => {
                eprintln!("{prog}: {msg}\n\n{}", usage(prog, flags));
                std::process::exit(2);
            }
        }
    }

    /// Parses `argv` (without the program name): `Ok(None)` when help was
    /// asked for, `Err` with what is wrong.
    pub fn parse_from(prog: &'static str, flags: &'static [Flag], argv: &[String]) -> Result<Option<Args>, String> {
        let mut given = HashMap::new();
        let mut i = 0;
        while i < argv.len() {
            let arg = &argv[i];
            i += 1;
            if arg == "--help" || arg == "-h" {
                return Ok(None);
            }
            let Some(body) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument `{arg}` (flags start with --)"));
            };
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let Some(flag) = flags.iter().find(|f| f.name == name) else {
                return Err(format!("unknown flag `--{name}`"));
            };
            let value = if flag.value.is_empty() {
                if inline.is_some() {
                    return Err(format!("`--{name}` takes no value"));
                }
                String::new()
            } else if let Some(v) = inline {
                v
            } else if let Some(v) = argv.get(i) {
                i += 1;
                v.clone()
            } else {
                return Err(format!("`--{name}` needs a value ({})", flag.value));
            };
            if given.insert(flag.name, value).is_some() {
                return Err(format!("`--{name}` given twice"));
            }
        }
        Ok(Some(Args { prog, flags, given }))
    }

    /// The value of `--name` (or its default), parsed; exits with a message
    /// naming the flag if it does not parse.
    ///
    /// # Panics
    /// If `name` is not one of the declared flags (a bug in the example).
    pub fn get<T: FromStr>(&self, name: &str) -> T
    where
        T::Err: Display,
    {
        let flag = self.flags.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("undeclared flag --{name}"));
        let raw = self.given.get(name).map(String::as_str).unwrap_or(flag.default);
        match raw.parse() {
            Ok(v) => v,
            Err(e) => {
                eprintln!("{}: `--{name} {raw}`: {e}\n\n{}", self.prog, usage(self.prog, self.flags));
                std::process::exit(2);
            }
        }
    }

    /// Whether the switch `--name` was given.
    pub fn switch(&self, name: &str) -> bool {
        self.given.contains_key(name)
    }
}

fn usage(prog: &str, flags: &[Flag]) -> String {
    let mut out = format!("usage: {prog} [options]\n\noptions:\n");
    for f in flags {
        let left = if f.value.is_empty() { format!("--{}", f.name) } else { format!("--{} {}", f.name, f.value) };
        let default = if f.value.is_empty() { String::new() } else { format!(" (default: {})", f.default) };
        out.push_str(&format!("  {left:<22} {}{default}\n", f.help));
    }
    out.push_str("  --help                 print this help");
    out
}
