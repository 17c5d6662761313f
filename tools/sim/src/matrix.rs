//! The acceptance matrix: every profile at every scale, replica capacity,
//! partition count and delay setting, run by Pixelpipe's default policy, a
//! static size and KEDA swept over lag thresholds; totals against the floor
//! and against the cheapest single KEDA threshold that holds the SLO.

use std::fmt::Write as _;

use pixelpipe_policy::Tuning;

use crate::profile::Profile;
use crate::simulate::{Scaler, floor, simulate, sized_for};
use crate::world::World;

/// The built-in CSV profiles (`tools/sim/profiles/`).
pub const CSV_PROFILES: [(&str, &str); 3] = [
    ("sharp-spike", include_str!("../profiles/sharp-spike.csv")),
    ("slow-ramp", include_str!("../profiles/slow-ramp.csv")),
    ("double-surge", include_str!("../profiles/double-surge.csv")),
];

/// Pod start and rebalance pause, seconds.
pub type Delays = (f64, f64);

/// The dimensions of the matrix.
#[derive(Debug, Clone)]
pub struct Grid {
    pub capacities: Vec<f64>,
    pub scales: Vec<f64>,
    pub partitions: Vec<i32>,
    pub delays: Vec<Delays>,
    pub thresholds: Vec<f64>,
    /// KEDA with `useCachedMetrics: true` instead of a fresh metric per sync.
    pub keda_cached: bool,
    pub slo: f64,
}

impl Default for Grid {
    fn default() -> Self {
        Self {
            capacities: vec![500.0, 2_000.0, 5_000.0, 20_000.0],
            scales: vec![0.1, 0.5, 1.0, 2.0, 4.0],
            partitions: vec![24, 96],
            delays: vec![(30.0, 5.0), (60.0, 15.0)],
            thresholds: (1..=20).map(|i| f64::from(i) * 10_000.0).collect(),
            keda_cached: false,
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

/// One workload under one policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub workload: String,
    pub delays: Delays,
    pub feasible: bool,
    pub floor: f64,
    pub policy: String,
    pub worst_age: f64,
    pub seconds_over: u64,
    pub replica_seconds: f64,
    pub scale_actions: u32,
}

/// Totals over the feasible workloads of one delay setting.
#[derive(Debug, Clone, PartialEq)]
pub struct Totals {
    pub delays: Delays,
    pub workloads: usize,
    pub floor: f64,
    /// Per policy: (label, workloads over the SLO, replica-seconds).
    pub policies: Vec<(String, usize, f64)>,
    /// The cheapest single KEDA threshold with no workload over the SLO.
    pub cheapest_keda: Option<(String, f64)>,
    /// Each workload's own cheapest KEDA threshold that holds its SLO,
    /// summed: a lower bound no single setting reaches.
    pub best_keda_per_workload: f64,
    pub pixelpipe: (usize, f64),
}

#[derive(Debug, Clone)]
pub struct Report {
    pub rows: Vec<Row>,
    pub totals: Vec<Totals>,
}

fn scalers(grid: &Grid, peak: f64, world: &World) -> Vec<Scaler> {
    let mut v = vec![
        Scaler::Pixelpipe(Tuning {
            pod_start: world.pod_start,
            rebalance: world.rebalance,
            ..Tuning::default()
        }),
        Scaler::Static(sized_for(peak, world)),
    ];
    v.extend(grid.thresholds.iter().map(|&threshold| Scaler::Keda {
        threshold,
        cached: grid.keda_cached,
    }));
    v
}

pub fn run(grid: &Grid, profiles: &[Profile]) -> Report {
    let mut rows = Vec::new();
    for &delays in &grid.delays {
        for profile in profiles {
            for &scale in &grid.scales {
                let scaled = profile.scaled(scale);
                for &capacity in &grid.capacities {
                    for &partitions in &grid.partitions {
                        let world = World {
                            replica_capacity: capacity,
                            partitions,
                            max_replicas: partitions,
                            pod_start: delays.0,
                            rebalance: delays.1,
                            slo: grid.slo,
                            commit_delay: 0.0,
                            pathology: None,
                        };
                        let workload =
                            format!("{} x{scale} cap {capacity} p{partitions}", profile.name);
                        rows.extend(workload_rows(grid, &scaled, &world, &workload));
                    }
                }
            }
        }
    }
    let totals = grid.delays.iter().map(|&d| totals(&rows, d)).collect();
    Report { rows, totals }
}

fn workload_rows(grid: &Grid, profile: &Profile, world: &World, workload: &str) -> Vec<Row> {
    let feasible = world.can_serve(profile.peak());
    let floor = floor(profile, world);
    scalers(grid, profile.peak(), world)
        .into_iter()
        .map(|scaler| {
            let o = simulate(profile, world, scaler);
            let policy = match scaler {
                Scaler::Static(_) => "static".to_string(),
                s => s.label(),
            };
            Row {
                workload: workload.to_string(),
                delays: (world.pod_start, world.rebalance),
                feasible,
                floor,
                policy,
                worst_age: o.max_age,
                seconds_over: o.seconds_over,
                replica_seconds: o.replica_seconds,
                scale_actions: o.scale_actions,
            }
        })
        .collect()
}

fn totals(rows: &[Row], delays: Delays) -> Totals {
    let mine: Vec<&Row> = rows
        .iter()
        .filter(|r| r.feasible && r.delays == delays)
        .collect();
    let mut labels: Vec<&str> = Vec::new();
    for r in &mine {
        if !labels.contains(&r.policy.as_str()) {
            labels.push(&r.policy);
        }
    }
    let policies: Vec<(String, usize, f64)> = labels
        .iter()
        .map(|label| {
            let of = mine.iter().filter(|r| r.policy == *label);
            let over = of.clone().filter(|r| r.seconds_over > 0).count();
            (label.to_string(), over, of.map(|r| r.replica_seconds).sum())
        })
        .collect();
    let cheapest_keda = policies
        .iter()
        .filter(|(l, over, _)| l.starts_with("keda") && *over == 0)
        .min_by(|a, b| a.2.total_cmp(&b.2))
        .map(|(l, _, c)| (l.clone(), *c));
    let mut workloads: Vec<&str> = mine.iter().map(|r| r.workload.as_str()).collect();
    workloads.dedup();
    let best_keda_per_workload = workloads
        .iter()
        .filter_map(|w| {
            mine.iter()
                .filter(|r| r.workload == *w && r.policy.starts_with("keda") && r.seconds_over == 0)
                .map(|r| r.replica_seconds)
                .min_by(f64::total_cmp)
        })
        .sum();
    let floor = mine
        .iter()
        .filter(|r| r.policy == "pixelpipe")
        .map(|r| r.floor)
        .sum();
    let pixelpipe = policies
        .iter()
        .find(|(l, _, _)| l == "pixelpipe")
        .map_or((0, 0.0), |(_, o, c)| (*o, *c));
    Totals {
        delays,
        workloads: workloads.len(),
        floor,
        policies,
        cheapest_keda,
        best_keda_per_workload,
        pixelpipe,
    }
}

impl Report {
    /// Every row, as CSV.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "workload,pod_start_s,rebalance_s,feasible,floor_replica_seconds,policy,worst_age_seconds,seconds_over_slo,replica_seconds,scale_actions\n",
        );
        for r in &self.rows {
            let _ = writeln!(
                out,
                "{},{},{},{},{:.0},{},{:.0},{},{:.0},{}",
                r.workload,
                r.delays.0,
                r.delays.1,
                r.feasible,
                r.floor,
                r.policy,
                r.worst_age,
                r.seconds_over,
                r.replica_seconds,
                r.scale_actions
            );
        }
        out
    }

