//! Autoscaling's view of Kafka against the real broker and API server: the
//! operator reads the lag and the exact oldest-event age, as Kafka's own tool
//! does but without transaction markers or open transactions, reports a
//! broker it cannot reach, and does not scale for worker pods that do not
//! start. Scaling with real workers is in tools/local/tests.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Operator, client, create, events, eventually, install_crd, namespace, sample};
use kube::Api;
use pixelpipe_crds::reasons::EventReason;
use pixelpipe_crds::reasons::{ConditionType, condition_holds, find_condition};
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
async fn a_backlog_without_ready_workers_is_measured_and_reported_not_scaled_for() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "autoscale").await;
    let topic = format!("{ns}.events");
    // The oldest event is five minutes old.
    let first_ms = now_ms() - 300_000;
    backlog(&topic, first_ms).await;
    let mut pp = pipeline(&ns, &topic, AutoscalingMode::Enabled);
    pp.spec.autoscaling.pod_start_seconds = 0;
    pp.spec.autoscaling.rebalance_seconds = 0;
    create(&client, &pp).await;
    let _op = Operator::start(&ns, "only");
    let api: Api<PixelPipeline> = Api::namespaced(client.clone(), &ns);

    // No worker pod runs (no kubelet here): no evidence of capacity, and a
    // pod asked for that never becomes Ready. More replicas would not start
    // either, so none are added; the status says why.
    let pp = eventually(
        "the status shows the backlog and that scaling cannot help",
        WAIT,
        || async {
            let pp = api.get("storefront").await.ok()?;
            let s = pp.status.as_ref()?;
            let scaling = find_condition(&s.conditions, ConditionType::ScalingEffective)?;
            (s.lag == Some(EVENTS) && scaling.reason == "PodsNotReady").then_some(pp)
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
    assert_eq!(
        status.replicas,
        Some(1),
        "scaled for pods that do not start"
    );
    assert!(condition_holds(
        &status.conditions,
        ConditionType::LagObserved
    ));
    assert!(condition_holds(
        &status.conditions,
        ConditionType::PartitionsHealthy
    ));
    let scaling = find_condition(&status.conditions, ConditionType::ScalingEffective).expect("set");
    assert!(
        scaling.message.contains("0 of 1 worker pods Ready"),
        "{}",
        scaling.message
    );
    eventually("one Warning Event saying so", WAIT, || async {
        let evs = events(&client, &ns).await;
        let n = evs
            .iter()
            .filter(|e| e.0 == EventReason::ScalingIneffective.as_str())
            .count();
        (n == 1).then_some(())
    })
    .await;
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

/// A transactional producer's `n` messages per partition, committed, then
/// `open` more on partition 0 in a transaction left open.
fn transactional(topic: &str, n: i64, open: i64) -> ThreadedProducer<DefaultProducerContext> {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("transactional.id", format!("{topic}.tx"))
        .create()
        .expect("producer");
    let t = Duration::from_secs(30);
    p.init_transactions(t).expect("init");
    p.begin_transaction().expect("begin");
    produce_spread(topic, 0, 4 * n, now_ms() - 10_000, &p);
    p.commit_transaction(t).expect("commit");
    p.begin_transaction().expect("begin");
    for i in 0..open {
        let key = i.to_string();
        let record = BaseRecord::<String, str>::to(topic)
            .partition(0)
            .key(&key)
            .payload("{}");
        p.send(record).map_err(|(e, _)| e).expect("send");
    }
    p.flush(t).expect("flushed");
    p
}

#[tokio::test]
async fn commit_markers_are_not_lag_and_an_open_transaction_is_not_yet() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "markers").await;
    let topic = format!("{ns}.events");
    let group = format!("{topic}.group");
    topic_of(&topic).await;
    let producer = transactional(&topic, 250, 100);
    // A worker that processed every event commits the offset after the last
    // one: the commit marker's own offset.
    commit(&group_client(&group), &topic, &[250; 4]);
    let (tool_lag, _) = kafka_tool_lag(&group);
    assert_eq!(
        tool_lag,
        4 + 100,
        "the tool counts the markers and the open transaction"
    );
    let mut pp = pipeline(&ns, &topic, AutoscalingMode::DryRun);
    pp.spec.kafka.consumer_group = Some(group.clone());
    create(&client, &pp).await;
    let _op = Operator::start(&ns, "only");
    let api: Api<PixelPipeline> = Api::namespaced(client.clone(), &ns);
    eventually("the status is observed", WAIT, || async {
        api.get("storefront")
            .await
            .ok()?
            .status?
            .lag
            .is_some()
            .then_some(())
    })
    .await;
    // Observed a few times over: markers and unreadable records stay out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = api
        .get("storefront")
        .await
        .expect("get")
        .status
        .expect("status");
    assert_eq!(
        s.lag,
        Some(0),
        "markers or an open transaction counted as lag"
    );
    assert_eq!(s.oldest_event_age.as_deref(), Some("0s"));
    // The transaction commits: its 100 events are lag now.
    producer
        .commit_transaction(Duration::from_secs(30))
        .expect("commit");
    // Its own commit marker, behind them, counts until they are processed:
    // a marker is only told from an event once it is read.
    let lag = eventually(
        "the committed transaction's events are lag",
        WAIT,
        || async {
            let s = api.get("storefront").await.ok()?.status?;
            s.lag.filter(|&l| l > 0)
        },
    )
    .await;
    assert!((100..=101).contains(&lag), "lag {lag}");
}
