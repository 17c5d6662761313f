//! What a user declares in a `PixelPipeline`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::PixelPipelineStatus;

/// A Kafka event pipeline that delivers consented storefront events to
/// marketing partners within an SLO. The operator runs it as a worker
/// Deployment and resizes its pools and replicas to hold the SLO.
// Printer columns repeat `type_ = ...`; clippy reads that as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "pixelpipe.dev",
    version = "v1alpha1",
    kind = "PixelPipeline",
    plural = "pixelpipelines",
    shortname = "pxp",
    namespaced,
    status = "PixelPipelineStatus",
    scale(
        spec_replicas_path = ".spec.replicas.initial",
        status_replicas_path = ".status.replicas"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(
        name = "Pools",
        type_ = "string",
        json_path = ".status.poolSummary",
        description = "Workers per stage: parse/validate/augment/produce"
    ),
    printcolumn(name = "Lag", type_ = "integer", json_path = ".status.lag"),
    printcolumn(
        name = "Oldest",
        type_ = "string",
        json_path = ".status.oldestEventAge",
        description = "Age of the oldest unprocessed event"
    ),
    printcolumn(name = "SLO", type_ = "string", json_path = ".status.sloState"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.partners.all(p, p.topic != self.kafka.inputTopic && p.topic != self.kafka.deadLetterTopic)").message("partner topics must differ from the input and dead-letter topics"))]
#[x_kube(validation = Rule::new("self.kafka.deadLetterTopic != self.kafka.inputTopic").message("the dead-letter topic must differ from the input topic"))]
#[serde(rename_all = "camelCase")]
pub struct PixelPipelineSpec {
    /// Where events come from and where rejected ones go.
    pub kafka: KafkaSpec,
    /// Marketing partners. An event reaches a partner only if the partner wants
    /// its name and the customer's consent covers what the partner requires.
    #[schemars(length(min = 1, max = 64))]
    pub partners: Vec<PartnerSpec>,
    /// Privacy rules applied on top of each partner's required consent.
    #[serde(default)]
    pub privacy: PrivacySpec,
    /// The worker pods: image, resources, extra environment.
    pub worker: WorkerSpec,
    /// Bounds on the number of worker pods.
    pub replicas: ReplicasSpec,
    /// Worker pool sizes per pipeline stage, with the bounds autoscaling keeps to.
    #[serde(default)]
    pub stages: StagesSpec,
    /// How events are grouped into batch jobs.
    #[serde(default)]
    pub batch: BatchSpec,
    /// The service level objective the operator scales to hold.
    #[serde(default)]
    pub slo: SloSpec,
    /// How the operator resizes pools and replicas.
    #[serde(default)]
    pub autoscaling: AutoscalingSpec,
    /// What partners' consumers may rely on: `AtLeastOnce` (an event may be
    /// repeated after a crash or rebalance) or `ExactlyOnce` (outputs and the
    /// offsets they consume commit in one Kafka transaction; read-committed
    /// consumers see each output once; costs throughput, and a rebalance
    /// restarts the workers that lose partitions).
    #[serde(default)]
    pub delivery: DeliveryGuarantee,
}

/// The delivery guarantee to partner topics.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeliveryGuarantee {
    /// Outputs acknowledged before their input is committed; repeats possible.
    #[default]
    AtLeastOnce,
    /// Kafka transactions: no repeats for read-committed consumers.
    ExactlyOnce,
}

/// Kafka connection and topics.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSpec {
    /// Comma-separated `host:port` list of Kafka bootstrap servers.
    #[schemars(length(min = 1))]
    pub bootstrap_servers: String,
    /// Topic the storefront events arrive on.
    #[schemars(length(min = 1, max = 249))]
    pub input_topic: String,
    /// Consumer group of the workers. Defaults to `pixelpipe.<namespace>.<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_group: Option<String>,
    /// Topic for messages that cannot be parsed or validated.
    #[schemars(length(min = 1, max = 249))]
    pub dead_letter_topic: String,
    /// Secret holding TLS material (`ca.crt`, and `tls.crt`/`tls.key` for mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_ref: Option<String>,
    /// SASL authentication; credentials come from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SaslSpec>,
    /// Extra librdkafka properties for the workers' clients (no credentials here).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// SASL settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SaslSpec {
    /// SASL mechanism.
    pub mechanism: SaslMechanism,
    /// Secret with `username` and `password` keys.
    #[schemars(length(min = 1))]
    pub secret_ref: String,
}

/// Supported SASL mechanisms.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The name Kafka clients use (`sasl.mechanism`).
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// A purpose a customer can consent to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Purpose {
    Analytics,
    Marketing,
    Preferences,
    SaleOfData,
}

/// One marketing partner.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartnerSpec {
    /// Partner name, unique in the pipeline; used in metrics.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Topic this partner's events are produced to.
    #[schemars(length(min = 1, max = 249))]
    pub topic: String,
    /// Event names this partner receives; `*` for every known event.
    #[schemars(length(min = 1))]
    pub events: Vec<String>,
    /// Purposes the customer must all have allowed.
    #[serde(default)]
    pub required_consent: Vec<Purpose>,
}

/// Privacy rules.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivacySpec {
    /// Regional rules that require extra purposes, such as sale-of-data opt-out laws.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub region_rules: Vec<RegionRuleSpec>,
    /// URL query parameters kept in forwarded URLs; all others are stripped.
    /// Defaults to the `utm_*` campaign parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_query_allowlist: Option<Vec<String>>,
    /// Calling code assumed for phone numbers without `+` or `00`. Defaults to `1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_phone_country_code: Option<String>,
}

