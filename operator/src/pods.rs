//! The worker pods of each pipeline, found through the API: a reflector on
//! the Pods of the operator's Deployments, read at each observation. The
//! same on a cluster and under the local runner, which gives every pod its
//! own loopback address as its pod IP.

use std::future::Future;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use pixelpipe_crds::PixelPipeline;

use crate::children::{FIELD_MANAGER, PIPELINE_LABEL};
use crate::mirror::{Triggers, mirror};

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
    /// Why its container keeps stopping, if it does.
    pub failure: Option<Failure>,
}

/// Why a worker pod's container keeps stopping, as the kubelet reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Its last run was killed for memory at its limit, recently.
    OomKilled { restarts: i32 },
    /// It keeps exiting and the kubelet waits longer before each restart.
    CrashLooping {
        restarts: i32,
        exit_code: Option<i32>,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::OomKilled { restarts } => write!(
                f,
                "killed for memory at its limit (OOMKilled), {restarts} restarts"
            ),
            Failure::CrashLooping {
                restarts,
                exit_code: Some(code),
            } => write!(
                f,
                "crash-looping: exits with code {code}, {restarts} restarts"
            ),
            Failure::CrashLooping { restarts, .. } => {
                write!(f, "crash-looping, {restarts} restarts")
            }
        }
    }
}

/// How long an OOM kill is news when the container runs again since.
const OOM_RECENT_SECONDS: i64 = 600;

impl Failure {
    /// From the pod's container statuses: a container waiting in
    /// CrashLoopBackOff, or one whose last run ended OOMKilled within the
    /// last ten minutes.
    pub fn of(status: &PodStatus, now: Timestamp) -> Option<Self> {
        status
            .container_statuses
            .iter()
            .flatten()
            .find_map(|c| Self::of_container(c, now))
    }

    fn of_container(c: &ContainerStatus, now: Timestamp) -> Option<Self> {
        let restarts = c.restart_count;
        let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        let oom = last.is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"));
        let looping = c
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .is_some_and(|w| w.reason.as_deref() == Some("CrashLoopBackOff"));
        let recent = last
            .and_then(|t| t.finished_at.as_ref())
            .is_some_and(|at| (now - at.0).get_seconds() <= OOM_RECENT_SECONDS);
        match (oom, looping) {
            (true, true) => Some(Failure::OomKilled { restarts }),
            (true, false) if recent => Some(Failure::OomKilled { restarts }),
            (false, true) => Some(Failure::CrashLooping {
                restarts,
                exit_code: last.map(|t| t.exit_code),
            }),
            _ => None,
        }
    }
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
            failure: status.and_then(|s| Failure::of(s, now)),
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

/// The pods' store, the watch that fills it (run it until shutdown), and the
/// pipelines whose pods' containers stopped: its Deployment's status may
/// not change (a pod that never became available), so without these a
/// crash loop would show only at the next resync.
pub fn watch(api: Api<Pod>) -> (WorkerPods, impl Future<Output = ()>, Triggers) {
    let config =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    let (store, run, stopped) = mirror(api, config, "worker pods", stopped);
    (WorkerPods { store }, run, stopped)
}

/// The pipeline of a pod whose container has stopped at least once.
fn stopped(pod: &Pod) -> Option<ObjectRef<PixelPipeline>> {
    let restarted = pod
        .status
        .as_ref()?
        .container_statuses
        .iter()
        .flatten()
        .any(|c| {
            c.restart_count > 0
                || c.last_state
                    .as_ref()
                    .is_some_and(|s| s.terminated.is_some())
        });
    let pipeline = pod.metadata.labels.as_ref()?.get(PIPELINE_LABEL)?;
    let namespace = pod.metadata.namespace.as_deref()?;
    restarted.then(|| ObjectRef::new(pipeline).within(namespace))
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
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStateWaiting, PodCondition,
    };
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

    fn container(waiting: Option<&str>, last: Option<(&str, i32, i64)>) -> ContainerStatus {
        ContainerStatus {
            name: "worker".into(),
            restart_count: 3,
            state: waiting.map(|r| ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(r.into()),
                    ..ContainerStateWaiting::default()
                }),
                ..ContainerState::default()
            }),
            last_state: last.map(|(reason, code, at)| ContainerState {
                terminated: Some(ContainerStateTerminated {
                    reason: Some(reason.into()),
                    exit_code: code,
                    finished_at: Some(Time(Timestamp::from_second(at).expect("time"))),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }
    }

    #[test]
    fn a_pod_whose_container_stopped_triggers_its_pipeline() {
        let mut pod = Pod::default();
        pod.metadata.namespace = Some("shop".into());
        pod.metadata.labels = Some([(PIPELINE_LABEL.to_string(), "storefront".to_string())].into());
        pod.status = Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus::default()]),
            ..PodStatus::default()
        });
        assert_eq!(stopped(&pod), None, "running since it started");
        pod.status = Some(PodStatus {
            container_statuses: Some(vec![container(Some("CrashLoopBackOff"), None)]),
            ..PodStatus::default()
        });
        assert_eq!(
            stopped(&pod),
            Some(ObjectRef::new("storefront").within("shop"))
        );
    }

    #[test]
    fn a_container_that_keeps_stopping_is_a_failure_and_says_why() {
        let now = Timestamp::from_second(10_000).expect("time");
        let of = |c| {
            let status = PodStatus {
                container_statuses: Some(vec![c]),
                ..PodStatus::default()
            };
            Failure::of(&status, now)
        };
        let looping = Some("CrashLoopBackOff");
        assert_eq!(
            of(container(looping, Some(("Error", 2, 9_990)))),
            Some(Failure::CrashLooping {
                restarts: 3,
                exit_code: Some(2)
            })
        );
        assert_eq!(
            of(container(looping, Some(("OOMKilled", 137, 1_000)))),
            Some(Failure::OomKilled { restarts: 3 })
        );
        // Running again after an OOM kill: news for ten minutes.
        assert_eq!(
            of(container(None, Some(("OOMKilled", 137, 9_500)))),
            Some(Failure::OomKilled { restarts: 3 })
        );
        assert_eq!(of(container(None, Some(("OOMKilled", 137, 9_000)))), None);
        // A clean exit a while ago, or still pulling the image: no failure.
        assert_eq!(of(container(None, Some(("Completed", 0, 9_990)))), None);
        assert_eq!(of(container(Some("ContainerCreating"), None)), None);
        assert_eq!(
            Failure::CrashLooping {
                restarts: 4,
                exit_code: Some(2)
            }
            .to_string(),
            "crash-looping: exits with code 2, 4 restarts"
        );
    }
}
