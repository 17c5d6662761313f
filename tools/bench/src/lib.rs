//! `pixelpipe-bench`: the worker against the pass-through ceiling and the
//! unbounded design ([`designs`]), measured from outside each process by
//! [`suite`]. Results and the command: docs/benchmarks.md.

pub mod cpu;
pub mod designs;
pub mod payload;
pub mod pools;
pub mod profile;
pub mod rounds;
pub mod suite;
