//! The objects a `PixelPipeline` owns, built as pure functions of it: the
//! worker Deployment, its ConfigMap (the worker's pipeline file), and a
//! ServiceAccount, Role and RoleBinding that let workers read their own
//! pipeline and nothing else.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SeccompProfile, SecretVolumeSource, SecurityContext, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use pixelpipe_crds::{DeliveryGuarantee, PixelPipeline, PixelPipelineSpec, Purpose};
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The one field manager the operator applies with.
pub const FIELD_MANAGER: &str = "pixelpipe-operator";
/// Pod annotation whose change rolls the workers when their configuration changes.
pub const CONFIG_HASH_ANNOTATION: &str = "pixelpipe.dev/config-sha256";
/// Key of the pipeline file in the ConfigMap.
pub const PIPELINE_FILE: &str = "pipeline.yaml";
const CONFIG_DIR: &str = "/etc/pixelpipe";
/// Where the Kafka Secrets are mounted; the worker reads them at start.
pub const KAFKA_TLS_DIR: &str = "/etc/pixelpipe-kafka/tls";
pub const KAFKA_SASL_DIR: &str = "/etc/pixelpipe-kafka/sasl";
const ADMIN_PORT: i32 = 9090;
/// Unprivileged user of the distroless worker image.
const WORKER_UID: i64 = 65532;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChildError {
    #[error("the PixelPipeline has no {0} yet")]
    MissingMetadata(&'static str),
}

/// Name shared by every child of a pipeline.
pub fn worker_name(pp: &PixelPipeline) -> String {
    format!("{}-worker", pp.name_any())
}

/// The consumer group: the spec's, or one unique to this pipeline.
pub fn consumer_group(pp: &PixelPipeline) -> String {
    pp.spec.kafka.consumer_group.clone().unwrap_or_else(|| {
        format!(
            "pixelpipe.{}.{}",
            pp.namespace().unwrap_or_default(),
            pp.name_any()
        )
    })
}

/// Labels on every child, and the Deployment's selector.
pub fn labels(pp: &PixelPipeline) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "pixelpipe-worker".to_string(),
        ),
        ("app.kubernetes.io/instance".to_string(), pp.name_any()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            FIELD_MANAGER.to_string(),
        ),
        ("pixelpipe.dev/pipeline".to_string(), pp.name_any()),
    ])
}

fn meta(pp: &PixelPipeline) -> Result<ObjectMeta, ChildError> {
    let owner: OwnerReference = pp
        .controller_owner_ref(&())
        .ok_or(ChildError::MissingMetadata("uid"))?;
    Ok(ObjectMeta {
        name: Some(worker_name(pp)),
        namespace: Some(
            pp.namespace()
                .ok_or(ChildError::MissingMetadata("namespace"))?,
        ),
        labels: Some(labels(pp)),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    })
}

/// The worker's pipeline file, in the format `pixelpipe-worker --config` reads.
pub fn pipeline_file(spec: &PixelPipelineSpec) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct File<'a> {
        partners: Vec<Partner<'a>>,
        privacy: Privacy<'a>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Partner<'a> {
        name: &'a str,
        topic: &'a str,
        events: &'a [String],
        required_consent: &'a [Purpose],
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Privacy<'a> {
        region_rules: Vec<Rule<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        url_query_allowlist: Option<&'a [String]>,
        #[serde(skip_serializing_if = "Option::is_none")]
        default_phone_country_code: Option<&'a str>,
    }
    #[derive(Serialize)]
    struct Rule<'a> {
        regions: &'a [String],
        require: &'a [Purpose],
        #[serde(skip_serializing_if = "Option::is_none")]
        partners: Option<&'a [String]>,
    }
    let file = File {
        partners: spec
            .partners
            .iter()
            .map(|p| Partner {
                name: &p.name,
                topic: &p.topic,
                events: &p.events,
                required_consent: &p.required_consent,
            })
            .collect(),
        privacy: Privacy {
            region_rules: spec
                .privacy
                .region_rules
                .iter()
                .map(|r| Rule {
                    regions: &r.regions,
                    require: &r.require,
                    partners: r.partners.as_deref(),
                })
                .collect(),
            url_query_allowlist: spec.privacy.url_query_allowlist.as_deref(),
            default_phone_country_code: spec.privacy.default_phone_country_code.as_deref(),
        },
    };
    // Plain data into YAML cannot fail.
    serde_yaml::to_string(&file).unwrap_or_default()
}

