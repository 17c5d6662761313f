//! What the lag observer saw: per partition the end, the group's committed
//! offset and the record there ([`Head`]), one moment of a topic
//! ([`Snapshot`]), and snapshots over time for rates ([`History`]).

use std::collections::VecDeque;
use std::time::Duration;

/// What is at a partition's committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Nothing to process: at the end, or only transaction markers before it.
    CaughtUp,
    /// The first unprocessed event.
    Event { offset: i64, timestamp_ms: i64 },
    /// Lag, but its first record could not be read in time.
    Unknown,
}

/// One partition at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    pub partition: i32,
    /// The last stable offset.
    pub log_end: i64,
    /// The group's committed offset; the log start when nothing was committed.
    pub committed: i64,
    pub head: Head,
}

impl PartitionLag {
    /// Events still to process: from the first event at or after the
    /// committed offset to the end.
    pub fn lag(&self) -> i64 {
        match self.head {
            Head::CaughtUp => 0,
            Head::Event { offset, .. } => (self.log_end - offset.max(self.committed)).max(0),
            Head::Unknown => (self.log_end - self.committed).max(0),
        }
    }

    /// Seconds since the first unprocessed event was written at `at_ms`:
    /// `Some(0)` without lag, `None` when it could not be read.
    pub fn head_age(&self, at_ms: i64) -> Option<f64> {
        match self.head {
            _ if self.lag() == 0 => Some(0.0),
            Head::Event { timestamp_ms, .. } => {
                Some(((at_ms - timestamp_ms) as f64 / 1000.0).max(0.0))
            }
            Head::CaughtUp => Some(0.0),
            Head::Unknown => None,
        }
    }
}

/// Every partition of the input topic at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Milliseconds since the epoch when it was taken.
    pub at_ms: i64,
    pub partitions: Vec<PartitionLag>,
}

impl Snapshot {
    pub fn lag(&self) -> i64 {
        self.partitions.iter().map(PartitionLag::lag).sum()
    }

    /// Age in seconds of the oldest unprocessed event over all partitions;
    /// `None` when a lagging partition's head could not be read.
    pub fn oldest_age(&self) -> Option<f64> {
        self.partitions
            .iter()
            .map(|p| p.head_age(self.at_ms))
            .try_fold(0.0f64, |oldest, age| age.map(|a| oldest.max(a)))
    }

    pub fn partition(&self, partition: i32) -> Option<&PartitionLag> {
        self.partitions.iter().find(|p| p.partition == partition)
    }
}

/// Most snapshots kept; rates use the oldest within the window.
const MAX_SNAPSHOTS: usize = 64;

/// Snapshots over time, for rates.
#[derive(Debug, Clone, Default)]
pub struct History {
    snapshots: VecDeque<Snapshot>,
}

impl History {
    pub fn push(&mut self, s: Snapshot, window: Duration) {
        let horizon = s.at_ms - i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        self.snapshots.push_back(s);
        // Keep one snapshot at or before the horizon as the window's start.
        while self.snapshots.len() > 2 && self.snapshots.get(1).is_some_and(|n| n.at_ms <= horizon)
        {
            self.snapshots.pop_front();
        }
        while self.snapshots.len() > MAX_SNAPSHOTS {
            self.snapshots.pop_front();
        }
    }

    pub fn latest(&self) -> Option<&Snapshot> {
        self.snapshots.back()
    }

    /// The window's first and last snapshots, once they are apart in time.
    pub fn window(&self) -> Option<(&Snapshot, &Snapshot)> {
        let first = self.snapshots.front()?;
        let last = self.snapshots.back()?;
        (last.at_ms > first.at_ms).then_some((first, last))
    }
}

pub(super) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn part(partition: i32, log_end: i64, committed: i64, head: Head) -> PartitionLag {
        PartitionLag {
            partition,
            log_end,
            committed,
            head,
        }
    }

    fn event(offset: i64, s: i64) -> Head {
        Head::Event {
            offset,
            timestamp_ms: s * 1000,
        }
    }

    #[test]
    fn the_oldest_age_is_the_oldest_lagging_partitions_timestamp() {
        let s = Snapshot {
            at_ms: 1_000_000,
            partitions: vec![
                part(0, 100, 100, Head::CaughtUp),
                part(1, 50, 40, event(40, 958)),
                part(2, 70, 60, event(60, 990)),
            ],
        };
        assert_eq!(s.lag(), 20);
        assert_eq!(s.oldest_age(), Some(42.0));
    }

    #[test]
    fn markers_are_not_lag_and_an_unread_head_is_unknown() {
        // The worker committed the offset of a commit marker; the end is past it.
        let marker_only = part(0, 101, 100, Head::CaughtUp);
        assert_eq!(
            (marker_only.lag(), marker_only.head_age(5_000)),
            (0, Some(0.0))
        );
        // Two markers, then events from 102.
        let after_markers = part(0, 110, 100, event(102, 4));
        assert_eq!(after_markers.lag(), 8);
        let unknown = part(0, 110, 100, Head::Unknown);
        assert_eq!((unknown.lag(), unknown.head_age(5_000)), (10, None));
        let s = Snapshot {
            at_ms: 5_000,
            partitions: vec![after_markers, unknown],
        };
        assert_eq!(s.oldest_age(), None, "unknown, never 0");
    }

    #[test]
    fn the_window_keeps_its_span_and_one_snapshot_before_it() {
        let mut h = History::default();
        let w = Duration::from_secs(30);
        let at = |s: i64| Snapshot {
            at_ms: s * 1000,
            partitions: vec![part(0, s, s, Head::CaughtUp)],
        };
        h.push(at(0), w);
        assert!(h.window().is_none());
        for t in [10, 20, 30, 40, 50, 60] {
            h.push(at(t), w);
        }
        let (first, last) = h.window().expect("window");
        assert_eq!((first.at_ms, last.at_ms), (30_000, 60_000));
        assert_eq!(h.snapshots.len(), 4);
    }
}
