//! The real node `tests/env/node.sh` starts: the kubeconfig of its own
//! control plane (`PIXELPIPE_NODE_KUBECONFIG`) and the broker listener its
//! pods reach (`KAFKA_POD_BOOTSTRAP`). tests/run.sh sets both.

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
