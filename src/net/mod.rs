//! Networking: TCP, Unix-domain and UDP sockets on the I/O driver, and the
//! server and client helpers built on them.

pub(crate) mod connect;
pub(crate) mod serve;
pub(crate) mod socket;
pub(crate) mod tcp;
pub(crate) mod udp;
pub(crate) mod unix;
