//! The pipeline's job slots: what bounds the jobs in flight, and so memory.
//!
//! There are `--max-in-flight-jobs` slots, the bound the pod's memory must
//! allow for; the source takes new jobs only while fewer than the pools'
//! current sizes call for are in flight ([`WorkerArgs::in_flight_at`]), and
//! a resize moves that limit at once. Jobs past it would only wait in the
//! channels while their events go cold in the cache.

use std::sync::Arc;

use pixelpipe_crds::PerStage;
use pixelpipe_crds::worker::WorkerArgs;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, watch};

/// The job slots; cloned handles share them.
#[derive(Debug, Clone)]
pub struct Slots {
    semaphore: Arc<Semaphore>,
    max: usize,
    /// Watched, so that a source waiting at the old limit sees a new one.
    limit: Arc<watch::Sender<usize>>,
}

impl Slots {
    /// `max` slots, of which pools of `sizes` use their share.
    pub fn new(max: usize, sizes: &PerStage<usize>) -> Self {
        let slots = Self::fixed(max);
        slots.follow(sizes);
        slots
    }

    /// `max` slots, every one of them used whatever the pools.
    pub fn fixed(max: usize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(max)),
            max,
            limit: Arc::new(watch::Sender::new(max)),
        }
    }

    /// Sets the limit for pools of `sizes`.
    pub fn follow(&self, sizes: &PerStage<usize>) {
        let limit = WorkerArgs::in_flight_at(sizes, self.max);
        self.limit
            .send_if_modified(|old| std::mem::replace(old, limit) != limit);
    }

    /// Jobs in flight at most: all the slots.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Jobs in flight at most for the pools as they are now.
    pub fn limit(&self) -> usize {
        *self.limit.borrow()
    }

    /// Jobs in flight now.
    pub fn taken(&self) -> usize {
        self.max - self.semaphore.available_permits()
    }

    /// A slot for a new job, once fewer than [`Slots::limit`] are in flight.
    /// Err once the slots are closed.
    pub async fn acquire(&self) -> Result<OwnedSemaphorePermit, AcquireError> {
        let mut limit = self.limit.subscribe();
        loop {
            // Taking the slots beyond the limit along with one's own waits
            // until no more than the limit less one are taken; those go
            // straight back. A new limit starts the wait over.
            let beyond = self.max.saturating_sub(*limit.borrow_and_update());
            let count = u32::try_from(beyond + 1).unwrap_or(u32::MAX);
            tokio::select! {
                taken = self.semaphore.clone().acquire_many_owned(count) => {
                    let mut taken = taken?;
                    let one = taken.split(1);
                    return Ok(one.unwrap_or(taken));
                }
                // The sender lives as long as `self`.
                _ = limit.changed() => {}
            }
        }
    }

    /// Every slot: no job is in flight while it is held. Err once the
    /// slots are closed.
    pub async fn acquire_all(&self) -> Result<tokio::sync::SemaphorePermit<'_>, AcquireError> {
        let count = u32::try_from(self.max).unwrap_or(u32::MAX);
        self.semaphore.acquire_many(count).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn pools(s: &str) -> PerStage<usize> {
        s.parse().expect("pools")
    }

    #[tokio::test]
    async fn new_jobs_wait_at_the_pools_limit_and_a_resize_moves_it() {
        let slots = Slots::new(64, &pools("1/1/1/1"));
        let limit = slots.limit();
        assert_eq!(limit, WorkerArgs::in_flight_at(&pools("1/1/1/1"), 64));
        assert!(limit < 64);
        let mut held = Vec::new();
        for _ in 0..limit {
            held.push(slots.acquire().now_or_never().expect("free").expect("open"));
        }
        assert_eq!(slots.taken(), limit);
        assert!(slots.acquire().now_or_never().is_none(), "past the limit");

        // Larger pools: more room at once.
        slots.follow(&pools("2/2/2/2"));
        assert!(slots.limit() > limit);
        held.push(slots.acquire().now_or_never().expect("free").expect("open"));

        // Smaller again: nothing new until enough jobs finish.
        slots.follow(&pools("1/1/1/1"));
        assert!(slots.acquire().now_or_never().is_none(), "past the limit");
        held.truncate(limit - 1);
        held.push(slots.acquire().now_or_never().expect("free").expect("open"));
        assert_eq!(slots.taken(), limit);
    }

    #[tokio::test]
    async fn a_source_waiting_at_the_limit_goes_on_when_it_rises() {
        let slots = Slots::new(64, &pools("1/1/1/1"));
        let held: Vec<_> = (0..slots.limit())
            .map(|_| slots.acquire().now_or_never().expect("free").expect("open"))
            .collect();
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
        let slots = Slots::new(16, &pools("1/1/1/1"));
        let job = slots.acquire().await.expect("open");
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
    fn a_fixed_set_uses_every_slot() {
        let slots = Slots::fixed(3);
        assert_eq!((slots.limit(), slots.max()), (3, 3));
        let held: Vec<_> = (0..3)
            .map(|_| slots.acquire().now_or_never().expect("free").expect("open"))
            .collect();
        assert!(slots.acquire().now_or_never().is_none());
        assert_eq!(held.len(), 3);
    }
}