    /// The totals per delay setting, in words and numbers.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for t in &self.totals {
            let (over, cost) = t.pixelpipe;
            let _ = writeln!(
                out,
                "pod start {} s, rebalance {} s: {} feasible workloads, floor {:.0} replica-seconds",
                t.delays.0, t.delays.1, t.workloads, t.floor
            );
            let _ = writeln!(
                out,
                "  pixelpipe: {over} workloads over the SLO, {cost:.0} replica-seconds = {:.2}x the floor",
                cost / t.floor
            );
            match &t.cheapest_keda {
                Some((label, keda)) => {
                    let _ = writeln!(
                        out,
                        "  cheapest single KEDA threshold with 0 s over the SLO: {label}, {keda:.0} replica-seconds ({:.2}x the floor); pixelpipe = {:.2}x it",
                        keda / t.floor,
                        cost / keda
                    );
                }
                None => {
                    let _ = writeln!(out, "  no single KEDA threshold holds the SLO everywhere");
                }
            }
            let _ = writeln!(
                out,
                "  each workload's own best KEDA threshold (a lower bound): {:.0} replica-seconds; pixelpipe = {:.2}x it",
                t.best_keda_per_workload,
                cost / t.best_keda_per_workload
            );
        }
        out
    }

    /// Totals per policy for each delay setting.
    pub fn table(&self) -> String {
        let mut out = self.summary();
        for t in &self.totals {
            let _ = writeln!(
                out,
                "\npod start {} s, rebalance {} s\n{:<18} {:>18} {:>16} {:>8}",
                t.delays.0,
                t.delays.1,
                "policy",
                "workloads over SLO",
                "replica-seconds",
                "x floor"
            );
            for (label, over, cost) in &t.policies {
                let _ = writeln!(
                    out,
                    "{label:<18} {over:>18} {cost:>16.0} {:>8.2}",
                    cost / t.floor
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The acceptance bar itself, with one default setting: no feasible
    /// workload over the SLO; at most 1.3x the floor with 30 s / 5 s delays
    /// and 1.5x with 60 s / 15 s; at most 0.8x the cheapest single KEDA
    /// threshold that also holds the SLO.
    #[test]
    fn the_default_policy_meets_the_acceptance_bar() {
        let report = run(&Grid::default(), &profiles());
        assert_eq!(report.rows.len(), 2 * 6 * 5 * 4 * 2 * 22);
        for (t, bound) in report.totals.iter().zip([1.3, 1.5]) {
            let (over, cost) = t.pixelpipe;
            assert_eq!(over, 0, "{}", report.table());
            assert!(cost <= bound * t.floor, "{}", report.table());
            let (_, keda) = t.cheapest_keda.clone().expect("a safe KEDA threshold");
            assert!(cost <= 0.8 * keda, "{}", report.table());
        }
        assert_eq!(report.csv().lines().count(), report.rows.len() + 1);
    }
}
