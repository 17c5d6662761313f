//! What this operator last applied to each pipeline's children, and whether
//! any child has changed since. A reconcile whose desired children are the
//! ones last applied, with no child touched since, skips the applies (two
//! API calls per child): with a thousand pipelines observed every few
//! seconds, the API server otherwise serves twelve calls per observation that
//! change nothing.
//!
//! "Touched" comes from the controller's own watches of the children: every
//! event of a child (an edit by hand, a deletion, a Deployment's rollout
//! status) bumps its owner's counter, and a reconcile that began before the
//! bump applies again.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::{Resource, ResourceExt};

use crate::{KIND, MAX_PIPELINES};

type Key = (String, String);

#[derive(Debug, Default)]
struct Entry {
    /// Child events seen for the pipeline.
    touches: u64,
    /// The last full apply: its digest, the touches counted before it, when,
    /// and the Deployment as stored.
    last: Option<(u64, u64, Instant, Deployment)>,
}

/// Every pipeline's last apply.
#[derive(Debug, Default)]
pub struct AppliedChildren {
    entries: Mutex<HashMap<Key, Entry>>,
}

/// A digest of the desired children, as serialized for the applies.
#[derive(Debug, Default)]
pub struct Digest(DefaultHasher);

impl Digest {
    pub fn add<T: serde::Serialize>(&mut self, child: &T) {
        // A child that cannot be serialized fails its apply just after, and a
        // failed reconcile records nothing: the digest need not tell.
        let _ = serde_json::to_writer(HashWrite(&mut self.0), child);
    }

    pub fn finish(&self) -> u64 {
        self.0.finish()
    }
}

struct HashWrite<'a>(&'a mut DefaultHasher);

impl std::io::Write for HashWrite<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl AppliedChildren {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<Key, Entry>) -> T) -> T {
        f(&mut self.entries.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A child event: counts against the pipeline that owns `child`.
    pub fn touched<K: Resource>(&self, child: &K) {
        let Some(owner) = child.owner_references().iter().find(|o| o.kind == KIND) else {
            return;
        };
        let key = (child.namespace().unwrap_or_default(), owner.name.clone());
        self.with(|entries| {
            if entries.len() >= MAX_PIPELINES && !entries.contains_key(&key) {
                let any = entries.keys().next().cloned();
                if let Some(k) = any {
                    entries.remove(&k);
                }
            }
            entries.entry(key).or_default().touches += 1;
        });
    }

    /// The touches counted so far: what a reconcile starts from.
    pub fn touches(&self, key: &Key) -> u64 {
        self.with(|entries| entries.get(key).map_or(0, |e| e.touches))
    }

    /// The stored Deployment, if the children applied last had `digest`, no
    /// child was touched since, and that apply is younger than `max_age`.
    pub fn unchanged(&self, key: &Key, digest: u64, max_age: Duration) -> Option<Deployment> {
        self.with(|entries| {
            let e = entries.get(key)?;
            let (d, touches, at, deployment) = e.last.as_ref()?;
            (*d == digest && *touches == e.touches && at.elapsed() < max_age)
                .then(|| deployment.clone())
        })
    }

    /// A full apply of `digest`, begun when `touches` had been counted.
    pub fn record(&self, key: Key, digest: u64, touches: u64, mut deployment: Deployment) {
        // Kept for its spec and status; its field managers are most of its size.
        deployment.metadata.managed_fields = None;
        self.with(|entries| {
            if entries.len() >= MAX_PIPELINES && !entries.contains_key(&key) {
                return;
            }
            entries.entry(key).or_default().last =
                Some((digest, touches, Instant::now(), deployment));
        });
    }

    /// Forgets the pipelines `exists` says are gone.
    pub fn retain(&self, exists: impl Fn(&Key) -> bool) {
        self.with(|entries| entries.retain(|k, _| exists(k)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn child(owner: &str) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.namespace = Some("shop".into());
        d.metadata.owner_references = Some(vec![OwnerReference {
            kind: KIND.into(),
            name: owner.into(),
            ..OwnerReference::default()
        }]);
        d
    }

    #[test]
    fn a_touch_after_the_apply_began_makes_the_next_reconcile_apply() {
        let applied = AppliedChildren::default();
        let key = ("shop".to_string(), "storefront".to_string());
        let hour = Duration::from_secs(3600);
        assert!(applied.unchanged(&key, 7, hour).is_none(), "never applied");
        let began = applied.touches(&key);
        applied.record(key.clone(), 7, began, child("storefront"));
        assert!(applied.unchanged(&key, 7, hour).is_some());
        assert!(applied.unchanged(&key, 8, hour).is_none(), "other children");
        assert!(
            applied.unchanged(&key, 7, Duration::ZERO).is_none(),
            "too old"
        );
        applied.touched(&child("other"));
        assert!(
            applied.unchanged(&key, 7, hour).is_some(),
            "another owner's child"
        );
        applied.touched(&child("storefront"));
        assert!(
            applied.unchanged(&key, 7, hour).is_none(),
            "its child changed"
        );
        let began = applied.touches(&key);
        applied.record(key.clone(), 7, began, child("storefront"));
        assert!(applied.unchanged(&key, 7, hour).is_some());
        applied.retain(|_| false);
        assert!(applied.unchanged(&key, 7, hour).is_none(), "forgotten");
    }
}
