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
    /// Bytes of outputs handed to the producer and not yet acknowledged, at most.
    pub max_unacknowledged_bytes: usize,
    pub commit_interval: Duration,
    pub shutdown_grace: Duration,
    pub compression: Compression,
    /// How often, and how patiently, a refused output is sent again.
    pub delivery_retry: RetryPolicy,
    /// How long fetched events may go without progress before liveness fails.
    pub liveness_bound: Duration,
    /// Exactly-once mode's transactional id; at-least-once when `None`.
    pub transactional_id: Option<String>,
    pub admin_addr: Option<SocketAddr>,
    /// The PixelPipeline whose status pool sizes to follow, if any.
    pub follow: Option<PipelineRef>,
}

/// Defaults of the flags the operator leaves to the worker.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4;
/// Outputs awaiting acknowledgements: about 20 ms of a worker's output at
/// 200,000 events/s. Queued deeper they are delivered no sooner and cost
/// CPU: with librdkafka's 64 MiB the worker spent about 10 % more per
/// event (docs/benchmarks.md, seventeenth session).
pub const DEFAULT_MAX_UNACKNOWLEDGED_MIB: u32 = 8;
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
        let kafka = KafkaSettings {
            bootstrap_servers: args.bootstrap_servers.clone(),
            options: args.kafka_options.clone(),
            security,
        };
        let compression = args.compression.unwrap_or(DEFAULT_COMPRESSION);
        let delivery_retry = RetryPolicy {
            max_attempts: args.delivery_attempts.unwrap_or(defaults.max_attempts),
            max_backoff: args
                .delivery_max_backoff_seconds
                .map_or(defaults.max_backoff, Duration::from_secs),
            ..defaults
        };
        let transactional_id = args
            .exactly_once
            .then(|| transactional_id(args.transactional_id.as_deref(), &args.group));
        // The producer this worker will run, to read its timeout as set.
        let producer = match &transactional_id {
            Some(id) => crate::clients::transactional_producer(&kafka, compression, id),
            None => crate::clients::producer(&kafka, compression),
        };
        let liveness_bound = args.liveness_bound_seconds.map_or_else(
            || {
                default_liveness_bound(
                    crate::clients::message_timeout(&producer),
                    delivery_retry.max_backoff,
                )
            },
            Duration::from_secs,
        );
        Ok(Self {
            kafka,
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
            max_unacknowledged_bytes: args
                .max_unacknowledged_mib
                .unwrap_or(DEFAULT_MAX_UNACKNOWLEDGED_MIB)
                as usize
                * 1024
                * 1024,
            commit_interval: args
                .commit_interval_ms
                .map_or(DEFAULT_COMMIT_INTERVAL, Duration::from_millis),
            shutdown_grace: args
                .shutdown_grace_seconds
                .map_or(DEFAULT_SHUTDOWN_GRACE, Duration::from_secs),
            compression,
            delivery_retry,
            liveness_bound,
            transactional_id,
            admin_addr: Some(args.admin_addr),
            follow: args.pipeline.clone(),
        })
    }
}

/// The liveness bound unless one is given: twice the longest a healthy worker
/// with pending events goes without progress. That longest silence is one
/// output in librdkafka's hands until it reports it (at most
/// `message_timeout`, then refused), plus the backoff before it is sent
/// again (at most `max_backoff`); every other wait (a stage's job, room in the
/// producer's queue) ends sooner or moves something meanwhile. Twice, because
/// a restart costs every uncommitted event read again, and a starved node
/// stretches everything.
pub fn default_liveness_bound(message_timeout: Duration, max_backoff: Duration) -> Duration {
    (message_timeout + max_backoff) * 2
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn settings(extra: &[&str]) -> Settings {
        let argv = [
            "pixelpipe-worker",
            "--bootstrap-servers=b:9092",
            "--input-topic=in",
            "--dead-letter-topic=dlq",
            "--config=/p.yaml",
        ]
        .iter()
        .chain(extra);
        let args = WorkerArgs::try_parse_from(argv).expect("flags parse");
        Settings::from_args(&args).expect("settings")
    }

    #[test]
    fn the_liveness_bound_follows_the_producer_timeout_and_the_backoff_unless_given() {
        // 2 x (120 s message timeout + 30 s backoff).
        assert_eq!(settings(&[]).liveness_bound, Duration::from_secs(300));
        // 2 x (60 s transactional message timeout + 30 s).
        assert_eq!(
            settings(&["--exactly-once", "--transactional-id=t"]).liveness_bound,
            Duration::from_secs(180)
        );
        // A longer timeout or backoff set by hand lengthens the bound with it.
        assert_eq!(
            settings(&[
                "--kafka-option=message.timeout.ms=600000",
                "--delivery-max-backoff-seconds=60"
            ])
            .liveness_bound,
            Duration::from_secs(1_320)
        );
        assert_eq!(
            settings(&["--liveness-bound-seconds=5"]).liveness_bound,
            Duration::from_secs(5)
        );
    }
}
