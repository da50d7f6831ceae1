//! The cross-shard channel under loom: plain threads with `send_blocking`
//! and `receive_blocking` (the async `send` and `receive` are checkpoints of
//! a trioxide run, which loom cannot drive), for a rendezvous, a buffer of
//! one, and an unbounded channel (whose receives move the buffer into a
//! shared batch under a second lock: `Shared::batch`). A lost wake-up leaves a thread parked forever, which loom
//! reports as a deadlock; a value lost, doubled or reordered fails the
//! assertions.

use loom::thread;

use super::{open_shard_channel, ShardReceiveChannel};
use crate::channel::{ReceiveError, SendErrorKind, UNBOUNDED};
use crate::kernel::sync_shim::{check_model, BOUNDED};

/// Receives until the end of the channel.
fn drain(rx: &ShardReceiveChannel<u32>) -> Vec<u32> {
    let mut got = Vec::new();
    loop {
        match rx.receive_blocking() {
            Ok(v) => got.push(v),
            Err(ReceiveError::EndOfChannel) => return got,
            Err(e) => panic!("receive failed: {e:?}"),
        }
    }
}

/// One sender thread sends 1 and 2 then drops its handle; the receiver gets
/// both, in order, then `EndOfChannel`.
fn one_sender(capacity: usize) {
    let (tx, rx) = open_shard_channel::<u32>(capacity);
    let sender = thread::spawn(move || {
        tx.send_blocking(1).expect("send 1");
        tx.send_blocking(2).expect("send 2");
    });
    assert_eq!(drain(&rx), [1, 2]);
    sender.join().expect("the sender panicked");
}

#[test]
fn loom_rendezvous_one_sender() {
    check_model("channel cap 0, 1 sender x 2 values", None, || one_sender(0));
}

#[test]
fn loom_buffer_of_one_one_sender() {
    check_model("channel cap 1, 1 sender x 2 values", None, || one_sender(1));
}

#[test]
fn loom_unbounded_one_sender() {
    check_model("channel unbounded, 1 sender x 2 values", None, || one_sender(UNBOUNDED));
}

/// Two sender threads (clones) send two values each; the receiver gets all
/// four exactly once, each sender's in its order, then `EndOfChannel` once
/// both handles are dropped.
fn two_senders(capacity: usize) {
    let (tx, rx) = open_shard_channel::<u32>(capacity);
    let tx2 = tx.clone();
    let a = thread::spawn(move || {
        tx.send_blocking(10).expect("send 10");
        tx.send_blocking(11).expect("send 11");
    });
    let b = thread::spawn(move || {
        tx2.send_blocking(20).expect("send 20");
        tx2.send_blocking(21).expect("send 21");
    });
    let got = drain(&rx);
    let from = |base: u32| got.iter().copied().filter(|v| v / 10 == base / 10).collect::<Vec<_>>();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(from(10), [10, 11], "{got:?}");
    assert_eq!(from(20), [20, 21], "{got:?}");
    a.join().expect("sender a panicked");
    b.join().expect("sender b panicked");
}

#[test]
fn loom_rendezvous_two_senders() {
    check_model("channel cap 0, 2 senders x 2 values", BOUNDED, || two_senders(0));
}

#[test]
fn loom_buffer_of_one_two_senders() {
    check_model("channel cap 1, 2 senders x 2 values", BOUNDED, || two_senders(1));
}

#[test]
fn loom_unbounded_two_senders() {
    check_model("channel unbounded, 2 senders x 2 values", BOUNDED, || two_senders(UNBOUNDED));
}

/// One sender sends 1, 2 and 3 then drops its handle; two receiver threads
/// (clones) receive until the end: every value reaches exactly one of them,
/// each sees its share in order, and both see `EndOfChannel`.
fn two_receivers(capacity: usize) {
    let (tx, rx) = open_shard_channel::<u32>(capacity);
    let rx2 = rx.clone();
    let other = thread::spawn(move || drain(&rx2));
    for v in 1..=3 {
        tx.send_blocking(v).expect("send");
    }
    drop(tx);
    let mine = drain(&rx);
    let theirs = other.join().expect("the other receiver panicked");
    for share in [&mine, &theirs] {
        assert!(share.windows(2).all(|w| w[0] < w[1]), "out of order: {mine:?} {theirs:?}");
    }
    let mut all = [mine, theirs].concat();
    all.sort_unstable();
    assert_eq!(all, [1, 2, 3]);
}

#[test]
fn loom_rendezvous_two_receivers() {
    check_model("channel cap 0, 1 sender x 3 values, 2 receivers", None, || two_receivers(0));
}

#[test]
fn loom_buffer_of_one_two_receivers() {
    check_model("channel cap 1, 1 sender x 3 values, 2 receivers", None, || two_receivers(1));
}

#[test]
fn loom_unbounded_two_receivers() {
    check_model("channel unbounded, 1 sender x 3 values, 2 receivers", None, || two_receivers(UNBOUNDED));
}

/// The receiver takes one value and drops its handle while the sender
/// sends a second: the second send either was taken or buffered before the
/// drop (`Ok`), or fails `Broken` and gives the value back; never both,
/// never a hang.
fn receiver_leaves(capacity: usize) {
    let (tx, rx) = open_shard_channel::<u32>(capacity);
    let sender = thread::spawn(move || {
        tx.send_blocking(1).expect("send 1");
        tx.send_blocking(2)
    });
    assert_eq!(rx.receive_blocking(), Ok(1));
    drop(rx);
    match sender.join().expect("the sender panicked") {
        Ok(()) => assert!(capacity > 0, "a rendezvous send succeeded with nobody receiving"),
        Err(e) => {
            assert_eq!(e.kind(), SendErrorKind::Broken);
            assert_eq!(e.into_inner(), 2);
        }
    }
}

#[test]
fn loom_rendezvous_receiver_leaves() {
    check_model("channel cap 0, receiver drops mid-stream", None, || receiver_leaves(0));
}

#[test]
fn loom_buffer_of_one_receiver_leaves() {
    check_model("channel cap 1, receiver drops mid-stream", None, || receiver_leaves(1));
}

#[test]
fn loom_unbounded_receiver_leaves() {
    check_model("channel unbounded, receiver drops mid-stream", None, || receiver_leaves(UNBOUNDED));
}

/// A receiver blocked on an empty channel is woken by `close` on another
/// thread and sees `EndOfChannel`, whatever the order.
#[test]
fn loom_close_wakes_blocked_receiver() {
    check_model("channel cap 0, close wakes the receiver", None, || {
        let (tx, rx) = open_shard_channel::<u32>(0);
        let closer = thread::spawn(move || tx.close());
        assert_eq!(rx.receive_blocking(), Err(ReceiveError::EndOfChannel));
        closer.join().expect("the closer panicked");
    });
}
