//! The Pixelpipe worker: a bounded-pool Kafka pipeline that turns storefront
//! events into consented, hashed partner deliveries, at least once.
//!
//! Pure logic ([`event`], [`validate`], [`routing`], [`augment`], [`offsets`])
//! is separate from I/O ([`source`], [`sink`], [`admin`], [`follow`]); [`pool`]
//! is the one worker-pool type every stage runs on, and [`pipeline`] wires them.
//! Many parts are public because the benchmark builds its baseline designs
//! from them.

mod admin;
pub mod augment;
pub mod clients;
pub mod event;
mod evidence;
pub mod fatal;
mod follow;
pub mod job;
pub mod liveness;
pub mod malloc;
pub mod metrics;
pub mod occupancy;
pub mod offsets;
mod pace;
pub mod pipeline;
pub mod pool;
pub mod prefetch;
mod retry;
pub mod routing;
pub mod settings;
pub mod sink;
pub mod slots;
pub mod source;
pub mod stages;
mod transaction;
pub mod validate;
