//! The Kafka Secrets a pipeline references, read through the API for the
//! operator's own lag observer. Workers get the same Secrets as volumes.
//!
//! The operator may read only the Secrets it is granted one by one (a Role
//! with `resourceNames`, see docs/security.md): its ClusterRole has no Secret
//! access at all, so a pipeline cannot make it read someone else's.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};
use pixelpipe_crds::{PixelPipeline, SaslMechanism};
use pixelpipe_runtime::kafka::{
    CA_FILE, CERT_FILE, KEY_FILE, PASSWORD_FILE, Pem, Sasl, Security, Tls, USERNAME_FILE,
    secret_text,
};
use sha2::{Digest, Sha256};
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

impl CredentialsError {
    /// Whether reading again soon can help (the API server was away or
    /// busy); the others hold until someone changes a Secret or a grant.
    pub fn is_transient(&self) -> bool {
        matches!(self, CredentialsError::Api(..))
    }
}

/// The Kafka Secrets a pipeline names, as read.
#[derive(Debug, Default)]
pub struct KafkaSecrets {
    tls: Option<(String, Secret)>,
    sasl: Option<(String, Secret, SaslMechanism)>,
}

impl KafkaSecrets {
    /// Reads the Secrets `spec.kafka` names (none: no request).
    pub async fn read(client: &Client, pp: &PixelPipeline) -> Result<Self, CredentialsError> {
        let namespace = pp.namespace().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        let k = &pp.spec.kafka;
        let mut out = KafkaSecrets::default();
        if let Some(name) = &k.tls_secret_ref {
            out.tls = Some((
                format!("{namespace}/{name}"),
                get(&api, &namespace, name).await?,
            ));
        }
        if let Some(sasl) = &k.sasl {
            let name = &sasl.secret_ref;
            let secret = get(&api, &namespace, name).await?;
            out.sasl = Some((format!("{namespace}/{name}"), secret, sasl.mechanism));
        }
        Ok(out)
    }

    /// Changes whenever a Secret is written (or deleted and made again);
    /// empty when the pipeline names none. Built from each Secret's uid and
    /// resourceVersion, never its contents: the fingerprint lands in the pod
    /// template, and a hash of a short password could be guessed back.
    pub fn fingerprint(&self) -> String {
        let tls = self.tls.as_ref().map(|(id, s)| (id, s));
        let sasl = self.sasl.as_ref().map(|(id, s, _)| (id, s));
        let named: Vec<_> = tls.into_iter().chain(sasl).collect();
        if named.is_empty() {
            return String::new();
        }
        let mut h = Sha256::new();
        for (id, secret) in named {
            for part in [
                id.as_str(),
                secret.metadata.uid.as_deref().unwrap_or_default(),
                secret
                    .metadata
                    .resource_version
                    .as_deref()
                    .unwrap_or_default(),
            ] {
                h.update(part.as_bytes());
                h.update([0]);
            }
        }
        hex::encode(h.finalize())
    }

    /// The client security settings these Secrets make.
    pub fn security(&self) -> Result<Security, CredentialsError> {
        let mut security = Security::default();
        if let Some((id, secret)) = &self.tls {
            let optional = |key| text(secret, id, key).ok();
            security.tls = Some(Tls {
                ca: optional(CA_FILE).map(Pem::Inline),
                client: optional(CERT_FILE)
                    .zip(optional(KEY_FILE))
                    .map(|(c, k)| (Pem::Inline(c), Pem::Inline(k))),
            });
        }
        if let Some((id, secret, mechanism)) = &self.sasl {
            security.sasl = Some(Sasl {
                mechanism: *mechanism,
                username: text(secret, id, USERNAME_FILE)?,
                password: text(secret, id, PASSWORD_FILE)?,
            });
        }
        Ok(security)
    }
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

    fn stored(name: &str, uid: &str, version: &str) -> (String, Secret) {
        let mut s = secret(&[("password", b"hunter2")]);
        s.metadata.uid = Some(uid.into());
        s.metadata.resource_version = Some(version.into());
        (format!("ns/{name}"), s)
    }

    #[test]
    fn the_fingerprint_follows_writes_and_never_the_contents() {
        let of = |tls: Option<(String, Secret)>| KafkaSecrets { tls, sasl: None }.fingerprint();
        assert_eq!(of(None), "", "no Secret, no fingerprint");
        let first = of(Some(stored("tls", "u1", "10")));
        assert_eq!(first, of(Some(stored("tls", "u1", "10"))));
        assert_ne!(first, of(Some(stored("tls", "u1", "11"))), "a write");
        assert_ne!(first, of(Some(stored("tls", "u2", "10"))), "made again");
        let mut other_contents = stored("tls", "u1", "10");
        other_contents.1 = secret(&[("password", b"other")]);
        other_contents.1.metadata = stored("tls", "u1", "10").1.metadata;
        assert_eq!(first, of(Some(other_contents)));
    }
}
