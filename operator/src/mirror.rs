//! A local copy of some objects, kept current by a watch: what the operator
//! reads at every reconcile without asking the API server, and the
//! pipelines their changes concern.

use std::fmt::Debug;
use std::future::Future;

use futures::{StreamExt, TryStreamExt};
use kube::Api;
use kube::Resource;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use pixelpipe_crds::PixelPipeline;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

/// Pipelines to reconcile because an object they depend on changed.
pub type Triggers = mpsc::Receiver<ObjectRef<PixelPipeline>>;

/// Triggers waiting at most; one dropped when full waits for the
/// pipeline's next requeue.
const TRIGGERS: usize = 256;

/// The store of the objects `api` and `config` select, the watch that fills
/// it (run it until shutdown; `what` names them in the debug log), and the
/// pipeline `concerns` names for each object added, changed or deleted.
///
/// A trigger is sent only once the store holds the change, so the
/// reconcile it starts reads the object as it is now (or its absence).
pub fn mirror<K>(
    api: Api<K>,
    config: watcher::Config,
    what: &'static str,
    concerns: impl Fn(&K) -> Option<ObjectRef<PixelPipeline>> + Send + 'static,
) -> (Store<K>, impl Future<Output = ()>, Triggers)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let (tx, rx) = mpsc::channel(TRIGGERS);
    let stream = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .touched_objects()
        .inspect_ok(move |k| {
            if let Some(pipeline) = concerns(k) {
                let _ = tx.try_send(pipeline);
            }
        });
    let run = async move {
        stream
            .for_each(|r| async move {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "watching {what}");
                }
            })
            .await;
    };
    (reader, run, rx)
}
