//! Why the policy decided what it did, as data; its `Display` is the sentence
//! the status and the Events carry.

use std::fmt;

use crate::count;

/// Why the policy decided what it did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reason {
    pub oldest_age: f64,
    pub slo_seconds: f64,
    pub why: Why,
    /// Pools shrink too: light load at the fewest replicas.
    pub smaller_pools: bool,
}

/// The rule that decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Why {
    /// Behind with pools below their maximum: pools first, no rebalance.
    PoolsFirst { backlog: f64 },
    /// Lag but nothing committed: more replicas do not unstick a group.
    Stalled,
    /// More replicas: the required rate is above what runs.
    Above {
        arrivals: f64,
        required: f64,
        headroom: f64,
        capacity: Option<f64>,
    },
    /// Fewer replicas: the required rate stayed well below for the window.
    WellBelow {
        required: f64,
        capacity: Option<f64>,
        window: f64,
    },
    /// No change.
    Within {
        arrivals: f64,
        capacity: Option<f64>,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "oldest event {:.0} s of {:.0} s SLO, {}",
            self.oldest_age, self.slo_seconds, self.why
        )?;
        if self.smaller_pools {
            write!(f, "; light load: smaller pools")?;
        }
        Ok(())
    }
}

/// "capacity 9.0k/s" or "capacity not yet learned".
struct CapacityWords(Option<f64>);

impl fmt::Display for CapacityWords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(c) => write!(f, "capacity {}/s", count(c)),
            None => write!(f, "capacity not yet learned"),
        }
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Why::PoolsFirst { backlog } => write!(
                f,
                "backlog {}: pools to their maximum before adding replicas",
                count(backlog)
            ),
            Why::Stalled => write!(f, "processing stalled: holding sizes"),
            Why::Above {
                arrivals,
                required,
                headroom,
                capacity,
            } => write!(
                f,
                "arrivals {}/s, required {}/s ({}/s with headroom) above {}",
                count(arrivals),
                count(required),
                count(required * headroom),
                CapacityWords(capacity)
            ),
            Why::WellBelow {
                required,
                capacity,
                window,
            } => write!(
                f,
                "required {}/s well below {} for {window:.0} s",
                count(required),
                CapacityWords(capacity)
            ),
            Why::Within { arrivals, capacity } => write!(
                f,
                "arrivals {}/s within {}",
                count(arrivals),
                CapacityWords(capacity)
            ),
        }
    }
}
