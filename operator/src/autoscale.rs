//! Autoscaling inside the reconcile: each pipeline's lag observer, policy and
//! history, kept between reconciles, and the step that turns an observation
//! into sizes, a status report and Events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pixelpipe_crds::{AutoscalingMode, PixelPipeline, PoolSizes, StagePool};

use pixelpipe_worker::kafka::Security;

use crate::children::consumer_group;
use crate::observer::{History, Observer};
use crate::policy::{Current, Decision, Limits, Policy, Tuning, settle};
use crate::sizes::{self, Sizes};

/// Pipelines whose autoscaling state is kept at most; beyond it the least
/// recently seen are dropped (their observer reconnects when next seen).
const MAX_PIPELINES: usize = 1024;
/// An entry not reconciled for this long belongs to a deleted pipeline.
const FORGET_AFTER: Duration = Duration::from_secs(900);

/// One pipeline's autoscaling memory.
#[derive(Debug)]
pub struct State {
    observer: Option<Arc<Observer>>,
    /// What the observer was built for (brokers, topic, group, credentials'
    /// versions); a change of any rebuilds it.
    source: (String, String, String),
    /// Versions of the credentials the observer was built with.
    credentials: String,
    history: History,
    policy: Policy,
    next_observation: Instant,
}

impl State {
    fn fresh(source: (String, String, String), now: Instant) -> Self {
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
#[derive(Debug, Clone, PartialEq)]
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
pub fn pool_level(pp: &PixelPipeline, pools: &PoolSizes) -> f64 {
    let s = &pp.spec.stages;
    let level = |b: &StagePool, n: i32| {
        let span = (b.max_workers - b.min_workers).max(0);
        if span == 0 {
            1.0
        } else {
            f64::from(n - b.min_workers) / f64::from(span)
        }
    };
    (level(&s.parse, pools.parse)
        + level(&s.validate, pools.validate)
        + level(&s.augment, pools.augment)
        + level(&s.produce, pools.produce))
        / 4.0
}

/// The pool sizes at `level` (0..1) between each stage's bounds.
pub fn pools_at(pp: &PixelPipeline, level: f64) -> PoolSizes {
    let s = &pp.spec.stages;
    let at = |b: &StagePool| {
        b.min_workers
            + (level.clamp(0.0, 1.0) * f64::from((b.max_workers - b.min_workers).max(0))).round()
                as i32
    };
    PoolSizes {
        parse: at(&s.parse),
        validate: at(&s.validate),
        augment: at(&s.augment),
        produce: at(&s.produce),
    }
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

    /// Observes (if an interval has passed) and decides. `None` when
    /// autoscaling is Disabled.
    /// `security` reads the pipeline's Kafka credentials and their
    /// fingerprint, or says why it cannot (then nothing is observed or
    /// decided); it runs only when an observation is due.
    pub async fn step(
        &self,
        pp: &PixelPipeline,
        epoch: Instant,
        security: impl Future<Output = Result<(Security, String), String>>,
    ) -> Option<Step> {
        let mode = pp.spec.autoscaling.mode;
        let key = (
            pp.metadata.namespace.clone().unwrap_or_default(),
            pp.metadata.name.clone().unwrap_or_default(),
        );
        let k = &pp.spec.kafka;
        let source = (
            k.bootstrap_servers.clone(),
            k.input_topic.clone(),
            consumer_group(pp),
        );
        let now = Instant::now();
        let slot = {
            let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
            states.retain(|_, s| now.duration_since(s.last_seen) < FORGET_AFTER);
            if mode == AutoscalingMode::Disabled {
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
                state: Arc::new(tokio::sync::Mutex::new(State::fresh(source.clone(), now))),
            });
            slot.last_seen = now;
            slot.state.clone()
        };
        let mut guard = slot.lock().await;
        let state = &mut *guard;
        if state.source != source {
            *state = State::fresh(source.clone(), now);
        }
        let tuning = tuning(pp);
        let mut step = Step {
            apply: None,
            lag: None,
            oldest_age: None,
            arrival_rate: None,
            processing_rate: None,
            decision: None,
            recommended: None,
            up: false,
            summary: None,
            kafka_error: None,
        };
        if now < state.next_observation {
            // Between observations: report the last one, decide nothing.
            if let Some(s) = state.history.latest() {
                step.lag = Some(s.lag());
                step.oldest_age = Some(s.oldest_age());
            }
            return Some(step);
        }
        state.next_observation = now + Duration::from_secs_f64(tuning.interval);
        let security = match security.await {
            Ok((security, credentials)) => {
                if state.credentials != credentials {
                    *state = State::fresh(source.clone(), now);
                    state.next_observation = now + Duration::from_secs_f64(tuning.interval);
                    state.credentials = credentials;
                }
                security
            }
            Err(reason) => {
                step.kafka_error = Some(reason);
                return Some(step);
            }
        };
        let observer = match &state.observer {
            Some(o) => o.clone(),
            None => {
                let options: Vec<(String, String)> = k
                    .options
                    .iter()
                    .map(|(a, b)| (a.clone(), b.clone()))
                    .chain(
                        security
                            .properties()
                            .into_iter()
                            .map(|(a, b)| (a.to_string(), b)),
                    )
                    .collect();
                match Observer::new(&source.0, &source.1, &source.2, &options) {
                    Ok(o) => {
                        let o = Arc::new(o);
                        state.observer = Some(o.clone());
                        o
                    }
                    Err(e) => {
                        tracing::warn!(pipeline = %key_text(pp), error = %e, "cannot create a Kafka client");
                        step.kafka_error =
                            Some(format!("cannot create a Kafka client for {}", source.0));
                        return Some(step);
                    }
                }
            }
        };
        let snapshot = tokio::task::spawn_blocking(move || observer.snapshot()).await;
        let snapshot = match snapshot {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                // The condition's message stays the same while the cause does,
                // so a retry that fails alike writes nothing; the detail is logged.
                tracing::warn!(pipeline = %key_text(pp), error = %e, "cannot read lag from Kafka");
                step.kafka_error = Some(format!("cannot read lag from Kafka at {}", source.0));
                return Some(step);
            }
            Err(e) => {
                step.kafka_error = Some(format!("the lag observer failed: {e}"));
                return Some(step);
            }
        };
        let partitions = i32::try_from(snapshot.partitions.len()).unwrap_or(i32::MAX);
        step.lag = Some(snapshot.lag());
        step.oldest_age = Some(snapshot.oldest_age());
        // Rates over three intervals damp the 2-second commit cadence.
        state
            .history
            .push(snapshot, Duration::from_secs_f64(3.0 * tuning.interval));
        let Some(signals) = state
            .history
            .signals(now.duration_since(epoch).as_secs_f64())
        else {
            return Some(step);
        };
        step.arrival_rate = Some(signals.arrival_rate);
        step.processing_rate = Some(signals.processing_rate);
        let running = sizes::current(pp);
        let limits = Limits {
            min_replicas: pp.spec.replicas.min,
            max_replicas: pp.spec.replicas.max,
            partitions,
            slo_seconds: f64::from(pp.spec.slo.max_event_age_seconds),
        };
        let current = Current {
            replicas: running.replicas,
            pool_level: pool_level(pp, &running.pools),
        };
        let decision = state.policy.decide(&signals, current, &limits, &tuning);
        let decided = Sizes {
            replicas: decision.replicas,
            pools: if decision.pool_level == current.pool_level {
                running.pools
            } else {
                pools_at(pp, decision.pool_level)
            },
        };
        if decided != running {
            let change = change_words(&running, &decided);
            step.up = decided.replicas > running.replicas
                || (decided.replicas == running.replicas
                    && decision.pool_level > current.pool_level);
            if mode == AutoscalingMode::Enabled {
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
        step.decision = Some(decision);
        Some(step)
    }
}

fn key_text(pp: &PixelPipeline) -> String {
    format!(
        "{}/{}",
        pp.metadata.namespace.as_deref().unwrap_or_default(),
        pp.metadata.name.as_deref().unwrap_or_default()
    )
}

/// "42s", "3m07s", "1h02m".
pub fn age_text(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// What a decision changes, in words: "replicas 2 -> 4, pools 2/2/2/2 -> 32/32/32/32".
pub fn change_words(from: &Sizes, to: &Sizes) -> String {
    let mut parts = Vec::new();
    if from.replicas != to.replicas {
        parts.push(format!("replicas {} -> {}", from.replicas, to.replicas));
    }
    if from.pools != to.pools {
        parts.push(format!(
            "pools {} -> {}",
            sizes::summary(&from.pools),
            sizes::summary(&to.pools)
        ));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PixelPipeline {
        serde_yaml::from_str(include_str!("../../manifests/samples/storefront.yaml"))
            .expect("sample")
    }

    #[test]
    fn pool_levels_map_to_sizes_within_each_stages_bounds() {
        let pp = sample();
        assert_eq!(
            pools_at(&pp, 1.0),
            PoolSizes {
                parse: 16,
                validate: 16,
                augment: 16,
                produce: 32
            }
        );
        assert_eq!(
            pools_at(&pp, 0.0),
            PoolSizes {
                parse: 1,
                validate: 1,
                augment: 1,
                produce: 1
            }
        );
        assert_eq!(pool_level(&pp, &pools_at(&pp, 1.0)), 1.0);
        assert_eq!(pool_level(&pp, &pools_at(&pp, 0.0)), 0.0);
        let half = pools_at(&pp, 0.5);
        assert_eq!(
            half,
            PoolSizes {
                parse: 9,
                validate: 9,
                augment: 9,
                produce: 17
            }
        );
    }

    #[test]
    fn ages_and_changes_read_well() {
        assert_eq!(age_text(42.4), "42s");
        assert_eq!(age_text(187.0), "3m07s");
        assert_eq!(age_text(3_720.0), "1h02m");
        let a = Sizes {
            replicas: 2,
            pools: PoolSizes {
                parse: 2,
                validate: 2,
                augment: 2,
                produce: 2,
            },
        };
        let b = Sizes {
            replicas: 4,
            pools: PoolSizes {
                parse: 2,
                validate: 2,
                augment: 2,
                produce: 8,
            },
        };
        assert_eq!(
            change_words(&a, &b),
            "replicas 2 -> 4, pools 2/2/2/2 -> 2/2/2/8"
        );
    }
}
