//! The objects a `PixelPipeline` owns, built as pure functions of it: the
//! worker Deployment ([`deployment`]), its ConfigMap (the worker's pipeline
//! file), and a ServiceAccount, Role and RoleBinding that let workers read
//! their own pipeline and nothing else.

mod deployment;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use pixelpipe_crds::worker::PIPELINE_FILE;
use pixelpipe_crds::{PipelineFile, PixelPipeline};
use thiserror::Error;

pub use deployment::deployment;
pub use pixelpipe_crds::worker::{CONFIG_HASH_ANNOTATION, CREDENTIALS_ANNOTATION};

/// The one field manager the operator applies with.
pub const FIELD_MANAGER: &str = "pixelpipe-operator";
/// The label naming a child's (and a worker pod's) pipeline.
pub const PIPELINE_LABEL: &str = "pixelpipe.dev/pipeline";

#[derive(Debug, Error)]
pub enum ChildError {
    #[error("the PixelPipeline has no {0} yet")]
    MissingMetadata(&'static str),
    #[error("writing the pipeline file: {0}")]
    PipelineFile(#[from] pixelpipe_crds::yaml::Error),
}

/// What a pipeline's name becomes in its children's.
const WORKER_SUFFIX: &str = "-worker";

/// Name shared by every child of a pipeline.
pub fn worker_name(pp: &PixelPipeline) -> String {
    format!("{}{WORKER_SUFFIX}", pp.name_any())
}

/// The pipeline whose children `name` names, if it names a pipeline's.
pub fn pipeline_of_worker(name: &str) -> Option<&str> {
    name.strip_suffix(WORKER_SUFFIX).filter(|p| !p.is_empty())
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
        (PIPELINE_LABEL.to_string(), pp.name_any()),
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

/// The worker's pipeline file, as the ConfigMap holds it.
pub fn pipeline_file(pp: &PixelPipeline) -> Result<String, ChildError> {
    Ok(PipelineFile::of(&pp.spec).to_yaml()?)
}

pub fn config_map(pp: &PixelPipeline) -> Result<ConfigMap, ChildError> {
    Ok(ConfigMap {
        metadata: meta(pp)?,
        data: Some(BTreeMap::from([(
            PIPELINE_FILE.to_string(),
            pipeline_file(pp)?,
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

/// At most one worker pod evicted at a time (a node drain, a cluster
/// upgrade): each eviction moves its partitions through a rebalance, and
/// losing several pods at once would stall the pipeline for a pod start.
/// A single worker may still be evicted, so a drain never blocks.
pub fn disruption_budget(pp: &PixelPipeline) -> Result<PodDisruptionBudget, ChildError> {
    Ok(PodDisruptionBudget {
        metadata: meta(pp)?,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(labels(pp)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::PodSpec;
    use pixelpipe_crds::worker::{KAFKA_SASL_DIR, KAFKA_TLS_DIR, WorkerArgs};
    use pixelpipe_crds::{DeliveryGuarantee, SaslMechanism, SaslSpec};

    fn sample() -> PixelPipeline {
        let text = include_str!("../../../manifests/samples/storefront.yaml");
        let mut pp: PixelPipeline = pixelpipe_crds::yaml::from_str(text).expect("sample parses");
        pp.metadata.namespace = Some("shop".into());
        pp.metadata.uid = Some("0d5c-uid".into());
        pp
    }

    fn pod(d: &Deployment) -> PodSpec {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.clone())
            .expect("pod spec")
    }

    /// The container's flags, parsed by the worker's own parser.
    fn worker_args(d: &Deployment) -> WorkerArgs {
        let args = pod(d).containers[0].args.clone().expect("args");
        WorkerArgs::try_parse_from(std::iter::once("pixelpipe-worker".to_string()).chain(args))
            .expect("the worker accepts the operator's flags")
    }

    fn pod_template_annotations(d: &Deployment) -> BTreeMap<String, String> {
        d.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.clone())
            .expect("annotations")
    }

    fn hash_of(d: &Deployment) -> String {
        pod_template_annotations(d)[CONFIG_HASH_ANNOTATION].clone()
    }

    #[test]
    fn the_deployment_carries_the_spec_as_the_workers_flags() {
        let pp = sample();
        let d = deployment(&pp, Some(3), None).expect("deployment");
        assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(3));
        let args = worker_args(&d);
        assert_eq!(args, WorkerArgs::for_pipeline(&pp));
        assert_eq!(args.bootstrap_servers, "kafka.kafka.svc:9092");
        assert_eq!(args.input_topic, "storefront.events");
        assert_eq!(args.group, "pixelpipe.shop.storefront");
        assert_eq!(args.pools.to_string(), "2/2/2/2");
        assert_eq!(args.max_pool_workers, 32);
        assert_eq!(args.max_in_flight_jobs, 64);
        assert_eq!(
            args.config.display().to_string(),
            "/etc/pixelpipe/pipeline.yaml"
        );
        let pod = pod(&d);
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
    fn placement_reaches_the_pods_and_the_operators_labels_win() {
        use k8s_openapi::api::core::v1::{LocalObjectReference, Toleration};
        let mut pp = sample();
        let w = &mut pp.spec.worker;
        w.image_pull_secrets = vec![LocalObjectReference {
            name: "registry".into(),
        }];
        w.node_selector = BTreeMap::from([("pool".into(), "pipelines".into())]);
        w.tolerations = vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Exists".into()),
            ..Toleration::default()
        }];
        w.priority_class_name = Some("pipelines".into());
        w.pod_labels = BTreeMap::from([
            ("team".into(), "growth".into()),
            ("app.kubernetes.io/name".into(), "mine".into()),
        ]);
        w.pod_annotations = BTreeMap::from([("owner".into(), "growth".into())]);
        let d = deployment(&pp, Some(1), None).expect("deployment");
        let spec = pod(&d);
        assert_eq!(
            spec.image_pull_secrets,
            Some(pp.spec.worker.image_pull_secrets.clone())
        );
        assert_eq!(
            spec.node_selector,
            Some(pp.spec.worker.node_selector.clone())
        );
        assert_eq!(spec.tolerations, Some(pp.spec.worker.tolerations.clone()));
        assert_eq!(spec.priority_class_name.as_deref(), Some("pipelines"));
        let meta = d
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.clone())
            .expect("template metadata");
        let labels = meta.labels.expect("labels");
        assert_eq!(labels["team"], "growth");
        assert_eq!(labels["app.kubernetes.io/name"], "pixelpipe-worker");
        let annotations = meta.annotations.expect("annotations");
        assert_eq!(annotations["owner"], "growth");
        assert_eq!(annotations["prometheus.io/port"], "9090");
        assert!(annotations.contains_key(CONFIG_HASH_ANNOTATION));
        // Nothing set, nothing written but the default spread.
        let plain = pod(&deployment(&sample(), Some(1), None).expect("deployment"));
        assert_eq!((plain.tolerations, plain.node_selector), (None, None));
        let spread = plain.topology_spread_constraints.unwrap_or_default();
        assert_eq!(
            spread
                .iter()
                .map(|c| (c.topology_key.as_str(), c.when_unsatisfiable.as_str()))
                .collect::<Vec<_>>(),
            [
                ("topology.kubernetes.io/zone", "ScheduleAnyway"),
                ("kubernetes.io/hostname", "ScheduleAnyway")
            ]
        );
    }

    #[test]
    fn the_grace_period_outlasts_the_workers_drain() {
        let grace = |pp: &PixelPipeline| {
            pod(&deployment(pp, Some(1), None).expect("deployment"))
                .termination_grace_period_seconds
        };
        let mut pp = sample();
        assert_eq!(grace(&pp), Some(30), "25 s of drain and 5 to exit");
        pp.spec.worker.env.push(k8s_openapi::api::core::v1::EnvVar {
            name: pixelpipe_crds::worker::SHUTDOWN_GRACE_ENV.into(),
            value: Some("120".into()),
            value_from: None,
        });
        assert_eq!(grace(&pp), Some(125));
    }

    #[test]
    fn exactly_once_turns_transactions_on_with_the_pod_name_as_id() {
        let mut pp = sample();
        assert!(!worker_args(&deployment(&pp, Some(1), None).expect("d")).exactly_once);
        pp.spec.delivery = DeliveryGuarantee::ExactlyOnce;
        let d = deployment(&pp, Some(1), None).expect("d");
        let args = worker_args(&d);
        assert!(args.exactly_once);
        assert_eq!(args.transactional_id.as_deref(), Some("$(POD_NAME)"));
        let pod_name = pod(&d).containers[0]
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "POD_NAME")
            .and_then(|e| e.value_from.as_ref()?.field_ref.as_ref())
            .map(|f| f.field_path.clone());
        assert_eq!(pod_name.as_deref(), Some("metadata.name"));
    }

    #[test]
    fn kafka_secrets_are_mounted_read_only_and_only_named() {
        let mut pp = sample();
        let plain = deployment(&pp, Some(1), None).expect("deployment");
        pp.spec.kafka.tls_secret_ref = Some("kafka-tls".into());
        pp.spec.kafka.sasl = Some(SaslSpec {
            mechanism: SaslMechanism::ScramSha512,
            secret_ref: "kafka-scram".into(),
        });
        let d = deployment(&pp, Some(1), None).expect("deployment");
        let args = worker_args(&d);
        assert_eq!(args.kafka_tls_dir.as_deref(), Some(KAFKA_TLS_DIR.as_ref()));
        assert_eq!(
            args.kafka_sasl_dir.as_deref(),
            Some(KAFKA_SASL_DIR.as_ref())
        );
        assert_eq!(args.kafka_sasl_mechanism, Some(SaslMechanism::ScramSha512));
        let pod = pod(&d);
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

    #[test]
    fn the_pipeline_file_is_what_the_worker_reads() {
        let pp = sample();
        let cm = config_map(&pp).expect("config map");
        let text = &cm.data.expect("data")[PIPELINE_FILE];
        let parsed = PipelineFile::parse(text).expect("the worker accepts the operator's file");
        assert_eq!(parsed, PipelineFile::of(&pp.spec));
        assert_eq!(parsed.partners[2].name, "audiences");
    }

    #[test]
    fn every_child_is_owned_named_and_labelled() {
        let pp = sample();
        let metas = [
            config_map(&pp).expect("cm").metadata,
            service_account(&pp).expect("sa").metadata,
            role(&pp).expect("role").metadata,
            role_binding(&pp).expect("binding").metadata,
            deployment(&pp, Some(2), None).expect("deployment").metadata,
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
            assert_eq!(m.labels.expect("labels")[PIPELINE_LABEL], "storefront");
        }
        let mut no_uid = sample();
        no_uid.metadata.uid = None;
        assert!(matches!(
            deployment(&no_uid, Some(1), None),
            Err(ChildError::MissingMetadata("uid"))
        ));
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
    fn configuration_changes_roll_the_pods_and_replica_changes_do_not() {
        let pp = sample();
        let base = hash_of(&deployment(&pp, Some(1), None).expect("d"));
        assert_eq!(
            base,
            hash_of(&deployment(&pp, Some(7), None).expect("d")),
            "replicas alone do not roll pods"
        );
        let mut changed = sample();
        changed.spec.partners[0].events.push("page_viewed".into());
        assert_ne!(
            base,
            hash_of(&deployment(&changed, Some(1), None).expect("d")),
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
            hash_of(&deployment(&kafka, Some(1), None).expect("d")),
            "a Kafka setting rolls pods"
        );
    }

    #[test]
    fn a_credentials_fingerprint_rolls_pods_and_none_leaves_no_annotation() {
        let pp = sample();
        let annotations = |credentials| {
            pod_template_annotations(&deployment(&pp, Some(1), credentials).expect("d"))
        };
        assert!(!annotations(None).contains_key(CREDENTIALS_ANNOTATION));
        assert!(!annotations(Some("")).contains_key(CREDENTIALS_ANNOTATION));
        assert_eq!(annotations(Some("abc"))[CREDENTIALS_ANNOTATION], "abc");
        assert_eq!(
            annotations(Some("abc"))[CONFIG_HASH_ANNOTATION],
            annotations(None)[CONFIG_HASH_ANNOTATION],
            "the config hash is about the config alone"
        );
    }
}
