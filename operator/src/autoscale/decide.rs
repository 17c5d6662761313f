//! One observation through the policy: the decision, the sizes it changes,
//! and what the status and Events report about it.

use std::time::Duration;

use pixelpipe_crds::evidence::WorkerEvidence;
use pixelpipe_crds::{PartitionState, PartitionStatus, PixelPipeline, age_text};
use pixelpipe_policy::reading::evidence;
use pixelpipe_policy::{Current, Decision, Limits, Observation, PartitionView, Tuning};

use super::observe::{Inputs, observation};
use super::state::State;
use crate::observer::Snapshot;
use crate::pods::WorkerPod;
use crate::sizes::{self, Change, Sizes};

/// Partitions listed in the status at most.
pub const MAX_LISTED_PARTITIONS: usize = 16;

/// What Kafka showed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Seen {
    pub lag: i64,
    /// `None`: a lagging partition's oldest event could not be read.
    pub oldest_age: Option<f64>,
    /// Events per second arriving and committed over the window, once the
    /// window spans two snapshots.
    pub rates: Option<(f64, f64)>,
}

impl Seen {
    pub fn of(s: &Snapshot) -> Self {
        Self {
            lag: s.lag(),
            oldest_age: s.oldest_age(),
            rates: None,
        }
    }
}

/// What one autoscaling step found and decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    /// This step observed Kafka (successfully or not); between observations
    /// it only repeats the last one.
    pub observed: bool,
    /// Why Kafka could not be read, if it could not.
    pub kafka_error: Option<String>,
    pub seen: Option<Seen>,
    pub decision: Option<Decision>,
    /// The sizes to run now (Enabled mode): what autoscaling last applied.
    pub run: Option<Sizes>,
    /// The sizes running before this step's change, when it has one.
    pub from: Option<Sizes>,
    /// New sizes this step applies (Enabled mode, something changed).
    pub apply: Option<Sizes>,
    /// A recommendation that differs from what runs (DryRun: not applied).
    pub recommended: Option<Sizes>,
    /// Whether the change (applied or recommended) adds capacity.
    pub up: bool,
    /// This step's decision and what it changes, in words: the scale
    /// Event's note.
    pub summary: Option<String>,
    /// The last decision that changed something, in words, this step's or
    /// an earlier one's: the status's lastDecision.
    pub last_decision: Option<String>,
    /// The partitions the status lists, worst first.
    pub partitions: Vec<PartitionStatus>,
}

/// The sizes running now: what this operator applied last, within the
/// spec's current bounds, else what the status says.
pub fn running(pp: &PixelPipeline, state: &State) -> Sizes {
    match state.applied {
        Some(applied) if enabled(pp) => sizes::within_bounds(pp, applied),
        _ => sizes::current(pp),
    }
}

/// A `kubectl scale` (a new `spec.replicas.initial`) with autoscaling
/// Enabled: that many replicas now, within the bounds. Autoscaling goes on
/// from there and holds the count for a stabilization window unless the
/// evidence calls for more. The first look at a pipeline is not a change.
pub fn scaled_by_hand(
    pp: &PixelPipeline,
    state: &mut State,
    tuning: &Tuning,
    now: f64,
) -> Option<Step> {
    let asked = pp.spec.replicas.initial;
    let before = state.initial.replace(asked)?;
    if !enabled(pp) || before == asked {
        return None;
    }
    let asked = asked?;
    let run = running(pp, state);
    let to = sizes::within_bounds(
        pp,
        Sizes {
            replicas: asked,
            ..run
        },
    );
    if to == run {
        return None;
    }
    state.applied = Some(to);
    state.policy.adopt(now, to.replicas, tuning);
    let change = Change { from: run, to };
    Some(Step {
        seen: state.history.latest().map(Seen::of),
        run: Some(to),
        from: Some(run),
        apply: Some(to),
        up: to.replicas > run.replicas,
        summary: Some(format!(
            "replicas set by hand (kubectl scale, spec.replicas.initial {asked}) ({change})"
        )),
        ..Step::default()
    })
}

