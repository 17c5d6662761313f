//! What one worker takes in at its CPU limit on this host, measured before
//! the story so that the story's load is set against it.
//!
//! The same worker at the same CPU limit took in about 1,200 events/s on one
//! host and over 4,200 on another (docs/benchmarks.md, "The story's
//! worker"). Fixed rates cannot serve both: a slow host falls behind further
//! than six replicas make up, and a fast one absorbs the surge within the
//! SLO's slack, so the policy rightly adds nothing and the story has nothing
//! to show. So one replica drains a backlog for a few seconds first, measured
//! from the consumer group's committed offsets in Kafka (not from the
//! operator the story then judges), and the story's rates follow it.

use std::fmt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::rig::{self, Env, Topics};
use crate::story::{self, Scenario};

/// Events in the backlog: more than the fastest worker seen drains in the
/// window, so it measures a worker that never runs dry.
const BACKLOG: u64 = 250_000;
/// How long the intake is measured for, once the backlog is in Kafka.
const WINDOW: Duration = Duration::from_secs(12);

/// One replica's intake, draining a backlog at its CPU limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub worker_cpu: String,
    pub events_per_second: f64,
    /// Events committed over the window.
    pub events: i64,
    pub seconds: f64,
}

impl fmt::Display for Calibration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "one worker at {} CPU took in {:.0} events/s draining a backlog ({} events committed in {:.1} s)",
            self.worker_cpu, self.events_per_second, self.events, self.seconds
        )
    }
}

/// Runs the scenario's pipeline with one replica on a backlog of its own
/// topics, measures what it commits, and removes it all again.
pub async fn measure(
    env: &Env,
    sc: &Scenario,
    stop: &CancellationToken,
) -> anyhow::Result<Calibration> {
    let probe = Scenario {
        name: format!("{}-calibration", sc.name),
        min_replicas: 1,
        max_replicas: 1,
        ..sc.clone()
    };
    let run = format!(
        "{}{}",
        probe.name,
        jiff::Timestamp::now().as_millisecond() % 100_000_000
    );
    let topics = Topics::new(&run);
    pixelpipe_loadgen::topics::ensure_topics(&env.kafka, &topics.all(sc.partitions))
        .await
        .context("creating the calibration's topics")?;
    let measured = drain(env, &probe, &topics, &run, stop).await;
    rig::remove(env, &probe.namespace, &probe.name).await?;
    pixelpipe_loadgen::topics::delete_topics(&env.kafka, &topics.names())
        .await
        .context("deleting the calibration's topics")?;
    measured
}

async fn drain(
    env: &Env,
    probe: &Scenario,
    topics: &Topics,
    run: &str,
    stop: &CancellationToken,
) -> anyhow::Result<Calibration> {
    backlog(env, &topics.input, run).await?;
    let pipeline = story::pipeline(env, probe, topics, run)?;
    rig::apply(env, &pipeline).await?;
    story::wait_ready(env, probe, stop).await?;
    let offsets = Committed::new(env, run, &topics.input, probe.partitions)?;
    // Past the consumer group's join and the first fetches.
    let joined_by = Instant::now() + Duration::from_secs(60);
    let mut first = offsets.sum().await?;
    while first == 0 {
        if Instant::now() > joined_by {
            bail!("the calibration worker committed nothing within 60 s of being Ready");
        }
        story::sleep_or_stop(Duration::from_millis(500), stop).await?;
        first = offsets.sum().await?;
    }
    let start = Instant::now();
    let mut last = first;
    // Stops early if the backlog nears its end, so the worker never idles
    // inside the window.
    while start.elapsed() < WINDOW && (last as u64) < BACKLOG * 4 / 5 {
        story::sleep_or_stop(Duration::from_secs(1), stop).await?;
        last = offsets.sum().await?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let events = last - first;
    if events <= 0 || seconds < 3.0 {
        bail!(
            "the calibration worker committed {events} events in {seconds:.1} s; it needs a few seconds of progress to measure"
        );
    }
    Ok(Calibration {
        worker_cpu: probe.worker_cpu.clone(),
        events_per_second: events as f64 / seconds,
        events,
        seconds,
    })
}

/// `BACKLOG` events on `topic`, as fast as the load generator sends them.
async fn backlog(env: &Env, topic: &str, run: &str) -> anyhow::Result<()> {
    const LOG: &str = "calibration-loadgen.log";
    let status = rig::loadgen(env, topic, run, LOG)?
        .args(["--count", &BACKLOG.to_string()])
        .stdout(Stdio::null())
        .status()
        .await
        .context("starting pixelpipe-loadgen")?;
    if !status.success() {
        return Err(rig::loadgen_failed(env, status, LOG));
    }
    Ok(())
}

/// A consumer group's committed offsets, read from the broker without
/// joining the group.
struct Committed {
    consumer: Arc<BaseConsumer>,
    partitions: TopicPartitionList,
}

impl Committed {
    fn new(env: &Env, group: &str, topic: &str, partitions: i32) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = env
            .kafka
            .client("pixelpipe-calibration", |c| {
                c.set("group.id", group);
                c.set("enable.auto.commit", "false");
            })
            .create()?;
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition(topic, p);
        }
        Ok(Self {
            consumer: Arc::new(consumer),
            partitions: list,
        })
    }

    /// Committed offsets summed over the partitions (none counts as 0).
    async fn sum(&self) -> anyhow::Result<i64> {
        let consumer = Arc::clone(&self.consumer);
        let list = self.partitions.clone();
        let committed = tokio::task::spawn_blocking(move || {
            consumer.committed_offsets(list, Duration::from_secs(10))
        })
        .await?
        .context("reading the calibration group's committed offsets")?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .sum())
    }
}
