//! Wires the worker together: consumer -> parse -> validate -> augment ->
//! produce, each stage a [`Pool`] behind a bounded channel, plus the committer,
//! and the ordered drain on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::PipelineConfig;
use crate::kafka::KafkaSettings;
use crate::metrics::{Metrics, StageLabel};
use crate::offsets::OffsetTracker;
use crate::pool::{Next, Pool};
use crate::shutdown::Fatal;
use crate::sink::{AckShared, OutputProducer, Produce, create_producer};
use crate::source::{
    Batching, InputConsumer, SourceContext, commit_all, run_committer, run_source,
};
use crate::stages::{Augment, Parse, Validate};

/// Workers per stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSizes {
    pub parse: usize,
    pub validate: usize,
    pub augment: usize,
    pub produce: usize,
}

impl PoolSizes {
    fn as_array(self) -> [usize; 4] {
        [self.parse, self.validate, self.augment, self.produce]
    }
}

/// A partial resize: stages left out keep their size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolResize {
    pub parse: Option<usize>,
    pub validate: Option<usize>,
    pub augment: Option<usize>,
    pub produce: Option<usize>,
}

/// One stage's pool, as the admin endpoint reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStatus {
    pub stage: String,
    pub workers: usize,
    pub busy: usize,
    pub queued: usize,
    pub capacity: usize,
}

/// The four stage pools, resizable by name within `1..=max_workers`.
#[derive(Debug)]
pub struct Pools {
    pools: [Pool; 4],
    max_workers: usize,
}

impl Pools {
    pub fn sizes(&self) -> PoolSizes {
        let [parse, validate, augment, produce] = [0, 1, 2, 3].map(|i| self.pools[i].size());
        PoolSizes {
            parse,
            validate,
            augment,
            produce,
        }
    }

    pub fn status(&self) -> Vec<PoolStatus> {
        self.pools
            .iter()
            .map(|p| PoolStatus {
                stage: p.name().to_string(),
                workers: p.size(),
                busy: p.busy(),
                queued: p.queued(),
                capacity: p.capacity(),
            })
            .collect()
    }

    /// Applies a resize, or changes nothing and says why.
    pub fn resize(&self, r: PoolResize) -> Result<PoolSizes, String> {
        let wanted = [r.parse, r.validate, r.augment, r.produce];
        for (pool, n) in self.pools.iter().zip(wanted) {
            if let Some(n) = n {
                check_size(pool.name(), n, self.max_workers)?;
            }
        }
        for (pool, n) in self.pools.iter().zip(wanted) {
            if let Some(n) = n
                && n != pool.size()
            {
                tracing::info!(
                    stage = pool.name(),
                    from = pool.size(),
                    to = n,
                    "resizing pool"
                );
                pool.resize(n);
            }
        }
        Ok(self.sizes())
    }

    /// Publishes pool gauges; called before each metrics scrape.
    pub fn export(&self, metrics: &Metrics) {
        for p in &self.pools {
            let label = StageLabel { stage: p.name() };
            metrics
                .pool_workers
                .get_or_create(&label)
                .set(p.size() as i64);
            metrics.pool_busy.get_or_create(&label).set(p.busy() as i64);
            metrics
                .queue_depth
                .get_or_create(&label)
                .set(p.queued() as i64);
        }
    }
}

/// Everything the worker needs besides the pipeline file.
#[derive(Debug, Clone)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub input_topic: String,
    pub group: String,
    pub dead_letter_topic: String,
    pub pools: PoolSizes,
    pub max_pool_workers: usize,
    pub batching: Batching,
    /// Jobs each stage's input channel holds.
    pub queue_capacity: usize,
    /// Jobs consumed but not fully acknowledged, at most.
    pub max_in_flight_jobs: usize,
    pub commit_interval: Duration,
    pub shutdown_grace: Duration,
    pub compression: String,
    /// How often, and how patiently, a refused output is sent again.
    pub delivery_retry: crate::retry::RetryPolicy,
    /// Exactly-once mode's transactional id; at-least-once when `None`.
    pub transactional_id: Option<String>,
    pub admin_addr: Option<SocketAddr>,
    /// The PixelPipeline whose status pool sizes to follow, if any.
    pub follow: Option<crate::follow::PipelineRef>,
}

/// Liveness and readiness for the probes.
#[derive(Debug, Default)]
pub struct Health {
    running: AtomicBool,
    /// Outputs the broker refused and that wait for another attempt.
    retrying: prometheus_client::metrics::gauge::Gauge,
}

impl Health {
    fn new(retrying: prometheus_client::metrics::gauge::Gauge) -> Self {
        Self {
            running: AtomicBool::new(false),
            retrying,
        }
    }

    /// Why the worker is not ready, or `None` when it is.
    pub fn not_ready(&self) -> Option<String> {
        if !self.running.load(Ordering::Relaxed) {
            return Some("not running".into());
        }
        match self.retrying.get() {
            0 => None,
            n => Some(format!(
                "{n} outputs refused by the broker are being retried; intake is held back"
            )),
        }
    }

