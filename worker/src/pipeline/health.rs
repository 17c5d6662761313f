//! Readiness for the probes: running, and no output waiting to be sent again.

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::gauge::Gauge;

/// Why a worker is not ready, in words for the probe's response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("not running")]
    NotRunning,
    #[error("{0} outputs refused by the broker are being retried; intake is held back")]
    Retrying(i64),
}

#[derive(Debug, Default)]
pub struct Health {
    running: AtomicBool,
    /// Outputs the broker refused and that wait for another attempt.
    retrying: Gauge,
}

impl Health {
    pub(crate) fn new(retrying: Gauge) -> Self {
        Self {
            running: AtomicBool::new(false),
            retrying,
        }
    }

    /// Why the worker is not ready, or `None` when it is.
    pub fn not_ready(&self) -> Option<NotReady> {
        if !self.running.load(Ordering::Relaxed) {
            return Some(NotReady::NotRunning);
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
