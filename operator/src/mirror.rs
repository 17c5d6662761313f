//! A local copy of some objects, kept current by a watch: what the operator
//! reads at every reconcile without asking the API server.

use std::fmt::Debug;
use std::future::Future;

use futures::{StreamExt, TryStreamExt};
use kube::Api;
use kube::Resource;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;

/// The store of the objects `api` and `config` select, and the watch that
/// fills it (run it until shutdown); `what` names them in the debug log.
pub fn mirror<K>(
    api: Api<K>,
    config: watcher::Config,
    what: &'static str,
) -> (Store<K>, impl Future<Output = ()>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    mirror_with(api, config, what, |_| {})
}

/// [`mirror`], and `seen` called with each object as it is added or changed.
pub fn mirror_with<K>(
    api: Api<K>,
    config: watcher::Config,
    what: &'static str,
    seen: impl Fn(&K) + Send + 'static,
) -> (Store<K>, impl Future<Output = ()>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .inspect_ok(move |k| seen(k));
    let run = async move {
        stream
            .for_each(|r| async move {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "watching {what}");
                }
            })
            .await;
    };
    (reader, run)
}
