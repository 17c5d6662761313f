//! Everything the worker needs besides the pipeline file, resolved from its
//! flags ([`WorkerArgs`]): defaults applied, credentials read.

use std::net::SocketAddr;
use std::time::Duration;

use pixelpipe_crds::PerStage;
use pixelpipe_crds::worker::{Compression, PipelineRef, WorkerArgs};
use pixelpipe_runtime::{KafkaSettings, Security};

use crate::retry::RetryPolicy;

/// Batch shape and intake limit.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    pub max_events: usize,
    pub max_wait: Duration,
    /// Intake limit, events per second.
    pub max_events_per_second: Option<f64>,
}

/// A worker's run settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub input_topic: String,
    pub group: String,
    pub dead_letter_topic: String,
    pub pools: PerStage<usize>,
    pub max_pool_workers: usize,
    pub batching: Batching,
    /// Jobs each stage's input channel holds.
    pub queue_capacity: usize,
    /// Jobs consumed but not fully acknowledged, at most.
    pub max_in_flight_jobs: usize,
    pub commit_interval: Duration,
    pub shutdown_grace: Duration,
    pub compression: Compression,
    /// How often, and how patiently, a refused output is sent again.
    pub delivery_retry: RetryPolicy,
    /// Exactly-once mode's transactional id; at-least-once when `None`.
    pub transactional_id: Option<String>,
    pub admin_addr: Option<SocketAddr>,
    /// The PixelPipeline whose status pool sizes to follow, if any.
    pub follow: Option<PipelineRef>,
}

/// Defaults of the flags the operator leaves to the worker.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4;
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_secs(2);
pub const DEFAULT_SHUTDOWN_GRACE: Duration =
    Duration::from_secs(pixelpipe_crds::worker::DEFAULT_SHUTDOWN_GRACE_SECONDS);
pub const DEFAULT_COMPRESSION: Compression = Compression::Lz4;

impl Settings {
    /// The run's settings from the flags; reads the mounted credentials, if any.
    pub fn from_args(args: &WorkerArgs) -> Result<Self, std::io::Error> {
        let security = Security::from_dirs(
            args.kafka_tls_dir.as_deref(),
            args.kafka_sasl_mechanism
                .zip(args.kafka_sasl_dir.as_deref()),
        )?;
        let defaults = RetryPolicy::default();
        Ok(Self {
            kafka: KafkaSettings {
                bootstrap_servers: args.bootstrap_servers.clone(),
                options: args.kafka_options.clone(),
                security,
            },
            input_topic: args.input_topic.clone(),
            group: args.group.clone(),
            dead_letter_topic: args.dead_letter_topic.clone(),
            pools: args.pools,
            max_pool_workers: args.max_pool_workers,
            batching: Batching {
                max_events: args.batch_max_events,
                max_wait: Duration::from_millis(args.batch_max_wait_ms),
                max_events_per_second: args.max_events_per_second,
            },
            queue_capacity: args.queue_capacity.unwrap_or(DEFAULT_QUEUE_CAPACITY),
            max_in_flight_jobs: args.max_in_flight_jobs,
            commit_interval: args
                .commit_interval_ms
                .map_or(DEFAULT_COMMIT_INTERVAL, Duration::from_millis),
            shutdown_grace: args
                .shutdown_grace_seconds
                .map_or(DEFAULT_SHUTDOWN_GRACE, Duration::from_secs),
            compression: args.compression.unwrap_or(DEFAULT_COMPRESSION),
            delivery_retry: RetryPolicy {
                max_attempts: args.delivery_attempts.unwrap_or(defaults.max_attempts),
                max_backoff: args
                    .delivery_max_backoff_seconds
                    .map_or(defaults.max_backoff, Duration::from_secs),
                ..defaults
            },
            transactional_id: args
                .exactly_once
                .then(|| transactional_id(args.transactional_id.as_deref(), &args.group)),
            admin_addr: Some(args.admin_addr),
            follow: args.pipeline.clone(),
        })
    }
}

/// The given id, or `<group>.<host name>`: unique per running worker, and the
/// same after a restart on the same host.
fn transactional_id(given: Option<&str>, group: &str) -> String {
    given.map(str::to_string).unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| std::process::id().to_string());
        format!("{group}.{host}")
    })
}
