//! Other autoscalers of a pipeline's workers: HorizontalPodAutoscalers, kept
//! current by a watch. Two writers of one replica count fight (each undoes
//! the other on every sync), so the operator yields a Deployment's replicas
//! to an HPA that targets it and says so in a condition.

use std::fmt;
use std::future::Future;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use pixelpipe_crds::{KIND, PixelPipeline};

use crate::children::{pipeline_of_worker, worker_name};
use crate::mirror::{Triggers, mirror};

/// What another autoscaler scales, and how that meets the operator's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForeignScaler {
    /// An HPA on the worker Deployment: the operator leaves the Deployment's
    /// replicas to it.
    OnDeployment { hpa: String, deployment: String },
    /// An HPA on the PixelPipeline (its scale subresource) while the
    /// operator's autoscaling is Enabled: both move the replica count.
    OnPipeline { hpa: String },
}

impl ForeignScaler {
    /// Whether the operator stops writing the Deployment's replicas.
    pub fn owns_deployment_replicas(&self) -> bool {
        matches!(self, ForeignScaler::OnDeployment { .. })
    }

    /// The condition's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            ForeignScaler::OnDeployment { .. } => "HPAOnDeployment",
            ForeignScaler::OnPipeline { .. } => "HPAOnPipeline",
        }
    }
}

impl fmt::Display for ForeignScaler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForeignScaler::OnDeployment { hpa, deployment } => write!(
                f,
                "HorizontalPodAutoscaler {hpa} scales Deployment {deployment}: the operator leaves its replicas to it and applies only pool sizes; to let the operator scale, delete the HPA, or point it at the PixelPipeline with autoscaling.mode Disabled"
            ),
            ForeignScaler::OnPipeline { hpa } => write!(
                f,
                "HorizontalPodAutoscaler {hpa} scales this PixelPipeline while autoscaling.mode is Enabled: each undoes the other's replica count; set autoscaling.mode Disabled to scale with the HPA alone, or delete it"
            ),
        }
    }
}

/// The HPA among `hpas` (all in the pipeline's namespace) that conflicts
/// with the operator over `pp`'s replicas, if any; the first by name.
pub fn conflict<'a>(
    pp: &PixelPipeline,
    hpas: impl IntoIterator<Item = &'a HorizontalPodAutoscaler>,
) -> Option<ForeignScaler> {
    let deployment = worker_name(pp);
    let name = pp.name_any();
    let mut found: Vec<ForeignScaler> = hpas
        .into_iter()
        .filter_map(|h| {
            let target = &h.spec.as_ref()?.scale_target_ref;
            let hpa = h.name_any();
            match target.kind.as_str() {
                "Deployment" if target.name == deployment => Some(ForeignScaler::OnDeployment {
                    hpa,
                    deployment: deployment.clone(),
                }),
                k if k == KIND && target.name == name && pp.spec.autoscaling.mode.applies() => {
                    Some(ForeignScaler::OnPipeline { hpa })
                }
                _ => None,
            }
        })
        .collect();
    found.sort_by_key(|s| match s {
        ForeignScaler::OnDeployment { hpa, .. } | ForeignScaler::OnPipeline { hpa } => hpa.clone(),
    });
    found.into_iter().next()
}

/// Every HPA the operator can see, kept current by a watch.
#[derive(Clone)]
pub struct Scalers {
    store: Store<HorizontalPodAutoscaler>,
}

impl fmt::Debug for Scalers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scalers")
            .field("hpas", &self.store.state().len())
            .finish()
    }
}

impl Scalers {
    /// Resolves once the first list of HPAs is in the store.
    pub async fn ready(&self) {
        // Err only when the watch is gone: nothing to wait for then.
        let _ = self.store.wait_until_ready().await;
    }

    /// The HPA that conflicts with the operator over `pp`'s replicas.
    pub fn conflict(&self, pp: &PixelPipeline) -> Option<ForeignScaler> {
        let namespace = pp.namespace();
        let state = self.store.state();
        conflict(
            pp,
            state
                .iter()
                .map(AsRef::as_ref)
                .filter(|h: &&HorizontalPodAutoscaler| h.namespace() == namespace),
        )
    }
}

/// The HPAs' store, the watch that fills it (run it until shutdown), and
/// the pipelines whose HPAs came, changed or went: a deleted HPA's replicas
/// are taken back at once, not at the pipeline's next requeue.
pub fn watch(api: Api<HorizontalPodAutoscaler>) -> (Scalers, impl Future<Output = ()>, Triggers) {
    let (store, run, rescaled) = mirror(
        api,
        watcher::Config::default(),
        "HorizontalPodAutoscalers",
        scaled,
    );
    (Scalers { store }, run, rescaled)
}

