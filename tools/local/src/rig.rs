//! What a pipeline on this machine stands on, shared by the story and the
//! end-to-end tests: the environment, `kubectl`, the manifests, the topics of
//! a run, a PixelPipeline pointed at them, the runner, and removing it all.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use anyhow::{Context, bail};
use kube::Client;
use pixelpipe_crds::PixelPipeline;
use pixelpipe_runtime::KafkaSettings;
use tokio::process::Command;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::runner::{self, PodInfo, Runner};

/// Where a pipeline runs.
#[derive(Clone)]
pub struct Env {
    pub client: Client,
    pub kubeconfig: PathBuf,
    pub kafka: KafkaSettings,
    /// The repository: `manifests/` is applied from here.
    pub repo: PathBuf,
    pub bin_dir: PathBuf,
    pub work_dir: PathBuf,
    pub platform: Platform,
}

/// What runs the pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platform {
    /// A real node (tests/env/node.sh): the kubelet runs pods as containers,
    /// and they reach the broker at `pod_bootstrap`, its listener on the
    /// node's bridge.
    Node { pod_bootstrap: String },
    /// The stand-in runner ([`Stand`]): Deployments as local processes, which
    /// reach the broker where this process does. Fast tests only.
    StandIn,
}

impl Env {
    /// The bootstrap servers a pipeline's pods connect to.
    pub fn pod_bootstrap(&self) -> &str {
        match &self.platform {
            Platform::Node { pod_bootstrap } => pod_bootstrap,
            Platform::StandIn => &self.kafka.bootstrap_servers,
        }
    }
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("kubeconfig", &self.kubeconfig)
            .field("kafka", &self.kafka.bootstrap_servers)
            .field("bin_dir", &self.bin_dir)
            .field("work_dir", &self.work_dir)
            .field("platform", &self.platform)
            .finish_non_exhaustive()
    }
}

/// The topics of one run, named after it.
#[derive(Debug, Clone)]
pub struct Topics {
    pub input: String,
    pub dead_letter: String,
    /// (partner name, its topic)
    pub partners: Vec<(String, String)>,
}

impl Topics {
    /// The sample's partners' topics.
    pub fn new(run: &str) -> Self {
        Self::with_partners(run, &["ads", "insights", "audiences"])
    }

    pub fn with_partners(run: &str, partners: &[&str]) -> Self {
        Self {
            input: format!("{run}.events"),
            dead_letter: format!("{run}.dlq"),
            partners: partners
                .iter()
                .map(|p| (p.to_string(), format!("{run}.partner.{p}")))
                .collect(),
        }
    }

    /// Every topic with its partitions: the input's `partitions`, 3 for the others.
    pub fn all(&self, partitions: i32) -> Vec<(&str, i32)> {
        let mut v = vec![
            (self.input.as_str(), partitions),
            (self.dead_letter.as_str(), 3),
        ];
        v.extend(self.partners.iter().map(|(_, t)| (t.as_str(), 3)));
        v
    }

    /// Every topic's name.
    pub fn names(&self) -> Vec<&str> {
        self.all(0).into_iter().map(|(name, _)| name).collect()
    }

    pub fn partner(&self, name: &str) -> Option<&str> {
        self.partners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
    }
}

/// `pixelpipe-loadgen` sending to `topic` for `run`, its log in the work
/// directory as `log`; the caller adds what to send and where its summary
/// goes.
pub fn loadgen(env: &Env, topic: &str, run: &str, log: &str) -> anyhow::Result<Command> {
    let mut command = Command::new(env.bin_dir.join("pixelpipe-loadgen"));
    command
        .args([
            "--bootstrap-servers",
            &env.kafka.bootstrap_servers,
            "--topic",
            topic,
            "--run-id",
            run,
        ])
        .stderr(std::fs::File::create(env.work_dir.join(log))?)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    Ok(command)
}

/// The error for a load generator that exited with `status`.
pub fn loadgen_failed(env: &Env, status: ExitStatus, log: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "the load generator failed ({status}); see {}",
        env.work_dir.join(log).display()
    )
}

