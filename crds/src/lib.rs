//! The `PixelPipeline` custom resource (group `pixelpipe.dev`, version `v1alpha1`).
//!
//! The types arrive with the operator work; this crate holds the names they share
//! with the worker today.

/// API group of every Pixelpipe resource.
pub const GROUP: &str = "pixelpipe.dev";
/// Served and stored version of the `PixelPipeline` kind.
pub const VERSION: &str = "v1alpha1";
/// Kind name of the pipeline resource.
pub const KIND: &str = "PixelPipeline";
