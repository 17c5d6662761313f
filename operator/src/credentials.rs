//! The Kafka Secrets a pipeline references, read through the API for the
//! operator's own lag observer. Workers get the same Secrets as volumes.
//!
//! The operator may read only the Secrets it is granted one by one (a Role
//! with `resourceNames`, see docs/security.md): its ClusterRole has no Secret
//! access at all, so a pipeline cannot make it read someone else's.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};
use pixelpipe_crds::PixelPipeline;
use pixelpipe_runtime::kafka::{
    CA_FILE, CERT_FILE, KEY_FILE, PASSWORD_FILE, Pem, Sasl, Security, Tls, USERNAME_FILE,
    secret_text,
};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CredentialsError {
    #[error(
        "the operator may not read Secret {0}; grant it `get` on that Secret (docs/security.md)"
    )]
    Forbidden(String),
    #[error("Secret {0} does not exist")]
    Missing(String),
    #[error("Secret {0} has no `{1}` key")]
    MissingKey(String, &'static str),
    #[error("Secret {0}: key `{1}` is not UTF-8 text")]
    NotText(String, &'static str),
    #[error("reading Secret {0}: {1}")]
    Api(String, String),
}

/// The pipeline's Kafka security, and a fingerprint (Secret versions) that
/// changes when the Secrets do.
pub async fn kafka_security(
    client: &Client,
    pp: &PixelPipeline,
) -> Result<(Security, String), CredentialsError> {
    let namespace = pp.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut security = Security::default();
    let mut fingerprint = String::new();
    let k = &pp.spec.kafka;
    if let Some(name) = &k.tls_secret_ref {
        let secret = get(&api, &namespace, name).await?;
        fingerprint.push_str(&version(&secret));
        let id = format!("{namespace}/{name}");
        let optional = |key| text(&secret, &id, key).ok();
        security.tls = Some(Tls {
            ca: optional(CA_FILE).map(Pem::Inline),
            client: optional(CERT_FILE)
                .zip(optional(KEY_FILE))
                .map(|(c, k)| (Pem::Inline(c), Pem::Inline(k))),
        });
    }
    if let Some(sasl) = &k.sasl {
        let secret = get(&api, &namespace, &sasl.secret_ref).await?;
        fingerprint.push_str(&version(&secret));
        let id = format!("{namespace}/{}", sasl.secret_ref);
        security.sasl = Some(Sasl {
            mechanism: sasl.mechanism,
            username: text(&secret, &id, USERNAME_FILE)?,
            password: text(&secret, &id, PASSWORD_FILE)?,
        });
    }
    Ok((security, fingerprint))
}

async fn get(api: &Api<Secret>, namespace: &str, name: &str) -> Result<Secret, CredentialsError> {
    let id = format!("{namespace}/{name}");
    match api.get(name).await {
        Ok(s) => Ok(s),
        Err(kube::Error::Api(e)) if e.code == 403 => Err(CredentialsError::Forbidden(id)),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(CredentialsError::Missing(id)),
        Err(e) => Err(CredentialsError::Api(id, e.to_string())),
    }
}

fn version(s: &Secret) -> String {
    format!(
        "{}@{};",
        s.name_any(),
        s.resource_version().unwrap_or_default()
    )
}

fn text(secret: &Secret, id: &str, key: &'static str) -> Result<String, CredentialsError> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| CredentialsError::MissingKey(id.to_string(), key))?;
    std::str::from_utf8(&bytes.0)
        .map(|s| secret_text(s).to_string())
        .map_err(|_| CredentialsError::NotText(id.to_string(), key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(pairs: &[(&str, &[u8])]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn keys_are_read_as_text_and_errors_name_the_secret_not_the_value() {
        let s = secret(&[("username", b"pixelpipe\n"), ("password", &[0xff, 0xfe])]);
        assert_eq!(
            text(&s, "ns/creds", "username").expect("reads"),
            "pixelpipe"
        );
        let e = text(&s, "ns/creds", "password")
            .expect_err("fails")
            .to_string();
        assert_eq!(e, "Secret ns/creds: key `password` is not UTF-8 text");
        let e = text(&s, "ns/creds", "ca.crt")
            .expect_err("fails")
            .to_string();
        assert_eq!(e, "Secret ns/creds has no `ca.crt` key");
    }
}
