//! The whole story, against a real API server, a real node and a real
//! broker: apply the manifests and a PixelPipeline with kubectl, the kubelet
//! runs the operator and the workers as containers, drive a flash sale, watch
//! the pipeline resize itself, and check every event's fate in Kafka
//! afterwards.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{EnvVar, Event, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use pixelpipe_crds::parse_age;
use pixelpipe_crds::reasons::{ConditionType, condition_holds};
use pixelpipe_crds::{AutoscalingMode, PixelPipeline, PixelPipelineSpec};
use pixelpipe_loadgen::ledger::{self, Seen};
use pixelpipe_loadgen::{Generator, Mix};
use pixelpipe_sim::chart::Point;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::calibrate;
use crate::expect::{Fate, fate};
use crate::node::worker_pods;
pub use crate::rig::Env;
use crate::rig::{self, Platform, Topics, kubectl};
use crate::summary::{Counts, Report, ScaleEvent, Sent};

/// A stretch of the load: `factor` times the steady rate for `seconds`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phase {
    pub label: &'static str,
    pub seconds: f64,
    pub factor: f64,
}

const fn phase(label: &'static str, seconds: f64, factor: f64) -> Phase {
    Phase {
        label,
        seconds,
        factor,
    }
}

/// The story's numbers. Time is compressed: the SLO, the observation
/// interval and the stabilization window are shorter than in production, and
/// each worker pod gets a small CPU limit, `worker_cpu`, so that several
/// share two cores and one is outgrown by the surge.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub namespace: String,
    pub slo_seconds: i32,
    pub interval_seconds: i32,
    pub stabilization_seconds: i32,
    pub pod_start_seconds: i32,
    pub rebalance_seconds: i32,
    pub partitions: i32,
    pub min_replicas: i32,
    pub max_replicas: i32,
    /// The worker container's CPU request and limit.
    pub worker_cpu: String,
    /// Events/s one worker takes in at `worker_cpu` (measured: see
    /// docs/benchmarks.md); the load's numbers are set against it.
    pub worker_capacity: f64,
    pub steady_rate: f64,
    /// Measure `worker_capacity` on this host first and set the load against
    /// it ([`crate::calibrate`]); otherwise the numbers above stand.
    pub calibrate: bool,
    /// Steady, a 3x surge, steady again, and the quiet of the evening after.
    pub phases: Vec<Phase>,
    /// Most seconds to wait after the load for the last events.
    pub drain_timeout: f64,
    pub seed: u64,
    /// What happens to the running pipeline, and when (seconds into the load).
    pub disruptions: Vec<(f64, Disruption)>,
}

/// Something done to the running pipeline mid-load, as its user or the
/// cluster would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disruption {
    /// A config change (a worker environment variable, through the
    /// PixelPipeline): the Deployment controller rolls every worker pod.
    RollingUpdate,
    /// One worker pod deleted: the kubelet sends SIGTERM and waits out the
    /// grace period.
    DeleteWorkerPod,
}

/// The worker pods' CPU in the story: one worker then takes in about 3,000
/// events/s, 1,200 to over 4,200 depending on the host (measured on the
/// node; docs/benchmarks.md, "The story's worker"), which is why the story
/// measures it first ([`crate::calibrate`]).
pub const WORKER_CPU: &str = "35m";

impl Scenario {
    /// The README's demo: about five minutes.
    ///
    /// The numbers follow from the policy, which spends the SLO's slack
    /// before it adds replicas. The rates are set against what one worker
    /// takes in on this host, measured first ([`Self::loaded_for`]; the
    /// rates below, for about 3,000 events/s, stand only uncalibrated): the
    /// 3x surge at twice that, so the oldest event ages half a second every
    /// second and nears the target (half the 60 s SLO) about a minute into
    /// the surge; replicas are added then, not at its first second. Steady
    /// traffic and the quiet evening fit one replica. A worker pod is Ready
    /// about ten seconds after it is created here (the container starts, the
    /// consumer group takes it in, the readiness probe's period passes).
    pub fn demo() -> Self {
        Self {
            name: "storefront".into(),
            namespace: "pixelpipe-system".into(),
            slo_seconds: 60,
            interval_seconds: 2,
            stabilization_seconds: 20,
            pod_start_seconds: 10,
            rebalance_seconds: 6,
            partitions: 6,
            min_replicas: 1,
            max_replicas: 6,
            worker_cpu: WORKER_CPU.into(),
            worker_capacity: 3_000.0,
            steady_rate: 2_000.0,
            calibrate: true,
            phases: vec![
                phase("steady", 40.0, 1.0),
                phase("SURGE", 100.0, 3.0),
                phase("steady", 80.0, 1.0),
                phase("quiet", 40.0, 0.25),
            ],
            drain_timeout: 60.0,
            seed: 7,
            disruptions: Vec::new(),
        }
    }

