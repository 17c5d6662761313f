//! Kafka TLS and SASL/SCRAM end to end, against the broker's SASL_SSL listener
//! (tests/env/kafka.sh): the credentials live only in Secrets; the operator,
//! running from the manifests under its own ServiceAccount, reads them only
//! once it is granted those two Secrets by name; the worker pods get them as
//! volumes; nothing writes them to a status, an Event, a ConfigMap, a
//! Deployment or a log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use pixelpipe_crds::{AutoscalingMode, PixelPipeline, SaslMechanism, SaslSpec};
mod common;

use common::bin_dir;
use pixelpipe_crds::reasons::{ConditionType, condition_status, find_condition};
use pixelpipe_crds::worker::CREDENTIALS_ANNOTATION;
use pixelpipe_loadgen::topics::ensure_topics;
use pixelpipe_loadgen::{Generator, Mix};
use pixelpipe_local::runner::{Config, Runner};
use pixelpipe_local::story;
use pixelpipe_runtime::KafkaSettings;
use pixelpipe_testkit::wait::eventually as wait_for;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 3_000;
const OPERATOR: &str = "system:serviceaccount:pixelpipe-system:pixelpipe-operator";

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set (tests/run.sh sets it)"))
}

fn kubectl(args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("kubectl");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn can_i(who: &str, verb: &str, what: &str, ns: &str) -> bool {
    kubectl(&["auth", "can-i", verb, what, "-n", ns, "--as", who])
        .1
        .trim()
        .starts_with("yes")
}

fn secret(ns: &str, name: &str, pairs: &[(&str, Vec<u8>)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..ObjectMeta::default()
        },
        data: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.clone())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    }
}

async fn condition(client: &Client, ns: &str, type_: ConditionType) -> Option<(bool, String)> {
    let pp = Api::<PixelPipeline>::namespaced(client.clone(), ns)
        .get("storefront")
        .await
        .ok()?;
    let status = pp.status?;
    let c = find_condition(&status.conditions, type_)?;
    Some((c.status == condition_status(true), c.message.clone()))
}

