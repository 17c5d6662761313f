//! The real node `tests/env/node.sh` starts: the kubeconfig of its own
//! control plane (`PIXELPIPE_NODE_KUBECONFIG`) and the broker listener its
//! pods reach (`KAFKA_POD_BOOTSTRAP`). tests/run.sh sets both.

use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: these tests need the real node (tests/env/node.sh start before tests/env/kafka.sh start, or tests/run.sh)")
    })
}

pub fn kubeconfig() -> String {
    var("PIXELPIPE_NODE_KUBECONFIG")
}

/// Where the node's pods reach the broker.
pub fn pod_bootstrap() -> String {
    var("KAFKA_POD_BOOTSTRAP")
}

pub async fn client() -> Client {
    let path = kubeconfig();
    let file = Kubeconfig::read_from(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .expect("a client configuration for the node's control plane");
    Client::try_from(config).expect("a client for the node's control plane")
}

/// Waits until the node is Ready and carries no taint, for at most
/// `timeout`: a test that creates pods starts on a node that can run them,
/// whatever the test before it left (its load can hold the kubelet's status
/// updates back long enough for the node to be marked unreachable). Panics
/// with the node's conditions and taints otherwise.
pub async fn until_schedulable(client: &Client, timeout: std::time::Duration) {
    let nodes: kube::Api<Node> = kube::Api::all(client.clone());
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let listed = nodes.list(&Default::default()).await;
        let report = match &listed {
            Ok(list) => list.items.iter().map(account).collect::<Vec<_>>(),
            Err(e) => vec![format!("the nodes could not be listed: {e}")],
        };
        let fine = listed
            .as_ref()
            .is_ok_and(|l| !l.items.is_empty() && l.items.iter().all(schedulable));
        if fine {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node is not Ready and untainted after {timeout:?}: {report:?}"
        );
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn schedulable(node: &Node) -> bool {
    let ready = conditions(node)
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    ready && taints(node).is_empty()
}

/// The node's conditions and taints, as one line.
fn account(node: &Node) -> String {
    let conditions: Vec<String> = conditions(node)
        .iter()
        .map(|c| {
            let why = c.message.as_deref().unwrap_or_default();
            format!("{}={} ({why})", c.type_, c.status)
        })
        .collect();
    let taints: Vec<String> = taints(node)
        .iter()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect();
    format!(
        "{}: {} taints {taints:?}",
        node.metadata.name.as_deref().unwrap_or("?"),
        conditions.join(", ")
    )
}

fn conditions(node: &Node) -> &[NodeCondition] {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
}

fn taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}
