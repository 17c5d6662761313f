//! The worker pods of a pipeline on a real node, as the API server shows them.

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};

/// A pipeline's worker pods at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerPods {
    /// Pods whose containers run.
    pub running: usize,
    /// Of those, pods the kubelet reports Ready (their readiness probe passes).
    pub ready: usize,
    /// Container restarts summed over the pods that exist now.
    pub restarts: u32,
}

impl std::fmt::Display for WorkerPods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} running, {} ready", self.running, self.ready)?;
        if self.restarts > 0 {
            write!(f, ", {} restarts", self.restarts)?;
        }
        Ok(())
    }
}

/// The label selector of `pipeline`'s worker pods (the operator's labels).
pub fn worker_selector(pipeline: &str) -> String {
    format!("app.kubernetes.io/name=pixelpipe-worker,app.kubernetes.io/instance={pipeline}")
}

pub async fn worker_pods(
    client: &Client,
    namespace: &str,
    pipeline: &str,
) -> kube::Result<WorkerPods> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pods = api
        .list(&ListParams::default().labels(&worker_selector(pipeline)))
        .await?;
    Ok(count(&pods.items))
}

fn count(pods: &[Pod]) -> WorkerPods {
    let mut out = WorkerPods::default();
    for pod in pods {
        let Some(status) = &pod.status else { continue };
        let containers = status.container_statuses.as_deref().unwrap_or_default();
        out.restarts += containers
            .iter()
            .map(|c| u32::try_from(c.restart_count).unwrap_or(0))
            .sum::<u32>();
        if pod.metadata.deletion_timestamp.is_some() || status.phase.as_deref() != Some("Running") {
            continue;
        }
        out.running += 1;
        let ready = status
            .conditions
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        out.ready += usize::from(ready);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(phase: &str, ready: bool, restarts: i32, deleting: bool) -> Pod {
        let deletion = deleting.then_some("2026-11-30T00:00:00Z");
        serde_json::from_value(json!({
            "metadata": {"name": "w", "deletionTimestamp": deletion},
            "status": {
                "phase": phase,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                "containerStatuses": [{
                    "name": "worker", "image": "i", "imageID": "", "ready": ready,
                    "restartCount": restarts
                }]
            }
        }))
        .expect("a pod")
    }

    #[test]
    fn terminating_and_pending_pods_do_not_count_as_running_but_their_restarts_do() {
        let pods = [
            pod("Running", true, 0, false),
            pod("Running", false, 2, false),
            pod("Running", true, 0, true),
            pod("Pending", false, 1, false),
        ];
        let got = count(&pods);
        assert_eq!(
            got,
            WorkerPods {
                running: 2,
                ready: 1,
                restarts: 3
            }
        );
        assert_eq!(got.to_string(), "2 running, 1 ready, 3 restarts");
    }
}