pub async fn kubectl(env: &Env, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", &env.kubeconfig)
        .output()
        .await
        .context("running kubectl (is it on PATH? tests/env/kube.sh start writes kube.env)")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "kubectl {} failed: {}{}",
            args.join(" "),
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// `kubectl apply -k manifests/`, and waits until the CRD is served.
pub async fn apply_manifests(env: &Env) -> anyhow::Result<()> {
    let manifests = env.repo.join("manifests").display().to_string();
    kubectl(env, &["apply", "-k", &manifests]).await?;
    // Polled, not `kubectl wait`: that fails outright ("accessor error:
    // <nil>") when it reads the CRD before the API server wrote a condition.
    let established = r#"jsonpath={.status.conditions[?(@.type=="Established")].status}"#;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        // Before the first condition the filter itself fails: not yet, too.
        let status = kubectl(
            env,
            &["get", "crd/pixelpipelines.pixelpipe.dev", "-o", established],
        )
        .await;
        if status.is_ok_and(|s| s == "True") {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("the PixelPipeline CRD was not established within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The sample PixelPipeline as `name` in `namespace`, pointed at the local
/// broker (as its pods reach it) and `topics` (partners without a topic there are dropped), its
/// consumer group named after the run.
pub fn pipeline(
    env: &Env,
    namespace: &str,
    name: &str,
    topics: &Topics,
    run: &str,
) -> anyhow::Result<PixelPipeline> {
    let sample = env.repo.join("manifests/samples/storefront.yaml");
    let text = std::fs::read_to_string(&sample)
        .with_context(|| format!("reading {}", sample.display()))?;
    let mut pp: PixelPipeline = pixelpipe_crds::yaml::from_str(&text)?;
    pp.metadata.name = Some(name.to_string());
    pp.metadata.namespace = Some(namespace.to_string());
    let s = &mut pp.spec;
    s.kafka.bootstrap_servers = env.pod_bootstrap().to_string();
    s.kafka.input_topic = topics.input.clone();
    s.kafka.dead_letter_topic = topics.dead_letter.clone();
    s.kafka.consumer_group = Some(run.to_string());
    s.partners.retain(|p| topics.partner(&p.name).is_some());
    for p in &mut s.partners {
        p.topic = topics.partner(&p.name).unwrap_or_default().to_string();
    }
    // Region rules of partners left out go with them.
    for rule in &mut s.privacy.region_rules {
        if let Some(names) = &mut rule.partners {
            names.retain(|n| topics.partner(n).is_some());
        }
    }
    s.privacy
        .region_rules
        .retain(|r| r.partners.as_ref().is_none_or(|n| !n.is_empty()));
    Ok(pp)
}

/// Applies `pp` with kubectl, as a user would.
pub async fn apply(env: &Env, pp: &PixelPipeline) -> anyhow::Result<()> {
    let name = pp.metadata.name.clone().unwrap_or_default();
    let file = env.work_dir.join(format!("{name}.pixelpipeline.yaml"));
    std::fs::create_dir_all(&env.work_dir)?;
    std::fs::write(&file, pixelpipe_crds::yaml::to_string(pp)?)?;
    kubectl(env, &["apply", "-f", &file.display().to_string()]).await?;
    Ok(())
}

/// Deletes a pipeline and its children. The children go by name too, so
/// nothing waits on the garbage collector.
pub async fn remove(env: &Env, namespace: &str, name: &str) -> anyhow::Result<()> {
    let worker = format!("{name}-worker");
    let delete = |kind: &'static str, object: String| {
        let args = ["delete", "-n", namespace, kind, "--ignore-not-found"];
        async move {
            let mut args = args.to_vec();
            args.insert(4, &object);
            kubectl(env, &args).await
        }
    };
    delete("pixelpipeline", name.to_string()).await?;
    for kind in [
        "deployment",
        "configmap",
        "serviceaccount",
        "role",
        "rolebinding",
    ] {
        delete(kind, worker.clone()).await?;
    }
    Ok(())
}

/// A runner in the background: the namespace's Deployments as processes.
#[derive(Debug)]
pub struct Stand {
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<u32>>,
    pub pods: tokio::sync::watch::Receiver<Vec<PodInfo>>,
}

/// What a stand runs with, besides the environment.
#[derive(Debug, Clone, Default)]
pub struct StandConfig {
    pub namespace: String,
    /// Extra environment for every worker: (variable, value).
    pub worker_env: Vec<(String, String)>,
    /// The node's room for pods (operator included), changeable while it runs.
    pub max_pods: Option<Arc<AtomicUsize>>,
}

impl Stand {
    pub fn start(env: &Env, config: StandConfig, stop: &CancellationToken) -> Self {
        let runner = Runner::new(
            env.client.clone(),
            runner::Config {
                namespace: config.namespace.clone(),
                bin_dir: env.bin_dir.clone(),
                work_dir: env.work_dir.join(format!("runner-{}", config.namespace)),
                kubeconfig: env.kubeconfig.clone(),
                extra_env: config
                    .worker_env
                    .into_iter()
                    .map(|(k, v)| ("pixelpipe-worker".to_string(), k, v))
                    .collect(),
                interval: Duration::from_millis(500),
                max_pods: config.max_pods,
            },
        );
        let pods = runner.view();
        let stop = stop.child_token();
        let task = tokio::spawn(runner.run(stop.clone()));
        Self { stop, task, pods }
    }

    /// Stops every process; returns how many had to be restarted.
    pub async fn stop(self) -> anyhow::Result<u32> {
        self.stop.cancel();
        self.task.await.context("the runner panicked")?
    }
}
