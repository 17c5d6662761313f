//! A stand-in for the kubelet and the Deployment controller, for a machine
//! that has an API server but neither of them: every Deployment in a namespace
//! whose image is a Pixelpipe binary runs as local processes, as many as its
//! `spec.replicas`, with the pod template's args and environment. A changed
//! template replaces them; a process that exits is restarted (with a bounded
//! backoff); the Deployment's status reports them, so the operator's `Ready`
//! condition and `kubectl get deployments` read what a cluster would show.
//!
//! What a pod gets, and what a process gets instead:
//! - its ServiceAccount's credentials: a kubeconfig holding a token from the
//!   TokenRequest API, so a process has exactly its pod's RBAC;
//! - configMap and secret volumes: their files in a directory of the pod's own
//!   (secrets readable by the owner only), with paths under the mount path
//!   rewritten in env and args;
//! - `fieldRef` env (`metadata.name`, `metadata.namespace`): the pod's name and namespace;
//! - its own IP: an address of its own on the loopback network (127.0.1.N),
//!   so every pod listens on its container port as on a cluster, and
//!   `0.0.0.0:PORT` in its flags means that address;
//! - a CPU limit: nothing comparable on a shared machine, so the caller may
//!   add env per binary (the demo sets an intake limit);
//! - a Pod object ([`objects`]): labels, owner, node, IP and Ready condition,
//!   so pod discovery through the API works as on a cluster; with a node
//!   capacity (`max_pods`, the kubelet's `--max-pods`), pods past it stay
//!   Pending and unschedulable.

mod objects;
mod plan;
mod pod;
mod scale;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use pixelpipe_runtime::http::Http;
use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use objects::{Objects, Phase, pod_object};
use plan::Backoff;
pub use plan::{Plan, plan};
use pod::{PodView, kubeconfig_with_token_file, write_private};
use scale::Deploy;

/// A binary the runner can stand in a container for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binary {
    /// The last path segment of the image name, without the tag.
    pub name: &'static str,
    /// The variable the binary reads its admin address from, when its flags
    /// do not name one.
    pub admin_env: &'static str,
}

pub const BINARIES: [Binary; 2] = [
    Binary {
        name: "pixelpipe-worker",
        admin_env: "PIXELPIPE_ADMIN_ADDR",
    },
    Binary {
        name: "pixelpipe-operator",
        admin_env: "PIXELPIPE_OPERATOR_ADMIN_ADDR",
    },
];

/// Pod IPs are 127.0.1.1 to 127.0.1.254: the runner's pod network.
const POD_NETWORK: [u8; 3] = [127, 0, 1];

/// Processes per Deployment, at most: one machine, not a cluster.
pub const MAX_PODS_PER_DEPLOYMENT: usize = 32;

/// `ghcr.io/pixelpipe/pixelpipe-worker:0.1.0` -> the worker binary.
pub fn binary_for(image: &str) -> Option<Binary> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let name = last.split(':').next().unwrap_or(last);
    BINARIES.iter().copied().find(|b| b.name == name)
}

#[derive(Debug, Clone)]
pub struct Config {
    pub namespace: String,
    /// Where the binaries are (cargo's target/release or target/debug).
    pub bin_dir: PathBuf,
    /// Pod directories, credentials and logs go here.
    pub work_dir: PathBuf,
    /// The runner's own kubeconfig: the server and CA the pods' kubeconfigs use.
    pub kubeconfig: PathBuf,
    /// Extra environment per binary name.
    pub extra_env: Vec<(String, String, String)>,
    pub interval: Duration,
    /// Processes the node runs at most (the kubelet's `--max-pods`); pods
    /// past it stay Pending. `None`: as many as the Deployments ask for.
    /// Shared, so a test can make room while it runs.
    pub max_pods: Option<Arc<AtomicUsize>>,
}

/// One running process, as others may want to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub deployment: String,
    pub name: String,
    pub pid: u32,
    pub ip: Ipv4Addr,
    pub ready: bool,
}

#[derive(Debug)]
struct Pod {
    name: String,
    template_hash: String,
    child: Child,
    ip: Ipv4Addr,
    /// The container port the readiness probe is sent to.
    probe_port: u16,
    ready: bool,
    /// The Ready condition last written to its Pod object.
    reported_ready: Option<bool>,
    started: Instant,
}

