//! At-least-once bookkeeping: which input offsets may be committed.
//!
//! Every job covers, per partition, a contiguous run of consumed offsets. A
//! partition's commit position only moves past a run when that run's job and
//! every job before it on the partition are done (all outputs acknowledged), so a
//! commit never covers an event whose outputs are still in flight.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use pixelpipe_crds::evidence::PartitionProgress;

/// One job's run of offsets on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    job: u64,
    /// The offset after the run's last message: what a commit would store.
    next: i64,
    done: bool,
}

/// The contiguous low watermark of one partition.
#[derive(Debug, Default, Clone)]
pub struct Watermark {
    segments: VecDeque<Segment>,
    /// Next offset to consume once everything before it is done.
    committable: Option<i64>,
}

impl Watermark {
    /// Records that `job` holds offsets up to and including `last`. Jobs must be
    /// pushed in consumption order.
    pub fn push(&mut self, job: u64, last: i64) {
        self.segments.push_back(Segment {
            job,
            next: last + 1,
            done: false,
        });
    }

    /// Marks `job` done and advances over the done prefix. Returns false when
    /// the job holds nothing here (for example after a revoke).
    pub fn complete(&mut self, job: u64) -> bool {
        let Some(seg) = self.segments.iter_mut().find(|s| s.job == job) else {
            return false;
        };
        seg.done = true;
        while let Some(front) = self.segments.front() {
            if !front.done {
                break;
            }
            self.committable = Some(front.next);
            self.segments.pop_front();
        }
        true
    }

    /// The offset a commit may store now, if any progress was made.
    pub fn committable(&self) -> Option<i64> {
        self.committable
    }

    /// Runs still waiting for their outputs.
    pub fn pending(&self) -> usize {
        self.segments.len()
    }

    /// The offset after the last one read, if any was.
    pub fn read(&self) -> Option<i64> {
        self.segments.back().map(|s| s.next).or(self.committable)
    }
}

/// A job's claim on one partition, as handed out by [`OffsetTracker::register`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub partition: i32,
    generation: u64,
}

#[derive(Debug, Default)]
struct Partition {
    generation: u64,
    mark: Watermark,
    /// The last position handed to a commit.
    sent: Option<i64>,
}

/// Watermarks for every assigned partition of the input topic, shared by the
/// source (register), the delivery callbacks (complete) and the committer.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    partitions: HashMap<i32, Partition>,
    next_generation: u64,
}

