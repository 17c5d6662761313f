//! The worker's Kafka clients: the input consumer and the output producer,
//! tuned here, in one place, so the benchmark's pass-through baseline uses
//! exactly the same settings.

use std::time::Duration;

use pixelpipe_crds::worker::Compression;
use pixelpipe_runtime::KafkaSettings;
use rdkafka::ClientConfig;

const CLIENT_ID: &str = "pixelpipe-worker";

/// The input consumer. Offsets are committed by the worker only, after
/// delivery, so auto commit and auto offset store are off.
pub fn consumer(kafka: &KafkaSettings, group: &str) -> ClientConfig {
    kafka.client(CLIENT_ID, |c| {
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // Incremental rebalances: a new replica does not stop everyone else.
            .set("partition.assignment.strategy", "cooperative-sticky")
            // The prefetch queue is the one buffer outside the pipeline's job
            // bound; keep it small so memory does not follow the backlog. Its
            // bytes are the bound: `queued.min.messages` stays at librdkafka's
            // default, because the high-level consumer counts it across every
            // partition's messages in the one queue, and at 500 it stopped
            // fetching half a megabyte in, which the pipeline drains faster
            // than the backoff below: the consumer starved with the cores a
            // third idle (docs/benchmarks.md, fifteenth session: 1.3x the
            // events/s without it). Fetch sizes count compressed bytes, so
            // they stay small too; the short backoff refills the queue as soon
            // as it drains below the mark (librdkafka's default waits a full
            // second and starves the pipeline).
            .set("queued.max.messages.kbytes", "1024")
            .set("fetch.max.bytes", "1048576")
            .set("max.partition.fetch.bytes", "65536")
            .set("fetch.queue.backoff.ms", "5");
    })
}

/// The output producer: batches, compresses, keeps thousands of messages in
/// flight, and never duplicates on its own retries.
pub fn producer(kafka: &KafkaSettings, compression: Compression) -> ClientConfig {
    kafka.client(CLIENT_ID, |c| tune_producer(c, compression))
}

fn tune_producer(c: &mut ClientConfig, compression: Compression) {
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("batch.size", "1000000")
        .set("compression.type", compression.as_str())
        .set("queue.buffering.max.messages", "200000")
        .set("queue.buffering.max.kbytes", "65536")
        // A dead letter is a copy of its input, which may be as large as
        // the broker accepts; a smaller producer limit would refuse it for
        // good and stall the partition. Matches tests/env/kafka.sh.
        .set("message.max.bytes", "16777216")
        // Outlives a broker restart; a delivery that still fails stops the
        // worker without committing, so the input is read again.
        .set("message.timeout.ms", "120000");
}

/// The output producer of exactly-once mode: transactional, so outputs and
/// consumed offsets commit together. A killed worker's open transaction
/// holds back read-committed consumers until its restart (same id) aborts
/// it, or, if the id changed, until it times out: a minute. librdkafka
/// requires message timeouts within the transaction's.
pub fn transactional_producer(
    kafka: &KafkaSettings,
    compression: Compression,
    id: &str,
) -> ClientConfig {
    kafka.client(CLIENT_ID, |c| {
        tune_producer(c, compression);
        c.set("transactional.id", id)
            .set("transaction.timeout.ms", "60000")
            .set("message.timeout.ms", "60000");
    })
}

/// How long librdkafka may hold an output before it reports it refused, as
/// `config` sets it (`delivery.timeout.ms` is its alias; the longer of the two
/// counts, since which one librdkafka applies last is not ours to know).
pub fn message_timeout(config: &ClientConfig) -> Duration {
    ["message.timeout.ms", "delivery.timeout.ms"]
        .iter()
        .filter_map(|k| config.get(k)?.parse::<u64>().ok())
        .max()
        // librdkafka's own default, for a config that does not say.
        .map_or(Duration::from_secs(300), Duration::from_millis)
}
