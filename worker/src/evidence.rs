//! The worker's report about itself for the autoscaler (`GET /evidence`):
//! amounts since start (the pools' and the waits' occupancy integrated
//! continuously, the metrics' counters, the offset tracker's positions), plus
//! the CPU the process used and the cores it may use.

use std::sync::Arc;
use std::time::Instant;

use pixelpipe_crds::evidence::{MAX_REPORTED_PARTITIONS, StageEvidence, WorkerEvidence};

use crate::metrics::{Metrics, StageLabel};
use crate::occupancy::Waits;
use crate::offsets::OffsetTracker;
use crate::pipeline::Pools;
use crate::settings::Settings;

/// Builds [`WorkerEvidence`] on request.
#[derive(Debug)]
pub struct Reporter {
    started: Instant,
    cores: f64,
    max_in_flight_jobs: u64,
    intake_limit: Option<f64>,
    metrics: Arc<Metrics>,
    pools: Arc<Pools>,
    tracker: Arc<OffsetTracker>,
    waits: Arc<Waits>,
}

impl Reporter {
    pub fn new(
        metrics: Arc<Metrics>,
        pools: Arc<Pools>,
        tracker: Arc<OffsetTracker>,
        waits: Arc<Waits>,
        settings: &Settings,
    ) -> Self {
        Self {
            waits,
            started: Instant::now(),
            cores: cores(),
            max_in_flight_jobs: settings.max_in_flight_jobs as u64,
            intake_limit: settings.batching.max_events_per_second,
            metrics,
            pools,
            tracker,
        }
    }

    pub fn report(&self) -> WorkerEvidence {
        let m = &self.metrics;
        let sizes = self.pools.sizes();
        let busy = self.pools.busy_seconds();
        WorkerEvidence {
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            cores: self.cores,
            cpu_seconds: cpu_seconds().unwrap_or(0.0),
            events_read: m.events_in.get(),
            events_completed: m.events_completed.get(),
            stages: sizes
                .zip(busy)
                .map(|stage, (workers, busy_seconds)| StageEvidence {
                    workers: u32::try_from(workers).unwrap_or(u32::MAX),
                    busy_seconds,
                    jobs: m.stage_jobs.get_or_create(&StageLabel { stage }).get(),
                }),
            intake_limit: self.intake_limit,
            paced_seconds: m.intake_paced.get(),
            acknowledgement_wait_seconds: self.waits.acknowledgements.seconds(),
            queue_full_seconds: self.waits.queue.seconds(),
            max_in_flight_jobs: self.max_in_flight_jobs,
            jobs_in_flight: u64::try_from(m.jobs_in_flight.get()).unwrap_or(0),
            partitions: self.tracker.progress(MAX_REPORTED_PARTITIONS),
        }
    }
}

/// Linux reports process times in clock ticks of `USER_HZ`, which its ABI
/// fixes at 100 per second.
const USER_HZ: f64 = 100.0;

/// CPU seconds (user and system) this process has used, from `/proc/self/stat`.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_seconds(&stat)
}

fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces; the
    // fields after it start with the state (field 3). utime and stime are 14, 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// The cores this process may use: its container's CPU limit if it has one
/// (cgroup v2, or v1 where the runtime mounts the container's own CPU cgroup
/// at /sys/fs/cgroup/cpu), else the CPUs it may run on.
fn cores() -> f64 {
    let machine = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let v2 = || read("/sys/fs/cgroup/cpu.max").and_then(|s| parse_cpu_max(&s));
    let v1 = || {
        let quota = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")?;
        let period = read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")?;
        parse_cfs_quota(&quota, &period)
    };
    v2().or_else(v1).map_or(machine, |limit| limit.min(machine))
}

/// cgroup v1: quota `"50000"` over period `"100000"` -> 0.5; quota `"-1"`
/// (no limit) -> `None`.
fn parse_cfs_quota(quota: &str, period: &str) -> Option<f64> {
    let quota: f64 = quota.trim().parse().ok()?;
    let period: f64 = period.trim().parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// `"200000 100000"` -> 2.0; `"max 100000"` (no limit) -> `None`.
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut it = text.split_whitespace();
    let quota: f64 = it.next()?.parse().ok()?;
    let period: f64 = it.next()?.parse().ok()?;
    (period > 0.0).then(|| quota / period)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces() {
        let stat = "4242 (pixel pipe) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 30 0 0 20 0 9 0";
        assert_eq!(parse_cpu_seconds(stat), Some(2.8));
        assert_eq!(parse_cpu_seconds("garbage"), None);
        assert!(cpu_seconds().is_some_and(|s| s >= 0.0), "this process");
    }

    #[test]
    fn a_cgroup_limit_is_cores_and_max_is_none() {
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2.0));
        assert_eq!(parse_cpu_max("50000 100000"), Some(0.5));
        assert_eq!(parse_cpu_max("max 100000"), None);
        assert_eq!(parse_cfs_quota("50000\n", "100000\n"), Some(0.5));
        assert_eq!(parse_cfs_quota("-1\n", "100000\n"), None);
        assert!(cores() > 0.0);
    }
}
