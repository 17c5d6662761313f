//! Helpers the Pixelpipe test suites share. Dev-only: no production crate
//! depends on it. Tests talk to the real services `tests/env/*.sh` start:
//! [`kafka`] (the broker at `KAFKA_BOOTSTRAP`), [`kube`] (the API server in
//! `KUBECONFIG`), [`node`] (the real node's own control plane and the broker
//! listener its pods reach); [`process`] runs and probes the binaries under test over
//! HTTP ([`http`]); [`prometheus`] runs a real Prometheus with the shipped
//! monitoring configuration; [`usage`] reads a process's threads, files,
//! connections, memory and CPU; [`wait`] polls with a deadline.

pub mod http;
pub mod kafka;
pub mod kube;
pub mod node;
pub mod process;
pub mod prometheus;
pub mod usage;
pub mod wait;
