//! A WebSocket chat server on trioxide, with async-tungstenite over
//! trioxide's TCP streams (their `futures-io` impls).
//!
//! ```text
//! cargo run -p trioxide-ecosystem --example ws_chat -- --port 9000
//! websocat ws://127.0.0.1:9000/      # in two terminals: type in one, read in the other
//! ```
//! Binds 127.0.0.1 (`--port 0`, the default: any free port) and prints
//! `listening on ws://127.0.0.1:PORT`. Every text message a client sends
//! goes to every other client. Each client has an outbox of 16 messages
//! (a trioxide memory channel); a client that falls that far behind is
//! dropped rather than allowed to hold the others up. Ctrl-C or SIGTERM
//! shuts the server down gracefully: it stops accepting, sends every
//! client a close frame and exits with status 0.
//!
//! The server itself is `chat.rs`, which tests/ws_chat.rs compiles too.

use std::net::{Ipv4Addr, SocketAddr};

use trioxide::signal::open_signal_receiver;
use trioxide::{BoxError, TcpListener};

#[path = "../../../examples/common/args.rs"]
mod args;
mod chat;

const FLAGS: &[args::Flag] =
    &[args::Flag { name: "port", value: "PORT", default: "0", help: "port on 127.0.0.1 (0: any free port)" }];

fn main() {
    let args = args::Args::parse("ws_chat", "A WebSocket chat server on trioxide; Ctrl-C stops it.", FLAGS);
    let port: u16 = args.get("port");
    let result = trioxide::run(async move {
        // Before the address is printed: from then on Ctrl-C is handled.
        let signals = open_signal_receiver(&[libc::SIGINT, libc::SIGTERM])?;
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
        println!("listening on ws://{}", listener.local_addr()?);
        chat::serve(listener, async move {
            if signals.receive().await.is_ok() {
                eprintln!("ws_chat: shutting down");
            }
        })
        .await?;
        Ok::<_, BoxError>(())
    });
    if let Err(e) = result {
        eprintln!("ws_chat: {e}");
        std::process::exit(1);
    }
}
