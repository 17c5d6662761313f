//! Kafka clients shared by pipelines: one small pool per cluster and
//! credentials, opened when the first pipeline needs it and closed when the
//! last one lets go. A thousand pipelines on three clusters hold three pools,
//! not a thousand clients, and a pool's size bounds how many snapshots of its
//! cluster run at once (and so the blocking threads they take).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use pixelpipe_runtime::KafkaSettings;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::client::Client;
use super::snapshot::Snapshot;

/// Why a snapshot could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("the lag observer's thread failed: {0}")]
    Thread(#[from] tokio::task::JoinError),
}

/// What tells one cluster-and-credentials from another: a digest of the
/// brokers, the options and the security properties, so two pipelines whose
/// Secrets hold the same credentials share a pool, and the key itself holds
/// no secret.
type Key = [u8; 32];

fn key_of(kafka: &KafkaSettings) -> Key {
    let mut h = Sha256::new();
    let mut field = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    field(&kafka.bootstrap_servers);
    let mut options = kafka.options.clone();
    options.sort();
    for (k, v) in &options {
        field(k);
        field(v);
    }
    for (k, v) in kafka.security.properties() {
        field(k);
        field(&v);
    }
    h.finalize().into()
}

/// Every open pool, by cluster and credentials.
#[derive(Debug)]
pub struct Clusters {
    open: Mutex<HashMap<Key, Weak<Cluster>>>,
    clients_per_cluster: usize,
}

impl Clusters {
    pub fn new(clients_per_cluster: usize) -> Self {
        Self {
            open: Mutex::default(),
            clients_per_cluster: clients_per_cluster.max(1),
        }
    }

    /// The pool for `kafka`'s cluster and credentials: the open one, or a new
    /// one whose clients connect when first used.
    pub fn get(&self, kafka: KafkaSettings) -> Arc<Cluster> {
        let key = key_of(&kafka);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|_, c| c.strong_count() > 0);
        if let Some(cluster) = open.get(&key).and_then(Weak::upgrade) {
            return cluster;
        }
        let cluster = Arc::new(Cluster {
            permits: Arc::new(Semaphore::new(self.clients_per_cluster)),
            settings: kafka,
            idle: Mutex::default(),
            clients: AtomicUsize::new(0),
            topics: Mutex::default(),
        });
        open.insert(key, Arc::downgrade(&cluster));
        cluster
    }

    /// Open pools and the Kafka clients they hold.
    pub fn open(&self) -> (usize, usize) {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let live: Vec<Arc<Cluster>> = open.values().filter_map(Weak::upgrade).collect();
        let clients = live.iter().map(|c| c.clients.load(Ordering::Relaxed)).sum();
        (live.len(), clients)
    }
}

/// One cluster's pool.
pub struct Cluster {
    settings: KafkaSettings,
    /// Clients not in use; at most the pool's size exist.
    idle: Mutex<Vec<Client>>,
    /// One per client: a snapshot holds one while it runs.
    permits: Arc<Semaphore>,
    clients: AtomicUsize,
    /// The cluster's topics and partitions, and when they were read.
    topics: Mutex<Topics>,
}

/// A topic's partitions are read again after this long: a topic that gains
/// partitions is observed whole within it.
const TOPICS_MAX_AGE: Duration = Duration::from_secs(30);
/// A topic not in the cluster is looked for again after this long (a
/// pipeline created before its topic).
const MISSING_TOPIC_RETRY: Duration = Duration::from_secs(5);

/// One metadata request for all topics, shared by every snapshot, instead of
/// one per snapshot: a thousand pipelines would otherwise ask the brokers for
/// metadata a thousand times per interval. Bounded by the cluster's topics.
#[derive(Debug, Default)]
struct Topics {
    read_at: Option<Instant>,
    partitions: HashMap<String, Vec<i32>>,
}

impl Topics {
    fn stale_for(&self, topic: &str) -> bool {
        let older = |age| self.read_at.is_none_or(|at| at.elapsed() >= age);
        older(TOPICS_MAX_AGE)
            || (!self.partitions.contains_key(topic) && older(MISSING_TOPIC_RETRY))
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("brokers", &self.settings.bootstrap_servers)
            .field("clients", &self.clients.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// `group`'s progress through `topic`, read by one of the pool's clients
    /// once one is free.
    pub async fn snapshot(
        self: &Arc<Self>,
        topic: &str,
        group: &str,
    ) -> Result<Snapshot, ObserveError> {
        // The semaphore is never closed, so acquiring only waits.
        let permit = self.permits.clone().acquire_owned().await;
        let (this, topic, group) = (self.clone(), topic.to_string(), group.to_string());
        let taken = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let client = this.take()?;
            let snapshot = this
                .partitions(&client, &topic)
                .and_then(|partitions| client.snapshot(&topic, &partitions, &group));
            this.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(client);
            snapshot
        });
        Ok(taken.await??)
    }

    /// `topic`'s partitions, from the cache or read afresh with `client`.
    fn partitions(&self, client: &Client, topic: &str) -> Result<Vec<i32>, KafkaError> {
        // Held through the read: one metadata request at a time per cluster.
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        if topics.stale_for(topic) {
            topics.partitions = client.topics()?;
            topics.read_at = Some(Instant::now());
        }
        topics
            .partitions
            .get(topic)
            .filter(|p| !p.is_empty())
            .cloned()
            .ok_or(KafkaError::MetadataFetch(
                RDKafkaErrorCode::UnknownTopicOrPartition,
            ))
    }

    /// An idle client, or a new one: the permit held guarantees the pool is
    /// not yet full when none is idle.
    fn take(&self) -> Result<Client, KafkaError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(client) => Ok(client),
            None => {
                let client = Client::new(&self.settings)?;
                self.clients.fetch_add(1, Ordering::Relaxed);
                Ok(client)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pixelpipe_runtime::{Sasl, Security};

    fn settings(brokers: &str, password: &str) -> KafkaSettings {
        KafkaSettings {
            bootstrap_servers: brokers.into(),
            options: vec![("b".into(), "2".into()), ("a".into(), "1".into())],
            security: Security {
                tls: None,
                sasl: Some(Sasl {
                    mechanism: pixelpipe_crds::SaslMechanism::ScramSha256,
                    username: "u".into(),
                    password: password.into(),
                }),
            },
        }
    }

    #[test]
    fn pipelines_share_a_pool_per_cluster_and_credentials_until_the_last_lets_go() {
        let clusters = Clusters::new(2);
        let a = clusters.get(settings("k:9092", "p"));
        let mut reordered = settings("k:9092", "p");
        reordered.options.reverse();
        let b = clusters.get(reordered);
        assert!(Arc::ptr_eq(&a, &b), "same cluster, same credentials");
        let rotated = clusters.get(settings("k:9092", "q"));
        let other = clusters.get(settings("j:9092", "p"));
        assert!(!Arc::ptr_eq(&a, &rotated) && !Arc::ptr_eq(&a, &other));
        assert_eq!(clusters.open().0, 3);
        drop((a, rotated));
        assert_eq!(clusters.open().0, 2, "one pipeline still holds the pool");
        drop((b, other));
        assert_eq!(clusters.open(), (0, 0));
    }
}
