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

/// The most each of `gauges` reads, sampled for three seconds.
fn most_over_three_seconds<const N: usize>(w: &Worker, gauges: [&str; N]) -> [f64; N] {
    let mut most = [0.0; N];
    for _ in 0..30 {
        for (m, g) in most.iter_mut().zip(gauges) {
            *m = w.metric(g).max(*m);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    most
}

/// A worker at pools 1/1/1/1, in jobs of 100 events with 64 in flight,
/// whose outputs for a missing topic wait longer than a test reads instead
/// of failing and freeing what they hold; `extra` flags after those.
fn start_holding_outputs(p: &Pipeline, extra: &[&str]) -> Worker {
    let mut args = vec![
        "--pools",
        "1/1/1/1",
        "--batch-max-events",
        "100",
        "--max-in-flight-jobs",
        "64",
        "--delivery-attempts",
        "1000",
        "--kafka-option",
        "topic.metadata.propagation.max.ms=90000",
    ];
    args.extend_from_slice(extra);
    Worker::start(p, &args)
}

#[test]
fn jobs_in_the_stages_follow_the_pools_and_jobs_awaiting_acks_do_not_count() {
    // The producer's queue holds a few jobs' outputs for the missing topic
    // and then refuses more: jobs handed over await acknowledgements, and
    // the produce stage holds the next, so the stages fill to their limit.
    let (p, sent) = without_the_ads_topic("stages", 0.0, 41);
    let limit = |pools: &str| WorkerArgs::jobs_in_stages(&pools.parse().expect("pools"), 64) as f64;
    let gauges = ["pixelpipe_jobs_in_stages", "pixelpipe_jobs_in_flight"];
    let w = start_holding_outputs(&p, &["--kafka-option", "queue.buffering.max.messages=500"]);
    w.wait_until("the stages fill", Duration::from_secs(60), || {
        w.metric(gauges[0]) >= limit("1/1/1/1")
    });
    let [stages, in_flight] = most_over_three_seconds(&w, gauges);
    assert_eq!(stages, limit("1/1/1/1"), "no more than the pools use");
    assert!(
        in_flight > stages && in_flight < 64.0,
        "jobs awaiting acknowledgements are in flight, not in the stages ({in_flight})"
    );

    let (status, reply) = w
        .put(
            "/pools",
            r#"{"parse":2,"validate":2,"augment":2,"produce":2}"#,
        )
        .expect("resize answers");
    assert_eq!(status, 200, "{reply}");
    w.wait_until("the stages take more", Duration::from_secs(30), || {
        w.metric(gauges[0]) >= limit("2/2/2/2")
    });
    let [wider, in_flight_wider] = most_over_three_seconds(&w, gauges);
    assert_eq!(wider, limit("2/2/2/2"), "a resize moves the limit");
    println!(
        "jobs in the stages / in flight: {stages} / {in_flight} at pools 1/1/1/1, \
         {wider} / {in_flight_wider} at 2/2/2/2"
    );

    create_the_ads_topic_and_wait_for_commits(&p, &w, sent.len());
    assert_eq!(w.metric(gauges[0]), 0.0, "nothing left in the stages");
    assert_all_delivered(&p, &sent);
    assert_nothing_unexpected(&p, &sent);
    assert!(w.sigterm(Duration::from_secs(30)).success());
}

#[test]
fn outputs_awaiting_acknowledgements_stay_within_their_bytes() {
    // The ads outputs wait for the missing topic as long as this test reads,
    // and each job keeps its outputs' room until its last acknowledgement:
    // handed-over jobs pile up until their outputs fill the room.
    let (p, sent) = without_the_ads_topic("outputs", 0.0, 43);
    let mib = 1024.0 * 1024.0;
    let stage_limit = WorkerArgs::jobs_in_stages(&"1/1/1/1".parse().expect("pools"), 64) as f64;
    let w = start_holding_outputs(&p, &["--max-unacknowledged-mib", "1"]);
    let gauges = [
        "pixelpipe_unacknowledged_output_bytes",
        "pixelpipe_jobs_in_flight",
        "pixelpipe_jobs_in_stages",
    ];
    w.wait_until("the stages fill", Duration::from_secs(60), || {
        w.metric(gauges[2]) >= stage_limit
    });
    let [bytes, in_flight, stages] = most_over_three_seconds(&w, gauges);
    println!(
        "outputs awaiting acknowledgements: {:.2} MiB at most, {in_flight} jobs in flight, \
         {stages} in the stages",
        bytes / mib
    );
    assert!(bytes <= mib && bytes > mib / 2.0, "{bytes} bytes");
    assert!(
        in_flight < 64.0 && stages == stage_limit,
        "the outputs' room, not the job bound, holds intake"
    );
    let (_, body) = w.get("/evidence").expect("evidence answers");
    let evidence: serde_json::Value = serde_json::from_str(&body).expect("evidence is JSON");
    let waited = evidence["queueFullSeconds"]
        .as_f64()
        .expect("queueFullSeconds");
    assert!(
        waited > 1.0,
        "waiting for room is waiting on delivery: {waited} s"
    );

    create_the_ads_topic_and_wait_for_commits(&p, &w, sent.len());
    assert_eq!(w.metric(gauges[0]), 0.0, "every output acknowledged");
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
