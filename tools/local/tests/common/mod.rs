//! Helpers shared by the end-to-end tests.

// Each test crate uses a part of it.
#![allow(dead_code)]

use std::path::PathBuf;

/// target/debug, where `cargo build --workspace` put the binaries.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .to_path_buf()
}

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pixelpipe_crds::{PixelPipeline, PixelPipelineStatus};
use pixelpipe_loadgen::{Generator, Mix};
use pixelpipe_local::rig::{self, Env, Platform, Stand, StandConfig, Topics};
use rdkafka::producer::{BaseRecord, Producer};
use tokio_util::sync::CancellationToken;

/// kubectl's columns for the node: is it Ready, and what taints it.
const NODE_COLUMNS: &str = "custom-columns=NODE:.metadata.name,\
    READY:.status.conditions[?(@.type=='Ready')].status,\
    WHY:.status.conditions[?(@.type=='Ready')].message,TAINTS:.spec.taints[*].key";

/// The namespace the manifests' operator watches (and runs in).
pub const NAMESPACE: &str = "pixelpipe-system";

/// The real API server and broker tests/run.sh started, and this build.
pub async fn env(test: &str) -> Env {
    for binary in ["pixelpipe-worker", "pixelpipe-operator"] {
        assert!(
            bin_dir().join(binary).exists(),
            "{binary} is not built in {}; run cargo build --workspace first",
            bin_dir().display()
        );
    }
    Env {
        client: pixelpipe_testkit::kube::client().await,
        kubeconfig: PathBuf::from(pixelpipe_testkit::kube::kubeconfig()),
        kafka: pixelpipe_testkit::kafka::settings(),
        repo: pixelpipe_local::story::repo_root(),
        bin_dir: bin_dir(),
        work_dir: std::env::temp_dir().join(format!("pixelpipe-{test}-{}", std::process::id())),
        platform: Platform::StandIn,
    }
}

/// The real node tests/run.sh started (its own control plane, the broker's
/// listener for pods), and this build's loader and tools.
pub async fn node_env(test: &str) -> Env {
    let client = pixelpipe_testkit::node::client().await;
    pixelpipe_testkit::node::until_schedulable(&client, Duration::from_secs(120)).await;
    Env {
        client,
        kubeconfig: PathBuf::from(pixelpipe_testkit::node::kubeconfig()),
        kafka: pixelpipe_testkit::kafka::settings(),
        repo: pixelpipe_local::story::repo_root(),
        bin_dir: bin_dir(),
        work_dir: std::env::temp_dir().join(format!("pixelpipe-{test}-{}", std::process::id())),
        platform: Platform::Node {
            pod_bootstrap: pixelpipe_testkit::node::pod_bootstrap(),
        },
    }
}

