use std::process::ExitCode;

use clap::Parser;
use pixelpipe_operator::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    pixelpipe_runtime::logging::init(cli.log_format);
    match cli.command {
        Command::Crd => {
            print!("{}", pixelpipe_crds::crd_yaml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => pixelpipe_operator::run::run(args).await,
    }
}
