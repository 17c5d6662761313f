//! The pipeline's job slots: what bounds the jobs in flight, and so memory.
//!
//! A job holds two slots. Its in-flight slot, one of `--max-in-flight-jobs`,
//! until every output is acknowledged: the bound the pod's memory must
//! allow for. Its stage slot until the produce stage has handed its outputs
//! to the producer: there are only as many of those as the pools' current
//! sizes use ([`WorkerArgs::jobs_in_stages`]), and a resize moves that
//! limit at once. Jobs past it would only wait in the channels while their
//! events go cold in the cache; jobs awaiting acknowledgements are never
//! touched by the stages again, so only the in-flight bound holds them.

use std::sync::Arc;

use pixelpipe_crds::PerStage;
use pixelpipe_crds::worker::WorkerArgs;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, SemaphorePermit, watch};

/// The job slots; cloned handles share them.
#[derive(Debug, Clone)]
pub struct Slots {
    in_flight: Arc<Semaphore>,
    max: usize,
    /// `max` permits, of which a new job may take one while fewer than the
    /// limit are taken.
    stages: Arc<Semaphore>,
    /// Watched, so that a source waiting at the old limit sees a new one.
    limit: Arc<watch::Sender<usize>>,
    in_stages: Gauge,
}

/// One job's slots.
#[derive(Debug)]
pub struct Slot {
    in_flight: OwnedSemaphorePermit,
    stage: StageSlot,
}

/// A job's hold on the stages, given back once its outputs are handed over.
#[derive(Debug)]
pub struct StageSlot {
    _permit: OwnedSemaphorePermit,
    in_stages: Gauge,
}

impl Drop for StageSlot {
    fn drop(&mut self) {
        self.in_stages.dec();
    }
}

impl Slot {
    /// The in-flight slot, kept until the last acknowledgement, and the
    /// stage slot, to drop once the outputs are with the producer.
    pub fn split(self) -> (OwnedSemaphorePermit, StageSlot) {
        (self.in_flight, self.stage)
    }
}

impl Slots {
    /// `max` jobs in flight, of which pools of `sizes` hold their share in
    /// the stages; `in_stages` counts the latter.
    pub fn new(max: usize, sizes: &PerStage<usize>, in_stages: Gauge) -> Self {
        let slots = Self::fixed(max, in_stages);
        slots.follow(sizes);
        slots
    }

