//! The operator under faults, against a real kube-apiserver with a real
//! garbage collector (kube-controller-manager) and a real broker: an API
//! server outage, a broker outage, concurrent edits, and deletion.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Operator, client, create, eventually, install_crd, namespace, sample};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use pixelpipe_crds::{AutoscalingMode, PixelPipeline};

const WAIT: Duration = Duration::from_secs(60);

/// The outage tests halt the API server or the broker every test here
/// shares: they run alone, the others together.
static SHARED_SERVICES: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());
const CHILD: &str = "storefront-worker";

/// Runs `tests/env/<script> <cmd>`.
fn env_script(script: &str, cmd: &str) -> bool {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/env")
        .join(script);
    Command::new("bash")
        .arg(path)
        .arg(cmd)
        .status()
        .is_ok_and(|s| s.success())
}

/// Stops a shared service (the API server, the broker); brings it back
/// however the test ends, so one failure does not take later tests with it.
struct Outage {
    script: &'static str,
    resume: &'static str,
    up: bool,
}

impl Outage {
    fn begin(script: &'static str, halt: &str, resume: &'static str) -> Self {
        assert!(env_script(script, halt), "tests/env/{script} {halt} failed");
        Self {
            script,
            resume,
            up: false,
        }
    }

    fn end(&mut self) {
        self.up = true;
        assert!(
            env_script(self.script, self.resume),
            "tests/env/{} {} failed",
            self.script,
            self.resume
        );
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.up {
            env_script(self.script, self.resume);
        }
    }
}

/// The sample without a reachable broker: these tests are about the API side.
fn quiet_sample(ns: &str) -> PixelPipeline {
    let mut pp = sample(ns);
    pp.spec.autoscaling.mode = AutoscalingMode::Disabled;
    pp
}

fn batch_size(d: &Deployment) -> usize {
    pixelpipe_testkit::kube::worker_args(d).batch_max_events
}

/// Waits until the worker Deployment named `name` carries batch size `want`.
async fn deployment_batch(client: &Client, ns: &str, name: &str, want: i32) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    eventually(&format!("{name} runs batches of {want}"), WAIT, || async {
        let d = deployments.get_opt(name).await.ok()??;
        (batch_size(&d) == want as usize).then_some(())
    })
    .await;
}

/// Whether the child of kind `K` is gone; `None` if the API does not answer.
async fn absent<K>(client: &Client, ns: &str) -> Option<bool>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Some(
        Api::<K>::namespaced(client.clone(), ns)
            .get_opt(CHILD)
            .await
            .ok()?
            .is_none(),
    )
}

async fn set_batch(client: &Client, ns: &str, name: &str, n: i32) {
    Api::<PixelPipeline>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"batch": {"maxEvents": n}}})),
        )
        .await
        .expect("spec patched");
}

#[tokio::test]
async fn the_operator_rides_out_an_api_server_outage_and_converges() {
    let _services = SHARED_SERVICES.write().await;
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "outage").await;
    create(&client, &quiet_sample(&ns)).await;
    let op = Operator::start(&ns, "only");
    deployment_batch(&client, &ns, CHILD, 250).await;

    let mut outage = Outage::begin("kube.sh", "halt-apiserver", "resume-apiserver");
    let down = Instant::now();
    // Past the 3 s lease: the operator loses it and stops reconciling.
    tokio::time::sleep(Duration::from_secs(15)).await;
    op.wait_until(
        "the operator stopped leading",
        Duration::from_secs(10),
        || !op.is_leader(),
    );
    outage.end();
    let downtime = down.elapsed();

    // Changes made after the outage flow down: the watches came back, and the
    // same process leads again (no restart needed).
    set_batch(&client, &ns, "storefront", 300).await;
    deployment_batch(&client, &ns, CHILD, 300).await;
    let mut second = quiet_sample(&ns);
    second.metadata.name = Some("second".into());
    create(&client, &second).await;
    deployment_batch(&client, &ns, "second-worker", 250).await;
    op.wait_until("it leads again", WAIT, || op.is_leader());
    let recovered = down.elapsed() - downtime;
    println!(
        "API server down {:.0} s: the operator stepped down, led again and converged {:.1} s after it returned",
        downtime.as_secs_f64(),
        recovered.as_secs_f64()
    );
    assert!(
        op.sigterm().success(),
        "the same process, still running, exits cleanly"
    );
}

