//! The operator-to-worker contract: the worker's flags, and the one function
//! that sets them from a PixelPipeline.
//!
//! The worker parses its command line with [`WorkerArgs`]; the operator builds a
//! `WorkerArgs` with [`WorkerArgs::for_pipeline`] and renders it with
//! [`WorkerArgs::to_args`] into the pod's `args`. A test renders every field
//! and parses the result back with the same parser. Each flag also reads an
//! environment variable, for people running a worker by hand; flags the
//! operator leaves unset (`None`) can be tuned that way in `spec.worker.env`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Parser, ValueEnum};
use kube::ResourceExt;

use crate::spec::{DeliveryGuarantee, PixelPipeline, SaslMechanism};
use crate::stage::{PerStage, Stage};

/// Where the pipeline file (the ConfigMap) is mounted in a worker pod.
pub const CONFIG_DIR: &str = "/etc/pixelpipe";
/// Key of the pipeline file in the ConfigMap.
pub const PIPELINE_FILE: &str = "pipeline.yaml";
/// Where the Kafka TLS Secret is mounted.
pub const KAFKA_TLS_DIR: &str = "/etc/pixelpipe-kafka/tls";
/// Where the Kafka SASL Secret is mounted.
pub const KAFKA_SASL_DIR: &str = "/etc/pixelpipe-kafka/sasl";
/// The worker's admin port: probes, metrics, evidence, pools.
pub const ADMIN_PORT: u16 = 9090;
/// The pod's name, from the downward API; the transactional id refers to it.
pub const POD_NAME_ENV: &str = "POD_NAME";
/// The variable that raises the worker's drain grace on SIGTERM, which the
/// pod's termination grace period must outlast.
pub const SHUTDOWN_GRACE_ENV: &str = "PIXELPIPE_SHUTDOWN_GRACE_SECONDS";
/// Seconds a worker drains on SIGTERM unless told otherwise.
pub const DEFAULT_SHUTDOWN_GRACE_SECONDS: u64 = 25;
/// Worker pod annotation whose change rolls the workers when their
/// configuration (pipeline file, flags, environment) changes.
pub const CONFIG_HASH_ANNOTATION: &str = "pixelpipe.dev/config-sha256";
/// Worker pod annotation whose change rolls the workers when a Kafka Secret
/// they mount is written: they read credentials once, at start.
pub const CREDENTIALS_ANNOTATION: &str = "pixelpipe.dev/kafka-credentials";

/// File names inside the mounted Secrets, the same as Kubernetes' TLS and
/// basic-auth Secret types use.
pub const CA_FILE: &str = "ca.crt";
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";
pub const USERNAME_FILE: &str = "username";
pub const PASSWORD_FILE: &str = "password";

/// Log line format of the operator and the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Compression codec for partner topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// librdkafka's `compression.type` value.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// `namespace/name` of the PixelPipeline a worker belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineRef {
    pub namespace: String,
    pub name: String,
}

impl FromStr for PipelineRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(Self {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(format!("expected namespace/name, got {s:?}")),
        }
    }
}

