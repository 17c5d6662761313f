//! librdkafka settings for the worker's consumer and producer, in one place so
//! the benchmark's pass-through baseline uses exactly the same ones.

use rdkafka::ClientConfig;

/// Connection settings shared by every client.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    /// Extra librdkafka properties (security, tuning), applied last.
    pub options: Vec<(String, String)>,
}

impl KafkaSettings {
    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        c.set("client.id", "pixelpipe-worker");
        c
    }

    fn finish(&self, mut c: ClientConfig) -> ClientConfig {
        for (k, v) in &self.options {
            c.set(k, v);
        }
        c
    }

    /// The input consumer. Offsets are committed by the worker only, after
    /// delivery, so auto commit and auto offset store are off.
    pub fn consumer(&self, group: &str) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // Incremental rebalances: a new replica does not stop everyone else.
            .set("partition.assignment.strategy", "cooperative-sticky")
            // The prefetch queue is the one buffer outside the pipeline's job
            // bound; keep it small so memory does not follow the backlog. Fetch
            // sizes count compressed bytes, so they stay small too; the short
            // backoff refills the queue as soon as it drains below the mark
            // (librdkafka's default waits a full second and starves the pipeline).
            .set("queued.min.messages", "500")
            .set("queued.max.messages.kbytes", "1024")
            .set("fetch.max.bytes", "1048576")
            .set("max.partition.fetch.bytes", "65536")
            .set("fetch.queue.backoff.ms", "5");
        self.finish(c)
    }

    /// The output producer: batches, compresses, keeps thousands of messages in
    /// flight, and never duplicates on its own retries.
    pub fn producer(&self, compression: &str) -> ClientConfig {
        let mut c = self.base();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("batch.size", "1000000")
            .set("compression.type", compression)
            .set("queue.buffering.max.messages", "200000")
            .set("queue.buffering.max.kbytes", "65536")
            // A dead letter is a copy of its input, which may be as large as
            // the broker accepts; a smaller producer limit would refuse it for
            // good and stall the partition. Matches tests/env/kafka.sh.
            .set("message.max.bytes", "16777216")
            // Outlives a broker restart; a delivery that still fails stops the
            // worker without committing, so the input is read again.
            .set("message.timeout.ms", "120000");
        self.finish(c)
    }

    /// An admin or metadata client.
    pub fn admin(&self) -> ClientConfig {
        let c = self.base();
        self.finish(c)
    }
}

/// Parses `key=value` into a pair.
pub fn parse_option(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}
