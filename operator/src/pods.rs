//! The worker pods of each pipeline, found through the API: a reflector on
//! the Pods of the operator's Deployments, read at each observation. The
//! same on a cluster and under the local runner, which gives every pod its
//! own loopback address as its pod IP.

use std::future::Future;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;

use crate::children::{FIELD_MANAGER, PIPELINE_LABEL};
use crate::mirror::mirror;

/// One worker pod, as autoscaling sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerPod {
    pub name: String,
    pub ip: Option<String>,
    /// Its Ready condition is True.
    pub ready: bool,
    /// Seconds its readiness has been what it is: since its Ready condition
    /// last changed, or since it was created when it has none. A pod that
    /// was Ready for an hour and turned not Ready a second ago has not been
    /// failing for an hour.
    pub unchanged_for: f64,
    /// Being deleted: neither capacity nor a pod that failed to start.
    pub terminating: bool,
}

impl WorkerPod {
    pub fn of(pod: &Pod, now: Timestamp) -> Self {
        let status = pod.status.as_ref();
        let condition = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "Ready");
        let since = condition
            .and_then(|c| c.last_transition_time.as_ref())
            .or(pod.metadata.creation_timestamp.as_ref());
        let unchanged_for = since.map_or(0.0, |t| (now - t.0).get_seconds() as f64);
        Self {
            name: pod.metadata.name.clone().unwrap_or_default(),
            ip: status.and_then(|s| s.pod_ip.clone()),
            ready: condition.is_some_and(|c| c.status == "True"),
            unchanged_for: unchanged_for.max(0.0),
            terminating: pod.metadata.deletion_timestamp.is_some(),
        }
    }
}

/// Every worker pod the operator's Deployments run, kept current by a watch.
#[derive(Clone)]
pub struct WorkerPods {
    store: Store<Pod>,
}

impl std::fmt::Debug for WorkerPods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPods")
            .field("pods", &self.store.state().len())
            .finish()
    }
}

/// The pods' store, and the watch that fills it (run it until shutdown).
pub fn watch(api: Api<Pod>) -> (WorkerPods, impl Future<Output = ()>) {
    let config =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    let (store, run) = mirror(api, config, "worker pods");
    (WorkerPods { store }, run)
}

impl WorkerPods {
    /// The pipeline's pods, by name.
    pub fn of(&self, namespace: &str, pipeline: &str) -> Vec<WorkerPod> {
        let now = Timestamp::now();
        let mut pods: Vec<WorkerPod> = self
            .store
            .state()
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .filter(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(PIPELINE_LABEL))
                    .is_some_and(|v| v == pipeline)
            })
            .map(|p| WorkerPod::of(p, now))
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        pods
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn a_pod_is_ready_by_its_condition_and_timed_from_its_last_change() {
        let at = |s| Some(Time(Timestamp::from_second(s).expect("time")));
        let mut pod = Pod::default();
        pod.metadata.name = Some("w-1".into());
        pod.metadata.creation_timestamp = at(1_000);
        let ready = |status: &str, since| PodStatus {
            pod_ip: Some("127.0.1.3".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: status.into(),
                last_transition_time: since,
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        };
        let now = Timestamp::from_second(1_042).expect("time");
        pod.status = Some(ready("True", at(1_010)));
        let w = WorkerPod::of(&pod, now);
        assert_eq!(
            (w.ready, w.unchanged_for, w.ip.as_deref(), w.terminating),
            (true, 32.0, Some("127.0.1.3"), false)
        );
        // Ready for a while, then not: not Ready for 2 s, not 42.
        pod.status = Some(ready("False", at(1_040)));
        let w = WorkerPod::of(&pod, now);
        assert_eq!((w.ready, w.unchanged_for), (false, 2.0));
        pod.status = None;
        let w = WorkerPod::of(&pod, now);
        assert_eq!((w.ready, w.unchanged_for), (false, 42.0), "no status");
    }
}
