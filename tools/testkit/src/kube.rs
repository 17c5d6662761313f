//! The real API server `tests/env/kube.sh` starts (`KUBECONFIG`).

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt};
use pixelpipe_crds::PixelPipeline;

pub fn kubeconfig() -> String {
    std::env::var("KUBECONFIG").unwrap_or_else(|_| {
        panic!("KUBECONFIG is not set: these tests need a real API server (tests/env/kube.sh start, or tests/run.sh)")
    })
}

pub async fn client() -> Client {
    kubeconfig();
    Client::try_default()
        .await
        .expect("a client for KUBECONFIG")
}

/// Applies the generated CRD and waits until it is served.
pub async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = PixelPipeline::crd();
    let name = crd.metadata.name.clone().expect("crd name");
    crds.patch(
        &name,
        &PatchParams::apply("pixelpipe-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("CRD applied");
    crd_established(client).await;
}

/// Waits until the PixelPipeline CRD is served. Polled through the API, not
/// `kubectl wait`: that fails outright ("accessor error: <nil>") when it reads
/// the CRD before the API server has written any condition.
pub async fn crd_established(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = PixelPipeline::crd_name();
    crate::wait::eventually(
        "the CRD is established",
        Duration::from_secs(60),
        || async {
            let c = crds.get(name).await.ok()?;
            c.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        },
    )
    .await;
}

/// A fresh namespace named after the test.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 100_000_000)
        .unwrap_or_default();
    let name = format!("{prefix}-{stamp}");
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
    name
}

/// The sample pipeline (`manifests/samples/storefront.yaml`), in `namespace`.
pub fn sample(namespace: &str) -> PixelPipeline {
    let text = include_str!("../../../manifests/samples/storefront.yaml");
    let mut pp: PixelPipeline = pixelpipe_crds::yaml::from_str(text).expect("sample parses");
    pp.metadata.namespace = Some(namespace.to_string());
    pp
}

pub async fn create(client: &Client, pp: &PixelPipeline) -> PixelPipeline {
    let ns = pp.metadata.namespace.as_deref().expect("namespace");
    Api::<PixelPipeline>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), pp)
        .await
        .expect("PixelPipeline created")
}

/// Events about objects in `namespace`: (reason, note, reporting instance).
pub async fn events(client: &Client, namespace: &str) -> Vec<(String, String, String)> {
    Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .expect("events listed")
        .items
        .into_iter()
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
                e.reporting_instance.unwrap_or_default(),
            )
        })
        .collect()
}

/// The worker flags in a Deployment's pod template, parsed by the worker's
/// own parser.
pub fn worker_args(
    d: &k8s_openapi::api::apps::v1::Deployment,
) -> pixelpipe_crds::worker::WorkerArgs {
    use clap::Parser;
    let args = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.args.clone())
        .unwrap_or_default();
    pixelpipe_crds::worker::WorkerArgs::try_parse_from(
        std::iter::once("pixelpipe-worker".to_string()).chain(args),
    )
    .expect("the worker accepts the Deployment's flags")
}