pub fn config_map(pp: &PixelPipeline) -> Result<ConfigMap, ChildError> {
    Ok(ConfigMap {
        metadata: meta(pp)?,
        data: Some(BTreeMap::from([(
            PIPELINE_FILE.to_string(),
            pipeline_file(&pp.spec),
        )])),
        ..ConfigMap::default()
    })
}

pub fn service_account(pp: &PixelPipeline) -> Result<ServiceAccount, ChildError> {
    Ok(ServiceAccount {
        metadata: meta(pp)?,
        automount_service_account_token: Some(true),
        ..ServiceAccount::default()
    })
}

/// Read access to this one PixelPipeline, for following its pool sizes.
pub fn role(pp: &PixelPipeline) -> Result<Role, ChildError> {
    Ok(Role {
        metadata: meta(pp)?,
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![pixelpipe_crds::GROUP.to_string()]),
            resources: Some(vec!["pixelpipelines".to_string()]),
            resource_names: Some(vec![pp.name_any()]),
            verbs: vec!["get".to_string(), "list".to_string(), "watch".to_string()],
            ..PolicyRule::default()
        }]),
    })
}

pub fn role_binding(pp: &PixelPipeline) -> Result<RoleBinding, ChildError> {
    let name = worker_name(pp);
    Ok(RoleBinding {
        metadata: meta(pp)?,
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "Role".to_string(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name,
            namespace: pp.namespace(),
            ..Subject::default()
        }]),
    })
}

fn env(name: &str, value: impl ToString) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        ..EnvVar::default()
    }
}

