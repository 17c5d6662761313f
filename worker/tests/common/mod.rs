//! Helpers for tests against the real Kafka broker that `tests/env/kafka.sh`
//! starts (its address comes from `KAFKA_BOOTSTRAP`).
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pixelpipe_worker::kafka::KafkaSettings;
use pixelpipe_worker::loadgen::{Generated, Generator, Kind, Mix};
use pixelpipe_worker::topics::ensure_topics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
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

pub fn settings() -> KafkaSettings {
    KafkaSettings {
        bootstrap_servers: bootstrap(),
        options: Vec::new(),
        ..KafkaSettings::default()
    }
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}",
        nanos % 10_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Topics and the pipeline file of one test pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub input: String,
    pub dlq: String,
    pub ads: String,
    pub insights: String,
    pub group: String,
    pub config_path: PathBuf,
    pub dir: PathBuf,
}

/// The events the `ads` partner wants.
pub const ADS_EVENTS: [&str; 3] = [
    "checkout_completed",
    "product_added_to_cart",
    "checkout_started",
];

impl Pipeline {
    /// Creates the topics and writes the pipeline file.
    pub fn create(name: &str, partitions: i32) -> Self {
        let base = unique(name);
        let dir = std::env::temp_dir().join(&base);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let p = Self {
            input: format!("{base}.events"),
            dlq: format!("{base}.dlq"),
            ads: format!("{base}.ads"),
            insights: format!("{base}.insights"),
            group: format!("{base}.group"),
            config_path: dir.join("pipeline.yaml"),
            dir,
        };
        let yaml = format!(
            "partners:\n  - name: ads\n    topic: {}\n    events: [{}]\n    requiredConsent: [marketing]\n  \
             - name: insights\n    topic: {}\n    events: ['*']\n    requiredConsent: [analytics]\n\
             privacy:\n  regionRules:\n    - regions: [US-CA]\n      require: [saleOfData]\n      partners: [ads]\n",
            p.ads,
            ADS_EVENTS.join(", "),
            p.insights
        );
        std::fs::write(&p.config_path, yaml).expect("write pipeline file");
        block_on(ensure_topics(
            &settings(),
            &[
                (&p.input, partitions),
                (&p.dlq, 1),
                (&p.ads, 3),
                (&p.insights, 3),
            ],
        ))
        .expect("create topics");
        p
    }
}

/// Independent statement of the routing rules in the pipeline file above.
pub fn expected_partners(g: &Generated) -> (bool, bool) {
    match g.kind {
        Kind::Malformed(_) => (false, false),
        _ => {
            let c = g.consent;
            let ads = ADS_EVENTS.contains(&g.name)
                && c.marketing
                && (g.region != "US-CA" || c.sale_of_data);
            (ads, c.analytics)
        }
    }
}

/// The ids each partner must receive: `(ads, insights)`.
pub fn expected_ids(sent: &[Generated]) -> (HashSet<String>, HashSet<String>) {
    let mut ads = HashSet::new();
    let mut insights = HashSet::new();
    for g in sent {
        let (a, i) = expected_partners(g);
        if a {
            ads.insert(g.id.clone());
        }
        if i {
            insights.insert(g.id.clone());
        }
    }
    (ads, insights)
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

pub fn generate(run: &str, n: usize, no_consent: f64, malformed: f64, seed: u64) -> Vec<Generated> {
    let mut g = Generator::new(Mix {
        seed,
        run_id: run.to_string(),
        no_consent_share: no_consent,
        malformed_share: malformed,
        event_bytes: 1024,
    });
    (0..n).map(|_| g.next_message()).collect()
}

pub fn producer() -> ThreadedProducer<rdkafka::producer::DefaultProducerContext> {
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
        .set("group.id", unique("reader"))
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
                out.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .unwrap_or_default(),
                    payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    headers: m
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| {
                                    (
                                        h.key.to_string(),
                                        String::from_utf8_lossy(h.value.unwrap_or_default())
                                            .into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None if out.len() >= want && last.elapsed() > Duration::from_secs(1) => break,
            None => {}
        }
    }
    out
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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A `pixelpipe-worker` process under test.
#[derive(Debug)]
pub struct Worker {
    pub child: Child,
    pub admin: u16,
    pub log: PathBuf,
}

impl Worker {
    pub fn start(p: &Pipeline, extra: &[&str]) -> Self {
        let admin = free_port();
        let log = p.dir.join(format!("worker-{admin}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_pixelpipe-worker"))
            .args([
                "--bootstrap-servers",
                &bootstrap(),
                "--input-topic",
                &p.input,
                "--dead-letter-topic",
                &p.dlq,
                "--group",
                &p.group,
                "--config",
                p.config_path.to_str().expect("utf8 path"),
                "--admin-addr",
                &format!("127.0.0.1:{admin}"),
                "--commit-interval-ms",
                "500",
            ])
            .args(extra)
            .env("RUST_LOG", "info,rdkafka=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log file")))
            .spawn()
            .expect("spawn worker");
        let w = Self { child, admin, log };
        w.wait_until(
            "the admin endpoint answers",
            Duration::from_secs(30),
            || w.http("GET", "/healthz", "").is_some(),
        );
        w
    }

    /// One HTTP/1.1 request to the admin endpoint; `None` if it does not answer.
    pub fn http(&self, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.admin)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((status, body))
    }

    /// Sum of every sample of a metric family (all label values).
    pub fn metric(&self, name: &str) -> f64 {
        let Some((200, text)) = self.http("GET", "/metrics", "") else {
            return f64::NAN;
        };
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn wait_until(&self, what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "timed out waiting until {what}; worker log:\n{}",
            self.log_tail()
        );
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory so far, in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    }

    pub fn sigkill(mut self) {
        self.child.kill().expect("kill");
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `timeout` for the exit status.
    pub fn sigterm(mut self, timeout: Duration) -> ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(ok.success());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let tail = self.log_tail();
                let _ = self.child.kill();
                panic!("worker did not exit within {timeout:?} of SIGTERM; log:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keys and how often each appears.
pub fn key_counts(records: &[Record]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in records {
        *m.entry(r.key.clone()).or_insert(0) += 1;
    }
    m
}

/// Waits until every expected id is on its partner topic; returns duplicates.
pub fn assert_all_delivered(p: &Pipeline, sent: &[Generated]) -> usize {
    let (ads, insights) = expected_ids(sent);
    let mut duplicates = 0;
    for (topic, want) in [(&p.ads, ads), (&p.insights, insights)] {
        let counts = key_counts(&read_topic(topic, want.len(), Duration::from_secs(90)));
        let missing: Vec<&String> = want
            .iter()
            .filter(|id| !counts.contains_key(*id))
            .take(5)
            .collect();
        assert!(missing.is_empty(), "{topic}: lost events, e.g. {missing:?}");
        duplicates += counts.values().map(|c| c - 1).sum::<usize>();
    }
    duplicates
}

/// Fails if a partner topic holds an event it must not have (no consent,
/// another partner's event, a malformed one).
pub fn assert_nothing_unexpected(p: &Pipeline, sent: &[Generated]) {
    let (ads, insights) = expected_ids(sent);
    for (topic, want) in [(&p.ads, ads), (&p.insights, insights)] {
        let counts = key_counts(&read_topic(topic, want.len(), Duration::from_secs(30)));
        let extra: Vec<&String> = counts
            .keys()
            .filter(|id| !want.contains(*id))
            .take(5)
            .collect();
        assert!(
            extra.is_empty(),
            "{topic}: events shared that must not be, e.g. {extra:?}"
        );
    }
}