impl OffsetTracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts tracking newly assigned partitions, each under a new generation.
    pub fn assign(&self, partitions: &[i32]) {
        let mut inner = self.lock();
        for &partition in partitions {
            inner.next_generation += 1;
            let generation = inner.next_generation;
            inner
                .partitions
                .entry(partition)
                .or_insert_with(|| Partition {
                    generation,
                    ..Partition::default()
                });
        }
    }

    /// The current generation of an assigned partition; `None` if not assigned.
    pub fn generation(&self, partition: i32) -> Option<u64> {
        self.lock().partitions.get(&partition).map(|p| p.generation)
    }

    /// Registers `job`'s runs, given as `(partition, last offset)`. Runs on
    /// partitions not assigned are not tracked, so never committed.
    pub fn register(&self, job: u64, runs: &[(i32, i64)]) -> Vec<Claim> {
        let mut inner = self.lock();
        runs.iter()
            .filter_map(|&(partition, last)| {
                let p = inner.partitions.get_mut(&partition)?;
                p.mark.push(job, last);
                Some(Claim {
                    partition,
                    generation: p.generation,
                })
            })
            .collect()
    }

    /// Marks a job's claims done. Claims on partitions revoked since are ignored.
    pub fn complete(&self, job: u64, claims: &[Claim]) {
        let mut inner = self.lock();
        for c in claims {
            if let Some(p) = inner.partitions.get_mut(&c.partition)
                && p.generation == c.generation
            {
                p.mark.complete(job);
            }
        }
    }

    /// Positions that moved since the last commit, marked as sent.
    pub fn take_commit(&self) -> Vec<(i32, i64)> {
        self.take(false)
    }

    /// Every committable position, moved or not, marked as sent: the
    /// committer's periodic refresh (see `source::REFRESH_EVERY`).
    pub fn take_all(&self) -> Vec<(i32, i64)> {
        self.take(true)
    }

    fn take(&self, all: bool) -> Vec<(i32, i64)> {
        let mut inner = self.lock();
        let mut out = Vec::new();
        for (&partition, p) in inner.partitions.iter_mut() {
            if let Some(next) = p.mark.committable()
                && (all || p.sent != Some(next))
            {
                p.sent = Some(next);
                out.push((partition, next));
            }
        }
        out.sort_unstable();
        out
    }

    /// Every committable position, sent before or not: for synchronous commits.
    pub fn all_committable(&self) -> Vec<(i32, i64)> {
        let inner = self.lock();
        let mut out: Vec<_> = inner
            .partitions
            .iter()
            .filter_map(|(&partition, p)| p.mark.committable().map(|n| (partition, n)))
            .collect();
        out.sort_unstable();
        out
    }

    /// Forgets revoked partitions and returns their committable positions, which
    /// the caller commits before the partitions change hands.
    pub fn revoke(&self, revoked: &[i32]) -> Vec<(i32, i64)> {
        let mut inner = self.lock();
        let mut out: Vec<_> = revoked
            .iter()
            .filter_map(|partition| {
                inner
                    .partitions
                    .remove(partition)
                    .and_then(|p| p.mark.committable().map(|n| (*partition, n)))
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Each assigned partition's positions read and done, by partition.
    pub fn progress(&self, max: usize) -> Vec<PartitionProgress> {
        let inner = self.lock();
        let mut out: Vec<_> = inner
            .partitions
            .iter()
            .map(|(&partition, p)| PartitionProgress {
                partition,
                read: p.mark.read(),
                done: p.mark.committable(),
            })
            .collect();
        out.sort_unstable_by_key(|p| p.partition);
        out.truncate(max);
        out
    }

    /// Runs still waiting for their outputs, over all partitions.
    pub fn pending(&self) -> usize {
        self.lock()
            .partitions
            .values()
            .map(|p| p.mark.pending())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commits_only_the_done_prefix() {
        let mut w = Watermark::default();
        w.push(1, 9);
        w.push(2, 19);
        w.push(3, 29);
        assert!(w.complete(2));
        assert_eq!(w.committable(), None);
        assert!(w.complete(1));
        assert_eq!(w.committable(), Some(20));
        assert!(!w.complete(7));
        assert!(w.complete(3));
        assert_eq!(w.committable(), Some(30));
        assert_eq!(w.pending(), 0);
    }

    #[test]
    fn progress_reports_what_was_read_and_what_is_done() {
        let t = OffsetTracker::default();
        t.assign(&[2, 0]);
        let claims = t.register(1, &[(0, 9), (2, 4)]);
        t.register(2, &[(0, 19)]);
        t.complete(1, &claims);
        let p = |partition, read, done| PartitionProgress {
            partition,
            read,
            done,
        };
        assert_eq!(
            t.progress(10),
            vec![p(0, Some(20), Some(10)), p(2, Some(5), Some(5))]
        );
        assert_eq!(t.progress(1).len(), 1, "bounded");
        t.assign(&[7]);
        assert_eq!(t.progress(10)[2], p(7, None, None));
    }

    #[test]
    fn revoked_partitions_ignore_late_completions() {
        let t = OffsetTracker::default();
        t.assign(&[0, 1]);
        let old = t.register(1, &[(0, 4), (1, 9)]);
        assert_eq!(t.revoke(&[0]), vec![]);
        assert_eq!(t.generation(0), None);
        assert!(
            t.register(9, &[(0, 7)]).is_empty(),
            "unassigned runs are not tracked"
        );
        t.assign(&[0]);
        let new = t.register(2, &[(0, 14)]);
        t.complete(1, &old);
        assert_eq!(t.take_commit(), vec![(1, 10)]);
        assert_eq!(t.take_commit(), vec![], "nothing moved since");
        t.complete(2, &new);
        assert_eq!(t.take_commit(), vec![(0, 15)]);
        assert_eq!(t.all_committable(), vec![(0, 15), (1, 10)]);
        assert_eq!(t.revoke(&[0, 1, 2]), vec![(0, 15), (1, 10)]);
    }

    #[test]
    fn a_refresh_sends_every_position_again_moved_or_not() {
        let t = OffsetTracker::default();
        t.assign(&[0, 1]);
        let a = t.register(1, &[(0, 9), (1, 4)]);
        t.complete(1, &a);
        assert_eq!(t.take_commit(), [(0, 10), (1, 5)]);
        // Nothing moved: nothing to send, unless refreshing.
        assert!(t.take_commit().is_empty());
        assert_eq!(t.take_all(), [(0, 10), (1, 5)]);
        let b = t.register(2, &[(1, 8)]);
        t.complete(2, &b);
        assert_eq!(t.take_all(), [(0, 10), (1, 9)]);
        assert!(t.take_commit().is_empty(), "the refresh marked them sent");
    }

    proptest! {
        /// Whatever order jobs finish in, the commit position is never past the
        /// first offset of an unfinished job, and it reaches the end when all finish.
        #[test]
        fn watermark_never_passes_unfinished_work(
            sizes in prop::collection::vec(1i64..50, 1..40),
            seed in any::<u64>(),
        ) {
            let mut w = Watermark::default();
            let mut starts = Vec::new();
            let mut next = 100i64;
            for (job, size) in sizes.iter().enumerate() {
                starts.push(next);
                next += size;
                w.push(job as u64, next - 1);
            }
            // A deterministic shuffle of completion order.
            let mut jobs: Vec<usize> = (0..sizes.len()).collect();
            let mut s = seed | 1;
            for i in (1..jobs.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                jobs.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let mut finished = vec![false; sizes.len()];
            for job in jobs {
                prop_assert!(w.complete(job as u64));
                finished[job] = true;
                if let Some(c) = w.committable() {
                    let first_unfinished = finished.iter().position(|f| !f);
                    if let Some(u) = first_unfinished {
                        prop_assert!(c <= starts[u], "commit {} passes unfinished job {} at {}", c, u, starts[u]);
                        prop_assert_eq!(c, starts[u], "commit lags the done prefix");
                    }
                }
            }
            prop_assert_eq!(w.committable(), Some(next));
        }
    }
}
