//! Writing a pipeline's children: each applied server-side, with an Event
//! when that created or changed it; all of them skipped when they are as
//! last applied and untouched since ([`crate::applied`]).

use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use pixelpipe_crds::PixelPipeline;
use pixelpipe_crds::reasons::EventReason;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Context, Error, publish};
use crate::applied::Digest;
use crate::apply::{Change, apply};
use crate::children;

/// Applies the pipeline's children, unless they are exactly as last applied
/// and untouched since ([`crate::applied::AppliedChildren`]); returns the
/// worker Deployment as stored.
pub(super) async fn apply_children(
    ctx: &Context,
    pp: &PixelPipeline,
    namespace: &str,
    replicas: Option<i32>,
    credentials: Option<&str>,
) -> Result<Deployment, Error> {
    let config_map = children::config_map(pp)?;
    let service_account = children::service_account(pp)?;
    let role = children::role(pp)?;
    let binding = children::role_binding(pp)?;
    let budget = children::disruption_budget(pp)?;
    let deployment = children::deployment(pp, replicas, credentials)?;
    let mut digest = Digest::default();
    digest.add(&config_map);
    digest.add(&service_account);
    digest.add(&role);
    digest.add(&binding);
    digest.add(&budget);
    digest.add(&deployment);
    let (key, digest) = (Context::key(pp), digest.finish());
    if let Some(stored) = ctx.applied.unchanged(&key, digest, ctx.resync) {
        return Ok(stored);
    }
    let touches = ctx.applied.touches(&key);
    apply_child(ctx, pp, namespace, config_map).await?;
    apply_child(ctx, pp, namespace, service_account).await?;
    apply_child(ctx, pp, namespace, role).await?;
    apply_child(ctx, pp, namespace, binding).await?;
    apply_child(ctx, pp, namespace, budget).await?;
    let stored = apply_child(ctx, pp, namespace, deployment).await?;
    ctx.applied.record(key, digest, touches, stored.clone());
    Ok(stored)
}

async fn apply_child<K>(
    ctx: &Context,
    pp: &PixelPipeline,
    namespace: &str,
    desired: K,
) -> Result<K, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let kind = K::kind(&());
    let name = desired.name_any();
    let (change, stored) = apply(&api, &desired).await.map_err(|source| Error::Apply {
        kind: kind.to_string(),
        name: name.clone(),
        source,
    })?;
    let (reason, verb) = match change {
        Change::Unchanged => return Ok(stored),
        Change::Created => (EventReason::Created, "created"),
        Change::Updated => (EventReason::Updated, "updated"),
    };
    ctx.metrics.child_writes.inc();
    tracing::info!(pipeline = %pp.name_any(), %namespace, %kind, %name, "{verb}");
    let event = Event {
        type_: EventType::Normal,
        reason: reason.as_str().into(),
        note: Some(format!("{kind} {name} {verb}")),
        action: "Apply".into(),
        // The child as the related object keeps one Event per child: the
        // recorder folds Events with the same reason and objects into a series.
        secondary: Some(stored.object_ref(&())),
    };
    publish(ctx, pp, event).await;
    Ok(stored)
}