impl fmt::Display for PipelineRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Runs the Pixelpipe worker: consume storefront events, parse, validate,
/// drop what lacks consent, augment, produce to partner topics, commit what was
/// delivered.
#[derive(Debug, Clone, PartialEq, Parser)]
#[command(name = "pixelpipe-worker", version, args_override_self = true)]
pub struct WorkerArgs {
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
    /// Workers per stage at start, as parse/validate/augment/produce.
    #[arg(long, env = "PIXELPIPE_POOLS", default_value = "2/2/2/2")]
    pub pools: PerStage<usize>,
    /// Upper bound for any pool, including live resizes.
    #[arg(long, env = "PIXELPIPE_MAX_POOL_WORKERS", default_value_t = 256)]
    pub max_pool_workers: usize,
    /// Events per batch job, at most.
    #[arg(long, env = "PIXELPIPE_BATCH_MAX_EVENTS", default_value_t = 250)]
    pub batch_max_events: usize,
    /// Milliseconds a batch waits to fill after its first event.
    #[arg(long, env = "PIXELPIPE_BATCH_MAX_WAIT_MS", default_value_t = 50)]
    pub batch_max_wait_ms: u64,
    /// Jobs consumed but not yet fully acknowledged, at most: bounds memory.
    #[arg(long, env = "PIXELPIPE_MAX_IN_FLIGHT_JOBS", default_value_t = 8)]
    pub max_in_flight_jobs: usize,
    /// Mebibytes of outputs handed to the producer and not yet acknowledged,
    /// at most [default: 8]. Deep queues of outputs cost memory and CPU
    /// without delivering more; a job whose outputs are larger waits until
    /// it is the only one.
    #[arg(long, env = "PIXELPIPE_MAX_UNACKNOWLEDGED_MIB", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_unacknowledged_mib: Option<u32>,
    /// Events per second this worker takes in, at most; unlimited when absent.
    /// For partners with a rate limit.
    #[arg(long, env = "PIXELPIPE_MAX_EVENTS_PER_SECOND", value_parser = positive_rate)]
    pub max_events_per_second: Option<f64>,
    /// Jobs each stage's input channel holds [default: 4].
    #[arg(long, env = "PIXELPIPE_QUEUE_CAPACITY")]
    pub queue_capacity: Option<usize>,
    /// Milliseconds between asynchronous offset commits [default: 2000].
    #[arg(long, env = "PIXELPIPE_COMMIT_INTERVAL_MS")]
    pub commit_interval_ms: Option<u64>,
    /// Seconds to drain on SIGTERM before giving up (uncommitted events are
    /// read again) [default: 25].
    #[arg(long, env = SHUTDOWN_GRACE_ENV)]
    pub shutdown_grace_seconds: Option<u64>,
    /// Compression codec for partner topics [default: lz4].
    #[arg(long, env = "PIXELPIPE_COMPRESSION", value_enum)]
    pub compression: Option<Compression>,
    /// Sends of one refused output (partner or dead letter), the first
    /// included, before the worker stops without committing its input. Between
    /// attempts the job holds its slot, so intake slows instead of buffering
    /// [default: 12].
    #[arg(long, env = "PIXELPIPE_DELIVERY_ATTEMPTS", value_parser = clap::value_parser!(u32).range(1..))]
    pub delivery_attempts: Option<u32>,
    /// Longest wait between two attempts of one output, in seconds; the waits
    /// double from half a second [default: 30].
    #[arg(long, env = "PIXELPIPE_DELIVERY_MAX_BACKOFF_SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub delivery_max_backoff_seconds: Option<u64>,
    /// Seconds fetched events may go without progress (a stage finishing a job,
    /// a delivery report, a job finishing) before `/healthz` fails and the
    /// kubelet restarts the worker. Idle and draining workers are never
    /// judged. Must exceed the longest a healthy worker goes without progress:
    /// [default: twice the producer's message timeout plus the longest
    /// delivery backoff, 300 (180 in exactly-once mode)].
    #[arg(long, env = "PIXELPIPE_LIVENESS_BOUND_SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub liveness_bound_seconds: Option<u64>,
    /// Extra librdkafka property for every client, as key=value; repeatable.
    #[arg(long = "kafka-option", env = "PIXELPIPE_KAFKA_OPTIONS", value_delimiter = ',', value_parser = parse_option)]
    pub kafka_options: Vec<(String, String)>,
    /// Exactly-once mode: partner messages, dead letters and consumed offsets
    /// commit in one Kafka transaction per commit interval, so read-committed
    /// consumers see each output once. Costs throughput (docs/benchmarks.md).
    #[arg(long, env = "PIXELPIPE_EXACTLY_ONCE")]
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
    /// SASL mechanism; needs `--kafka-sasl-dir`.
    #[arg(
        long,
        env = "PIXELPIPE_KAFKA_SASL_MECHANISM",
        value_enum,
        requires = "kafka_sasl_dir"
    )]
    pub kafka_sasl_mechanism: Option<SaslMechanism>,
    /// Directory of the mounted SASL Secret, with `username` and `password` files.
    #[arg(
        long,
        env = "PIXELPIPE_KAFKA_SASL_DIR",
        requires = "kafka_sasl_mechanism"
    )]
    pub kafka_sasl_dir: Option<PathBuf>,
    /// Address of the admin endpoint (/healthz, /readyz, /metrics, /evidence, /pools).
    #[arg(long, env = "PIXELPIPE_ADMIN_ADDR", default_value_t = SocketAddr::from(([0, 0, 0, 0], ADMIN_PORT)))]
    pub admin_addr: SocketAddr,
    /// The worker's own PixelPipeline, as namespace/name: when set, the worker
    /// watches its status and applies the pool sizes there live.
    #[arg(long, env = "PIXELPIPE_PIPELINE")]
    pub pipeline: Option<PipelineRef>,
    /// Log format.
    #[arg(long, env = "PIXELPIPE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl WorkerArgs {
    /// Jobs in flight for a pipeline whose largest stage may grow to
    /// `max_pool` workers. They bound memory, but a pool worker without a job
    /// idles: twice the largest pool keeps the pools busy as the operator
    /// grows them (the benchmark's finding, docs/benchmarks.md).
    pub fn in_flight_for(max_pool: i32) -> usize {
        (2 * usize::try_from(max_pool).unwrap_or(1).max(1)).max(8)
    }

    /// Jobs in the stages (read and not yet handed to the producer) for
    /// pools of `sizes` workers now, within `max` (the in-flight bound): a
    /// job for each worker to hold and one waiting for it. While a stage is
    /// the bottleneck, more would only wait in the channels, holding their
    /// events. Jobs whose outputs await acknowledgements are not counted:
    /// the stages never touch them again, and behind a slow broker they are
    /// what keeps delivery busy (their outputs' bytes have a bound of their
    /// own, `--max-unacknowledged-mib`).
    pub fn jobs_in_stages(sizes: &PerStage<usize>, max: usize) -> usize {
        let workers: usize = sizes.values().sum();
        (2 * workers).clamp(1, max.max(1))
    }

    /// The flags a worker pod of `pp` starts with. Pool sizes are the spec's
    /// starting sizes; later resizes reach the workers through the status.
    pub fn for_pipeline(pp: &PixelPipeline) -> Self {
        let spec = &pp.spec;
        let max_pool = spec
            .stages
            .values()
            .map(|s| s.max_workers)
            .max()
            .unwrap_or(1);
        let size = |n: i32| usize::try_from(n).unwrap_or(1).max(1);
        let sasl = spec.kafka.sasl.as_ref();
        Self {
            bootstrap_servers: spec.kafka.bootstrap_servers.clone(),
            input_topic: spec.kafka.input_topic.clone(),
            group: pp.consumer_group(),
            dead_letter_topic: spec.kafka.dead_letter_topic.clone(),
            config: PathBuf::from(CONFIG_DIR).join(PIPELINE_FILE),
            pools: spec.stages.as_ref().map(|_, s| size(s.workers)),
            max_pool_workers: size(max_pool),
            batch_max_events: size(spec.batch.max_events),
            batch_max_wait_ms: u64::try_from(spec.batch.max_wait_ms).unwrap_or(1),
            max_in_flight_jobs: Self::in_flight_for(max_pool),
            max_events_per_second: None,
            queue_capacity: None,
            commit_interval_ms: None,
            shutdown_grace_seconds: None,
            compression: None,
            delivery_attempts: None,
            delivery_max_backoff_seconds: None,
            liveness_bound_seconds: None,
            max_unacknowledged_mib: None,
            kafka_options: spec
                .kafka
                .options
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            exactly_once: spec.delivery == DeliveryGuarantee::ExactlyOnce,
            // The pod's name: unique per running worker, and a restarted
            // container keeps it, so its first transaction fences what the
            // killed one left open.
            transactional_id: (spec.delivery == DeliveryGuarantee::ExactlyOnce)
                .then(|| format!("$({POD_NAME_ENV})")),
            kafka_tls_dir: spec
                .kafka
                .tls_secret_ref
                .as_ref()
                .map(|_| KAFKA_TLS_DIR.into()),
            kafka_sasl_mechanism: sasl.map(|s| s.mechanism),
            kafka_sasl_dir: sasl.map(|_| KAFKA_SASL_DIR.into()),
            admin_addr: SocketAddr::from(([0, 0, 0, 0], ADMIN_PORT)),
            pipeline: Some(PipelineRef {
                namespace: pp.namespace().unwrap_or_default(),
                name: pp.name_any(),
            }),
            log_format: LogFormat::Json,
        }
    }

    /// The command line that parses back into these flags.
    pub fn to_args(&self) -> Vec<String> {
        let mut a = Args::default();
        a.set("bootstrap-servers", &self.bootstrap_servers);
        a.set("input-topic", &self.input_topic);
        a.set("group", &self.group);
        a.set("dead-letter-topic", &self.dead_letter_topic);
        a.set("config", self.config.display());
        a.set("pools", self.pools);
        a.set("max-pool-workers", self.max_pool_workers);
        a.set("batch-max-events", self.batch_max_events);
        a.set("batch-max-wait-ms", self.batch_max_wait_ms);
        a.set("max-in-flight-jobs", self.max_in_flight_jobs);
        a.opt("max-events-per-second", self.max_events_per_second);
        a.opt("queue-capacity", self.queue_capacity);
        a.opt("commit-interval-ms", self.commit_interval_ms);
        a.opt("shutdown-grace-seconds", self.shutdown_grace_seconds);
        a.opt("compression", self.compression.map(Compression::as_str));
        a.opt("delivery-attempts", self.delivery_attempts);
        a.opt(
            "delivery-max-backoff-seconds",
            self.delivery_max_backoff_seconds,
        );
        a.opt("liveness-bound-seconds", self.liveness_bound_seconds);
        a.opt("max-unacknowledged-mib", self.max_unacknowledged_mib);
        for (k, v) in &self.kafka_options {
            a.set("kafka-option", format!("{k}={v}"));
        }
        if self.exactly_once {
            a.0.push("--exactly-once".into());
        }
        a.opt("transactional-id", self.transactional_id.as_ref());
        a.opt(
            "kafka-tls-dir",
            self.kafka_tls_dir.as_ref().map(|d| d.display()),
        );
        a.opt(
            "kafka-sasl-mechanism",
            self.kafka_sasl_mechanism.map(SaslMechanism::as_str),
        );
        a.opt(
            "kafka-sasl-dir",
            self.kafka_sasl_dir.as_ref().map(|d| d.display()),
        );
        a.set("admin-addr", self.admin_addr);
        a.opt("pipeline", self.pipeline.as_ref());
        a.set("log-format", <&str>::from(self.log_format));
        a.0
    }

    /// The starting pool size of `stage`.
    pub fn pool(&self, stage: Stage) -> usize {
        self.pools[stage]
    }
}

