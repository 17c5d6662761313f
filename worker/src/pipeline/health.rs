//! Readiness for the probes: running, a member of the consumer group (so the
//! brokers answered), and no output waiting to be sent again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::gauge::Gauge;

/// Why a worker is not ready, in words for the probe's response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("not running")]
    NotRunning,
    #[error("not yet a member of the consumer group: waiting for the brokers")]
    NotJoined,
    #[error("{0} outputs refused by the broker are being retried; intake is held back")]
    Retrying(i64),
}

#[derive(Debug, Default)]
pub struct Health {
    running: AtomicBool,
    /// Set by the consumer's first assignment, empty or not: the group
    /// coordinator took this worker in.
    joined: Arc<AtomicBool>,
    /// Outputs the broker refused and that wait for another attempt.
    retrying: Gauge,
}

impl Health {
    pub(crate) fn new(retrying: Gauge) -> Self {
        Self {
            running: AtomicBool::new(false),
            joined: Arc::default(),
            retrying,
        }
    }

    /// The flag the consumer sets at its first assignment.
    pub(crate) fn joined(&self) -> Arc<AtomicBool> {
        self.joined.clone()
    }

    /// Why the worker is not ready, or `None` when it is.
    pub fn not_ready(&self) -> Option<NotReady> {
        if !self.running.load(Ordering::Relaxed) {
            return Some(NotReady::NotRunning);
        }
        if !self.joined.load(Ordering::Relaxed) {
            return Some(NotReady::NotJoined);
        }
        match self.retrying.get() {
            0 => None,
            n => Some(NotReady::Retrying(n)),
        }
    }

    pub(crate) fn set_running(&self, v: bool) {
        self.running.store(v, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_running_and_in_the_group_until_outputs_are_retried() {
        let retrying = Gauge::default();
        let h = Health::new(retrying.clone());
        let joined = h.joined();
        assert_eq!(h.not_ready(), Some(NotReady::NotRunning));
        h.set_running(true);
        assert_eq!(h.not_ready(), Some(NotReady::NotJoined));
        joined.store(true, Ordering::Relaxed);
        assert_eq!(h.not_ready(), None);
        retrying.set(3);
        assert_eq!(h.not_ready(), Some(NotReady::Retrying(3)));
    }
}
