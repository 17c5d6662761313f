//! Liveness that means something: the worker is alive while the events it
//! fetched keep moving, not merely while its admin thread answers.
//!
//! [`Progress`] counts pending events (fetched into a job and not yet finished:
//! delivered, dropped, dead-lettered, or given up on) and remembers when
//! pending work last moved. [`Liveness::judge`] turns that into the verdict
//! `/healthz` answers with. A wedged worker (a lost wake-up, an
//! acknowledgement that never comes, a deadlock between stages) holds its
//! pending events forever while its admin thread still answers; judged here,
//! the kubelet restarts it and the uncommitted events are read again.
//!
//! What counts as progress is anything that only happens when work moves: a
//! stage finishing a job, librdkafka reporting on an output (acknowledged or
//! refused: either way the attempt ended, and the retry policy bounds how
//! often that may repeat before the worker stops itself), a job finishing.
//! Fetching more input is not progress: a worker that reads while everything
//! already read is stuck is still stuck.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Whether a worker's pending work moves, judged at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Nothing fetched is unfinished: an idle worker is a healthy one, however
    /// long ago its last event was.
    Idle,
    /// Events are pending and moved `stalled` ago, within the bound.
    Progressing { pending: u64, stalled: Duration },
    /// Stopping on request: the shutdown grace bounds the drain, so a drain
    /// waiting on the broker is not a wedge.
    Draining { pending: u64 },
    /// Events are pending and nothing moved for longer than `bound`.
    Wedged {
        pending: u64,
        stalled: Duration,
        bound: Duration,
    },
}

impl Liveness {
    /// The verdict for `pending` events that last moved at `last_progress`,
    /// seen at `now`. Exactly at the bound is still alive: the bound is how
    /// long a healthy worker may go without progress.
    pub fn judge(pending: u64, last_progress: Instant, now: Instant, bound: Duration) -> Self {
        if pending == 0 {
            return Self::Idle;
        }
        let stalled = now.saturating_duration_since(last_progress);
        if stalled > bound {
            Self::Wedged {
                pending,
                stalled,
                bound,
            }
        } else {
            Self::Progressing { pending, stalled }
        }
    }

    /// False only for a wedge: the one verdict a restart can fix.
    pub fn is_live(&self) -> bool {
        !matches!(self, Self::Wedged { .. })
    }
}

impl fmt::Display for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Idle => write!(f, "ok: no events pending"),
            Self::Progressing { pending, stalled } => write!(
                f,
                "ok: {} {} pending, last progress {} s ago",
                grouped(pending),
                events(pending),
                seconds(stalled)
            ),
            Self::Draining { pending } => write!(
                f,
                "ok: draining {} pending {} within the shutdown grace",
                grouped(pending),
                events(pending)
            ),
            Self::Wedged {
                pending,
                stalled,
                bound,
            } => write!(
                f,
                "no progress for {} s with {} {} pending (bound {} s)",
                seconds(stalled),
                grouped(pending),
                events(pending),
                seconds(bound)
            ),
        }
    }
}

fn events(n: u64) -> &'static str {
    if n == 1 { "event" } else { "events" }
}

/// Whole seconds, rounded down, except below ten, where a tenth says whether
/// a short bound was just passed or long since.
fn seconds(d: Duration) -> String {
    if d >= Duration::from_secs(10) {
        d.as_secs().to_string()
    } else {
        format!("{:.1}", (d.as_millis() / 100) as f64 / 10.0)
    }
}

/// `4812` as `4,812`: the reason is read by people, in `kubectl describe`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Pending events and when they last moved, shared (cheaply cloned) by
/// everything that moves them: the source, every stage's pool, the delivery
/// reports and the job acknowledgements.
#[derive(Debug, Clone)]
pub struct Progress(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    origin: Instant,
    pending: AtomicU64,
    /// Nanoseconds from `origin` to the last progress.
    last: AtomicU64,
    draining: AtomicBool,
}

impl Default for Progress {
    fn default() -> Self {
        Self(Arc::new(Inner {
            origin: Instant::now(),
            pending: AtomicU64::new(0),
            last: AtomicU64::new(0),
            draining: AtomicBool::new(false),
        }))
    }
}

impl Progress {
    /// `events` were fetched into a job. Work arriving at an idle worker starts
    /// the clock: its last progress may be hours old, and that is not a stall.
    /// The clock moves before the count so no probe sees new work with an old
    /// time; a job finishing in between moves it too.
    pub fn admitted(&self, events: u64) {
        if self.0.pending.load(Ordering::Acquire) == 0 {
            self.moved();
        }
        self.0.pending.fetch_add(events, Ordering::AcqRel);
    }

