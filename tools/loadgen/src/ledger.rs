//! What actually is in Kafka after a run: every record of a topic up to its
//! high watermark, by key (the event id), with how often it appears and when
//! it was first written. For the demo's and the benchmark's checks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use thiserror::Error;

use pixelpipe_runtime::KafkaSettings;
use pixelpipe_runtime::kafka::{ReadsToEnd, ToEndConsumer};

#[derive(Debug, Error)]
pub enum LedgerError {
    #[error("reading {topic}: {source}")]
    Kafka { topic: String, source: KafkaError },
    #[error("reading {0} did not reach its end within 300 s")]
    Timeout(String),
}

/// One key's records in a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub copies: u32,
    /// Earliest record timestamp, ms since the epoch.
    pub first_ms: i64,
    /// The records' values, bytes, over every copy: what a producer sent.
    pub value_bytes: u64,
}

/// Reads `topic` from the beginning to its high watermarks.
pub fn read(settings: &KafkaSettings, topic: &str) -> Result<HashMap<String, Seen>, LedgerError> {
    let kafka = |source| LedgerError::Kafka {
        topic: topic.to_string(),
        source,
    };
    let consumer: ToEndConsumer = settings
        .client("pixelpipe-ledger", |c| {
            c.set(
                "group.id",
                format!("pixelpipe-ledger-{}", std::process::id()),
            )
            .set("enable.auto.commit", "false")
            // Transactional topics end in commit markers, which take
            // offsets but are never delivered: the end is the broker's
            // end-of-partition event.
            .set("enable.partition.eof", "true");
        })
        .create_with_context(ReadsToEnd)
        .map_err(kafka)?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(kafka)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .first()
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(kafka)?;
        if high > low {
            ends.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(kafka)?;
        }
    }
    let mut out: HashMap<String, Seen> = HashMap::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl).map_err(kafka)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(LedgerError::Timeout(topic.to_string()));
        }
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = match m {
            Ok(m) => m,
            Err(KafkaError::PartitionEOF(p)) => {
                ends.remove(&p);
                continue;
            }
            Err(e) => return Err(kafka(e)),
        };
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        let ts = m.timestamp().to_millis().unwrap_or(0);
        let bytes = m.payload_len() as u64;
        out.entry(key)
            .and_modify(|s| {
                s.copies += 1;
                s.first_ms = s.first_ms.min(ts);
                s.value_bytes += bytes;
            })
            .or_insert(Seen {
                copies: 1,
                first_ms: ts,
                value_bytes: bytes,
            });
        if ends
            .get(&m.partition())
            .is_some_and(|&end| m.offset() + 1 >= end)
        {
            ends.remove(&m.partition());
        }
    }
    Ok(out)
}
