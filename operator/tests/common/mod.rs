//! Helpers for the operator's tests against a real kube-apiserver (started by
//! `tests/env/kube.sh`; `KUBECONFIG` points at it).
#![allow(dead_code)] // each test binary uses its own subset

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
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
    eventually(
        "the CRD is established",
        Duration::from_secs(30),
        || async {
            let c = crds.get(&name).await.ok()?;
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

/// The sample pipeline, in `namespace`.
pub fn sample(namespace: &str) -> PixelPipeline {
    let text = include_str!("../../../manifests/samples/storefront.yaml");
    let mut pp: PixelPipeline = serde_yaml::from_str(text).expect("sample parses");
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

/// Polls `check` every 200 ms until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The worker container's image.
pub fn image_of(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A `pixelpipe-operator run` process under test, confined to one namespace
/// and holding its Lease there.
#[derive(Debug)]
pub struct Operator {
    pub child: Child,
    pub admin: u16,
    pub log: PathBuf,
    pub identity: String,
}

impl Operator {
    pub fn start(namespace: &str, identity: &str) -> Self {
        Self::start_with(namespace, identity, &kubeconfig(), &[])
    }

    pub fn start_with(namespace: &str, identity: &str, kubeconfig: &str, extra: &[&str]) -> Self {
        let admin = free_port();
        let log =
            std::env::temp_dir().join(format!("pixelpipe-operator-{namespace}-{identity}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_pixelpipe-operator"))
            .args([
                "run",
                "--namespace",
                namespace,
                "--lease-namespace",
                namespace,
                "--identity",
                identity,
                "--admin-addr",
                &format!("127.0.0.1:{admin}"),
                // Short leases keep the takeover test quick.
                "--lease-duration-seconds",
                "3",
                "--lease-renew-seconds",
                "1",
            ])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log file")))
            .spawn()
            .expect("spawn operator");
        let op = Self {
            child,
            admin,
            log,
            identity: identity.to_string(),
        };
        op.wait_until(
            "its admin endpoint answers",
            Duration::from_secs(30),
            || op.get("/healthz").is_some(),
        );
        op
    }

    /// GET on the admin endpoint: (status, body), or `None` if it does not answer.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.admin)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, text.split_once("\r\n\r\n")?.1.to_string()))
    }

    /// Sum of a metric family's samples whose line contains `filter`.
    pub fn metric(&self, name: &str, filter: &str) -> f64 {
        let Some((200, text)) = self.get("/metrics") else {
            return f64::NAN;
        };
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter(|l| l.contains(filter))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn is_leader(&self) -> bool {
        self.metric("pixelpipe_operator_leader", "") == 1.0
    }

    pub fn wait_until(&self, what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "timed out waiting until {what}; operator log:\n{}",
            self.log_tail()
        );
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }

    pub fn sigkill(mut self) {
        self.child.kill().expect("kill");
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status (within 20 s).
    pub fn sigterm(mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "operator did not exit within 20 s of SIGTERM; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
