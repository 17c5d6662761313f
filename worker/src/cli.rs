//! Command-line flags, each with an environment fallback, for the worker.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::follow::PipelineRef;
use crate::kafka::{KafkaSettings, Security, parse_option};
use crate::pipeline::{PoolSizes, Settings};
use crate::source::Batching;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Runs the Pixelpipe worker: consume storefront events, parse, validate,
/// drop what lacks consent, augment, produce to partner topics, commit what was
/// delivered.
#[derive(Debug, Clone, Parser)]
#[command(name = "pixelpipe-worker", version)]
pub struct Args {
    /// Kafka bootstrap servers, comma-separated.
    #[arg(long, env = "PIXELPIPE_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: String,
    /// Topic the storefront events arrive on.
    #[arg(long, env = "PIXELPIPE_INPUT_TOPIC")]
    pub input_topic: String,
    /// Consumer group shared by every replica of this pipeline.
    #[arg(long, env = "PIXELPIPE_GROUP", default_value = "pixelpipe")]
    pub group: String,
    /// Topic for messages that cannot be parsed or validated.
    #[arg(long, env = "PIXELPIPE_DEAD_LETTER_TOPIC")]
    pub dead_letter_topic: String,
    /// Pipeline file (YAML): partners, privacy rules, limits.
    #[arg(long, env = "PIXELPIPE_CONFIG")]
    pub config: PathBuf,
    /// Workers in the parse pool.
    #[arg(long, env = "PIXELPIPE_PARSE_WORKERS", default_value_t = 2)]
    pub parse_workers: usize,
    /// Workers in the validate pool.
    #[arg(long, env = "PIXELPIPE_VALIDATE_WORKERS", default_value_t = 2)]
    pub validate_workers: usize,
    /// Workers in the augment pool.
    #[arg(long, env = "PIXELPIPE_AUGMENT_WORKERS", default_value_t = 2)]
    pub augment_workers: usize,
    /// Workers in the produce pool.
    #[arg(long, env = "PIXELPIPE_PRODUCE_WORKERS", default_value_t = 2)]
    pub produce_workers: usize,
    /// Upper bound for any pool, including live resizes.
    #[arg(long, env = "PIXELPIPE_MAX_POOL_WORKERS", default_value_t = 256)]
    pub max_pool_workers: usize,
    /// Events per batch job, at most.
    #[arg(long, env = "PIXELPIPE_BATCH_MAX_EVENTS", default_value_t = 250)]
    pub batch_max_events: usize,
    /// Milliseconds a batch waits to fill after its first event.
    #[arg(long, env = "PIXELPIPE_BATCH_MAX_WAIT_MS", default_value_t = 50)]
    pub batch_max_wait_ms: u64,
    /// Events per second this worker takes in, at most; unlimited when absent.
    /// For partners with a rate limit, and for giving a local worker process
    /// the capacity of a CPU-limited pod.
    #[arg(long, env = "PIXELPIPE_MAX_EVENTS_PER_SECOND", value_parser = positive_rate)]
    pub max_events_per_second: Option<f64>,
    /// Jobs each stage's input channel holds.
    #[arg(long, env = "PIXELPIPE_QUEUE_CAPACITY", default_value_t = 4)]
    pub queue_capacity: usize,
    /// Jobs consumed but not yet fully acknowledged, at most: bounds memory.
    #[arg(long, env = "PIXELPIPE_MAX_IN_FLIGHT_JOBS", default_value_t = 8)]
    pub max_in_flight_jobs: usize,
    /// Milliseconds between asynchronous offset commits.
    #[arg(long, env = "PIXELPIPE_COMMIT_INTERVAL_MS", default_value_t = 2000)]
    pub commit_interval_ms: u64,
    /// Seconds to drain on SIGTERM before giving up (uncommitted events are read again).
    #[arg(long, env = "PIXELPIPE_SHUTDOWN_GRACE_SECONDS", default_value_t = 25)]
    pub shutdown_grace_seconds: u64,
    /// Compression codec for partner topics (none, gzip, snappy, lz4, zstd).
    #[arg(long, env = "PIXELPIPE_COMPRESSION", default_value = "lz4")]
    pub compression: String,
    /// Sends of one refused output (partner or dead letter), the first
    /// included, before the worker stops without committing its input. Between
    /// attempts the job holds its slot, so intake slows instead of buffering.
    #[arg(long, env = "PIXELPIPE_DELIVERY_ATTEMPTS", default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..))]
    pub delivery_attempts: u32,
    /// Longest wait between two attempts of one output, in seconds; the waits
    /// double from half a second.
    #[arg(long, env = "PIXELPIPE_DELIVERY_MAX_BACKOFF_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub delivery_max_backoff_seconds: u64,
    /// Extra librdkafka property for every client, as key=value; repeatable.
    #[arg(long = "kafka-option", env = "PIXELPIPE_KAFKA_OPTIONS", value_delimiter = ',', value_parser = parse_option)]
    pub kafka_options: Vec<(String, String)>,
    /// Exactly-once mode: partner messages, dead letters and consumed offsets
    /// commit in one Kafka transaction per commit interval, so read-committed
    /// consumers see each output once. Costs throughput (docs/benchmarks.md).
    #[arg(long, env = "PIXELPIPE_EXACTLY_ONCE", default_value_t = false)]
    pub exactly_once: bool,
    /// Transactional id in exactly-once mode; unique per running worker and
    /// kept across its restarts (the pod name). Defaults to `<group>.<host name>`.
    #[arg(long, env = "PIXELPIPE_TRANSACTIONAL_ID")]
    pub transactional_id: Option<String>,
    /// Directory of the mounted TLS Secret: `ca.crt` verifies the brokers,
    /// `tls.crt` and `tls.key` (both, optional) are a client certificate.
    /// Turns TLS on.
    #[arg(long, env = "PIXELPIPE_KAFKA_TLS_DIR")]
    pub kafka_tls_dir: Option<PathBuf>,
    /// SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512); needs `--kafka-sasl-dir`.
    #[arg(
        long,
        env = "PIXELPIPE_KAFKA_SASL_MECHANISM",
        requires = "kafka_sasl_dir"
    )]
    pub kafka_sasl_mechanism: Option<String>,
    /// Directory of the mounted SASL Secret, with `username` and `password` files.
    #[arg(
        long,
        env = "PIXELPIPE_KAFKA_SASL_DIR",
        requires = "kafka_sasl_mechanism"
    )]
    pub kafka_sasl_dir: Option<PathBuf>,
    /// Address of the admin endpoint (/healthz, /readyz, /metrics, /pools).
    #[arg(long, env = "PIXELPIPE_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    pub admin_addr: SocketAddr,
    /// The worker's own PixelPipeline, as namespace/name: when set, the worker
    /// watches its status and applies the pool sizes there live.
    #[arg(long, env = "PIXELPIPE_PIPELINE")]
    pub pipeline: Option<PipelineRef>,
    /// Log format.
    #[arg(long, env = "PIXELPIPE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Args {
    /// The run's settings; reads the mounted credentials, if any.
    pub fn settings(&self) -> Result<Settings, std::io::Error> {
        let security = Security::from_dirs(
            self.kafka_tls_dir.as_deref(),
            self.kafka_sasl_mechanism
                .as_deref()
                .zip(self.kafka_sasl_dir.as_deref()),
        )?;
        Ok(Settings {
            kafka: KafkaSettings {
                bootstrap_servers: self.bootstrap_servers.clone(),
                options: self.kafka_options.clone(),
                security,
            },
            input_topic: self.input_topic.clone(),
            group: self.group.clone(),
            dead_letter_topic: self.dead_letter_topic.clone(),
            pools: PoolSizes {
                parse: self.parse_workers,
                validate: self.validate_workers,
                augment: self.augment_workers,
                produce: self.produce_workers,
            },
            max_pool_workers: self.max_pool_workers,
            batching: Batching {
                max_events: self.batch_max_events,
                max_wait: Duration::from_millis(self.batch_max_wait_ms),
                max_events_per_second: self.max_events_per_second,
            },
            queue_capacity: self.queue_capacity,
            max_in_flight_jobs: self.max_in_flight_jobs,
            commit_interval: Duration::from_millis(self.commit_interval_ms),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
            compression: self.compression.clone(),
            transactional_id: self.exactly_once.then(|| {
                self.transactional_id.clone().unwrap_or_else(|| {
                    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                        .map(|h| h.trim().to_string())
                        .unwrap_or_else(|_| std::process::id().to_string());
                    format!("{}.{host}", self.group)
                })
            }),
            delivery_retry: crate::retry::RetryPolicy {
                max_attempts: self.delivery_attempts,
                max_backoff: Duration::from_secs(self.delivery_max_backoff_seconds),
                ..crate::retry::RetryPolicy::default()
            },
            admin_addr: Some(self.admin_addr),
            follow: self.pipeline.clone(),
        })
    }
}

fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{s:?} is not a positive number of events per second"
        )),
    }
}

/// Installs the tracing subscriber; `RUST_LOG` filters (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
