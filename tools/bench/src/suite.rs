//! The benchmark: preload an input topic, run each design as its own process
//! over it, and measure from outside: throughput and event age from the
//! partner records' Kafka timestamps, CPU from /proc/<pid>/stat, peak RSS
//! from /proc/<pid>/status. Every run also checks that each design delivered
//! exactly the (event, partner) pairs the input calls for.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pixelpipe_crds::evidence::{EVIDENCE_PATH, WorkerEvidence};
use pixelpipe_crds::worker::WorkerArgs;
use pixelpipe_crds::{PerStage, PipelineFile};
use pixelpipe_loadgen::ledger;
use pixelpipe_loadgen::{Generator, Kind, Mix};
use pixelpipe_runtime::KafkaSettings;
use pixelpipe_runtime::http::Http;

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::process::{Child, Command};

use crate::cpu::{CpuClock, CpuTrace};
use crate::designs::{OUTPUTS_HEADER, Outputs};
use crate::payload::PayloadLength;
use crate::pools::Window;
use crate::rounds::{self, Design, Spread};

pub(crate) const PIPELINE: &str = include_str!("../pipeline.yaml");

/// Settings every design runs with, from tuning (docs/benchmarks.md): deeper
/// stage channels and bigger batches than the worker's defaults.
pub const TUNED: [&str; 2] = ["--queue-capacity=16", "--batch-max-events=500"];
const PARTNERS: [&str; 3] = ["insights", "ads", "audiences"];

/// What to measure.
#[derive(Debug, Clone)]
pub struct Plan {
    pub kafka: KafkaSettings,
    pub smoke: bool,
    pub runs: usize,
    /// Input events of the main table (1 KB each).
    pub events: usize,
    pub pools: Vec<usize>,
    pub partitions: Vec<i32>,
    /// Event sizes, bytes; each run moves about the same number of bytes.
    pub sizes: Vec<usize>,
    pub backlogs: Vec<usize>,
    /// Extra flags for every design under test.
    pub extra: Vec<String>,
    /// Stop after the designs table.
    pub designs_only: bool,
    /// Jobs in flight for the worker; by default twice its largest pool.
    pub max_in_flight_jobs: Option<usize>,
    /// The broker's process, when it shares this machine's cores.
    pub broker_pid: Option<u32>,
}

impl Plan {
    pub fn full(bootstrap: String, runs: usize, events: usize) -> Self {
        Self {
            kafka: settings(bootstrap),
            smoke: false,
            runs: runs.max(1),
            events,
            pools: vec![1, 4, 15, 50],
            partitions: vec![1, 6, 24],
            sizes: vec![256, 1024, 4096],
            backlogs: vec![10_000, 1_000_000],
            extra: TUNED.map(String::from).to_vec(),
            designs_only: false,
            max_in_flight_jobs: None,
            broker_pid: None,
        }
    }

    pub fn smoke(bootstrap: String) -> Self {
        Self {
            kafka: settings(bootstrap),
            smoke: true,
            runs: 1,
            events: 4_000,
            pools: vec![1, 4],
            partitions: vec![1, 6],
            sizes: vec![256, 1024],
            backlogs: vec![2_000, 8_000],
            extra: TUNED.map(String::from).to_vec(),
            designs_only: false,
            max_in_flight_jobs: None,
            broker_pid: None,
        }
    }
}

fn settings(bootstrap: String) -> KafkaSettings {
    KafkaSettings {
        bootstrap_servers: bootstrap,
        ..KafkaSettings::default()
    }
}

/// Workers per stage.
pub type Pools = PerStage<usize>;

/// `4` when every stage has 4 workers, else `2/2/2/4`.
pub fn pools_label(pools: Pools) -> String {
    if pools.values().all(|&n| n == pools.parse) {
        pools.parse.to_string()
    } else {
        pools.to_string()
    }
}

/// One design under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Pass-through of as many bytes as the partner payload: the ceiling.
    Ceiling,
    /// Pass-through of the input's own bytes: less I/O than the pipeline's.
    Forward,
    /// The worker with these pools.
    Pixelpipe(Pools),
    /// The same in exactly-once mode (Kafka transactions).
    ExactlyOnce(Pools),
    /// A task per batch per stage, no bounds.
    Unbounded,
}

