//! trioxide with the ecosystem: this crate holds no code, only the tests
//! (`ecosystem/tests/`) and examples (`ecosystem/examples/`) of trioxide's
//! integrations, hyper, rustls, futures-io and WebSocket, with their
//! dependencies. It is a crate of its own because every dev-dependency of
//! a package is built for each of its examples: kept in trioxide's own
//! `Cargo.toml`, rcgen, ring, futures-util and async-tungstenite would be
//! compiled by `cargo run --example http_server`, the README's main job.
//!
//! ```sh
//! cargo test -p trioxide-ecosystem                                  # these tests alone
//! cargo run --release -p trioxide-ecosystem --example hyper_server  # HTTP/1 + HTTP/2 on one port
//! cargo run --release -p trioxide-ecosystem --example ws_chat       # a WebSocket chat
//! ```
