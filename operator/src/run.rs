//! Wiring of `pixelpipe-operator run`: the admin endpoint, leader election,
//! and the controller, which runs only while this replica holds the Lease.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::ListParams;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use pixelpipe_crds::PixelPipeline;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::arrivals::ArrivalBook;
use crate::autoscale::Autoscalers;
use crate::children::FIELD_MANAGER;
use crate::cli::RunArgs;
use crate::leader::Elector;
use crate::metrics::Metrics;
use crate::mirror::Triggers;
use crate::observer::Clusters;
use crate::pods;
use crate::reconcile::{Context, error_policy, reconcile};
use crate::scalers;

/// Runs until SIGTERM/SIGINT (exit 0, Lease released) or until leadership is
/// lost (exit 1, so the pod restarts as a standby with a clean state).
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let client = Client::try_default()
        .await
        .context("no Kubernetes configuration (kubeconfig or in-cluster)")?;
    let identity = args.identity();
    let metrics = Arc::new(Metrics::default());
    let arrivals = Arc::new(ArrivalBook::default());
    let ready = Arc::new(AtomicBool::new(false));
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            pixelpipe_runtime::shutdown::signal().await;
            tracing::info!("shutting down");
            stop.cancel();
        }
    });

    let listener = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.admin_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "admin endpoint listening");
    let admin_stop = CancellationToken::new();
    let admin = tokio::spawn(admin::serve(
        listener,
        AdminState {
            metrics: metrics.clone(),
            ready: ready.clone(),
            arrivals: arrivals.clone(),
        },
        admin_stop.clone(),
    ));

    let shared = Shared {
        metrics,
        ready,
        arrivals,
    };
    let exit = lead(&args, client, identity, shared, &stop).await;
    admin_stop.cancel();
    let _ = admin.await;
    exit
}

/// What outlives a term as leader.
struct Shared {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    arrivals: Arc<ArrivalBook>,
}

async fn lead(
    args: &RunArgs,
    client: Client,
    identity: String,
    shared: Shared,
    stop: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    let Shared {
        metrics,
        ready,
        arrivals,
    } = shared;
    if !answered(&client, &identity, stop).await {
        return Ok(ExitCode::SUCCESS);
    }
    // Ready once the API server answers, leader or not.
    ready.store(true, Ordering::Relaxed);

    let elector = Elector {
        api: Api::<Lease>::namespaced(client.clone(), &args.lease_namespace),
        lease: args.lease_name.clone(),
        identity: identity.clone(),
        duration: args.lease_duration(),
        renew_every: args.lease_renew(),
    };
    // A lost Lease (the API server was unreachable past the renew deadline, or
    // another replica took over) stops the controller; this process then
    // campaigns again, so an API server outage heals without a restart.
    loop {
        if !elector.acquire(stop).await {
            return Ok(ExitCode::SUCCESS);
        }
        metrics.leader.set(1);
        let (ctx, watches, triggers) = term(args, &client, &identity, &metrics, &arrivals).await;
        let controller_stop = CancellationToken::new();
        let hold = async {
            let kept = elector.hold(stop).await;
            controller_stop.cancel();
            kept
        };
        let (kept, ()) = tokio::join!(
            hold,
            control(args, client.clone(), ctx, triggers, controller_stop.clone())
        );
        for watch in watches {
            watch.abort();
        }
        metrics.leader.set(0);
        metrics.lag_observers.set(0);
        metrics.kafka_clients.set(0);
        // A standby exports no pipeline: the new leader's numbers are the
        // only ones, and the alerts never read a stale copy.
        metrics.pipelines.retain(|_| false);
        if kept {
            elector.release().await;
            return Ok(ExitCode::SUCCESS);
        }
        tracing::error!("lost leadership; stopped reconciling, campaigning again");
    }
}

/// What one term as leader reconciles with, fresh so that nothing decided
/// under a lost Lease carries over, and the watches that feed it (abort them
/// when the term ends).
async fn term(
    args: &RunArgs,
    client: &Client,
    identity: &str,
    metrics: &Arc<Metrics>,
    arrivals: &Arc<ArrivalBook>,
) -> (
    Arc<Context>,
    [tokio::task::JoinHandle<()>; 2],
    [Triggers; 2],
) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(identity.to_string()),
        },
    );
    let ns = args.namespace.as_deref();
    let (pods, watch_pods, stopped) = pods::watch(scoped::<Pod>(client, ns));
    let (scalers, watch_scalers, rescaled) =
        scalers::watch(scoped::<HorizontalPodAutoscaler>(client, ns));
    let watches = [tokio::spawn(watch_pods), tokio::spawn(watch_scalers)];
    // Reconciling before the HPAs are known would take an HPA's replicas
    // back once per term; bounded, so a missing grant only delays.
    if tokio::time::timeout(Duration::from_secs(10), scalers.ready())
        .await
        .is_err()
    {
        tracing::warn!(
            "HorizontalPodAutoscalers not listed within 10 s (RBAC?); reconciling without"
        );
    }
    let ctx = Context::new(
        client.clone(),
        recorder,
        metrics.clone(),
        Duration::from_secs(args.resync_seconds.max(1)),
        pods,
        scalers,
        Autoscalers::new(
            arrivals.clone(),
            Clusters::new(usize::from(args.kafka_clients_per_cluster)),
        ),
    );
    (Arc::new(ctx), watches, [stopped, rescaled])
}