impl Variant {
    pub(crate) fn label(self) -> String {
        match self {
            Variant::Ceiling => "ceiling (pass-through)".into(),
            Variant::Forward => "forward (the input's bytes)".into(),
            Variant::Pixelpipe(p) => format!("Pixelpipe, pools {}", pools_label(p)),
            Variant::ExactlyOnce(p) => {
                format!("Pixelpipe exactly-once, pools {}", pools_label(p))
            }
            Variant::Unbounded => "unbounded (task per batch)".into(),
        }
    }
}

/// A preloaded input topic.
#[derive(Debug)]
pub(crate) struct Input {
    topic: String,
    partitions: i32,
    events: usize,
    /// (event, partner) pairs the pipeline must deliver.
    deliveries: usize,
}

/// What one run measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Measurement {
    pub events_per_second: f64,
    pub cpu_us_per_event: f64,
    pub p50_age: f64,
    pub p99_age: f64,
    pub peak_rss_mib: f64,
    /// Mean bytes of a partner message's value.
    pub output_bytes: f64,
    /// The broker's CPU per event over the same window; 0 when the broker
    /// is not a process on this machine. On two shared cores it sets
    /// events/s as much as the design's own CPU does.
    pub broker_cpu_us_per_event: f64,
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub(crate) fn medians(ms: &[Measurement]) -> Measurement {
    let m = |f: fn(&Measurement) -> f64| median(ms.iter().map(f).collect());
    Measurement {
        events_per_second: m(|x| x.events_per_second),
        cpu_us_per_event: m(|x| x.cpu_us_per_event),
        p50_age: m(|x| x.p50_age),
        p99_age: m(|x| x.p99_age),
        peak_rss_mib: m(|x| x.peak_rss_mib),
        output_bytes: m(|x| x.output_bytes),
        broker_cpu_us_per_event: m(|x| x.broker_cpu_us_per_event),
    }
}

fn unique(prefix: &str) -> String {
    format!(
        "bench-{prefix}-{}-{}",
        std::process::id(),
        now_ms() % 10_000_000
    )
}

fn bin_dir() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?
        .parent()
        .context("no binary directory")?
        .to_path_buf())
}

async fn create_topics(kafka: &KafkaSettings, topics: &[(&str, i32)]) -> anyhow::Result<()> {
    pixelpipe_loadgen::topics::ensure_topics(kafka, topics)
        .await
        .context("creating topics")
}

/// Best effort: a topic left behind costs disk, not a result.
async fn delete_topics(kafka: &KafkaSettings, topics: &[&str]) {
    let _ = pixelpipe_loadgen::topics::delete_topics(kafka, topics).await;
}

/// Preloads the benchmark's own input (1 KB events, 6 partitions, the fanout
/// header) for a run outside the suite, such as tools/bench/profile.sh's:
/// the input topic's name.
pub async fn preload_input(bootstrap: String, events: usize) -> anyhow::Result<String> {
    Ok(preload(&settings(bootstrap), events, 1024, 6).await?.topic)
}

/// Deletes `topics` (a run outside the suite cleaning up after itself).
pub async fn delete_topics_at(bootstrap: String, topics: &[&str]) {
    delete_topics(&settings(bootstrap), topics).await;
}

/// Produces `events` storefront events of about `size` bytes, 5 % without
/// consent, each with the number of partners it goes to and the length of
/// its partner payload in a header.
async fn preload(
    kafka: &KafkaSettings,
    events: usize,
    size: usize,
    partitions: i32,
) -> anyhow::Result<Input> {
    let topic = unique("in");
    create_topics(kafka, &[(&topic, partitions)]).await?;
    let kafka = kafka.clone();
    let t = topic.clone();
    let deliveries = tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
        let producer: ThreadedProducer<DefaultProducerContext> = kafka
            .client("pixelpipe-bench", |c| {
                c.set("linger.ms", "20")
                    .set("batch.size", "1000000")
                    .set("compression.type", "lz4")
                    .set("queue.buffering.max.kbytes", "262144");
            })
            .create()?;
        let mut generator = Generator::new(Mix {
            seed: 11,
            run_id: t.clone(),
            no_consent_share: 0.05,
            malformed_share: 0.0,
            event_bytes: size,
        });
        let lengths = PayloadLength::new(PipelineFile::parse(PIPELINE)?);
        let mut deliveries = 0;
        for _ in 0..events {
            let g = generator.next_message();
            let c = g.consent;
            let fanout = if g.kind == Kind::Valid {
                usize::from(c.analytics)
                    + usize::from(c.marketing)
                    + usize::from(g.name == "checkout_completed" && c.marketing && c.sale_of_data)
            } else {
                0
            };
            deliveries += fanout;
            let value = Outputs {
                count: fanout,
                bytes: lengths.of(&g.payload, now_ms()).unwrap_or(0),
            }
            .header_value();
            let headers = OwnedHeaders::new().insert(Header {
                key: OUTPUTS_HEADER,
                value: Some(value.as_bytes()),
            });
            let mut record = BaseRecord::to(&t)
                .key(g.id.as_bytes())
                .payload(g.payload.as_slice())
                .headers(headers);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        record = back;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(300))?;
        Ok(deliveries)
    })
    .await??;
    Ok(Input {
        topic,
        partitions,
        events,
        deliveries,
    })
}

