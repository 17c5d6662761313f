use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use pixelpipe_crds::PipelineFile;
use pixelpipe_crds::worker::WorkerArgs;
use pixelpipe_worker::pipeline::{Exit, run};
use pixelpipe_worker::settings::Settings;

// mimalloc returns memory to the OS promptly and keeps per-thread caches small;
// glibc's per-thread arenas hold on to what the stage threads freed, which made
// peak RSS depend on how long the worker had been busy.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let malloc_set = pixelpipe_worker::malloc::keep_freed_memory();
    let args = WorkerArgs::parse();
    pixelpipe_runtime::logging::init(args.log_format);
    if !malloc_set {
        tracing::warn!("the C library refused malloc's thresholds; librdkafka's buffers may fault");
    }
    let file = PipelineFile::load(&args.config).context("loading the pipeline file")?;
    let settings = Settings::from_args(&args).context("reading the Kafka credentials")?;
    let exit = run(settings, file, pixelpipe_runtime::shutdown::signal()).await?;
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
