//! librdkafka settings for the worker's consumer and producer, in one place so
//! the benchmark's pass-through baseline uses exactly the same ones.

use std::path::{Path, PathBuf};

use rdkafka::ClientConfig;

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
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
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

/// File names inside the mounted Secrets, the same as Kubernetes' TLS and
/// basic-auth Secret types use.
pub const CA_FILE: &str = "ca.crt";
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";
pub const USERNAME_FILE: &str = "username";
pub const PASSWORD_FILE: &str = "password";

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
            p.push(("sasl.mechanism", sasl.mechanism.clone()));
            p.push(("sasl.username", sasl.username.clone()));
            p.push(("sasl.password", sasl.password.clone()));
        }
        p
    }

    /// Reads mounted Secrets: `tls_dir` with `ca.crt` (and `tls.crt`/`tls.key`),
    /// `sasl_dir` with `username` and `password`.
    pub fn from_dirs(
        tls_dir: Option<&Path>,
        sasl: Option<(&str, &Path)>,
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
                    mechanism: mechanism.to_string(),
                    username: read(USERNAME_FILE)?,
                    password: read(PASSWORD_FILE)?,
                })
            }
        };
        Ok(Self { tls, sasl })
    }
}

impl KafkaSettings {
    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        c.set("client.id", "pixelpipe-worker");
        c
    }

    fn finish(&self, mut c: ClientConfig) -> ClientConfig {
        for (k, v) in &self.options {
            c.set(k, v);
        }
        for (k, v) in self.security.properties() {
            c.set(k, v);
        }
        c
    }

    /// The input consumer. Offsets are committed by the worker only, after
    /// delivery, so auto commit and auto offset store are off.
    pub fn consumer(&self, group: &str) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // Incremental rebalances: a new replica does not stop everyone else.
            .set("partition.assignment.strategy", "cooperative-sticky")
            // The prefetch queue is the one buffer outside the pipeline's job
            // bound; keep it small so memory does not follow the backlog. Fetch
            // sizes count compressed bytes, so they stay small too; the short
            // backoff refills the queue as soon as it drains below the mark
            // (librdkafka's default waits a full second and starves the pipeline).
            .set("queued.min.messages", "500")
            .set("queued.max.messages.kbytes", "1024")
            .set("fetch.max.bytes", "1048576")
            .set("max.partition.fetch.bytes", "65536")
            .set("fetch.queue.backoff.ms", "5");
        self.finish(c)
    }

    /// The output producer: batches, compresses, keeps thousands of messages in
    /// flight, and never duplicates on its own retries.
    pub fn producer(&self, compression: &str) -> ClientConfig {
        let mut c = self.base();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("batch.size", "1000000")
            .set("compression.type", compression)
            .set("queue.buffering.max.messages", "200000")
            .set("queue.buffering.max.kbytes", "65536")
            // A dead letter is a copy of its input, which may be as large as
            // the broker accepts; a smaller producer limit would refuse it for
            // good and stall the partition. Matches tests/env/kafka.sh.
            .set("message.max.bytes", "16777216")
            // Outlives a broker restart; a delivery that still fails stops the
            // worker without committing, so the input is read again.
            .set("message.timeout.ms", "120000");
        self.finish(c)
    }

    /// The output producer of exactly-once mode: transactional, so outputs and
    /// consumed offsets commit together. A killed worker's open transaction
    /// holds back read-committed consumers until its restart (same id) aborts
    /// it, or, if the id changed, until it times out: a minute. librdkafka
    /// requires message timeouts within the transaction's.
    pub fn transactional_producer(&self, compression: &str, id: &str) -> ClientConfig {
        let mut c = self.producer(compression);
        c.set("transactional.id", id)
            .set("transaction.timeout.ms", "60000")
            .set("message.timeout.ms", "60000");
        c
    }

    /// An admin or metadata client.
    pub fn admin(&self) -> ClientConfig {
        let c = self.base();
        self.finish(c)
    }
}

/// Parses `key=value` into a pair.
pub fn parse_option(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

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
        let s =
            Security::from_dirs(Some(&tls), Some(("SCRAM-SHA-512", &sasl))).expect("test setup");
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
        let e = Security::from_dirs(None, Some(("PLAIN", &dir))).expect_err("fails");
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
