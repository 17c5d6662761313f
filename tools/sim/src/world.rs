//! The simulated system: a consumer group of worker replicas over the input
//! partitions, on one-second steps.
//!
//! - Events arrive at the profile's rate, spread evenly over the partitions
//!   (a hot partition gets more). Each Ready replica processes up to its
//!   capacity; the replica with the most partitions is the bottleneck, so every
//!   partition gets that replica's share.
//! - A new pod is Ready after the pod start (or never, in that pathology);
//!   every change of the Ready members pauses all consumption for the
//!   rebalance pause.
//! - Offsets are committed every 2 s, `commit_delay` seconds after the events
//!   were processed (fetch to commit); the oldest event's age is exact (FIFO).
//! - Each observation the workers report what they processed and how busy
//!   their bottleneck was, as the real ones do; the policy learns capacity
//!   from that, never from the model's parameter.

/// How often offsets are committed, seconds.
pub const COMMIT_EVERY: usize = 2;

/// What goes wrong, from `from` to `until` seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pathology {
    pub kind: Trouble,
    pub from: f64,
    pub until: f64,
}

impl Pathology {
    pub fn active(&self, t: f64) -> bool {
        self.from <= t && t < self.until
    }
}

/// The pathologies the simulator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// Fetch to commit takes 15 s, longer than the observation interval.
    SlowCommit,
    /// Partition 0 stops: its head event is never acknowledged.
    StuckPartition,
    /// Partition 0 gets 1.5x one replica's capacity of arrivals on top.
    HotPartition,
    /// Pods created in the window never become Ready.
    NeverReady,
    /// A slow partner: each replica's throughput halves (its workers wait on
    /// acknowledgements).
    SlowPartner,
    /// A partner that takes at most half of what arrives, whatever the replicas.
    PartnerLimit,
    /// Capacity drifts +-20 % over half an hour.
    Drift,
}

impl Trouble {
    pub const ALL: [Trouble; 7] = [
        Trouble::SlowCommit,
        Trouble::StuckPartition,
        Trouble::HotPartition,
        Trouble::NeverReady,
        Trouble::SlowPartner,
        Trouble::PartnerLimit,
        Trouble::Drift,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Trouble::SlowCommit => "slow-commit",
            Trouble::StuckPartition => "stuck-partition",
            Trouble::HotPartition => "hot-partition",
            Trouble::NeverReady => "never-ready",
            Trouble::SlowPartner => "slow-partner",
            Trouble::PartnerLimit => "partner-limit",
            Trouble::Drift => "drift",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// The system being scaled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct World {
    /// Events/s one replica processes.
    pub replica_capacity: f64,
    pub partitions: i32,
    pub max_replicas: i32,
    pub pod_start: f64,
    pub rebalance: f64,
    pub slo: f64,
    /// Seconds from processing to the commit that covers it (besides the
    /// 2 s commit cadence).
    pub commit_delay: f64,
    pub pathology: Option<Pathology>,
}

impl World {
    /// Whether any policy could hold the SLO: the peak fits the partitions.
    pub fn can_serve(&self, peak: f64) -> bool {
        peak <= f64::from(self.partitions.min(self.max_replicas)) * self.replica_capacity
    }

    fn trouble(&self, t: f64) -> Option<Trouble> {
        self.pathology.filter(|p| p.active(t)).map(|p| p.kind)
    }

    /// Events/s one replica processes at `t`.
    pub fn capacity_at(&self, t: f64) -> f64 {
        let c = self.replica_capacity;
        match self.trouble(t) {
            Some(Trouble::SlowPartner) => c * 0.5,
            Some(Trouble::Drift) => c * (1.0 + 0.2 * (t / 1_800.0 * std::f64::consts::TAU).sin()),
            _ => c,
        }
    }

    pub fn commit_delay_at(&self, t: f64) -> f64 {
        match self.trouble(t) {
            Some(Trouble::SlowCommit) => 15.0,
            _ => self.commit_delay,
        }
    }

    pub fn stuck_at(&self, t: f64) -> bool {
        self.trouble(t) == Some(Trouble::StuckPartition)
    }

    /// Extra arrivals on partition 0 at `t`.
    pub fn hot_extra_at(&self, t: f64) -> f64 {
        match self.trouble(t) {
            Some(Trouble::HotPartition) => 1.5 * self.replica_capacity,
            _ => 0.0,
        }
    }

    pub fn never_ready_at(&self, t: f64) -> bool {
        self.trouble(t) == Some(Trouble::NeverReady)
    }

    /// The most events/s the partner takes at `t`, given what arrives.
    pub fn partner_limit_at(&self, t: f64, arrivals: f64) -> Option<f64> {
        (self.trouble(t) == Some(Trouble::PartnerLimit)).then_some(0.5 * arrivals)
    }

    /// Whether the workers wait on acknowledgements at `t`.
    pub fn delivery_bound_at(&self, t: f64) -> bool {
        matches!(
            self.trouble(t),
            Some(Trouble::SlowPartner | Trouble::PartnerLimit)
        )
    }

    /// Replicas the arrivals at `t` need at the least: `ceil(rate / capacity)`,
    /// capped at the partitions (the floor's term for one second).
    pub fn floor_at(&self, t: f64, rate: f64) -> f64 {
        let c = self.capacity_at(t);
        (rate / c)
            .ceil()
            .clamp(1.0, f64::from(self.partitions.min(self.max_replicas)))
    }
}
