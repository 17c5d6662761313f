//! What a worker reports about itself at `GET /evidence` on its admin port:
//! the operator's autoscaling input besides Kafka. Every amount is a counter
//! since the worker started, so the operator takes the difference between two
//! observations and no scrape is ever lost or double counted; a smaller
//! `uptime_seconds` than last time means the worker restarted.

use serde::{Deserialize, Serialize};

use crate::stage::PerStage;

/// Where the worker serves its evidence, on [`crate::worker::ADMIN_PORT`].
pub const EVIDENCE_PATH: &str = "/evidence";

/// Most partitions one report lists: far more than a worker is ever assigned
/// (one per replica at least), and a bound on what the operator reads.
pub const MAX_REPORTED_PARTITIONS: usize = 4096;

/// One worker's report.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkerEvidence {
    /// Seconds since the worker started, on a monotonic clock.
    pub uptime_seconds: f64,
    /// CPU cores the worker may use: its cgroup's CPU limit, else the machine's.
    pub cores: f64,
    /// CPU seconds the process has used, every thread.
    pub cpu_seconds: f64,
    /// Input events read.
    #[serde(default)]
    pub events_read: u64,
    /// Input events whose job finished: every output acknowledged.
    pub events_completed: u64,
    /// Each stage's pool.
    pub stages: PerStage<StageEvidence>,
    /// The intake limit (`--max-events-per-second`), if there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intake_limit: Option<f64>,
    /// Seconds the source slept to keep under the intake limit.
    pub paced_seconds: f64,
    /// Job-seconds that jobs, every output sent, waited for the broker's
    /// acknowledgements (by Little's law, the mean jobs waiting times seconds).
    pub acknowledgement_wait_seconds: f64,
    /// Seconds the produce stage waited for room in the producer's queue, or
    /// for acknowledgements to free room for its outputs.
    pub queue_full_seconds: f64,
    /// The bound on jobs in flight.
    pub max_in_flight_jobs: u64,
    /// Jobs read whose outputs are not all acknowledged, now.
    pub jobs_in_flight: u64,
    /// Each assigned input partition.
    pub partitions: Vec<PartitionProgress>,
}

/// One stage's pool.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StageEvidence {
    /// Workers in the pool now.
    pub workers: u32,
    /// Worker-seconds spent on jobs, summed over the pool.
    pub busy_seconds: f64,
    /// Jobs finished.
    pub jobs: u64,
}

/// One input partition assigned to the worker.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PartitionProgress {
    pub partition: i32,
    /// The offset after the last event read; `None` before the first.
    pub read: Option<i64>,
    /// The offset after the last event whose outputs, and every earlier
    /// event's, were acknowledged: what the next commit stores.
    pub done: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_is_camel_case_json_and_parses_back() {
        let e = WorkerEvidence {
            uptime_seconds: 12.5,
            events_completed: 7,
            partitions: vec![PartitionProgress {
                partition: 3,
                read: Some(10),
                done: None,
            }],
            ..WorkerEvidence::default()
        };
        let json = serde_json::to_string(&e).expect("json");
        assert!(json.contains("\"uptimeSeconds\":12.5"), "{json}");
        assert!(json.contains("\"busySeconds\""), "{json}");
        let back: WorkerEvidence = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, e);
    }
}
