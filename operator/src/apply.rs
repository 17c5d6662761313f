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

/// The field managers that own the field at `path` of `object` (fieldsV1
/// keys, e.g. `["f:spec", "f:replicas"]`).
pub fn managers_of<K: Resource>(object: &K, path: &[&str]) -> Vec<String> {
    object
        .meta()
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.fields_v1.as_ref().is_some_and(|f| {
                path.iter()
                    .try_fold(&f.0, |node, key| node.get(key))
                    .is_some()
            })
        })
        .filter_map(|m| m.manager.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

    fn entry(manager: &str, fields: serde_json::Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            fields_v1: Some(FieldsV1(fields)),
            ..ManagedFieldsEntry::default()
        }
    }

    #[test]
    fn the_owners_of_a_field_are_the_managers_whose_fields_hold_its_path() {
        let mut d = Deployment::default();
        d.metadata.managed_fields = Some(vec![
            entry(
                FIELD_MANAGER,
                serde_json::json!({"f:spec": {"f:template": {}}}),
            ),
            entry(
                "kube-controller-manager",
                serde_json::json!({"f:spec": {"f:replicas": {}}}),
            ),
        ]);
        assert_eq!(
            managers_of(&d, &["f:spec", "f:replicas"]),
            ["kube-controller-manager"]
        );
        assert_eq!(managers_of(&d, &["f:spec", "f:template"]), [FIELD_MANAGER]);
        assert!(managers_of(&d, &["f:status"]).is_empty());
    }
}
