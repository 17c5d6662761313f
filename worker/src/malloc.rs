//! The C library's malloc, which librdkafka's threads allocate from (Rust's
//! allocations go to mimalloc), set to keep what it frees for the next
//! allocation rather than hand it back to the kernel.
//!
//! By default glibc serves a block larger than a moving threshold (128 KiB
//! at first, raised to the size of each such block freed) with its own
//! `mmap`, and trims a heap whose free top exceeds twice that threshold.
//! librdkafka's buffers for fetched and compressed message sets keep crossing
//! both: on the benchmark's backlog the worker took 0.15-0.27 page faults per
//! event, each a fresh page the kernel zeroes, and spent 11-15 % of its CPU
//! on them (docs/benchmarks.md). With both thresholds fixed it takes 0.007.
//! Both are needed: setting either turns off glibc's adjustment of the
//! other, and either alone measured worse than neither.
//!
//! What is kept is bounded by librdkafka's own bounds on what it holds at
//! once (its fetch and produce queues): the heap stays near its peak
//! instead of shrinking and growing again.
#![allow(unsafe_code)]

/// Blocks up to this size come from a heap: the most glibc's own moving
/// threshold reaches.
pub const MMAP_THRESHOLD: usize = 32 << 20;

/// Free memory a heap keeps at its top before trimming it: twice the above,
/// glibc's own ratio, which is as much as a thread's heap (64 MiB) holds,
/// so those are never trimmed.
pub const TRIM_THRESHOLD: usize = 64 << 20;

/// Fixes glibc's thresholds; `false` if it refused them. Call it first in
/// `main`: librdkafka's threads take their arenas as they start. Where the
/// C library is not glibc there is nothing to set.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set = |param, value: usize| {
            let value = i32::try_from(value).unwrap_or(i32::MAX);
            // SAFETY: mallopt only changes malloc's parameters, under
            // malloc's own lock; it reads no memory of ours.
            unsafe { libc::mallopt(param, value) == 1 }
        };
        set(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) && set(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        true
    }
}
