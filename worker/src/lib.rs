//! The Pixelpipe worker: a bounded-pool Kafka pipeline that turns storefront
//! events into consented, hashed partner deliveries, at least once.
//!
//! Pure logic ([`event`], [`validate`], [`routing`], [`augment`], [`offsets`],
//! [`time`]) is separate from I/O ([`source`], [`sink`], [`admin`], [`follow`]); [`pool`] is
//! the one worker-pool type every stage runs on, and [`pipeline`] wires them.

pub mod admin;
pub mod augment;
pub mod cli;
pub mod config;
pub mod event;
pub mod follow;
pub mod job;
pub mod kafka;
pub mod ledger;
pub mod loadgen;
pub mod metrics;
pub mod offsets;
pub mod pace;
pub mod pipeline;
pub mod pool;
pub mod retry;
pub mod routing;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod stages;
pub mod time;
pub mod topics;
pub mod transaction;
pub mod validate;
pub mod yaml;
