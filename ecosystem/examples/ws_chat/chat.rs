//! The chat server of the `ws_chat` example, also compiled into
//! tests/ws_chat.rs (by `#[path]`), so the test runs this very code.
//!
//! One task per client in the server's nursery; inside it, a nursery of
//! two: the reader (WebSocket messages in, broadcast out) and the writer
//! (the client's outbox out to the WebSocket). Each client's outbox is a
//! trioxide memory channel of `OUTBOX` messages. A broadcast never waits:
//! it `try_send`s into every other outbox, and a client whose outbox is
//! full is too slow and is dropped (its outbox closed, which makes its
//! writer say goodbye and end its connection), so one stalled reader can
//! never block the others.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use async_tungstenite::{WebSocketReceiver, WebSocketSender};
use futures_util::StreamExt;
use trioxide::channel::{MemoryReceiveChannel, MemorySendChannel};
use trioxide::{
    move_on_after, open_memory_channel, open_nursery, BoxError, CancelScope, Nursery, TcpListener, TcpStream,
};

/// Messages a client's outbox holds before the client counts as too slow.
pub const OUTBOX: usize = 16;

/// How long a goodbye (the close frame) may take before the connection is
/// cut anyway.
const GOODBYE: Duration = Duration::from_secs(1);

/// The outboxes of the connected clients, by client number.
#[derive(Default)]
struct Room {
    outboxes: RefCell<HashMap<u64, MemorySendChannel<Rc<str>>>>,
    next_id: Cell<u64>,
    /// Shutting down: a client done with its handshake only now leaves.
    closed: Cell<bool>,
}

impl Room {
    /// Hands `text` to every client but `from`; drops the ones whose outbox
    /// is full (or gone).
    fn broadcast(&self, from: u64, text: &Rc<str>) {
        self.outboxes.borrow_mut().retain(|&id, outbox| {
            if id == from {
                return true;
            }
            match outbox.try_send(text.clone()) {
                Ok(()) => true,
                Err(_) => {
                    eprintln!("ws_chat: client {id} is too slow: dropped");
                    outbox.close();
                    false
                }
            }
        });
    }

    /// Closes every outbox: each writer says goodbye and ends its client.
    fn close_all(&self) {
        self.closed.set(true);
        for (_, outbox) in self.outboxes.borrow_mut().drain() {
            outbox.close();
        }
    }
}

/// Serves chat clients on `listener` until `shutdown` completes, then
/// stops accepting, says goodbye to every client (a close frame, bounded
/// by `GOODBYE`) and returns once all their tasks are done; a client
/// still in its handshake then gets `GOODBYE` more before it is cut.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<(), BoxError> {
    let room = Rc::new(Room::default());
    let accepting = CancelScope::new();
    let (room_ref, accepting_ref) = (&room, &accepting);
    open_nursery(|n| async move {
        let (nursery, room, scope) = (n.clone(), room_ref.clone(), accepting_ref.clone());
        n.start_soon(async move {
            scope.run(accept_loop(listener, nursery, room)).await?;
            Ok::<_, BoxError>(())
        })?;
        shutdown.await;
        accepting_ref.cancel();
        room_ref.close_all();
        n.cancel_scope().set_relative_deadline(GOODBYE * 2);
        Ok::<_, BoxError>(())
    })
    .await?;
    Ok(())
}

async fn accept_loop(listener: TcpListener, n: Nursery, room: Rc<Room>) -> Result<(), BoxError> {
    loop {
        let (stream, _) = listener.accept().await?;
        let id = room.next_id.get();
        room.next_id.set(id + 1);
        let room = room.clone();
        n.start_soon(async move {
            // One client's failure (a bad handshake, a reset) ends only its task.
            if let Err(e) = client(id, stream, &room).await {
                eprintln!("ws_chat: client {id}: {e}");
            }
            room.outboxes.borrow_mut().remove(&id);
        })?;
    }
}

async fn client(id: u64, stream: TcpStream, room: &Rc<Room>) -> Result<(), BoxError> {
    let ws = async_tungstenite::accept_async(stream).await?;
    if room.closed.get() {
        return Ok(());
    }
    let (sender, receiver) = ws.split();
    let (outbox, inbox) = open_memory_channel::<Rc<str>>(OUTBOX);
    room.outboxes.borrow_mut().insert(id, outbox);
    let room = room.clone();
    open_nursery(|n| async move {
        let scope = n.cancel_scope();
        n.start_soon(async move {
            let out = writer(sender, inbox).await;
            scope.cancel(); // the connection is over: stop the reader too
            out
        })?;
        reader(id, receiver, &room).await?;
        // The client left: its writer has nothing more to do.
        n.cancel_scope().cancel();
        Ok::<_, BoxError>(())
    })
    .await?;
    Ok(())
}

/// WebSocket messages in; each text goes to every other client.
async fn reader(id: u64, mut receiver: WebSocketReceiver<TcpStream>, room: &Room) -> Result<(), BoxError> {
    while let Some(msg) = receiver.next().await {
        match msg? {
            Message::Text(text) => room.broadcast(id, &Rc::from(text.as_str())),
            Message::Close(_) => break,
            _ => {} // binary, ping and pong: not chat
        }
    }
    Ok(())
}

/// The outbox out to the client; once the outbox is closed (shutdown, or
/// the client was too slow), a close frame.
async fn writer(mut sender: WebSocketSender<TcpStream>, inbox: MemoryReceiveChannel<Rc<str>>) -> Result<(), BoxError> {
    while let Ok(text) = inbox.receive().await {
        sender.send(Message::text(&*text)).await?;
    }
    move_on_after(GOODBYE, async { sender.close(None).await.map_err(BoxError::from) }).await?;
    Ok(())
}