#[tokio::test]
async fn concurrent_edits_lose_no_update() {
    let _services = SHARED_SERVICES.read().await;
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "edits").await;
    create(&client, &quiet_sample(&ns)).await;
    let _op = Operator::start(&ns, "only");
    deployment_batch(&client, &ns, CHILD, 250).await;

    // Two editors each add 1 to the batch size ten times with read-modify-write
    // (optimistic concurrency on resourceVersion), while the operator writes
    // the status of every generation they make. A write that clobbered another
    // would leave the total short.
    const EDITS: i32 = 10;
    let editor = |client: Client, ns: String| async move {
        let api: Api<PixelPipeline> = Api::namespaced(client, &ns);
        let mut conflicts = 0;
        for _ in 0..EDITS {
            loop {
                let mut pp = api.get("storefront").await.expect("get");
                pp.spec.batch.max_events += 1;
                match api.replace("storefront", &PostParams::default(), &pp).await {
                    Ok(_) => break,
                    Err(kube::Error::Api(e)) if e.code == 409 => conflicts += 1,
                    Err(e) => panic!("replace: {e}"),
                }
                assert!(conflicts < 1_000, "bounded retries");
            }
        }
        conflicts
    };
    let (a, b) = tokio::join!(
        tokio::spawn(editor(client.clone(), ns.clone())),
        tokio::spawn(editor(client.clone(), ns.clone()))
    );
    let conflicts = a.expect("editor a") + b.expect("editor b");
    let want = 250 + 2 * EDITS;
    let pp = Api::<PixelPipeline>::namespaced(client.clone(), &ns)
        .get("storefront")
        .await
        .expect("get");
    assert_eq!(pp.spec.batch.max_events, want, "no edit was lost");
    deployment_batch(&client, &ns, CHILD, want).await;
    let observed = eventually("the status describes the last edit", WAIT, || {
        let api: Api<PixelPipeline> = Api::namespaced(client.clone(), &ns);
        async move {
            let pp = api.get("storefront").await.ok()?;
            let s = pp.status?;
            (s.observed_generation == pp.metadata.generation).then_some(s.observed_generation)
        }
    })
    .await;
    println!(
        "two editors, {} edits, {conflicts} conflicts retried: none lost; the operator converged on generation {observed:?}",
        2 * EDITS
    );
}

#[tokio::test]
async fn deleting_a_pipeline_removes_its_children_and_closes_its_lag_observer() {
    let _services = SHARED_SERVICES.read().await;
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "delete").await;
    let mut pp = sample(&ns);
    // A reachable broker, so the observer really holds a Kafka client.
    pp.spec.kafka.bootstrap_servers = std::env::var("KAFKA_BOOTSTRAP")
        .expect("KAFKA_BOOTSTRAP is not set: this test needs a real broker (tests/run.sh)");
    pp.spec.autoscaling.observation_interval_seconds = 1;
    create(&client, &pp).await;
    let op = Operator::start(&ns, "only");
    deployment_batch(&client, &ns, CHILD, 250).await;
    op.wait_until("it observes the pipeline's lag", WAIT, || {
        op.metric("pixelpipe_operator_lag_observers", "") == 1.0
            && op.metric("pixelpipe_operator_kafka_clients", "") == 1.0
    });

    let api: Api<PixelPipeline> = Api::namespaced(client.clone(), &ns);
    api.delete("storefront", &DeleteParams::background())
        .await
        .expect("deleted");
    let started = Instant::now();
    eventually(
        "the garbage collector removed every child",
        WAIT,
        || async {
            let gone = absent::<Deployment>(&client, &ns).await?
                && absent::<ConfigMap>(&client, &ns).await?
                && absent::<ServiceAccount>(&client, &ns).await?
                && absent::<Role>(&client, &ns).await?
                && absent::<RoleBinding>(&client, &ns).await?
                && absent::<PodDisruptionBudget>(&client, &ns).await?;
            gone.then_some(())
        },
    )
    .await;
    let children_gone = started.elapsed();
    op.wait_until("its lag observer and Kafka client are closed", WAIT, || {
        op.metric("pixelpipe_operator_lag_observers", "") == 0.0
            && op.metric("pixelpipe_operator_kafka_clients", "") == 0.0
    });
    println!(
        "deleted: children gone in {:.1} s (owner references, garbage collector), lag observer closed in {:.1} s",
        children_gone.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    // Nothing brings the deleted pipeline's children back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        Api::<Deployment>::namespaced(client.clone(), &ns)
            .get_opt(CHILD)
            .await
            .expect("get")
            .is_none()
    );
}

