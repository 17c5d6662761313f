//! `kubectl apply -k manifests/` against a real kube-apiserver, and the
//! operator running under the ServiceAccount and RBAC those manifests grant:
//! enough to do its job, nothing more.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{Operator, client, crd_established, eventually, kubeconfig};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use pixelpipe_crds::PixelPipeline;

const NS: &str = "pixelpipe-system";
const OPERATOR: &str = "system:serviceaccount:pixelpipe-system:pixelpipe-operator";
const WORKER: &str = "system:serviceaccount:pixelpipe-system:storefront-worker";

fn repo(path: &str) -> String {
    format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))
}

fn kubectl(args: &[&str]) -> Output {
    Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .output()
        .expect("kubectl runs")
}

fn ok(args: &[&str]) -> String {
    let out = kubectl(args);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn can_i(who: &str, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i", "--as", who];
    all.extend_from_slice(args);
    // `can-i` exits 1 for "no".
    String::from_utf8_lossy(&kubectl(&all).stdout).trim() == "yes"
}

/// A kubeconfig that authenticates as the operator's ServiceAccount.
fn service_account_kubeconfig() -> String {
    let token = ok(&[
        "create",
        "token",
        "pixelpipe-operator",
        "-n",
        NS,
        "--duration",
        "1h",
    ]);
    let admin = std::fs::read_to_string(kubeconfig()).expect("kubeconfig");
    let mut out = String::new();
    let mut in_user = false;
    for line in admin.lines() {
        if line.trim_start().starts_with("token:") && in_user {
            out.push_str(&format!("    token: {}\n", token.trim()));
            continue;
        }
        in_user |= line.starts_with("users:");
        out.push_str(line);
        out.push('\n');
    }
    let path = std::env::temp_dir().join(format!(
        "pixelpipe-operator-sa-{}.kubeconfig",
        std::process::id()
    ));
    std::fs::write(&path, out).expect("write kubeconfig");
    path.to_string_lossy().into_owned()
}

#[tokio::test]
async fn the_manifests_install_an_operator_that_runs_on_least_privilege() {
    let out = ok(&["apply", "-k", &repo("manifests")]);
    for what in [
        "namespace/pixelpipe-system",
        "customresourcedefinition.apiextensions.k8s.io/pixelpipelines.pixelpipe.dev",
        "clusterrole.rbac.authorization.k8s.io/pixelpipe-operator",
        "deployment.apps/pixelpipe-operator",
        "poddisruptionbudget.policy/pixelpipe-operator",
    ] {
        assert!(out.contains(what), "{what} not applied:\n{out}");
    }
    crd_established(&client().await).await;
    ok(&["apply", "-k", &repo("manifests/samples")]);
    let table = ok(&["get", "pixelpipelines", "-n", NS]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "REPLICAS", "POOLS", "LAG", "OLDEST", "SLO", "AGE"]
    );

    // Least privilege, as the API server's authorizer sees it.
    for allowed in [
        ["watch", "pixelpipelines", "-A"],
        ["patch", "pixelpipelines", "--subresource=status"],
        ["patch", "deployments", "-A"],
        ["create", "events.events.k8s.io", "-A"],
        ["watch", "pods", "-A"],
        ["patch", "poddisruptionbudgets.policy", "-A"],
    ] {
        assert!(
            can_i(OPERATOR, &allowed),
            "the operator may not {allowed:?}"
        );
    }
    assert!(can_i(OPERATOR, &["update", "leases", "-n", NS]));
    assert!(!can_i(OPERATOR, &["update", "leases", "-n", "default"]));
    for denied in [
        ["get", "secrets", "-A"],
        ["delete", "deployments", "-A"],
        ["update", "pixelpipelines", "-A"],
        ["create", "pods", "-A"],
        ["patch", "pods", "-A"],
        ["delete", "pods", "-A"],
        ["delete", "poddisruptionbudgets.policy", "-A"],
    ] {
        assert!(!can_i(OPERATOR, &denied), "the operator may {denied:?}");
    }

    // The operator, authenticated as its ServiceAccount, does its whole job.
    let sa = service_account_kubeconfig();
    let op = Operator::start_with(
        NS,
        "in-cluster",
        &sa,
        &["--lease-name", "pixelpipe-operator-test"],
    );
    let client = client().await;
    let api: Api<PixelPipeline> = Api::namespaced(client.clone(), NS);
    eventually(
        "the sample is reconciled under the operator's RBAC",
        Duration::from_secs(30),
        || async {
            let pp = api.get("storefront").await.ok()?;
            let status = pp.status?;
            (status.observed_generation == pp.metadata.generation && status.pool_summary.is_some())
                .then_some(())
        },
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    assert!(
        deployments
            .get_opt("storefront-worker")
            .await
            .expect("get")
            .is_some()
    );
    assert_eq!(
        op.metric("pixelpipe_operator_reconciles_total", "outcome=\"error\""),
        0.0,
        "{}",
        op.log_tail()
    );
    let table = ok(&["get", "pixelpipelines", "storefront", "-n", NS]);
    assert!(table.contains("2/2/2/2"), "{table}");

    // The workers' ServiceAccount reads its own pipeline and nothing else.
    assert!(can_i(
        WORKER,
        &["get", "pixelpipelines/storefront", "-n", NS]
    ));
    assert!(can_i(
        WORKER,
        &["watch", "pixelpipelines/storefront", "-n", NS]
    ));
    assert!(!can_i(WORKER, &["list", "pixelpipelines", "-n", NS]));
    // What the worker's watch sends: a list narrowed to its own name.
    let own = ok(&[
        "get",
        "pixelpipelines",
        "-n",
        NS,
        "--field-selector",
        "metadata.name=storefront",
        "--as",
        WORKER,
    ]);
    assert!(own.contains("storefront"), "{own}");
    assert!(!can_i(WORKER, &["get", "pixelpipelines/other", "-n", NS]));
    assert!(!can_i(
        WORKER,
        &["patch", "pixelpipelines/storefront", "-n", NS]
    ));
    assert!(!can_i(WORKER, &["get", "secrets", "-n", NS]));
    // The sample goes (its children by owner references): later tests run
    // their own pipelines in this namespace.
    ok(&[
        "delete",
        "pixelpipeline",
        "storefront",
        "-n",
        NS,
        "--ignore-not-found",
    ]);
}
