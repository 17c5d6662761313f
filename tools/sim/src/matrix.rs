//! The acceptance matrix for autoscaling: every profile at every scale,
//! replica capacity and partition count, run by Pixelpipe's default policy, a
//! static size, and KEDA-style rules swept over lag thresholds; then the
//! cheapest KEDA threshold that holds the SLO everywhere, against Pixelpipe.

use std::fmt::Write as _;

use crate::simulate::{Outcome, Profile, Scaler, World, simulate, sized_for};
use pixelpipe_policy::Tuning;

/// The built-in CSV profiles (`operator/profiles/`).
pub const CSV_PROFILES: [(&str, &str); 3] = [
    ("sharp-spike", include_str!("../profiles/sharp-spike.csv")),
    ("slow-ramp", include_str!("../profiles/slow-ramp.csv")),
    ("double-surge", include_str!("../profiles/double-surge.csv")),
];

/// The dimensions of the matrix.
#[derive(Debug, Clone)]
pub struct Grid {
    pub capacities: Vec<f64>,
    pub scales: Vec<f64>,
    pub partitions: Vec<i32>,
    pub thresholds: Vec<f64>,
    pub pod_start: f64,
    pub rebalance: f64,
    pub slo: f64,
}

impl Default for Grid {
    fn default() -> Self {
        Self {
            capacities: vec![500.0, 2_000.0, 5_000.0, 20_000.0],
            scales: vec![0.1, 0.5, 1.0, 2.0, 4.0],
            partitions: vec![24, 96],
            thresholds: vec![
                100.0, 300.0, 1_000.0, 3_000.0, 10_000.0, 30_000.0, 100_000.0,
            ],
            pod_start: 60.0,
            rebalance: 15.0,
            slo: 300.0,
        }
    }
}

/// Every profile of the matrix: the built-in ones and the CSV ones.
pub fn profiles() -> Vec<Profile> {
    let mut all: Vec<Profile> = Profile::BUILTIN
        .iter()
        .filter_map(|n| Profile::builtin(n))
        .collect();
    all.extend(
        CSV_PROFILES
            .iter()
            .filter_map(|(name, text)| Profile::from_csv(name, text).ok()),
    );
    all
}

/// One workload's result under one scaler.
#[derive(Debug, Clone)]
pub struct Row {
    pub workload: String,
    pub servable: bool,
    pub scaler: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub rows: Vec<Row>,
    /// Per scaler label: (workloads over the SLO, replica-seconds), over servable workloads.
    pub totals: Vec<(String, usize, f64)>,
    pub cheapest_safe_keda: Option<(String, f64)>,
    pub pixelpipe: (usize, f64),
}

pub fn run(grid: &Grid, profiles: &[Profile]) -> Report {
    let tuning = Tuning::default();
    let mut rows = Vec::new();
    for profile in profiles {
        for &scale in &grid.scales {
            let scaled = profile.scaled(scale);
            for &capacity in &grid.capacities {
                for &partitions in &grid.partitions {
                    let world = World {
                        replica_capacity: capacity,
                        partitions,
                        max_replicas: partitions,
                        pod_start: grid.pod_start,
                        rebalance: grid.rebalance,
                        slo: grid.slo,
                    };
                    let workload =
                        format!("{} x{scale} cap {capacity} p{partitions}", profile.name);
                    let servable = world.can_serve(&scaled);
                    let mut scalers = vec![
                        Scaler::Pixelpipe(tuning),
                        Scaler::Static(sized_for(scaled.peak(), &world)),
                    ];
                    scalers.extend(grid.thresholds.iter().map(|&t| Scaler::Keda(t)));
                    for scaler in scalers {
                        let mut outcome = simulate(&scaled, &world, scaler);
                        outcome.series.clear();
                        let label = match scaler {
                            Scaler::Static(_) => "static".to_string(),
                            s => s.label(),
                        };
                        rows.push(Row {
                            workload: workload.clone(),
                            servable,
                            scaler: label,
                            outcome,
                        });
                    }
                }
            }
        }
    }
    let mut labels: Vec<String> = Vec::new();
    for r in &rows {
        if !labels.contains(&r.scaler) {
            labels.push(r.scaler.clone());
        }
    }
    let totals: Vec<(String, usize, f64)> = labels
        .iter()
        .map(|label| {
            let mine = rows.iter().filter(|r| r.servable && &r.scaler == label);
            let over = mine.clone().filter(|r| r.outcome.seconds_over > 0).count();
            let cost = mine.map(|r| r.outcome.replica_seconds).sum();
            (label.clone(), over, cost)
        })
        .collect();
    let cheapest_safe_keda = totals
        .iter()
        .filter(|(l, over, _)| l.starts_with("keda") && *over == 0)
        .min_by(|a, b| a.2.total_cmp(&b.2))
        .map(|(l, _, c)| (l.clone(), *c));
    let pixelpipe = totals
        .iter()
        .find(|(l, _, _)| l == "pixelpipe")
        .map_or((0, 0.0), |(_, o, c)| (*o, *c));
    Report {
        rows,
        totals,
        cheapest_safe_keda,
        pixelpipe,
    }
}