#[derive(Default)]
struct Args(Vec<String>);

impl Args {
    fn set(&mut self, flag: &str, value: impl fmt::Display) {
        self.0.push(format!("--{flag}={value}"));
    }
    fn opt(&mut self, flag: &str, value: Option<impl fmt::Display>) {
        if let Some(v) = value {
            self.set(flag, v);
        }
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

/// Parses `key=value` into a pair.
pub fn parse_option(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::SaslSpec;

    fn sample() -> PixelPipeline {
        let mut pp: PixelPipeline =
            crate::yaml::from_str(include_str!("../../manifests/samples/storefront.yaml"))
                .expect("sample parses");
        pp.metadata.namespace = Some("shop".into());
        pp
    }

    fn parse(args: &[String]) -> WorkerArgs {
        let argv = std::iter::once("pixelpipe-worker".to_string()).chain(args.iter().cloned());
        WorkerArgs::try_parse_from(argv).unwrap_or_else(|e| panic!("{e}\n{args:?}"))
    }

    #[test]
    fn what_the_operator_builds_the_worker_parses_back() {
        let mut pp = sample();
        pp.spec.delivery = DeliveryGuarantee::ExactlyOnce;
        pp.spec.kafka.tls_secret_ref = Some("tls".into());
        pp.spec.kafka.sasl = Some(SaslSpec {
            mechanism: SaslMechanism::ScramSha512,
            secret_ref: "scram".into(),
        });
        pp.spec
            .kafka
            .options
            .insert("linger.ms".into(), "20".into());
        let built = WorkerArgs::for_pipeline(&pp);
        assert_eq!(parse(&built.to_args()), built);
        assert_eq!(built.group, "pixelpipe.shop.storefront");
        assert_eq!(built.transactional_id.as_deref(), Some("$(POD_NAME)"));
        assert_eq!(
            built.pipeline.as_ref().map(|p| p.to_string()).as_deref(),
            Some("shop/storefront")
        );
    }

    #[test]
    fn every_flag_survives_the_round_trip() {
        // Every field away from its default: a field `to_args` forgot would
        // come back as the default and fail the comparison.
        let all = WorkerArgs {
            bootstrap_servers: "a:1,b:2".into(),
            input_topic: "in".into(),
            group: "g".into(),
            dead_letter_topic: "dlq".into(),
            config: "/x/p.yaml".into(),
            pools: "3/4/5/6".parse().expect("pools"),
            max_pool_workers: 7,
            batch_max_events: 8,
            batch_max_wait_ms: 9,
            max_in_flight_jobs: 10,
            max_events_per_second: Some(11.5),
            queue_capacity: Some(12),
            commit_interval_ms: Some(13),
            shutdown_grace_seconds: Some(14),
            compression: Some(Compression::Zstd),
            delivery_attempts: Some(15),
            delivery_max_backoff_seconds: Some(16),
            liveness_bound_seconds: Some(17),
            max_unacknowledged_mib: Some(18),
            kafka_options: vec![("a".into(), "1".into()), ("b".into(), "x=y".into())],
            exactly_once: true,
            transactional_id: Some("t".into()),
            kafka_tls_dir: Some("/tls".into()),
            kafka_sasl_mechanism: Some(SaslMechanism::Plain),
            kafka_sasl_dir: Some("/sasl".into()),
            admin_addr: "127.0.0.9:1234".parse().expect("addr"),
            pipeline: Some("ns/p".parse().expect("ref")),
            log_format: LogFormat::Json,
        };
        assert_eq!(parse(&all.to_args()), all);
    }

    #[test]
    fn jobs_in_the_stages_follow_the_pools_within_the_bound() {
        let at = |pools: &str, max| WorkerArgs::jobs_in_stages(&pools.parse().expect("pools"), max);
        // Each worker's job and one waiting for it.
        assert_eq!(at("1/1/1/2", 64), 10);
        assert_eq!(at("4/4/4/4", 64), 32);
        // Never past the in-flight bound, never zero.
        assert_eq!(at("32/32/32/32", 64), 64);
        assert_eq!(at("2/2/2/2", 8), 8);
        assert_eq!(at("1/1/1/1", 0), 1);
    }

    #[test]
    fn a_later_flag_overrides_an_earlier_one() {
        let mut args = WorkerArgs::for_pipeline(&sample()).to_args();
        args.push("--admin-addr=127.0.0.3:9090".into());
        assert_eq!(parse(&args).admin_addr.to_string(), "127.0.0.3:9090");
    }

    #[test]
    fn references_are_namespace_slash_name() {
        let r: PipelineRef = "shop/storefront".parse().expect("valid");
        assert_eq!(
            (r.namespace.as_str(), r.name.as_str()),
            ("shop", "storefront")
        );
        assert_eq!(r.to_string(), "shop/storefront");
        for bad in ["storefront", "/storefront", "shop/", "a/b/c", ""] {
            assert!(bad.parse::<PipelineRef>().is_err(), "{bad:?} accepted");
        }
    }
}
