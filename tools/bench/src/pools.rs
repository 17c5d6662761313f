//! Pools picked from evidence: a probe run at the spec's starting pools, the
//! worker's `/evidence` read over the middle of the run as the operator reads
//! it, and the policy's own `size_pools` at the capacity it measures, until
//! the pick holds still; then the ceiling, the forward, pools 1, the picked
//! pools and every pool at its maximum, interleaved round by round so drift
//! hits each alike. The benchmark's verdict is the picked pools' against the
//! ceiling, and against the forward beside it.

use std::fmt::Write as _;

use pixelpipe_crds::evidence::WorkerEvidence;
use pixelpipe_crds::worker::WorkerArgs;
use pixelpipe_crds::{PerStage, StagePool};
use pixelpipe_policy::Evidence;
use pixelpipe_policy::pools::size_pools;
use pixelpipe_policy::reading;

use crate::rounds::{self, Design, Verdict};
use crate::suite::{Input, Plan, Pools, Variant, measure, pools_label, same_bytes};

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

/// Probes the pools the operator would pick from the worker's evidence, then
/// measures them in rounds with the ceiling, the forward, one worker per
/// stage and the default maximum, and appends the section to `out`: the
/// verdict is the picked pools' against the ceiling.
pub(crate) async fn section(
    plan: &Plan,
    input: &Input,
    out: &mut String,
) -> anyhow::Result<Verdict> {
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
    let picked = Variant::Pixelpipe(pools);
    let mut variants = vec![
        Variant::Ceiling,
        Variant::Forward,
        Variant::Pixelpipe(PerStage::splat(1)),
    ];
    for v in [picked, Variant::Pixelpipe(max)] {
        if !variants.contains(&v) {
            variants.push(v);
        }
    }
    let designs = rounds::interleaved(plan, input, &variants).await?;
    write_section(out, &steps, &designs, plan.runs);
    let (ceiling, forward) = (&designs[0].median, &designs[1].median);
    let d = designs
        .iter()
        .find(|d| d.variant == picked)
        .ok_or_else(|| anyhow::anyhow!("the picked pools were not measured"))?;
    same_bytes(ceiling, &d.median)?;
    Ok(Verdict {
        pools,
        throughput_ratio: d.throughput.median,
        pixelpipe_cpu_us: d.median.cpu_us_per_event,
        ceiling_cpu_us: ceiling.cpu_us_per_event,
        forward_throughput_ratio: d.median.events_per_second / forward.events_per_second.max(1e-9),
        forward_cpu_us: forward.cpu_us_per_event,
    })
}

fn write_section(out: &mut String, steps: &[String], designs: &[Design], rounds: usize) {
    let _ = writeln!(
        out,
        "\n## Pools picked from evidence ({rounds} interleaved rounds)\n\nProbes (pools, what the worker's evidence showed, the policy's pick): {}.\n\n| design | input events/s | vs ceiling (median, range) | CPU us/event | CPU vs ceiling | peak RSS MiB | bytes per output | broker CPU us/event |\n| --- | --: | --: | --: | --: | --: | --: | --: |",
        steps.join("; ")
    );
    for d in designs {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {:.2} | {} | {:.1} | {:.0} | {:.2} |",
            d.variant.label(),
            d.median.events_per_second,
            d.throughput,
            d.median.cpu_us_per_event,
            d.cpu,
            d.median.peak_rss_mib,
            d.median.output_bytes,
            d.median.broker_cpu_us_per_event,
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
