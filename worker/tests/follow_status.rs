//! A worker pointed at a real kube-apiserver follows the pool sizes in its
//! PixelPipeline's status live, without restarting, and processes events at
//! the new sizes. Needs the broker (`KAFKA_BOOTSTRAP`) and the control plane
//! (`KUBECONFIG`), both started by `tests/run.sh`.

mod common;

use std::time::{Duration, Instant};

use common::{Pipeline, Worker, expected_ids, generate, produce, read_topic};
use kube::Api;
use kube::api::{Patch, PatchParams};
use pixelpipe_crds::PixelPipeline;
use pixelpipe_testkit::kube::{client, create, install_crd, namespace, sample};
use pixelpipe_worker::pipeline::PoolStatus;
use serde_json::json;

/// Creates the CRD (if needed), a namespace and the sample pipeline in it.
async fn pipeline_object(prefix: &str) -> (String, Api<PixelPipeline>) {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, prefix).await;
    create(&client, &sample(&ns)).await;
    (ns.clone(), Api::namespaced(client, &ns))
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
    let Some((200, body)) = w.get("/pools") else {
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
    // One runtime for every API call: a kube client lives on the runtime that made it.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (ns, api) = rt.block_on(pipeline_object("follow"));
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
    assert_eq!(w.get("/healthz").map(|r| r.0), Some(200));
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