    pub fn ready(&self) -> bool {
        self.not_ready().is_none()
    }

    fn set_running(&self, v: bool) {
        self.running.store(v, Ordering::Relaxed);
    }
}

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
    #[error("invalid settings: {0}")]
    Settings(String),
}

/// Runs the worker until `shutdown` resolves or a fatal error, then drains.
pub async fn run(
    settings: Settings,
    config: PipelineConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<Exit, PipelineError> {
    if settings.max_in_flight_jobs == 0
        || settings.queue_capacity == 0
        || settings.batching.max_events == 0
    {
        return Err(PipelineError::Settings(
            "batch size, queue capacity and in-flight jobs must be positive".into(),
        ));
    }
    for (stage, n) in crate::metrics::STAGES.iter().zip(settings.pools.as_array()) {
        check_size(stage, n, settings.max_pool_workers).map_err(PipelineError::Settings)?;
    }
    let config = Arc::new(config);
    let partners: Vec<String> = config.partners.iter().map(|p| p.name.clone()).collect();
    let metrics = Arc::new(Metrics::new(&partners));
    let tracker = Arc::new(OffsetTracker::default());
    let fatal = Fatal::default();
    let health = Arc::new(Health::new(metrics.outputs_retrying.clone()));

    let guard = settings.transactional_id.as_ref().map(|_| {
        Arc::new(crate::transaction::Guard {
            fatal: fatal.clone(),
            ..Default::default()
        })
    });
    let (producer, consumer) = connect(&settings, &tracker, &metrics, guard.clone())?;
    if guard.is_some() {
        let p = producer.clone();
        tokio::task::spawn_blocking(move || crate::transaction::start(&p))
            .await
            .map_err(|e| PipelineError::Settings(format!("starting transactions: {e}")))??;
        tracing::info!("exactly-once mode: outputs and offsets commit in transactions");
    }
    // In a transaction a refused output aborts the whole transaction: no
    // retries, the worker restarts and the broker aborts what it left open.
    let retry = if guard.is_some() {
        crate::retry::RetryPolicy {
            max_attempts: 1,
            ..settings.delivery_retry
        }
    } else {
        settings.delivery_retry
    };

    let cap = settings.queue_capacity;
    let (parse_tx, parse_rx) = async_channel::bounded(cap);
    let (validate_tx, validate_rx) = async_channel::bounded(cap);
    let (augment_tx, augment_rx) = async_channel::bounded(cap);
    let (produce_tx, produce_rx) = async_channel::bounded(cap);
    let duration = |stage| {
        metrics
            .batch_duration
            .get_or_create(&StageLabel { stage })
            .clone()
    };
    let produce = Arc::new(Produce::new(
        producer.clone(),
        &config,
        &settings.input_topic,
        &settings.dead_letter_topic,
        AckShared::new(tracker.clone(), metrics.clone(), fatal.clone(), &partners)
            .with_retry(retry),
    ));
    let sizes = settings.pools.as_array();
    let pools = Arc::new(Pools {
        pools: [
            Pool::start(
                "parse",
                Arc::new(Parse {
                    max_event_bytes: config.limits.max_event_bytes,
                }),
                parse_rx,
                Next::Stage(validate_tx),
                sizes[0],
                duration("parse"),
            ),
            Pool::start(
                "validate",
                Arc::new(Validate::new(config.clone(), &metrics)),
                validate_rx,
                Next::Stage(augment_tx),
                sizes[1],
                duration("validate"),
            ),
            Pool::start(
                "augment",
                Arc::new(Augment {
                    config: config.clone(),
                }),
                augment_rx,
                Next::Stage(produce_tx),
                sizes[2],
                duration("augment"),
            ),
            Pool::start(
                "produce",
                produce.clone(),
                produce_rx,
                Next::End,
                sizes[3],
                duration("produce"),
            ),
        ],
        max_workers: settings.max_pool_workers,
    });

    let admin_stop = CancellationToken::new();
    let admin = match settings.admin_addr {
        Some(addr) => {
            let listener = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|source| PipelineError::Admin { addr, source })?;
            tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "admin endpoint listening");
            let state = crate::admin::AdminState {
                pools: pools.clone(),
                metrics: metrics.clone(),
                health: health.clone(),
            };
            Some(crate::admin::spawn(listener, state, admin_stop.clone()))
        }
        None => None,
    };

    let stop_following = CancellationToken::new();
    let follower = settings.follow.clone().map(|target| {
        tokio::spawn(crate::follow::run(
            target,
            pools.clone(),
            settings.max_pool_workers,
            stop_following.clone(),
        ))
    });

    let in_flight = Arc::new(Semaphore::new(settings.max_in_flight_jobs));
    let stop_fetching = CancellationToken::new();
    let source = tokio::spawn(run_source(
        consumer.clone(),
        tracker.clone(),
        metrics.clone(),
        parse_tx,
        in_flight.clone(),
        settings.batching,
        stop_fetching.clone(),
    ));
    let stop_committer = CancellationToken::new();
    let transactions = guard.as_ref().map(|_| crate::transaction::Committer {
        producer: producer.clone(),
        consumer: consumer.clone(),
        topic: settings.input_topic.clone(),
        tracker: tracker.clone(),
        metrics: metrics.clone(),
        fatal: fatal.clone(),
    });
    let committer = match &transactions {
        Some(t) => tokio::spawn(t.clone().run(
            in_flight.clone(),
            settings.max_in_flight_jobs as u32,
            settings.commit_interval,
            stop_committer.clone(),
        )),
        None => tokio::spawn(run_committer(
            consumer.clone(),
            settings.input_topic.clone(),
            tracker.clone(),
            metrics.clone(),
            settings.commit_interval,
            stop_committer.clone(),
        )),
    };
    health.set_running(true);
    tracing::info!(
        topic = %settings.input_topic,
        group = %settings.group,
        pools = ?settings.pools,
        "worker running"
    );

    tokio::select! {
        _ = shutdown => tracing::info!("shutting down: draining in-flight jobs"),
        _ = fatal.wait() => {}
    }
    health.set_running(false);
    stop_fetching.cancel();
    stop_following.cancel();
    if let Some(f) = follower {
        let _ = f.await;
    }

    // Drain in stage order: each pool's workers exit once its input is closed
    // and empty, which closes the next stage's input.
    let max_in_flight = settings.max_in_flight_jobs as u32;
    let drain = async {
        let _ = source.await;
        for pool in &pools.pools {
            pool.join().await;
        }
        // Every job is now in librdkafka's hands; its slot frees on its last ack.
        let _ = in_flight.acquire_many(max_in_flight).await;
    };
    let drained = tokio::time::timeout(settings.shutdown_grace, drain)
        .await
        .is_ok();
    stop_committer.cancel();
    let _ = committer.await;
    let in_flight_jobs = settings.max_in_flight_jobs - in_flight.available_permits();
    if let Some(guard) = &guard {
        guard
            .closing
            .store(true, std::sync::atomic::Ordering::Release);
    }
    if let Some(t) = &transactions {
        // Only a full drain leaves a transaction whose outputs all have their
        // offsets; anything else is abandoned and read again.
        if fatal.reason().is_none() && drained && t.finish().await {
            tracing::info!("final transaction committed");
        } else {
            t.abandon().await;
            tracing::warn!("open transaction abandoned; its events will be read again");
        }
    }
    if transactions.is_none() {
        let (consumer, topic, tracker) = (
            consumer.clone(),
            settings.input_topic.clone(),
            tracker.clone(),
        );
        match tokio::task::spawn_blocking(move || commit_all(&consumer, &topic, &tracker)).await {
            Ok(Ok(n)) => tracing::info!(partitions = n, "final offsets committed"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "final commit failed; the uncommitted events will be read again")
            }
            Err(e) => tracing::warn!(error = %e, "final commit task failed"),
        }
    }
    consumer.unsubscribe();
    admin_stop.cancel();
    if let Some(a) = admin {
        let _ = tokio::task::spawn_blocking(move || a.join()).await;
    }
    Ok(if let Some(reason) = fatal.reason() {
        Exit::Fatal(reason)
    } else if !drained {
        Exit::GraceExceeded { in_flight_jobs }
    } else {
        Exit::Clean
    })
}