/// Records the snapshot and the workers' reports, and runs the policy.
pub fn decide(
    pp: &PixelPipeline,
    state: &mut State,
    snapshot: Snapshot,
    reports: &[(String, WorkerEvidence)],
    pods: &[WorkerPod],
    tuning: &Tuning,
    now: f64,
) -> Step {
    let mut seen = Seen::of(&snapshot);
    state.still.update(&snapshot);
    // Rates over three intervals damp the 2-second commit cadence.
    let window = Duration::from_secs_f64(3.0 * tuning.interval);
    state.history.push(snapshot, window);
    let usages = state.reports.update(reports, window.as_secs_f64());
    let run = running(pp, state);
    let mut step = Step {
        run: enabled(pp).then_some(run),
        ..Step::default()
    };
    let Some((first, last)) = state.history.window() else {
        step.seen = Some(seen);
        return step;
    };
    let mut obs = observation(&Inputs {
        now,
        first,
        last,
        still: &state.still,
        pods,
        desired: run.replicas,
        reports,
        evidence: evidence(&usages),
    });
    let short_for = state.short_for(now, &obs.pods);
    obs.pods.unready_for = obs.pods.unready_for.max(short_for);
    seen.rates = Some(rates(&obs));
    step.seen = Some(seen);
    let current = Current {
        replicas: run.replicas,
        pools: run.pools,
    };
    let decision = state.policy.decide(&obs, current, &limits(pp), tuning);
    step.partitions = listed(&obs, &decision);
    let decided = Sizes {
        replicas: decision.replicas,
        pools: decision.pools,
    };
    if decided != run {
        step.from = Some(run);
        report_change(pp, &mut step, &decision, run, decided);
        if enabled(pp) {
            state.applied = Some(decided);
            step.run = Some(decided);
        }
    }
    step.decision = Some(decision);
    step
}

pub(super) fn enabled(pp: &PixelPipeline) -> bool {
    pp.spec.autoscaling.mode.applies()
}

fn rates(obs: &Observation) -> (f64, f64) {
    obs.partitions.iter().fold((0.0, 0.0), |(a, p), v| {
        (a + v.arrival_rate, p + v.progress_rate)
    })
}

pub fn limits(pp: &PixelPipeline) -> Limits {
    Limits {
        min_replicas: pp.spec.replicas.min,
        max_replicas: pp.spec.replicas.max,
        slo_seconds: f64::from(pp.spec.slo.max_event_age_seconds),
        pools: pp
            .spec
            .stages
            .as_ref()
            .map(|_, b| (b.min_workers, b.max_workers)),
    }
}

/// The partitions worth listing: the unhealthy ones, then the lagging ones
/// by age, worst first.
fn listed(obs: &Observation, d: &Decision) -> Vec<PartitionStatus> {
    let state_of = |p: &PartitionView| {
        let has = |v: &[PartitionView]| v.iter().any(|x| x.partition == p.partition);
        if has(&d.unhealthy.stuck) {
            PartitionState::Stuck
        } else if has(&d.unhealthy.recovering) {
            PartitionState::Recovering
        } else if has(&d.unhealthy.hot) {
            PartitionState::Hot
        } else if p.lag > 0.0 && p.head_age.is_none() {
            PartitionState::Unknown
        } else {
            PartitionState::Healthy
        }
    };
    let mut rows: Vec<(PartitionState, &PartitionView)> = obs
        .partitions
        .iter()
        .map(|p| (state_of(p), p))
        .filter(|(s, p)| *s != PartitionState::Healthy || p.lag > 0.0)
        .collect();
    let age = |p: &PartitionView| p.head_age.unwrap_or(f64::MAX);
    rows.sort_by(|a, b| {
        (b.0 != PartitionState::Healthy)
            .cmp(&(a.0 != PartitionState::Healthy))
            .then(age(b.1).total_cmp(&age(a.1)))
    });
    rows.into_iter()
        .take(MAX_LISTED_PARTITIONS)
        .map(|(state, p)| PartitionStatus {
            partition: p.partition,
            state,
            lag: p.lag as i64,
            committed: p.committed,
            oldest_event_age: p.head_age.map_or_else(|| "unknown".to_string(), age_text),
        })
        .collect()
}

/// Fills in what a decision that changes the sizes applies or recommends.
fn report_change(
    pp: &PixelPipeline,
    step: &mut Step,
    decision: &Decision,
    running: Sizes,
    decided: Sizes,
) {
    let change = Change {
        from: running,
        to: decided,
    };
    let workers =
        |s: &Sizes| i64::from(s.replicas) * s.pools.values().map(|&n| i64::from(n)).sum::<i64>();
    step.up = decided.replicas > running.replicas
        || (decided.replicas == running.replicas && workers(&decided) > workers(&running));
    if enabled(pp) {
        step.apply = Some(decided);
        step.summary = Some(format!("{} ({change})", decision.reason));
    } else {
        step.recommended = Some(decided);
        step.summary = Some(format!(
            "DryRun, not applied: {} ({change})",
            decision.reason
        ));
    }
}
