//! Asking the CPU for the next item's bytes while a stage works on this one.
//!
//! A job waits in a stage's queue behind others, long enough for its
//! payloads to leave the core's caches, and each payload is an allocation
//! of its own, so the hardware cannot guess where the next one is. A stage
//! names the next item's memory before it starts on the current one, and
//! the fetch overlaps the current item's work (hundreds of nanoseconds,
//! more than a trip to memory).

/// A cache line on the x86-64 CPUs this ships for.
const LINE: usize = 64;

/// Prefetches every cache line of `bytes`.
#[inline]
pub fn bytes(bytes: &[u8]) {
    for line in bytes.iter().step_by(LINE) {
        value(line);
    }
}

/// Prefetches the cache line `v` starts on.
#[inline]
pub fn value<T>(v: &T) {
    #[cfg(target_arch = "x86_64")]
    safe_arch::prefetch_t0(v);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}