fn committed(bootstrap: &str, group: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition(topic, p);
    }
    consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .map(|got| {
            got.elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Every file under `dir` that contains `needle`, skipping the secret volumes
/// themselves (where the credentials belong).
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with("kafka-sasl") && !path.ends_with("kafka-tls") {
                    stack.push(path);
                }
            } else if std::fs::read(&path)
                .map(|b| String::from_utf8_lossy(&b).contains(needle))
                .unwrap_or(false)
            {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_over_tls_end_to_end_with_credentials_only_in_secrets() {
    let plain = var("KAFKA_BOOTSTRAP");
    let sasl_bootstrap = var("KAFKA_SASL_BOOTSTRAP");
    let password = var("KAFKA_SASL_PASSWORD");
    let ca = std::fs::read(var("KAFKA_CA_FILE")).expect("CA file");
    let kubeconfig = PathBuf::from(var("KUBECONFIG"));
    let client = Client::try_default().await.expect("client");

    // The operator as installed: CRD, namespace, RBAC, Deployment.
    let (ok, out) = kubectl(&[
        "apply",
        "-k",
        &story::repo_root().join("manifests").display().to_string(),
    ]);
    assert!(ok, "{out}");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 100_000_000)
        .unwrap_or_default();
    let ns = format!("kafka-sec-{stamp}");
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(ns.clone()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            },
        )
        .await
        .expect("namespace");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for s in [
        secret(&ns, "kafka-tls", &[("ca.crt", ca)]),
        secret(
            &ns,
            "kafka-scram",
            &[
                ("username", var("KAFKA_SASL_USERNAME").into_bytes()),
                ("password", password.clone().into_bytes()),
            ],
        ),
        secret(
            &ns,
            "unrelated",
            &[("token", b"not for the operator".to_vec())],
        ),
    ] {
        secrets
            .create(&PostParams::default(), &s)
            .await
            .expect("secret");
    }

    // Topics and a backlog, written over the plaintext listener.
    let topic = |t: &str| format!("{ns}.{t}");
    let names = ["events", "dlq", "ads", "insights", "audiences"].map(topic);
    let plain_settings = KafkaSettings {
        bootstrap_servers: plain.clone(),
        ..KafkaSettings::default()
    };
    let specs: Vec<(&str, i32)> = names.iter().map(|n| (n.as_str(), 3)).collect();
    ensure_topics(&plain_settings, &specs)
        .await
        .expect("topics");
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &plain)
        .create()
        .expect("producer");
    let mut generator = Generator::new(Mix {
        seed: 7,
        run_id: ns.clone(),
        no_consent_share: 0.1,
        malformed_share: 0.0,
        event_bytes: 512,
    });
    for _ in 0..EVENTS {
        let g = generator.next_message();
        producer
            .send(
                BaseRecord::to(&names[0])
                    .key(g.id.as_bytes())
                    .payload(&g.payload),
            )
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");

    // The pipeline reaches the broker only over SASL_SSL.
    let text =
        std::fs::read_to_string(story::repo_root().join("manifests/samples/storefront.yaml"))
            .expect("sample");
    let mut pp: PixelPipeline = pixelpipe_crds::yaml::from_str(&text).expect("sample parses");
    pp.metadata.namespace = Some(ns.clone());
    let k = &mut pp.spec.kafka;
    k.bootstrap_servers = sasl_bootstrap;
    k.input_topic = names[0].clone();
    k.dead_letter_topic = names[1].clone();
    k.tls_secret_ref = Some("kafka-tls".into());
    k.sasl = Some(SaslSpec {
        mechanism: SaslMechanism::ScramSha512,
        secret_ref: "kafka-scram".into(),
    });
    for (partner, t) in pp.spec.partners.iter_mut().zip(&names[2..]) {
        partner.topic = t.clone();
    }
    pp.spec.autoscaling.mode = AutoscalingMode::DryRun;
    pp.spec.autoscaling.observation_interval_seconds = 1;
    Api::<PixelPipeline>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &pp)
        .await
        .expect("pipeline");

    let work_dir = std::env::temp_dir().join(format!("pixelpipe-{ns}"));
    let stop = CancellationToken::new();
    let runner = |namespace: &str| {
        Runner::new(
            client.clone(),
            Config {
                namespace: namespace.to_string(),
                bin_dir: bin_dir(),
                work_dir: work_dir.join(namespace),
                kubeconfig: kubeconfig.clone(),
                extra_env: Vec::new(),
                interval: Duration::from_secs(1),
                max_pods: None,
            },
        )
        .run(stop.clone())
    };
    let operators = tokio::spawn(runner("pixelpipe-system"));
    let workers = tokio::spawn(runner(&ns));

    // Least privilege: without a grant the operator cannot read the Secrets,
    // and says so in the status.
    assert!(!can_i(OPERATOR, "get", "secret/kafka-scram", &ns));
    let (status, message) = wait_for(
        "LagObserved explains the missing grant",
        Duration::from_secs(90),
        || async {
            condition(&client, &ns, ConditionType::LagObserved)
                .await
                .filter(|(s, m)| !s && m.contains("may not read Secret"))
        },
    )
    .await;
    println!("before the grant: LagObserved={status}: {message}");

    let (ok, out) = kubectl(&[
        "apply",
        "-n",
        &ns,
        "-f",
        &story::repo_root()
            .join("manifests/samples/kafka-credentials-access.yaml")
            .display()
            .to_string(),
    ]);
    assert!(ok, "{out}");
    assert!(can_i(OPERATOR, "get", "secret/kafka-scram", &ns));
    assert!(can_i(OPERATOR, "get", "secret/kafka-tls", &ns));
    assert!(!can_i(OPERATOR, "get", "secret/unrelated", &ns));
    assert!(!can_i(OPERATOR, "list", "secrets", &ns));
    let worker_sa = format!("system:serviceaccount:{ns}:storefront-worker");
    assert!(!can_i(&worker_sa, "get", "secret/kafka-scram", &ns));

    // The operator reads the lag over SASL_SSL; the worker drains the backlog
    // over SASL_SSL with the mounted Secrets.
    let (_, message) = wait_for(
        "the operator observes lag over SASL_SSL",
        Duration::from_secs(90),
        || async {
            condition(&client, &ns, ConditionType::LagObserved)
                .await
                .filter(|(s, _)| *s)
        },
    )
    .await;
    let group = format!("pixelpipe.{ns}.storefront");
    let group_ref = &group;
    let plain_ref = &plain;
    let input = &names[0];
    wait_for(
        "the worker consumed and committed the backlog",
        Duration::from_secs(120),
        || async move { (committed(plain_ref, group_ref, input) >= EVENTS as i64).then_some(()) },
    )
    .await;
    println!(
        "after the grant: LagObserved=True: {message}; {EVENTS} events committed over SASL_SSL"
    );

    rotate_credentials(&client, &ns, &producer, &names[0], &mut generator).await;
    let group_ref = &group;
    wait_for(
        "the rolled workers consumed over SASL_SSL as the new user",
        Duration::from_secs(120),
        || async move {
            (committed(plain_ref, group_ref, input) >= 2 * EVENTS as i64).then_some(())
        },
    )
    .await;
    println!("after the rotation: {EVENTS} more events committed by the new pods");

    // A revoked grant is a condition to fix, not a reason to roll the workers.
    let fingerprint = credentials_annotation(&ns);
    let pods = worker_pods(&ns);
    let (ok, out) = kubectl(&[
        "delete",
        "rolebinding",
        "pixelpipe-operator-kafka-credentials",
        "-n",
        &ns,
    ]);
    assert!(ok, "{out}");
    wait_for(
        "LagObserved says the grant is gone",
        Duration::from_secs(60),
        || async {
            condition(&client, &ns, ConditionType::LagObserved)
                .await
                .filter(|(s, m)| !s && m.contains("may not read Secret"))
        },
    )
    .await;
    assert_eq!(credentials_annotation(&ns), fingerprint);
    assert_eq!(
        worker_pods(&ns),
        pods,
        "the workers rolled on a revoked grant"
    );

    // The password is nowhere but in its Secret and the pods' secret volumes.
    for what in [
        "pixelpipeline/storefront",
        "events",
        "configmaps",
        "deployments",
        "pods",
    ] {
        let (ok, out) = kubectl(&["get", what, "-n", &ns, "-o", "yaml"]);
        assert!(ok, "{out}");
        assert!(!out.contains(&password), "the password is in {what}");
    }
    let leaked = files_containing(&work_dir, &password);
    assert!(leaked.is_empty(), "the password is in {leaked:?}");

    stop.cancel();
    let _ = operators.await;
    let _ = workers.await;
    let _ = kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

