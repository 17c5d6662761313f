//! What a run showed, and its summary in words.

use std::fmt::Write as _;
use std::path::PathBuf;

use pixelpipe_sim::chart::Point;
use serde::Deserialize;

use crate::calibrate::Calibration;

/// The load generator's own record of what it sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sent {
    pub sent: u64,
    pub valid: u64,
    pub no_consent: u64,
    pub malformed: u64,
}

/// Every event's fate, read back from Kafka.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Distinct events on the input topic.
    pub consumed: u64,
    /// Distinct events delivered to at least one partner.
    pub delivered: u64,
    /// Distinct events shared with nobody, as the spec requires.
    pub not_shared: u64,
    /// Distinct events on the dead-letter topic.
    pub dead_lettered: u64,
    /// Partner messages per partner, duplicates included.
    pub partner_messages: Vec<(String, u64)>,
    /// Partner messages beyond the first per event and partner (at least once).
    pub duplicates: u64,
    /// (event, partner) pairs the spec requires.
    pub expected_deliveries: u64,
    pub expected_not_shared: u64,
    pub expected_dead: u64,
    /// Required deliveries or dead letters that are not in Kafka.
    pub missing: u64,
    /// Deliveries the spec forbids (no consent, wrong partner, malformed).
    pub leaked: u64,
    /// Seconds from the input record to its first partner record.
    pub max_delay: f64,
    pub p99_delay: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScaleEvent {
    /// Seconds into the load when it was seen.
    pub t: f64,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub slo_seconds: f64,
    /// Highest oldest-event age the status reported.
    pub max_age: f64,
    pub points: Vec<Point>,
    pub scale: Vec<ScaleEvent>,
    pub sent: Sent,
    pub counts: Counts,
    /// The PNG, unless it could not be drawn (no font).
    pub chart: Option<PathBuf>,
    /// Worker or operator processes that exited on their own and were restarted.
    pub restarts: u32,
    /// Events per second one replica takes (the scenario's intake limit):
    /// the operator's median measure over the run.
    pub capacity_per_replica: f64,
    /// The same measure over the surge only, when every replica's batches
    /// fill: what a worker takes in at its CPU limit under load.
    pub capacity_at_surge: f64,
    /// What the load was set against: events/s one worker takes in.
    pub worker_capacity: f64,
    /// How `worker_capacity` was measured on this host, if it was.
    pub calibration: Option<Calibration>,
}

/// Peaks and final values of the run, for the summary and the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub first_replicas: i32,
    pub peak_replicas: i32,
    pub last_replicas: i32,
    pub first_pools: i32,
    pub peak_pools: i32,
    pub last_pools: i32,
}

impl Report {
    pub fn shape(&self) -> Shape {
        let first = self.points.first().copied().unwrap_or_default();
        let last = self.points.last().copied().unwrap_or(first);
        Shape {
            first_replicas: first.replicas,
            peak_replicas: self.points.iter().map(|p| p.replicas).max().unwrap_or(0),
            last_replicas: last.replicas,
            first_pools: first.pool_workers,
            peak_pools: self
                .points
                .iter()
                .map(|p| p.pool_workers)
                .max()
                .unwrap_or(0),
            last_pools: last.pool_workers,
        }
    }

    /// Replicas times seconds over the run, from the status at each observation.
    pub fn replica_seconds(&self) -> f64 {
        self.points
            .windows(2)
            .map(|w| f64::from(w[0].replicas) * (w[1].t - w[0].t))
            .sum()
    }

    /// The least any scaler could have spent: at each observation, the
    /// fewest replicas (at least one) that carry the arrivals seen then.
    pub fn floor(&self) -> f64 {
        let c = self.capacity_per_replica.max(1.0);
        self.points
            .windows(2)
            .map(|w| (w[0].arrivals / c).ceil().max(1.0) * (w[1].t - w[0].t))
            .sum()
    }

    /// Every event where the spec says, nothing shared that must not be.
    pub fn counts_reconcile(&self) -> bool {
        let c = &self.counts;
        c.missing == 0
            && c.leaked == 0
            && c.consumed == self.sent.sent
            && c.delivered + c.not_shared + c.dead_lettered == c.consumed
            && c.not_shared == c.expected_not_shared
            && c.dead_lettered == c.expected_dead
    }

