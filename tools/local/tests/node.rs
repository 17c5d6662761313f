//! The pod template meets the real thing: on the node tests/run.sh starts
//! (kubelet, containerd, runc), the operator's worker pods run with their
//! security settings enforced by the runtime, readiness holds a worker that
//! cannot reach its brokers out of service, a rolling update and a kubelet's
//! SIGTERM under load lose nothing, and a worker that crash-loops or is
//! killed for memory shows in the PixelPipeline's conditions.

use std::collections::BTreeMap;
use std::time::Duration;

mod common;

use common::{Fixture, NAMESPACE, kubectl, node_env};
use k8s_openapi::api::core::v1::{EnvVar, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ListParams};
use pixelpipe_crds::reasons::{ConditionType, condition_holds, find_condition};
use pixelpipe_crds::{AutoscalingMode, PixelPipeline, PixelPipelineStatus};
use pixelpipe_local::node::worker_selector;
use pixelpipe_local::rig::{self, Env, StandConfig, Topics};
use pixelpipe_local::story::{self, Scenario};
use pixelpipe_testkit::wait::unique;
use tokio_util::sync::CancellationToken;

/// One worker at `cpu` and `memory`, sizes as declared (no autoscaling).
fn one_worker(env: &Env, name: &str, topics: &Topics, cpu: &str, memory: &str) -> PixelPipeline {
    let mut pp = rig::pipeline(env, NAMESPACE, name, topics, &unique(name)).expect("pipeline");
    let s = &mut pp.spec;
    s.autoscaling.mode = AutoscalingMode::Disabled;
    s.replicas.min = 1;
    s.replicas.max = 1;
    let both = BTreeMap::from([
        ("cpu".to_string(), Quantity(cpu.into())),
        ("memory".to_string(), Quantity(memory.into())),
    ]);
    s.worker.resources = Some(ResourceRequirements {
        requests: Some(both.clone()),
        limits: Some(both),
        ..ResourceRequirements::default()
    });
    pp
}

async fn worker_pods(env: &Env, name: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(env.client.clone(), NAMESPACE);
    api.list(&ListParams::default().labels(&worker_selector(name)))
        .await
        .expect("pods")
        .items
}

fn ready(s: &PixelPipelineStatus) -> bool {
    condition_holds(&s.conditions, ConditionType::Ready)
}

/// The host PID of a container's main process: the process whose cgroup
/// path names the container's ID (runc names each cgroup after it).
fn pid_of_container(container_id: &str) -> u32 {
    let id = container_id.rsplit("://").next().expect("a container ID");
    let found = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.contains(id))
        });
    found.unwrap_or_else(|| panic!("no process in the cgroup of container {id}"))
}

