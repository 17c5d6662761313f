//! The operator against a real kube-apiserver: children with owner references,
//! status conditions, Events, spec updates, hand edits undone, idempotent
//! restarts, and invalid specs reported rather than crash-looped.

mod common;

use std::time::Duration;

use common::{
    Operator, client, create, events, eventually, image_of, install_crd, namespace, sample,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use pixelpipe_crds::reasons::EventReason;
use pixelpipe_crds::{PixelPipeline, Stage};
use pixelpipe_operator::children::CONFIG_HASH_ANNOTATION;
use pixelpipe_testkit::kube::worker_args;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn hash_of(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(CONFIG_HASH_ANNOTATION).cloned())
        .unwrap_or_default()
}

fn condition(pp: &PixelPipeline, type_: &str) -> Option<(String, String, String, Option<i64>)> {
    let c = pp
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((
        c.status.clone(),
        c.reason.clone(),
        c.message.clone(),
        c.observed_generation,
    ))
}

/// Waits until the status describes the current generation, and returns the pipeline.
async fn reconciled(api: &Api<PixelPipeline>, name: &str) -> PixelPipeline {
    eventually(
        "the status describes the current generation",
        WAIT,
        || async {
            let pp = api.get(name).await.ok()?;
            let status = pp.status.as_ref()?;
            (status.observed_generation == pp.metadata.generation
                && status
                    .conditions
                    .iter()
                    .all(|c| c.observed_generation == pp.metadata.generation)
                && !status.conditions.is_empty())
            .then_some(pp)
        },
    )
    .await
}

async fn resource_versions(client: &Client, ns: &str) -> Vec<String> {
    let name = "storefront-worker";
    let rv = |o: Option<String>| o.unwrap_or_default();
    vec![
        rv(Api::<PixelPipeline>::namespaced(client.clone(), ns)
            .get("storefront")
            .await
            .expect("pp")
            .resource_version()),
        rv(Api::<Deployment>::namespaced(client.clone(), ns)
            .get(name)
            .await
            .expect("deployment")
            .resource_version()),
        rv(Api::<ConfigMap>::namespaced(client.clone(), ns)
            .get(name)
            .await
            .expect("cm")
            .resource_version()),
        rv(Api::<ServiceAccount>::namespaced(client.clone(), ns)
            .get(name)
            .await
            .expect("sa")
            .resource_version()),
        rv(Api::<Role>::namespaced(client.clone(), ns)
            .get(name)
            .await
            .expect("role")
            .resource_version()),
        rv(Api::<RoleBinding>::namespaced(client.clone(), ns)
            .get(name)
            .await
            .expect("rb")
            .resource_version()),
        rv(Api::<PodDisruptionBudget>::namespaced(client.clone(), ns)
            .get(name)
            .await
            .expect("pdb")
            .resource_version()),
    ]
}

