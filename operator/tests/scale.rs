//! Many pipelines: 1,000 PixelPipelines (`PIXELPIPE_SCALE_PIPELINES`) against
//! the test API server and broker, reached through two bootstrap addresses,
//! which the operator tells apart as two clusters. The baseline is the same
//! operator with 10 pipelines, measured in the same run: going to 1,000, its
//! Kafka clients, broker connections and threads may grow with the clusters'
//! client pools, never with the pipelines, and every pipeline is observed
//! within two observation intervals. Prints the numbers docs/benchmarks.md
//! records.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Operator, client, create, install_crd, namespace, sample};
use futures::StreamExt;
use pixelpipe_crds::PixelPipeline;
use pixelpipe_testkit::kafka::{bootstrap, producer, topics};
use pixelpipe_testkit::usage::Usage;
use rdkafka::producer::{BaseRecord, Producer};

/// The pipelines' observation interval: twice the CRD's default. Each
/// observation writes the status (its ages change), and 1,000 pipelines at
/// 10 s ask the test API server for 100 status writes a second, about what it
/// manages on this 2-core machine beside the broker, etcd, the node and the
/// operator (88 to 93 a second measured, then the queue only grows). The
/// operator's share is what this test measures; at 20 s the API server is not
/// the limit.
const INTERVAL: Duration = Duration::from_secs(20);
const TOPICS: usize = 10;
const BASELINE: usize = 10;
/// The operator's default pool: Kafka clients per cluster and credentials.
const POOL: usize = 2;
/// Threads one librdkafka client runs at most here: main, background,
/// internal, and one per broker handle (bootstrap, learned, coordinator).
const THREADS_PER_CLIENT: i64 = 8;

