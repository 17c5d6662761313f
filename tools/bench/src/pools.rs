//! Pools picked from evidence: a probe run at the spec's starting pools, the
//! worker's `/evidence` read over the middle of the run as the operator reads
//! it, and the policy's own `size_pools` at the capacity it measures, until
//! the pick holds still; then pools 1, the picked pools and every pool at its
//! maximum, interleaved round by round so drift hits each alike.

use std::fmt::Write as _;

use pixelpipe_crds::evidence::WorkerEvidence;
use pixelpipe_crds::worker::WorkerArgs;
use pixelpipe_crds::{PerStage, StagePool};
use pixelpipe_policy::Evidence;
use pixelpipe_policy::pools::size_pools;
use pixelpipe_policy::reading;

use crate::suite::{Input, Measurement, Plan, Pools, Variant, measure, median, pools_label};

/// Probe runs at most: each pick comes from the pools before it, as the
/// operator's does from one interval to the next.
const PROBES: usize = 3;

/// The worker's reports over the steady middle of a run: the first after a
/// tenth of the input was completed and the last before nine tenths. Runs
/// too short for two such reports fall back to the whole run so far.
#[derive(Debug, Clone, Default)]
pub struct Window {
    events: u64,
    first: Option<WorkerEvidence>,
    last: Option<WorkerEvidence>,
    latest: Option<WorkerEvidence>,
}

impl Window {
    pub fn new(events: u64) -> Self {
        Self {
            events,
            ..Self::default()
        }
    }

    pub fn add(&mut self, report: WorkerEvidence) {
        let done = report.events_completed.saturating_mul(10);
        if done >= self.events && done <= self.events.saturating_mul(9) {
            if self.first.is_none() {
                self.first = Some(report.clone());
            } else {
                self.last = Some(report.clone());
            }
        }
        self.latest = Some(report);
    }

    /// The evidence the policy would read from this worker.
    pub fn evidence(&self) -> Option<Evidence> {
        let usage = match (&self.first, &self.last) {
            (Some(first), Some(last)) => reading::usage(first, last),
            _ => reading::usage(&WorkerEvidence::default(), self.latest.as_ref()?),
        }?;
        reading::evidence(&[usage])
    }
}

/// The pools the policy would give a replica running at the capacity this
/// evidence shows, within the spec's default bounds.
pub fn pick(current: Pools, evidence: &Evidence) -> Pools {
    let bounds = StagePool::default();
    let per_replica = evidence.true_rate().unwrap_or(evidence.events_per_second);
    let as_i32 = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    size_pools(
        evidence,
        per_replica,
        current.map(|_, n| as_i32(n)),
        PerStage::splat((bounds.min_workers, bounds.max_workers)),
    )
    .map(|_, n| usize::try_from(n).unwrap_or(1).max(1))
}

/// Probes, picks, and races the pick against pools 1 and the maximum;
/// appends the section to `out`.
pub(crate) async fn section(plan: &Plan, input: &Input, out: &mut String) -> anyhow::Result<()> {
    let defaults = StagePool::default();
    // Jobs in flight as the operator sets them for the default bounds (twice
    // the largest maxWorkers), whatever the pools are now: a pool change
    // alone is what is compared.
    let plan = &Plan {
        max_in_flight_jobs: Some(WorkerArgs::in_flight_for(defaults.max_workers)),
        ..plan.clone()
    };
    let mut pools = PerStage::splat(usize::try_from(defaults.workers).unwrap_or(2));
    let mut steps = Vec::new();
    let mut tried = Vec::new();
    for _ in 0..PROBES {
        let run = measure(plan, input, Variant::Pixelpipe(pools)).await?;
        let Some(evidence) = run.evidence.evidence() else {
            steps.push(format!("{}: no evidence, kept", pools_label(pools)));
            break;
        };
        let next = pick(pools, &evidence);
        tried.push(pools);
        // A pick already probed (the same again, or a flap back) settles it.
        let settled = tried.contains(&next);
        steps.push(format!(
            "{} at {:.0} events/s, bottleneck {} at {:.0} % -> {}",
            pools_label(pools),
            evidence.events_per_second,
            evidence.bottleneck,
            evidence.utilization * 100.0,
            pools_label(next)
        ));
        pools = next;
        if settled {
            break;
        }
    }
    let max = PerStage::splat(usize::try_from(defaults.max_workers).unwrap_or(32));
    let designs = [PerStage::splat(1), pools, max].map(Variant::Pixelpipe);
    let rounds = race(plan, input, &designs).await?;
    write_section(out, &steps, &designs, &rounds);
    Ok(())
}

