//! The thin layer that writes children: server-side apply with the operator's
//! one field manager, forcing ownership back from anyone who edited a field by
//! hand. An apply that changes nothing is not a write in the API server, so a
//! reconcile of an unchanged pipeline leaves every resourceVersion as it was.

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::children::FIELD_MANAGER;

/// What an apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

/// Applies `desired` and reports whether that created or changed the object,
/// returning the object as stored.
pub async fn apply<K>(api: &Api<K>, desired: &K) -> Result<(Change, K), kube::Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = desired.name_any();
    let before = api.get_opt(&name).await?.and_then(|o| o.resource_version());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let after = api.patch(&name, &params, &Patch::Apply(desired)).await?;
    let change = match before {
        None => Change::Created,
        Some(v) if Some(&v) == after.resource_version().as_ref() => Change::Unchanged,
        Some(_) => Change::Updated,
    };
    Ok((change, after))
}
