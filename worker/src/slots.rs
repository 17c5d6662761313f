//! The pipeline's job slots: what bounds the jobs in flight, and so memory.
//!
//! A job holds, from its first message:
//! - an in-flight slot, one of `--max-in-flight-jobs`, until every output
//!   is acknowledged: the bound the pod's memory must allow for;
//! - a stage slot until the produce stage has handed its outputs to the
//!   producer: there are only as many as the pools' current sizes use
//!   ([`WorkerArgs::jobs_in_stages`]), and a resize moves that limit at
//!   once. Jobs past it would only wait in the channels while their events
//!   go cold in the cache;
//!
//! and from its hand-over until its last acknowledgement, room for its
//! outputs' bytes within `--max-unacknowledged-mib`: outputs queued deep in
//! the producer deliver no sooner and cost memory and CPU. Counting bytes,
//! not jobs, keeps a slow partner's small jobs from starving delivery.

use std::sync::Arc;

use pixelpipe_crds::PerStage;
use pixelpipe_crds::worker::WorkerArgs;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, SemaphorePermit, watch};

use crate::metrics::Metrics;

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
    outputs: Outputs,
}

/// Room for outputs awaiting acknowledgements, in KiB.
#[derive(Debug, Clone)]
struct Outputs {
    room: Arc<Semaphore>,
    kib: u32,
    /// The bytes taken, as counted (in whole KiB).
    taken: Gauge,
}

/// One job's slots.
#[derive(Debug)]
pub struct Slot {
    in_flight: OwnedSemaphorePermit,
    stage: StageSlot,
    outputs: Outputs,
}

/// What a job handed to the producer holds until its last acknowledgement.
#[derive(Debug)]
pub struct Acknowledging {
    _in_flight: OwnedSemaphorePermit,
    outputs: Option<OwnedSemaphorePermit>,
    taken: Gauge,
}

impl Drop for Acknowledging {
    fn drop(&mut self) {
        if let Some(p) = &self.outputs {
            self.taken.dec_by(p.num_permits() as i64 * 1024);
        }
    }
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
    /// Room for outputs of `bytes` (all of it for a job larger than that),
    /// if there is some now; the slot back if not.
    pub fn try_hand_over(self, bytes: usize) -> Result<(Acknowledging, StageSlot), Self> {
        match self
            .outputs
            .room
            .clone()
            .try_acquire_many_owned(self.kib(bytes))
        {
            Ok(outputs) => Ok(self.handed(Some(outputs))),
            Err(_) => Err(self),
        }
    }

    /// Waits for room for outputs of `bytes`. What the job holds until its
    /// last acknowledgement, and the stage slot, to drop once the outputs
    /// are with the producer.
    pub async fn hand_over(self, bytes: usize) -> (Acknowledging, StageSlot) {
        let outputs = self
            .outputs
            .room
            .clone()
            .acquire_many_owned(self.kib(bytes));
        // Never closed, so never Err: the outputs go unaccounted if it were.
        let outputs = outputs.await.ok();
        self.handed(outputs)
    }

    fn kib(&self, bytes: usize) -> u32 {
        let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        kib.clamp(1, self.outputs.kib)
    }

    fn handed(self, outputs: Option<OwnedSemaphorePermit>) -> (Acknowledging, StageSlot) {
        let taken = self.outputs.taken;
        if let Some(p) = &outputs {
            taken.inc_by(p.num_permits() as i64 * 1024);
        }
        let acknowledging = Acknowledging {
            _in_flight: self.in_flight,
            outputs,
            taken,
        };
        (acknowledging, self.stage)
    }
}

impl Slots {
    /// `max` jobs in flight, of which pools of `sizes` hold their share in
    /// the stages, with outputs of `unacknowledged_bytes` awaiting
    /// acknowledgements; `metrics` count both.
    pub fn new(
        max: usize,
        unacknowledged_bytes: usize,
        sizes: &PerStage<usize>,
        metrics: &Metrics,
    ) -> Self {
        let slots = Self::all_usable(max, unacknowledged_bytes, metrics);
        slots.follow(sizes);
        slots
    }

    /// As many jobs in flight and in the stages, and outputs awaiting
    /// acknowledgements, as the semaphores hold: no bound but memory.
    pub fn unbounded(metrics: &Metrics) -> Self {
        Self::all_usable(Semaphore::MAX_PERMITS, usize::MAX, metrics)
    }

