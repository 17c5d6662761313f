//! Autoscaling against the real broker and API server: the operator reads the
//! lag and the exact oldest-event age from Kafka, grows pools under a backlog
//! with an Event and a reason in the status, and in DryRun only reports.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Operator, client, create, events, eventually, install_crd, namespace, sample};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use pixelpipe_crds::reasons::EventReason;
use pixelpipe_crds::{AutoscalingMode, PixelPipeline, SloState};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(40);
const EVENTS: i64 = 20_000;

fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP")
        .expect("KAFKA_BOOTSTRAP is not set: this test needs a real broker (tests/run.sh)")
}

/// A topic of 4 partitions holding `EVENTS` messages nobody consumed, the
/// first stamped `first_ms`.
async fn backlog(topic: &str, first_ms: i64) {
    topic_of(topic).await;
    produce_spread(topic, 0, EVENTS, first_ms, &producer());
}

fn pipeline(ns: &str, topic: &str, mode: AutoscalingMode) -> PixelPipeline {
    let mut pp = sample(ns);
    pp.spec.kafka.bootstrap_servers = bootstrap();
    pp.spec.kafka.input_topic = topic.to_string();
    pp.spec.kafka.dead_letter_topic = format!("{topic}.dlq");
    pp.spec.kafka.consumer_group = Some(format!("{topic}.group"));
    pp.spec.autoscaling.mode = mode;
    pp.spec.autoscaling.observation_interval_seconds = 1;
    pp.spec.slo.max_event_age_seconds = 900;
    pp
}

/// The Deployment's replica counts as this test saw them.
struct Seen {
    last: i32,
    peak: i32,
    last_up: Instant,
    first_down: Option<Instant>,
}

impl Default for Seen {
    fn default() -> Self {
        Self {
            last: 1,
            peak: 1,
            last_up: Instant::now(),
            first_down: None,
        }
    }
}

impl Seen {
    fn record(&mut self, n: i32) {
        if n > self.last && self.first_down.is_none() {
            self.last_up = Instant::now();
        }
        if n < self.last && self.first_down.is_none() {
            self.first_down = Some(Instant::now());
        }
        self.peak = self.peak.max(n);
        self.last = n;
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn seconds(age: &str) -> f64 {
    let (m, s) = age
        .trim_end_matches('s')
        .split_once('m')
        .unwrap_or(("0", age.trim_end_matches('s')));
    m.parse::<f64>().unwrap_or(0.0) * 60.0 + s.parse::<f64>().unwrap_or(f64::NAN)
}

#[tokio::test]
async fn a_backlog_is_measured_exactly_and_grows_the_pools() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "autoscale").await;
    let topic = format!("{ns}.events");
    // The oldest event is five minutes old.
    let first_ms = now_ms() - 300_000;
    backlog(&topic, first_ms).await;
    create(&client, &pipeline(&ns, &topic, AutoscalingMode::Enabled)).await;
    let _op = Operator::start(&ns, "only");
    let api: Api<PixelPipeline> = Api::namespaced(client.clone(), &ns);

    let pp = eventually(
        "the status shows the backlog and the grown pools",
        WAIT,
        || async {
            let pp = api.get("storefront").await.ok()?;
            let s = pp.status.as_ref()?;
            (s.lag == Some(EVENTS) && s.pool_summary.as_deref() == Some("16/16/16/32"))
                .then_some(pp)
        },
    )
    .await;
    let status = pp.status.clone().expect("status");
    let reported = seconds(status.oldest_event_age.as_deref().expect("age"));
    let truth = (now_ms() - first_ms) as f64 / 1000.0;
    assert!(
        (reported - truth).abs() <= 3.0,
        "reported {reported} s, the first message is {truth} s old"
    );
    assert_eq!(status.slo_state, Some(SloState::Met));
    let decision = status.last_decision.expect("a decision");
    assert!(
        decision.contains("pools to their maximum")
            && decision.contains("pools 2/2/2/2 -> 16/16/16/32"),
        "{decision}"
    );
    let lag_observed = status
        .conditions
        .iter()
        .find(|c| c.type_ == "LagObserved")
        .expect("LagObserved");
    assert_eq!(lag_observed.status, "True");
    let evs = eventually("a scale Event", WAIT, || async {
        let evs = events(&client, &ns).await;
        evs.iter()
            .any(|e| e.0 == EventReason::ScaledUp.as_str())
            .then_some(evs)
    })
    .await;
    assert!(
        evs.iter()
            .any(|e| e.0 == EventReason::ScaledUp.as_str() && e.1.contains("16/16/16/32")),
        "{evs:?}"
    );
}

