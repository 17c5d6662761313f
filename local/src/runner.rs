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
//! - its admin port: a free local port, given through the binary's
//!   admin-address variable (the readiness probe is sent there);
//! - a CPU limit: nothing comparable on a shared machine, so the caller may
//!   add env per binary (the demo sets an intake limit).

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Secret, ServiceAccount};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A binary the runner can stand in a container for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binary {
    /// The last path segment of the image name, without the tag.
    pub name: &'static str,
    /// The variable the binary reads its admin address from.
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
}

/// One running process, as others may want to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub deployment: String,
    pub name: String,
    pub pid: u32,
    pub admin_port: u16,
    pub ready: bool,
}

#[derive(Debug)]
struct Pod {
    name: String,
    template_hash: String,
    child: Child,
    admin_port: u16,
    ready: bool,
    started: Instant,
}

/// What to change so `want` pods of template `hash` run: pods of another
/// template all go (a replace-all rollout: the workers commit on SIGTERM and
/// the group rebalances once), surplus pods go newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub start: usize,
    /// Indexes into the pods given, to stop.
    pub stop: Vec<usize>,
}

pub fn plan(want: usize, hash: &str, pods: &[&str]) -> Plan {
    let mut stop: Vec<usize> = (0..pods.len()).filter(|&i| pods[i] != hash).collect();
    let current: Vec<usize> = (0..pods.len()).filter(|&i| pods[i] == hash).collect();
    if current.len() > want {
        stop.extend(current[want..].iter().rev());
    }
    Plan {
        start: want.saturating_sub(current.len()),
        stop,
    }
}

/// Restart backoff after a pod exits on its own: 1 s doubling to 30 s, reset
/// by a pod that lived a minute (kubelet's CrashLoopBackOff, shortened).
#[derive(Debug, Clone, Default)]
struct Backoff {
    failures: u32,
    until: Option<Instant>,
}

impl Backoff {
    fn exited(&mut self, lived: Duration, now: Instant) {
        self.failures = if lived > Duration::from_secs(60) {
            1
        } else {
            (self.failures + 1).min(6)
        };
        let delay = Duration::from_secs((1u64 << (self.failures - 1)).min(30));
        self.until = Some(now + delay);
    }
    fn waiting(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }
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
    stopping: JoinSet<()>,
    warned: std::collections::HashSet<String>,
    view: tokio::sync::watch::Sender<Vec<PodInfo>>,
    restarts: u32,
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
        Self {
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
            while self.stopping.try_join_next().is_some() {}
        }
        for (_, pods) in self.pods.drain() {
            for pod in pods {
                stop_pod(&mut self.stopping, pod, Duration::from_secs(30));
            }
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
            self.reap(&name);
            let hashes: Vec<String> = self.pods.get(&name).map_or_else(Vec::new, |ps| {
                ps.iter().map(|p| p.template_hash.clone()).collect()
            });
            let refs: Vec<&str> = hashes.iter().map(String::as_str).collect();
            let plan = plan(want, &hash, &refs);
            let grace = Duration::from_secs(
                pod_spec
                    .termination_grace_period_seconds
                    .unwrap_or(30)
                    .clamp(0, 300) as u64,
            );
            if !plan.stop.is_empty() {
                let pods = self.pods.entry(name.clone()).or_default();
                let mut stop = plan.stop.clone();
                stop.sort_unstable_by(|a, b| b.cmp(a));
                for i in stop {
                    let pod = pods.remove(i);
                    tracing::info!(deployment = %name, pod = %pod.name, "stopping pod");
                    stop_pod(&mut self.stopping, pod, grace);
                }
            }
            let waiting = self
                .backoff
                .get(&name)
                .is_some_and(|b| b.waiting(Instant::now()));
            if !waiting {
                for _ in 0..plan.start {
                    let pod = self
                        .start_pod(&name, &hash, binary, pod_spec, container)
                        .await
                        .with_context(|| format!("starting a pod of {name}"))?;
                    tracing::info!(deployment = %name, pod = %pod.name, pid = pod.child.id(), "started pod");
                    self.pods.entry(name.clone()).or_default().push(pod);
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
                stop_pod(&mut self.stopping, pod, Duration::from_secs(30));
            }
        }
        self.publish();
        Ok(())
    }

