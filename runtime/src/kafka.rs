//! Kafka client settings every Pixelpipe program shares: the brokers, extra
//! librdkafka properties, and TLS and SASL. The worker and the operator's lag
//! observer build their clients from [`KafkaSettings::client`], each adding its
//! own tuning.

use std::path::{Path, PathBuf};

use pixelpipe_crds::SaslMechanism;
pub use pixelpipe_crds::worker::{CA_FILE, CERT_FILE, KEY_FILE, PASSWORD_FILE, USERNAME_FILE};
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, ClientContext};

/// Connection settings shared by every client.
#[derive(Debug, Clone, Default)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    /// Extra librdkafka properties (tuning), applied after the defaults.
    pub options: Vec<(String, String)>,
    /// TLS and SASL, applied last so no option can weaken them.
    pub security: Security,
}

/// PEM material: a file (the worker's mounted Secret) or the text itself (the
/// operator, which reads the Secret through the API).
#[derive(Clone)]
pub enum Pem {
    File(PathBuf),
    Inline(String),
}

/// Never prints inline PEM: it may be a private key.
impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pem::File(path) => f.debug_tuple("File").field(path).finish(),
            Pem::Inline(text) => write!(f, "Inline({} bytes)", text.len()),
        }
    }
}

/// TLS to the brokers: the CA to verify them (system roots when absent), and a
/// client certificate for mutual TLS.
#[derive(Clone, Debug, Default)]
pub struct Tls {
    pub ca: Option<Pem>,
    pub client: Option<(Pem, Pem)>,
}

/// SASL credentials.
#[derive(Clone)]
pub struct Sasl {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Sasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// How clients authenticate and encrypt. Its `Debug` never shows a secret.
#[derive(Clone, Default)]
pub struct Security {
    pub tls: Option<Tls>,
    pub sasl: Option<Sasl>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("protocol", &self.protocol())
            .field("sasl_mechanism", &self.sasl.as_ref().map(|s| &s.mechanism))
            .finish_non_exhaustive()
    }
}

/// A Secret value as a credential: without the line break an editor or
/// `echo` leaves at its end.
pub fn secret_text(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

impl Security {
    /// `security.protocol` for this combination.
    pub fn protocol(&self) -> &'static str {
        match (self.tls.is_some(), self.sasl.is_some()) {
            (false, false) => "PLAINTEXT",
            (true, false) => "SSL",
            (false, true) => "SASL_PLAINTEXT",
            (true, true) => "SASL_SSL",
        }
    }

    /// The librdkafka properties: none at all for plaintext, so `options` can
    /// still choose, say, TLS with the system's roots.
    pub fn properties(&self) -> Vec<(&'static str, String)> {
        if self.tls.is_none() && self.sasl.is_none() {
            return Vec::new();
        }
        let mut p = vec![("security.protocol", self.protocol().to_string())];
        if let Some(tls) = &self.tls {
            let mut pem = |file: &'static str, inline: &'static str, v: &Pem| match v {
                Pem::File(path) => p.push((file, path.display().to_string())),
                Pem::Inline(text) => p.push((inline, text.clone())),
            };
            if let Some(ca) = &tls.ca {
                pem("ssl.ca.location", "ssl.ca.pem", ca);
            }
            if let Some((cert, key)) = &tls.client {
                pem("ssl.certificate.location", "ssl.certificate.pem", cert);
                pem("ssl.key.location", "ssl.key.pem", key);
            }
        }
        if let Some(sasl) = &self.sasl {
            p.push(("sasl.mechanism", sasl.mechanism.as_str().to_string()));
            p.push(("sasl.username", sasl.username.clone()));
            p.push(("sasl.password", sasl.password.clone()));
        }
        p
    }

    /// Reads mounted Secrets: `tls_dir` with `ca.crt` (and `tls.crt`/`tls.key`),
    /// `sasl_dir` with `username` and `password`.
    pub fn from_dirs(
        tls_dir: Option<&Path>,
        sasl: Option<(SaslMechanism, &Path)>,
    ) -> Result<Self, std::io::Error> {
        let tls = tls_dir.map(|dir| {
            let file = |name| Some(dir.join(name)).filter(|p| p.exists()).map(Pem::File);
            Tls {
                ca: file(CA_FILE),
                client: file(CERT_FILE).zip(file(KEY_FILE)),
            }
        });
        let sasl = match sasl {
            None => None,
            Some((mechanism, dir)) => {
                let read = |name: &str| {
                    std::fs::read_to_string(dir.join(name))
                        .map(|s| secret_text(&s).to_string())
                        .map_err(|e| {
                            std::io::Error::new(
                                e.kind(),
                                format!("{}: {e}", dir.join(name).display()),
                            )
                        })
                };
                Some(Sasl {
                    mechanism,
                    username: read(USERNAME_FILE)?,
                    password: read(PASSWORD_FILE)?,
                })
            }
        };
        Ok(Self { tls, sasl })
    }
}

