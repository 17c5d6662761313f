//! Autoscaling inside the reconcile: each pipeline's memory kept between
//! reconciles ([`state`]), the observation built from Kafka, the worker pods
//! and their evidence ([`observe`]), and the policy's decision turned into
//! sizes, a status report and Events ([`decide`]).

mod decide;
mod observe;
mod state;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pixelpipe_crds::{AutoscalingMode, PixelPipeline};
use pixelpipe_policy::Tuning;
use pixelpipe_runtime::http::Http;
use pixelpipe_runtime::{KafkaSettings, Security};

pub use decide::{Seen, Step};

use crate::MAX_PIPELINES;
use crate::arrivals::ArrivalBook;
use crate::observer::{Clusters, ObserveError, Snapshot};
use crate::pods::WorkerPod;
use crate::scrape::scrape;
use crate::sizes::Sizes;
use state::{Source, State};

/// An entry not reconciled for this long belongs to a deleted pipeline.
const FORGET_AFTER: Duration = Duration::from_secs(900);

type Key = (String, String);

#[derive(Debug)]
struct Slot {
    since: Instant,
    last_seen: Instant,
    state: Arc<tokio::sync::Mutex<State>>,
}

/// All pipelines' autoscaling state.
#[derive(Debug)]
pub struct Autoscalers {
    /// Held only to find a pipeline's slot; each pipeline's own lock is held
    /// through its observation, so a slow broker delays only its pipelines.
    states: std::sync::Mutex<HashMap<Key, Slot>>,
    http: Http,
    arrivals: Arc<ArrivalBook>,
    /// The Kafka clients the pipelines' observations share.
    clusters: Clusters,
}

pub fn tuning(pp: &PixelPipeline) -> Tuning {
    let a = &pp.spec.autoscaling;
    Tuning {
        interval: f64::from(a.observation_interval_seconds.max(1)),
        scale_down_window: f64::from(a.scale_down_stabilization_seconds.max(0)),
        pod_start: f64::from(a.pod_start_seconds.max(0)),
        rebalance: f64::from(a.rebalance_seconds.max(0)),
        stuck_after: f64::from(a.stuck_after_seconds.max(1)),
        ..Tuning::default()
    }
}

