//! The worker's tasks besides the pools: the source, the admin endpoint, the
//! committer, and the follower of pool sizes.

use std::sync::Arc;

use async_channel::Sender;
use tokio::task::JoinHandle;

use super::{Health, PipelineError, Pools, Stops};
use crate::evidence::Reporter;
use crate::job::Job;
use crate::metrics::Metrics;
use crate::occupancy::Waits;
use crate::offsets::OffsetTracker;
use crate::settings::Settings;
use crate::slots::Slots;
use crate::source::{InputConsumer, run_committer, run_source};
use crate::transaction;

/// What the admin endpoint reports on.
pub(super) struct Watched<'a> {
    pub pools: &'a Arc<Pools>,
    pub metrics: &'a Arc<Metrics>,
    pub health: &'a Arc<Health>,
    pub tracker: &'a Arc<OffsetTracker>,
    pub waits: &'a Arc<Waits>,
}

pub(super) fn spawn_admin(
    settings: &Settings,
    w: Watched<'_>,
    stops: &Stops,
) -> Result<Option<std::thread::JoinHandle<()>>, PipelineError> {
    let Some(addr) = settings.admin_addr else {
        return Ok(None);
    };
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| PipelineError::Admin { addr, source })?;
    tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "admin endpoint listening");
    let evidence = Reporter::new(
        w.metrics.clone(),
        w.pools.clone(),
        w.tracker.clone(),
        w.waits.clone(),
        settings,
    );
    let state = crate::admin::AdminState {
        pools: w.pools.clone(),
        metrics: w.metrics.clone(),
        health: w.health.clone(),
        evidence: Arc::new(evidence),
        liveness_bound: settings.liveness_bound,
        wedged: Arc::default(),
    };
    crate::admin::spawn(listener, state, stops.admin.clone())
        .map(Some)
        .map_err(|source| PipelineError::Admin { addr, source })
}

/// The source: reads batches into the parse stage's channel while a job
/// slot is free, until intake stops.
pub(super) fn spawn_source(
    settings: &Settings,
    consumer: &Arc<InputConsumer>,
    tracker: &Arc<OffsetTracker>,
    metrics: &Arc<Metrics>,
    parse: Sender<Job>,
    slots: &Slots,
    stops: &Stops,
) -> JoinHandle<()> {
    tokio::spawn(run_source(
        consumer.clone(),
        tracker.clone(),
        metrics.clone(),
        parse,
        slots.clone(),
        settings.batching,
        stops.intake.clone(),
    ))
}

pub(super) fn spawn_committer(
    settings: &Settings,
    consumer: &Arc<InputConsumer>,
    tracker: &Arc<OffsetTracker>,
    metrics: &Arc<Metrics>,
    transactions: &Option<transaction::Committer>,
    slots: &Slots,
    stops: &Stops,
) -> JoinHandle<()> {
    match transactions {
        Some(t) => tokio::spawn(t.clone().run(
            slots.clone(),
            settings.commit_interval,
            stops.commits.clone(),
        )),
        None => tokio::spawn(run_committer(
            consumer.clone(),
            settings.input_topic.clone(),
            tracker.clone(),
            metrics.clone(),
            settings.commit_interval,
            stops.commits.clone(),
        )),
    }
}

/// Follows the pool sizes in the pipeline's status, when asked to.
pub(super) fn spawn_follower(
    settings: &Settings,
    pools: &Arc<Pools>,
    stops: &Stops,
) -> Option<JoinHandle<()>> {
    settings.follow.clone().map(|target| {
        tokio::spawn(crate::follow::run(
            target,
            pools.clone(),
            settings.max_pool_workers,
            stops.intake.clone(),
        ))
    })
}
