//! Helpers for the worker's tests against the real Kafka broker that
//! `tests/env/kafka.sh` starts (its address comes from `KAFKA_BOOTSTRAP`).
#![allow(dead_code, unused_imports)] // each test binary uses a different subset

use std::collections::HashSet;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub use pixelpipe_loadgen::{Generated, Generator, Kind, Mix};
pub use pixelpipe_testkit::kafka::*;
pub use pixelpipe_testkit::process::{Process, free_port};
pub use pixelpipe_testkit::wait::unique;

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
        topics(&[
            (&p.input, partitions),
            (&p.dlq, 1),
            (&p.ads, 3),
            (&p.insights, 3),
        ]);
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

/// A `pixelpipe-worker` process under test.
#[derive(Debug)]
pub struct Worker(Process);

impl Worker {
    pub fn start(p: &Pipeline, extra: &[&str]) -> Self {
        let admin = format!("127.0.0.1:{}", free_port());
        let log = p.dir.join(format!("worker-{}.log", unique("w")));
        let mut command = Command::new(env!("CARGO_BIN_EXE_pixelpipe-worker"));
        command
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
                &admin,
                "--commit-interval-ms",
                "500",
            ])
            .args(extra)
            .env("RUST_LOG", "info,rdkafka=warn");
        let admin = admin.parse().expect("address");
        Self(Process::start("worker", command, admin, &log))
    }

    /// Sum of every sample of a metric family (all label values).
    pub fn metric(&self, name: &str) -> f64 {
        self.0.metric(name, "")
    }

    pub fn sigkill(self) {
        self.0.sigkill()
    }

    pub fn sigterm(self, timeout: Duration) -> std::process::ExitStatus {
        self.0.sigterm(timeout)
    }

    /// SIGTERM and exit 0, or a panic showing the end of the worker's log.
    pub fn stop_cleanly(self, timeout: Duration) {
        self.0.stop_cleanly(timeout)
    }
}

impl Deref for Worker {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.0
    }
}

impl DerefMut for Worker {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.0
    }
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
