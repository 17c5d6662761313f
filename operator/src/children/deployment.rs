//! The worker Deployment: the pod runs `pixelpipe-worker` with the flags
//! [`WorkerArgs::for_pipeline`] sets (the one operator-worker contract), the
//! pipeline file and any Kafka Secrets mounted read-only, locked down.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SeccompProfile, SecretVolumeSource, SecurityContext, TopologySpreadConstraint, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pixelpipe_crds::PixelPipeline;
use pixelpipe_crds::worker::{
    ADMIN_PORT, CONFIG_DIR, CONFIG_HASH_ANNOTATION, CREDENTIALS_ANNOTATION,
    DEFAULT_SHUTDOWN_GRACE_SECONDS, KAFKA_SASL_DIR, KAFKA_TLS_DIR, POD_NAME_ENV,
    SHUTDOWN_GRACE_ENV, WorkerArgs,
};
use sha2::{Digest, Sha256};

use super::{ChildError, labels, meta, pipeline_file, worker_name};

/// Unprivileged user of the distroless worker image.
const WORKER_UID: i64 = 65532;

/// The worker Deployment with `replicas` pods (`None`: the field is left to
/// another owner, an HPA). Pool sizes in the pod's flags
/// are the spec's starting sizes; later resizes reach the workers through the
/// PixelPipeline's status, without a rollout. `credentials` fingerprints the
/// Kafka Secrets as last read ([`crate::credentials::KafkaSecrets`]).
pub fn deployment(
    pp: &PixelPipeline,
    replicas: Option<i32>,
    credentials: Option<&str>,
) -> Result<Deployment, ChildError> {
    let args = WorkerArgs::for_pipeline(pp).to_args();
    let env = environment(pp);
    let hash = config_hash(&pipeline_file(pp)?, &args, &env);
    let (volumes, mounts) = volumes(pp);
    let selector = labels(pp);
    let worker = &pp.spec.worker;
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(merged(&worker.pod_labels, selector.clone())),
            annotations: Some(merged(
                &worker.pod_annotations,
                annotations(hash, credentials),
            )),
            ..ObjectMeta::default()
        }),
        spec: Some(pod(pp, container(pp, args, env, mounts), volumes)),
    };
    Ok(Deployment {
        metadata: meta(pp)?,
        spec: Some(DeploymentSpec {
            replicas,
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template,
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    })
}

/// The pod's name for the transactional id (`$(POD_NAME)` in the flags),
/// then the user's extra variables.
fn environment(pp: &PixelPipeline) -> Vec<EnvVar> {
    let pod_name = EnvVar {
        name: POD_NAME_ENV.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    std::iter::once(pod_name)
        .chain(pp.spec.worker.env.iter().cloned())
        .collect()
}

/// Everything the pods read at start: a change rolls them.
fn config_hash(pipeline_file: &str, args: &[String], env: &[EnvVar]) -> String {
    let mut h = Sha256::new();
    h.update(pipeline_file.as_bytes());
    for a in args {
        h.update(a.as_bytes());
        h.update([0]);
    }
    for e in env {
        h.update(e.name.as_bytes());
        h.update([0]);
        h.update(e.value.as_deref().unwrap_or_default().as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// The pipeline file, and the Kafka Secrets the spec names. Credentials reach
/// the pods only as Secret volumes: the Deployment names the Secrets, never
/// their contents.
fn volumes(pp: &PixelPipeline) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mount = |name: &str, dir: &str| VolumeMount {
        name: name.to_string(),
        mount_path: dir.to_string(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let mut volumes = vec![Volume {
        name: "config".to_string(),
        config_map: Some(ConfigMapVolumeSource {
            name: worker_name(pp),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }];
    let mut mounts = vec![mount("config", CONFIG_DIR)];
    let kafka = &pp.spec.kafka;
    let secrets = [
        ("kafka-tls", kafka.tls_secret_ref.as_deref(), KAFKA_TLS_DIR),
        (
            "kafka-sasl",
            kafka.sasl.as_ref().map(|s| s.secret_ref.as_str()),
            KAFKA_SASL_DIR,
        ),
    ];
    for (name, secret, dir) in secrets {
        let Some(secret) = secret else { continue };
        volumes.push(Volume {
            name: name.to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.to_string()),
                default_mode: Some(0o400),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount(name, dir));
    }
    (volumes, mounts)
}

fn container(
    pp: &PixelPipeline,
    args: Vec<String>,
    env: Vec<EnvVar>,
    mounts: Vec<VolumeMount>,
) -> Container {
    // The admin endpoint answers on a thread of its own, so a miss means a
    // starved node or a dead process, not a busy pipeline.
    let probe = |path: &str, period: i32, timeout: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String("admin".to_string()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    // Liveness: the worker judges its own progress against its bound
    // (`--liveness-bound-seconds`, minutes) and fails /healthz once pending
    // events have not moved for longer. The probe adds only what it takes to
    // tell that from one slow answer: three failures 10 s apart, so a restart
    // follows the bound by at most 30 s and never a single late reply.
    let liveness = probe("/healthz", 10, 5);
    // Readiness turns quickly, in both directions.
    let readiness = probe("/readyz", 5, 2);
    Container {
        name: "worker".to_string(),
        image: Some(pp.spec.worker.image.clone()),
        image_pull_policy: pp.spec.worker.image_pull_policy.clone(),
        args: Some(args),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some("admin".to_string()),
            container_port: i32::from(ADMIN_PORT),
            ..ContainerPort::default()
        }]),
        resources: pp.spec.worker.resources.clone(),
        liveness_probe: Some(liveness),
        readiness_probe: Some(readiness),
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
    }
}

/// The user's `extra` entries with `own` over them: the operator's labels
/// select the pods, and its annotations roll them.
fn merged(
    extra: &BTreeMap<String, String>,
    own: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    extra.clone().into_iter().chain(own).collect()
}

/// The config checksum and credentials fingerprint that roll the pods, and the conventional scrape hints
/// for a Prometheus that discovers pods by annotation.
fn annotations(hash: String, credentials: Option<&str>) -> BTreeMap<String, String> {
    let credentials = credentials
        .filter(|c| !c.is_empty())
        .map(|c| (CREDENTIALS_ANNOTATION.to_string(), c.to_string()));
    BTreeMap::from([
        (CONFIG_HASH_ANNOTATION.to_string(), hash),
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        ("prometheus.io/port".to_string(), ADMIN_PORT.to_string()),
        ("prometheus.io/path".to_string(), "/metrics".to_string()),
    ])
    .into_iter()
    .chain(credentials)
    .collect()
}

/// Seconds the kubelet waits after SIGTERM before it kills a worker: the
/// worker's drain grace (its default, or what `spec.worker.env` raises it to)
/// and 5 s to flush its producer and exit. A shorter period would kill a
/// draining worker and its uncommitted events would be processed twice.
fn termination_grace(pp: &PixelPipeline) -> i64 {
    let drain = pp
        .spec
        .worker
        .env
        .iter()
        .find(|e| e.name == SHUTDOWN_GRACE_ENV)
        .and_then(|e| e.value.as_deref()?.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECONDS);
    i64::try_from(drain).unwrap_or(i64::MAX / 2) + 5
}

/// The user's spread, or by default the workers spread over zones and
/// nodes as evenly as the scheduler can without refusing a pod: a zone or
/// node lost takes as few of a pipeline's workers as possible.
fn spread(pp: &PixelPipeline) -> Vec<TopologySpreadConstraint> {
    let own = &pp.spec.worker.topology_spread_constraints;
    if !own.is_empty() {
        return own.clone();
    }
    ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
        .into_iter()
        .map(|key| TopologySpreadConstraint {
            max_skew: 1,
            topology_key: key.to_string(),
            when_unsatisfiable: "ScheduleAnyway".to_string(),
            label_selector: Some(LabelSelector {
                match_labels: Some(labels(pp)),
                ..LabelSelector::default()
            }),
            ..TopologySpreadConstraint::default()
        })
        .collect()
}

/// `None` for an empty list, so the pod spec omits what the user did not set.
fn listed<T: Clone>(items: &[T]) -> Option<Vec<T>> {
    (!items.is_empty()).then(|| items.to_vec())
}

fn pod(pp: &PixelPipeline, container: Container, volumes: Vec<Volume>) -> PodSpec {
    let worker = &pp.spec.worker;
    PodSpec {
        image_pull_secrets: listed(&worker.image_pull_secrets),
        node_selector: (!worker.node_selector.is_empty()).then(|| worker.node_selector.clone()),
        tolerations: listed(&worker.tolerations),
        affinity: worker.affinity.clone(),
        topology_spread_constraints: Some(spread(pp)),
        priority_class_name: worker.priority_class_name.clone(),
        service_account_name: Some(worker_name(pp)),
        termination_grace_period_seconds: Some(termination_grace(pp)),
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
    }
}
