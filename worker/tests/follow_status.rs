//! A worker pointed at a real kube-apiserver follows the pool sizes in its
//! PixelPipeline's status live, without restarting, and processes events at
//! the new sizes. Needs the broker (`KAFKA_BOOTSTRAP`) and the control plane
//! (`KUBECONFIG`), both started by `tests/run.sh`.

mod common;

use std::time::{Duration, Instant};

use common::{Pipeline, Worker, expected_ids, generate, produce, read_topic};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt};
use pixelpipe_crds::PixelPipeline;
use pixelpipe_worker::pipeline::PoolStatus;
use serde_json::json;

/// Creates the CRD (if needed), a namespace and the sample pipeline in it.
async fn pipeline_object(ns: &str) -> Api<PixelPipeline> {
    std::env::var("KUBECONFIG")
        .expect("KUBECONFIG is not set: this test needs a real API server (tests/run.sh)");
    let client = Client::try_default().await.expect("client");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = PixelPipeline::crd();
    crds.patch(
        "pixelpipelines.pixelpipe.dev",
        &PatchParams::apply("pixelpipe-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("CRD applied");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !crds
        .get("pixelpipelines.pixelpipe.dev")
        .await
        .ok()
        .and_then(|c| c.status?.conditions)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
    {
        assert!(Instant::now() < deadline, "the CRD was not established");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(ns.to_string()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace");
    let mut pp: PixelPipeline =
        serde_yaml::from_str(include_str!("../../manifests/samples/storefront.yaml"))
            .expect("sample");
    pp.metadata.namespace = Some(ns.to_string());
    let api = Api::namespaced(client, ns);
    api.create(&PostParams::default(), &pp)
        .await
        .expect("PixelPipeline created");
    api
}

/// What the operator would write: new pool sizes in the status.
async fn set_pools(
    api: &Api<PixelPipeline>,
    parse: i32,
    validate: i32,
    augment: i32,
    produce: i32,
) {
    let status = json!({"status": {"pools": {"parse": parse, "validate": validate, "augment": augment, "produce": produce}}});
    api.patch_status(
        "storefront",
        &PatchParams::default(),
        &Patch::Merge(&status),
    )
    .await
    .expect("status patched");
}

fn sizes(w: &Worker) -> Vec<usize> {
    let Some((200, body)) = w.http("GET", "/pools", "") else {
        return vec![];
    };
    let pools: Vec<PoolStatus> = serde_json::from_str(&body).unwrap_or_default();
    pools.iter().map(|p| p.workers).collect()
}

fn follow(w: &Worker, want: [usize; 4]) -> Duration {
    let started = Instant::now();
    w.wait_until(
        &format!("the pools are {want:?}"),
        Duration::from_secs(15),
        || sizes(w) == want,
    );
    started.elapsed()
}

#[test]
fn a_worker_follows_pool_sizes_in_its_pipeline_status_without_restarting() {
    let p = Pipeline::create("follow", 2);
    let ns = p.group.replace('.', "-").to_lowercase();
    // One runtime for every API call: a kube client lives on the runtime that made it.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let api = rt.block_on(pipeline_object(&ns));
    let target = format!("{ns}/storefront");
    let w = Worker::start(&p, &["--pipeline", &target, "--max-pool-workers", "16"]);
    let pid = w.pid();
    assert_eq!(sizes(&w), [2, 2, 2, 2], "no status yet: the starting sizes");

    rt.block_on(set_pools(&api, 3, 1, 4, 6));
    let first = follow(&w, [3, 1, 4, 6]);
    rt.block_on(set_pools(&api, 1, 1, 1, 2));
    let second = follow(&w, [1, 1, 1, 2]);
    println!("followed status changes in {first:?} and {second:?}");
    // Sizes beyond what this worker allows are clamped, not refused.
    rt.block_on(set_pools(&api, 2, 2, 2, 500));
    follow(&w, [2, 2, 2, 16]);

    // The same process, still delivering at its new sizes.
    assert_eq!(w.pid(), pid);
    assert_eq!(w.http("GET", "/healthz", "").map(|r| r.0), Some(200));
    let sent = generate("follow", 2_000, 0.2, 0.0, 7);
    produce(&p.input, &sent);
    let (ads, insights) = expected_ids(&sent);
    let got = read_topic(&p.insights, insights.len(), Duration::from_secs(60));
    assert_eq!(
        got.len(),
        insights.len(),
        "insights deliveries after resizing"
    );
    assert!(!ads.is_empty());
}
