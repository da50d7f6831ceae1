//! The trait impls that every one-way in-memory stream (memory, lockstep)
//! needs, written once. Each half keeps its operations as inherent methods,
//! so they work without importing a trait; the impls forward to those, and
//! dropping a half closes it, as dropping a socket does.

/// Implements `Drop` (their inherent `close_on_drop`), `Resource`, `SendStream` for the sending
/// half `$send` and `Drop`, `Resource`, `ReceiveStream` for the receiving
/// half `$receive`, forwarding to their inherent `close`, `send_all`,
/// `wait_send_all_might_not_block` and `receive_some`; and `SendEof` for
/// the sending half, from its `close` and the sending [`Direction`] of the
/// state both halves share (the field `$shared`, which has a `send`).
///
/// [`Direction`]: super::direction::Direction
macro_rules! one_way_halves {
    ($send:ty, $receive:ty, shared: $shared:ident) => {
        impl Drop for $send {
            fn drop(&mut self) {
                <$send>::close_on_drop(self);
            }
        }

        impl Drop for $receive {
            fn drop(&mut self) {
                <$receive>::close_on_drop(self);
            }
        }

        impl $crate::stream::Resource for $send {
            fn close(&self) {
                <$send>::close(self);
            }
        }

        impl $crate::stream::Resource for $receive {
            fn close(&self) {
                <$receive>::close(self);
            }
        }

        impl $crate::stream::SendStream for $send {
            fn send_all(&self, data: &[u8]) -> impl ::std::future::Future<Output = ::std::io::Result<()>> {
                <$send>::send_all(self, data)
            }

            fn wait_send_all_might_not_block(&self) -> impl ::std::future::Future<Output = ::std::io::Result<()>> {
                <$send>::wait_send_all_might_not_block(self)
            }
        }

        /// The half-close of a two-way stream: `close` as an operation
        /// that claims the sending direction (so it is `Busy` during a
        /// send) and a checkpoint; a second call does nothing.
        impl $crate::stream::SendEof for $send {
            async fn send_eof(&self) -> ::std::io::Result<()> {
                let _claim =
                    self.$shared.send.claim(false, concat!("trioxide::testing::", stringify!($send), "::send_eof"))?;
                <$send>::close(self);
                $crate::kernel::budget::after_io().await;
                Ok(())
            }
        }

        impl $crate::stream::ReceiveStream for $receive {
            fn receive_some(&self, buf: &mut [u8]) -> impl ::std::future::Future<Output = ::std::io::Result<usize>> {
                <$receive>::receive_some(self, buf)
            }
        }
    };
}

pub(super) use one_way_halves;

use crate::stream::stapled::StapledStream;
use crate::stream::{ReceiveStream, SendStream};

/// Two connected two-way streams from two one-way pairs made by
/// `one_way_pair`: each end sends into the pipe the other receives from
/// (Trio's `_make_stapled_pair`).
pub(super) fn stapled_pair<S: SendStream, R: ReceiveStream>(
    one_way_pair: fn() -> (S, R),
) -> (StapledStream<S, R>, StapledStream<S, R>) {
    let (send1, receive1) = one_way_pair();
    let (send2, receive2) = one_way_pair();
    (StapledStream::new(send1, receive2), StapledStream::new(send2, receive1))
}