    /// Pending work moved.
    pub fn moved(&self) {
        let nanos = u64::try_from(self.0.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // Max, not store: threads race, and time must not run backwards.
        self.0.last.fetch_max(nanos, Ordering::AcqRel);
    }

    /// A job's `events` are finished, whatever became of them.
    pub fn finished(&self, events: u64) {
        self.moved();
        // Saturating: a miscount must not turn into billions of pending events.
        let _ = self
            .0
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p.saturating_sub(events))
            });
    }

    /// The worker stops on request: from now on the shutdown grace is the bound.
    pub fn drain(&self) {
        self.0.draining.store(true, Ordering::Release);
    }

    pub fn pending(&self) -> u64 {
        self.0.pending.load(Ordering::Acquire)
    }

    pub fn last_progress(&self) -> Instant {
        self.0.origin + Duration::from_nanos(self.0.last.load(Ordering::Acquire))
    }

    /// The verdict at `now` against `bound`.
    pub fn judge(&self, now: Instant, bound: Duration) -> Liveness {
        let pending = self.pending();
        if self.0.draining.load(Ordering::Acquire) {
            return Liveness::Draining { pending };
        }
        Liveness::judge(pending, self.last_progress(), now, bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(300);

    fn at(t0: Instant, secs: f64) -> Instant {
        t0 + Duration::from_secs_f64(secs)
    }

    #[test]
    fn nothing_pending_is_healthy_however_long_ago_the_last_progress() {
        let t0 = Instant::now();
        let v = Liveness::judge(0, t0, at(t0, 86_400.0), BOUND);
        assert_eq!(v, Liveness::Idle);
        assert!(v.is_live());
        assert_eq!(v.to_string(), "ok: no events pending");
    }

    #[test]
    fn pending_work_that_moved_within_the_bound_is_healthy_up_to_the_bound_itself() {
        let t0 = Instant::now();
        for secs in [0.0, 1.0, 299.9, 300.0] {
            let v = Liveness::judge(40, t0, at(t0, secs), BOUND);
            assert!(v.is_live(), "{secs} s: {v}");
        }
        assert_eq!(
            Liveness::judge(40, t0, at(t0, 12.0), BOUND).to_string(),
            "ok: 40 events pending, last progress 12 s ago"
        );
    }

    #[test]
    fn pending_work_stalled_past_the_bound_is_wedged_and_says_so_in_one_line() {
        let t0 = Instant::now();
        let v = Liveness::judge(4_812, t0, at(t0, 312.4), BOUND);
        assert_eq!(
            v,
            Liveness::Wedged {
                pending: 4_812,
                stalled: Duration::from_secs_f64(312.4),
                bound: BOUND
            }
        );
        assert!(!v.is_live());
        assert_eq!(
            v.to_string(),
            "no progress for 312 s with 4,812 events pending (bound 300 s)"
        );
        let short = Liveness::judge(1, t0, at(t0, 5.06), Duration::from_secs(5));
        assert_eq!(
            short.to_string(),
            "no progress for 5.0 s with 1 event pending (bound 5.0 s)"
        );
    }

    #[test]
    fn a_clock_read_before_the_last_progress_is_no_stall() {
        // Another thread may move the clock between the probe's `now` and its
        // read of the last progress.
        let t0 = Instant::now();
        let v = Liveness::judge(7, at(t0, 2.0), t0, BOUND);
        assert_eq!(
            v,
            Liveness::Progressing {
                pending: 7,
                stalled: Duration::ZERO
            }
        );
    }

    #[test]
    fn thousands_are_grouped() {
        let cases = [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (4_812, "4,812"),
            (1_234_567, "1,234,567"),
        ];
        for (n, s) in cases {
            assert_eq!(grouped(n), s);
        }
    }

    #[test]
    fn work_arriving_at_an_idle_worker_starts_the_clock() {
        let p = Progress::default();
        let later = Instant::now() + BOUND * 10;
        // Idle for ten bounds: not a stall.
        assert_eq!(p.judge(later, BOUND), Liveness::Idle);
        p.admitted(250);
        let now = Instant::now();
        assert!(p.judge(now, BOUND).is_live());
        // The same work, never moving, past the bound.
        match p.judge(now + BOUND + Duration::from_secs(1), BOUND) {
            Liveness::Wedged { pending: 250, .. } => {}
            v => panic!("expected a wedge, got {v}"),
        }
        // More work on top of stuck work does not restart the clock.
        let stuck_since = p.last_progress();
        p.admitted(250);
        assert_eq!(p.last_progress(), stuck_since);
        assert_eq!(p.pending(), 500);
    }

    #[test]
    fn finishing_moves_the_clock_and_never_counts_below_zero() {
        let p = Progress::default();
        p.admitted(10);
        let before = p.last_progress();
        std::thread::sleep(Duration::from_millis(5));
        p.finished(4);
        assert!(p.last_progress() > before);
        assert_eq!(p.pending(), 6);
        p.finished(100);
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn a_draining_worker_is_not_judged_wedged() {
        let p = Progress::default();
        p.admitted(3);
        p.drain();
        let v = p.judge(Instant::now() + BOUND * 2, BOUND);
        assert_eq!(v, Liveness::Draining { pending: 3 });
        assert!(v.is_live());
    }
}
