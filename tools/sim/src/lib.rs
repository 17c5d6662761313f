//! The autoscaling simulator and its reports: a consumer group on simulated
//! time ([`world`], [`flow`]), scaled by Pixelpipe's policy (the operator's own
//! code, from `pixelpipe-policy`), a static size or KEDA through the HPA
//! ([`keda`]); one run ([`simulate`]), the acceptance matrix ([`matrix`]),
//! the pathologies ([`pathology`]); tables and JSON ([`report`]) and PNG
//! charts ([`chart`]). Tooling: no production binary links it.

pub mod chart;
pub mod cli;
pub mod flow;
pub mod keda;
pub mod matrix;
pub mod pathology;
pub mod profile;
pub mod report;
pub mod simulate;
pub mod world;
