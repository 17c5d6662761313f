//! The Pixelpipe operator: it reconciles each `PixelPipeline` into worker
//! Deployments. The controller arrives with its own issue; this crate reserves
//! the name and shares the resource coordinates with the crds crate.

pub use pixelpipe_crds::{GROUP, KIND, VERSION};
