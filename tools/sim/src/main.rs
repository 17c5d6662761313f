use std::process::ExitCode;

use clap::Parser;
use pixelpipe_sim::cli::SimulateArgs;

fn main() -> anyhow::Result<ExitCode> {
    pixelpipe_sim::report::run(&SimulateArgs::parse())
}
