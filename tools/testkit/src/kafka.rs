//! The real broker `tests/env/kafka.sh` starts: its address, producing,
//! reading topics back, committed offsets.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pixelpipe_loadgen::Generated;
use pixelpipe_runtime::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

pub fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| {
        panic!(
            "KAFKA_BOOTSTRAP is not set. These tests need a real broker: run \
             `tests/env/kafka.sh start && . \"$PIXELPIPE_RUN/kafka.env\"` or use tests/run.sh"
        )
    })
}

/// `tests/run.sh --long` (PIXELPIPE_LONG=1): more rounds of each fault.
pub fn rounds(ci: usize, long: usize) -> usize {
    match std::env::var("PIXELPIPE_LONG").as_deref() {
        Ok("1") => long,
        _ => ci,
    }
}

/// Client settings for the test broker.
pub fn settings() -> KafkaSettings {
    KafkaSettings {
        bootstrap_servers: bootstrap(),
        ..KafkaSettings::default()
    }
}

/// Runs a future to completion on a runtime of its own.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Creates each `(name, partitions)` topic.
pub fn topics(topics: &[(&str, i32)]) {
    block_on(pixelpipe_loadgen::topics::ensure_topics(
        &settings(),
        topics,
    ))
    .expect("create topics");
}

pub fn producer() -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.kbytes", "262144")
        .set("message.max.bytes", "16777216")
        .create()
        .expect("producer")
}

/// Produces every message (key = id) and waits for the broker to take them.
pub fn produce(topic: &str, messages: &[Generated]) {
    produce_all(topic, messages.iter().cloned());
}

/// Streams messages (key = id) into `topic` without holding them all, and
/// waits for the broker to take them.
pub fn produce_all(topic: &str, messages: impl IntoIterator<Item = Generated>) {
    let p = producer();
    for g in messages {
        let mut record = BaseRecord::to(topic)
            .key(g.id.as_bytes())
            .payload(g.payload.as_slice());
        while let Err((_, back)) = p.send(record) {
            record = back;
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    p.flush(Duration::from_secs(120)).expect("flush");
}

/// A message read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

impl Record {
    fn of(m: &rdkafka::message::BorrowedMessage<'_>) -> Self {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Self {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(text).unwrap_or_default(),
            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers: m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_string(), text(h.value.unwrap_or_default())))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// Reads a topic from the beginning until `want` records arrived and it has been
/// quiet for a second, or until `timeout`.
pub fn read_topic(topic: &str, want: usize, timeout: Duration) -> Vec<Record> {
    read_topic_isolated(topic, want, timeout, "read_committed")
}

/// [`read_topic`] at an isolation level: `read_uncommitted` also shows the
/// records of aborted transactions.
pub fn read_topic_isolated(
    topic: &str,
    want: usize,
    timeout: Duration,
    isolation: &str,
) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", crate::wait::unique("reader"))
        .set("isolation.level", isolation)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut last = Instant::now();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last = Instant::now();
                out.push(Record::of(&m));
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None if out.len() >= want && last.elapsed() > Duration::from_secs(1) => break,
            None => {}
        }
    }
    out
}

/// Keys and how often each appears.
pub fn key_counts(records: &[Record]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in records {
        *m.entry(r.key.clone()).or_insert(0) += 1;
    }
    m
}

/// Committed offsets of `group` on `topic`, per partition (absent = none).
pub fn committed(group: &str, topic: &str, partitions: i32) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    // Right after a broker restart the coordinator is still loading: retry.
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
            Ok(got) => break got,
            Err(e) if Instant::now() < deadline => {
                eprintln!("committed offsets of {group}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("committed offsets of {group}: {e}"),
        }
    };
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}