/// A field of /proc/PID/status, e.g. `Uid`.
fn proc_status(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A file of the process's cgroup for `controller`: v1 (hybrid, as on this
/// machine) or v2.
fn cgroup_file(pid: u32, controller: &str, file: &str) -> String {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let v1 = cgroups.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, names, path) = (f.next()?, f.next()?, f.next()?);
        names
            .split(',')
            .any(|n| n == controller)
            .then(|| format!("/sys/fs/cgroup/{controller}{path}/{file}"))
    });
    let path = v1.unwrap_or_else(|| {
        let path = cgroups
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .expect("a cgroup");
        format!("/sys/fs/cgroup{path}/{file}")
    });
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_pod_runs_as_declared_and_the_runtime_enforces_it() {
    let env = node_env("node-security").await;
    let topics = Topics::new(&unique("secure"));
    let pp = one_worker(&env, "secure", &topics, "200m", "256Mi");
    let f = Fixture::start(env, topics, pp, StandConfig::default()).await;
    f.until("the worker is Ready", Duration::from_secs(120), |s| {
        ready(s).then_some(())
    })
    .await;
    let pods = worker_pods(&f.env, &f.name).await;
    let pod = pods.first().expect("a worker pod");
    let status = pod.status.as_ref().expect("status");
    let container = &status.container_statuses.as_ref().expect("containers")[0];
    let pid = pid_of_container(container.container_id.as_deref().expect("started"));

    // The pod's and the container's security context, as the kernel sees
    // the process: user and group 65532, no capabilities, no privilege
    // escalation, the runtime's seccomp filter, a read-only root.
    assert_eq!(proc_status(pid, "Uid"), "65532 65532 65532 65532");
    assert_eq!(proc_status(pid, "Gid"), "65532 65532 65532 65532");
    assert_eq!(proc_status(pid, "CapEff"), "0000000000000000");
    assert_eq!(proc_status(pid, "CapPrm"), "0000000000000000");
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    assert_eq!(proc_status(pid, "Seccomp"), "2", "a seccomp filter");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let root = mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .expect("a root mount");
    let options = root.split(' ').nth(5).expect("mount options");
    assert!(
        options.split(',').any(|o| o == "ro"),
        "root mounted {options}"
    );

    // The limits, in the container's cgroup; the worker reads its CPU limit
    // there and reports it with its evidence.
    let quota: f64 = cgroup_file(pid, "cpu", "cpu.cfs_quota_us")
        .parse()
        .expect("quota");
    let period: f64 = cgroup_file(pid, "cpu", "cpu.cfs_period_us")
        .parse()
        .expect("period");
    assert_eq!(quota / period, 0.2, "a 200m CPU limit");
    assert_eq!(
        cgroup_file(pid, "memory", "memory.limit_in_bytes"),
        (256u64 << 20).to_string()
    );
    let ip = status.pod_ip.as_deref().expect("a pod IP");
    let (code, body) =
        pixelpipe_testkit::http::get(&format!("http://{ip}:9090/evidence")).expect("evidence");
    assert_eq!(code, 200, "{body}");
    let evidence: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(evidence["cores"], 0.2, "{body}");

    // kubectl reaches the container through the kubelet.
    let name = pod.metadata.name.as_deref().expect("name");
    let version = kubectl(
        &f.env,
        &[
            "exec",
            "-n",
            NAMESPACE,
            name,
            "--",
            "/usr/local/bin/pixelpipe-worker",
            "--version",
        ],
    );
    assert!(version.starts_with("pixelpipe-worker "), "{version}");
    let logs = kubectl(&f.env, &["logs", "-n", NAMESPACE, name]);
    assert!(logs.contains("worker running"), "{logs}");
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_reach_its_brokers_is_not_ready_until_it_can() {
    let env = node_env("node-readiness").await;
    let topics = Topics::new(&unique("unready"));
    let mut pp = one_worker(&env, "unready", &topics, "200m", "256Mi");
    let reachable = pp.spec.kafka.bootstrap_servers.clone();
    // The node's address, where nothing listens on port 1.
    let node_ip = reachable.split(':').next().expect("host").to_string();
    pp.spec.kafka.bootstrap_servers = format!("{node_ip}:1");
    let f = Fixture::start(env, topics, pp, StandConfig::default()).await;

    // The container runs, its readiness probe fails, and the pipeline says
    // its workers are unavailable.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let pods = worker_pods(&f.env, &f.name).await;
        let running = pods.iter().any(|p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.phase.as_deref() == Some("Running"))
        });
        if running {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no worker ran: {}",
            f.describe_pods()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Several probe periods (5 s) later it is still not Ready.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let pods = worker_pods(&f.env, &f.name).await;
    let conditions = pods[0]
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "False"),
        "{conditions:?}"
    );
    let s = f.status().await;
    let r = find_condition(&s.conditions, ConditionType::Ready).expect("Ready");
    assert_eq!(
        (r.status.as_str(), r.reason.as_str()),
        ("False", "WorkersUnavailable")
    );

    // Pointed at the broker, the rolled worker joins its group and is Ready.
    let patch = format!(r#"{{"spec":{{"kafka":{{"bootstrapServers":"{reachable}"}}}}}}"#);
    kubectl(
        &f.env,
        &[
            "patch",
            "-n",
            NAMESPACE,
            "pixelpipeline",
            &f.name,
            "--type",
            "merge",
            "-p",
            &patch,
        ],
    );
    f.until("the worker is Ready", Duration::from_secs(120), |s| {
        ready(s).then_some(())
    })
    .await;
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_worker_and_one_killed_for_memory_show_in_the_conditions() {
    let env = node_env("node-failing").await;

    // An environment variable the worker refuses: it exits at start, again
    // and again.
    let topics = Topics::new(&unique("looping"));
    let mut pp = one_worker(&env, "looping", &topics, "200m", "256Mi");
    pp.spec.worker.env.push(EnvVar {
        name: "PIXELPIPE_COMMIT_INTERVAL_MS".into(),
        value: Some("soon".into()),
        ..EnvVar::default()
    });
    let f = Fixture::start(env.clone(), topics, pp, StandConfig::default()).await;
    let degraded = f
        .until(
            "Degraded names the crash loop",
            Duration::from_secs(150),
            |s| {
                find_condition(&s.conditions, ConditionType::Degraded)
                    .filter(|c| c.status == "True" && c.reason == "WorkerCrashLooping")
                    .map(|c| c.message.clone())
            },
        )
        .await;
    assert!(degraded.contains("exits with code 2"), "{degraded}");
    f.finish().await;

    // A memory limit below what the worker needs to read a backlog. The
    // events wait in the input before the worker starts, so it fetches at
    // full speed: librdkafka's prefetch for six partitions and the pools'
    // batches (the benchmark's 8,000-event backlog peaks at 56 MiB). At the
    // pace of a trickle the worker fits in less, so a load that only starts
    // with it decides nothing.
    let topics = Topics::new(&unique("oom"));
    let input = topics.input.clone();
    pixelpipe_loadgen::topics::ensure_topics(&env.kafka, &topics.all(6))
        .await
        .expect("topics");
    let load = common::Load::start(&input, 6, 500.0, |_| "page_viewed");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let pp = one_worker(&env, "oom", &topics, "200m", "24Mi");
    let f = Fixture::start(env, topics, pp, StandConfig::default()).await;
    let degraded = f
        .until(
            "Degraded names the OOM kill",
            Duration::from_secs(150),
            |s| {
                find_condition(&s.conditions, ConditionType::Degraded)
                    .filter(|c| c.status == "True" && c.reason == "WorkerOOMKilled")
                    .map(|c| c.message.clone())
            },
        )
        .await;
    load.stop();
    assert!(degraded.contains("OOMKilled"), "{degraded}");
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_and_a_kubelet_sigterm_under_load_lose_nothing() {
    let env = node_env("node-disruptions").await;
    let scenario = Scenario::disruptions();
    let report = story::run(&env, &scenario, CancellationToken::new())
        .await
        .expect("the story runs");
    println!("{}", report.render());
    assert!(report.counts_reconcile(), "{:?}", report.counts);
    assert!(report.sent.sent > 50_000, "{:?}", report.sent);
    // A draining worker commits what it delivered before it leaves; what is
    // read twice is what was in flight while partitions changed hands.
    println!(
        "a rolling update and a pod deletion under load: 0 lost, {} duplicate partner messages",
        report.counts.duplicates
    );
    assert!(
        report.counts.duplicates <= 2 * 8 * 500,
        "{} duplicates: more than two in-flight windows",
        report.counts.duplicates
    );
    assert_eq!(report.restarts, 0, "no container restarted");
    story::remove(&env, &scenario).await.expect("cleaned up");
}
