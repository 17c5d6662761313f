//! Broker and partner-topic faults under load, against a real broker: nothing
//! lost, nothing shared without consent, the fault reported while it lasts.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use pixelpipe_crds::worker::WorkerArgs;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;

fn kafka_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/env/kafka.sh")
}

fn kafka(cmd: &str) {
    let ok = Command::new("bash")
        .arg(kafka_script())
        .arg(cmd)
        .status()
        .expect("run kafka.sh");
    assert!(ok.success(), "tests/env/kafka.sh {cmd} failed");
}

/// Halts the shared broker; brings it back however the test ends, so one
/// failure does not take every later test with it.
struct Outage {
    up: bool,
}

impl Outage {
    fn begin() -> Self {
        kafka("halt");
        Self { up: false }
    }

    fn end(&mut self) {
        kafka("resume");
        self.up = true;
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.up {
            let _ = Command::new("bash")
                .arg(kafka_script())
                .arg("resume")
                .status();
        }
    }
}

fn delete_topic(topic: &str) {
    block_on(async {
        let admin: AdminClient<DefaultClientContext> = settings()
            .client("test", |_| {})
            .create()
            .expect("admin client");
        let results = admin
            .delete_topics(&[topic], &AdminOptions::new())
            .await
            .expect("delete topics");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("deleting {t}: {e}"));
        }
    });
}

fn readiness(w: &Worker) -> (u16, String) {
    w.get("/readyz").unwrap_or((0, String::new()))
}

/// Readiness waits for the group to take the worker in, and a worker left
/// without partitions (more workers than partitions) is still Ready: it
/// gets an empty assignment.
#[test]
fn a_worker_is_ready_once_its_group_took_it_in_even_without_partitions() {
    let p = Pipeline::create("ready", 1);
    let a = Worker::start(&p, &[]);
    a.wait_until("the first worker is Ready", Duration::from_secs(60), || {
        readiness(&a).0 == 200
    });
    let b = Worker::start(&p, &[]);
    b.wait_until(
        "the second worker, without a partition, is Ready",
        Duration::from_secs(60),
        || readiness(&b).0 == 200,
    );
    assert_eq!(readiness(&a).0, 200, "{:?}", readiness(&a));
    assert!(b.sigterm(Duration::from_secs(30)).success());
    assert!(a.sigterm(Duration::from_secs(30)).success());
}

/// A pipeline whose `ads` partner topic is missing, 20,000 events in its
/// input (10 % without consent, `malformed` of them malformed).
fn without_the_ads_topic(name: &str, malformed: f64, seed: u64) -> (Pipeline, Vec<Generated>) {
    let p = Pipeline::create(name, 6);
    delete_topic(&p.ads);
    let sent = generate(&unique(name), 20_000, 0.1, malformed, seed);
    produce(&p.input, &sent);
    (p, sent)
}

/// Creates the missing topic; waits until all `n` inputs are committed.
fn create_the_ads_topic_and_wait_for_commits(p: &Pipeline, w: &Worker, n: usize) {
    topics(&[(&p.ads, 3)]);
    w.wait_until(
        "everything is delivered and committed",
        Duration::from_secs(120),
        || committed(&p.group, &p.input, 6).values().sum::<i64>() >= n as i64,
    );
}

#[test]
fn a_missing_partner_topic_holds_intake_reports_it_and_delivers_once_created() {
    let (p, sent) = without_the_ads_topic("missing", 0.01, 31);
    let (batch, in_flight) = (200, 8);
    let w = Worker::start(
        &p,
        &[
            "--batch-max-events",
            &batch.to_string(),
            "--max-in-flight-jobs",
            &in_flight.to_string(),
            // A missing topic fails each attempt after librdkafka's metadata
            // propagation window; shorten both so the test sees several rounds.
            "--kafka-option",
            "topic.metadata.propagation.max.ms=2000",
            "--delivery-max-backoff-seconds",
            "2",
            "--delivery-attempts",
            "1000",
        ],
    );
    w.wait_until(
        "readiness reports the refused outputs",
        Duration::from_secs(60),
        || {
            let (code, body) = readiness(&w);
            code == 503 && body.contains("retried")
        },
    );
    // Several retry rounds later the worker is still up, still not ready, and
    // has read no further than its in-flight bound allows.
    std::thread::sleep(Duration::from_secs(10));
    let (code, body) = readiness(&w);
    assert_eq!(
        code, 503,
        "still not ready while the topic is missing: {body}"
    );
    let retries = w.metric("pixelpipe_delivery_retries_total");
    let consumed = w.metric("pixelpipe_events_in_total");
    let committed_during: i64 = committed(&p.group, &p.input, 6).values().sum();
    let rss_during = w.peak_rss_kib();
    assert!(retries > 0.0, "refused outputs are retried and counted");
    assert!(
        consumed <= ((in_flight + 1) * batch) as f64,
        "intake held at the in-flight bound: {consumed} events read"
    );
    assert!(
        (committed_during as f64) < consumed,
        "jobs waiting for the missing topic are not committed ({committed_during} of {consumed})"
    );

    create_the_ads_topic_and_wait_for_commits(&p, &w, sent.len());
    w.wait_until("ready again", Duration::from_secs(10), || {
        readiness(&w).0 == 200
    });
    let duplicates = assert_all_delivered(&p, &sent);
    assert_nothing_unexpected(&p, &sent);
    println!(
        "missing partner topic: {retries} retries, intake held at {consumed} events, \
         peak RSS {} MiB while blocked ({} MiB at the end); 0 lost, {duplicates} duplicates",
        rss_during / 1024,
        w.peak_rss_kib() / 1024
    );
    assert!(w.sigterm(Duration::from_secs(30)).success());
}

