//! Autoscaling inside the reconcile: each pipeline's lag observer, policy and
//! history, kept between reconciles, and the step that turns an observation
//! into sizes, a status report and Events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pixelpipe_crds::{AutoscalingMode, PixelPipeline, StagePool};
use pixelpipe_policy::{Current, Decision, Limits, Policy, Tuning, settle};
use pixelpipe_runtime::{KafkaSettings, Security};

use crate::observer::{History, Observer, Snapshot};
use crate::sizes::{self, Change, Pools, Sizes};

/// Pipelines whose autoscaling state is kept at most; beyond it the least
/// recently seen are dropped (their observer reconnects when next seen).
const MAX_PIPELINES: usize = 1024;
/// An entry not reconciled for this long belongs to a deleted pipeline.
const FORGET_AFTER: Duration = Duration::from_secs(900);

/// What a lag observer reads: brokers, topic and group.
type Source = (String, String, String);

/// One pipeline's autoscaling memory.
#[derive(Debug)]
pub struct State {
    observer: Option<Arc<Observer>>,
    /// What the observer was built for; a change rebuilds it.
    source: Source,
    /// Versions of the credentials the observer was built with.
    credentials: String,
    history: History,
    policy: Policy,
    next_observation: Instant,
}

impl State {
    fn fresh(source: Source, now: Instant) -> Self {
        Self {
            observer: None,
            source,
            credentials: String::new(),
            history: History::default(),
            policy: Policy::default(),
            next_observation: now,
        }
    }
}

#[derive(Debug)]
struct Slot {
    since: Instant,
    last_seen: Instant,
    state: Arc<tokio::sync::Mutex<State>>,
}

/// What one autoscaling step found and decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    /// New sizes to apply (Enabled mode, something changed).
    pub apply: Option<Sizes>,
    pub lag: Option<i64>,
    pub oldest_age: Option<f64>,
    pub arrival_rate: Option<f64>,
    pub processing_rate: Option<f64>,
    pub decision: Option<Decision>,
    /// A recommendation that differs from what runs (DryRun: not applied).
    pub recommended: Option<Sizes>,
    /// Whether the change (applied or recommended) adds capacity.
    pub up: bool,
    /// The decision and what it changes, in words: the status's lastDecision
    /// and the scale Event's note.
    pub summary: Option<String>,
    pub kafka_error: Option<String>,
}

/// All pipelines' autoscaling state.
#[derive(Debug, Default)]
pub struct Autoscalers {
    /// Held only to find a pipeline's slot; each pipeline's own lock is held
    /// through its observation, so a slow broker delays only its pipelines.
    states: std::sync::Mutex<HashMap<(String, String), Slot>>,
}

/// Pool level 0..1 of `pools` between each stage's bounds, averaged.
pub fn pool_level(pp: &PixelPipeline, pools: &Pools) -> f64 {
    let level = |b: &StagePool, n: i32| {
        let span = (b.max_workers - b.min_workers).max(0);
        if span == 0 {
            1.0
        } else {
            f64::from(n - b.min_workers) / f64::from(span)
        }
    };
    let levels = pp
        .spec
        .stages
        .as_ref()
        .zip(*pools)
        .map(|_, (b, n)| level(b, n));
    levels.values().sum::<f64>() / 4.0
}

/// The pool sizes at `level` (0..1) between each stage's bounds.
pub fn pools_at(pp: &PixelPipeline, level: f64) -> Pools {
    pp.spec.stages.as_ref().map(|_, b| {
        b.min_workers
            + (level.clamp(0.0, 1.0) * f64::from((b.max_workers - b.min_workers).max(0))).round()
                as i32
    })
}

pub fn tuning(pp: &PixelPipeline) -> Tuning {
    let a = &pp.spec.autoscaling;
    let interval = f64::from(a.observation_interval_seconds.max(1));
    Tuning {
        interval,
        scale_down_window: f64::from(a.scale_down_stabilization_seconds.max(0)),
        settle: settle(
            f64::from(a.pod_start_seconds.max(0)),
            f64::from(a.rebalance_seconds.max(0)),
            interval,
        ),
        ..Tuning::default()
    }
}