#[tokio::test]
async fn dry_run_reports_a_recommendation_and_changes_nothing() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "dryrun").await;
    let topic = format!("{ns}.events");
    backlog(&topic, now_ms() - 60_000).await;
    create(&client, &pipeline(&ns, &topic, AutoscalingMode::DryRun)).await;
    let _op = Operator::start(&ns, "only");
    let api: Api<PixelPipeline> = Api::namespaced(client.clone(), &ns);
    let pp = eventually("a recommendation in the status", WAIT, || async {
        let pp = api.get("storefront").await.ok()?;
        pp.status.as_ref()?.last_decision.is_some().then_some(pp)
    })
    .await;
    let status = pp.status.expect("status");
    assert!(
        status
            .last_decision
            .as_deref()
            .unwrap_or_default()
            .starts_with("DryRun, not applied"),
        "{:?}",
        status.last_decision
    );
    assert_eq!(
        status.pool_summary.as_deref(),
        Some("2/2/2/2"),
        "DryRun changed the pools"
    );
    assert_eq!(status.lag, Some(EVENTS));
    assert!(
        events(&client, &ns)
            .await
            .iter()
            .any(|e| e.0 == "Recommendation")
    );
    assert!(
        !events(&client, &ns)
            .await
            .iter()
            .any(|e| e.0 == EventReason::ScaledUp.as_str())
    );
}

#[tokio::test]
async fn an_unreachable_broker_is_a_condition_and_an_event_not_a_scale() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "nokafka").await;
    let mut pp = pipeline(&ns, "nowhere.events", AutoscalingMode::Enabled);
    // Nothing listens on port 1.
    pp.spec.kafka.bootstrap_servers = "127.0.0.1:1".into();
    create(&client, &pp).await;
    let _op = Operator::start(&ns, "only");
    let api: Api<PixelPipeline> = Api::namespaced(client.clone(), &ns);
    let pp = eventually("LagObserved is False", WAIT, || async {
        let pp = api.get("storefront").await.ok()?;
        let c = pp
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "LagObserved")?
            .clone();
        (c.status == "False").then_some(pp)
    })
    .await;
    let status = pp.status.expect("status");
    assert_eq!(status.pool_summary.as_deref(), Some("2/2/2/2"));
    assert!(status.last_decision.is_none(), "scaled on no data");
    eventually("a KafkaUnreachable Event", WAIT, || async {
        events(&client, &ns)
            .await
            .iter()
            .any(|e| e.0 == "KafkaUnreachable")
            .then_some(())
    })
    .await;
}

/// Commits `offsets[p]` for `group` on every partition, as a worker would.
fn commit(consumer: &BaseConsumer, topic: &str, offsets: &[i64]) {
    let mut tpl = TopicPartitionList::new();
    for (p, &o) in offsets.iter().enumerate() {
        tpl.add_partition_offset(topic, p as i32, Offset::Offset(o))
            .expect("offset");
    }
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
}

