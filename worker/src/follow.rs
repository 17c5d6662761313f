//! Following the pool sizes in the worker's own `PixelPipeline` status.
//!
//! The operator decides pool sizes and writes them to the status; every worker
//! of the pipeline watches that one object and resizes its pools live, so a
//! resize needs no rollout. The watch restarts with backoff when the API server
//! is away; meanwhile the worker keeps its current sizes and keeps processing.

use std::sync::Arc;

use futures::TryStreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use pixelpipe_crds::PixelPipeline;
use pixelpipe_crds::worker::PipelineRef;
use tokio_util::sync::CancellationToken;

use crate::pipeline::{PoolResize, Pools};

/// The resize a status asks for, clamped to what this worker allows. A status
/// without pool sizes (the operator has not written one yet) asks for nothing.
pub fn wanted(pipeline: &PixelPipeline, max_workers: usize) -> Option<PoolResize> {
    let pools = pipeline.status.as_ref()?.pools?;
    Some(pools.map(|_, n| Some(usize::try_from(n).unwrap_or(0).clamp(1, max_workers))))
}

/// Watches the pipeline until `stop`, applying each new status's pool sizes.
pub async fn run(
    target: PipelineRef,
    pools: Arc<Pools>,
    max_workers: usize,
    stop: CancellationToken,
) {
    let client = match Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(pipeline = %target, error = %e,
                "cannot reach the Kubernetes API; pool sizes stay as started");
            return;
        }
    };
    let api: Api<PixelPipeline> = Api::namespaced(client, &target.namespace);
    // A field selector on the name keeps the watch within the worker's Role,
    // which grants access to this one object only.
    let config = watcher::Config::default().fields(&format!("metadata.name={}", target.name));
    let updates = watcher(api, config)
        .default_backoff()
        .applied_objects()
        .try_for_each(|pipeline| {
            if let Some(resize) = wanted(&pipeline, max_workers) {
                let before = pools.sizes();
                match pools.resize(resize) {
                    Ok(after) if after != before => {
                        tracing::info!(pipeline = %target, %before, %after, "followed pool sizes from the status");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(pipeline = %target, error = %e, "ignored pool sizes"),
                }
            }
            futures::future::ready(Ok(()))
        });
    tracing::info!(pipeline = %target, "following pool sizes from the PixelPipeline status");
    tokio::select! {
        () = stop.cancelled() => {}
        result = updates => {
            // default_backoff retries forever; the stream ends only if the watcher gives up.
            if let Err(e) = result {
                tracing::error!(pipeline = %target, error = %e, "stopped following the status");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pixelpipe_crds::{PerStage, PixelPipelineStatus};

    fn pipeline(pools: Option<PerStage<i32>>) -> PixelPipeline {
        let text = include_str!("../../manifests/samples/storefront.yaml");
        let mut pp: PixelPipeline = pixelpipe_crds::yaml::from_str(text).expect("sample parses");
        pp.status = Some(PixelPipelineStatus {
            pools,
            ..PixelPipelineStatus::default()
        });
        pp
    }

    #[test]
    fn status_sizes_are_clamped_to_what_the_worker_allows() {
        let pp = pipeline(Some("3/0/-4/500".parse().expect("sizes")));
        assert_eq!(
            wanted(&pp, 64),
            Some(PerStage {
                parse: Some(3),
                validate: Some(1),
                augment: Some(1),
                produce: Some(64),
            })
        );
    }

    #[test]
    fn no_pool_sizes_in_the_status_means_no_resize() {
        assert_eq!(wanted(&pipeline(None), 64), None);
        let mut bare = pipeline(None);
        bare.status = None;
        assert_eq!(wanted(&bare, 64), None);
    }
}