fn proc_peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn committed(consumer: &BaseConsumer, input: &Input) -> anyhow::Result<i64> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..input.partitions {
        tpl.add_partition(&input.topic, p);
    }
    let offsets = consumer.committed_offsets(tpl, Duration::from_secs(5))?;
    Ok(offsets
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum())
}

/// What one run of a design gave.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub m: Measurement,
    /// Seconds each stage spent on batches, per input event, in microseconds.
    pub stages: HashMap<String, f64>,
    /// The worker's evidence over the middle of the run, as the operator
    /// would read it.
    pub evidence: Window,
}

/// Runs `variant` over `input` and measures it.
pub(crate) async fn measure(plan: &Plan, input: &Input, variant: Variant) -> anyhow::Result<Run> {
    // The broker's writes (the preload, the last run's outputs) reach the disk
    // 30 s after they are made, in kernel threads on the same two cores:
    // flushed now, they do not land inside this run's window.
    tokio::task::spawn_blocking(nix::unistd::sync).await?;
    let run = unique("out");
    let partner_topics: Vec<String> = PARTNERS.iter().map(|p| format!("{run}.{p}")).collect();
    let dead_letter = format!("{run}.dlq");
    let mut topics: Vec<(&str, i32)> = partner_topics.iter().map(|t| (t.as_str(), 6)).collect();
    topics.push((&dead_letter, 1));
    create_topics(&plan.kafka, &topics).await?;
    let mut config = PIPELINE.to_string();
    for p in PARTNERS {
        config = config.replace(&format!("topic: {p}\n"), &format!("topic: {run}.{p}\n"));
    }
    let config_file = std::env::temp_dir().join(format!("{run}.yaml"));
    std::fs::write(&config_file, config)?;
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let group = run.clone();
    let pools = match variant {
        Variant::Pixelpipe(p) | Variant::ExactlyOnce(p) => p,
        Variant::Ceiling | Variant::Forward | Variant::Unbounded => PerStage::splat(4),
    };
    let bins = bin_dir()?;
    let mut cmd = match variant {
        Variant::Pixelpipe(_) => Command::new(bins.join("pixelpipe-worker")),
        Variant::ExactlyOnce(_) => {
            let mut c = Command::new(bins.join("pixelpipe-worker"));
            c.args(["--exactly-once", "--transactional-id", &run]);
            c
        }
        Variant::Ceiling | Variant::Forward | Variant::Unbounded => {
            let mut c = Command::new(bins.join("pixelpipe-bench"));
            let design = match variant {
                Variant::Ceiling => "pass-through",
                Variant::Forward => "forward",
                _ => "unbounded",
            };
            c.args(["design", "--design", design]);
            c
        }
    };
    let pools_text = pools.to_string();
    // More workers than jobs in flight would idle: the in-flight bound grows
    // with the largest pool unless the plan sets it.
    let largest = pools.values().copied().max().unwrap_or(1);
    let in_flight = plan
        .max_in_flight_jobs
        .unwrap_or_else(|| WorkerArgs::in_flight_for(i32::try_from(largest).unwrap_or(i32::MAX)))
        .to_string();
    cmd.args([
        "--bootstrap-servers",
        &plan.kafka.bootstrap_servers,
        "--input-topic",
        &input.topic,
        "--group",
        &group,
        "--dead-letter-topic",
        &dead_letter,
        "--config",
        &config_file.display().to_string(),
        "--admin-addr",
        &format!("127.0.0.1:{admin_port}"),
        "--pools",
        &pools_text,
        "--max-in-flight-jobs",
        &in_flight,
    ])
    .args(&plan.extra)
    .env("RUST_LOG", "warn")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(
        std::env::temp_dir().join(format!("{run}.log")),
    )?)
    .kill_on_drop(true);
    let mut child: Child = cmd.spawn().context("starting the design under test")?;
    let pid = child.id().context("no pid")?;
    // Reads the group's committed offsets without joining it; one client per
    // run, so the polling adds no connections during the measurement.
    let group_reader: BaseConsumer =
        pixelpipe_worker::clients::consumer(&plan.kafka, &group).create()?;
    let clock = CpuClock::of(pid).context("no CPU clock for the design under test")?;
    let broker_clock = plan.broker_pid.and_then(CpuClock::of);
    let mut cpu = CpuTrace::default();
    let mut broker_cpu = CpuTrace::default();
    let started = Instant::now();
    let timeout = Duration::from_secs(if plan.smoke { 120 } else { 900 });
    let mut last_check = Instant::now();
    let is_worker = matches!(variant, Variant::Pixelpipe(_) | Variant::ExactlyOnce(_));
    // One client for the run's polls: one connection, not one per poll.
    let http = Http::default();
    let mut window = Window::new(input.events as u64);
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Some(seconds) = clock.seconds() {
            cpu.push(now_ms(), seconds);
        }
        if let Some(seconds) = broker_clock.and_then(CpuClock::seconds) {
            broker_cpu.push(now_ms(), seconds);
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "{} exited early ({status}); see {}",
                variant.label(),
                std::env::temp_dir().join(format!("{run}.log")).display()
            );
        }
        if started.elapsed() > timeout {
            bail!(
                "{} did not finish {} events within {timeout:?}",
                variant.label(),
                input.events
            );
        }
        if last_check.elapsed() > Duration::from_millis(500) {
            last_check = Instant::now();
            let done = committed(&group_reader, input)?;
            if done >= input.events as i64 {
                break;
            }
            if is_worker && let Some(e) = evidence(&http, admin_port).await {
                window.add(e);
            }
        }
    }
    let peak_rss_kib = proc_peak_rss_kib(pid).unwrap_or(0);
    let stages = if is_worker {
        stage_seconds(&http, admin_port).await
    } else {
        HashMap::new()
    };
    let _ = child.kill().await;

    // In exactly-once mode the input offsets and the outputs commit in one
    // transaction, but the coordinator writes its commit marker to each
    // partition separately: the offsets can be visible to the check above
    // a moment before the last outputs are to a read-committed reader.
    let deadline = Instant::now() + Duration::from_secs(30);
    let Deliveries {
        firsts,
        records,
        bytes,
    } = loop {
        let d = first_deliveries(&plan.kafka, &partner_topics).await?;
        if d.firsts.len() >= input.deliveries || Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut all: Vec<&str> = partner_topics.iter().map(String::as_str).collect();
    all.push(&dead_letter);
    delete_topics(&plan.kafka, &all).await;
    let _ = std::fs::remove_file(&config_file);
    if firsts.len() != input.deliveries {
        bail!(
            "{} delivered {} distinct (event, partner) pairs, the input calls for {}",
            variant.label(),
            firsts.len(),
            input.deliveries
        );
    }
    let (first, last) = (
        firsts.iter().copied().min().unwrap_or(0),
        firsts.iter().copied().max().unwrap_or(0),
    );
    let mut ages: Vec<f64> = firsts
        .iter()
        .map(|&t| (t - first) as f64 / 1000.0)
        .collect();
    ages.sort_by(f64::total_cmp);
    let pct = |p: usize| {
        ages.get(ages.len().saturating_sub(1) * p / 100)
            .copied()
            .unwrap_or(0.0)
    };
    // From just before the first delivery: the first batch's work precedes it.
    let cpu_seconds = cpu.between(first - 100, last);
    let broker_seconds = broker_cpu.between(first - 100, last);
    let seconds = ((last - first) as f64 / 1000.0).max(0.001);
    let per_event_stage = stages
        .into_iter()
        .map(|(k, v)| (k, v * 1e6 / input.events as f64))
        .collect();
    Ok(Run {
        m: Measurement {
            events_per_second: input.events as f64 / seconds,
            cpu_us_per_event: cpu_seconds * 1e6 / input.events as f64,
            p50_age: pct(50),
            p99_age: pct(99),
            peak_rss_mib: peak_rss_kib as f64 / 1024.0,
            output_bytes: bytes as f64 / records.max(1) as f64,
            broker_cpu_us_per_event: broker_seconds * 1e6 / input.events as f64,
        },
        stages: per_event_stage,
        evidence: window,
    })
}

