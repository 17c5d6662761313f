//! The four stage pools, resizable live within `1..=max_workers`.

use pixelpipe_crds::{PerStage, Stage};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::metrics::{Metrics, StageLabel};
use crate::pool::Pool;
use crate::slots::Slots;

/// A partial resize: stages left out keep their size.
pub type PoolResize = PerStage<Option<usize>>;

/// One stage's pool, as the admin endpoint reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStatus {
    pub stage: Stage,
    pub workers: usize,
    pub busy: usize,
    pub queued: usize,
    pub capacity: usize,
}

/// A pool size the worker does not accept.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{stage} workers must be between 1 and {max}, got {wanted}")]
pub struct SizeError {
    pub stage: Stage,
    pub wanted: usize,
    pub max: usize,
}

/// Checks one stage's size against the bound.
pub fn check_size(stage: Stage, wanted: usize, max: usize) -> Result<(), SizeError> {
    if wanted == 0 || wanted > max {
        return Err(SizeError { stage, wanted, max });
    }
    Ok(())
}

/// Every stage's pool.
#[derive(Debug)]
pub struct Pools {
    pub(crate) pools: PerStage<Pool>,
    pub(crate) max_workers: usize,
    /// The job slots, whose stage limit follows the pools' sizes.
    pub(crate) slots: Slots,
}

impl Pools {
    pub fn sizes(&self) -> PerStage<usize> {
        self.pools.as_ref().map(|_, p| p.size())
    }

    /// Each pool's worker-seconds on jobs so far, up to now.
    pub fn busy_seconds(&self) -> PerStage<f64> {
        self.pools.as_ref().map(|_, p| p.busy_seconds())
    }

    pub fn status(&self) -> Vec<PoolStatus> {
        self.pools
            .iter()
            .map(|(stage, p)| PoolStatus {
                stage,
                workers: p.size(),
                busy: p.busy(),
                queued: p.queued(),
                capacity: p.capacity(),
            })
            .collect()
    }

    /// Applies a resize, or changes nothing and says why.
    pub fn resize(&self, wanted: PoolResize) -> Result<PerStage<usize>, SizeError> {
        for (stage, n) in wanted.iter() {
            if let Some(n) = *n {
                check_size(stage, n, self.max_workers)?;
            }
        }
        for ((stage, pool), n) in self.pools.iter().zip(wanted.values()) {
            if let Some(n) = *n
                && n != pool.size()
            {
                tracing::info!(%stage, from = pool.size(), to = n, "resizing pool");
                pool.resize(n);
            }
        }
        let sizes = self.sizes();
        self.slots.follow(&sizes);
        Ok(sizes)
    }

    /// Waits, in stage order, until every pool's workers have exited: each
    /// pool's input closes when the previous pool's last worker exits.
    pub(crate) async fn join(&self) {
        for pool in self.pools.values() {
            pool.join().await;
        }
    }

    /// Publishes pool gauges; called before each metrics scrape.
    pub fn export(&self, metrics: &Metrics) {
        for (stage, p) in self.pools.iter() {
            let label = StageLabel { stage };
            metrics
                .pool_workers
                .get_or_create(&label)
                .set(p.size() as i64);
            metrics.pool_busy.get_or_create(&label).set(p.busy() as i64);
            metrics
                .queue_depth
                .get_or_create(&label)
                .set(p.queued() as i64);
        }
    }
}