/// `kubectl ARGS` against `env`'s API server: its output, or a panic with
/// its error.
pub fn kubectl(env: &Env, args: &[&str]) -> String {
    let out = std::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", &env.kubeconfig)
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A pipeline of its own topics, run by the manifests' operator and the
/// runner (on the stand-in) or the kubelet (on the node), removed through
/// [`Fixture::finish`] or, should the test fail, when dropped.
pub struct Fixture {
    pub env: Env,
    pub name: String,
    pub topics: Topics,
    stand: Option<Stand>,
    finished: bool,
}

impl Fixture {
    /// Applies the manifests, creates `topics` (the input with 6
    /// partitions), applies `pp` (from [`rig::pipeline`], edited) and, on
    /// the stand-in, starts the runner with `config`.
    pub async fn start(env: Env, topics: Topics, pp: PixelPipeline, config: StandConfig) -> Self {
        let name = pp.metadata.name.clone().expect("name");
        rig::apply_manifests(&env).await.expect("manifests");
        rig::remove(&env, NAMESPACE, &name).await.expect("clean");
        pixelpipe_loadgen::topics::ensure_topics(&env.kafka, &topics.all(6))
            .await
            .expect("topics");
        rig::apply(&env, &pp).await.expect("pipeline");
        let stand = (env.platform == Platform::StandIn)
            .then(|| Stand::start(&env, config, &CancellationToken::new()));
        Self {
            env,
            name,
            topics,
            stand,
            finished: false,
        }
    }

    pub async fn status(&self) -> PixelPipelineStatus {
        let api: kube::Api<PixelPipeline> =
            kube::Api::namespaced(self.env.client.clone(), NAMESPACE);
        api.get(&self.name)
            .await
            .ok()
            .and_then(|pp| pp.status)
            .unwrap_or_default()
    }

    /// Polls the status every second until `ok` returns something, for at
    /// most `timeout`; panics with the last status and the Events otherwise.
    pub async fn until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut ok: impl FnMut(&PixelPipelineStatus) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status().await;
            if let Some(v) = ok(&s) {
                return v;
            }
            if Instant::now() >= deadline {
                // The Events carry each decision's reason: how it got here.
                let events = self.events().await;
                panic!(
                    "timed out after {timeout:?} waiting until {what};{} status: {s:#?}; events: {events:#?}",
                    self.describe_pods()
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The pipeline's Events: (reason, note).
    pub async fn events(&self) -> Vec<(String, String)> {
        let api: kube::Api<k8s_openapi::api::core::v1::Event> =
            kube::Api::namespaced(self.env.client.clone(), NAMESPACE);
        let on_pipeline = kube::api::ListParams::default().fields(&format!(
            "involvedObject.kind=PixelPipeline,involvedObject.name={}",
            self.name
        ));
        api.list(&on_pipeline)
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect()
    }

    /// On the node, what kubectl says of the pipeline's worker pods, the
    /// namespace's pod Events and the node: why a pod did not run or become
    /// Ready. Nothing on the stand-in.
    pub fn describe_pods(&self) -> String {
        if self.env.platform == Platform::StandIn {
            return String::new();
        }
        let selector = pixelpipe_local::node::worker_selector(&self.name);
        let run = |args: &[&str]| {
            std::process::Command::new("kubectl")
                .args(args)
                .env("KUBECONFIG", &self.env.kubeconfig)
                .output()
                .map(|o| {
                    let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                    text.push_str(&String::from_utf8_lossy(&o.stderr));
                    text
                })
                .unwrap_or_else(|e| format!("kubectl: {e}"))
        };
        let pods = run(&[
            "get", "pods", "-n", NAMESPACE, "-l", &selector, "-o", "wide",
        ]);
        let events = run(&[
            "get",
            "events",
            "-n",
            NAMESPACE,
            "--field-selector",
            "involvedObject.kind=Pod",
            "--sort-by",
            ".lastTimestamp",
        ]);
        // The namespace keeps every earlier test's pod Events: the latest.
        let lines: Vec<&str> = events.lines().collect();
        let latest = lines[lines.len().saturating_sub(20)..].join("\n");
        let node = run(&["get", "nodes", "-o", NODE_COLUMNS]);
        format!("\n{pods}\n{latest}\n{node}")
    }

    /// Stops the processes and removes the pipeline.
    pub async fn finish(mut self) {
        if let Some(stand) = self.stand.take() {
            stand.stop().await.expect("runner");
        }
        rig::remove(&self.env, NAMESPACE, &self.name)
            .await
            .expect("removed");
        self.finished = true;
        let _ = std::fs::remove_dir_all(&self.env.work_dir);
    }
}

impl Drop for Fixture {
    /// A failed test still removes its pipeline (its children go by owner
    /// references), so the tests after it find the namespace as expected.
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::process::Command::new("kubectl")
                .args(["delete", "pixelpipeline", &self.name, "-n", NAMESPACE])
                .args(["--ignore-not-found", "--wait=false"])
                .env("KUBECONFIG", &self.env.kubeconfig)
                .status();
        }
    }
}

/// Events produced in the background at a steady rate per partition, each
/// a valid storefront event from the load generator, shaped per partition.
pub struct Load {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<u64>,
}

impl Load {
    /// `per_partition` events/s to each of `partitions` partitions of
    /// `topic`; `name_of(partition)` is the event name written there.
    pub fn start(
        topic: &str,
        partitions: i32,
        per_partition: f64,
        name_of: fn(i32) -> &'static str,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (topic, flag) = (topic.to_string(), stop.clone());
        let handle = std::thread::spawn(move || {
            let producer = pixelpipe_testkit::kafka::producer();
            let mut generator = Generator::new(Mix {
                seed: 11,
                run_id: topic.clone(),
                no_consent_share: 0.0,
                malformed_share: 0.0,
                event_bytes: 1024,
            });
            let started = Instant::now();
            let mut sent = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let due = (started.elapsed().as_secs_f64() * per_partition) as u64;
                for _ in sent..due {
                    for p in 0..partitions {
                        let g = generator.next_message();
                        let payload = String::from_utf8_lossy(&g.payload).replacen(
                            &format!("\"name\":\"{}\"", g.name),
                            &format!("\"name\":\"{}\"", name_of(p)),
                            1,
                        );
                        let mut record = BaseRecord::<str, str>::to(&topic)
                            .partition(p)
                            .key(&g.id)
                            .payload(&payload);
                        while let Err((_, r)) = producer.send(record) {
                            record = r;
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                }
                sent = due.max(sent);
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = producer.flush(Duration::from_secs(30));
            sent * partitions as u64
        });
        Self { stop, handle }
    }

    /// Stops producing; returns how many events were sent.
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("load thread")
    }
}