/// Everything the pods read at start: a change rolls them.
fn config_hash(pp: &PixelPipeline, environment: &[EnvVar]) -> String {
    let mut h = Sha256::new();
    h.update(pipeline_file(&pp.spec).as_bytes());
    for e in environment {
        h.update(e.name.as_bytes());
        h.update([0]);
        h.update(e.value.as_deref().unwrap_or_default().as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// The worker Deployment with `replicas` pods. Pool sizes in the pod template
/// are the spec's starting sizes; later resizes reach the workers through the
/// PixelPipeline's status, without a rollout.
pub fn deployment(pp: &PixelPipeline, replicas: i32) -> Result<Deployment, ChildError> {
    let spec = &pp.spec;
    let stages = &spec.stages;
    let max_pool = [
        &stages.parse,
        &stages.validate,
        &stages.augment,
        &stages.produce,
    ]
    .iter()
    .map(|s| s.max_workers)
    .max()
    .unwrap_or(1);
    let mut environment = vec![
        env("PIXELPIPE_BOOTSTRAP_SERVERS", &spec.kafka.bootstrap_servers),
        env("PIXELPIPE_INPUT_TOPIC", &spec.kafka.input_topic),
        env("PIXELPIPE_DEAD_LETTER_TOPIC", &spec.kafka.dead_letter_topic),
        env("PIXELPIPE_GROUP", consumer_group(pp)),
        env("PIXELPIPE_CONFIG", format!("{CONFIG_DIR}/{PIPELINE_FILE}")),
        env("PIXELPIPE_PARSE_WORKERS", stages.parse.workers),
        env("PIXELPIPE_VALIDATE_WORKERS", stages.validate.workers),
        env("PIXELPIPE_AUGMENT_WORKERS", stages.augment.workers),
        env("PIXELPIPE_PRODUCE_WORKERS", stages.produce.workers),
        env("PIXELPIPE_MAX_POOL_WORKERS", max_pool),
        // Jobs in flight bound memory, but a pool worker without a job idles:
        // twice the largest pool keeps the pools busy as the operator grows
        // them (the benchmark's finding, docs/benchmarks.md).
        env("PIXELPIPE_MAX_IN_FLIGHT_JOBS", (2 * max_pool).max(8)),
        env("PIXELPIPE_BATCH_MAX_EVENTS", spec.batch.max_events),
        env("PIXELPIPE_BATCH_MAX_WAIT_MS", spec.batch.max_wait_ms),
        env("PIXELPIPE_ADMIN_ADDR", format!("0.0.0.0:{ADMIN_PORT}")),
        env("PIXELPIPE_LOG_FORMAT", "json"),
        env(
            "PIXELPIPE_PIPELINE",
            format!("{}/{}", pp.namespace().unwrap_or_default(), pp.name_any()),
        ),
    ];
    if !spec.kafka.options.is_empty() {
        let options: Vec<String> = spec
            .kafka
            .options
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        environment.push(env("PIXELPIPE_KAFKA_OPTIONS", options.join(",")));
    }
    // Credentials reach the pods only as Secret volumes: the Deployment names
    // the Secrets, never their contents.
    let mut volumes = vec![Volume {
        name: "config".to_string(),
        config_map: Some(ConfigMapVolumeSource {
            name: worker_name(pp),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "config".to_string(),
        mount_path: CONFIG_DIR.to_string(),
        read_only: Some(true),
        ..VolumeMount::default()
    }];
    let mut secret = |name: &str, secret: &str, dir: &str| {
        volumes.push(Volume {
            name: name.to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.to_string()),
                default_mode: Some(0o400),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: name.to_string(),
            mount_path: dir.to_string(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    };
    if let Some(tls) = &spec.kafka.tls_secret_ref {
        secret("kafka-tls", tls, KAFKA_TLS_DIR);
        environment.push(env("PIXELPIPE_KAFKA_TLS_DIR", KAFKA_TLS_DIR));
    }
    if let Some(sasl) = &spec.kafka.sasl {
        secret("kafka-sasl", &sasl.secret_ref, KAFKA_SASL_DIR);
        environment.push(env(
            "PIXELPIPE_KAFKA_SASL_MECHANISM",
            sasl.mechanism.as_str(),
        ));
        environment.push(env("PIXELPIPE_KAFKA_SASL_DIR", KAFKA_SASL_DIR));
    }
    if spec.delivery == DeliveryGuarantee::ExactlyOnce {
        environment.push(env("PIXELPIPE_EXACTLY_ONCE", "true"));
        // The pod's name: unique per running worker, and a restarted container
        // keeps it, so its first transaction fences what the killed one left open.
        environment.push(EnvVar {
            name: "PIXELPIPE_TRANSACTIONAL_ID".to_string(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".to_string(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
    }
    environment.extend(spec.worker.env.iter().cloned());
    let hash = config_hash(pp, &environment);
    let selector = labels(pp);
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String("admin".to_string()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(5),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    let container = Container {
        name: "worker".to_string(),
        image: Some(spec.worker.image.clone()),
        image_pull_policy: spec.worker.image_pull_policy.clone(),
        env: Some(environment),
        ports: Some(vec![ContainerPort {
            name: Some("admin".to_string()),
            container_port: ADMIN_PORT,
            ..ContainerPort::default()
        }]),
        resources: spec.worker.resources.clone(),
        liveness_probe: Some(probe("/healthz")),
        readiness_probe: Some(probe("/readyz")),
        volume_mounts: Some(mounts),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_string()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    Ok(Deployment {
        metadata: meta(pp)?,
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(selector),
                    annotations: Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_string(), hash)])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(worker_name(pp)),
                    // The worker drains within 25 s by default.
                    termination_grace_period_seconds: Some(30),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(WORKER_UID),
                        run_as_group: Some(WORKER_UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_string(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pixelpipe_worker::config::PipelineConfig;

    fn sample() -> PixelPipeline {
        let text = include_str!("../../manifests/samples/storefront.yaml");
        let mut pp: PixelPipeline = serde_yaml::from_str(text).expect("sample parses");
        pp.metadata.namespace = Some("shop".into());
        pp.metadata.uid = Some("0d5c-uid".into());
        pp
    }

    fn env_of(d: &Deployment) -> BTreeMap<String, String> {
        let pod = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod spec");
        pod.containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn exactly_once_turns_transactions_on_with_the_pod_name_as_id() {
        let mut pp = sample();
        assert!(!env_of(&deployment(&pp, 1).expect("d")).contains_key("PIXELPIPE_EXACTLY_ONCE"));
        pp.spec.delivery = DeliveryGuarantee::ExactlyOnce;
        let d = deployment(&pp, 1).expect("d");
        assert_eq!(env_of(&d)["PIXELPIPE_EXACTLY_ONCE"], "true");
        let pod = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod");
        let id = pod.containers[0]
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "PIXELPIPE_TRANSACTIONAL_ID")
            .and_then(|e| e.value_from.as_ref()?.field_ref.as_ref())
            .map(|f| f.field_path.clone());
        assert_eq!(id.as_deref(), Some("metadata.name"));
    }

    #[test]
    fn kafka_secrets_are_mounted_read_only_and_only_named() {
        let mut pp = sample();
        let plain = deployment(&pp, 1).expect("deployment");
        pp.spec.kafka.tls_secret_ref = Some("kafka-tls".into());
        pp.spec.kafka.sasl = Some(pixelpipe_crds::SaslSpec {
            mechanism: pixelpipe_crds::SaslMechanism::ScramSha512,
            secret_ref: "kafka-scram".into(),
        });
        let d = deployment(&pp, 1).expect("deployment");
        let env = env_of(&d);
        assert_eq!(env["PIXELPIPE_KAFKA_TLS_DIR"], KAFKA_TLS_DIR);
        assert_eq!(env["PIXELPIPE_KAFKA_SASL_DIR"], KAFKA_SASL_DIR);
        assert_eq!(env["PIXELPIPE_KAFKA_SASL_MECHANISM"], "SCRAM-SHA-512");
        let pod = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod");
        let secrets: Vec<(String, Option<i32>)> = pod
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.secret.as_ref())
            .map(|s| (s.secret_name.clone().unwrap_or_default(), s.default_mode))
            .collect();
        assert_eq!(
            secrets,
            vec![
                ("kafka-tls".into(), Some(0o400)),
                ("kafka-scram".into(), Some(0o400))
            ]
        );
        let mounts = pod.containers[0].volume_mounts.as_ref().expect("mounts");
        assert!(mounts.iter().all(|m| m.read_only == Some(true)));
        assert!(mounts.iter().any(|m| m.mount_path == KAFKA_SASL_DIR));
        assert_ne!(
            hash_of(&d),
            hash_of(&plain),
            "turning SASL on rolls the pods"
        );
    }

    fn hash_of(d: &Deployment) -> String {
        d.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .expect("annotations")[CONFIG_HASH_ANNOTATION]
            .clone()
    }

    #[test]
    fn the_pipeline_file_is_what_the_worker_reads() {
        let pp = sample();
        let cm = config_map(&pp).expect("config map");
        let text = &cm.data.expect("data")[PIPELINE_FILE];
        let parsed = PipelineConfig::parse(text).expect("the worker accepts the operator's file");
        assert_eq!(parsed.partners.len(), 3);
        assert_eq!(parsed.partners[2].name, "audiences");
        assert_eq!(parsed.partners[2].events, vec!["checkout_completed"]);
        assert_eq!(
            parsed.privacy.region_rules[0].regions,
            vec!["US-CA", "US-CO", "US-VA"]
        );
        assert_eq!(
            parsed.privacy.region_rules[0].partners.as_deref(),
            Some(&["ads".to_string()][..])
        );
    }

    #[test]
    fn every_child_is_owned_named_and_labelled() {
        let pp = sample();
        let metas = [
            config_map(&pp).expect("cm").metadata,
            service_account(&pp).expect("sa").metadata,
            role(&pp).expect("role").metadata,
            role_binding(&pp).expect("binding").metadata,
            deployment(&pp, 2).expect("deployment").metadata,
        ];
        for m in metas {
            assert_eq!(m.name.as_deref(), Some("storefront-worker"));
            assert_eq!(m.namespace.as_deref(), Some("shop"));
            let owner = &m.owner_references.expect("owner")[0];
            assert_eq!(
                (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
                ("PixelPipeline", "storefront", "0d5c-uid")
            );
            assert_eq!(owner.controller, Some(true));
            assert_eq!(
                m.labels.expect("labels")["pixelpipe.dev/pipeline"],
                "storefront"
            );
        }
        let mut no_uid = sample();
        no_uid.metadata.uid = None;
        assert_eq!(
            deployment(&no_uid, 1).err(),
            Some(ChildError::MissingMetadata("uid"))
        );
    }

    #[test]
    fn workers_may_read_only_their_own_pipeline() {
        let pp = sample();
        let rule = &role(&pp).expect("role").rules.expect("rules")[0];
        assert_eq!(
            rule.resource_names.as_deref(),
            Some(&["storefront".to_string()][..])
        );
        assert_eq!(rule.verbs, vec!["get", "list", "watch"]);
        let binding = role_binding(&pp).expect("binding");
        assert_eq!(binding.role_ref.name, "storefront-worker");
        assert_eq!(
            binding.subjects.expect("subjects")[0].name,
            "storefront-worker"
        );
    }

    #[test]
    fn the_deployment_carries_the_spec() {
        let pp = sample();
        let d = deployment(&pp, 3).expect("deployment");
        assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(3));
        let env = env_of(&d);
        assert_eq!(env["PIXELPIPE_BOOTSTRAP_SERVERS"], "kafka.kafka.svc:9092");
        assert_eq!(env["PIXELPIPE_INPUT_TOPIC"], "storefront.events");
        assert_eq!(env["PIXELPIPE_GROUP"], "pixelpipe.shop.storefront");
        assert_eq!(env["PIXELPIPE_PRODUCE_WORKERS"], "2");
        assert_eq!(env["PIXELPIPE_MAX_POOL_WORKERS"], "32");
        assert_eq!(env["PIXELPIPE_MAX_IN_FLIGHT_JOBS"], "64");
        assert_eq!(env["PIXELPIPE_CONFIG"], "/etc/pixelpipe/pipeline.yaml");
        let pod = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.clone())
            .expect("pod");
        let sc = pod.containers[0]
            .security_context
            .clone()
            .expect("security context");
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(
            sc.capabilities.and_then(|c| c.drop),
            Some(vec!["ALL".to_string()])
        );
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some("storefront-worker")
        );
    }

    #[test]
    fn configuration_changes_roll_the_pods_and_replica_changes_do_not() {
        let pp = sample();
        let base = hash_of(&deployment(&pp, 1).expect("d"));
        assert_eq!(
            base,
            hash_of(&deployment(&pp, 7).expect("d")),
            "replicas alone do not roll pods"
        );
        let mut changed = sample();
        changed.spec.partners[0].events.push("page_viewed".into());
        assert_ne!(
            base,
            hash_of(&deployment(&changed, 1).expect("d")),
            "a partner change rolls pods"
        );
        let mut kafka = sample();
        kafka
            .spec
            .kafka
            .options
            .insert("linger.ms".into(), "20".into());
        assert_ne!(
            base,
            hash_of(&deployment(&kafka, 1).expect("d")),
            "a Kafka setting rolls pods"
        );
    }
}
