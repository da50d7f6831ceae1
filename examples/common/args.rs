//! Tiny command-line parsing shared by the example servers (no extra
//! dependency): `--name VALUE` pairs.

/// The value after `--name`, parsed, or `default`. Exits with a message on
/// a value that does not parse.
pub fn flag<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    let key = format!("--{name}");
    match args.iter().position(|a| *a == key) {
        None => default,
        Some(i) => match args.get(i + 1).and_then(|v| v.parse().ok()) {
            Some(v) => v,
            None => {
                eprintln!("{key} needs a value");
                std::process::exit(2);
            }
        },
    }
}
