use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pixelpipe_bench::designs::{self, Design};
use pixelpipe_bench::profile::Profile;
use pixelpipe_bench::suite::{self, Plan};
use pixelpipe_crds::PipelineFile;
use pixelpipe_crds::worker::WorkerArgs;
use pixelpipe_worker::settings::Settings;
use tokio_util::sync::CancellationToken;

// The same allocator as the worker, so memory is compared like for like.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Benchmarks Pixelpipe against the pass-through ceiling and the unbounded design.
#[derive(Debug, Parser)]
#[command(name = "pixelpipe-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// The whole benchmark against the broker at KAFKA_BOOTSTRAP; prints
    /// Markdown tables.
    Run {
        #[arg(long, env = "KAFKA_BOOTSTRAP")]
        bootstrap_servers: String,
        /// Seconds, tiny input, one run: checks that the benchmark works.
        #[arg(long)]
        smoke: bool,
        /// Runs per measurement; the tables show medians.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Input events per measurement of the main table.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Extra flags for every design under test (the worker's flags), after
        /// the tuned ones, to try settings: --extra=--batch-max-events=1000.
        #[arg(long, allow_hyphen_values = true)]
        extra: Vec<String>,
        /// Only the designs table.
        #[arg(long)]
        designs_only: bool,
        /// The broker's process, when it runs on this machine: its CPU per
        /// event is measured beside each design's, and the rounds wait
        /// until it holds still.
        #[arg(long, env = "PIXELPIPE_BENCH_BROKER_PID")]
        broker_pid: Option<u32>,
    },
    /// Where a worker's CPU goes: reads `perf script -F comm,tid,ip,sym`
    /// on stdin, prints each role's share (tools/bench/profile.sh runs it).
    Profile {
        /// The process's CPU per event over the samples' window: each role's
        /// share is also given in microseconds per event.
        #[arg(long)]
        us_per_event: Option<f64>,
    },
    /// Preloads the benchmark's input (1 KB events, 6 partitions, each with
    /// its partner count in a header) and prints the topic's name.
    Preload {
        #[arg(long, env = "KAFKA_BOOTSTRAP")]
        bootstrap_servers: String,
        #[arg(long)]
        events: usize,
    },
    /// Deletes topics: tools/bench/alternate.sh's partner topics after each run.
    DeleteTopics {
        #[arg(long, env = "KAFKA_BOOTSTRAP")]
        bootstrap_servers: String,
        topics: Vec<String>,
    },
    /// One comparison design as a process (the benchmark starts these).
    Design {
        #[arg(long, value_enum)]
        design: Design,
        #[command(flatten)]
        worker: Box<WorkerArgs>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    // The designs use librdkafka as the worker does, so its malloc is set alike.
    anyhow::ensure!(
        pixelpipe_worker::malloc::keep_freed_memory(),
        "the C library refused malloc's thresholds"
    );
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run {
            bootstrap_servers,
            smoke,
            runs,
            events,
            extra,
            designs_only,
            broker_pid,
        } => {
            let mut plan = if smoke {
                Plan::smoke(bootstrap_servers)
            } else {
                Plan::full(bootstrap_servers, runs, events)
            };
            plan.extra.extend(extra);
            plan.designs_only = designs_only;
            plan.broker_pid = broker_pid;
            let ok = suite::run(&plan).await?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Profile { us_per_event } => {
            let text = std::io::read_to_string(std::io::stdin())?;
            let profile = Profile::of_perf_script(&text).with_us_per_event(us_per_event);
            print!("{profile}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Preload {
            bootstrap_servers,
            events,
        } => {
            println!("{}", suite::preload_input(bootstrap_servers, events).await?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::DeleteTopics {
            bootstrap_servers,
            topics,
        } => {
            let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
            suite::delete_topics_at(bootstrap_servers, &topics).await;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Design { design, worker } => {
            pixelpipe_runtime::logging::init(worker.log_format);
            let config = PipelineFile::load(&worker.config)?;
            let stop = CancellationToken::new();
            let on_signal = stop.clone();
            tokio::spawn(async move {
                pixelpipe_runtime::shutdown::signal().await;
                on_signal.cancel();
            });
            designs::run(design, Settings::from_args(&worker)?, config, stop).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
