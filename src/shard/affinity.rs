//! Pinning a shard's thread to one CPU (`sched_setaffinity`, Linux only).

/// The CPUs the calling thread may run on, in increasing order (empty if
/// unknown, or on systems without `sched_getaffinity`).
#[cfg(target_os = "linux")]
pub(super) fn allowed_cpus() -> Vec<usize> {
    match current_mask() {
        Some(set) => (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `set` is an initialised cpu_set_t and the index is
            // below CPU_SETSIZE, the bound CPU_ISSET requires.
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .collect(),
        None => Vec::new(),
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn allowed_cpus() -> Vec<usize> {
    Vec::new()
}

#[cfg(target_os = "linux")]
fn current_mask() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 names the calling thread; the pointer and size describe
    // `set`, which lives for the whole call.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    (rc == 0).then_some(set)
}

/// Restores the thread's former affinity when dropped.
#[derive(Debug)]
pub(super) struct Pinned {
    #[cfg(target_os = "linux")]
    prev: libc::cpu_set_t,
}

/// Pins the calling thread to `cpu`; `None` if that failed (the shard then
/// runs unpinned: pinning is an optimisation, not a guarantee).
#[cfg(target_os = "linux")]
pub(super) fn pin_current(cpu: usize) -> Option<Pinned> {
    let prev = current_mask()?;
    // SAFETY: all-zero is a valid empty cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` came from allowed_cpus, so it is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; pointer and size describe `set`.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    (rc == 0).then_some(Pinned { prev })
}

#[cfg(not(target_os = "linux"))]
pub(super) fn pin_current(_cpu: usize) -> Option<Pinned> {
    None
}

#[cfg(target_os = "linux")]
impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: pid 0 is the calling thread (the guard never leaves the
        // thread that pinned: it is held in a local); `prev` is the mask
        // read before pinning.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.prev) };
    }
}
