//! Synthetic storefront traffic and reading it back, for the demo, the
//! benchmark and the tests: the load generator ([`generator`]), topic
//! creation ([`topics`]) and the ledger of what a topic holds ([`ledger`]).
//! Tooling: no production binary links it.

pub mod generator;
pub mod ledger;
pub mod topics;

pub use generator::{Consent, Generated, Generator, Kind, Malformed, Mix, Schedule};