/// The worker's evidence report, if it answers.
async fn evidence(http: &Http, port: u16) -> Option<WorkerEvidence> {
    let url = format!("http://127.0.0.1:{port}{EVIDENCE_PATH}");
    match http.get(&url, Duration::from_secs(2), 1 << 20).await {
        Ok((200, body)) => serde_json::from_slice(&body).ok(),
        _ => None,
    }
}

/// What the partner topics hold after a run.
#[derive(Debug, Default)]
struct Deliveries {
    /// When each distinct (event, partner) pair first reached its topic.
    firsts: Vec<i64>,
    /// The records, duplicates included, and the bytes of their values.
    records: u64,
    bytes: u64,
}

/// The partner topics as a read-committed reader sees them now.
async fn first_deliveries(kafka: &KafkaSettings, topics: &[String]) -> anyhow::Result<Deliveries> {
    let (kafka, topics) = (kafka.clone(), topics.to_vec());
    tokio::task::spawn_blocking(move || -> anyhow::Result<Deliveries> {
        let mut out = Deliveries::default();
        for t in &topics {
            for seen in ledger::read(&kafka, t)?.values() {
                out.firsts.push(seen.first_ms);
                out.records += u64::from(seen.copies);
                out.bytes += seen.value_bytes;
            }
        }
        Ok(out)
    })
    .await?
}

