//! `pixelpipe-loadgen`: produces realistic storefront events to a topic at a
//! target rate or count, and prints a JSON summary of what it sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use pixelpipe_crds::worker::parse_option;
use pixelpipe_loadgen::topics::ensure_topics;
use pixelpipe_loadgen::{Generator, Kind, Mix, Schedule};
use pixelpipe_runtime::KafkaSettings;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

/// Produces storefront events for Pixelpipe.
#[derive(Debug, Parser)]
#[command(name = "pixelpipe-loadgen", version)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, env = "PIXELPIPE_BOOTSTRAP_SERVERS")]
    bootstrap_servers: String,
    /// Topic to produce to.
    #[arg(long, env = "PIXELPIPE_INPUT_TOPIC")]
    topic: String,
    /// Messages to send; with --rate, the run stops at whichever comes first.
    #[arg(long)]
    count: Option<u64>,
    /// Messages per second; unlimited when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds to run at --rate.
    #[arg(long)]
    duration_seconds: Option<f64>,
    /// Rates over time instead of --rate and --duration-seconds: phases of
    /// SECONDS@EVENTS_PER_SECOND, e.g. 60@1000,120@3000,120@1000.
    #[arg(long, conflicts_with_all = ["rate", "duration_seconds"])]
    schedule: Option<Schedule>,
    /// Fraction of events from customers who granted no consent.
    #[arg(long, default_value_t = 0.1)]
    no_consent_share: f64,
    /// Fraction of malformed messages.
    #[arg(long, default_value_t = 0.01)]
    malformed_share: f64,
    /// Approximate size of a valid event in bytes.
    #[arg(long, default_value_t = 1024)]
    event_bytes: usize,
    /// Random seed; the same seed sends the same events.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Prefix of every event id; defaults to one derived from the clock.
    #[arg(long)]
    run_id: Option<String>,
    /// Create the topic with this many partitions if it does not exist.
    #[arg(long)]
    create_partitions: Option<i32>,
    /// Extra librdkafka property, key=value; repeatable.
    #[arg(long = "kafka-option", value_parser = parse_option)]
    kafka_options: Vec<(String, String)>,
}

#[derive(Debug, Default)]
struct Acks {
    ok: AtomicU64,
    failed: AtomicU64,
}

#[derive(Debug)]
struct Counting(Arc<Acks>);
impl ClientContext for Counting {}
impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        let c = if r.is_ok() {
            &self.0.ok
        } else {
            &self.0.failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let schedule = match (&args.schedule, args.rate, args.duration_seconds) {
        (Some(s), _, _) => Some(s.clone()),
        (None, Some(rate), Some(seconds)) => Some(Schedule::constant(seconds, rate)),
        (None, Some(rate), None) => Some(Schedule::constant(f64::INFINITY, rate)),
        (None, None, _) => None,
    };
    if args.count.is_none() && args.duration_seconds.is_none() && args.schedule.is_none() {
        bail!("give --count, --duration-seconds, --schedule, or a combination");
    }
    let settings = KafkaSettings {
        bootstrap_servers: args.bootstrap_servers.clone(),
        options: args.kafka_options.clone(),
        ..KafkaSettings::default()
    };
    if let Some(p) = args.create_partitions {
        ensure_topics(&settings, &[(&args.topic, p)])
            .await
            .context("creating the topic")?;
    }
    let acks = Arc::new(Acks::default());
    let producer: ThreadedProducer<Counting> = settings
        .client("pixelpipe-loadgen", |c| {
            c.set("linger.ms", "20")
                .set("compression.type", "lz4")
                .set("batch.size", "1000000")
                .set("queue.buffering.max.kbytes", "262144");
        })
        .create_with_context(Counting(acks.clone()))?;
    let run_id = args.run_id.clone().unwrap_or_else(|| {
        format!(
            "r{}",
            jiff::Timestamp::now().as_millisecond() % 1_000_000_000
        )
    });
    let mut generator = Generator::new(Mix {
        seed: args.seed,
        run_id,
        no_consent_share: args.no_consent_share,
        malformed_share: args.malformed_share,
        event_bytes: args.event_bytes,
    });
    let limit = args.count.unwrap_or(u64::MAX);
    let until = args
        .duration_seconds
        .or(args.schedule.as_ref().map(Schedule::seconds))
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    let started = Instant::now();
    let (mut sent, mut valid, mut no_consent, mut malformed) = (0u64, 0u64, 0u64, 0u64);
    let mut last_report = Instant::now();
    while sent < limit && until.is_none_or(|u| Instant::now() < u) {
        if let Some(schedule) = &schedule
            && sent >= schedule.due(started.elapsed().as_secs_f64())
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let g = generator.next_message();
        match g.kind {
            Kind::Valid => valid += 1,
            Kind::NoConsent => no_consent += 1,
            Kind::Malformed(_) => malformed += 1,
        }
        let mut record = BaseRecord::to(&args.topic)
            .key(g.id.as_bytes())
            .payload(g.payload.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(e).context("producing"),
            }
        }
        sent += 1;
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "loadgen: {sent} sent, {} acknowledged",
                acks.ok.load(Ordering::Relaxed)
            );
            last_report = Instant::now();
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .context("flushing")?;
    let seconds = started.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "sent": sent,
        "acknowledged": acks.ok.load(Ordering::Relaxed),
        "failed": acks.failed.load(Ordering::Relaxed),
        "valid": valid,
        "noConsent": no_consent,
        "malformed": malformed,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "eventsPerSecond": (sent as f64 / seconds).round(),
    });
    println!("{summary}");
    if acks.failed.load(Ordering::Relaxed) > 0 {
        bail!("some messages were not acknowledged");
    }
    Ok(())
}
