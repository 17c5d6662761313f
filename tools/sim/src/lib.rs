//! The autoscaling simulator and its reports: a consumer group on simulated
//! time ([`simulate`]), scaled by Pixelpipe's policy (the operator's own
//! code, from `pixelpipe-policy`), a static size or KEDA; the acceptance
//! matrix ([`matrix`]); tables ([`report`]) and PNG charts ([`chart`]).
//! Tooling: no production binary links it.

pub mod chart;
pub mod cli;
pub mod matrix;
pub mod report;
pub mod simulate;