/// Seconds the worker's stages spent on batches, from its metrics.
async fn stage_seconds(http: &Http, port: u16) -> HashMap<String, f64> {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let text = match http.get(&url, Duration::from_secs(5), 1 << 20).await {
        Ok((200, body)) => String::from_utf8_lossy(&body).into_owned(),
        _ => String::new(),
    };
    text.lines()
        .filter(|l| l.starts_with("pixelpipe_batch_duration_seconds_sum{"))
        .filter_map(|l| {
            let stage = l.split("stage=\"").nth(1)?.split('"').next()?.to_string();
            let v: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((stage, v))
        })
        .collect()
}

async fn repeat(
    plan: &Plan,
    input: &Input,
    v: Variant,
) -> anyhow::Result<(Measurement, HashMap<String, f64>)> {
    let mut ms = Vec::new();
    let mut stages = HashMap::new();
    for i in 0..plan.runs {
        let Run { m, stages: s, .. } = measure(plan, input, v).await?;
        eprintln!(
            "  {:<28} run {}: {:>8.0} events/s, {:>5.2} us/event, p99 {:>5.2} s, {:>6.1} MiB",
            v.label(),
            i + 1,
            m.events_per_second,
            m.cpu_us_per_event,
            m.p99_age,
            m.peak_rss_mib
        );
        ms.push(m);
        stages = s;
    }
    Ok((medians(&ms), stages))
}

/// A designs-table row; the throughput and CPU ratios are the rounds'.
fn row(out: &mut String, d: &Design, ceiling: &Measurement) {
    let m = &d.median;
    let _ = writeln!(
        out,
        "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {:.0} | {} | {} | {:.2}x | {:.2}x | {:.2}x |",
        d.variant.label(),
        m.events_per_second,
        m.cpu_us_per_event,
        m.p50_age,
        m.p99_age,
        m.peak_rss_mib,
        m.output_bytes,
        d.throughput,
        d.cpu,
        m.p50_age / ceiling.p50_age.max(1e-9),
        m.p99_age / ceiling.p99_age.max(1e-9),
        m.peak_rss_mib / ceiling.peak_rss_mib.max(1e-9),
    );
}

const HEADER: &str = "| design | input events/s | CPU us/event | p50 age s | p99 age s | peak RSS MiB | bytes per output | events/s vs ceiling | CPU vs ceiling | p50 vs ceiling | p99 vs ceiling | RSS vs ceiling |\n| --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: |";

/// The ceiling has to send what the worker sends, or it is a ceiling for
/// less I/O: their bytes per partner message within 1 %.
pub(crate) fn same_bytes(ceiling: &Measurement, worker: &Measurement) -> anyhow::Result<()> {
    let ratio = ceiling.output_bytes / worker.output_bytes.max(1e-9);
    if (ratio - 1.0).abs() > 0.01 {
        bail!(
            "the ceiling sent {:.0} bytes per partner message and the worker {:.0}: not the same I/O",
            ceiling.output_bytes,
            worker.output_bytes
        );
    }
    Ok(())
}

