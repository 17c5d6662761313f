//! Command-line flags, each with an environment fallback.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use pixelpipe_worker::cli::LogFormat;

/// The Pixelpipe operator: reconciles PixelPipelines into worker Deployments
/// and keeps their pools and replicas sized to hold the SLO.
#[derive(Debug, Parser)]
#[command(name = "pixelpipe-operator", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format.
    #[arg(long, global = true, env = "PIXELPIPE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator against the cluster of the current kubeconfig (or the
    /// in-cluster service account).
    Run(RunArgs),
    /// Print the PixelPipeline CustomResourceDefinition as YAML.
    Crd,
    /// Run the autoscaling policy against a traffic profile, next to a static
    /// size and KEDA-style scaling, on simulated time.
    Simulate(SimulateArgs),
}

#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// A built-in profile (steady, diurnal, flash-sale, sharp-spike, slow-ramp,
    /// double-surge) or a CSV file with the header `seconds,events_per_second`.
    #[arg(long, default_value = "flash-sale", conflicts_with = "matrix")]
    pub profile: String,
    /// Multiplies the profile's rates.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Events per second one replica processes with its pools at their maximum.
    #[arg(long, default_value_t = 5_000.0)]
    pub replica_capacity: f64,
    /// Input partitions (and the most replicas).
    #[arg(long, default_value_t = 24)]
    pub partitions: i32,
    /// Seconds from a scale-up until the new pod consumes.
    #[arg(long, default_value_t = 60.0)]
    pub pod_start_seconds: f64,
    /// Seconds all consumption pauses when the group's members change.
    #[arg(long, default_value_t = 15.0)]
    pub rebalance_seconds: f64,
    /// The SLO on the oldest event's age.
    #[arg(long, default_value_t = 300.0)]
    pub slo_seconds: f64,
    /// KEDA lag thresholds (messages) to compare, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000.0, 10_000.0, 100_000.0])]
    pub keda_thresholds: Vec<f64>,
    /// Write a PNG chart of age, arrivals and replicas over time here.
    #[arg(long)]
    pub chart: Option<std::path::PathBuf>,
    /// Run the whole acceptance matrix instead: all profiles, scales 0.1x-4x,
    /// capacities 500-20000/s, 24 and 96 partitions.
    #[arg(long)]
    pub matrix: bool,
    /// With --matrix: also write every row (every policy, every workload) as CSV here.
    #[arg(long, requires = "matrix")]
    pub matrix_csv: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Reconcile PixelPipelines in this namespace only (all namespaces when unset).
    #[arg(long, env = "PIXELPIPE_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "PIXELPIPE_OPERATOR_ADMIN_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub admin_addr: SocketAddr,
    /// Namespace of the leader-election Lease (the operator's own, in a cluster).
    #[arg(long, env = "POD_NAMESPACE", default_value = "pixelpipe-system")]
    pub lease_namespace: String,
    /// Name of the leader-election Lease; replicas sharing it elect one leader.
    #[arg(
        long,
        env = "PIXELPIPE_LEASE_NAME",
        default_value = "pixelpipe-operator"
    )]
    pub lease_name: String,
    /// This replica's identity in the Lease (the pod name, in a cluster).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a leader that stopped renewing keeps the Lease before a standby
    /// takes over.
    #[arg(long, env = "PIXELPIPE_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// Seconds between Lease renewals (and a standby's attempts to take it).
    #[arg(long, env = "PIXELPIPE_LEASE_RENEW_SECONDS", default_value_t = 5)]
    pub lease_renew_seconds: u64,
    /// Seconds before an unchanged healthy pipeline is reconciled again.
    #[arg(long, env = "PIXELPIPE_RESYNC_SECONDS", default_value_t = 300)]
    pub resync_seconds: u64,
    /// Pipelines reconciled at once, at most.
    #[arg(long, env = "PIXELPIPE_RECONCILE_CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,
}

impl RunArgs {
    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "pixelpipe-operator".into());
            format!("{host}-{}", std::process::id())
        })
    }

    pub fn lease_duration(&self) -> Duration {
        Duration::from_secs(self.lease_duration_seconds.max(1))
    }

    pub fn lease_renew(&self) -> Duration {
        Duration::from_secs(
            self.lease_renew_seconds
                .clamp(1, self.lease_duration_seconds.max(1)),
        )
    }
}
