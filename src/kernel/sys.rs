//! `syscall!`: every `libc` call, with its error check, in one shape.
//!
//! C functions report failure as `-1` with the cause in `errno`. Checking
//! that by hand at each call site is easy to get subtly wrong (`!= 0` where
//! the call returns a count, `< 0` where it returns a pid), so every call
//! goes through this macro, as in mio's `sys/unix/mod.rs`:
//!
//! ```ignore
//! // SAFETY: `listen` takes an fd we own and an int; no memory is passed.
//! syscall!(listen(fd, backlog))?;
//! ```
//!
//! The macro holds the `unsafe` block; the call site still says, in a
//! `// SAFETY:` comment right above it, why the call is sound (what the
//! pointers point to, who owns the fds).

/// Calls `libc::$fn($args)` and maps `-1` to `Err(io::Error::last_os_error())`;
/// any other value is `Ok` as returned (a count, an fd, 0).
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: the caller documents why this call is sound in a
        // `// SAFETY:` comment at the call site (see `kernel/sys.rs`).
        #[allow(unused_unsafe)]
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

pub(crate) use syscall;