fn key_of(pp: &PixelPipeline) -> Key {
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
    /// Autoscalers that record each pipeline's arrivals in `arrivals` and
    /// read Kafka through `clusters`.
    pub fn new(arrivals: Arc<ArrivalBook>, clusters: Clusters) -> Self {
        Self {
            states: std::sync::Mutex::default(),
            http: Http::default(),
            arrivals,
            clusters,
        }
    }

    /// Drops the memory (and closes the lag observer) of every pipeline for
    /// which `exists` says no, among those known before `listed_at` (one
    /// created since may be missing from the list); returns the keys dropped.
    pub fn forget_missing(&self, exists: impl Fn(&Key) -> bool, listed_at: Instant) -> Vec<Key> {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<_> = states
            .iter()
            .filter(|(k, s)| s.since < listed_at && !exists(k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            states.remove(k);
            self.arrivals.forget(k);
        }
        gone
    }

    /// Pipelines with autoscaling memory.
    pub fn observing(&self) -> usize {
        self.states.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Kafka clients open for the observations.
    pub fn kafka_clients(&self) -> usize {
        self.clusters.open().1
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

    /// The sizes that run while another scaler (an HPA on the worker
    /// Deployment) chooses the replicas: the next decision starts from
    /// them, so replicas taken back keep the count that runs, not one this
    /// operator applied before the HPA came.
    pub async fn run_by_another(&self, pp: &PixelPipeline, sizes: Sizes) {
        if let Some(slot) = self.slot(pp, Instant::now()) {
            slot.lock().await.applied = Some(sizes);
        }
    }

    /// Observes (if an interval has passed) and decides. `None` when
    /// autoscaling is Disabled. `pods` are the pipeline's worker pods, whose
    /// evidence is read; `security` is the pipeline's Kafka credentials and
    /// their fingerprint, or why they could not be read (then nothing is
    /// observed or decided).
    pub async fn step(
        &self,
        pp: &PixelPipeline,
        epoch: Instant,
        pods: &[WorkerPod],
        security: Result<(Security, String), String>,
    ) -> Option<Step> {
        let now = Instant::now();
        let slot = self.slot(pp, now)?;
        let mut guard = slot.lock().await;
        let state = &mut *guard;
        let mut step = self.run(pp, state, now, epoch, pods, security).await;
        // The controller's cache may not show the last status write yet: the
        // last decision in words comes from here, not from the cached status.
        if let Some(summary) = &step.summary {
            state.last_decision = Some(summary.clone());
        }
        step.last_decision = state.last_decision.clone();
        Some(step)
    }

    async fn run(
        &self,
        pp: &PixelPipeline,
        state: &mut State,
        now: Instant,
        epoch: Instant,
        pods: &[WorkerPod],
        security: Result<(Security, String), String>,
    ) -> Step {
        let source = source_of(pp);
        if state.source != source {
            *state = State::fresh(source, now);
        }
        let tuning = tuning(pp);
        let clock = now.duration_since(epoch).as_secs_f64();
        if let Some(step) = decide::scaled_by_hand(pp, state, &tuning, clock) {
            return step;
        }
        if now < state.next_observation {
            // Between observations: report the last one, decide nothing.
            let run = decide::running(pp, state);
            return Step {
                seen: state.history.latest().map(Seen::of),
                run: decide::enabled(pp).then_some(run),
                ..Step::default()
            };
        }
        state.next_observation = now + Duration::from_secs_f64(tuning.interval);
        let (snapshot, reports) =
            tokio::join!(self.observe(pp, state, security), scrape(&self.http, pods));
        let snapshot = match snapshot {
            Ok(s) => s,
            Err(reason) => {
                return Step {
                    observed: true,
                    kafka_error: Some(reason),
                    ..Step::default()
                };
            }
        };
        let at_ms = snapshot.at_ms;
        let mut step = decide::decide(pp, state, snapshot, &reports, pods, &tuning, clock);
        step.observed = true;
        if let Some((arrivals, _)) = step.seen.and_then(|s| s.rates) {
            self.arrivals.record(&key_of(pp), at_ms, arrivals);
        }
        step
    }

    /// Takes the credentials, (re)joins the cluster's client pool if
    /// anything changed, and takes a snapshot; `Err` says in words why Kafka
    /// could not be read.
    async fn observe(
        &self,
        pp: &PixelPipeline,
        state: &mut State,
        security: Result<(Security, String), String>,
    ) -> Result<Snapshot, String> {
        let (security, credentials) = security?;
        if state.credentials != credentials {
            let next = state.next_observation;
            *state = State::fresh(source_of(pp), Instant::now());
            state.next_observation = next;
            state.credentials = credentials;
        }
        let cluster = state
            .cluster
            .get_or_insert_with(|| self.clusters.get(settings(pp, security)))
            .clone();
        let k = &pp.spec.kafka;
        match cluster.snapshot(&k.input_topic, &pp.consumer_group()).await {
            Ok(s) => Ok(s),
            Err(ObserveError::Kafka(e)) => {
                // The condition's message stays the same while the cause
                // does, so a retry that fails alike writes nothing; the
                // detail is logged.
                tracing::warn!(pipeline = %key_text(pp), error = %e, "cannot read lag from Kafka");
                Err(format!(
                    "cannot read lag from Kafka at {}",
                    k.bootstrap_servers
                ))
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

fn settings(pp: &PixelPipeline, security: Security) -> KafkaSettings {
    let k = &pp.spec.kafka;
    KafkaSettings {
        bootstrap_servers: k.bootstrap_servers.clone(),
        options: k
            .options
            .iter()
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect(),
        security,
    }
}

fn key_text(pp: &PixelPipeline) -> String {
    let (namespace, name) = key_of(pp);
    format!("{namespace}/{name}")
}