/// `plan.runs` rounds, each running every design once, in order.
async fn race(
    plan: &Plan,
    input: &Input,
    designs: &[Variant; 3],
) -> anyhow::Result<Vec<[Measurement; 3]>> {
    let mut rounds = Vec::with_capacity(plan.runs);
    for round in 0..plan.runs {
        let mut ms = [Measurement::default(); 3];
        for (m, &v) in ms.iter_mut().zip(designs) {
            *m = measure(plan, input, v).await?.m;
            eprintln!(
                "  {:<34} round {}: {:>8.0} events/s, {:>5.2} us/event, {:>6.1} MiB",
                v.label(),
                round + 1,
                m.events_per_second,
                m.cpu_us_per_event,
                m.peak_rss_mib
            );
        }
        rounds.push(ms);
    }
    Ok(rounds)
}

fn write_section(
    out: &mut String,
    steps: &[String],
    designs: &[Variant; 3],
    rounds: &[[Measurement; 3]],
) {
    let _ = writeln!(
        out,
        "\n## Pools picked from evidence ({} interleaved rounds)\n\nProbes (pools, what the worker's evidence showed, the policy's pick): {}.\n\n| pools | input events/s | vs pools 1 (median, range) | CPU us/event | peak RSS MiB |\n| --- | --: | --: | --: | --: |",
        rounds.len(),
        steps.join("; ")
    );
    for (i, v) in designs.iter().enumerate() {
        let ratios: Vec<f64> = rounds
            .iter()
            .map(|r| r[i].events_per_second / r[0].events_per_second.max(1.0))
            .collect();
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(0.0, f64::max);
        let of = |f: fn(&Measurement) -> f64| median(rounds.iter().map(|r| f(&r[i])).collect());
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.2}x ({lo:.2}-{hi:.2}) | {:.2} | {:.1} |",
            v.label(),
            of(|m| m.events_per_second),
            median(ratios.clone()),
            of(|m| m.cpu_us_per_event),
            of(|m| m.peak_rss_mib),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pixelpipe_crds::evidence::StageEvidence;

    fn report(uptime: f64, completed: u64, cpu: f64, busy: [f64; 4]) -> WorkerEvidence {
        WorkerEvidence {
            uptime_seconds: uptime,
            cores: 2.0,
            cpu_seconds: cpu,
            events_completed: completed,
            stages: PerStage::from_fn(|s| StageEvidence {
                workers: 2,
                busy_seconds: busy[s as usize],
                jobs: 0,
            }),
            max_in_flight_jobs: 8,
            ..WorkerEvidence::default()
        }
    }

    #[test]
    fn the_window_keeps_the_middle_of_the_run() {
        let mut w = Window::new(1_000);
        w.add(report(1.0, 50, 0.5, [0.0; 4]));
        w.add(report(2.0, 200, 2.0, [0.5, 0.1, 0.4, 0.2]));
        w.add(report(3.0, 800, 4.0, [1.5, 0.3, 1.2, 0.6]));
        w.add(report(4.0, 1_000, 4.5, [1.6, 0.3, 1.3, 0.6]));
        let e = w.evidence().expect("evidence");
        // 600 events in the one second between the tenth and nine tenths.
        assert!((e.events_per_second - 600.0).abs() < 1e-6, "{e:?}");
    }

    #[test]
    fn a_cpu_bound_worker_gets_cpu_stages_at_most_the_cores() {
        // Both cores busy; parse and augment busy a core each.
        let e = Window {
            events: 1_000,
            first: Some(report(1.0, 100, 0.0, [0.0; 4])),
            last: Some(report(2.0, 900, 2.0, [1.0, 0.2, 1.0, 0.4])),
            latest: None,
        }
        .evidence()
        .expect("evidence");
        let picked = pick(PerStage::splat(8), &e);
        assert!(picked.parse <= 2 && picked.augment <= 2, "{picked}");
    }
}