    /// Forgets pods whose process exited on its own; the next plan replaces them.
    fn reap(&mut self, deployment: &str) {
        let Some(pods) = self.pods.get_mut(deployment) else {
            return;
        };
        let now = Instant::now();
        let mut i = 0;
        while i < pods.len() {
            if let Ok(Some(status)) = pods[i].child.try_wait() {
                let pod = pods.remove(i);
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

    async fn start_pod(
        &mut self,
        deployment: &str,
        hash: &str,
        binary: Binary,
        spec: &PodSpec,
        container: &Container,
    ) -> anyhow::Result<Pod> {
        let name = format!("{deployment}-{}-{}", &hash[..10], suffix());
        let dir = self.config.work_dir.join("pods").join(&name);
        std::fs::create_dir_all(&dir)?;
        let mounts = self.mount_volumes(spec, container, &dir).await?;
        let admin_port = free_port()?;
        let mut env = environment(container, &name, &self.config.namespace, &mounts)?;
        env.retain(|(k, _)| k != binary.admin_env);
        env.push((
            binary.admin_env.to_string(),
            format!("127.0.0.1:{admin_port}"),
        ));
        let account = spec.service_account_name.as_deref().unwrap_or("default");
        let kubeconfig = self.credentials(account).await?;
        env.push(("KUBECONFIG".to_string(), kubeconfig.display().to_string()));
        for (b, k, v) in &self.config.extra_env {
            if b == binary.name {
                env.retain(|(key, _)| key != k);
                env.push((k.clone(), v.clone()));
            }
        }
        let args: Vec<String> = container
            .args
            .iter()
            .flatten()
            .map(|a| rewrite(a, &mounts))
            .collect();
        let log = std::fs::File::create(
            self.config
                .work_dir
                .join("logs")
                .join(format!("{name}.log")),
        )?;
        let child = Command::new(self.config.bin_dir.join(binary.name))
            .args(&args)
            .env_clear()
            .envs(std::env::vars().filter(|(k, _)| k == "PATH" || k == "RUST_LOG"))
            .envs(env)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "running {}",
                    self.config.bin_dir.join(binary.name).display()
                )
            })?;
        Ok(Pod {
            name,
            template_hash: hash.to_string(),
            child,
            admin_port,
            ready: false,
            started: Instant::now(),
        })
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

    /// A kubeconfig with a token for `account`, renewed every 30 minutes.
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
        let path = self
            .config
            .work_dir
            .join(format!("{}.{account}.kubeconfig", self.config.namespace));
        std::fs::write(
            &path,
            kubeconfig_with_token(&self.config.kubeconfig, &token)?,
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
                Some(path) => http_ok(pod.admin_port, path).await,
                None => true,
            };
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
                    admin_port: p.admin_port,
                    ready: p.ready,
                })
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        self.view.send_replace(all);
    }
}

/// SIGTERM now, SIGKILL after `grace`, in the background.
fn stop_pod(set: &mut JoinSet<()>, mut pod: Pod, grace: Duration) {
    set.spawn(async move {
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
    });
}

/// The container's environment as the kubelet would set it.
pub fn environment(
    container: &Container,
    pod: &str,
    namespace: &str,
    mounts: &[(String, PathBuf)],
) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for e in container.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => rewrite(v, mounts),
            (None, Some(from)) => match from.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                Some("metadata.name") => pod.to_string(),
                Some("metadata.namespace") => namespace.to_string(),
                _ => bail!(
                    "env {}: only metadata.name and metadata.namespace field refs are supported",
                    e.name
                ),
            },
            (None, None) => String::new(),
        };
        out.push((e.name.clone(), value));
    }
    Ok(out)
}

/// `/etc/pixelpipe/pipeline.yaml` -> `<pod dir>/config/pipeline.yaml`.
/// A file only its owner can read, as a secret volume's `defaultMode: 0400`.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o400)
        .open(path)?
        .write_all(bytes)
}