    fn all_usable(max: usize, unacknowledged_bytes: usize, metrics: &Metrics) -> Self {
        let kib = u32::try_from(unacknowledged_bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .max(1);
        Self {
            in_flight: Arc::new(Semaphore::new(max)),
            max,
            stages: Arc::new(Semaphore::new(max)),
            limit: Arc::new(watch::Sender::new(max)),
            in_stages: metrics.jobs_in_stages.clone(),
            outputs: Outputs {
                room: Arc::new(Semaphore::new(kib as usize)),
                kib,
                taken: metrics.unacknowledged_output_bytes.clone(),
            },
        }
    }

    /// Sets the stages' limit for pools of `sizes`.
    pub fn follow(&self, sizes: &PerStage<usize>) {
        let limit = WorkerArgs::jobs_in_stages(sizes, self.max);
        self.limit
            .send_if_modified(|old| std::mem::replace(old, limit) != limit);
    }

    /// Jobs in flight now.
    pub fn taken(&self) -> usize {
        self.max - self.in_flight.available_permits()
    }

    /// Slots for a new job, once fewer than the pools' limit are in
    /// the stages and fewer than the bound in flight. Err once closed.
    pub async fn acquire(&self) -> Result<Slot, AcquireError> {
        let stage = self.stage_slot().await?;
        let in_flight = self.in_flight.clone().acquire_owned().await?;
        self.in_stages.inc();
        let stage = StageSlot {
            _permit: stage,
            in_stages: self.in_stages.clone(),
        };
        Ok(Slot {
            in_flight,
            stage,
            outputs: self.outputs.clone(),
        })
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

    const MIB: usize = 1024 * 1024;

    fn pools(s: &str) -> PerStage<usize> {
        s.parse().expect("pools")
    }

    fn slots(max: usize) -> Slots {
        Slots::new(max, 8 * MIB, &pools("1/1/1/1"), &Metrics::new(&[]))
    }

    /// Jobs in the stages at most for the pools as they are now.
    fn stage_limit(slots: &Slots) -> usize {
        *slots.limit.borrow()
    }

    fn take(slots: &Slots) -> Slot {
        slots.acquire().now_or_never().expect("free").expect("open")
    }

    /// Hands `slot`'s job over with outputs of `bytes`, if there is room now.
    fn hand_over(slot: Slot, bytes: usize) -> Option<(Acknowledging, StageSlot)> {
        slot.hand_over(bytes).now_or_never()
    }

    #[tokio::test]
    async fn new_jobs_wait_at_the_stages_limit_and_a_resize_moves_it() {
        let slots = slots(64);
        let limit = stage_limit(&slots);
        assert_eq!(limit, WorkerArgs::jobs_in_stages(&pools("1/1/1/1"), 64));
        assert!(limit < 64);
        let mut held: Vec<Slot> = (0..limit).map(|_| take(&slots)).collect();
        assert_eq!(slots.in_stages.get(), limit as i64);
        assert!(slots.acquire().now_or_never().is_none(), "past the limit");

        // Larger pools: more room at once.
        slots.follow(&pools("2/2/2/2"));
        assert!(stage_limit(&slots) > limit);
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
        let slots = slots(12);
        let limit = stage_limit(&slots);
        // Every job past the stages, awaiting its acknowledgements.
        let awaiting: Vec<Acknowledging> = (0..12)
            .map(|_| hand_over(take(&slots), 1000).expect("room").0)
            .collect();
        assert_eq!((slots.taken(), slots.in_stages.get()), (12, 0));
        assert!(limit < 12);
        assert!(slots.acquire().now_or_never().is_none(), "past the bound");
        drop(awaiting);
        assert_eq!(slots.taken(), 0);
    }

    #[tokio::test]
    async fn outputs_awaiting_acknowledgements_are_bounded_by_their_bytes() {
        let slots = slots(64);
        let (first, _) = hand_over(take(&slots), 5 * MIB).expect("room");
        assert_eq!(slots.outputs.taken.get(), 5 * MIB as i64);
        // 3 MiB are left: a job of 4 waits, one of 3 does not.
        let four = take(&slots).try_hand_over(4 * MIB).expect_err("no room");
        let (second, _) = hand_over(take(&slots), 3 * MIB).expect("room");
        let waiting = tokio::spawn(four.hand_over(4 * MIB));
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "8 MiB are awaiting acknowledgements"
        );
        drop(first);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await;
        assert!(
            matches!(got, Ok(Ok(_))),
            "room once the first is acknowledged"
        );
        drop(second);
    }

    #[tokio::test]
    async fn a_job_larger_than_the_room_goes_once_it_is_alone() {
        let slots = slots(64);
        let small = hand_over(take(&slots), 1).expect("room");
        let large = take(&slots)
            .try_hand_over(100 * MIB)
            .expect_err("not alone");
        drop(small);
        let (large, _) = large.try_hand_over(100 * MIB).expect("alone");
        assert!(
            take(&slots).try_hand_over(1).is_err(),
            "it takes all the room"
        );
        drop(large);
    }

    #[tokio::test]
    async fn a_source_waiting_at_the_limit_goes_on_when_it_rises() {
        let slots = slots(64);
        let held: Vec<Slot> = (0..stage_limit(&slots)).map(|_| take(&slots)).collect();
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
        let slots = slots(16);
        let (job, stage) = hand_over(take(&slots), 1).expect("room");
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
    fn unbounded_slots_put_every_job_in_the_stages() {
        let slots = Slots::unbounded(&Metrics::new(&[]));
        assert_eq!(stage_limit(&slots), Semaphore::MAX_PERMITS);
        let held: Vec<Slot> = (0..1000).map(|_| take(&slots)).collect();
        assert_eq!(slots.taken(), 1000);
        drop(held);
    }
}
