//! The reason the worker must stop on its own, reaching every task that waits for it.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// Raised when the worker cannot go on without risking loss (an output the broker
/// never acknowledged). The pipeline then stops fetching, drains, commits only
/// what is safe, and exits non-zero so it restarts from the committed offsets.
#[derive(Debug, Clone, Default)]
pub struct Fatal {
    token: CancellationToken,
    reason: Arc<Mutex<Option<String>>>,
}

impl Fatal {
    /// Records the first reason and wakes every waiter.
    pub fn trigger(&self, reason: String) {
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            tracing::error!(%reason, "fatal: stopping the worker");
            *slot = Some(reason);
        }
        self.token.cancel();
    }

    /// The first reason given, if any.
    pub fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub async fn wait(&self) {
        self.token.cancelled().await;
    }
}
