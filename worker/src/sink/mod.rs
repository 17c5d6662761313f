//! The produce stage: partner messages and dead letters out, acknowledgements
//! in. A job's offsets are released for commit only when the broker has
//! acknowledged every one of its outputs. Split by role, as vector's Kafka
//! sink is: [`produce`] (the stage's work function), [`delivery`] (records
//! into librdkafka, reports back, refused records sent again), [`ack`] (a
//! job's outstanding acknowledgements and what completing it releases),
//! [`dead_letter`] (the headers a dead letter carries).

mod ack;
mod dead_letter;
mod delivery;
mod produce;

pub use ack::AckShared;
pub use dead_letter::headers;
pub use delivery::{DeliveryContext, OutputProducer, create_producer};
pub use produce::Produce;