fn pipelines() -> usize {
    std::env::var("PIXELPIPE_SCALE_PIPELINES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}

/// The broker's address two ways: two clusters to the operator, one broker.
fn clusters() -> [String; 2] {
    let main = bootstrap();
    let port = main.rsplit(':').next().expect("host:port").to_string();
    let other = if main.starts_with("127.0.0.1") {
        format!("localhost:{port}")
    } else {
        format!("127.0.0.1:{port}")
    };
    [main, other]
}

fn broker_port() -> u16 {
    bootstrap()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the broker's port")
}

/// Input topics of 6 partitions, each with a few events, so observations
/// read heads too.
fn input_topics(prefix: &str) -> Vec<String> {
    let names: Vec<String> = (0..TOPICS).map(|i| format!("{prefix}.in{i}")).collect();
    let specs: Vec<(&str, i32)> = names.iter().map(|n| (n.as_str(), 6)).collect();
    topics(&specs);
    let p = producer();
    for topic in &names {
        for i in 0..60 {
            let key = i.to_string();
            let record = BaseRecord::to(topic).key(&key).payload("{}");
            p.send(record).map_err(|(e, _)| e).expect("queued");
        }
    }
    p.flush(Duration::from_secs(30)).expect("flushed");
    names
}

fn pipeline(ns: &str, i: usize, topics: &[String], clusters: &[String; 2]) -> PixelPipeline {
    let mut pp = sample(ns);
    pp.metadata.name = Some(format!("p{i:04}"));
    pp.spec.kafka.bootstrap_servers = clusters[i % 2].clone();
    pp.spec.kafka.input_topic = topics[i % topics.len()].clone();
    pp.spec.autoscaling.observation_interval_seconds = INTERVAL.as_secs() as i32;
    pp
}

/// Each pipeline's observations so far, from the operator's metrics.
fn observations(op: &Operator, ns: &str) -> HashMap<String, f64> {
    let Some((200, text)) = op.get("/metrics") else {
        return HashMap::new();
    };
    let prefix =
        format!("pixelpipe_operator_pipeline_observations_total{{namespace=\"{ns}\",pipeline=\"");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (name, value) = rest.split_once("\"} ")?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Waits until `n` pipelines have been observed at least once; returns when.
fn all_observed(op: &Operator, ns: &str, n: usize, within: Duration) -> Instant {
    op.wait_until(&format!("all {n} pipelines are observed"), within, || {
        observations(op, ns).values().filter(|&&c| c >= 1.0).count() >= n
    });
    Instant::now()
}

async fn create_all(client: &kube::Client, pps: Vec<PixelPipeline>) {
    futures::stream::iter(pps)
        .for_each_concurrent(16, |pp| async move {
            create(client, &pp).await;
        })
        .await;
}

#[tokio::test]
async fn a_thousand_pipelines_share_a_client_pool_per_cluster_and_are_all_observed() {
    let n = pipelines().max(BASELINE * 2);
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "scale").await;
    let prefix = ns.clone();
    let topics = tokio::task::spawn_blocking(move || input_topics(&prefix))
        .await
        .expect("topics");
    let clusters = clusters();
    let op = Operator::start(&ns, "only");
    op.wait_until("it leads", Duration::from_secs(30), || op.is_leader());
    let port = broker_port();
    let idle = Usage::of(op.pid(), port);

    let all: Vec<PixelPipeline> = (0..n)
        .map(|i| pipeline(&ns, i, &topics, &clusters))
        .collect();
    let (first, rest) = all.split_at(BASELINE);
    create_all(&client, first.to_vec()).await;
    all_observed(&op, &ns, BASELINE, INTERVAL * 6);
    std::thread::sleep(INTERVAL);
    let few = Usage::of(op.pid(), port);

    let started = Instant::now();
    create_all(&client, rest.to_vec()).await;
    let created = started.elapsed();
    // First observations wait for each pipeline's first reconcile (six
    // children, twelve API calls). The claim is the steady state below; this
    // bound only keeps a stuck operator from hanging the suite.
    let observed = all_observed(&op, &ns, n, Duration::from_secs(300)).duration_since(started);

    // Steady state: every pipeline observed again within two intervals.
    let before = (observations(&op, &ns), Usage::of(op.pid(), port));
    std::thread::sleep(INTERVAL * 2);
    let after = (observations(&op, &ns), Usage::of(op.pid(), port));
    let stale: Vec<&String> = before
        .0
        .iter()
        .filter(|(name, c)| after.0.get(*name).is_none_or(|a| a <= c))
        .map(|(name, _)| name)
        .collect();
    let many = after.1;
    let cpu = (many.cpu_seconds - before.1.cpu_seconds) / (INTERVAL * 2).as_secs_f64();
    let clients = op.metric("pixelpipe_operator_kafka_clients", "");

    println!(
        "scale: {n} pipelines on 2 clusters (one broker, two bootstrap addresses), interval {} s",
        INTERVAL.as_secs()
    );
    println!("| pipelines | Kafka clients | broker connections | threads | open files | RSS MiB |");
    for (count, u, c) in [
        (0, idle, 0.0),
        (BASELINE, few, f64::NAN),
        (n, many, clients),
    ] {
        let c = if c.is_nan() {
            "-".to_string()
        } else {
            c.to_string()
        };
        println!(
            "| {count} | {c} | {} | {} | {} | {:.1} |",
            u.connections, u.threads, u.fds, u.rss_mib
        );
    }
    println!(
        "created {n} in {:.1} s; all observed {:.1} s after the first creation; steady CPU {:.1}% of a core; {} not observed within two intervals",
        created.as_secs_f64(),
        observed.as_secs_f64(),
        cpu * 100.0,
        stale.len()
    );

    assert!(
        stale.is_empty(),
        "every pipeline observed within two intervals; not: {stale:?}"
    );
    let bound = 2 * POOL;
    assert!(
        clients <= bound as f64,
        "{clients} Kafka clients for 2 clusters, at most {bound}"
    );
    assert!(
        many.connections <= 3 * bound,
        "{} broker connections for {bound} clients",
        many.connections
    );
    assert!(
        many.threads <= few.threads + bound as i64 * THREADS_PER_CLIENT,
        "threads grew from {} to {} with the pipelines",
        few.threads,
        many.threads
    );
    // A thousand pipelines and six thousand children would slow every test
    // after this one on the shared API server.
    drop(op);
    kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
        .delete(&ns, &Default::default())
        .await
        .expect("namespace deleted");
}