fn key_of(pp: &PixelPipeline) -> (String, String) {
    (
        pp.metadata.namespace.clone().unwrap_or_default(),
        pp.metadata.name.clone().unwrap_or_default(),
    )
}

fn source_of(pp: &PixelPipeline) -> Source {
    let k = &pp.spec.kafka;
    (
        k.bootstrap_servers.clone(),
        k.input_topic.clone(),
        pp.consumer_group(),
    )
}

impl Autoscalers {
    /// Drops the memory (and closes the lag observer) of every pipeline for
    /// which `exists` says no, among those known before `listed_at` (one
    /// created since may be missing from the list); returns the keys dropped.
    pub fn forget_missing(
        &self,
        exists: impl Fn(&(String, String)) -> bool,
        listed_at: Instant,
    ) -> Vec<(String, String)> {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<_> = states
            .iter()
            .filter(|(k, s)| s.since < listed_at && !exists(k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            states.remove(k);
        }
        gone
    }

    /// Pipelines with autoscaling memory.
    pub fn observing(&self) -> usize {
        self.states.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The pipeline's memory, created on first sight; `None` (and forgotten)
    /// when autoscaling is Disabled.
    fn slot(&self, pp: &PixelPipeline, now: Instant) -> Option<Arc<tokio::sync::Mutex<State>>> {
        let key = key_of(pp);
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states.retain(|_, s| now.duration_since(s.last_seen) < FORGET_AFTER);
        if pp.spec.autoscaling.mode == AutoscalingMode::Disabled {
            states.remove(&key);
            return None;
        }
        if states.len() >= MAX_PIPELINES && !states.contains_key(&key) {
            let oldest = states
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                states.remove(&k);
            }
        }
        let slot = states.entry(key).or_insert_with(|| Slot {
            since: now,
            last_seen: now,
            state: Arc::new(tokio::sync::Mutex::new(State::fresh(source_of(pp), now))),
        });
        slot.last_seen = now;
        Some(slot.state.clone())
    }

    /// Observes (if an interval has passed) and decides. `None` when
    /// autoscaling is Disabled. `security` reads the pipeline's Kafka
    /// credentials and their fingerprint, or says why it cannot (then nothing
    /// is observed or decided); it runs only when an observation is due.
    pub async fn step(
        &self,
        pp: &PixelPipeline,
        epoch: Instant,
        security: impl Future<Output = Result<(Security, String), String>>,
    ) -> Option<Step> {
        let now = Instant::now();
        let slot = self.slot(pp, now)?;
        let mut guard = slot.lock().await;
        let state = &mut *guard;
        let source = source_of(pp);
        if state.source != source {
            *state = State::fresh(source, now);
        }
        let tuning = tuning(pp);
        if now < state.next_observation {
            // Between observations: report the last one, decide nothing.
            let last = state.history.latest();
            return Some(Step {
                lag: last.map(Snapshot::lag),
                oldest_age: last.map(Snapshot::oldest_age),
                ..Step::default()
            });
        }
        state.next_observation = now + Duration::from_secs_f64(tuning.interval);
        let snapshot = match observe(pp, state, security).await {
            Ok(s) => s,
            Err(reason) => {
                return Some(Step {
                    kafka_error: Some(reason),
                    ..Step::default()
                });
            }
        };
        Some(decide(
            pp,
            state,
            snapshot,
            &tuning,
            now.duration_since(epoch),
        ))
    }
}

/// Reads the credentials, (re)builds the observer if anything changed, and
/// takes a snapshot; `Err` says in words why Kafka could not be read.
async fn observe(
    pp: &PixelPipeline,
    state: &mut State,
    security: impl Future<Output = Result<(Security, String), String>>,
) -> Result<Snapshot, String> {
    let (security, credentials) = security.await?;
    if state.credentials != credentials {
        let next = state.next_observation;
        *state = State::fresh(source_of(pp), Instant::now());
        state.next_observation = next;
        state.credentials = credentials;
    }
    let observer = match &state.observer {
        Some(o) => o.clone(),
        None => {
            let o = Arc::new(connect(pp, security)?);
            state.observer = Some(o.clone());
            o
        }
    };
    let brokers = &pp.spec.kafka.bootstrap_servers;
    match tokio::task::spawn_blocking(move || observer.snapshot()).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            // The condition's message stays the same while the cause does,
            // so a retry that fails alike writes nothing; the detail is logged.
            tracing::warn!(pipeline = %key_text(pp), error = %e, "cannot read lag from Kafka");
            Err(format!("cannot read lag from Kafka at {brokers}"))
        }
        Err(e) => Err(format!("the lag observer failed: {e}")),
    }
}

