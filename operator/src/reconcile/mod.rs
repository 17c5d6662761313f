//! One reconcile of one PixelPipeline: validate -> build children (pure) ->
//! apply them -> write the status. Errors say which step failed; transient
//! ones are retried with backoff, an invalid spec waits for the next change.

mod write;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use pixelpipe_crds::{PixelPipeline, PixelPipelineStatus};

use pixelpipe_crds::reasons::{ConditionType, EventReason, condition_status, find_condition};

use crate::applied::AppliedChildren;
use crate::autoscale::{Autoscalers, Step as ScaleStep};
use crate::children::{self, CREDENTIALS_ANNOTATION, ChildError, FIELD_MANAGER};
use crate::conditions::{Observation, Problem, Rollout};
use crate::credentials::KafkaSecrets;
use crate::events;
pub use crate::failure::{Error, PERMANENT_RETRY, backoff};
use crate::metrics::{Metrics, Outcome, OutcomeLabel, StepLabel};
use crate::pods::WorkerPods;
use crate::scalers::Scalers;
use crate::sizes;
use pixelpipe_runtime::Security;

/// Most pipelines whose failure count is remembered for backoff; beyond it the
/// counts restart, which only shortens some delays.
const MAX_TRACKED_FAILURES: usize = 4096;

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Delay before a healthy pipeline is looked at again without a change.
    pub resync: Duration,
    failures: Mutex<HashMap<(String, String), u32>>,
    /// Lag observers and policy memory per pipeline.
    pub autoscalers: Autoscalers,
    /// The worker pods, for the evidence autoscaling reads.
    pub pods: WorkerPods,
    /// The children as last applied, to skip applies that change nothing.
    pub applied: AppliedChildren,
    /// HorizontalPodAutoscalers, to yield to one that scales the workers.
    pub scalers: Scalers,
    /// The policy's clock starts here.
    epoch: Instant,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("resync", &self.resync)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        resync: Duration,
        pods: WorkerPods,
        scalers: Scalers,
        autoscalers: Autoscalers,
    ) -> Self {
        Self {
            client,
            recorder,
            metrics,
            resync,
            failures: Mutex::default(),
            autoscalers,
            applied: AppliedChildren::default(),
            pods,
            scalers,
            epoch: Instant::now(),
        }
    }

    fn key(pp: &PixelPipeline) -> (String, String) {
        (pp.namespace().unwrap_or_default(), pp.name_any())
    }

    /// Counts a failure; returns how many in a row.
    fn failed(&self, pp: &PixelPipeline) -> u32 {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() >= MAX_TRACKED_FAILURES && !f.contains_key(&Self::key(pp)) {
            f.clear();
        }
        let n = f.entry(Self::key(pp)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    fn succeeded(&self, pp: &PixelPipeline) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.remove(&Self::key(pp));
    }
}

/// The controller's reconcile function.
pub async fn reconcile(pp: Arc<PixelPipeline>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_steps(&pp, &ctx).await;
    let m = &ctx.metrics;
    m.duration.observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => {
            ctx.succeeded(&pp);
            m.reconciles
                .get_or_create(&OutcomeLabel {
                    outcome: Outcome::ok,
                })
                .inc();
        }
        Err(e) => {
            m.reconciles
                .get_or_create(&OutcomeLabel {
                    outcome: Outcome::error,
                })
                .inc();
            m.errors.get_or_create(&StepLabel { step: e.step() }).inc();
            if let Error::Apply { .. } = e {
                report_apply_failure(&pp, &ctx, e).await;
            }
        }
    }
    result
}

/// The controller's error policy: transient failures are retried with
/// exponential backoff; permanent ones wait for a change, checked again
/// every [`PERMANENT_RETRY`].
pub fn error_policy(pp: Arc<PixelPipeline>, error: &Error, ctx: Arc<Context>) -> Action {
    let attempt = ctx.failed(&pp);
    let delay = if error.is_transient() {
        backoff(attempt)
    } else {
        PERMANENT_RETRY
    };
    tracing::warn!(
        pipeline = %format!("{}/{}", pp.namespace().unwrap_or_default(), pp.name_any()),
        error = %error, attempt, retry_in = ?delay, "reconcile failed"
    );
    Action::requeue(delay)
}

