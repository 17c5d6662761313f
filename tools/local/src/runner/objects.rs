//! The runner's pods as Pod objects, so what reads pods through the API (the
//! operator's autoscaler, `kubectl get pods`) sees them as on a cluster:
//! created with the template's labels and the Deployment as controller,
//! bound to the runner's node, with their IP and Ready condition in the
//! status, deleted once their process is gone. A pod the node has no room
//! for stays Pending, unschedulable, as on a full cluster.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use anyhow::Context;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};

/// The node every runner pod is bound to.
pub const NODE_NAME: &str = "pixelpipe-local";

/// Where a pod stands, as its status says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No room on the node: not started.
    Unschedulable { max_pods: usize },
    /// Its process runs at `ip`; Ready by its probe.
    Running { ip: Ipv4Addr, ready: bool },
}

/// The Pod object of a pod of `deployment` named `name`.
pub fn pod_object(name: &str, deployment: &Deployment, template: &PodTemplateSpec) -> Pod {
    let mut spec: PodSpec = template.spec.clone().unwrap_or_default();
    spec.node_name = Some(NODE_NAME.to_string());
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: deployment.namespace(),
            labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
            // As the Deployment controller does: scrape hints and the
            // config checksum are read from the pod.
            annotations: template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.clone()),
            owner_references: deployment.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The status of a pod of `container` in `phase`, as a merge patch.
pub fn status_patch(container: &Container, phase: Phase) -> serde_json::Value {
    let now = Timestamp::now().to_string();
    match phase {
        Phase::Unschedulable { max_pods } => serde_json::json!({"status": {
            "phase": "Pending",
            "conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": format!("0/1 nodes are available: the node is full ({max_pods} pods)"),
                "lastTransitionTime": now,
            }],
        }}),
        Phase::Running { ip, ready } => {
            let containers = [serde_json::json!({
                "name": container.name,
                "image": container.image.clone().unwrap_or_default(),
                "imageID": "",
                "ready": ready,
                "started": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            })];
            let ready = if ready { "True" } else { "False" };
            serde_json::json!({"status": {
                "containerStatuses": containers,
                "phase": "Running",
                "podIP": ip.to_string(),
                "podIPs": [{"ip": ip.to_string()}],
                "hostIP": "127.0.0.1",
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                    {"type": "Ready", "status": ready, "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
                ],
            }})
        }
    }
}

/// The namespace's Pod objects, as the runner keeps them.
#[derive(Clone)]
pub struct Objects {
    api: Api<Pod>,
}

impl Objects {
    pub fn new(api: Api<Pod>) -> Self {
        Self { api }
    }

    pub async fn create(
        &self,
        pod: &Pod,
        container: &Container,
        phase: Phase,
    ) -> anyhow::Result<()> {
        let name = pod.name_any();
        self.api
            .create(&PostParams::default(), pod)
            .await
            .with_context(|| format!("creating Pod {name}"))?;
        self.set(&name, container, phase).await
    }

    pub async fn set(&self, name: &str, container: &Container, phase: Phase) -> anyhow::Result<()> {
        self.api
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(status_patch(container, phase)),
            )
            .await
            .with_context(|| format!("reporting the status of Pod {name}"))?;
        Ok(())
    }

    /// Marks the pod terminating, as a delete with a grace period does
    /// while the kubelet stops its containers.
    pub async fn terminating(&self, name: &str) {
        if let Err(e) = self.api.delete(name, &DeleteParams::default()).await {
            tracing::debug!(pod = name, error = %e, "marking a pod terminating");
        }
    }

    /// Removes the object: its process is gone.
    pub async fn remove(&self, name: &str) {
        match self
            .api
            .delete(name, &DeleteParams::default().grace_period(0))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!(pod = name, error = %e, "removing a Pod object"),
        }
    }

    /// Removes every object bound to the runner's node that is not in `keep`:
    /// pods of an earlier run.
    pub async fn sweep(&self, keep: &HashSet<String>) -> anyhow::Result<()> {
        let on_node = ListParams::default().fields(&format!("spec.nodeName={NODE_NAME}"));
        for pod in self.api.list(&on_node).await?.items {
            let name = pod.name_any();
            if !keep.contains(&name) {
                self.remove(&name).await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_pod_carries_its_templates_labels_annotations_its_owner_and_the_node() {
        let mut d = Deployment::default();
        d.metadata.name = Some("storefront-worker".into());
        d.metadata.namespace = Some("shop".into());
        d.metadata.uid = Some("u-1".into());
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("app".to_string(), "w".to_string())])),
                annotations: Some(BTreeMap::from([(
                    "prometheus.io/scrape".to_string(),
                    "true".to_string(),
                )])),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "worker".into(),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        };
        let pod = pod_object("storefront-worker-abc", &d, &template);
        assert_eq!(pod.namespace().as_deref(), Some("shop"));
        assert_eq!(pod.labels()["app"], "w");
        assert_eq!(pod.annotations()["prometheus.io/scrape"], "true");
        let owner = &pod.owner_references()[0];
        assert_eq!(
            (owner.name.as_str(), owner.controller),
            ("storefront-worker", Some(true))
        );
        assert_eq!(
            pod.spec.expect("spec").node_name.as_deref(),
            Some(NODE_NAME)
        );
        let container = &template.spec.as_ref().expect("spec").containers[0];
        let running = status_patch(
            container,
            Phase::Running {
                ip: Ipv4Addr::new(127, 0, 1, 4),
                ready: true,
            },
        );
        assert_eq!(running["status"]["podIP"], "127.0.1.4");
        assert_eq!(running["status"]["conditions"][1]["status"], "True");
        assert_eq!(running["status"]["containerStatuses"][0]["ready"], true);
        let pending = status_patch(container, Phase::Unschedulable { max_pods: 3 });
        assert_eq!(pending["status"]["phase"], "Pending");
    }
}
