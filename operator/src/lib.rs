//! The Pixelpipe operator: it reconciles each `PixelPipeline` into a worker
//! Deployment and what it needs.
//!
//! [`children`] builds the desired objects as pure functions of the resource,
//! so they are unit-tested without a cluster; the controller that applies them
//! arrives with the rest of the operator issue.

pub mod children;

pub use pixelpipe_crds::{GROUP, KIND, VERSION};