async fn reconcile_steps(pp: &PixelPipeline, ctx: &Context) -> Result<Action, Error> {
    let namespace = pp
        .namespace()
        .ok_or(ChildError::MissingMetadata("namespace"))?;
    if let Err(invalid) = pp.spec.check() {
        report_invalid(pp, ctx, &namespace, invalid.to_string()).await?;
        // Nothing to retry: the next edit of the spec triggers a reconcile.
        return Ok(Action::await_change());
    }

    let running = sizes::current(pp);
    let (credentials, security) = kafka_credentials(pp, ctx).await?;
    let pods = ctx.pods.of(&namespace, &pp.name_any());
    let step = ctx.autoscalers.step(pp, ctx.epoch, &pods, security).await;
    let sizes = step.as_ref().and_then(|s| s.run).unwrap_or(running);
    let foreign = ctx.scalers.conflict(pp);
    let replicas = match &foreign {
        Some(f) if f.owns_deployment_replicas() => handed_over(ctx, pp, &namespace).await?,
        _ => Some(sizes.replicas),
    };
    let deployment =
        write::apply_children(ctx, pp, &namespace, replicas, credentials.as_deref()).await?;

    // Replicas left to an HPA: report what runs, not what was not applied,
    // and decide from it.
    let sizes = match replicas {
        None => {
            let runs = sizes::Sizes {
                replicas: deployment
                    .spec
                    .as_ref()
                    .and_then(|s| s.replicas)
                    .unwrap_or(sizes.replicas),
                ..sizes
            };
            ctx.autoscalers.run_by_another(pp, runs).await;
            runs
        }
        Some(_) => sizes,
    };
    let obs = Observation {
        generation: pp.metadata.generation,
        problem: None,
        rollout: Some(Rollout::of(&deployment)),
        foreign,
        failing: pods
            .iter()
            .filter(|p| !p.terminating)
            .filter_map(|p| Some((p.name.clone(), p.failure.clone()?)))
            .collect(),
    };
    let next = write_status(pp, ctx, &namespace, &obs, Some(sizes), step.as_ref()).await?;
    let ready = obs.rollout.as_ref().map_or(0, |r| r.available);
    let slo = f64::from(pp.spec.slo.max_event_age_seconds);
    ctx.metrics.pipelines.update(Context::key(pp), |last| {
        last.next(&next, slo, ready, step.as_ref())
    });
    if let Some(step) = &step {
        autoscaling_events(ctx, pp, step, &next).await;
    }
    Ok(Action::requeue(match step {
        // Observe again after one interval.
        Some(_) => {
            Duration::from_secs_f64(crate::autoscale::tuning(pp).interval.max(1.0)).min(ctx.resync)
        }
        None => ctx.resync,
    }))
}

/// The replicas to apply while an HPA scales the worker Deployment: none
/// once another field manager (the HPA controller) owns `spec.replicas`, so
/// each would not undo the other's count; until then the Deployment's own
/// count, because a field its only manager stops applying is reset to its
/// default (one pod), and the HPA writes only when it changes the count.
async fn handed_over(
    ctx: &Context,
    pp: &PixelPipeline,
    namespace: &str,
) -> Result<Option<i32>, Error> {
    Ok(live_workers(ctx, pp, namespace).await?.and_then(|d| {
        let others_own = crate::apply::managers_of(&d, &["f:spec", "f:replicas"])
            .iter()
            .any(|m| m != FIELD_MANAGER);
        if others_own {
            None
        } else {
            d.spec.and_then(|s| s.replicas)
        }
    }))
}

/// The worker Deployment as stored, if it exists.
async fn live_workers(
    ctx: &Context,
    pp: &PixelPipeline,
    namespace: &str,
) -> Result<Option<Deployment>, Error> {
    let name = children::worker_name(pp);
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    api.get_opt(&name).await.map_err(|source| Error::Apply {
        kind: "Deployment".into(),
        name,
        source,
    })
}