/// `kubectl scale pixelpipeline storefront --replicas=<replicas>`, which
/// must succeed.
fn kubectl_scale(ns: &str, replicas: i32) {
    let out = std::process::Command::new("kubectl")
        .args(["scale", "pixelpipeline", "storefront"])
        .arg(format!("--replicas={replicas}"))
        .args(["-n", ns])
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kubectl scale` with autoscaling Enabled: the Deployment follows at
/// once, the status says so, and a ScaledUp Event says why.
async fn scaling_by_hand_takes_effect(client: &Client, ns: &str) {
    kubectl_scale(ns, 3);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    eventually("the Deployment follows kubectl scale", WAIT, || async {
        let d = deployments.get("storefront-worker").await.ok()?;
        (d.spec.and_then(|s| s.replicas) == Some(3)).then_some(())
    })
    .await;
    let api: Api<PixelPipeline> = Api::namespaced(client.clone(), ns);
    let decision = eventually("the status says so", WAIT, || async {
        let status = api.get("storefront").await.ok()?.status?;
        (status.replicas == Some(3)).then_some(status.last_decision)
    })
    .await;
    assert!(
        decision
            .as_deref()
            .is_some_and(|d| d.contains("kubectl scale") && d.contains("replicas 1 -> 3")),
        "{decision:?}"
    );
    eventually("a ScaledUp Event", WAIT, || async {
        events(client, ns)
            .await
            .into_iter()
            .find(|e| e.0 == EventReason::ScaledUp.as_str() && e.1.contains("kubectl scale"))
    })
    .await;
}

#[tokio::test]
async fn a_pipeline_gets_its_owned_children_and_a_status() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "children").await;
    let pp = create(&client, &sample(&ns)).await;
    let uid = pp.uid().expect("uid");
    let op = Operator::start(&ns, "only");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let d = eventually("the worker Deployment exists", WAIT, || async {
        deployments
            .get_opt("storefront-worker")
            .await
            .ok()
            .flatten()
    })
    .await;
    assert_eq!(image_of(&d), "ghcr.io/pixelpipe/pixelpipe-worker:0.1.0");
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(1));
    let args = worker_args(&d);
    assert_eq!(args.bootstrap_servers, "kafka.kafka.svc:9092");
    assert_eq!(args.input_topic, "storefront.events");
    assert_eq!(args.dead_letter_topic, "storefront.events.dlq");
    assert_eq!(args.group, format!("pixelpipe.{ns}.storefront"));
    assert_eq!(
        args.pipeline.map(|p| p.to_string()),
        Some(format!("{ns}/storefront"))
    );
    assert_eq!(args.pools[Stage::Produce], 2);
    assert_eq!(args.batch_max_events, 250);
    assert_eq!(hash_of(&d).len(), 64, "config checksum annotation");

    let owners = |m: &ObjectMeta| {
        let o = &m.owner_references.as_ref().expect("owner references")[0];
        assert_eq!(
            (o.kind.as_str(), o.name.as_str(), o.uid.as_str()),
            ("PixelPipeline", "storefront", uid.as_str())
        );
        assert_eq!(o.controller, Some(true));
    };
    owners(d.meta());
    let name = "storefront-worker";
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get(name)
        .await
        .expect("ConfigMap");
    owners(cm.meta());
    assert!(cm.data.expect("data")["pipeline.yaml"].contains("partner.audiences"));
    owners(
        Api::<ServiceAccount>::namespaced(client.clone(), &ns)
            .get(name)
            .await
            .expect("ServiceAccount")
            .meta(),
    );
    let role = Api::<Role>::namespaced(client.clone(), &ns)
        .get(name)
        .await
        .expect("Role");
    owners(role.meta());
    assert_eq!(
        role.rules.expect("rules")[0].resource_names.as_deref(),
        Some(&["storefront".to_string()][..])
    );
    owners(
        Api::<RoleBinding>::namespaced(client.clone(), &ns)
            .get(name)
            .await
            .expect("RoleBinding")
            .meta(),
    );
    let pdb = Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns)
        .get(name)
        .await
        .expect("PodDisruptionBudget");
    owners(pdb.meta());
    assert_eq!(
        pdb.spec.and_then(|s| s.max_unavailable),
        Some(IntOrString::Int(1)),
        "one worker evicted at a time"
    );

    let api: Api<PixelPipeline> = Api::namespaced(client.clone(), &ns);
    let pp = reconciled(&api, "storefront").await;
    let status = pp.status.clone().expect("status");
    assert_eq!(status.replicas, Some(1));
    assert_eq!(status.pool_summary.as_deref(), Some("2/2/2/2"));
    // The scale subresource names the worker pods, as an HPA needs.
    let scale = api.get_scale("storefront").await.expect("scale");
    let selector = scale.status.and_then(|s| s.selector).unwrap_or_default();
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    assert!(
        selector.contains("app.kubernetes.io/instance=storefront"),
        "{selector}"
    );
    pods.list(&ListParams::default().labels(&selector))
        .await
        .expect("the selector is one the API server parses");
    // No kubelet runs here, so the Deployment never gets pods.
    let ready = condition(&pp, "Ready").expect("Ready");
    assert_eq!(
        (ready.0.as_str(), ready.1.as_str()),
        ("False", "WorkersUnavailable")
    );
    assert_eq!(ready.2, "0 of 1 worker pods updated, 0 available");
    assert_eq!(
        condition(&pp, "Progressing").expect("Progressing").0,
        "True"
    );
    let degraded = condition(&pp, "Degraded").expect("Degraded");
    assert_eq!(
        (degraded.0.as_str(), degraded.1.as_str()),
        ("False", "AsExpected")
    );

    let evs = eventually("an Event per created child", WAIT, || async {
        let evs = events(&client, &ns).await;
        (evs.iter().filter(|e| e.0 == "Created").count() >= 6).then_some(evs)
    })
    .await;
    for kind in [
        "Deployment",
        "ConfigMap",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "PodDisruptionBudget",
    ] {
        let note = format!("{kind} storefront-worker created");
        assert!(
            evs.iter().any(|e| e.0 == "Created" && e.1 == note),
            "no Event {note:?} in {evs:?}"
        );
    }
    assert!(op.metric("pixelpipe_operator_reconciles_total", "outcome=\"ok\"") >= 1.0);
    assert_eq!(op.metric("pixelpipe_operator_child_writes_total", ""), 6.0);
    scaling_by_hand_takes_effect(&client, &ns).await;
    assert!(op.metric("pixelpipe_operator_reconcile_duration_seconds_count", "") >= 1.0);
    assert_eq!(op.get("/readyz").map(|r| r.0), Some(200));
}

#[tokio::test]
async fn spec_changes_flow_down_hand_edits_are_undone_and_restarts_change_nothing() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "updates").await;
    create(&client, &sample(&ns)).await;
    let op = Operator::start(&ns, "first");
    let api: Api<PixelPipeline> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    reconciled(&api, "storefront").await;
    let before = deployments
        .get("storefront-worker")
        .await
        .expect("deployment");

    // A spec change: new image and placement, a partner wants one more
    // event, bigger batches.
    let change = json!({"spec": {
        "worker": {
            "image": "ghcr.io/pixelpipe/pixelpipe-worker:0.2.0",
            "nodeSelector": {"pool": "pipelines"},
            "tolerations": [{"key": "dedicated", "operator": "Exists"}],
            "podLabels": {"team": "growth"}
        },
        "batch": {"maxEvents": 500},
        "partners": [
            {"name": "ads", "topic": "partner.ads", "events": ["product_added_to_cart", "checkout_started", "checkout_completed", "search_submitted"], "requiredConsent": ["marketing"]},
            {"name": "insights", "topic": "partner.insights", "events": ["*"], "requiredConsent": ["analytics"]},
            {"name": "audiences", "topic": "partner.audiences", "events": ["checkout_completed"], "requiredConsent": ["marketing", "saleOfData"]}
        ]
    }});
    api.patch(
        "storefront",
        &PatchParams::default(),
        &Patch::Merge(&change),
    )
    .await
    .expect("spec patched");
    let after = eventually("the Deployment follows the spec", WAIT, || async {
        let d = deployments.get("storefront-worker").await.ok()?;
        (image_of(&d).ends_with(":0.2.0") && worker_args(&d).batch_max_events == 500).then_some(d)
    })
    .await;
    assert_ne!(
        hash_of(&after),
        hash_of(&before),
        "a config change rolls the pods"
    );
    let template = after
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .expect("template");
    let pod = template.spec.expect("pod spec");
    assert_eq!(
        pod.node_selector.and_then(|n| n.get("pool").cloned()),
        Some("pipelines".to_string())
    );
    assert_eq!(
        pod.tolerations.map(|t| t[0].key.clone()),
        Some(Some("dedicated".to_string()))
    );
    let spread = pod.topology_spread_constraints.unwrap_or_default();
    assert_eq!(spread.len(), 2, "zones and nodes by default: {spread:?}");
    assert_eq!(
        template
            .metadata
            .and_then(|m| m.labels)
            .map(|l| l["team"].clone()),
        Some("growth".to_string())
    );
    let cm = maps.get("storefront-worker").await.expect("ConfigMap");
    assert!(cm.data.expect("data")["pipeline.yaml"].contains("search_submitted"));
    let pp = reconciled(&api, "storefront").await;
    assert_eq!(pp.metadata.generation, Some(2));
    assert!(
        events(&client, &ns)
            .await
            .iter()
            .any(|e| e.0 == "Updated" && e.1 == "Deployment storefront-worker updated")
    );

    // Hand edits by another field manager are taken back.
    let edit = PatchParams::apply("kubectl-edit").force();
    let mut tampered = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "storefront-worker"},
        "spec": {"replicas": 9, "template": {"spec": {"containers": [{"name": "worker", "image": "evil:latest"}]}}}
    });
    deployments
        .patch("storefront-worker", &edit, &Patch::Apply(&tampered))
        .await
        .expect("hand edit");
    tampered = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "storefront-worker"}, "data": {"pipeline.yaml": "partners: []"}});
    maps.patch("storefront-worker", &edit, &Patch::Apply(&tampered))
        .await
        .expect("hand edit");
    eventually("the hand edits are undone", WAIT, || async {
        let d = deployments.get("storefront-worker").await.ok()?;
        let cm = maps.get("storefront-worker").await.ok()?;
        (image_of(&d).ends_with(":0.2.0")
            && d.spec.as_ref()?.replicas == Some(1)
            && cm.data?["pipeline.yaml"].contains("search_submitted"))
        .then_some(())
    })
    .await;

    // A restarted operator reconciles everything and writes nothing.
    // Converged: the lag observer has also reported (the sample's broker does not exist).
    eventually("the lag observer reported", WAIT, || async {
        let pp = api.get("storefront").await.ok()?;
        condition(&pp, "LagObserved").map(|_| ())
    })
    .await;
    assert!(op.sigterm().success(), "a clean shutdown exits 0");
    let versions = resource_versions(&client, &ns).await;
    let event_count = events(&client, &ns).await.len();
    let again = Operator::start(&ns, "second");
    again.wait_until("the new operator leads", WAIT, || again.is_leader());
    again.wait_until("it reconciled the pipeline", WAIT, || {
        again.metric("pixelpipe_operator_reconciles_total", "outcome=\"ok\"") >= 1.0
    });
    // Let the watches of every child kind deliver and be reconciled.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        resource_versions(&client, &ns).await,
        versions,
        "a restart rewrote something"
    );
    assert_eq!(
        again.metric("pixelpipe_operator_child_writes_total", ""),
        0.0
    );
    assert_eq!(
        events(&client, &ns).await.len(),
        event_count,
        "a restart published Events"
    );
}

#[tokio::test]
async fn a_spec_the_schema_accepts_but_workers_cannot_run_is_degraded() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "invalid").await;
    let mut pp = sample(&ns);
    // A typo the schema cannot catch: event names are open strings.
    pp.spec.partners[0].events = vec!["page_veiwed".into()];
    create(&client, &pp).await;
    let op = Operator::start(&ns, "only");
    let api: Api<PixelPipeline> = Api::namespaced(client.clone(), &ns);

    let pp = reconciled(&api, "storefront").await;
    let (status, reason, message, _) = condition(&pp, "Degraded").expect("Degraded");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "InvalidSpec"));
    assert!(
        message.contains("unknown event \"page_veiwed\""),
        "{message}"
    );
    assert_eq!(condition(&pp, "Ready").expect("Ready").0, "False");
    let evs = eventually("a Warning Event", WAIT, || async {
        let evs = events(&client, &ns).await;
        evs.iter()
            .any(|e| e.0 == EventReason::InvalidSpec.as_str())
            .then_some(evs)
    })
    .await;
    assert!(
        evs.iter()
            .any(|e| e.0 == EventReason::InvalidSpec.as_str() && e.1.contains("page_veiwed"))
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    assert!(
        deployments
            .get_opt("storefront-worker")
            .await
            .expect("get")
            .is_none(),
        "nothing is built from an invalid spec"
    );
    // Waited on, not retried: the reconcile succeeded and the process is well.
    assert_eq!(
        op.metric("pixelpipe_operator_reconciles_total", "outcome=\"error\""),
        0.0
    );
    assert!(op.metric("pixelpipe_operator_invalid_specs_total", "") >= 1.0);

    let fix = json!({"spec": {"partners": [
        {"name": "ads", "topic": "partner.ads", "events": ["page_viewed"], "requiredConsent": ["marketing"]}
    ], "privacy": {"regionRules": []}}});
    api.patch("storefront", &PatchParams::default(), &Patch::Merge(&fix))
        .await
        .expect("fixed");
    eventually("the fixed pipeline runs", WAIT, || async {
        let pp = api.get("storefront").await.ok()?;
        let d = condition(&pp, "Degraded")?;
        (d.0 == "False" && d.3 == pp.metadata.generation).then_some(())
    })
    .await;
    assert!(
        deployments
            .get_opt("storefront-worker")
            .await
            .expect("get")
            .is_some()
    );
}

/// Who owns the Deployment's `spec.replicas`, by field manager.
fn replicas_owners(d: &Deployment) -> Vec<String> {
    d.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.fields_v1.as_ref().is_some_and(|f| {
                f.0.get("f:spec")
                    .and_then(|s| s.get("f:replicas"))
                    .is_some()
            })
        })
        .filter_map(|m| m.manager.clone())
        .collect()
}

/// An HPA on the worker Deployment: the operator hands its replicas over
/// (keeping the count until the HPA first writes it, so the field is never
/// reset to one pod), says so in `ForeignScaler`, and takes them back once
/// the HPA is gone, at the HPA's last count. No HPA controller runs here,
/// so the test scales the Deployment through its scale subresource as the
/// HPA controller does.
#[tokio::test]
async fn a_foreign_hpa_on_the_workers_gets_their_replicas_and_a_condition() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "hpa").await;
    let mut pp = sample(&ns);
    // Observations, and so requeues, minutes apart: within the test's
    // waits only the HPA's watch and the Deployment's can start a reconcile.
    pp.spec.autoscaling.observation_interval_seconds = 300;
    create(&client, &pp).await;
    let _op = Operator::start(&ns, "only");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let pipelines: Api<PixelPipeline> = Api::namespaced(client.clone(), &ns);
    let replicas = |want: i32, what: &'static str| {
        let deployments = deployments.clone();
        async move {
            eventually(what, WAIT, || async {
                let d = deployments.get("storefront-worker").await.ok()?;
                (d.spec.as_ref().and_then(|s| s.replicas) == Some(want)).then_some(d)
            })
            .await
        }
    };
    // Three replicas by hand after the operator's first look, so it has
    // applied a count of its own when the HPA comes (a reset to the
    // default would show as one).
    replicas(1, "the Deployment runs the declared 1").await;
    kubectl_scale(&ns, 3);
    replicas(3, "the Deployment runs 3").await;

    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "workers-cpu"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "storefront-worker"},
            "minReplicas": 1,
            "maxReplicas": 6,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]
        }
    }))
    .expect("hpa");
    hpas.create(&PostParams::default(), &hpa)
        .await
        .expect("HPA created");
    let (status, reason, message, _) = eventually("ForeignScaler is True", WAIT, || async {
        let pp = pipelines.get("storefront").await.ok()?;
        condition(&pp, "ForeignScaler").filter(|c| c.0 == "True")
    })
    .await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "HPAOnDeployment")
    );
    assert!(
        message
            .starts_with("HorizontalPodAutoscaler workers-cpu scales Deployment storefront-worker"),
        "{message}"
    );
    // The HPA has not written the count yet: it stays, not reset to one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let d = replicas(3, "the count stays while the HPA has not written it").await;
    assert!(
        replicas_owners(&d)
            .iter()
            .any(|m| m == "pixelpipe-operator")
    );

    deployments
        .patch_scale(
            "storefront-worker",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .expect("scaled as the HPA controller does");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let d = replicas(4, "the HPA's count stands").await;
    let owners = replicas_owners(&d);
    assert!(
        !owners.iter().any(|m| m == "pixelpipe-operator"),
        "the operator still owns spec.replicas: {owners:?}"
    );

    hpas.delete("workers-cpu", &Default::default())
        .await
        .expect("HPA deleted");
    // Taken back at the count that runs, not the one from before the HPA.
    eventually("the operator takes the replicas back", WAIT, || async {
        let d = deployments.get("storefront-worker").await.ok()?;
        replicas_owners(&d)
            .iter()
            .any(|m| m == "pixelpipe-operator")
            .then_some(())
    })
    .await;
    let (status, reason, _, _) = eventually("ForeignScaler is False", WAIT, || async {
        let pp = pipelines.get("storefront").await.ok()?;
        condition(&pp, "ForeignScaler").filter(|c| c.0 == "False")
    })
    .await;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "None"));
    let pp = pipelines.get("storefront").await.expect("pipeline");
    assert_eq!(pp.status.and_then(|s| s.replicas), Some(4), "what runs");
    replicas(4, "the HPA's last count still runs").await;
    // And the operator scales them again.
    kubectl_scale(&ns, 2);
    replicas(2, "the Deployment follows kubectl scale again").await;
}