/// Jobs in flight, held by outputs the missing partner topic refuses, once
/// they stop growing.
fn settled_jobs_in_flight(w: &Worker) -> f64 {
    let mut last = -1.0;
    w.wait_until("jobs in flight settle", Duration::from_secs(60), || {
        std::thread::sleep(Duration::from_secs(1));
        let now = w.metric("pixelpipe_jobs_in_flight");
        std::mem::replace(&mut last, now) == now && now > 0.0
    });
    last
}

/// The limit the worker's evidence reports to the autoscaler.
fn evidence_limit(w: &Worker) -> u64 {
    let (_, body) = w.get("/evidence").expect("evidence answers");
    let v: serde_json::Value = serde_json::from_str(&body).expect("evidence is JSON");
    v["maxInFlightJobs"].as_u64().expect("maxInFlightJobs")
}

#[test]
fn jobs_in_flight_follow_the_pools_within_the_bound() {
    // Every output refused while the topic is missing: jobs keep their slots,
    // so the jobs in flight show the limit the source stops at.
    let (p, sent) = without_the_ads_topic("slots", 0.0, 41);
    let limit = |pools: &str| WorkerArgs::in_flight_at(&pools.parse().expect("pools"), 64) as f64;
    let w = Worker::start(
        &p,
        &[
            "--pools",
            "1/1/1/1",
            "--batch-max-events",
            "100",
            "--max-in-flight-jobs",
            "64",
            "--delivery-attempts",
            "1000",
        ],
    );
    assert_eq!(settled_jobs_in_flight(&w), limit("1/1/1/1"));
    assert_eq!(evidence_limit(&w) as f64, limit("1/1/1/1"));

    let (status, reply) = w
        .put(
            "/pools",
            r#"{"parse":4,"validate":4,"augment":4,"produce":4}"#,
        )
        .expect("resize answers");
    assert_eq!(status, 200, "{reply}");
    assert_eq!(settled_jobs_in_flight(&w), limit("4/4/4/4"));
    assert_eq!(evidence_limit(&w) as f64, limit("4/4/4/4"));
    // Pools past the bound's share: the bound.
    let (status, _) = w
        .put("/pools", r#"{"produce":40}"#)
        .expect("resize answers");
    assert_eq!(status, 200);
    assert_eq!(settled_jobs_in_flight(&w), 64.0);

    create_the_ads_topic_and_wait_for_commits(&p, &w, sent.len());
    assert_all_delivered(&p, &sent);
    assert_nothing_unexpected(&p, &sent);
    assert!(w.sigterm(Duration::from_secs(30)).success());
}

#[test]
fn the_broker_stopped_for_30_seconds_mid_stream_loses_nothing() {
    let p = Pipeline::create("outage", 6);
    let sent = generate(&unique("o"), 40_000, 0.1, 0.01, 37);
    produce(&p.input, &sent);
    let w = Worker::start(
        &p,
        &[
            "--max-events-per-second",
            "2000",
            "--batch-max-events",
            "200",
        ],
    );
    let mut downtimes = Vec::new();
    for round in 0..rounds(1, 3) {
        let at = (8_000 * (round + 1)) as f64;
        w.wait_until("it is mid-stream", Duration::from_secs(60), || {
            w.metric("pixelpipe_events_delivered_total") >= at
        });
        let mut outage = Outage::begin();
        let down = Instant::now();
        std::thread::sleep(Duration::from_secs(30));
        // Thirty seconds without acknowledgements is a slow case, not a
        // wedge: well inside the default liveness bound (300 s).
        let health = w.get("/healthz");
        assert_eq!(
            health.as_ref().map(|h| h.0),
            Some(200),
            "the worker rides out the outage, alive: {health:?}"
        );
        outage.end();
        downtimes.push(format!("{:.0} s", down.elapsed().as_secs_f64()));
    }
    let n = sent.len() as i64;
    w.wait_until(
        "everything is processed after the broker returns",
        Duration::from_secs(180),
        || committed(&p.group, &p.input, 6).values().sum::<i64>() >= n,
    );
    let duplicates = assert_all_delivered(&p, &sent);
    assert_nothing_unexpected(&p, &sent);
    println!(
        "broker down mid-stream ({}): the worker stayed up, 0 lost, 0 shared without consent, \
         {duplicates} duplicate partner messages",
        downtimes.join(", ")
    );
    assert!(w.sigterm(Duration::from_secs(30)).success());
}