/// Reports a spec the operator cannot run: a Warning Event (once per
/// message) and `Degraded` in the status.
async fn report_invalid(
    pp: &PixelPipeline,
    ctx: &Context,
    namespace: &str,
    message: String,
) -> Result<(), Error> {
    ctx.metrics.invalid_specs.inc();
    let already_reported = pp
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, ConditionType::Degraded))
        .is_some_and(|c| c.status == condition_status(true) && c.message == message);
    if !already_reported {
        tracing::warn!(pipeline = %pp.name_any(), %namespace, %message, "invalid spec");
        publish(
            ctx,
            pp,
            events::warning(EventReason::InvalidSpec, "Validate", message.clone()),
        )
        .await;
    }
    let obs = Observation {
        generation: pp.metadata.generation,
        problem: Some(Problem::InvalidSpec(message)),
        rollout: None,
        foreign: None,
        failing: Vec::new(),
    };
    write_status(pp, ctx, namespace, &obs, None, None).await?;
    Ok(())
}

/// The Kafka Secrets' fingerprint for the pod template, and the security
/// settings for the lag observer (or why there are none). A transient read
/// failure fails the reconcile, to be retried; a Secret the operator may not
/// read (or that is missing) leaves the workers' fingerprint as it is, since
/// only a read Secret's change rolls them.
async fn kafka_credentials(
    pp: &PixelPipeline,
    ctx: &Context,
) -> Result<(Option<String>, Result<(Security, String), String>), Error> {
    let secrets = match KafkaSecrets::read(&ctx.client, pp).await {
        Err(e) if e.is_transient() => return Err(Error::Credentials(e)),
        read => read,
    };
    let fingerprint = match &secrets {
        Ok(s) => Some(s.fingerprint()),
        // Unreadable: the fingerprint the workers run with stays, so they
        // do not roll (and roll back) while a grant or a Secret is missing.
        Err(_) => live_workers(ctx, pp, &pp.namespace().unwrap_or_default())
            .await?
            .and_then(|d| {
                d.spec?
                    .template
                    .metadata?
                    .annotations?
                    .remove(CREDENTIALS_ANNOTATION)
            }),
    };
    let security = secrets
        .and_then(|s| s.security())
        .map(|security| (security, fingerprint.clone().unwrap_or_default()))
        .map_err(|e| e.to_string());
    Ok((fingerprint, security))
}

/// The Events an autoscaling step calls for, published.
async fn autoscaling_events(
    ctx: &Context,
    pp: &PixelPipeline,
    step: &ScaleStep,
    next: &PixelPipelineStatus,
) {
    for event in events::of_step(pp, step, next) {
        tracing::info!(pipeline = %pp.name_any(), note = event.note.as_deref().unwrap_or_default(), "{}", event.reason);
        publish(ctx, pp, event).await;
    }
}

/// Writes the status if it differs from the stored one (an unchanged
/// pipeline costs no write), and returns it.
async fn write_status(
    pp: &PixelPipeline,
    ctx: &Context,
    namespace: &str,
    obs: &Observation,
    sizes: Option<sizes::Sizes>,
    step: Option<&ScaleStep>,
) -> Result<PixelPipelineStatus, Error> {
    // The API stores whole seconds; a finer time would never compare equal.
    let now = Time(
        Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now()),
    );
    let mut next = crate::status::next(pp, obs, sizes, &now);
    if let Some(step) = step {
        crate::status::autoscaling(&mut next, pp, step, &now);
    }
    if pp.status.as_ref() == Some(&next) {
        return Ok(next);
    }
    let api: Api<PixelPipeline> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = serde_json::json!({
        "apiVersion": PixelPipeline::api_version(&()),
        "kind": PixelPipeline::kind(&()),
        "status": next,
    });
    api.patch_status(
        &pp.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::Status)?;
    Ok(next)
}

async fn report_apply_failure(pp: &PixelPipeline, ctx: &Context, error: &Error) {
    let message = error.to_string();
    publish(
        ctx,
        pp,
        events::warning(EventReason::ApplyFailed, "Apply", message.clone()),
    )
    .await;
    let Some(namespace) = pp.namespace() else {
        return;
    };
    let obs = Observation {
        generation: pp.metadata.generation,
        problem: Some(Problem::ApplyFailed(message)),
        rollout: None,
        foreign: None,
        failing: Vec::new(),
    };
    // Best effort: the API server may be the thing that failed.
    if let Err(e) = write_status(pp, ctx, &namespace, &obs, None, None).await {
        tracing::debug!(error = %e, "could not report the apply failure in the status");
    }
}

async fn publish(ctx: &Context, pp: &PixelPipeline, event: Event) {
    events::publish(&ctx.recorder, pp, event).await;
}
