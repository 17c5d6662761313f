//! The Pixelpipe operator: it reconciles each `PixelPipeline` into a worker
//! Deployment and what the workers need, observes the consumer group in
//! Kafka, resizes pools and replicas to the SLO, and reports back in the status.
//!
//! Pure logic: [`children`] (the desired objects), [`sizes`] (replicas and pool
//! sizes), [`conditions`] and [`status`]; the policy itself is the
//! `pixelpipe-policy` crate. I/O at the edges: [`apply`] (server-side apply),
//! [`applied`] (which applies would change nothing),
//! [`reconcile`] (the controller's steps), [`observer`] (Kafka), [`pods`] and
//! [`scrape`] (the worker pods and their evidence), [`scalers`] (HPAs that
//! scale the workers too), [`mirror`] (the watches behind both), [`autoscale`]
//! (observations to decisions), [`arrivals`] (the record users replay),
//! [`pipeline_metrics`] (each pipeline's numbers for Prometheus),
//! [`leader`] (the Lease), [`failure`] (errors and backoff), [`admin`], and
//! [`run`].

mod admin;
mod applied;
mod apply;
mod arrivals;
mod autoscale;
pub mod children;
pub mod cli;
mod conditions;
mod credentials;
mod events;
mod failure;
mod leader;
mod metrics;
mod mirror;
mod observer;
mod pipeline_metrics;
mod pods;
mod reconcile;
pub mod run;
mod scalers;
mod scrape;
mod sizes;
mod status;

pub use pixelpipe_crds::{GROUP, KIND, VERSION};

/// Pipelines one operator keeps memory for at most: autoscaling state, arrival
/// records, exported metrics, children as last applied. Past it each forgets
/// one (the least recently seen where that is known), which costs that
/// pipeline a fresh start, never correctness.
pub(crate) const MAX_PIPELINES: usize = 4096;