/// The output producer, and the input consumer subscribed to the input topic.
pub fn connect(
    settings: &Settings,
    tracker: &Arc<OffsetTracker>,
    metrics: &Arc<Metrics>,
    transactions: Option<Arc<crate::transaction::Guard>>,
) -> Result<(Arc<OutputProducer>, Arc<InputConsumer>), rdkafka::error::KafkaError> {
    let producer_config = match &settings.transactional_id {
        Some(id) => settings
            .kafka
            .transactional_producer(&settings.compression, id),
        None => settings.kafka.producer(&settings.compression),
    };
    let producer = Arc::new(create_producer(&producer_config)?);
    let consumer: Arc<InputConsumer> = Arc::new(
        settings
            .kafka
            .consumer(&settings.group)
            .create_with_context(SourceContext {
                topic: settings.input_topic.clone(),
                tracker: tracker.clone(),
                metrics: metrics.clone(),
                transactions,
            })?,
    );
    consumer.subscribe(&[&settings.input_topic])?;
    Ok((producer, consumer))
}

fn check_size(stage: &str, n: usize, max: usize) -> Result<(), String> {
    if n == 0 || n > max {
        return Err(format!(
            "{stage} workers must be between 1 and {max}, got {n}"
        ));
    }
    Ok(())
}
