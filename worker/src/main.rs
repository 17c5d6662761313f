use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use pixelpipe_worker::cli::{Args, init_logging};
use pixelpipe_worker::config::PipelineConfig;
use pixelpipe_worker::pipeline::{Exit, run};
use pixelpipe_worker::shutdown;

// mimalloc returns memory to the OS promptly and keeps per-thread caches small;
// glibc's per-thread arenas hold on to what the stage threads freed, which made
// peak RSS depend on how long the worker had been busy.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    init_logging(args.log_format);
    let config = PipelineConfig::load(&args.config).context("loading the pipeline file")?;
    let settings = args.settings().context("reading the Kafka credentials")?;
    let exit = run(settings, config, shutdown::signal()).await?;
    Ok(match exit {
        Exit::Clean => ExitCode::SUCCESS,
        Exit::GraceExceeded { in_flight_jobs } => {
            tracing::warn!(
                in_flight_jobs,
                "shutdown grace exceeded; uncommitted events will be read again"
            );
            ExitCode::from(1)
        }
        Exit::Fatal(reason) => {
            tracing::error!(%reason, "stopped on a fatal error");
            ExitCode::from(2)
        }
    })
}