    pub fn render(&self) -> String {
        let c = &self.counts;
        let s = self.shape();
        let mut out = String::new();
        let verdict = if self.max_age <= self.slo_seconds {
            "held"
        } else {
            "MISSED"
        };
        let _ = writeln!(out, "\nPixelpipe flash-sale summary");
        if let Some(c) = &self.calibration {
            let _ = writeln!(out, "  the load was set against this host: {c}");
        }
        let _ = writeln!(
            out,
            "  SLO {verdict}: oldest unprocessed event peaked at {:.0} s against {:.0} s",
            self.max_age, self.slo_seconds
        );
        let _ = writeln!(
            out,
            "  end to end (input record -> partner record): p99 {:.1} s, max {:.1} s",
            c.p99_delay, c.max_delay
        );
        let _ = writeln!(
            out,
            "  replicas {} -> {} -> {}, pool workers per replica {} -> {} -> {}",
            s.first_replicas,
            s.peak_replicas,
            s.last_replicas,
            s.first_pools,
            s.peak_pools,
            s.last_pools
        );
        let (spent, floor) = (self.replica_seconds(), self.floor());
        let _ = writeln!(
            out,
            "  replica-seconds {spent:.0}, the floor {floor:.0} ({:.2}x): the fewest replicas that carry each observation's arrivals at {:.0} events/s per replica (the operator's median measure)",
            spent / floor.max(1.0),
            self.capacity_per_replica
        );
        let _ = writeln!(out, "  scale actions (from the PixelPipeline's Events):");
        if self.scale.is_empty() {
            let _ = writeln!(out, "    none");
        }
        for e in &self.scale {
            let _ = writeln!(out, "    {:>5.0}s {:<10} {}", e.t, e.reason, e.message);
        }
        let _ = writeln!(out, "  events:");
        let _ = writeln!(
            out,
            "    sent                          {:>9}  ({} valid, {} without consent, {} malformed)",
            self.sent.sent, self.sent.valid, self.sent.no_consent, self.sent.malformed
        );
        let _ = writeln!(out, "    in (input topic)              {:>9}", c.consumed);
        let _ = writeln!(out, "    delivered to partners         {:>9}", c.delivered);
        let _ = writeln!(
            out,
            "    not shared (consent, region)  {:>9}  (the spec requires {})",
            c.not_shared, c.expected_not_shared
        );
        let _ = writeln!(
            out,
            "    dead-lettered                 {:>9}  (malformed sent: {})",
            c.dead_lettered, c.expected_dead
        );
        for (p, n) in &c.partner_messages {
            let _ = writeln!(out, "    partner {p:<10} messages     {n:>9}");
        }
        let _ = writeln!(
            out,
            "    duplicates (at least once)    {:>9}  (from rebalances as replicas changed)",
            c.duplicates
        );
        let _ = writeln!(
            out,
            "  counts reconcile: {}  (missing {}, shared without consent {}, in = delivered + not shared + dead-lettered: {} = {})",
            if self.counts_reconcile() { "yes" } else { "NO" },
            c.missing,
            c.leaked,
            c.consumed,
            c.delivered + c.not_shared + c.dead_lettered
        );
        if self.restarts > 0 {
            let _ = writeln!(
                out,
                "  processes restarted after exiting: {}",
                self.restarts
            );
        }
        match &self.chart {
            Some(path) => {
                let _ = writeln!(out, "  chart: {}", path.display());
            }
            None => {
                let _ = writeln!(out, "  chart: not drawn (install fonts-dejavu-core)");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            slo_seconds: 60.0,
            max_age: 9.0,
            points: vec![],
            scale: vec![],
            sent: Sent {
                sent: 100,
                valid: 89,
                no_consent: 10,
                malformed: 1,
            },
            counts: Counts {
                consumed: 100,
                delivered: 80,
                not_shared: 19,
                dead_lettered: 1,
                expected_not_shared: 19,
                expected_dead: 1,
                ..Counts::default()
            },
            chart: Some(PathBuf::from("x.png")),
            restarts: 0,
            capacity_per_replica: 1_000.0,
            capacity_at_surge: 1_200.0,
            worker_capacity: 1_500.0,
            calibration: None,
        }
    }

    fn point(t: f64, arrivals: f64, replicas: i32) -> Point {
        Point {
            t,
            arrivals,
            replicas,
            ..Point::default()
        }
    }

    #[test]
    fn replica_seconds_and_the_floor_come_from_the_observations() {
        let mut r = report();
        r.points = vec![
            point(0.0, 500.0, 1),
            point(10.0, 2_500.0, 2),
            point(20.0, 2_500.0, 3),
            point(30.0, 0.0, 3),
        ];
        assert_eq!(r.replica_seconds(), 10.0 + 20.0 + 30.0);
        assert_eq!(r.floor(), 10.0 + 30.0 + 30.0);
        assert!(r.render().contains("replica-seconds 60, the floor 70"));
    }

    #[test]
    fn counts_reconcile_only_when_every_event_is_accounted_for() {
        let r = report();
        assert!(r.counts_reconcile());
        assert!(r.render().contains("counts reconcile: yes"));
        let mut lost = report();
        lost.counts.missing = 1;
        assert!(!lost.counts_reconcile());
        let mut leaked = report();
        leaked.counts.leaked = 1;
        assert!(!leaked.counts_reconcile());
        let mut short = report();
        short.counts.consumed = 99;
        assert!(!short.counts_reconcile());
    }
}