impl Report {
    /// Every row, as CSV.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "workload,servable,policy,max_age_s,seconds_over_slo,replica_seconds,worker_seconds,scale_actions\n",
        );
        for r in &self.rows {
            let o = &r.outcome;
            let _ = writeln!(
                out,
                "{},{},{},{:.0},{},{:.0},{:.0},{}",
                r.workload,
                r.servable,
                r.scaler,
                o.max_age,
                o.seconds_over,
                o.replica_seconds,
                o.worker_seconds,
                o.scale_actions
            );
        }
        out
    }

    /// The per-workload table for Pixelpipe, static and the cheapest safe KEDA
    /// threshold, then the totals per policy.
    pub fn table(&self) -> String {
        let keda = self.cheapest_safe_keda.as_ref().map(|(l, _)| l.as_str());
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<36} {:>5} | {:>21} | {:>21} | {:>21}",
            "workload (profile, scale, capacity/s, partitions)",
            "serve",
            "pixelpipe",
            "static",
            keda.unwrap_or("keda (none safe)")
        );
        let _ = writeln!(
            out,
            "{:<42} | {:>21} | {:>21} | {:>21}",
            "", "age over rep-s acts", "age over rep-s acts", "age over rep-s acts"
        );
        let mut workloads: Vec<&str> = Vec::new();
        for r in &self.rows {
            if !workloads.contains(&r.workload.as_str()) {
                workloads.push(&r.workload);
            }
        }
        let cell = |w: &str, label: &str| {
            self.rows
                .iter()
                .find(|r| r.workload == w && r.scaler == label)
                .map_or_else(
                    || "-".to_string(),
                    |r| {
                        let o = &r.outcome;
                        format!(
                            "{:>4.0} {:>4} {:>7.0} {:>3}",
                            o.max_age, o.seconds_over, o.replica_seconds, o.scale_actions
                        )
                    },
                )
        };
        for w in workloads {
            let servable = self.rows.iter().any(|r| r.workload == w && r.servable);
            let _ = writeln!(
                out,
                "{w:<36} {:>5} | {:>21} | {:>21} | {:>21}",
                if servable { "yes" } else { "no" },
                cell(w, "pixelpipe"),
                cell(w, "static"),
                keda.map_or_else(|| "-".to_string(), |k| cell(w, k))
            );
        }
        let _ = writeln!(out, "\ntotals over servable workloads:");
        let _ = writeln!(
            out,
            "{:<16} {:>18} {:>16}",
            "policy", "workloads over SLO", "replica-seconds"
        );
        for (label, over, cost) in &self.totals {
            let _ = writeln!(out, "{label:<16} {over:>18} {cost:>16.0}");
        }
        match &self.cheapest_safe_keda {
            Some((label, cost)) => {
                let _ = writeln!(
                    out,
                    "\ncheapest KEDA threshold with 0 s over the SLO everywhere: {label}, {cost:.0} replica-seconds\n\
                     pixelpipe: {} workloads over the SLO, {:.0} replica-seconds = {:.2}x that",
                    self.pixelpipe.0,
                    self.pixelpipe.1,
                    self.pixelpipe.1 / cost
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "\nno KEDA threshold holds the SLO on every servable workload"
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The acceptance bar itself: with default settings, no servable workload
    /// over the SLO, at most 0.8x the replica-seconds of the cheapest KEDA
    /// threshold that is also never over.
    #[test]
    fn the_default_policy_holds_every_servable_workload_for_less() {
        let report = run(&Grid::default(), &profiles());
        assert_eq!(report.rows.len(), 6 * 5 * 4 * 2 * 9);
        let (over, cost) = report.pixelpipe;
        assert_eq!(over, 0, "{}", report.table());
        let (label, keda) = report
            .cheapest_safe_keda
            .clone()
            .expect("a safe KEDA threshold");
        assert!(cost <= 0.8 * keda, "pixelpipe {cost} vs {label} {keda}");
        let csv = report.csv();
        assert_eq!(csv.lines().count(), report.rows.len() + 1);
    }
}