/// The pipeline an HPA scales, itself or through its worker Deployment. An
/// HPA moved to another target triggers only the new one's pipeline; the
/// old one's sees it at its next requeue.
fn scaled(hpa: &HorizontalPodAutoscaler) -> Option<ObjectRef<PixelPipeline>> {
    let namespace = hpa.metadata.namespace.as_deref()?;
    let target = &hpa.spec.as_ref()?.scale_target_ref;
    let pipeline = match target.kind.as_str() {
        "Deployment" => pipeline_of_worker(&target.name)?,
        k if k == KIND => &target.name,
        _ => return None,
    };
    Some(ObjectRef::new(pipeline).within(namespace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::autoscaling::v2::{
        CrossVersionObjectReference, HorizontalPodAutoscalerSpec,
    };
    use pixelpipe_crds::AutoscalingMode;

    fn hpa(name: &str, kind: &str, target: &str) -> HorizontalPodAutoscaler {
        let mut h = HorizontalPodAutoscaler {
            spec: Some(HorizontalPodAutoscalerSpec {
                scale_target_ref: CrossVersionObjectReference {
                    kind: kind.into(),
                    name: target.into(),
                    ..CrossVersionObjectReference::default()
                },
                max_replicas: 10,
                ..HorizontalPodAutoscalerSpec::default()
            }),
            ..HorizontalPodAutoscaler::default()
        };
        h.metadata.name = Some(name.into());
        h
    }

    fn pipeline(mode: AutoscalingMode) -> PixelPipeline {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../manifests/samples/storefront.yaml"
        ))
        .expect("sample");
        let mut pp: PixelPipeline = pixelpipe_crds::yaml::from_str(&text).expect("sample parses");
        pp.spec.autoscaling.mode = mode;
        pp
    }

    #[test]
    fn an_hpa_on_the_workers_deployment_conflicts_in_every_mode() {
        for mode in [AutoscalingMode::Enabled, AutoscalingMode::Disabled] {
            let pp = pipeline(mode);
            let hpas = [hpa("cpu", "Deployment", "storefront-worker")];
            let found = conflict(&pp, &hpas).expect("a conflict");
            assert!(found.owns_deployment_replicas());
            assert_eq!(found.reason(), "HPAOnDeployment");
            assert!(found.to_string().starts_with(
                "HorizontalPodAutoscaler cpu scales Deployment storefront-worker: the operator leaves its replicas to it"
            ));
        }
    }

    #[test]
    fn an_hpa_on_the_pipeline_conflicts_only_while_autoscaling_is_enabled() {
        let hpas = [hpa("lag", KIND, "storefront")];
        let found = conflict(&pipeline(AutoscalingMode::Enabled), &hpas).expect("a conflict");
        assert_eq!(found, ForeignScaler::OnPipeline { hpa: "lag".into() });
        assert!(!found.owns_deployment_replicas());
        // Disabled: the HPA is how the pipeline is meant to be scaled.
        assert_eq!(conflict(&pipeline(AutoscalingMode::Disabled), &hpas), None);
    }

    #[test]
    fn hpas_on_other_targets_are_none_of_the_operators_business() {
        let hpas = [
            hpa("web", "Deployment", "storefront-web"),
            hpa("other", KIND, "checkout"),
            hpa("sts", "StatefulSet", "storefront-worker"),
        ];
        assert_eq!(conflict(&pipeline(AutoscalingMode::Enabled), &hpas), None);
    }

    #[test]
    fn an_hpa_triggers_the_pipeline_it_scales_directly_or_through_its_workers() {
        let within = |mut h: HorizontalPodAutoscaler| {
            h.metadata.namespace = Some("shop".into());
            scaled(&h)
        };
        let storefront = Some(ObjectRef::new("storefront").within("shop"));
        assert_eq!(
            within(hpa("cpu", "Deployment", "storefront-worker")),
            storefront
        );
        assert_eq!(within(hpa("lag", KIND, "storefront")), storefront);
        for (kind, target) in [
            ("Deployment", "storefront-web"),
            ("Deployment", "-worker"),
            ("StatefulSet", "storefront-worker"),
        ] {
            assert_eq!(within(hpa("other", kind, target)), None, "{kind} {target}");
        }
        // Without a namespace there is no pipeline to name.
        assert_eq!(scaled(&hpa("cpu", "Deployment", "storefront-worker")), None);
    }
}