/// In the listed regions, the listed partners also require `require`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionRuleSpec {
    /// ISO 3166 codes; `US` matches `US` and all of its subdivisions such as `US-CA`.
    #[schemars(length(min = 1))]
    pub regions: Vec<String>,
    /// Purposes additionally required in these regions.
    #[schemars(length(min = 1))]
    pub require: Vec<Purpose>,
    /// Partners the rule applies to; all when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partners: Option<Vec<String>>,
}

/// The worker pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerSpec {
    /// Container image of `pixelpipe-worker`.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Image pull policy: Always, IfNotPresent or Never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// CPU and memory requests and limits of the worker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra environment variables for the worker container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

/// Bounds on worker pods. Never more replicas than input partitions are used.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.min <= self.max").message("replicas.min must not exceed replicas.max"))]
#[x_kube(validation = Rule::new("!has(self.initial) || (self.min <= self.initial && self.initial <= self.max)").message("replicas.initial must lie between replicas.min and replicas.max"))]
#[serde(rename_all = "camelCase")]
pub struct ReplicasSpec {
    /// Fewest worker pods.
    #[schemars(range(min = 1))]
    pub min: i32,
    /// Most worker pods.
    #[schemars(range(min = 1))]
    pub max: i32,
    /// Pods to start with; `min` when omitted. The scale subresource
    /// (`kubectl scale`) sets it. With autoscaling Enabled the operator moves
    /// the count from here within min and max; with DryRun or Disabled this is
    /// the count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<i32>,
}

/// Pool sizes of the four stages.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StagesSpec {
    /// Decoding of raw bytes into events.
    #[serde(default)]
    pub parse: StagePool,
    /// Semantic checks, consent and routing.
    #[serde(default)]
    pub validate: StagePool,
    /// Server-side fields, hashing and URL stripping.
    #[serde(default)]
    pub augment: StagePool,
    /// Handing partner messages and dead letters to the Kafka producer.
    #[serde(default)]
    pub produce: StagePool,
}

/// One stage's pool: its starting size and the bounds autoscaling keeps to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.minWorkers <= self.workers && self.workers <= self.maxWorkers").message("workers must lie between minWorkers and maxWorkers"))]
#[serde(rename_all = "camelCase")]
pub struct StagePool {
    /// Workers to start with. With autoscaling Enabled the operator moves the
    /// size within minWorkers and maxWorkers; with DryRun or Disabled this is the size.
    #[serde(default = "default_workers")]
    #[schemars(range(min = 1, max = 256))]
    pub workers: i32,
    /// Fewest workers autoscaling may leave.
    #[serde(default = "default_min_workers")]
    #[schemars(range(min = 1, max = 256))]
    pub min_workers: i32,
    /// Most workers autoscaling may start.
    #[serde(default = "default_max_workers")]
    #[schemars(range(min = 1, max = 256))]
    pub max_workers: i32,
}

impl Default for StagePool {
    fn default() -> Self {
        Self {
            workers: default_workers(),
            min_workers: default_min_workers(),
            max_workers: default_max_workers(),
        }
    }
}

fn default_workers() -> i32 {
    2
}
fn default_min_workers() -> i32 {
    1
}
fn default_max_workers() -> i32 {
    32
}

/// Batching of events into jobs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchSpec {
    /// Events per batch job, at most.
    #[serde(default = "default_max_events")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_events: i32,
    /// Milliseconds a batch waits to fill after its first event.
    #[serde(default = "default_max_wait_ms")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_wait_ms: i32,
}

impl Default for BatchSpec {
    fn default() -> Self {
        Self {
            max_events: default_max_events(),
            max_wait_ms: default_max_wait_ms(),
        }
    }
}

fn default_max_events() -> i32 {
    250
}
fn default_max_wait_ms() -> i32 {
    50
}

/// The service level objective.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SloSpec {
    /// The oldest unprocessed event must stay younger than this many seconds.
    #[serde(default = "default_max_event_age")]
    #[schemars(range(min = 1, max = 86400))]
    pub max_event_age_seconds: i32,
}

impl Default for SloSpec {
    fn default() -> Self {
        Self {
            max_event_age_seconds: default_max_event_age(),
        }
    }
}

fn default_max_event_age() -> i32 {
    300
}

/// Whether and how the operator resizes the pipeline.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AutoscalingMode {
    /// Decide and apply.
    #[default]
    Enabled,
    /// Decide and report in the status, change nothing.
    DryRun,
    /// Keep the declared sizes.
    Disabled,
}

/// Autoscaling settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Enabled, DryRun or Disabled.
    #[serde(default)]
    pub mode: AutoscalingMode,
    /// Seconds between lag observations.
    #[serde(default = "default_observation_interval")]
    #[schemars(range(min = 1, max = 300))]
    pub observation_interval_seconds: i32,
    /// Seconds the recommendation must stay lower before scaling down.
    #[serde(default = "default_stabilization")]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_down_stabilization_seconds: i32,
    /// Seconds a new worker pod takes to start consuming; with the rebalance
    /// pause and one interval it is the cooldown after a replica change.
    #[serde(default = "default_pod_start")]
    #[schemars(range(min = 0, max = 3600))]
    pub pod_start_seconds: i32,
    /// Seconds the consumer group pauses to rebalance when members change.
    #[serde(default = "default_rebalance")]
    #[schemars(range(min = 0, max = 600))]
    pub rebalance_seconds: i32,
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            mode: AutoscalingMode::default(),
            observation_interval_seconds: default_observation_interval(),
            scale_down_stabilization_seconds: default_stabilization(),
            pod_start_seconds: default_pod_start(),
            rebalance_seconds: default_rebalance(),
        }
    }
}

fn default_observation_interval() -> i32 {
    10
}
fn default_stabilization() -> i32 {
    300
}
fn default_pod_start() -> i32 {
    60
}
fn default_rebalance() -> i32 {
    15
}
