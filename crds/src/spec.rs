//! What a user declares in a `PixelPipeline`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
    TopologySpreadConstraint,
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::sizing::{AutoscalingSpec, BatchSpec, LimitsSpec, ReplicasSpec, SloSpec, StagePool};
use crate::stage::PerStage;
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
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
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
    pub stages: PerStage<StagePool>,
    /// How events are grouped into batch jobs.
    #[serde(default)]
    pub batch: BatchSpec,
    /// What a worker accepts from the input topic; anything else is dead-lettered.
    #[serde(default)]
    pub limits: LimitsSpec,
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
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    JsonSchema,
    strum::IntoStaticStr,
    strum::EnumString,
    clap::ValueEnum,
)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    #[strum(serialize = "PLAIN")]
    #[value(name = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    #[strum(serialize = "SCRAM-SHA-256")]
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    #[strum(serialize = "SCRAM-SHA-512")]
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The name Kafka clients use (`sasl.mechanism`).
    pub fn as_str(self) -> &'static str {
        self.into()
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
    /// Secrets holding credentials for a private image registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Node labels a node must carry to run a worker.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the worker pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node affinity and pod (anti-)affinity of the worker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// How the worker pods spread over zones or nodes; by default as evenly
    /// as possible over both without refusing a pod (`ScheduleAnyway`). A
    /// pipeline's pods carry the labels `app.kubernetes.io/name:
    /// pixelpipe-worker` and `app.kubernetes.io/instance: <pipeline name>` to
    /// select them by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// PriorityClass of the worker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Extra labels on the worker pods; the operator's own labels win.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    /// Extra annotations on the worker pods; the operator's own win.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
}

impl PixelPipeline {
    /// The workers' consumer group: the spec's, or one unique to this pipeline.
    pub fn consumer_group(&self) -> String {
        use kube::ResourceExt;
        self.spec.kafka.consumer_group.clone().unwrap_or_else(|| {
            format!(
                "pixelpipe.{}.{}",
                self.namespace().unwrap_or_default(),
                self.name_any()
            )
        })
    }
}
