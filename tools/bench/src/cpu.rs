//! A process's CPU time over a run, read from outside it.
//!
//! The kernel's per-process CPU clock (`clock_getcpuclockid`) counts every
//! thread in nanoseconds; `/proc/<pid>/stat` counts in 10 ms ticks. A design
//! processes the benchmark's 200,000 events in under two seconds, so ticks
//! sampled every 100 ms and read at the next sample after each end of the
//! window put up to 0.2 s of noise on about 1.5 s of CPU. Samples taken often
//! and interpolated at the window's ends leave well under 1 %.

use nix::time::{ClockId, clock_getcpuclockid};
use nix::unistd::Pid;

/// The CPU clock of one process.
#[derive(Debug, Clone, Copy)]
pub struct CpuClock(ClockId);

impl CpuClock {
    /// `None` when there is no such process.
    pub fn of(pid: u32) -> Option<Self> {
        let pid = Pid::from_raw(i32::try_from(pid).ok()?);
        clock_getcpuclockid(pid).ok().map(Self)
    }

    /// CPU seconds the process has used, all threads, `None` once it is gone.
    pub fn seconds(self) -> Option<f64> {
        let t = self.0.now().ok()?;
        Some(t.tv_sec() as f64 + t.tv_nsec() as f64 * 1e-9)
    }
}

/// (wall time in ms, CPU seconds used so far) pairs in time order.
#[derive(Debug, Default, Clone)]
pub struct CpuTrace(Vec<(i64, f64)>);

impl CpuTrace {
    pub fn push(&mut self, at_ms: i64, cpu_seconds: f64) {
        self.0.push((at_ms, cpu_seconds));
    }

    /// CPU seconds used by `at_ms`, linear between the samples around it and
    /// held at the first or last sample outside them; 0 with no samples.
    pub fn at(&self, at_ms: i64) -> f64 {
        let after = self.0.partition_point(|&(t, _)| t < at_ms);
        match (after.checked_sub(1).map(|i| self.0[i]), self.0.get(after)) {
            (Some((t0, c0)), Some(&(t1, c1))) => {
                c0 + (c1 - c0) * (at_ms - t0) as f64 / (t1 - t0) as f64
            }
            (None, Some(&(_, c))) | (Some((_, c)), None) => c,
            (None, None) => 0.0,
        }
    }

    /// CPU seconds used between two wall times.
    pub fn between(&self, from_ms: i64, to_ms: i64) -> f64 {
        self.at(to_ms) - self.at(from_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_between_samples_and_holds_outside_them() {
        let mut t = CpuTrace::default();
        assert_eq!(t.at(5), 0.0);
        t.push(100, 1.0);
        t.push(120, 1.5);
        t.push(140, 1.5);
        assert_eq!(t.at(50), 1.0);
        assert_eq!(t.at(100), 1.0);
        assert!((t.at(110) - 1.25).abs() < 1e-12);
        assert_eq!(t.at(130), 1.5);
        assert_eq!(t.at(900), 1.5);
        assert!((t.between(105, 115) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn reads_this_process_in_nanoseconds() {
        let clock = CpuClock::of(std::process::id()).expect("own clock");
        let before = clock.seconds().expect("cpu time");
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let used = clock.seconds().expect("cpu time") - before;
        // Busy work registers though it is far shorter than a 10 ms tick.
        assert!(used > 0.0 && used < 1.0, "{used}");
    }
}