/// A pod the node had no room for: an object, no process.
#[derive(Debug, Clone)]
struct Pending {
    name: String,
    template_hash: String,
}

/// Status fields the runner reports, to patch only on change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reported {
    generation: i64,
    replicas: i32,
    updated: i32,
    ready: i32,
}

pub struct Runner {
    client: Client,
    config: Config,
    pods: HashMap<String, Vec<Pod>>,
    backoff: HashMap<String, Backoff>,
    reported: HashMap<String, Reported>,
    tokens: HashMap<String, (PathBuf, Instant)>,
    /// Pods told to stop, until they exit; each gives back its IP.
    stopping: JoinSet<Ipv4Addr>,
    warned: HashSet<String>,
    view: tokio::sync::watch::Sender<Vec<PodInfo>>,
    restarts: u32,
    /// Pod IPs in use.
    ips: HashSet<Ipv4Addr>,
    http: Http,
    objects: Objects,
    pending: HashMap<String, Vec<Pending>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("config", &self.config)
            .field("pods", &self.pods)
            .finish_non_exhaustive()
    }
}

impl Runner {
    pub fn new(client: Client, config: Config) -> Self {
        let objects = Objects::new(Api::namespaced(client.clone(), &config.namespace));
        Self {
            objects,
            pending: HashMap::new(),
            client,
            config,
            pods: HashMap::new(),
            backoff: HashMap::new(),
            reported: HashMap::new(),
            tokens: HashMap::new(),
            stopping: JoinSet::new(),
            warned: Default::default(),
            view: tokio::sync::watch::channel(Vec::new()).0,
            restarts: 0,
            ips: HashSet::new(),
            http: Http::default(),
        }
    }

    /// The processes running now, updated every interval.
    pub fn view(&self) -> tokio::sync::watch::Receiver<Vec<PodInfo>> {
        self.view.subscribe()
    }

