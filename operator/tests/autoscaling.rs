//! Autoscaling against the real broker and API server: the operator reads the
//! lag and the exact oldest-event age from Kafka, grows pools under a backlog
//! with an Event and a reason in the status, and in DryRun only reports.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Operator, client, create, events, eventually, install_crd, namespace, sample};
use kube::Api;
use pixelpipe_crds::{AutoscalingMode, PixelPipeline};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const WAIT: Duration = Duration::from_secs(40);
const EVENTS: i64 = 20_000;

fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP")
        .expect("KAFKA_BOOTSTRAP is not set: this test needs a real broker (tests/run.sh)")
}

/// A topic of 4 partitions holding `EVENTS` messages nobody consumed, the
/// first stamped `first_ms`.
async fn backlog(topic: &str, first_ms: i64) {
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
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for i in 0..EVENTS {
        let key = i.to_string();
        let mut record = BaseRecord::<String, str>::to(topic)
            .key(&key)
            .payload("{}")
            .timestamp(first_ms + i / 10);
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
    assert_eq!(status.slo_state.as_deref(), Some("Met"));
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
        evs.iter().any(|e| e.0 == "ScaledUp").then_some(evs)
    })
    .await;
    assert!(
        evs.iter()
            .any(|e| e.0 == "ScaledUp" && e.1.contains("16/16/16/32")),
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
    assert!(!events(&client, &ns).await.iter().any(|e| e.0 == "ScaledUp"));
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
