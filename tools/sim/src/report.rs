//! `pixelpipe-sim`: runs the simulator and prints tables or JSON.

use std::process::ExitCode;

use anyhow::{Context, bail};
use pixelpipe_policy::Tuning;
use serde::Serialize;

use crate::cli::{Format, SimulateArgs};
use crate::matrix::{self, CSV_PROFILES, Grid};
use crate::pathology;
use crate::profile::Profile;
use crate::simulate::{Outcome, Scaler, floor, simulate, sized_for};
use crate::world::{Pathology, Trouble, World};

/// A built-in profile, a CSV profile of the matrix, or a CSV file.
pub fn profile(name: &str) -> anyhow::Result<Profile> {
    if let Some(p) = Profile::builtin(name) {
        return Ok(p);
    }
    if let Some((n, text)) = CSV_PROFILES.iter().find(|(n, _)| *n == name) {
        return Profile::from_csv(n, text).map_err(anyhow::Error::msg);
    }
    let text = std::fs::read_to_string(name)
        .with_context(|| format!("{name} is neither a built-in profile nor a readable file"))?;
    Profile::from_csv(name, &text).map_err(|e| anyhow::anyhow!("{name}: {e}"))
}

pub fn run(args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    if args.matrix {
        return run_matrix(args);
    }
    if args.pathologies {
        print!("{}", pathology::table());
        return Ok(ExitCode::SUCCESS);
    }
    run_profile(args)
}

fn run_matrix(args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    let grid = Grid {
        slo: args.slo_seconds,
        keda_cached: args.keda_cached,
        ..Grid::default()
    };
    let report = matrix::run(&grid, &matrix::profiles());
    match args.format {
        Format::Text => print!("{}", report.table()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&matrix_json(&report))?),
    }
    if let Some(path) = &args.matrix_csv {
        std::fs::write(path, report.csv())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn world(args: &SimulateArgs) -> anyhow::Result<World> {
    if !(args.scale > 0.0
        && args.replica_capacity > 0.0
        && args.partitions > 0
        && args.slo_seconds > 0.0)
    {
        bail!("--scale, --replica-capacity, --partitions and --slo-seconds must be positive");
    }
    let pathology = match &args.pathology {
        None => None,
        Some(name) => {
            let kind = Trouble::from_name(name).with_context(|| {
                let known: Vec<&str> = Trouble::ALL.iter().map(|t| t.name()).collect();
                format!("unknown pathology {name:?} (known: {})", known.join(", "))
            })?;
            Some(Pathology {
                kind,
                from: args.pathology_from,
                until: args.pathology_until,
            })
        }
    };
    Ok(World {
        replica_capacity: args.replica_capacity,
        partitions: args.partitions,
        max_replicas: args.partitions,
        pod_start: args.pod_start_seconds,
        rebalance: args.rebalance_seconds,
        slo: args.slo_seconds,
        commit_delay: 0.0,
        pathology,
    })
}

fn run_profile(args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    let p = profile(&args.profile)?.scaled(args.scale);
    let world = world(args)?;
    let tuning = Tuning {
        pod_start: world.pod_start,
        rebalance: world.rebalance,
        ..Tuning::default()
    };
    let mut scalers = vec![
        Scaler::Pixelpipe(tuning),
        Scaler::Static(sized_for(p.peak(), &world)),
    ];
    scalers.extend(args.keda_thresholds.iter().map(|&threshold| Scaler::Keda {
        threshold,
        cached: args.keda_cached,
    }));
    let runs: Vec<(String, Outcome)> = scalers
        .iter()
        .map(|&s| (s.label(), simulate(&p, &world, s)))
        .collect();
    let floor = floor(&p, &world);
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&profile_json(&p, floor, &runs))?
        ),
        Format::Text => print!("{}", profile_table(&p, &world, floor, &runs)),
    }
    if let Some(path) = &args.chart {
        crate::chart::draw(path, &p.name, args.slo_seconds, &runs)?;
        eprintln!("chart: {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn profile_table(p: &Profile, world: &World, floor: f64, runs: &[(String, Outcome)]) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "profile {}: {} s, peak {:.0}/s; {:.0}/s per replica, {} partitions, pod start {} s, rebalance {} s, SLO {} s{}\nfloor: {floor:.0} replica-seconds\n",
        p.name,
        p.rates.len(),
        p.peak(),
        world.replica_capacity,
        world.partitions,
        world.pod_start,
        world.rebalance,
        world.slo,
        if world.can_serve(p.peak()) {
            ""
        } else {
            " (the peak exceeds what the partitions can serve)"
        }
    );
    let _ = writeln!(
        out,
        "{:<18} {:>10} {:>12} {:>14} {:>8} {:>8}",
        "policy", "worst age", "s over SLO", "replica-s", "x floor", "actions"
    );
    for (label, o) in runs {
        let _ = writeln!(
            out,
            "{label:<18} {:>10.0} {:>12} {:>14.0} {:>8.2} {:>8}",
            o.max_age,
            o.seconds_over,
            o.replica_seconds,
            o.replica_seconds / floor,
            o.scale_actions
        );
    }
    if let Some((_, pp)) = runs.first() {
        let _ = writeln!(out, "\npixelpipe's decisions:");
        for r in &pp.reasons {
            let _ = writeln!(out, "  {r}");
        }
    }
    out
}

/// One policy's result, as `--format json` prints it.
#[derive(Debug, Serialize)]
struct PolicyJson {
    policy: String,
    replica_seconds: f64,
    seconds_over_slo: u64,
    worst_age_seconds: f64,
    scale_actions: u32,
}

#[derive(Debug, Serialize)]
struct ProfileJson {
    profile: String,
    floor_replica_seconds: f64,
    policies: Vec<PolicyJson>,
}

fn profile_json(p: &Profile, floor: f64, runs: &[(String, Outcome)]) -> ProfileJson {
    ProfileJson {
        profile: p.name.clone(),
        floor_replica_seconds: floor,
        policies: runs
            .iter()
            .map(|(label, o)| PolicyJson {
                policy: label.clone(),
                replica_seconds: o.replica_seconds,
                seconds_over_slo: o.seconds_over,
                worst_age_seconds: o.max_age,
                scale_actions: o.scale_actions,
            })
            .collect(),
    }
}

#[derive(Debug, Serialize)]
struct TotalsJson {
    pod_start_seconds: f64,
    rebalance_seconds: f64,
    feasible_workloads: usize,
    floor_replica_seconds: f64,
    cheapest_safe_keda: Option<String>,
    cheapest_safe_keda_replica_seconds: Option<f64>,
    best_keda_per_workload_replica_seconds: f64,
    policies: Vec<(String, usize, f64)>,
}

fn matrix_json(r: &matrix::Report) -> Vec<TotalsJson> {
    r.totals
        .iter()
        .map(|t| TotalsJson {
            pod_start_seconds: t.delays.0,
            rebalance_seconds: t.delays.1,
            feasible_workloads: t.workloads,
            floor_replica_seconds: t.floor,
            cheapest_safe_keda: t.cheapest_keda.as_ref().map(|k| k.0.clone()),
            cheapest_safe_keda_replica_seconds: t.cheapest_keda.as_ref().map(|k| k.1),
            best_keda_per_workload_replica_seconds: t.best_keda_per_workload,
            policies: t.policies.clone(),
        })
        .collect()
}