fn connect(pp: &PixelPipeline, security: Security) -> Result<Observer, String> {
    let k = &pp.spec.kafka;
    let kafka = KafkaSettings {
        bootstrap_servers: k.bootstrap_servers.clone(),
        options: k
            .options
            .iter()
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect(),
        security,
    };
    Observer::new(&kafka, &k.input_topic, &pp.consumer_group()).map_err(|e| {
        tracing::warn!(pipeline = %key_text(pp), error = %e, "cannot create a Kafka client");
        format!("cannot create a Kafka client for {}", k.bootstrap_servers)
    })
}

/// Records the snapshot and runs the policy on the window's signals.
fn decide(
    pp: &PixelPipeline,
    state: &mut State,
    snapshot: Snapshot,
    tuning: &Tuning,
    since_epoch: Duration,
) -> Step {
    let partitions = i32::try_from(snapshot.partitions.len()).unwrap_or(i32::MAX);
    let mut step = Step {
        lag: Some(snapshot.lag()),
        oldest_age: Some(snapshot.oldest_age()),
        ..Step::default()
    };
    // Rates over three intervals damp the 2-second commit cadence.
    state
        .history
        .push(snapshot, Duration::from_secs_f64(3.0 * tuning.interval));
    let Some(signals) = state.history.signals(since_epoch.as_secs_f64()) else {
        return step;
    };
    step.arrival_rate = Some(signals.arrival_rate);
    step.processing_rate = Some(signals.processing_rate);
    let running = sizes::current(pp);
    let current = Current {
        replicas: running.replicas,
        pool_level: pool_level(pp, &running.pools),
    };
    let decision = state
        .policy
        .decide(&signals, current, &limits(pp, partitions), tuning);
    let decided = Sizes {
        replicas: decision.replicas,
        pools: if decision.pool_level == current.pool_level {
            running.pools
        } else {
            pools_at(pp, decision.pool_level)
        },
    };
    if decided != running {
        report_change(pp, &mut step, &decision, running, decided);
    }
    step.decision = Some(decision);
    step
}

fn limits(pp: &PixelPipeline, partitions: i32) -> Limits {
    Limits {
        min_replicas: pp.spec.replicas.min,
        max_replicas: pp.spec.replicas.max,
        partitions,
        slo_seconds: f64::from(pp.spec.slo.max_event_age_seconds),
    }
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
    let running_level = pool_level(pp, &running.pools);
    step.up = decided.replicas > running.replicas
        || (decided.replicas == running.replicas && decision.pool_level > running_level);
    if pp.spec.autoscaling.mode == AutoscalingMode::Enabled {
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

fn key_text(pp: &PixelPipeline) -> String {
    let (namespace, name) = key_of(pp);
    format!("{namespace}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pixelpipe_crds::PerStage;

    fn sample() -> PixelPipeline {
        pixelpipe_crds::yaml::from_str(include_str!("../../manifests/samples/storefront.yaml"))
            .expect("sample")
    }

    #[test]
    fn pool_levels_map_to_sizes_within_each_stages_bounds() {
        let pp = sample();
        let p = |s: &str| s.parse::<PerStage<i32>>().expect("pools");
        assert_eq!(pools_at(&pp, 1.0), p("16/16/16/32"));
        assert_eq!(pools_at(&pp, 0.0), p("1/1/1/1"));
        assert_eq!(pool_level(&pp, &pools_at(&pp, 1.0)), 1.0);
        assert_eq!(pool_level(&pp, &pools_at(&pp, 0.0)), 0.0);
        assert_eq!(pools_at(&pp, 0.5), p("9/9/9/17"));
    }
}