fn rewrite(value: &str, mounts: &[(String, PathBuf)]) -> String {
    for (mount, local) in mounts {
        let mount = mount.trim_end_matches('/');
        if value == mount {
            return local.display().to_string();
        }
        if let Some(rest) = value.strip_prefix(&format!("{mount}/")) {
            return local.join(rest).display().to_string();
        }
    }
    value.to_string()
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

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn http_ok(port: u16, path: &str) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
            .await?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await?;
        Ok::<bool, std::io::Error>(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Ok(true))
    )
}

/// The runner's kubeconfig with its user replaced by a bearer token.
fn kubeconfig_with_token(admin: &Path, token: &str) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(admin).with_context(|| format!("reading {}", admin.display()))?;
    let config: serde_yaml::Value = serde_yaml::from_str(&text)?;
    let cluster = config["clusters"][0]["cluster"].clone();
    if cluster.is_null() {
        bail!("{} names no cluster", admin.display());
    }
    let out = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": "pod", "user": {"token": token}}],
        "contexts": [{"name": "pod", "context": {"cluster": "local", "user": "pod"}}],
        "current-context": "pod",
    });
    Ok(serde_yaml::to_string(&out)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector};

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

    #[test]
    fn plans_scale_up_down_and_roll() {
        assert_eq!(
            plan(3, "a", &["a"]),
            Plan {
                start: 2,
                stop: vec![]
            }
        );
        // Surplus goes newest first.
        assert_eq!(
            plan(1, "a", &["a", "a", "a"]),
            Plan {
                start: 0,
                stop: vec![2, 1]
            }
        );
        // A new template replaces every old pod.
        assert_eq!(
            plan(2, "b", &["a", "a"]),
            Plan {
                start: 2,
                stop: vec![0, 1]
            }
        );
        assert_eq!(
            plan(0, "a", &["a"]),
            Plan {
                start: 0,
                stop: vec![0]
            }
        );
    }

    #[test]
    fn backoff_doubles_to_thirty_seconds_and_resets_after_a_long_life() {
        let now = Instant::now();
        let mut b = Backoff::default();
        let mut delays = Vec::new();
        for _ in 0..8 {
            b.exited(Duration::from_secs(1), now);
            delays.push((b.until.expect("set") - now).as_secs());
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        b.exited(Duration::from_secs(120), now);
        assert_eq!((b.until.expect("set") - now).as_secs(), 1);
    }

    #[test]
    fn env_resolves_field_refs_and_rewrites_mounted_paths() {
        let field = |path: &str| EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        };
        let container = Container {
            env: Some(vec![
                EnvVar {
                    name: "PIXELPIPE_CONFIG".into(),
                    value: Some("/etc/pixelpipe/pipeline.yaml".into()),
                    ..EnvVar::default()
                },
                EnvVar {
                    name: "POD_NAME".into(),
                    value_from: Some(field("metadata.name")),
                    ..EnvVar::default()
                },
                EnvVar {
                    name: "POD_NAMESPACE".into(),
                    value_from: Some(field("metadata.namespace")),
                    ..EnvVar::default()
                },
            ]),
            ..Container::default()
        };
        let mounts = vec![("/etc/pixelpipe".to_string(), PathBuf::from("/tmp/p/config"))];
        let env = environment(&container, "w-1", "ns", &mounts).expect("env");
        assert_eq!(
            env,
            [
                (
                    "PIXELPIPE_CONFIG".to_string(),
                    "/tmp/p/config/pipeline.yaml".to_string()
                ),
                ("POD_NAME".to_string(), "w-1".to_string()),
                ("POD_NAMESPACE".to_string(), "ns".to_string()),
            ]
        );
        let unsupported = Container {
            env: Some(vec![EnvVar {
                name: "NODE".into(),
                value_from: Some(field("spec.nodeName")),
                ..EnvVar::default()
            }]),
            ..Container::default()
        };
        assert!(environment(&unsupported, "w-1", "ns", &mounts).is_err());
    }
}