    /// The end-to-end test: the same story, shorter.
    pub fn test() -> Self {
        Self {
            // The demo's 100 s surge: one worker at its CPU limit takes in
            // 1,200 to 3,200 events/s depending on the host, and at the top
            // of that range a 70 s surge fits the SLO's slack (the policy
            // then rightly adds no replica), so the story had nothing to show.
            phases: vec![
                phase("steady", 20.0, 1.0),
                phase("SURGE", 100.0, 3.0),
                phase("steady", 50.0, 1.0),
                phase("quiet", 40.0, 0.25),
            ],
            ..Self::demo()
        }
    }

    /// Two workers under steady load through a rolling update and then a
    /// pod deletion; autoscaling keeps its hands off (two replicas, at most
    /// two).
    pub fn disruptions() -> Self {
        Self {
            name: "disrupted".into(),
            min_replicas: 2,
            max_replicas: 2,
            // Two replicas carry the steady 2,000/s on every host seen
            // (1,200/s each at the slowest), and nothing resizes.
            calibrate: false,
            phases: vec![phase("steady", 75.0, 1.0)],
            disruptions: vec![
                (15.0, Disruption::RollingUpdate),
                (50.0, Disruption::DeleteWorkerPod),
            ],
            ..Self::demo()
        }
    }

    /// The story's load set against `capacity`, what one worker takes in
    /// here: steady at two thirds of it, so one replica carries it with
    /// room; the 3x surge at twice it, so one replica falls behind by half
    /// a second every second and the policy must add replicas once the
    /// SLO's slack is spent, while six carry it three times over.
    pub fn loaded_for(&self, capacity: f64) -> Self {
        Self {
            worker_capacity: capacity,
            steady_rate: (capacity * 2.0 / 3.0 / 100.0).round().max(1.0) * 100.0,
            ..self.clone()
        }
    }

