//! Wires the worker together: consumer -> parse -> validate -> augment ->
//! produce, each stage a [`Pool`] behind a bounded channel, plus the committer,
//! and the ordered drain on shutdown. A run has three phases: [`Worker::start`],
//! running until a stop request or a fatal error, and [`Worker::drain`].

mod health;
mod pools;
mod tasks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pixelpipe_crds::{PerStage, PipelineFile, Stage};
use rdkafka::consumer::Consumer;
use thiserror::Error;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use health::{Health, NotReady};
pub use pools::{PoolResize, PoolStatus, Pools, SizeError, check_size};
use tasks::{Watched, spawn_admin, spawn_committer, spawn_follower, spawn_source};

use crate::fatal::Fatal;
use crate::metrics::Metrics;
use crate::offsets::OffsetTracker;
use crate::pool::{Meter, Next, Pool};
use crate::settings::Settings;
use crate::sink::{AckShared, OutputProducer, Produce, create_producer};
use crate::slots::Slots;
use crate::source::{InputConsumer, SourceContext, commit_all};
use crate::stages::{Augment, Parse, Validate};
use crate::transaction;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Stopped on request, drained and committed.
    Clean,
    /// Stopped itself; everything acknowledged was committed, the rest is read again.
    Fatal(String),
    /// Ran out of shutdown grace with jobs still in flight; they are read again.
    GraceExceeded { in_flight_jobs: usize },
}

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error("kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("admin endpoint {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("batch size, queue capacity and in-flight jobs must be positive")]
    ZeroBound,
    #[error(transparent)]
    PoolSize(#[from] SizeError),
    #[error("starting transactions: {0}")]
    Transactions(String),
}

/// Runs the worker until `shutdown` resolves or a fatal error, then drains.
pub async fn run(
    settings: Settings,
    file: PipelineFile,
    shutdown: impl Future<Output = ()>,
) -> Result<Exit, PipelineError> {
    let worker = Worker::start(settings, file).await?;
    tokio::select! {
        _ = shutdown => tracing::info!("shutting down: draining in-flight jobs"),
        _ = worker.fatal.wait() => {}
    }
    Ok(worker.drain().await)
}

/// What stops what, in drain order: intake (the source and the status
/// follower) first, commits once every job is through, the admin endpoint last.
#[derive(Debug, Default)]
struct Stops {
    intake: CancellationToken,
    commits: CancellationToken,
    admin: CancellationToken,
}

/// A started worker: its tasks and what they share.
struct Worker {
    settings: Settings,
    metrics: Arc<Metrics>,
    tracker: Arc<OffsetTracker>,
    fatal: Fatal,
    health: Arc<Health>,
    consumer: Arc<InputConsumer>,
    /// Held until the exit is decided: dropping the last handle purges what
    /// librdkafka still has queued or in flight, failing those jobs.
    producer: Arc<OutputProducer>,
    pools: Arc<Pools>,
    slots: Slots,
    guard: Option<Arc<transaction::Guard>>,
    transactions: Option<transaction::Committer>,
    stops: Stops,
    source: JoinHandle<()>,
    committer: JoinHandle<()>,
    follower: Option<JoinHandle<()>>,
    admin: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Connects, starts the pools, the admin endpoint, the source and the
    /// committer.
    async fn start(settings: Settings, file: PipelineFile) -> Result<Self, PipelineError> {
        check(&settings)?;
        let file = Arc::new(file);
        let partners: Vec<String> = file.partners.iter().map(|p| p.name.clone()).collect();
        let metrics = Arc::new(Metrics::new(&partners));
        let tracker = Arc::new(OffsetTracker::default());
        let fatal = Fatal::default();
        let health = Arc::new(Health::new(metrics.outputs_retrying.clone()));
        let guard = settings.transactional_id.as_ref().map(|_| {
            Arc::new(transaction::Guard {
                fatal: fatal.clone(),
                ..Default::default()
            })
        });
        let (producer, consumer) = connect(
            &settings,
            &tracker,
            &metrics,
            guard.clone(),
            health.joined(),
        )?;
        if guard.is_some() {
            start_transactions(&producer).await?;
        }
        let ack = AckShared::new(tracker.clone(), metrics.clone(), fatal.clone(), &partners);
        let waits = ack.waits.clone();
        let produce = produce_stage(&settings, &file, &producer, ack);
        let slots = Slots::new(
            settings.max_in_flight_jobs,
            settings.max_unacknowledged_bytes,
            &settings.pools,
            &metrics,
        );
        let (pools, parse_tx) = start_pools(&settings, &file, &metrics, produce, slots.clone());
        let transactions = guard.as_ref().map(|_| transaction::Committer {
            producer: producer.clone(),
            consumer: consumer.clone(),
            topic: settings.input_topic.clone(),
            tracker: tracker.clone(),
            metrics: metrics.clone(),
            fatal: fatal.clone(),
        });
        let pools = Arc::new(pools);
        let stops = Stops::default();
        let watched = Watched {
            pools: &pools,
            metrics: &metrics,
            health: &health,
            tracker: &tracker,
            waits: &waits,
        };
        let admin = spawn_admin(&settings, watched, &stops)?;
        let follower = spawn_follower(&settings, &pools, &stops);
        let source = spawn_source(
            &settings, &consumer, &tracker, &metrics, parse_tx, &slots, &stops,
        );
        let committer = spawn_committer(
            &settings,
            &consumer,
            &tracker,
            &metrics,
            &transactions,
            &slots,
            &stops,
        );
        health.set_running(true);
        tracing::info!(topic = %settings.input_topic, group = %settings.group, pools = %settings.pools, liveness_bound = ?settings.liveness_bound, "worker running");
        Ok(Self {
            settings,
            metrics,
            tracker,
            fatal,
            health,
            consumer,
            producer,
            pools,
            slots,
            guard,
            transactions,
            stops,
            source,
            committer,
            follower,
            admin,
        })
    }

    /// Stops intake, lets every job in flight finish all stages within the
    /// shutdown grace, commits what was delivered, and says how it ended.
    async fn drain(self) -> Exit {
        self.health.set_running(false);
        self.metrics.progress.drain();
        self.stops.intake.cancel();
        if let Some(f) = self.follower {
            let _ = f.await;
        }
        let (source, pools, slots) = (self.source, &self.pools, &self.slots);
        let drain = async {
            let _ = source.await;
            pools.join().await;
            // Every job is now in librdkafka's hands; its slot frees on its last ack.
            let _ = slots.acquire_all().await;
        };
        let drained = tokio::time::timeout(self.settings.shutdown_grace, drain)
            .await
            .is_ok();
        self.stops.commits.cancel();
        let _ = self.committer.await;
        let in_flight_jobs = self.slots.taken();
        if let Some(guard) = &self.guard {
            guard.closing.store(true, Ordering::Release);
        }
        match &self.transactions {
            Some(t) => finish_transactions(t, &self.fatal, drained).await,
            None => final_commit(&self.consumer, &self.settings.input_topic, &self.tracker).await,
        }
        self.consumer.unsubscribe();
        self.stops.admin.cancel();
        if let Some(a) = self.admin {
            let _ = tokio::task::spawn_blocking(move || a.join()).await;
        }
        drop(self.metrics);
        let exit = if let Some(reason) = self.fatal.reason() {
            Exit::Fatal(reason)
        } else if !drained {
            Exit::GraceExceeded { in_flight_jobs }
        } else {
            Exit::Clean
        };
        // Only now: an earlier drop would purge outputs still awaiting their
        // acknowledgement and turn a clean stop into a fatal one.
        drop(self.producer);
        exit
    }
}

fn check(settings: &Settings) -> Result<(), PipelineError> {
    if settings.max_in_flight_jobs == 0
        || settings.queue_capacity == 0
        || settings.batching.max_events == 0
    {
        return Err(PipelineError::ZeroBound);
    }
    for (stage, &n) in settings.pools.iter() {
        check_size(stage, n, settings.max_pool_workers)?;
    }
    Ok(())
}

/// The produce stage. In a transaction a refused output aborts the whole
/// transaction: no retries, the worker restarts and the broker aborts what it
/// left open.
fn produce_stage(
    settings: &Settings,
    file: &PipelineFile,
    producer: &Arc<OutputProducer>,
    ack: AckShared,
) -> Produce {
    let retry = match settings.transactional_id {
        Some(_) => crate::retry::RetryPolicy {
            max_attempts: 1,
            ..settings.delivery_retry
        },
        None => settings.delivery_retry,
    };
    Produce::new(
        producer.clone(),
        file,
        &settings.input_topic,
        &settings.dead_letter_topic,
        ack.with_retry(retry),
    )
}

async fn start_transactions(producer: &Arc<OutputProducer>) -> Result<(), PipelineError> {
    let p = producer.clone();
    tokio::task::spawn_blocking(move || transaction::start(&p))
        .await
        .map_err(|e| PipelineError::Transactions(e.to_string()))?
        .map_err(|e| PipelineError::Transactions(e.to_string()))?;
    tracing::info!("exactly-once mode: outputs and offsets commit in transactions");
    Ok(())
}

/// Every stage's pool, each reading the previous one's bounded channel, and
/// the sender of the first channel (the source's).
fn start_pools(
    settings: &Settings,
    file: &Arc<PipelineFile>,
    metrics: &Arc<Metrics>,
    produce: Produce,
    slots: Slots,
) -> (Pools, async_channel::Sender<crate::job::Job>) {
    let channels = PerStage::from_fn(|_| async_channel::bounded(settings.queue_capacity));
    let parse_tx = channels.parse.0.clone();
    let meter = |stage| Meter::of(metrics, stage);
    let size = |stage: Stage| settings.pools[stage];
    let pools = PerStage {
        parse: Pool::start(
            Stage::Parse,
            Arc::new(Parse {
                max_event_bytes: file.limits.max_event_bytes as usize,
            }),
            channels.parse.1,
            Next::Stage(channels.validate.0.clone()),
            size(Stage::Parse),
            meter(Stage::Parse),
        ),
        validate: Pool::start(
            Stage::Validate,
            Arc::new(Validate::new(file.clone(), metrics)),
            channels.validate.1,
            Next::Stage(channels.augment.0.clone()),
            size(Stage::Validate),
            meter(Stage::Validate),
        ),
        augment: Pool::start(
            Stage::Augment,
            Arc::new(Augment::new(&file.privacy)),
            channels.augment.1,
            Next::Stage(channels.produce.0.clone()),
            size(Stage::Augment),
            meter(Stage::Augment),
        ),
        produce: Pool::start(
            Stage::Produce,
            Arc::new(produce),
            channels.produce.1,
            Next::End,
            size(Stage::Produce),
            meter(Stage::Produce),
        ),
    };
    let pools = Pools {
        pools,
        max_workers: settings.max_pool_workers,
        slots,
    };
    (pools, parse_tx)
}

/// Only a full drain leaves a transaction whose outputs all have their
/// offsets; anything else is abandoned and read again.
async fn finish_transactions(t: &transaction::Committer, fatal: &Fatal, drained: bool) {
    if fatal.reason().is_none() && drained && t.finish().await {
        tracing::info!("final transaction committed");
    } else {
        t.abandon().await;
        tracing::warn!("open transaction abandoned; its events will be read again");
    }
}

async fn final_commit(consumer: &Arc<InputConsumer>, topic: &str, tracker: &Arc<OffsetTracker>) {
    let (consumer, topic, tracker) = (consumer.clone(), topic.to_string(), tracker.clone());
    match tokio::task::spawn_blocking(move || commit_all(&consumer, &topic, &tracker)).await {
        Ok(Ok(n)) => tracing::info!(partitions = n, "final offsets committed"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "final commit failed; the uncommitted events will be read again")
        }
        Err(e) => tracing::warn!(error = %e, "final commit task failed"),
    }
}

/// The output producer, and the input consumer subscribed to the input topic.
pub fn connect(
    settings: &Settings,
    tracker: &Arc<OffsetTracker>,
    metrics: &Arc<Metrics>,
    transactions: Option<Arc<transaction::Guard>>,
    joined: Arc<AtomicBool>,
) -> Result<(Arc<OutputProducer>, Arc<InputConsumer>), rdkafka::error::KafkaError> {
    let producer_config = match &settings.transactional_id {
        Some(id) => {
            crate::clients::transactional_producer(&settings.kafka, settings.compression, id)
        }
        None => crate::clients::producer(&settings.kafka, settings.compression),
    };
    let producer = Arc::new(create_producer(&producer_config)?);
    let consumer: Arc<InputConsumer> = Arc::new(
        crate::clients::consumer(&settings.kafka, &settings.group).create_with_context(
            SourceContext {
                topic: settings.input_topic.clone(),
                tracker: tracker.clone(),
                metrics: metrics.clone(),
                transactions,
                joined,
            },
        )?,
    );
    consumer.subscribe(&[&settings.input_topic])?;
    Ok((producer, consumer))
}