fn worker_pods(ns: &str) -> Vec<String> {
    let (ok, out) = kubectl(&[
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        "app.kubernetes.io/name=pixelpipe-worker",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    assert!(ok, "{out}");
    out.split_whitespace().map(str::to_string).collect()
}

fn credentials_annotation(ns: &str) -> String {
    let path = format!(
        "jsonpath={{.spec.template.metadata.annotations.{}}}",
        CREDENTIALS_ANNOTATION.replace('.', "\\.")
    );
    let (ok, out) = kubectl(&["get", "deployment/storefront-worker", "-n", ns, "-o", &path]);
    assert!(ok, "{out}");
    out.trim().to_string()
}

/// A credential rotation as a platform team does it: a new SCRAM user on the
/// broker, the Secret rewritten to name it. The operator notices the write,
/// rolls the workers (they read credentials once, at start), and the new pods
/// work with the new credentials; `EVENTS` more events follow for them.
async fn rotate_credentials(
    client: &Client,
    ns: &str,
    producer: &ThreadedProducer<DefaultProducerContext>,
    input: &str,
    generator: &mut Generator,
) {
    let before_pods = worker_pods(ns);
    let before = credentials_annotation(ns);
    assert!(
        !before.is_empty(),
        "the workers carry no credentials fingerprint"
    );

    let user = format!("rotated-{ns}");
    let password = format!("{:x}", std::process::id() as u64 * 7919 + 17);
    let status = Command::new(story::repo_root().join("tests/env/kafka.sh"))
        .args(["scram-user", &user, &password])
        .status()
        .expect("kafka.sh runs");
    assert!(status.success(), "creating the SCRAM user failed");
    let rotated = secret(
        ns,
        "kafka-scram",
        &[
            ("username", user.clone().into_bytes()),
            ("password", password.into_bytes()),
        ],
    );
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            "kafka-scram",
            &PatchParams::apply("pixelpipe-tests").force(),
            &Patch::Apply(&rotated),
        )
        .await
        .expect("secret rotated");

    let after = wait_for(
        "the operator fingerprints the rewritten Secret",
        Duration::from_secs(60),
        || async {
            let now = credentials_annotation(ns);
            (now != before).then_some(now)
        },
    )
    .await;
    wait_for(
        "every worker pod replaced",
        Duration::from_secs(120),
        || async {
            let pods = worker_pods(ns);
            (!pods.is_empty() && pods.iter().all(|p| !before_pods.contains(p))).then_some(())
        },
    )
    .await;
    println!(
        "rotation: fingerprint {before} -> {after}; pods {before_pods:?} -> {:?}",
        worker_pods(ns)
    );
    for _ in 0..EVENTS {
        let g = generator.next_message();
        producer
            .send(
                BaseRecord::to(input)
                    .key(g.id.as_bytes())
                    .payload(&g.payload),
            )
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}
