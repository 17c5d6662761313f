//! The simulator's flags.

use clap::Parser;

/// Runs Pixelpipe's autoscaling policy against a traffic profile, next to a
/// static size and KEDA-style scaling, on simulated time.
#[derive(Debug, Clone, Parser)]
#[command(name = "pixelpipe-sim", version)]
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
