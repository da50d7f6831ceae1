//! The `ws_chat` example's server (examples/ws_chat/chat.rs, compiled in
//! here) with real WebSocket clients over trioxide TCP: a message reaches
//! every other client and not its sender, a client that stops reading is
//! dropped without holding up the others, and shutdown sends every client
//! a close frame.
//!
//! On `io_support`'s mock clock (autojump after 50 ms of real quiet, so
//! the server's goodbye bounds cost no real time) inside its hang guard.

#[path = "../../tests/io_support/mod.rs"]
mod io_support;

#[path = "../examples/ws_chat/chat.rs"]
mod chat;

use std::net::SocketAddr;
use std::rc::Rc;

use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use futures_util::StreamExt;
use io_support::*;
use trioxide::{open_nursery, wait_all_tasks_blocked, BoxError, Event, TcpListener, TcpStream};

type Client = WebSocketStream<TcpStream>;

async fn connect(addr: SocketAddr) -> Result<Client, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    let (ws, _) = async_tungstenite::client_async(format!("ws://{addr}/"), stream).await?;
    Ok(ws)
}

async fn next_text(ws: &mut Client) -> Result<String, BoxError> {
    match ws.next().await.expect("a message")? {
        Message::Text(t) => Ok(t.as_str().to_owned()),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Starts the chat server on a fresh port, runs `body` with its address,
/// then shuts the server down and checks that it returned cleanly.
async fn with_server<F, Fut>(body: F) -> Result<(), BoxError>
where
    F: FnOnce(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Result<(), BoxError>>,
{
    let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    let addr = listener.local_addr()?;
    let stop = Rc::new(Event::new());
    let stop_ref = &stop;
    open_nursery(|n| async move {
        let s = stop_ref.clone();
        n.start_soon(chat::serve(listener, async move {
            let _ = s.wait().await;
        }))?;
        body(addr).await?;
        stop_ref.set();
        Ok::<_, BoxError>(())
    })
    .await?;
    Ok(())
}

#[test]
fn a_message_reaches_every_other_client_and_not_its_sender() {
    run_io(1, async {
        with_server(|addr| async move {
            let mut a = connect(addr).await?;
            let mut b = connect(addr).await?;
            let mut c = connect(addr).await?;
            wait_all_tasks_blocked().await?; // all three are in the room
            a.send(Message::text("hello from a")).await?;
            assert_eq!(next_text(&mut b).await?, "hello from a");
            assert_eq!(next_text(&mut c).await?, "hello from a");
            b.send(Message::text("hi from b")).await?;
            // a's next message is b's: it never got its own.
            assert_eq!(next_text(&mut a).await?, "hi from b");
            assert_eq!(next_text(&mut c).await?, "hi from b");
            // Binary messages are not chat: nobody gets them.
            c.send(Message::binary(vec![1u8, 2, 3])).await?;
            c.send(Message::text("text from c")).await?;
            assert_eq!(next_text(&mut a).await?, "text from c");
            assert_eq!(next_text(&mut b).await?, "text from c");
            Ok(())
        })
        .await
    });
}

#[test]
fn shutdown_sends_every_client_a_close_frame() {
    run_io(1, async {
        let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
        let addr = listener.local_addr()?;
        let stop = Rc::new(Event::new());
        let stop_ref = &stop;
        open_nursery(|n| async move {
            let s = stop_ref.clone();
            n.start_soon(chat::serve(listener, async move {
                let _ = s.wait().await;
            }))?;
            let mut a = connect(addr).await?;
            let mut b = connect(addr).await?;
            wait_all_tasks_blocked().await?;
            stop_ref.set();
            for ws in [&mut a, &mut b] {
                let msg = ws.next().await.expect("the goodbye")?;
                assert!(msg.is_close(), "a close frame, got {msg:?}");
                // tungstenite answers it; then the stream ends.
                assert!(ws.next().await.is_none());
            }
            Ok::<_, BoxError>(())
        })
        .await?;
        // The server task ended (the nursery is done) and no connection lingers.
        Ok(())
    });
}

#[test]
fn a_client_that_stops_reading_is_dropped_and_the_others_get_every_message() {
    run_io(1, async {
        with_server(|addr| async move {
            let mut talker = connect(addr).await?;
            let mut listener = connect(addr).await?;
            let mut stalled = connect(addr).await?; // never reads until the end
            wait_all_tasks_blocked().await?;
            // Big messages, so that the stalled client's socket buffers
            // fill and its outbox then overflows.
            let big = "x".repeat(256 * 1024);
            let n = 64; // 16 MiB: more than loopback buffers hold
            let l = &mut listener;
            for i in 0..n {
                talker.send(Message::text(format!("{i} {big}"))).await?;
                // The active listener gets every message, in order.
                let got = next_text(l).await?;
                assert!(got.starts_with(&format!("{i} ")), "message {i} in order");
                assert_eq!(got.len(), big.len() + format!("{i} ").len());
            }
            // The stalled client was dropped: reading now, it finds fewer
            // than n messages, then a close frame (or the cut connection).
            let mut seen = 0;
            loop {
                match stalled.next().await {
                    Some(Ok(Message::Text(_))) => seen += 1,
                    Some(Ok(m)) => {
                        assert!(m.is_close(), "{m:?}");
                        break;
                    }
                    Some(Err(_)) | None => break,
                }
            }
            assert!(seen < n, "the stalled client was dropped after {seen} of {n} messages");
            Ok(())
        })
        .await
    });
}