fn group_client(group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

/// Messages round-robin over 4 partitions, message `i` stamped `first_ms + i`.
fn produce_spread(
    topic: &str,
    from: i64,
    to: i64,
    first_ms: i64,
    producer: &ThreadedProducer<DefaultProducerContext>,
) {
    for i in from..to {
        let key = i.to_string();
        let mut record = BaseRecord::<String, str>::to(topic)
            .partition((i % 4) as i32)
            .key(&key)
            .payload("{}")
            .timestamp(first_ms + i);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");
}

fn producer() -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

async fn topic_of(topic: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("admin");
    admin
        .create_topics(
            &[NewTopic::new(topic, 4, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topic");
}

/// (total lag, committed offsets per partition) as Kafka's own tool prints them.
fn kafka_tool_lag(group: &str) -> (i64, Vec<i64>) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/env/kafka.sh");
    let out = std::process::Command::new("bash")
        .args([script, "lag", group])
        .output()
        .expect("kafka.sh lag");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lag = 0;
    let mut committed = vec![0; 4];
    for line in text.lines().filter(|l| l.starts_with(group)) {
        // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...
        let cols: Vec<&str> = line.split_whitespace().collect();
        let p: usize = cols[2].parse().expect("partition");
        committed[p] = cols[3].parse().expect("current offset");
        lag += cols[5].parse::<i64>().expect("lag");
    }
    (lag, committed)
}

#[tokio::test]
async fn lag_and_oldest_age_match_kafka_and_its_consumer_group_tool() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "exact").await;
    let topic = format!("{ns}.events");
    let group = format!("{topic}.group");
    topic_of(&topic).await;
    let first_ms = now_ms() - 120_000;
    produce_spread(&topic, 0, EVENTS, first_ms, &producer());
    // The workers got through the first 1000 messages of each partition.
    commit(&group_client(&group), &topic, &[1_000; 4]);
    let mut pp = pipeline(&ns, &topic, AutoscalingMode::DryRun);
    pp.spec.kafka.consumer_group = Some(group.clone());
    create(&client, &pp).await;
    let _op = Operator::start(&ns, "only");
    let api: Api<PixelPipeline> = Api::namespaced(client.clone(), &ns);
    let (status, read_at) = eventually("the status shows the lag", WAIT, || async {
        let s = api.get("storefront").await.ok()?.status?;
        (s.lag == Some(EVENTS - 4_000)).then_some((s, now_ms()))
    })
    .await;
    // The oldest unprocessed message is offset 1000 of partition 0: message 4000.
    let truth = (read_at - (first_ms + 4_000)) as f64 / 1000.0;
    let reported = seconds(status.oldest_event_age.as_deref().expect("age"));
    let (tool_lag, tool_committed) = kafka_tool_lag(&group);
    assert_eq!(tool_committed, vec![1_000; 4]);
    assert_eq!(
        status.lag,
        Some(tool_lag),
        "the operator and kafka-consumer-groups disagree"
    );
    // Observed at most one interval (1 s) before it was read, in whole seconds.
    assert!(
        reported <= truth + 0.5 && reported >= truth - 2.5,
        "reported {reported} s, truth {truth} s when read (interval 1 s)"
    );
}

#[tokio::test]
async fn replicas_follow_a_backlog_up_and_come_down_after_the_stabilization_window() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "replicas").await;
    let topic = format!("{ns}.events");
    let group = format!("{topic}.group");
    topic_of(&topic).await;
    let mut pp = pipeline(&ns, &topic, AutoscalingMode::Enabled);
    pp.spec.kafka.consumer_group = Some(group.clone());
    pp.spec.replicas.max = 8;
    // Pools already at their maximum: replicas are the only knob left.
    for stage in [
        &mut pp.spec.stages.parse,
        &mut pp.spec.stages.validate,
        &mut pp.spec.stages.augment,
        &mut pp.spec.stages.produce,
    ] {
        stage.workers = stage.max_workers;
    }
    pp.spec.autoscaling.pod_start_seconds = 0;
    pp.spec.autoscaling.rebalance_seconds = 0;
    pp.spec.autoscaling.scale_down_stabilization_seconds = 8;
    create(&client, &pp).await;
    let _op = Operator::start(&ns, "only");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let api: Api<PixelPipeline> = Api::namespaced(client.clone(), &ns);

    // A stand-in worker group: processes 400 events/s per replica of the
    // Deployment by committing offsets, while 1000 events/s arrive.
    let replicas = Arc::new(AtomicI32::new(1));
    let producing = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let first_ms = now_ms();
    let producer_thread = {
        let (topic, producing) = (topic.clone(), producing.clone());
        std::thread::spawn(move || {
            let p = producer();
            let mut sent = 0;
            let start = Instant::now();
            while producing.load(Ordering::Relaxed) {
                let due = (start.elapsed().as_secs_f64() * 1_000.0) as i64;
                produce_spread(&topic, sent, due, first_ms, &p);
                sent = due;
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let worker_thread = {
        let (topic, group, replicas, stop) =
            (topic.clone(), group.clone(), replicas.clone(), stop.clone());
        std::thread::spawn(move || {
            let c = group_client(&group);
            let mut done = [0f64; 4];
            while !stop.load(Ordering::Relaxed) {
                let step = 400.0 * f64::from(replicas.load(Ordering::Relaxed)) * 0.2 / 4.0;
                for (p, d) in done.iter_mut().enumerate() {
                    let (_, high) = c
                        .fetch_watermarks(&topic, p as i32, Duration::from_secs(5))
                        .unwrap_or((0, 0));
                    *d = (*d + step).min(high as f64);
                }
                commit(&c, &topic, &done.map(|d| d as i64));
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    // Every replica count seen, so the window is measured from the last
    // scale-up (where the stabilization window starts), not from when this
    // test happened to see the backlog at zero.
    let seen = std::sync::Mutex::new(Seen::default());
    let poll = || async {
        let d = deployments.get_opt("storefront-worker").await.ok()??;
        let n = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        replicas.store(n.max(1), Ordering::Relaxed);
        seen.lock().ok()?.record(n);
        Some(n)
    };
    eventually(
        "replicas grow with the backlog",
        Duration::from_secs(60),
        || async { poll().await.filter(|n| *n >= 3) },
    )
    .await;
    let events_now = events(&client, &ns).await;
    let scaled_up = events_now
        .iter()
        .find(|e| e.0 == EventReason::ScaledUp.as_str())
        .expect("a ScaledUp Event");
    assert!(scaled_up.1.contains("replicas 1 -> "), "{scaled_up:?}");
    // The operator resizes the Deployment before it writes the status.
    eventually(
        "the status gives the scale-up's reason",
        Duration::from_secs(10),
        || async {
            poll().await;
            let s = api.get("storefront").await.ok()?.status?;
            s.last_decision?.contains("above capacity").then_some(())
        },
    )
    .await;

    // Traffic stops; the workers catch up; replicas come down, but not before the window.
    producing.store(false, Ordering::Relaxed);
    producer_thread.join().expect("producer");
    eventually("replicas come down", Duration::from_secs(90), || async {
        poll().await;
        seen.lock().ok()?.first_down
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    worker_thread.join().expect("worker");
    let seen = seen.into_inner().expect("seen");
    let waited = seen.first_down.expect("down") - seen.last_up;
    println!(
        "peak {} replicas; scaled down {:.1} s after the last scale-up (window 8 s)",
        seen.peak,
        waited.as_secs_f64()
    );
    // 2 s of slack for this test's polling under a loaded machine.
    assert!(
        waited >= Duration::from_secs(6),
        "scaled down {waited:?} after the last scale-up, inside the 8 s window"
    );
    assert!(
        events(&client, &ns)
            .await
            .iter()
            .any(|e| e.0 == "ScaledDown")
    );
}