    /// Runs until `stop`, then stops every process (SIGTERM, then SIGKILL
    /// after the pod's grace period) and waits for them.
    pub async fn run(mut self, stop: CancellationToken) -> anyhow::Result<u32> {
        std::fs::create_dir_all(self.config.work_dir.join("logs"))?;
        // Pod objects of an earlier run that ended without cleaning up.
        if let Err(e) = self.objects.sweep(&HashSet::new()).await {
            tracing::warn!(error = format!("{e:#}"), "cannot list earlier pods");
        }
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.sync().await {
                tracing::warn!(error = format!("{e:#}"), "runner sync failed; retrying");
            }
            // Finished stops are collected as they end; the set stays small.
            while let Some(done) = self.stopping.try_join_next() {
                if let Ok(ip) = done {
                    self.ips.remove(&ip);
                }
            }
        }
        for (_, pods) in self.pods.drain() {
            for pod in pods {
                stop_pod(
                    &mut self.stopping,
                    &self.objects,
                    pod,
                    Duration::from_secs(30),
                );
            }
        }
        for p in self.pending.drain().flat_map(|(_, ps)| ps) {
            self.objects.remove(&p.name).await;
        }
        while self.stopping.join_next().await.is_some() {}
        Ok(self.restarts)
    }

    async fn sync(&mut self) -> anyhow::Result<()> {
        let deployments: Api<Deployment> =
            Api::namespaced(self.client.clone(), &self.config.namespace);
        let list = deployments.list(&ListParams::default()).await?;
        let mut seen = Vec::new();
        for d in list.items {
            let name = d.name_any();
            let Some(template) = d.spec.as_ref().map(|s| &s.template) else {
                continue;
            };
            let Some(pod_spec) = template.spec.as_ref() else {
                continue;
            };
            let Some(container) = pod_spec.containers.first() else {
                continue;
            };
            let Some(binary) = container.image.as_deref().and_then(binary_for) else {
                if self.warned.insert(name.clone()) {
                    tracing::warn!(deployment = %name, image = ?container.image, "no local binary for this image; not running it");
                }
                continue;
            };
            seen.push(name.clone());
            let declared = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as usize;
            if declared > MAX_PODS_PER_DEPLOYMENT && self.warned.insert(format!("{name}/replicas"))
            {
                tracing::warn!(deployment = %name, declared, "more replicas than one machine runs; running {MAX_PODS_PER_DEPLOYMENT}");
            }
            let want = declared.min(MAX_PODS_PER_DEPLOYMENT);
            let hash = template_hash(template)?;
            self.reap(&name).await;
            let grace = Duration::from_secs(
                pod_spec
                    .termination_grace_period_seconds
                    .unwrap_or(30)
                    .clamp(0, 300) as u64,
            );
            let pending = self.keep_pending(&name, &hash, want).await;
            let plan = self.plan_running(&name, &hash, want - pending);
            self.stop_planned(&name, &plan.stop, grace);
            let waiting = self
                .backoff
                .get(&name)
                .is_some_and(|b| b.waiting(Instant::now()));
            if !waiting {
                let deploy = Deploy {
                    deployment: &d,
                    hash: &hash,
                    binary,
                    template,
                    container,
                };
                self.promote_pending(&deploy).await?;
                for _ in 0..plan.start {
                    self.add_pod(&deploy).await?;
                }
            }
            self.probe(&name, container).await;
            self.report(&deployments, &d, &hash).await?;
        }
        // Deployments deleted: their pods go too.
        let gone: Vec<String> = self
            .pods
            .keys()
            .filter(|k| !seen.contains(k))
            .cloned()
            .collect();
        for name in gone {
            for pod in self.pods.remove(&name).unwrap_or_default() {
                stop_pod(
                    &mut self.stopping,
                    &self.objects,
                    pod,
                    Duration::from_secs(30),
                );
            }
            for p in self.pending.remove(&name).unwrap_or_default() {
                self.objects.remove(&p.name).await;
            }
        }
        self.publish();
        Ok(())
    }

    /// Forgets pods whose process exited on its own; the next plan replaces them.
    async fn reap(&mut self, deployment: &str) {
        let Some(pods) = self.pods.get_mut(deployment) else {
            return;
        };
        let now = Instant::now();
        let mut i = 0;
        while i < pods.len() {
            if let Ok(Some(status)) = pods[i].child.try_wait() {
                let pod = pods.remove(i);
                self.ips.remove(&pod.ip);
                self.objects.remove(&pod.name).await;
                tracing::warn!(deployment, pod = %pod.name, %status, "pod exited; restarting it");
                self.restarts += 1;
                self.backoff
                    .entry(deployment.to_string())
                    .or_default()
                    .exited(now - pod.started, now);
            } else {
                i += 1;
            }
        }
    }

    async fn start_pod(&mut self, d: &Deploy<'_>, name: String) -> anyhow::Result<Pod> {
        let (binary, container) = (d.binary, d.container);
        let spec = d
            .template
            .spec
            .as_ref()
            .context("the template has no pod spec")?;
        let dir = self.config.work_dir.join("pods").join(&name);
        std::fs::create_dir_all(&dir)?;
        let view = PodView {
            mounts: self.mount_volumes(spec, container, &dir).await?,
            ip: self.allocate_ip()?,
            name: name.clone(),
            namespace: self.config.namespace.clone(),
        };
        let probe_port = probe_port(container).unwrap_or(0);
        let mut env = view.environment(container)?;
        if !env.iter().any(|(k, _)| k == binary.admin_env) {
            env.push((
                binary.admin_env.to_string(),
                format!("{}:{probe_port}", view.ip),
            ));
        }
        let account = spec.service_account_name.as_deref().unwrap_or("default");
        let kubeconfig = self.credentials(account).await?;
        env.push(("KUBECONFIG".to_string(), kubeconfig.display().to_string()));
        for (b, k, v) in &self.config.extra_env {
            if b == binary.name {
                env.retain(|(key, _)| key != k);
                env.push((k.clone(), v.clone()));
            }
        }
        let args = view.arguments(container, &env);
        let object = pod_object(&name, d.deployment, d.template);
        let running = Phase::Running {
            ip: view.ip,
            ready: false,
        };
        let child = match self.objects.create(&object, container, running).await {
            Ok(()) => self.spawn(binary, &name, &dir, &args, env),
            Err(e) => Err(e),
        };
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                self.ips.remove(&view.ip);
                self.objects.remove(&name).await;
                return Err(e);
            }
        };
        Ok(Pod {
            name,
            template_hash: d.hash.to_string(),
            child,
            ip: view.ip,
            probe_port,
            ready: false,
            reported_ready: Some(false),
            started: Instant::now(),
        })
    }

    fn spawn(
        &self,
        binary: Binary,
        name: &str,
        dir: &Path,
        args: &[String],
        env: Vec<(String, String)>,
    ) -> anyhow::Result<Child> {
        let log_path = self
            .config
            .work_dir
            .join("logs")
            .join(format!("{name}.log"));
        let log = std::fs::File::create(log_path)?;
        let program = self.config.bin_dir.join(binary.name);
        Command::new(&program)
            .args(args)
            .env_clear()
            .envs(std::env::vars().filter(|(k, _)| k == "PATH" || k == "RUST_LOG"))
            .envs(env)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("running {}", program.display()))
    }

    /// A pod IP nobody uses.
    fn allocate_ip(&mut self) -> anyhow::Result<Ipv4Addr> {
        let [a, b, c] = POD_NETWORK;
        let ip = (1..=254)
            .map(|d| Ipv4Addr::new(a, b, c, d))
            .find(|ip| !self.ips.contains(ip))
            .context("the pod network is full")?;
        self.ips.insert(ip);
        Ok(ip)
    }

    /// Writes each configMap and secret volume the container mounts into the
    /// pod's directory; returns (mount path, local directory) pairs.
    async fn mount_volumes(
        &self,
        spec: &PodSpec,
        container: &Container,
        dir: &Path,
    ) -> anyhow::Result<Vec<(String, PathBuf)>> {
        let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.config.namespace);
        let mut mounts = Vec::new();
        for m in container.volume_mounts.iter().flatten() {
            let Some(volume) = spec.volumes.iter().flatten().find(|v| v.name == m.name) else {
                bail!("volume {} is mounted but not declared", m.name);
            };
            if let Some(source) = volume.secret.as_ref() {
                let name = source.secret_name.clone().unwrap_or_default();
                // The kubelet reads a pod's Secrets with its own rights, not
                // the pod's; so does this stand-in.
                let secret = Api::<Secret>::namespaced(self.client.clone(), &self.config.namespace)
                    .get(&name)
                    .await
                    .with_context(|| format!("reading Secret {name}"))?;
                let local = dir.join(&m.name);
                std::fs::create_dir_all(&local)?;
                for (key, value) in secret.data.iter().flatten() {
                    write_private(&local.join(key), &value.0)?;
                }
                mounts.push((m.mount_path.clone(), local));
                continue;
            }
            let Some(source) = volume.config_map.as_ref() else {
                // emptyDir and friends: a fresh directory is what a pod gets.
                let local = dir.join(&m.name);
                std::fs::create_dir_all(&local)?;
                mounts.push((m.mount_path.clone(), local));
                continue;
            };
            let cm = maps
                .get(&source.name)
                .await
                .with_context(|| format!("reading ConfigMap {}", source.name))?;
            let local = dir.join(&m.name);
            std::fs::create_dir_all(&local)?;
            for (key, value) in cm.data.iter().flatten() {
                std::fs::write(local.join(key), value)?;
            }
            mounts.push((m.mount_path.clone(), local));
        }
        Ok(mounts)
    }

    /// A kubeconfig that reads a token for `account` from a file, renewed
    /// every 30 minutes: the processes read the new token as pods do.
    async fn credentials(&mut self, account: &str) -> anyhow::Result<PathBuf> {
        if let Some((path, at)) = self.tokens.get(account)
            && at.elapsed() < Duration::from_secs(1800)
        {
            return Ok(path.clone());
        }
        let accounts: Api<ServiceAccount> =
            Api::namespaced(self.client.clone(), &self.config.namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let token = accounts
            .create_token_request(account, &PostParams::default(), &request)
            .await
            .with_context(|| format!("requesting a token for ServiceAccount {account}"))?
            .status
            .map(|s| s.token)
            .context("the token request returned no token")?;
        // Not `with_extension`: it would cut at the dot between the two names.
        let base = format!("{}.{account}", self.config.namespace);
        let token_file = self.config.work_dir.join(format!("{base}.token"));
        write_private(&token_file, token.as_bytes())?;
        let path = self.config.work_dir.join(format!("{base}.kubeconfig"));
        std::fs::write(
            &path,
            kubeconfig_with_token_file(&self.config.kubeconfig, &token_file)?,
        )?;
        self.tokens
            .insert(account.to_string(), (path.clone(), Instant::now()));
        Ok(path)
    }

    async fn probe(&mut self, deployment: &str, container: &Container) {
        let path = container
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone());
        for pod in self.pods.get_mut(deployment).into_iter().flatten() {
            pod.ready = match &path {
                Some(path) => {
                    let url = format!("http://{}:{}{path}", pod.ip, pod.probe_port);
                    let answer = self.http.get(&url, Duration::from_secs(1), 4096).await;
                    matches!(answer, Ok((200..300, _)))
                }
                None => true,
            };
            if pod.reported_ready != Some(pod.ready) {
                let phase = Phase::Running {
                    ip: pod.ip,
                    ready: pod.ready,
                };
                match self.objects.set(&pod.name, container, phase).await {
                    Ok(()) => pod.reported_ready = Some(pod.ready),
                    Err(e) => {
                        tracing::warn!(pod = %pod.name, error = format!("{e:#}"), "cannot report readiness")
                    }
                }
            }
        }
    }

    async fn report(
        &mut self,
        api: &Api<Deployment>,
        d: &Deployment,
        hash: &str,
    ) -> anyhow::Result<()> {
        let name = d.name_any();
        let pods = self.pods.get(&name).map(Vec::as_slice).unwrap_or_default();
        let count = |f: &dyn Fn(&Pod) -> bool| pods.iter().filter(|p| f(p)).count() as i32;
        let now = Reported {
            generation: d.metadata.generation.unwrap_or(0),
            replicas: pods.len() as i32,
            updated: count(&|p| p.template_hash == hash),
            ready: count(&|p| p.ready),
        };
        if self.reported.get(&name) == Some(&now) {
            return Ok(());
        }
        let patch = serde_json::json!({"status": {
            "observedGeneration": now.generation,
            "replicas": now.replicas,
            "updatedReplicas": now.updated,
            "readyReplicas": now.ready,
            "availableReplicas": now.ready,
            "unavailableReplicas": now.replicas - now.ready,
        }});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("reporting the status of Deployment {name}"))?;
        self.reported.insert(name, now);
        Ok(())
    }

    fn publish(&self) {
        let mut all: Vec<PodInfo> = self
            .pods
            .iter()
            .flat_map(|(d, pods)| {
                pods.iter().map(|p| PodInfo {
                    deployment: d.clone(),
                    name: p.name.clone(),
                    pid: p.child.id().unwrap_or(0),
                    ip: p.ip,
                    ready: p.ready,
                })
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        self.view.send_replace(all);
    }
}

/// SIGTERM now, SIGKILL after `grace`, in the background; the Pod object
/// shows it terminating meanwhile and goes when the process has.
fn stop_pod(set: &mut JoinSet<Ipv4Addr>, objects: &Objects, mut pod: Pod, grace: Duration) {
    let objects = objects.clone();
    set.spawn(async move {
        objects.terminating(&pod.name).await;
        if let Some(pid) = pod.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(grace, pod.child.wait()).await.is_err() {
            tracing::warn!(pod = %pod.name, "grace period over; killing");
            let _ = pod.child.kill().await;
        }
        objects.remove(&pod.name).await;
        pod.ip
    });
}

/// The port of the container's readiness probe (a named port resolved).
fn probe_port(container: &Container) -> Option<u16> {
    let port = &container.readiness_probe.as_ref()?.http_get.as_ref()?.port;
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => {
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))?
                .container_port
        }
    };
    u16::try_from(number).ok()
}

fn template_hash(template: &k8s_openapi::api::core::v1::PodTemplateSpec) -> anyhow::Result<String> {
    Ok(hex::encode(Sha256::digest(serde_json::to_vec(template)?)))
}

fn suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_map_to_binaries() {
        assert_eq!(
            binary_for("ghcr.io/pixelpipe/pixelpipe-worker:0.1.0").map(|b| b.name),
            Some("pixelpipe-worker")
        );
        assert_eq!(
            binary_for("pixelpipe-operator@sha256:abc").map(|b| b.name),
            Some("pixelpipe-operator")
        );
        assert_eq!(binary_for("nginx:1.27"), None);
    }
}
