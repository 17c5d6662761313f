//! `pixelpipe-operator simulate`: runs the simulator and prints its tables.

use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::cli::SimulateArgs;
use crate::matrix::{self, CSV_PROFILES, Grid};
use crate::simulate::{Profile, Scaler, World, simulate as run_one, sized_for};
use pixelpipe_policy::Tuning;

fn profile(name: &str) -> anyhow::Result<Profile> {
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

pub fn simulate(args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    if args.matrix {
        let grid = Grid {
            pod_start: args.pod_start_seconds,
            rebalance: args.rebalance_seconds,
            slo: args.slo_seconds,
            ..Grid::default()
        };
        let report = matrix::run(&grid, &matrix::profiles());
        print!("{}", report.table());
        if let Some(path) = &args.matrix_csv {
            std::fs::write(path, report.csv())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !(args.scale > 0.0
        && args.replica_capacity > 0.0
        && args.partitions > 0
        && args.slo_seconds > 0.0)
    {
        bail!("--scale, --replica-capacity, --partitions and --slo-seconds must be positive");
    }
    let p = profile(&args.profile)?.scaled(args.scale);
    let world = World {
        replica_capacity: args.replica_capacity,
        partitions: args.partitions,
        max_replicas: args.partitions,
        pod_start: args.pod_start_seconds,
        rebalance: args.rebalance_seconds,
        slo: args.slo_seconds,
    };
    println!(
        "profile {} x{}: {} s, peak {:.0}/s; replica capacity {:.0}/s, {} partitions, pod start {} s, rebalance {} s, SLO {} s{}",
        p.name,
        args.scale,
        p.rates.len(),
        p.peak(),
        args.replica_capacity,
        args.partitions,
        args.pod_start_seconds,
        args.rebalance_seconds,
        args.slo_seconds,
        if world.can_serve(&p) {
            ""
        } else {
            " (the peak exceeds what the partitions can serve)"
        }
    );
    let mut scalers = vec![
        Scaler::Pixelpipe(Tuning::default()),
        Scaler::Static(sized_for(p.peak(), &world)),
    ];
    scalers.extend(args.keda_thresholds.iter().map(|&t| Scaler::Keda(t)));
    println!(
        "{:<16} {:>10} {:>12} {:>15} {:>15} {:>8}",
        "policy", "max age s", "s over SLO", "replica-s", "worker-s", "actions"
    );
    let mut runs = Vec::new();
    for scaler in scalers {
        let o = run_one(&p, &world, scaler);
        println!(
            "{:<16} {:>10.0} {:>12} {:>15.0} {:>15.0} {:>8}",
            scaler.label(),
            o.max_age,
            o.seconds_over,
            o.replica_seconds,
            o.worker_seconds,
            o.scale_actions
        );
        runs.push((scaler.label(), o));
    }
    if let Some((_, pp)) = runs.first() {
        println!("\npixelpipe's decisions:");
        for r in &pp.reasons {
            println!("  {r}");
        }
    }
    if let Some(path) = &args.chart {
        crate::chart::draw(path, &p.name, args.slo_seconds, &runs)?;
        println!("\nchart: {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