/// Waits until the API server answers; `false` if stopped first.
async fn answered(client: &Client, identity: &str, stop: &CancellationToken) -> bool {
    loop {
        match client.apiserver_version().await {
            Ok(v) => {
                tracing::info!(server = %v.git_version, %identity, "connected to the API server");
                return true;
            }
            Err(e) => tracing::warn!(error = %e, "the API server does not answer yet"),
        }
        tokio::select! {
            () = stop.cancelled() => return false,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The controller also reconciles a pipeline when one of its children
/// changes, and counts the change ([`crate::applied`]).
fn owned<K>(
    c: Controller<PixelPipeline>,
    client: &Client,
    namespace: Option<&str>,
    ctx: &Arc<Context>,
) -> Controller<PixelPipeline>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    // Only what this operator created: the watch caches stay small.
    let children =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    let ctx = ctx.clone();
    let touched = watcher(scoped::<K>(client, namespace), children)
        .default_backoff()
        .touched_objects()
        .inspect_ok(move |child| ctx.applied.touched(child));
    c.owns_stream(touched)
}

/// Pipelines to reconcile: each new spec (a new generation), not each
/// status write, which the operator makes itself at every observation; the
/// observations come from the requeue.
fn pipelines(client: &Client, namespace: Option<&str>) -> Controller<PixelPipeline> {
    let (reader, writer) = reflector::store();
    let changed = watcher(
        scoped::<PixelPipeline>(client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(writer)
    .applied_objects()
    .predicate_filter(predicates::generation, Default::default());
    Controller::for_stream(changed, reader)
}

/// Runs the controller until `stop`, letting running reconciles finish.
/// Besides new specs, children's changes and requeues, a pipeline is
/// reconciled when one of its worker pods' containers stopped, and when an
/// HPA that scales it or its workers comes, changes or goes (`triggers`).
async fn control(
    args: &RunArgs,
    client: Client,
    ctx: Arc<Context>,
    triggers: [Triggers; 2],
    stop: CancellationToken,
) {
    let ns = args.namespace.as_deref();
    let mut c = pipelines(&client, ns)
        .with_config(controller::Config::default().concurrency(args.concurrency.max(1)));
    for mut t in triggers {
        c = c.reconcile_on(futures::stream::poll_fn(move |cx| t.poll_recv(cx)));
    }
    c = owned::<Deployment>(c, &client, ns, &ctx);
    c = owned::<ConfigMap>(c, &client, ns, &ctx);
    c = owned::<ServiceAccount>(c, &client, ns, &ctx);
    c = owned::<Role>(c, &client, ns, &ctx);
    c = owned::<RoleBinding>(c, &client, ns, &ctx);
    c = owned::<PodDisruptionBudget>(c, &client, ns, &ctx);
    let reaper = tokio::spawn(reap_deleted(
        scoped::<PixelPipeline>(&client, ns),
        ctx.clone(),
        stop.clone(),
    ));
    tracing::info!(
        namespace = ns.unwrap_or("<all>"),
        "reconciling PixelPipelines"
    );
    c.graceful_shutdown_on(async move { stop.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
    let _ = reaper.await;
}

/// How often the autoscaling memory of deleted pipelines is dropped.
const REAP_EVERY: Duration = Duration::from_secs(5);

/// Deleted pipelines are never reconciled again (no finalizer: deleting a
/// pipeline must not wait for the operator), so their lag observers, each a
/// Kafka client, are closed here: every few seconds one metadata-only list of
/// the pipelines, and the memory of any not on it is dropped. Their children
/// go by owner references (the garbage collector). A failed list drops nothing.
async fn reap_deleted(api: Api<PixelPipeline>, ctx: Arc<Context>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(REAP_EVERY) => {}
        }
        let listed_at = std::time::Instant::now();
        match api.list_metadata(&ListParams::default()).await {
            Ok(list) => {
                let live: HashSet<(String, String)> = list
                    .items
                    .iter()
                    .map(|m| (m.namespace().unwrap_or_default(), m.name_any()))
                    .collect();
                ctx.metrics.pipelines.retain(|key| live.contains(key));
                ctx.applied.retain(|key| live.contains(key));
                for (namespace, name) in ctx
                    .autoscalers
                    .forget_missing(|key| live.contains(key), listed_at)
                {
                    tracing::info!(pipeline = %format!("{namespace}/{name}"), "pipeline deleted; its lag observer is closed");
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot list pipelines; keeping their autoscaling memory")
            }
        }
        ctx.metrics
            .lag_observers
            .set(ctx.autoscalers.observing() as i64);
        ctx.metrics
            .kafka_clients
            .set(ctx.autoscalers.kafka_clients() as i64);
    }
}
