//! Matching a Deployment's replicas: which pods stop, which start, and which
//! wait Pending for room on the node.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};

use super::objects::{Phase, pod_object};
use super::plan::{Plan, plan};
use super::{Binary, Pending, Runner, stop_pod, suffix};

/// What a new pod of a Deployment is made from.
pub(super) struct Deploy<'a> {
    pub deployment: &'a Deployment,
    pub hash: &'a str,
    pub binary: Binary,
    pub template: &'a PodTemplateSpec,
    pub container: &'a Container,
}

impl Deploy<'_> {
    fn pod_name(&self) -> String {
        let name = self.deployment.metadata.name.as_deref().unwrap_or("pod");
        format!("{name}-{}-{}", &self.hash[..10], suffix())
    }
}

impl Runner {
    /// Processes running on the node, every Deployment's.
    fn running(&self) -> usize {
        self.pods.values().map(Vec::len).sum()
    }

    fn max_pods(&self) -> Option<usize> {
        self.config
            .max_pods
            .as_ref()
            .map(|m| m.load(Ordering::Relaxed))
    }

    fn room(&self) -> bool {
        self.max_pods().is_none_or(|max| self.running() < max)
    }

    /// Drops Pending pods of an older template, and those past `want`
    /// (a scale-down removes unscheduled pods first); returns how many stay.
    pub(super) async fn keep_pending(
        &mut self,
        deployment: &str,
        hash: &str,
        want: usize,
    ) -> usize {
        let pending = self.pending.entry(deployment.to_string()).or_default();
        let mut dropped = Vec::new();
        pending.retain(|p| {
            let keep = p.template_hash == hash;
            if !keep {
                dropped.push(p.name.clone());
            }
            keep
        });
        while pending.len() > want {
            if let Some(p) = pending.pop() {
                dropped.push(p.name);
            }
        }
        let left = pending.len();
        for name in dropped {
            self.objects.remove(&name).await;
        }
        left
    }

    /// The start/stop plan for the running pods, `want` of them.
    pub(super) fn plan_running(&self, deployment: &str, hash: &str, want: usize) -> Plan {
        let hashes: Vec<&str> = self
            .pods
            .get(deployment)
            .map(|ps| ps.iter().map(|p| p.template_hash.as_str()).collect())
            .unwrap_or_default();
        plan(want, hash, &hashes)
    }

    pub(super) fn stop_planned(&mut self, deployment: &str, stop: &[usize], grace: Duration) {
        let Some(pods) = self.pods.get_mut(deployment) else {
            return;
        };
        let mut stop = stop.to_vec();
        stop.sort_unstable_by(|a, b| b.cmp(a));
        for i in stop {
            let pod = pods.remove(i);
            tracing::info!(deployment, pod = %pod.name, "stopping pod");
            stop_pod(&mut self.stopping, &self.objects, pod, grace);
        }
    }

    /// Starts the oldest Pending pods while the node has room.
    pub(super) async fn promote_pending(&mut self, d: &Deploy<'_>) -> anyhow::Result<()> {
        let name = d.deployment.metadata.name.clone().unwrap_or_default();
        while self.room() {
            let Some(p) = self
                .pending
                .get_mut(&name)
                .filter(|ps| !ps.is_empty())
                .map(|ps| ps.remove(0))
            else {
                break;
            };
            // The node has room now: this pod starts as a new one.
            self.objects.remove(&p.name).await;
            self.start(d).await?;
        }
        Ok(())
    }

    /// One more pod: started if the node has room, else Pending.
    pub(super) async fn add_pod(&mut self, d: &Deploy<'_>) -> anyhow::Result<()> {
        if self.room() {
            return self.start(d).await;
        }
        let deployment = d.deployment.metadata.name.clone().unwrap_or_default();
        let name = d.pod_name();
        let max_pods = self.max_pods().unwrap_or(0);
        let object = pod_object(&name, d.deployment, d.template);
        self.objects
            .create(&object, d.container, Phase::Unschedulable { max_pods })
            .await?;
        tracing::info!(%deployment, pod = %name, "no room on the node: pod Pending");
        self.pending.entry(deployment).or_default().push(Pending {
            name,
            template_hash: d.hash.to_string(),
        });
        Ok(())
    }

    async fn start(&mut self, d: &Deploy<'_>) -> anyhow::Result<()> {
        let deployment = d.deployment.metadata.name.clone().unwrap_or_default();
        let pod = self
            .start_pod(d, d.pod_name())
            .await
            .with_context(|| format!("starting a pod of {deployment}"))?;
        tracing::info!(%deployment, pod = %pod.name, pid = pod.child.id(), "started pod");
        self.pods.entry(deployment).or_default().push(pod);
        Ok(())
    }
}
