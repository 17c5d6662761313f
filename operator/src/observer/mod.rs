//! The lag observer, straight from Kafka: per partition the end, the worker
//! group's committed offset and the record there, whose timestamp is exactly
//! the age of the oldest unprocessed event of that partition ([`snapshot`]);
//! how one client reads it ([`client`]); the clients pooled per cluster and
//! credentials, shared by the pipelines ([`clusters`]).

mod client;
mod clusters;
mod snapshot;

pub use clusters::{Cluster, Clusters, ObserveError};
#[cfg(test)]
pub use snapshot::Head;
pub use snapshot::{History, PartitionLag, Snapshot};

#[cfg(test)]
pub(crate) use snapshot::tests;
