//! The simulator's flags.

use clap::{Parser, ValueEnum};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Runs Pixelpipe's autoscaling policy against a traffic profile, next to a
/// static size and KEDA's Kafka scaler through the HPA, on simulated time.
#[derive(Debug, Clone, Parser)]
#[command(name = "pixelpipe-sim", version)]
pub struct SimulateArgs {
    /// A built-in profile (steady, diurnal, flash-sale, sharp-spike, slow-ramp,
    /// double-surge) or a CSV file with the header `seconds,events_per_second`
    /// (the operator's `/pipelines/<namespace>/<name>/arrivals.csv` is one).
    #[arg(long, default_value = "flash-sale", conflicts_with = "matrix")]
    pub profile: String,
    /// Multiplies the profile's rates.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Events per second one replica processes.
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
    #[arg(long, value_delimiter = ',', default_values_t = [30_000.0, 100_000.0])]
    pub keda_thresholds: Vec<f64>,
    /// KEDA with `useCachedMetrics: true` (the lag of the last 30 s poll)
    /// instead of a fresh lag at every HPA sync.
    #[arg(long)]
    pub keda_cached: bool,
    /// A pathology during the run: slow-commit, stuck-partition,
    /// hot-partition, never-ready, slow-partner, partner-limit, drift.
    #[arg(long)]
    pub pathology: Option<String>,
    /// Seconds into the run the pathology starts.
    #[arg(long, default_value_t = 1_800.0, requires = "pathology")]
    pub pathology_from: f64,
    /// Seconds into the run the pathology ends.
    #[arg(long, default_value_t = 3_600.0, requires = "pathology")]
    pub pathology_until: f64,
    /// Text tables, or JSON for scripts.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write a PNG chart of age, arrivals and replicas over time here.
    #[arg(long)]
    pub chart: Option<std::path::PathBuf>,
    /// Run the whole acceptance matrix instead: all profiles, scales 0.1x-4x,
    /// capacities 500-20000/s, 24 and 96 partitions, both delay settings.
    #[arg(long)]
    pub matrix: bool,
    /// With --matrix: also write every row (every policy, every workload) as CSV here.
    #[arg(long, requires = "matrix")]
    pub matrix_csv: Option<std::path::PathBuf>,
    /// Run every pathology instead, against Pixelpipe and KEDA.
    #[arg(long, conflicts_with = "matrix")]
    pub pathologies: bool,
}
