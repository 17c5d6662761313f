//! The Pixelpipe operator: it reconciles each `PixelPipeline` into a worker
//! Deployment and what the workers need, and reports back in the status.
//!
//! Pure logic: [`children`] (the desired objects), [`sizes`] (replicas and pool
//! sizes), [`validate`] (what the schema cannot judge), [`conditions`] and
//! [`status`]. I/O at the edges: [`apply`] (server-side apply), [`reconcile`]
//! (the controller's steps), [`leader`] (the Lease), [`admin`], and [`run`].

pub mod admin;
pub mod apply;
pub mod autoscale;
pub mod chart;
pub mod children;
pub mod cli;
pub mod conditions;
pub mod credentials;
pub mod leader;
pub mod matrix;
pub mod metrics;
pub mod observer;
pub mod policy;
pub mod reconcile;
pub mod report;
pub mod run;
pub mod simulate;
pub mod sizes;
pub mod status;
pub mod validate;

pub use pixelpipe_crds::{GROUP, KIND, VERSION};
