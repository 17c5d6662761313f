use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pixelpipe_local::rig::Platform;
use pixelpipe_local::runner::{self, Runner};
use pixelpipe_local::story::{self, Env, Scenario};
use pixelpipe_runtime::KafkaSettings;
use tokio_util::sync::CancellationToken;

/// Pixelpipe on one machine: the flash-sale demo on a real node, and the
/// stand-in runner the fast tests use (Deployments as local processes).
#[derive(Debug, Parser)]
#[command(name = "pixelpipe-local", version)]
struct Args {
    /// Where the Pixelpipe binaries are; defaults to this binary's directory.
    #[arg(long, global = true)]
    bin_dir: Option<PathBuf>,
    /// Pod directories, logs and the chart go here.
    #[arg(long, global = true, default_value = "target/pixelpipe-local")]
    work_dir: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs every Deployment of a namespace whose image is a Pixelpipe binary
    /// as local processes, until Ctrl-C.
    Run {
        #[arg(long, default_value = "pixelpipe-system")]
        namespace: String,
        /// Processes this node runs at most (the kubelet's `--max-pods`);
        /// pods past it stay Pending.
        #[arg(long)]
        max_pods: Option<usize>,
    },
    /// The flash-sale story on a real node (tests/env/node.sh): manifests, a
    /// PixelPipeline, a 3x surge, the summary.
    Demo {
        /// Kafka bootstrap servers, as this machine reaches them.
        #[arg(long, env = "KAFKA_BOOTSTRAP")]
        bootstrap_servers: String,
        /// Kafka bootstrap servers, as the node's pods reach them.
        #[arg(long, env = "KAFKA_POD_BOOTSTRAP")]
        pod_bootstrap_servers: String,
        /// The shorter story the end-to-end test runs.
        #[arg(long)]
        short: bool,
        /// Each worker pod's CPU request and limit (Kubernetes quantity); the
        /// load is set against what one worker takes in at it, measured first.
        #[arg(long, env = "DEMO_WORKER_CPU", default_value = story::WORKER_CPU)]
        worker_cpu: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let bin_dir = match args.bin_dir {
        Some(d) => d,
        None => std::env::current_exe()?
            .parent()
            .context("this binary has no directory")?
            .to_path_buf(),
    };
    let kubeconfig = PathBuf::from(
        std::env::var("KUBECONFIG").context("KUBECONFIG must name the API server's kubeconfig")?,
    );
    let client = kube::Client::try_default().await?;
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        pixelpipe_runtime::shutdown::signal().await;
        eprintln!("stopping: every process gets SIGTERM and drains");
        on_signal.cancel();
    });
    std::fs::create_dir_all(&args.work_dir)?;
    let work_dir = std::fs::canonicalize(&args.work_dir)?;
    match args.command {
        Cmd::Run {
            namespace,
            max_pods,
        } => {
            let runner = Runner::new(
                client,
                runner::Config {
                    namespace,
                    bin_dir,
                    work_dir,
                    kubeconfig,
                    extra_env: Vec::new(),
                    interval: Duration::from_millis(500),
                    max_pods: max_pods.map(|n| Arc::new(AtomicUsize::new(n))),
                },
            );
            runner.run(stop).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Demo {
            bootstrap_servers,
            pod_bootstrap_servers,
            short,
            worker_cpu,
        } => {
            let env = Env {
                client,
                kubeconfig,
                kafka: KafkaSettings {
                    bootstrap_servers,
                    options: Vec::new(),
                    ..KafkaSettings::default()
                },
                repo: std::env::current_dir()?,
                bin_dir,
                work_dir,
                platform: Platform::Node {
                    pod_bootstrap: pod_bootstrap_servers,
                },
            };
            let mut scenario = if short {
                Scenario::test()
            } else {
                Scenario::demo()
            };
            scenario.worker_cpu = worker_cpu;
            let report = match story::run(&env, &scenario, stop.clone()).await {
                Ok(r) => r,
                Err(_) if stop.is_cancelled() => {
                    eprintln!("interrupted: every process it started has stopped");
                    return Ok(ExitCode::from(130));
                }
                Err(e) => return Err(e),
            };
            print!("{}", report.render());
            Ok(
                if report.counts_reconcile() && report.max_age <= report.slo_seconds {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                },
            )
        }
    }
}
