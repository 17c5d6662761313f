//! Helpers for the operator's tests against a real kube-apiserver (started by
//! `tests/env/kube.sh`; `KUBECONFIG` points at it).
#![allow(dead_code, unused_imports)] // each test binary uses its own subset

use std::ops::Deref;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
pub use pixelpipe_testkit::kube::{
    client, crd_established, create, events, install_crd, kubeconfig, namespace, sample,
};
use pixelpipe_testkit::process::{Process, free_port};
pub use pixelpipe_testkit::wait::eventually;

/// The worker container's image.
pub fn image_of(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// A `pixelpipe-operator run` process under test, confined to one namespace
/// and holding its Lease there.
#[derive(Debug)]
pub struct Operator {
    process: Process,
    pub identity: String,
}

impl Operator {
    pub fn start(namespace: &str, identity: &str) -> Self {
        Self::start_with(namespace, identity, &kubeconfig(), &[])
    }

    pub fn start_with(namespace: &str, identity: &str, kubeconfig: &str, extra: &[&str]) -> Self {
        let admin = format!("127.0.0.1:{}", free_port());
        let log =
            std::env::temp_dir().join(format!("pixelpipe-operator-{namespace}-{identity}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_pixelpipe-operator"));
        command
            .args([
                "run",
                "--namespace",
                namespace,
                "--lease-namespace",
                namespace,
                "--identity",
                identity,
                "--admin-addr",
                &admin,
                // Short leases keep the takeover test quick.
                "--lease-duration-seconds",
                "3",
                "--lease-renew-seconds",
                "1",
            ])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info");
        let admin = admin.parse().expect("address");
        Self {
            process: Process::start("operator", command, admin, &log),
            identity: identity.to_string(),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.metric("pixelpipe_operator_leader", "") == 1.0
    }

    pub fn sigkill(self) {
        self.process.sigkill()
    }

    /// SIGTERM, then the exit status (within 20 s).
    pub fn sigterm(self) -> ExitStatus {
        self.process.sigterm(Duration::from_secs(20))
    }
}

impl Deref for Operator {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.process
    }
}
