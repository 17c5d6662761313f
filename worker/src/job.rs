//! The unit of work: a batch of input messages and what each stage made of them.

use pixelpipe_crds::Stage;

use crate::event::{Event, Rejection};
use crate::offsets::Claim;
use crate::routing::{DropReason, PartnerSet};
use crate::slots::Slot;
use crate::validate::Validated;

/// One consumed Kafka message, copied out of the consumer's buffer.
#[derive(Debug)]
pub struct InputMessage {
    pub partition: i32,
    pub offset: i64,
    /// The record's Kafka timestamp, when it has one.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    /// Moved into the [`Event`] while one is decoded from it, without a
    /// copy; back here when the message is dead-lettered.
    pub payload: Option<Vec<u8>>,
    /// Original headers, kept so a dead letter carries them.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Where one message stands in the pipeline.
#[derive(Debug)]
pub enum Outcome {
    /// Consumed, not yet parsed.
    Raw,
    Parsed(Box<Event>),
    Validated(Box<Event>, Validated),
    /// The partner payload, ready for every partner in the set.
    Ready {
        payload: Vec<u8>,
        partners: PartnerSet,
        event_ms: i64,
    },
    /// Valid, but no partner may have it.
    Dropped(DropReason),
    /// Goes to the dead-letter topic.
    Dead {
        stage: Stage,
        rejection: Rejection,
    },
}

/// A batch of messages travelling through the stages together.
#[derive(Debug)]
pub struct Job {
    pub id: u64,
    pub messages: Vec<InputMessage>,
    /// One per message, same order.
    pub outcomes: Vec<Outcome>,
    /// The job's offset runs, for the commit watermark.
    pub claims: Vec<Claim>,
    /// Its place in the stages, until its outputs are handed to the
    /// producer, and in flight, until every one is acknowledged: what bounds
    /// memory, whatever the backlog ([`crate::slots`]).
    pub slot: Slot,
}

impl Job {
    /// Runs `f` on each message and its outcome, in order, having asked
    /// for the next one's memory first ([`crate::prefetch`]): its payload
    /// before parse, its event after.
    #[inline]
    pub fn each(&mut self, mut f: impl FnMut(&mut InputMessage, &mut Outcome)) {
        for i in 0..self.messages.len() {
            self.prefetch(i + 1);
            if let (Some(msg), Some(outcome)) = (self.messages.get_mut(i), self.outcomes.get_mut(i))
            {
                f(msg, outcome);
            }
        }
    }

    #[inline]
    fn prefetch(&self, i: usize) {
        match self.outcomes.get(i) {
            Some(Outcome::Raw) => {
                let payload = self.messages.get(i).and_then(|m| m.payload.as_deref());
                crate::prefetch::bytes(payload.unwrap_or_default());
            }
            Some(Outcome::Parsed(event) | Outcome::Validated(event, _)) => event.prefetch(),
            _ => {}
        }
    }

    /// The per-partition `(partition, last offset)` runs of `messages`, which the
    /// consumer delivers in offset order per partition.
    pub fn runs(messages: &[InputMessage]) -> Vec<(i32, i64)> {
        let mut runs: Vec<(i32, i64)> = Vec::new();
        for m in messages {
            match runs.iter_mut().find(|(p, _)| *p == m.partition) {
                Some(run) => run.1 = run.1.max(m.offset),
                None => runs.push((m.partition, m.offset)),
            }
        }
        runs
    }
}