    /// `max` jobs in flight, all of them in the stages if need be.
    pub fn fixed(max: usize, in_stages: Gauge) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(max)),
            max,
            stages: Arc::new(Semaphore::new(max)),
            limit: Arc::new(watch::Sender::new(max)),
            in_stages,
        }
    }

    /// Sets the stages' limit for pools of `sizes`.
    pub fn follow(&self, sizes: &PerStage<usize>) {
        let limit = WorkerArgs::jobs_in_stages(sizes, self.max);
        self.limit
            .send_if_modified(|old| std::mem::replace(old, limit) != limit);
    }

    /// Jobs in the stages at most for the pools as they are now.
    pub fn stage_limit(&self) -> usize {
        *self.limit.borrow()
    }

    /// Jobs in flight now.
    pub fn taken(&self) -> usize {
        self.max - self.in_flight.available_permits()
    }

    /// Slots for a new job, once fewer than [`Slots::stage_limit`] are in
    /// the stages and fewer than the bound in flight. Err once closed.
    pub async fn acquire(&self) -> Result<Slot, AcquireError> {
        let stage = self.stage_slot().await?;
        let in_flight = self.in_flight.clone().acquire_owned().await?;
        self.in_stages.inc();
        let stage = StageSlot {
            _permit: stage,
            in_stages: self.in_stages.clone(),
        };
        Ok(Slot { in_flight, stage })
    }

    async fn stage_slot(&self) -> Result<OwnedSemaphorePermit, AcquireError> {
        let mut limit = self.limit.subscribe();
        loop {
            // Taking the permits beyond the limit along with one's own waits
            // until no more than the limit less one are taken; those go
            // straight back. A new limit starts the wait over.
            let beyond = self.max.saturating_sub(*limit.borrow_and_update());
            let count = u32::try_from(beyond + 1).unwrap_or(u32::MAX);
            tokio::select! {
                taken = self.stages.clone().acquire_many_owned(count) => {
                    let mut taken = taken?;
                    let one = taken.split(1);
                    return Ok(one.unwrap_or(taken));
                }
                // The sender lives as long as `self`.
                _ = limit.changed() => {}
            }
        }
    }

    /// Every in-flight slot: no job is in flight while it is held. Err once
    /// closed.
    pub async fn acquire_all(&self) -> Result<SemaphorePermit<'_>, AcquireError> {
        let count = u32::try_from(self.max).unwrap_or(u32::MAX);
        self.in_flight.acquire_many(count).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn pools(s: &str) -> PerStage<usize> {
        s.parse().expect("pools")
    }

    fn take(slots: &Slots) -> Slot {
        slots.acquire().now_or_never().expect("free").expect("open")
    }

    #[tokio::test]
    async fn new_jobs_wait_at_the_stages_limit_and_a_resize_moves_it() {
        let slots = Slots::new(64, &pools("1/1/1/1"), Gauge::default());
        let limit = slots.stage_limit();
        assert_eq!(limit, WorkerArgs::jobs_in_stages(&pools("1/1/1/1"), 64));
        assert!(limit < 64);
        let mut held: Vec<Slot> = (0..limit).map(|_| take(&slots)).collect();
        assert_eq!(slots.in_stages.get(), limit as i64);
        assert!(slots.acquire().now_or_never().is_none(), "past the limit");

        // Larger pools: more room at once.
        slots.follow(&pools("2/2/2/2"));
        assert!(slots.stage_limit() > limit);
        held.push(take(&slots));

        // Smaller again: nothing new until enough jobs leave the stages.
        slots.follow(&pools("1/1/1/1"));
        assert!(slots.acquire().now_or_never().is_none(), "past the limit");
        held.truncate(limit - 1);
        held.push(take(&slots));
        assert_eq!(slots.taken(), limit);
    }

    #[tokio::test]
    async fn jobs_handed_to_the_producer_leave_room_in_the_stages_not_in_flight() {
        let slots = Slots::new(12, &pools("1/1/1/1"), Gauge::default());
        let limit = slots.stage_limit();
        // Every job past the stages, awaiting its acknowledgements.
        let awaiting: Vec<OwnedSemaphorePermit> = (0..12).map(|_| take(&slots).split().0).collect();
        assert_eq!((slots.taken(), slots.in_stages.get()), (12, 0));
        assert!(limit < 12);
        assert!(slots.acquire().now_or_never().is_none(), "past the bound");
        drop(awaiting);
        assert_eq!(slots.taken(), 0);
    }

    #[tokio::test]
    async fn a_source_waiting_at_the_limit_goes_on_when_it_rises() {
        let slots = Slots::new(64, &pools("1/1/1/1"), Gauge::default());
        let held: Vec<Slot> = (0..slots.stage_limit()).map(|_| take(&slots)).collect();
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire().await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "past the limit");
        slots.follow(&pools("2/2/2/2"));
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await;
        assert!(matches!(got, Ok(Ok(Ok(())))), "{got:?}");
        drop(held);
    }

    #[tokio::test]
    async fn taking_every_slot_waits_for_every_job() {
        let slots = Slots::new(16, &pools("1/1/1/1"), Gauge::default());
        let (job, stage) = take(&slots).split();
        drop(stage);
        assert!(slots.acquire_all().now_or_never().is_none());
        drop(job);
        let all = slots
            .acquire_all()
            .now_or_never()
            .expect("free")
            .expect("open");
        assert_eq!(slots.taken(), 16);
        drop(all);
        assert_eq!(slots.taken(), 0);
    }

    #[test]
    fn a_fixed_set_uses_every_slot_in_the_stages() {
        let slots = Slots::fixed(3, Gauge::default());
        assert_eq!(slots.stage_limit(), 3);
        let held: Vec<Slot> = (0..3).map(|_| take(&slots)).collect();
        assert!(slots.acquire().now_or_never().is_none());
        assert_eq!(held.len(), 3);
    }
}