impl KafkaSettings {
    /// A client's configuration: the brokers and `client.id`, then `tune`
    /// (the client's own settings), then the extra options, then security
    /// last, so no option can weaken it.
    pub fn client(&self, client_id: &str, tune: impl FnOnce(&mut ClientConfig)) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        c.set("client.id", client_id);
        tune(&mut c);
        for (k, v) in &self.options {
            c.set(k, v);
        }
        for (k, v) in self.security.properties() {
            c.set(k, v);
        }
        c
    }
}

/// The context of consumers that read to the end of partitions
/// (`enable.partition.eof`). rust-rdkafka also hands each end-of-partition
/// event to the context's error handler as a global error, which by default
/// logs it at ERROR (fede1024/rust-rdkafka#820): a clean run would print
/// failures. Reaching the end is what these clients wait for, so it is
/// logged at debug; every other error as before.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadsToEnd;

impl ClientContext for ReadsToEnd {
    fn error(&self, error: KafkaError, reason: &str) {
        match error {
            KafkaError::Global(RDKafkaErrorCode::PartitionEOF) => {
                tracing::debug!(target: "librdkafka", reason, "reached the end of a partition");
            }
            error => tracing::error!(target: "librdkafka", %error, reason, "librdkafka error"),
        }
    }
}

impl ConsumerContext for ReadsToEnd {}

/// A consumer that reads to the end of partitions.
pub type ToEndConsumer = BaseConsumer<ReadsToEnd>;

#[cfg(test)]
mod tests {
    use super::*;

    fn props(s: &Security) -> Vec<(&'static str, String)> {
        s.properties()
    }

    #[test]
    fn plaintext_sets_nothing_so_options_decide() {
        assert!(props(&Security::default()).is_empty());
        assert_eq!(Security::default().protocol(), "PLAINTEXT");
    }

    #[test]
    fn mounted_secrets_become_scram_over_tls_and_debug_shows_no_secret() {
        let dir = std::env::temp_dir().join(format!("pixelpipe-sec-{}", std::process::id()));
        let (tls, sasl) = (dir.join("tls"), dir.join("sasl"));
        std::fs::create_dir_all(&tls).expect("test setup");
        std::fs::create_dir_all(&sasl).expect("test setup");
        std::fs::write(tls.join(CA_FILE), "PEM").expect("test setup");
        std::fs::write(sasl.join(USERNAME_FILE), "pixelpipe\n").expect("test setup");
        std::fs::write(sasl.join(PASSWORD_FILE), "s3cret-value").expect("test setup");
        let s = Security::from_dirs(Some(&tls), Some((SaslMechanism::ScramSha512, &sasl)))
            .expect("test setup");
        let p = props(&s);
        assert!(p.contains(&("security.protocol", "SASL_SSL".into())));
        assert!(p.contains(&("ssl.ca.location", tls.join(CA_FILE).display().to_string())));
        assert!(p.contains(&("sasl.mechanism", "SCRAM-SHA-512".into())));
        assert!(
            p.contains(&("sasl.username", "pixelpipe".into())),
            "newline trimmed"
        );
        assert!(p.contains(&("sasl.password", "s3cret-value".into())));
        assert!(
            !p.iter().any(|(k, _)| k.starts_with("ssl.certificate")),
            "no client cert files"
        );
        let shown = format!(
            "{:?}",
            KafkaSettings {
                security: s,
                ..KafkaSettings::default()
            }
        );
        assert!(
            shown.contains("SASL_SSL") && !shown.contains("s3cret"),
            "{shown}"
        );
        std::fs::remove_dir_all(&dir).expect("test setup");
    }

    #[test]
    fn a_missing_password_file_names_the_file() {
        let dir = std::env::temp_dir().join(format!("pixelpipe-nosec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("test setup");
        let e = Security::from_dirs(None, Some((SaslMechanism::Plain, &dir))).expect_err("fails");
        assert!(e.to_string().contains("username"), "{e}");
        std::fs::remove_dir_all(&dir).expect("test setup");
    }

    #[test]
    fn inline_pem_for_the_operator() {
        let s = Security {
            tls: Some(Tls {
                ca: Some(Pem::Inline("CA".into())),
                client: None,
            }),
            sasl: None,
        };
        assert_eq!(
            props(&s),
            vec![
                ("security.protocol", "SSL".into()),
                ("ssl.ca.pem", "CA".into())
            ]
        );
    }
}
