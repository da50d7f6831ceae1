//! The scheduler's tiny seedable random source.
//!
//! Each pass needs one random bit (run the batch forwards or reversed), so a
//! 64-bit generator refilled every 64 passes is plenty. We use SplitMix64
//! (Steele, Lea & Flood, "Fast splittable pseudorandom number generators",
//! OOPSLA 2014): one add, two multiplies, three shifts, and every seed is a
//! good seed, which matters because users pick seeds like `0` and `1`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use crate::kernel::Core;

/// The environment variable that fixes the seed of every unseeded run, so a
/// failing interleaving can be replayed: `TRIOXIDE_SEED=42 cargo test`.
///
/// ```
/// assert_eq!(trioxide::SEED_ENV, "TRIOXIDE_SEED");
/// // A seeded run reports its seed, to replay it:
/// let ((), report) = trioxide::Builder::new().seed(42).run_with_report(async {});
/// assert_eq!(report.seed, 42);
/// ```
pub const SEED_ENV: &str = "TRIOXIDE_SEED";

/// The seed of the running run's scheduler: the one given to
/// [`Builder::seed`](crate::Builder::seed), else the one taken from
/// [`SEED_ENV`] or fresh entropy. Print it when a test fails, so the
/// interleaving can be replayed (`#[trioxide::test]` does).
///
/// # Panics
/// Outside [`run`](crate::run): "trioxide::current_seed must be called
/// from inside trioxide::run", at the caller's line.
///
/// ```
/// use trioxide::{current_seed, Builder};
/// assert_eq!(Builder::new().seed(1234).run(async { current_seed() }), 1234);
/// // An unseeded run reports the seed it chose, like `RunReport::seed`.
/// let (seen, report) = Builder::new().run_with_report(async { current_seed() });
/// assert_eq!(seen, report.seed);
/// ```
#[track_caller]
pub fn current_seed() -> u64 {
    Core::current_for("trioxide::current_seed").rng.borrow().seed
}

pub(crate) struct Rng {
    /// The seed it started from (for `current_seed`).
    seed: u64,
    state: u64,
    bits: u64,
    left: u32,
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng { seed, state: seed, bits: 0, left: 0 }
    }

    /// A seed from the environment variable if set, else fresh entropy
    /// (std's per-process random hash keys mixed with the time).
    pub(crate) fn seed_from_env_or_entropy() -> u64 {
        if let Some(seed) = std::env::var(SEED_ENV).ok().and_then(|s| s.trim().parse::<u64>().ok()) {
            return seed;
        }
        let mut h = RandomState::new().build_hasher();
        if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(t.as_nanos());
        }
        h.finish()
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by Lemire's multiply-shift: one
    /// multiply, no division. The bias is below `n / 2^64`, far below what
    /// a schedule could show. Used by the exploring strategies
    /// (`Schedule::Random`, `Schedule::Pct`), never by the batch pass, so
    /// the batch pass's bit stream is unchanged.
    #[inline]
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// One fair coin flip.
    #[inline]
    pub(crate) fn bit(&mut self) -> bool {
        if self.left == 0 {
            self.bits = self.next_u64();
            self.left = 64;
        }
        let b = self.bits & 1 == 1;
        self.bits >>= 1;
        self.left -= 1;
        b
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn same_seed_gives_same_bits_and_bits_are_balanced() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: Vec<bool> = (0..1000).map(|_| a.bit()).collect();
        let ys: Vec<bool> = (0..1000).map(|_| b.bit()).collect();
        assert_eq!(xs, ys);
        let ones = xs.iter().filter(|&&x| x).count();
        assert!((400..600).contains(&ones), "{ones} ones in 1000 flips");
        let mut r = Rng::new(3);
        let mut seen = [0u32; 5];
        for _ in 0..5000 {
            seen[r.below(5) as usize] += 1;
        }
        assert!(seen.iter().all(|&k| (800..1200).contains(&k)), "{seen:?}");
        let mut c = Rng::new(8);
        let zs: Vec<bool> = (0..1000).map(|_| c.bit()).collect();
        assert_ne!(xs, zs);
    }
}
