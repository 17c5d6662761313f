//! Why the policy decided what it did, as data; its `Display` is the sentence
//! the status and the Events carry.

use std::fmt;

use crate::count;
use crate::health::{Numbers, Offsets};
use crate::observation::PartitionView;

/// Why the policy decided what it did.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    /// The oldest unprocessed event's age over all partitions (`None`: a
    /// lagging partition's oldest record could not be read).
    pub oldest_age: Option<f64>,
    pub slo_seconds: f64,
    pub why: Why,
}

/// The rule that decided the replica count; [`Why::kind`] names it.
#[derive(Debug, Clone, PartialEq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Why {
    /// No evidence of capacity yet and no backlog building: nothing to decide.
    Learning,
    /// No evidence of capacity yet and a backlog building: double.
    Doubling { backlog: f64 },
    /// Lag everywhere and nothing committed: more replicas do not unstick a group.
    Stalled,
    /// Arrivals above capacity, but the oldest event stays under the target
    /// until added replicas could arrive: absorbed.
    Absorbing {
        arrivals: f64,
        capacity: f64,
        target: f64,
    },
    /// More replicas: waiting would pass the target.
    Up {
        arrivals: f64,
        capacity: f64,
        backlog: f64,
        target: f64,
    },
    /// More replicas would help, but a limit says they cannot.
    Capped {
        arrivals: f64,
        capacity: f64,
        limit: Limit,
    },
    /// Fewer replicas carry the arrivals, or nearly (within the down
    /// tolerance), for a whole window.
    Down {
        arrivals: f64,
        capacity: f64,
        window: f64,
    },
    /// Within capacity.
    Within { arrivals: f64, capacity: f64 },
}

impl Why {
    /// The rule's name without its numbers: a metric label value.
    pub fn kind(&self) -> &'static str {
        self.into()
    }
}

/// What stops more replicas from helping.
#[derive(Debug, Clone, PartialEq)]
pub enum Limit {
    /// Pods created for a while without becoming Ready.
    NotReady {
        ready: i32,
        desired: i32,
        seconds: f64,
    },
    /// Added replicas did not raise throughput while the workers wait on
    /// broker acknowledgements: a partner topic or the brokers are the limit.
    Delivery { replicas: i32 },
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::NotReady {
                ready,
                desired,
                seconds,
            } => write!(
                f,
                "{ready} of {desired} worker pods Ready, the others not for {seconds:.0} s: more pods would not become Ready either"
            ),
            Limit::Delivery { replicas } => write!(
                f,
                "the workers wait on broker acknowledgements and more replicas did not raise throughput: a partner topic or the brokers are the limit at {replicas} replicas"
            ),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.oldest_age {
            Some(age) => write!(
                f,
                "oldest event {age:.0} s of {:.0} s SLO",
                self.slo_seconds
            )?,
            None => write!(
                f,
                "oldest event unknown (a head could not be read), SLO {:.0} s",
                self.slo_seconds
            )?,
        }
        write!(f, ", {}", self.why)
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Learning => write!(f, "capacity not yet measured"),
            Why::Doubling { backlog } => write!(
                f,
                "capacity not yet measured and backlog {} building: doubling replicas",
                count(*backlog)
            ),
            Why::Stalled => write!(f, "processing stalled everywhere: holding sizes"),
            Why::Absorbing {
                arrivals,
                capacity,
                target,
            } => write!(
                f,
                "arrivals {}/s over capacity {}/s absorbed: the oldest event stays under the {target:.0} s target until more replicas could arrive",
                count(*arrivals),
                count(*capacity)
            ),
            Why::Up {
                arrivals,
                capacity,
                backlog,
                target,
            } => write!(
                f,
                "arrivals {}/s, backlog {}: waiting longer would pass the {target:.0} s target with capacity {}/s",
                count(*arrivals),
                count(*backlog),
                count(*capacity)
            ),
            Why::Capped {
                arrivals,
                capacity,
                limit,
            } => write!(
                f,
                "arrivals {}/s, capacity {}/s, more replicas would not help: {limit}",
                count(*arrivals),
                count(*capacity)
            ),
            Why::Down {
                arrivals,
                capacity,
                window,
            } if capacity >= arrivals => write!(
                f,
                "arrivals {}/s, fewer replicas carry them with headroom ({}/s) for {window:.0} s",
                count(*arrivals),
                count(*capacity)
            ),
            // The down tolerance: a backlog that grows this slowly stays
            // within the target; saying "carry" here would read as a slip.
            Why::Down {
                arrivals,
                capacity,
                window,
            } => write!(
                f,
                "arrivals {}/s, fewer replicas take in nearly as many ({}/s; the backlog would grow too slowly to near the target) for {window:.0} s",
                count(*arrivals),
                count(*capacity)
            ),
            Why::Within { arrivals, capacity } => write!(
                f,
                "arrivals {}/s within capacity {}/s",
                count(*arrivals),
                count(*capacity)
            ),
        }
    }
}

/// The partitions scaling leaves out, in words, for conditions and Events.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Unhealthy {
    pub stuck: Vec<PartitionView>,
    pub hot: Vec<PartitionView>,
    pub recovering: Vec<PartitionView>,
}

impl Unhealthy {
    pub fn is_empty(&self) -> bool {
        self.stuck.is_empty() && self.hot.is_empty() && self.recovering.is_empty()
    }
}

impl fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.stuck.is_empty() {
            write!(
                f,
                "stuck (no progress while others progress; not scaled for): {}",
                Offsets(&self.stuck)
            )?;
        }
        let mut sep = if self.stuck.is_empty() { "" } else { "; " };
        if !self.recovering.is_empty() {
            write!(
                f,
                "{sep}recovering (far behind after being stuck or hot; draining with the replica it has): {}",
                Offsets(&self.recovering)
            )?;
            sep = "; ";
        }
        if !self.hot.is_empty() {
            write!(
                f,
                "{sep}hot (more arrivals than one replica takes; more replicas cannot help it): {}",
                Numbers(&self.hot)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scale_down_below_the_arrivals_says_so() {
        let down = |capacity| {
            Why::Down {
                arrivals: 8_100.0,
                capacity,
                window: 20.0,
            }
            .to_string()
        };
        assert_eq!(
            down(11_000.0),
            "arrivals 8.1k/s, fewer replicas carry them with headroom (11k/s) for 20 s"
        );
        // Inside the down tolerance: not "carry".
        assert_eq!(
            down(8_000.0),
            "arrivals 8.1k/s, fewer replicas take in nearly as many (8.0k/s; the backlog would grow too slowly to near the target) for 20 s"
        );
    }
}
