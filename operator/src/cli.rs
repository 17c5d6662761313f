//! Command-line flags, each with an environment fallback.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use pixelpipe_crds::worker::LogFormat;

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
    /// Pipelines reconciled at once, at most. A reconcile mostly waits on
    /// the API server and Kafka (about 45 ms each at 1,000 pipelines on the
    /// test machine), so 4 at once capped the operator near 90 observations
    /// a second, under the 100 that 1,000 pipelines at 10 s need; the Kafka
    /// client pool still bounds the snapshots read at once.
    #[arg(long, env = "PIXELPIPE_RECONCILE_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// Kafka clients the lag observer opens per cluster and credentials, at
    /// most: the pipelines on a cluster share them, and each snapshot holds
    /// one while it reads, so this also bounds the snapshots read at once.
    #[arg(long, env = "PIXELPIPE_KAFKA_CLIENTS_PER_CLUSTER", default_value_t = 2)]
    pub kafka_clients_per_cluster: u16,
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