/// `LagObserved`'s status and message, once the pipeline has one.
async fn lag_observed(api: &Api<PixelPipeline>) -> Option<(String, String)> {
    let pp = api.get("storefront").await.ok()?;
    let c = pp
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "LagObserved")?;
    Some((c.status, c.message))
}

#[tokio::test]
async fn a_broker_outage_is_reported_freezes_scaling_and_heals() {
    let _services = SHARED_SERVICES.write().await;
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP")
        .expect("KAFKA_BOOTSTRAP is not set: this test needs a real broker (tests/run.sh)");
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "kafka-down").await;
    let topic = format!("{ns}.events");
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("admin");
    admin
        .create_topics(
            &[rdkafka::admin::NewTopic::new(
                &topic,
                3,
                rdkafka::admin::TopicReplication::Fixed(1),
            )],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await
        .expect("topic");
    drop(admin);
    let mut pp = sample(&ns);
    pp.spec.kafka.bootstrap_servers = bootstrap;
    pp.spec.kafka.input_topic = topic.clone();
    pp.spec.kafka.dead_letter_topic = format!("{topic}.dlq");
    pp.spec.autoscaling.observation_interval_seconds = 1;
    create(&client, &pp).await;
    let _op = Operator::start(&ns, "only");
    let api: Api<PixelPipeline> = Api::namespaced(client.clone(), &ns);
    eventually("the lag is observed", WAIT, || async {
        lag_observed(&api).await.filter(|(s, _)| s == "True")
    })
    .await;

    let mut outage = Outage::begin("kafka.sh", "halt", "resume");
    let down = Instant::now();
    let (_, message) = eventually("LagObserved turns False", WAIT, || async {
        lag_observed(&api).await.filter(|(s, _)| s == "False")
    })
    .await;
    let noticed = down.elapsed();
    let frozen = api.get("storefront").await.expect("get").status;
    eventually("a KafkaUnreachable Event", WAIT, || async {
        common::events(&client, &ns)
            .await
            .iter()
            .any(|e| e.0 == "KafkaUnreachable")
            .then_some(())
    })
    .await;
    // Several observation intervals without data: no decision, no resize.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let still = api.get("storefront").await.expect("get").status;
    let sizes = |s: &Option<pixelpipe_crds::PixelPipelineStatus>| {
        s.as_ref()
            .map(|s| (s.replicas, s.pool_summary.clone(), s.last_decision.clone()))
    };
    assert_eq!(sizes(&still), sizes(&frozen), "scaled on stale data");
    outage.end();
    let back = Instant::now();
    eventually("LagObserved is True again", WAIT, || async {
        lag_observed(&api).await.filter(|(s, _)| s == "True")
    })
    .await;
    println!(
        "broker down: LagObserved=False after {:.1} s ({message}), sizes frozen; True again {:.1} s after it returned",
        noticed.as_secs_f64(),
        back.elapsed().as_secs_f64()
    );
}