/// Runs the plan, prints the tables; false when a measurement failed.
pub async fn run(plan: &Plan) -> anyhow::Result<bool> {
    let started = Instant::now();
    let mut out = String::new();
    eprintln!(
        "preloading {} events of 1 KB into 6 partitions",
        plan.events
    );
    let input = preload(&plan.kafka, plan.events, 1024, 6).await?;
    let _ = writeln!(out, "Every design runs with `{}`.\n", plan.extra.join(" "));
    let _ = writeln!(
        out,
        "## Designs ({} events of ~1 KB, 6 partitions, {:.2} partner messages per event; {} interleaved rounds: medians, ratios within each round with their range)\n\n{HEADER}",
        input.events,
        input.deliveries as f64 / input.events as f64,
        plan.runs
    );
    let mut variants = vec![Variant::Ceiling, Variant::Forward];
    variants.extend(
        plan.pools
            .iter()
            .map(|&p| Variant::Pixelpipe(PerStage::splat(p))),
    );
    variants.push(Variant::Unbounded);
    let designs = rounds::interleaved(plan, &input, &variants).await?;
    let ceiling = designs[0].median;
    for d in &designs {
        row(&mut out, d, &ceiling);
    }
    if let Some(worker) = designs
        .iter()
        .find(|d| matches!(d.variant, Variant::Pixelpipe(_)))
    {
        same_bytes(&ceiling, &worker.median)?;
    }
    let unbounded = designs[designs.len() - 1].median;
    // Everything after the designs table runs at the pools the autoscaler
    // picks from the worker's evidence: what a deployment would run, and what
    // issue 16's verdict is judged at. The best pools by throughput moved
    // with the noise between 1, 15 and 50 from one run to the next.
    let mut pools_out = String::new();
    let verdict = crate::pools::section(plan, &input, &mut pools_out).await?;
    let picked = verdict.pools;
    let picked_label = pools_label(picked);
    // The price of exactly-once: the picked pools again, in transactions, in
    // rounds with at-least-once.
    let pair = rounds::interleaved(
        plan,
        &input,
        &[Variant::Pixelpipe(picked), Variant::ExactlyOnce(picked)],
    )
    .await?;
    let (at_least_once, eos) = (&pair[0], &pair[1]);
    let vs_ceiling = |f: fn(&Measurement) -> f64| {
        let r = f(&eos.median) / f(&ceiling).max(1e-9);
        Spread {
            median: r,
            min: r,
            max: r,
        }
    };
    row(
        &mut out,
        &Design {
            throughput: vs_ceiling(|m| m.events_per_second),
            cpu: vs_ceiling(|m| m.cpu_us_per_event),
            ..eos.clone()
        },
        &ceiling,
    );
    out.push_str(&pools_out);
    delete_topics(&plan.kafka, &[&input.topic]).await;
    let _ = writeln!(
        out,
        "\nExactly-once runs at {} of at-least-once throughput at pools {picked_label} (interleaved rounds; its row's ratios are of medians).",
        eos.throughput
    );
    if plan.designs_only {
        println!("{out}\n{verdict}");
        return Ok(true);
    }
    let picked_m = at_least_once.median;
    let stages = &at_least_once.stages;

    let _ = writeln!(
        out,
        "\n## Where the worker's time goes (pools {picked_label}; stage time per event, summed over the stage's workers, last run)\n\n| stage | us/event |\n| --- | --: |"
    );
    for stage in ["parse", "validate", "augment", "produce"] {
        let _ = writeln!(
            out,
            "| {stage} | {:.2} |",
            stages.get(stage).copied().unwrap_or(0.0)
        );
    }

    let _ = writeln!(
        out,
        "\n## Partitions (Pixelpipe, pools {picked_label}, 1 KB events)\n\n| partitions | input events/s | CPU us/event | p99 age s | peak RSS MiB |\n| --: | --: | --: | --: | --: |"
    );
    for &p in &plan.partitions {
        let input = preload(&plan.kafka, plan.events, 1024, p).await?;
        let (m, _) = repeat(plan, &input, Variant::Pixelpipe(picked)).await?;
        delete_topics(&plan.kafka, &[&input.topic]).await;
        let _ = writeln!(
            out,
            "| {p} | {:.0} | {:.2} | {:.2} | {:.1} |",
            m.events_per_second, m.cpu_us_per_event, m.p99_age, m.peak_rss_mib
        );
    }

    let _ = writeln!(
        out,
        "\n## Event size (Pixelpipe, pools {picked_label}, 6 partitions, the same bytes per run)\n\n| bytes | events | input events/s | MB/s | CPU us/event | peak RSS MiB |\n| --: | --: | --: | --: | --: | --: |"
    );
    for &size in &plan.sizes {
        let events = plan.events * 1024 / size;
        let input = preload(&plan.kafka, events, size, 6).await?;
        let (m, _) = repeat(plan, &input, Variant::Pixelpipe(picked)).await?;
        delete_topics(&plan.kafka, &[&input.topic]).await;
        let _ = writeln!(
            out,
            "| {size} | {events} | {:.0} | {:.1} | {:.2} | {:.1} |",
            m.events_per_second,
            m.events_per_second * size as f64 / 1e6,
            m.cpu_us_per_event,
            m.peak_rss_mib
        );
    }

    let _ = writeln!(
        out,
        "\n## Backlog (Pixelpipe, pools {picked_label}, 1 KB events, 6 partitions)\n\n| backlog events | peak RSS MiB | input events/s |\n| --: | --: | --: |"
    );
    let mut backlog_rss = Vec::new();
    for &n in &plan.backlogs {
        let input = preload(&plan.kafka, n, 1024, 6).await?;
        let (m, _) = repeat(plan, &input, Variant::Pixelpipe(picked)).await?;
        delete_topics(&plan.kafka, &[&input.topic]).await;
        let _ = writeln!(
            out,
            "| {n} | {:.1} | {:.0} |",
            m.peak_rss_mib, m.events_per_second
        );
        backlog_rss.push(m.peak_rss_mib);
    }

    if plan.smoke {
        let _ = writeln!(
            out,
            "\nSmoke mode: a tiny input in whatever build ran it; it checks that every design runs and delivers exactly what its input calls for. Targets are judged by the full run (docs/benchmarks.md)."
        );
        println!("{out}\n{verdict}");
        return Ok(true);
    }
    let _ = writeln!(out, "\n## Targets\n");
    let mut target = |ok: bool, what: String| {
        let _ = writeln!(out, "- {} {what}", if ok { "met:" } else { "MISSED:" });
    };
    let ratio = verdict.throughput_ratio;
    target(
        ratio >= 0.85,
        format!(
            "Pixelpipe at the pools its evidence picks ({picked_label}) runs at {ratio:.2}x the pass-through ceiling (target >= 0.85x)"
        ),
    );
    target(
        picked_m.cpu_us_per_event <= 8.0,
        format!(
            "worker CPU {:.2} us per input event (target <= 8)",
            picked_m.cpu_us_per_event
        ),
    );
    target(
        picked_m.peak_rss_mib <= 200.0,
        format!("peak RSS {:.1} MiB (target <= 200)", picked_m.peak_rss_mib),
    );
    if let [small, .., large] = backlog_rss[..] {
        let growth = large / small.max(1e-9);
        target(
            growth <= 1.2,
            format!(
                "peak RSS with the largest backlog is {growth:.2}x the smallest (target <= 1.2x)"
            ),
        );
    }
    target(
        picked_m.peak_rss_mib < unbounded.peak_rss_mib && picked_m.p99_age <= unbounded.p99_age,
        format!(
            "Pixelpipe vs unbounded: peak RSS {:.1} vs {:.1} MiB, p99 age {:.2} vs {:.2} s",
            picked_m.peak_rss_mib, unbounded.peak_rss_mib, picked_m.p99_age, unbounded.p99_age
        ),
    );
    target(
        picked_m.events_per_second >= unbounded.events_per_second * 0.98,
        format!(
            "Pixelpipe vs unbounded throughput: {:.0} vs {:.0} events/s (not slower)",
            picked_m.events_per_second, unbounded.events_per_second
        ),
    );
    let _ = writeln!(out, "\nTook {:.0} s.", started.elapsed().as_secs_f64());
    println!("{out}\n{verdict}");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_runs() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn peak_rss_is_read_from_proc() {
        assert!(proc_peak_rss_kib(std::process::id()).is_some_and(|k| k > 0));
    }
}
