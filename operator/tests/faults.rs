//! The operator under control-plane faults, against a real kube-apiserver with
//! a real garbage collector (kube-controller-manager): an API server outage,
//! concurrent edits, and deletion.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Operator, client, create, eventually, install_crd, namespace, sample};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use pixelpipe_crds::{AutoscalingMode, PixelPipeline};

const WAIT: Duration = Duration::from_secs(60);
const CHILD: &str = "storefront-worker";

fn kube(cmd: &str) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/env/kube.sh");
    let ok = Command::new("bash")
        .arg(script)
        .arg(cmd)
        .status()
        .expect("run kube.sh");
    assert!(ok.success(), "tests/env/kube.sh {cmd} failed");
}

/// Stops the shared API server; brings it back however the test ends.
struct Outage {
    up: bool,
}

impl Outage {
    fn begin() -> Self {
        kube("halt-apiserver");
        Self { up: false }
    }

    fn end(&mut self) {
        kube("resume-apiserver");
        self.up = true;
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.up {
            kube("resume-apiserver");
        }
    }
}

/// The sample without a reachable broker: these tests are about the API side.
fn quiet_sample(ns: &str) -> PixelPipeline {
    let mut pp = sample(ns);
    pp.spec.autoscaling.mode = AutoscalingMode::Disabled;
    pp
}

fn batch_env(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == "PIXELPIPE_BATCH_MAX_EVENTS")?
        .value
        .clone()
}

/// Waits until the worker Deployment named `name` carries batch size `want`.
async fn deployment_batch(client: &Client, ns: &str, name: &str, want: i32) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    eventually(&format!("{name} runs batches of {want}"), WAIT, || async {
        let d = deployments.get_opt(name).await.ok()??;
        (batch_env(&d)? == want.to_string()).then_some(())
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
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "outage").await;
    create(&client, &quiet_sample(&ns)).await;
    let op = Operator::start(&ns, "only");
    deployment_batch(&client, &ns, CHILD, 250).await;

    let mut outage = Outage::begin();
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
                && absent::<RoleBinding>(&client, &ns).await?;
            gone.then_some(())
        },
    )
    .await;
    let children_gone = started.elapsed();
    op.wait_until("its lag observer is closed", WAIT, || {
        op.metric("pixelpipe_operator_lag_observers", "") == 0.0
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