    /// The load generator's `--schedule`.
    pub fn schedule(&self) -> String {
        self.phases
            .iter()
            .map(|p| format!("{}@{}", p.seconds, p.factor * self.steady_rate))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn load_at(&self, t: f64) -> (&'static str, f64) {
        let mut start = 0.0;
        for p in &self.phases {
            if t < start + p.seconds {
                return (p.label, p.factor * self.steady_rate);
            }
            start += p.seconds;
        }
        ("done", 0.0)
    }

    fn describe_load(&self) -> String {
        self.phases
            .iter()
            .map(|p| {
                format!(
                    "{} {:.0}/s for {:.0} s",
                    p.label.to_lowercase(),
                    p.factor * self.steady_rate,
                    p.seconds
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub async fn run(env: &Env, sc: &Scenario, stop: CancellationToken) -> anyhow::Result<Report> {
    if env.platform == Platform::StandIn {
        bail!(
            "the story runs on a real node: start tests/env/node.sh and name its broker listener"
        );
    }
    std::fs::create_dir_all(&env.work_dir)?;
    let run_id = format!(
        "{}{}",
        sc.name,
        jiff::Timestamp::now().as_millisecond() % 100_000_000
    );

    step("applying manifests/ (namespace, CRD, RBAC, operator Deployment) with kubectl");
    rig::apply_manifests(env).await?;

    // A pipeline from an earlier run would start from that run's sizes.
    remove(env, sc).await?;

    let calibration = if sc.calibrate {
        step(&format!(
            "measuring what one worker takes in at {} CPU on this host (a backlog on topics of its own)",
            sc.worker_cpu
        ));
        let c = calibrate::measure(env, sc, &stop).await?;
        println!("        {c}");
        Some(c)
    } else {
        None
    };
    let sc = &match &calibration {
        Some(c) => sc.loaded_for(c.events_per_second),
        None => sc.clone(),
    };

    let topics = Topics::new(&run_id);
    step(&format!(
        "creating topics {}.* ({} input partitions)",
        run_id, sc.partitions
    ));
    pixelpipe_loadgen::topics::ensure_topics(&env.kafka, &topics.all(sc.partitions))
        .await
        .context("creating topics")?;

    let pipeline = pipeline(env, sc, &topics, &run_id)?;
    step(&format!(
        "applying PixelPipeline {}: SLO {} s, replicas {}..{}, observed every {} s",
        sc.name, sc.slo_seconds, pipeline.spec.replicas.min, sc.max_replicas, sc.interval_seconds
    ));
    rig::apply(env, &pipeline).await?;

    let result = drive(env, sc, &topics, &run_id, &pipeline.spec, &stop).await;
    let mut report = result?;
    report.calibration = calibration;
    report.restarts = worker_pods(&env.client, &sc.namespace, &sc.name)
        .await?
        .restarts;
    Ok(report)
}

fn step(what: &str) {
    println!("[{}] {what}", clock());
}

fn clock() -> String {
    let s = jiff::Timestamp::now().as_millisecond() / 1000 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The sample PixelPipeline, pointed at the local broker and this run's
/// topics, with the scenario's compressed timings.
pub(crate) fn pipeline(
    env: &Env,
    sc: &Scenario,
    topics: &Topics,
    run: &str,
) -> anyhow::Result<PixelPipeline> {
    let mut pp = rig::pipeline(env, &sc.namespace, &sc.name, topics, run)?;
    let s = &mut pp.spec;
    s.replicas.min = sc.min_replicas;
    s.replicas.max = sc.max_replicas;
    s.slo.max_event_age_seconds = sc.slo_seconds;
    s.autoscaling.mode = AutoscalingMode::Enabled;
    s.autoscaling.observation_interval_seconds = sc.interval_seconds;
    s.autoscaling.scale_down_stabilization_seconds = sc.stabilization_seconds;
    s.autoscaling.pod_start_seconds = sc.pod_start_seconds;
    s.autoscaling.rebalance_seconds = sc.rebalance_seconds;
    s.worker.resources = Some(worker_resources(&sc.worker_cpu));
    // Commits keep pace with the compressed observation interval.
    s.worker.env.push(EnvVar {
        name: "PIXELPIPE_COMMIT_INTERVAL_MS".into(),
        value: Some("500".into()),
        ..EnvVar::default()
    });
    Ok(pp)
}

/// A CPU request equal to the limit: the scheduler then places only what
/// the node's cores can run at that limit.
fn worker_resources(cpu: &str) -> ResourceRequirements {
    let both = |memory: &str| {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.to_string())),
            ("memory".to_string(), Quantity(memory.to_string())),
        ])
    };
    ResourceRequirements {
        requests: Some(both("128Mi")),
        limits: Some(both("256Mi")),
        ..ResourceRequirements::default()
    }
}

/// Deletes the scenario's pipeline and its children.
pub async fn remove(env: &Env, sc: &Scenario) -> anyhow::Result<()> {
    rig::remove(env, &sc.namespace, &sc.name).await
}

async fn drive(
    env: &Env,
    sc: &Scenario,
    topics: &Topics,
    run_id: &str,
    spec: &PixelPipelineSpec,
    stop: &CancellationToken,
) -> anyhow::Result<Report> {
    let pods = || worker_pods(&env.client, &sc.namespace, &sc.name);
    let api: Api<PixelPipeline> = Api::namespaced(env.client.clone(), &sc.namespace);
    step("waiting for an operator to take the Lease and the workers to be Ready");
    wait_ready(env, sc, stop).await?;
    let header = kubectl(
        env,
        &["get", "pixelpipelines", "-n", &sc.namespace, &sc.name],
    )
    .await?;

    step(&format!(
        "flash sale: {} (10% of customers without consent, 1% malformed)",
        sc.describe_load()
    ));
    const LOG: &str = "loadgen.log";
    let load_out = env.work_dir.join("loadgen.json");
    let mut load = rig::loadgen(env, &topics.input, run_id, LOG)?
        .args([
            "--schedule",
            &sc.schedule(),
            "--seed",
            &sc.seed.to_string(),
            "--no-consent-share",
            "0.1",
            "--malformed-share",
            "0.01",
        ])
        .stdout(std::fs::File::create(&load_out)?)
        .spawn()
        .context("starting pixelpipe-loadgen")?;

    let started = Instant::now();
    let t = || started.elapsed().as_secs_f64();
    let events_api: Api<Event> = Api::namespaced(env.client.clone(), &sc.namespace);
    let mut seen_events = HashSet::new();
    // Events from earlier runs are not this run's.
    for e in scale_events(&events_api, &sc.name).await? {
        seen_events.insert(e.0);
    }
    let mut points = Vec::new();
    let mut scale = Vec::new();
    let mut max_age: f64 = 0.0;
    let mut loaded = false;
    let mut load_ended = None;
    let columns = header.lines().next().unwrap_or_default().to_string();
    // `pods`: worker pods the kubelet runs and reports Ready.
    println!(
        "\n{:>6} {:>7} {:>6} {:>4}  {columns}",
        "time", "load", "ev/s", "pods"
    );
    let mut disrupted: Vec<f64> = Vec::new();
    let mut capacities: Vec<f64> = Vec::new();
    let mut at_surge: Vec<f64> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(sc.interval_seconds.max(1) as u64));
    loop {
        tokio::select! {
            _ = stop.cancelled() => bail!("interrupted"),
            _ = tick.tick() => {}
        }
        for (at, d) in &sc.disruptions {
            if !disrupted.contains(at) && t() >= *at {
                disrupted.push(*at);
                let what = disrupt(env, sc, *d, t()).await?;
                println!("        {what}");
            }
        }
        if !loaded && let Some(status) = load.try_wait()? {
            if !status.success() {
                return Err(rig::loadgen_failed(env, status, LOG));
            }
            loaded = true;
            load_ended = Some(t());
        }
        let pp = api.get(&sc.name).await?;
        let status = pp.status.clone().unwrap_or_default();
        let age = status
            .oldest_event_age
            .as_deref()
            .and_then(parse_age)
            .unwrap_or(0.0);
        max_age = max_age.max(age);
        let capacity = status.capacity_per_replica.map(|c| c as f64);
        capacities.extend(capacity);
        let pools = status.pools.unwrap_or_default();
        points.push(Point {
            t: t(),
            age,
            arrivals: status.arrival_rate.unwrap_or(0) as f64,
            processed: status.processing_rate.unwrap_or(0) as f64,
            replicas: status.replicas.unwrap_or(0),
            pool_workers: pools.parse + pools.validate + pools.augment + pools.produce,
        });
        let row = kubectl(
            env,
            &[
                "get",
                "pixelpipelines",
                "-n",
                &sc.namespace,
                &sc.name,
                "--no-headers",
            ],
        )
        .await?;
        let (phase, rate) = sc.load_at(t());
        if !loaded && rate > sc.steady_rate {
            at_surge.extend(capacity);
        }
        println!(
            "{:>5.0}s {:>7} {:>6} {:>4}  {}",
            t(),
            if loaded { "done" } else { phase },
            if loaded { 0.0 } else { rate },
            pods().await?.ready,
            row.trim_end()
        );
        for (uid, reason, message) in scale_events(&events_api, &sc.name).await? {
            if seen_events.insert(uid) {
                println!("        {reason}: {message}");
                scale.push(ScaleEvent {
                    t: t(),
                    reason,
                    message,
                });
            }
        }
        if let Some(ended) = load_ended
            && (status.lag == Some(0) || t() - ended > sc.drain_timeout)
        {
            break;
        }
    }

    step("load done and drained; reading every topic back to check each event's fate");
    let sent: Sent = serde_json::from_str(&std::fs::read_to_string(&load_out)?)
        .context("reading the load generator's summary")?;
    let counts = reconcile(env, sc, topics, run_id, spec, &sent).await?;
    let chart = env.work_dir.join("flash-sale.png");
    // A missing font is no reason to lose the summary.
    let chart = match pixelpipe_sim::chart::draw_timeline(
        &chart,
        &format!(
            "Pixelpipe on this machine: a 3x flash sale, SLO {} s (time compressed)",
            sc.slo_seconds
        ),
        f64::from(sc.slo_seconds),
        &points,
    ) {
        Ok(()) => Some(chart),
        Err(e) => {
            eprintln!("no chart: {e:#}");
            None
        }
    };
    Ok(Report {
        slo_seconds: f64::from(sc.slo_seconds),
        max_age,
        points,
        scale,
        sent,
        counts,
        chart,
        restarts: 0,
        capacity_per_replica: median(capacities).unwrap_or(sc.worker_capacity),
        capacity_at_surge: median(at_surge).unwrap_or(sc.worker_capacity),
        worker_capacity: sc.worker_capacity,
        calibration: None,
    })
}

/// The median of what the operator measured: a worker's capacity depends
/// on its load, and the floor is judged against what it did here.
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// Does `d` to the running pipeline with kubectl; says what it did.
async fn disrupt(env: &Env, sc: &Scenario, d: Disruption, t: f64) -> anyhow::Result<String> {
    let ns = sc.namespace.as_str();
    match d {
        Disruption::RollingUpdate => {
            let patch = format!(
                r#"[{{"op":"add","path":"/spec/worker/env/-","value":{{"name":"PIXELPIPE_STORY_CHANGE","value":"{t:.0}"}}}}]"#
            );
            let pipeline = format!("pixelpipeline/{}", sc.name);
            kubectl(
                env,
                &["patch", "-n", ns, &pipeline, "--type", "json", "-p", &patch],
            )
            .await?;
            Ok("config changed (a worker environment variable): the workers roll".into())
        }
        Disruption::DeleteWorkerPod => {
            let selector = crate::node::worker_selector(&sc.name);
            let names = kubectl(
                env,
                &["get", "pods", "-n", ns, "-l", &selector, "-o", "name"],
            )
            .await?;
            let pod = names
                .lines()
                .next()
                .context("no worker pod to delete")?
                .to_string();
            kubectl(env, &["delete", "-n", ns, &pod, "--wait=false"]).await?;
            Ok(format!("deleted {pod}: the kubelet sends it SIGTERM"))
        }
    }
}

/// Until the scenario's pipeline is Ready with its lag observed (3 minutes
/// at most).
pub(crate) async fn wait_ready(
    env: &Env,
    sc: &Scenario,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let api: Api<PixelPipeline> = Api::namespaced(env.client.clone(), &sc.namespace);
    let ready_by = Instant::now() + Duration::from_secs(180);
    loop {
        let status = api.get(&sc.name).await?.status.unwrap_or_default();
        if condition_holds(&status.conditions, ConditionType::Ready) && status.lag.is_some() {
            return Ok(());
        }
        if Instant::now() > ready_by {
            bail!(
                "the pipeline {} was not Ready with lag observed within 180 s: {:?}; worker pods: {}",
                sc.name,
                status.conditions,
                worker_pods(&env.client, &sc.namespace, &sc.name).await?
            );
        }
        sleep_or_stop(Duration::from_secs(1), stop).await?;
    }
}

pub(crate) async fn sleep_or_stop(d: Duration, stop: &CancellationToken) -> anyhow::Result<()> {
    tokio::select! {
        _ = stop.cancelled() => bail!("interrupted"),
        _ = tokio::time::sleep(d) => Ok(()),
    }
}

/// The pipeline's ScaledUp and ScaledDown Events: (uid, reason, message).
async fn scale_events(
    api: &Api<Event>,
    name: &str,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let list = api
        .list(&ListParams::default().fields(&format!(
            "involvedObject.kind=PixelPipeline,involvedObject.name={name}"
        )))
        .await?;
    let mut out: Vec<_> = list
        .items
        .into_iter()
        .filter(|e| matches!(e.reason.as_deref(), Some("ScaledUp" | "ScaledDown")))
        .map(|e| {
            (
                e.uid().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                e.message.clone().unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Reads every output topic and compares each event's fate with what the
/// spec says it must be.
async fn reconcile(
    env: &Env,
    sc: &Scenario,
    topics: &Topics,
    run_id: &str,
    spec: &PixelPipelineSpec,
    sent: &Sent,
) -> anyhow::Result<Counts> {
    let kafka = env.kafka.clone();
    let names: Vec<(String, String)> = topics.partners.clone();
    let input = topics.input.clone();
    let dlq = topics.dead_letter.clone();
    let (input, dead, partners) = tokio::task::spawn_blocking(move || {
        let input = ledger::read(&kafka, &input)?;
        let dead = ledger::read(&kafka, &dlq)?;
        let partners = names
            .iter()
            .map(|(n, t)| Ok((n.clone(), ledger::read(&kafka, t)?)))
            .collect::<anyhow::Result<Vec<(String, HashMap<String, Seen>)>>>()?;
        anyhow::Ok((input, dead, partners))
    })
    .await??;

    let mut c = Counts {
        consumed: input.len() as u64,
        dead_lettered: dead.len() as u64,
        partner_messages: partners
            .iter()
            .map(|(n, l)| (n.clone(), l.values().map(|s| u64::from(s.copies)).sum()))
            .collect(),
        duplicates: partners
            .iter()
            .flat_map(|(_, l)| l.values().map(|s| u64::from(s.copies - 1)))
            .sum(),
        ..Counts::default()
    };
    let mut delays = Vec::new();
    let mut generator = Generator::new(Mix {
        seed: sc.seed,
        run_id: run_id.to_string(),
        no_consent_share: 0.1,
        malformed_share: 0.01,
        event_bytes: 1024,
    });
    for _ in 0..sent.sent {
        let g = generator.next_message();
        let present: Vec<&str> = partners
            .iter()
            .filter(|(_, l)| l.contains_key(&g.id))
            .map(|(n, _)| n.as_str())
            .collect();
        if !present.is_empty() {
            c.delivered += 1;
        }
        match fate(spec, &g) {
            Fate::Delivered(want) => {
                c.expected_deliveries += want.len() as u64;
                c.missing += want
                    .iter()
                    .filter(|p| !present.contains(&p.as_str()))
                    .count() as u64;
                c.leaked += present
                    .iter()
                    .filter(|p| !want.iter().any(|w| w == *p))
                    .count() as u64;
            }
            Fate::NotShared => {
                c.expected_not_shared += 1;
                c.leaked += present.len() as u64;
                if !dead.contains_key(&g.id) && present.is_empty() {
                    c.not_shared += 1;
                }
            }
            Fate::DeadLettered => {
                c.expected_dead += 1;
                c.leaked += present.len() as u64;
                if !dead.contains_key(&g.id) {
                    c.missing += 1;
                }
            }
        }
        if let Some(arrived) = input.get(&g.id) {
            for (_, l) in &partners {
                if let Some(s) = l.get(&g.id) {
                    delays.push((s.first_ms - arrived.first_ms) as f64 / 1000.0);
                }
            }
        }
    }
    delays.sort_by(f64::total_cmp);
    c.max_delay = delays.last().copied().unwrap_or(0.0);
    c.p99_delay = delays
        .get(delays.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or(0.0);
    Ok(c)
}

/// The repository root, from this crate's location (`tools/local`) at build time.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_follows_the_phases() {
        let sc = Scenario::test();
        assert_eq!(sc.schedule(), "20@2000,100@6000,50@2000,40@500");
        assert_eq!(sc.load_at(10.0), ("steady", 2_000.0));
        assert_eq!(sc.load_at(25.0), ("SURGE", 6_000.0));
        assert_eq!(sc.load_at(209.0), ("quiet", 500.0));
        assert_eq!(sc.load_at(211.0), ("done", 0.0));
        // The surge needs a second replica; steady traffic fits in one.
        assert!(sc.steady_rate * 3.0 > sc.worker_capacity);
        assert!(sc.steady_rate * 1.25 < sc.worker_capacity);
    }

    #[test]
    fn the_load_follows_the_measured_worker() {
        // The host whose CI absorbed the fixed 6,000/s surge in one replica.
        let sc = Scenario::test().loaded_for(4_650.0);
        assert_eq!(sc.schedule(), "20@3100,100@9300,50@3100,40@775");
        assert_eq!(sc.worker_capacity, 4_650.0);
        // One replica falls behind at the surge by more than the 1.43x that
        // a 100 s surge needs to pass the 30 s target, and six carry it.
        let surge = 3.0 * sc.steady_rate;
        assert!(surge > 1.43 * sc.worker_capacity);
        assert!(surge < f64::from(sc.max_replicas) * sc.worker_capacity);
        // A slow host's numbers scale down with it.
        let slow = Scenario::test().loaded_for(1_200.0);
        assert_eq!(slow.schedule(), "20@800,100@2400,50@800,40@200");
    }
}
