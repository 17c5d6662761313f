//! Leader election against a real kube-apiserver: of two operators only the
//! Lease holder reconciles; when it is killed, the other takes over.

mod common;

use std::time::{Duration, Instant};

use common::{
    Operator, client, create, events, eventually, image_of, install_crd, namespace, sample,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{Patch, PatchParams};
use pixelpipe_crds::PixelPipeline;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("pixelpipe-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
}

#[tokio::test]
async fn only_the_lease_holder_reconciles_and_a_standby_takes_over() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "leader").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);

    let a = Operator::start(&ns, "replica-a");
    a.wait_until("replica-a leads", WAIT, || a.is_leader());
    let b = Operator::start(&ns, "replica-b");
    b.wait_until("replica-b is ready", WAIT, || {
        b.get("/readyz").map(|r| r.0) == Some(200)
    });
    assert_eq!(holder(&leases).await.as_deref(), Some("replica-a"));

    create(&client, &sample(&ns)).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    eventually("the leader built the Deployment", WAIT, || async {
        deployments
            .get_opt("storefront-worker")
            .await
            .ok()
            .flatten()
    })
    .await;
    // Give the standby every chance to act wrongly.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!b.is_leader(), "two leaders");
    assert_eq!(
        b.metric("pixelpipe_operator_reconciles_total", ""),
        0.0,
        "the standby reconciled"
    );
    assert!(a.metric("pixelpipe_operator_reconciles_total", "") >= 1.0);
    let evs = events(&client, &ns).await;
    assert!(
        !evs.is_empty() && evs.iter().all(|e| e.2 == "replica-a"),
        "{evs:?}"
    );

    // The leader dies without releasing the Lease; the standby waits it out.
    let killed = Instant::now();
    a.sigkill();
    b.wait_until("replica-b takes over", WAIT, || b.is_leader());
    let takeover = killed.elapsed();
    println!(
        "takeover after SIGKILL of the leader: {:.1} s (lease 3 s, renew 1 s)",
        takeover.as_secs_f64()
    );
    let lease = leases.get("pixelpipe-operator").await.expect("lease");
    let spec = lease.spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-b"));
    assert!(spec.lease_transitions.unwrap_or(0) >= 1);

    // The new leader acts on changes.
    let api: Api<PixelPipeline> = Api::namespaced(client.clone(), &ns);
    let change = json!({"spec": {"worker": {"image": "ghcr.io/pixelpipe/pixelpipe-worker:0.3.0"}}});
    api.patch(
        "storefront",
        &PatchParams::default(),
        &Patch::Merge(&change),
    )
    .await
    .expect("patched");
    eventually("replica-b applies the change", WAIT, || async {
        let d = deployments.get("storefront-worker").await.ok()?;
        image_of(&d).ends_with(":0.3.0").then_some(())
    })
    .await;
    // The Event follows the write, so the Deployment can change first.
    eventually("replica-b reports the change", WAIT, || async {
        events(&client, &ns)
            .await
            .iter()
            .any(|e| e.0 == "Updated" && e.2 == "replica-b")
            .then_some(())
    })
    .await;

    // A clean shutdown hands the Lease back at once.
    assert!(b.sigterm().success());
    assert_eq!(holder(&leases).await, None, "the Lease was not released");
}
