//! Peak memory per parked task: bytes allocated (peak minus baseline, over N)
//! while N tasks are parked, for trioxide, tokio's current-thread runtime
//! and the floor executor. Not a criterion bench: it counts allocations with
//! a wrapping global allocator and prints one line per runtime.
//!
//! Run: `cargo bench -p trioxide-bench --bench memory`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use trioxide::{checkpoint, open_nursery, run, sleep_forever, BoxError, Cancelled};

#[path = "common/floor.rs"]
mod floor;

const N: usize = 100_000;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = CURRENT.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(by: usize) {
    CURRENT.fetch_sub(by, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; we only count.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as a fresh block, then the old one freed: a moving
            // realloc briefly holds both, and the peak should see that.
            grew(new_size);
            shrank(layout.size());
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Resets the peak to the current level and returns that level (the
/// baseline).
fn baseline() -> usize {
    let now = CURRENT.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

/// Prints the size of the spawned future once (first task only; printing
/// allocates nothing that outlives the call, and the first task's line is
/// part of every runtime's measurement alike).
fn note_size<F>(i: usize, name: &str, fut: &F) {
    if i == 0 {
        FUTURE_SIZES.with(|s| s.borrow_mut().push((name.to_string(), std::mem::size_of_val(fut))));
    }
}

thread_local! {
    static FUTURE_SIZES: std::cell::RefCell<Vec<(String, usize)>> = const { std::cell::RefCell::new(Vec::new()) };
}

struct Measure {
    /// Peak bytes above the baseline, per task, while spawning and parking.
    peak: f64,
    /// Bytes still allocated above the baseline once all are parked, per task.
    parked: f64,
}

impl Measure {
    fn take(base: usize) -> Measure {
        let peak = PEAK.load(Ordering::Relaxed) - base;
        let parked = CURRENT.load(Ordering::Relaxed).saturating_sub(base);
        Measure { peak: peak as f64 / N as f64, parked: parked as f64 / N as f64 }
    }
}

fn trioxide() -> Measure {
    let out: Rc<Cell<Option<Measure>>> = Rc::new(Cell::new(None));
    let o = out.clone();
    let r = run(open_nursery(move |n| async move {
        let parked = Rc::new(Cell::new(0usize));
        let base = baseline();
        for i in 0..N {
            let parked = parked.clone();
            let fut = async move {
                parked.set(parked.get() + 1);
                match sleep_forever().await {
                    Ok(never) => match never {},
                    Err(Cancelled) => Ok::<(), Infallible>(()),
                }
            };
            note_size(i, "trioxide", &fut);
            n.start_soon(fut)?;
        }
        while parked.get() < N {
            checkpoint().await?;
        }
        o.set(Some(Measure::take(base)));
        n.cancel_scope().cancel();
        Ok::<_, BoxError>(())
    }));
    assert!(r.is_ok(), "trioxide run failed");
    out.take().expect("no measurement")
}

/// Tokio tasks parked on `pending()` (`notify: false`) or on a shared
/// `Notify` (`notify: true`, a parked future that registers its waker, like
/// a real wait).
fn tokio(notify: bool) -> Measure {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("tokio runtime");
    let m = rt.block_on(async {
        let parked = Arc::new(AtomicUsize::new(0));
        let event = Arc::new(tokio::sync::Notify::new());
        let base = baseline();
        for i in 0..N {
            let parked = parked.clone();
            // Detached: the handle is dropped at once; the runtime's
            // shutdown drops the parked tasks.
            if notify {
                let event = event.clone();
                let fut = async move {
                    parked.fetch_add(1, Ordering::Relaxed);
                    event.notified().await;
                };
                note_size(i, "tokio (Notify)", &fut);
                drop(tokio::spawn(fut));
            } else {
                let fut = async move {
                    parked.fetch_add(1, Ordering::Relaxed);
                    std::future::pending::<()>().await;
                };
                note_size(i, "tokio (pending)", &fut);
                drop(tokio::spawn(fut));
            }
        }
        while parked.load(Ordering::Relaxed) < N {
            tokio::task::yield_now().await;
        }
        Measure::take(base)
    });
    drop(rt);
    m
}

fn floor() -> Measure {
    let parked = Rc::new(Cell::new(0usize));
    let base = baseline();
    for i in 0..N {
        let parked = parked.clone();
        let fut = async move {
            parked.set(parked.get() + 1);
            std::future::pending::<()>().await;
        };
        note_size(i, "floor", &fut);
        floor::spawn(fut);
    }
    floor::run();
    assert_eq!(parked.get(), N);
    let m = Measure::take(base);
    floor::clear();
    m
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    // Reserve the size log up front so that it does not allocate mid-run.
    FUTURE_SIZES.with(|s| s.borrow_mut().reserve(8));
    let rows = [
        ("trioxide", trioxide()),
        ("tokio (pending)", tokio(false)),
        ("tokio (Notify)", tokio(true)),
        ("floor", floor()),
    ];
    println!("bytes per parked task, N = {N} tasks (peak = peak above baseline / N; parked = still allocated / N)");
    for (name, m) in &rows {
        println!("{name:>16}: peak {:8.1} B/task   parked {:8.1} B/task", m.peak, m.parked);
    }
    FUTURE_SIZES.with(|s| {
        for (name, size) in s.borrow().iter() {
            println!("{name:>16}: spawned future is {size} B");
        }
    });
    let (t, k, kn, f) = (rows[0].1.peak, rows[1].1.peak, rows[2].1.peak, rows[3].1.peak);
    println!(
        "ratios (peak): trioxide/tokio(pending) {:.2}   trioxide/tokio(Notify) {:.2}   trioxide/floor {:.2}",
        t / k,
        t / kn,
        t / f
    );
}
