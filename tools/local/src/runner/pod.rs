//! What a container gets from the kubelet, given to a process instead: its
//! environment (with `fieldRef`s resolved), its arguments (with `$(VAR)`
//! expanded), volume paths and wildcard addresses rewritten to the pod's own
//! directory and IP, and a kubeconfig holding its ServiceAccount's token.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Container;
use kube::config::{
    AuthInfo, Context as KubeContext, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};

/// Where one pod's things are, and how its container sees them.
#[derive(Debug, Clone)]
pub struct PodView {
    pub name: String,
    pub namespace: String,
    pub ip: Ipv4Addr,
    /// (mount path in the container, local directory) pairs.
    pub mounts: Vec<(String, PathBuf)>,
}

impl PodView {
    /// A value as the process must see it: a mounted path points into the
    /// pod's directory, and a wildcard address (`0.0.0.0:PORT`, a socket in
    /// the pod's own network namespace) is the pod's IP.
    pub fn rewrite(&self, value: &str) -> String {
        // `--flag=value`: rewrite the value.
        if let Some((flag, v)) = value.split_once('=')
            && flag.starts_with("--")
        {
            return format!("{flag}={}", self.rewrite(v));
        }
        if let Some(port) = value.strip_prefix("0.0.0.0:") {
            return format!("{}:{port}", self.ip);
        }
        for (mount, local) in &self.mounts {
            let mount = mount.trim_end_matches('/');
            if value == mount {
                return local.display().to_string();
            }
            if let Some(rest) = value.strip_prefix(&format!("{mount}/")) {
                return local.join(rest).display().to_string();
            }
        }
        value.to_string()
    }

    /// The container's environment as the kubelet would set it.
    pub fn environment(&self, container: &Container) -> anyhow::Result<Vec<(String, String)>> {
        let mut out: Vec<(String, String)> = Vec::new();
        for e in container.env.iter().flatten() {
            let value = match (&e.value, &e.value_from) {
                (Some(v), _) => self.rewrite(&expand(v, &out)),
                (None, Some(from)) => {
                    match from.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                        Some("metadata.name") => self.name.clone(),
                        Some("metadata.namespace") => self.namespace.clone(),
                        Some("status.podIP") => self.ip.to_string(),
                        _ => bail!(
                            "env {}: only metadata.name, metadata.namespace and status.podIP field refs are supported",
                            e.name
                        ),
                    }
                }
                (None, None) => String::new(),
            };
            out.retain(|(k, _)| *k != e.name);
            out.push((e.name.clone(), value));
        }
        Ok(out)
    }

    /// The container's arguments, `$(VAR)` expanded from its environment.
    pub fn arguments(&self, container: &Container, env: &[(String, String)]) -> Vec<String> {
        container
            .args
            .iter()
            .flatten()
            .map(|a| self.rewrite(&expand(a, env)))
            .collect()
    }
}

/// Kubernetes' `$(VAR)` expansion: a defined variable is replaced, an
/// undefined reference stays as written, and `$$` is a literal `$`.
pub fn expand(value: &str, env: &[(String, String)]) -> String {
    let vars: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        if let Some(after) = tail.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some((name, after)) = tail.strip_prefix('(').and_then(|t| t.split_once(')'))
            && let Some(v) = vars.get(name)
        {
            out.push_str(v);
            rest = after;
        } else {
            out.push('$');
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// The runner's kubeconfig with its user replaced by a token read from
/// `token_file`, as a pod reads its projected ServiceAccount token.
pub fn kubeconfig_with_token_file(admin: &Path, token_file: &Path) -> anyhow::Result<String> {
    let admin =
        Kubeconfig::read_from(admin).with_context(|| format!("reading {}", admin.display()))?;
    let cluster = admin
        .clusters
        .into_iter()
        .next()
        .context("the kubeconfig names no cluster")?;
    let config = Kubeconfig {
        clusters: vec![NamedCluster {
            name: "local".into(),
            ..cluster
        }],
        auth_infos: vec![NamedAuthInfo {
            name: "pod".into(),
            auth_info: Some(AuthInfo {
                token_file: Some(token_file.display().to_string()),
                ..AuthInfo::default()
            }),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: "pod".into(),
            context: Some(KubeContext {
                cluster: "local".into(),
                user: Some("pod".into()),
                ..KubeContext::default()
            }),
            other: Default::default(),
        }],
        current_context: Some("pod".into()),
        ..Kubeconfig::default()
    };
    Ok(pixelpipe_crds::yaml::to_string(&config)?)
}

/// A file only its owner can read, as a secret volume's `defaultMode: 0400`.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o400)
        .open(path)?
        .write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector};

    fn view() -> PodView {
        PodView {
            name: "w-1".into(),
            namespace: "ns".into(),
            ip: Ipv4Addr::new(127, 0, 1, 7),
            mounts: vec![("/etc/pixelpipe".to_string(), PathBuf::from("/tmp/p/config"))],
        }
    }

    fn field(path: &str) -> EnvVarSource {
        EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }
    }

    #[test]
    fn env_resolves_field_refs_and_args_expand_it() {
        let var = |name: &str, value: &str| EnvVar {
            name: name.into(),
            value: Some(value.into()),
            ..EnvVar::default()
        };
        let container = Container {
            env: Some(vec![
                var("PIXELPIPE_CONFIG", "/etc/pixelpipe/pipeline.yaml"),
                EnvVar {
                    name: "POD_NAME".into(),
                    value_from: Some(field("metadata.name")),
                    ..EnvVar::default()
                },
                EnvVar {
                    name: "POD_IP".into(),
                    value_from: Some(field("status.podIP")),
                    ..EnvVar::default()
                },
            ]),
            args: Some(vec![
                "--config=/etc/pixelpipe/pipeline.yaml".into(),
                "--transactional-id=$(POD_NAME)".into(),
                "--admin-addr=0.0.0.0:9090".into(),
                "--cost=$$(POD_NAME)".into(),
                "--other=$(UNSET)".into(),
            ]),
            ..Container::default()
        };
        let v = view();
        let env = v.environment(&container).expect("env");
        assert_eq!(env[0].1, "/tmp/p/config/pipeline.yaml");
        assert_eq!(env[1].1, "w-1");
        assert_eq!(env[2].1, "127.0.1.7");
        assert_eq!(
            v.arguments(&container, &env),
            [
                "--config=/tmp/p/config/pipeline.yaml",
                "--transactional-id=w-1",
                "--admin-addr=127.0.1.7:9090",
                "--cost=$(POD_NAME)",
                "--other=$(UNSET)",
            ]
        );
        let unsupported = Container {
            env: Some(vec![EnvVar {
                name: "NODE".into(),
                value_from: Some(field("spec.nodeName")),
                ..EnvVar::default()
            }]),
            ..Container::default()
        };
        assert!(v.environment(&unsupported).is_err());
    }
}
