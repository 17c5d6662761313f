//! The Helm chart (`charts/pixelpipe`) against `manifests/`: it lints, renders
//! the same objects as `kubectl kustomize manifests/` (names and namespace
//! aside), installs into a real kube-apiserver beside whatever
//! `kubectl apply -k manifests/` left there without touching it, and
//! uninstalls cleanly. `HELM` names the helm binary (`tests/env/helm.sh build`;
//! `tests/run.sh` sets it).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use clap::CommandFactory;
use common::{client, crd_established, eventually, kubeconfig};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client, CustomResourceExt, Resource};
use pixelpipe_crds::PixelPipeline;
use serde::Deserialize;
use serde_json::Value;

/// What `manifests/` names the operator's objects and where it puts them.
const MANIFESTS_NS: &str = "pixelpipe-system";
const CHART_CRD: &str = "charts/pixelpipe/crds/pixelpipeline.yaml";
const GENERATED_CRD: &str = "crds/pixelpipeline.yaml";

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn helm_bin() -> String {
    std::env::var("HELM").unwrap_or_else(|_| {
        panic!(
            "HELM is not set: these tests need the helm CLI. Build it with `tests/env/helm.sh build` \
             and run with `HELM=$(tests/env/helm.sh path)` (tests/run.sh does both)"
        )
    })
}

/// helm with its cache, config and data in a directory of this test run: it
/// never reads or writes the user's repositories or plugins.
fn helm(args: &[&str]) -> Output {
    let home = std::env::temp_dir().join(format!("pixelpipe-helm-home-{}", std::process::id()));
    Command::new(helm_bin())
        .args(args)
        .current_dir(repo(""))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .unwrap_or_else(|e| panic!("running {} (HELM): {e}", helm_bin()))
}

fn helm_ok(args: &[&str]) -> String {
    let out = helm(args);
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn kubectl_ok(args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .args(args)
        .current_dir(repo(""))
        .output()
        .expect("kubectl runs (tests/env/kube.sh start, then source $PIXELPIPE_RUN/kube.env)");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn yaml_documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("invalid YAML: {e}\n{text}")))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// A release rendered or installed under names of its own.
struct Release {
    name: String,
    namespace: String,
}

impl Release {
    fn unique(prefix: &str) -> Self {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() % 100_000_000)
            .unwrap_or_default();
        Self {
            name: format!("{prefix}{stamp}"),
            namespace: format!("pixelpipe-helm-{stamp}"),
        }
    }

    /// The chart's "<release>-pixelpipe", which prefixes its object names.
    fn fullname(&self) -> String {
        format!("{}-pixelpipe", self.name)
    }

    fn template(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec![
            "template",
            &self.name,
            "charts/pixelpipe",
            "--namespace",
            &self.namespace,
        ];
        args.extend_from_slice(extra);
        yaml_documents(&helm_ok(&args))
    }

    /// The release's object as `manifests/` would have it: the names and
    /// namespace of manifests/, and label selectors without the release label
    /// (which the chart adds so that two releases never select each other's
    /// pods). Labels elsewhere stay as rendered.
    fn normalise(&self, v: &Value) -> Value {
        let cluster_prefixed = format!("{}-{}", self.namespace, self.fullname());
        fn walk(v: &Value, f: &dyn Fn(&str) -> String, in_selector: bool) -> Value {
            match v {
                Value::String(s) => Value::String(f(s)),
                Value::Array(items) => {
                    Value::Array(items.iter().map(|i| walk(i, f, false)).collect())
                }
                Value::Object(map) => Value::Object(
                    map.iter()
                        .filter(|(k, _)| {
                            !(in_selector && k.as_str() == "app.kubernetes.io/instance")
                        })
                        .map(|(k, v)| (k.clone(), walk(v, f, k == "matchLabels")))
                        .collect(),
                ),
                other => other.clone(),
            }
        }
        walk(
            v,
            &|s: &str| {
                if s == self.namespace {
                    return MANIFESTS_NS.to_string();
                }
                s.replace(&cluster_prefixed, "pixelpipe")
                    .replace(&self.fullname(), "pixelpipe")
            },
            false,
        )
    }
}

type Objects = BTreeMap<(String, String), Value>;

fn by_kind_and_name(docs: impl IntoIterator<Item = Value>) -> Objects {
    let mut out = Objects::new();
    for doc in docs {
        let key = (
            str_at(&doc, "/kind").to_string(),
            str_at(&doc, "/metadata/name").to_string(),
        );
        assert!(
            out.insert(key.clone(), doc).is_none(),
            "{key:?} rendered twice"
        );
    }
    out
}

/// What `kubectl kustomize manifests/` renders, without the Namespace and the
/// CRD: Helm installs into the release namespace and takes the CRD from the
/// chart's crds/ directory.
fn manifests_objects() -> Objects {
    let docs = yaml_documents(&kubectl_ok(&["kustomize", "manifests"]));
    by_kind_and_name(
        docs.into_iter()
            .filter(|d| !matches!(str_at(d, "/kind"), "Namespace" | "CustomResourceDefinition")),
    )
}

/// RBAC rules as sets: the order of rules, and of the groups, resources and
/// verbs within each, grants nothing.
fn rules(role: &Value) -> BTreeSet<[BTreeSet<String>; 4]> {
    let list = |rule: &Value, key: &str| -> BTreeSet<String> {
        rule.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    role.get("rules")
        .and_then(Value::as_array)
        .expect("a role with rules")
        .iter()
        .map(|r| {
            [
                list(r, "apiGroups"),
                list(r, "resources"),
                list(r, "verbs"),
                list(r, "resourceNames"),
            ]
        })
        .collect()
}

/// The defaults of `pixelpipe-operator run`'s flags, by environment variable.
fn operator_flag_defaults() -> BTreeMap<String, Option<String>> {
    let cli = pixelpipe_operator::cli::Cli::command();
    let run = cli.find_subcommand("run").expect("a run subcommand");
    run.get_arguments()
        .filter_map(|a| {
            let env = a.get_env()?.to_string_lossy().into_owned();
            let default = a
                .get_default_values()
                .first()
                .map(|d| d.to_string_lossy().into_owned());
            Some((env, default))
        })
        .collect()
}

/// Splits the chart's operator env into what manifests/ also sets and the
/// operator's flags the chart sets explicitly from values.yaml.
fn split_flag_env(pod_spec: &mut Value) -> BTreeMap<String, String> {
    let env = pod_spec
        .pointer_mut("/containers/0/env")
        .and_then(Value::as_array_mut)
        .expect("the operator container has env");
    let mut flags = BTreeMap::new();
    env.retain(|e| {
        let name = str_at(e, "/name");
        let explicit_flag = name.starts_with("PIXELPIPE_") && name != "PIXELPIPE_LOG_FORMAT";
        if explicit_flag {
            flags.insert(name.to_string(), str_at(e, "/value").to_string());
        }
        !explicit_flag
    });
    flags
}

/// Where two JSON values first differ, as "pointer: chart value, manifests/
/// value": a whole pod spec in a failure message hides the one field that matters.
fn first_difference(at: &str, got: &Value, want: &Value) -> Option<String> {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let keys: BTreeSet<&String> = g.keys().chain(w.keys()).collect();
            keys.into_iter().find_map(|k| {
                let absent = Value::String("<absent>".into());
                first_difference(
                    &format!("{at}/{k}"),
                    g.get(k).unwrap_or(&absent),
                    w.get(k).unwrap_or(&absent),
                )
            })
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => g
            .iter()
            .zip(w)
            .enumerate()
            .find_map(|(i, (g, w))| first_difference(&format!("{at}/{i}"), g, w)),
        _ => (got != want).then(|| format!("{at}: chart {got}, manifests/ {want}")),
    }
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_charts_crd_is_the_generated_one() {
    let chart = std::fs::read(repo(CHART_CRD)).unwrap_or_else(|e| panic!("{CHART_CRD}: {e}"));
    let generated =
        std::fs::read(repo(GENERATED_CRD)).unwrap_or_else(|e| panic!("{GENERATED_CRD}: {e}"));
    assert!(
        chart == generated,
        "{CHART_CRD} differs from {GENERATED_CRD}: Helm installs the chart's copy, so refresh it \
         with `cp {GENERATED_CRD} {CHART_CRD}`"
    );
}

#[test]
fn the_chart_lints_and_renders_what_the_manifests_do() {
    let lint = helm_ok(&["lint", "--strict", "charts/pixelpipe"]);
    println!("{lint}");

    let release = Release::unique("pxh");
    let rendered = release.template(&[]);
    assert!(
        rendered
            .iter()
            .all(|d| str_at(d, "/kind") != "CustomResourceDefinition"),
        "the CRD belongs in the chart's crds/, not its templates (Helm would upgrade and delete it)"
    );
    for doc in &rendered {
        let what = format!("{} {}", str_at(doc, "/kind"), str_at(doc, "/metadata/name"));
        let l = labels(doc);
        for (key, want) in [
            ("app.kubernetes.io/managed-by", "Helm"),
            ("app.kubernetes.io/instance", release.name.as_str()),
            ("app.kubernetes.io/part-of", "pixelpipe"),
            ("helm.sh/chart", "pixelpipe-0.1.0"),
        ] {
            assert_eq!(
                l.get(key).map(String::as_str),
                Some(want),
                "{what}: label {key}"
            );
        }
        let namespace = doc.pointer("/metadata/namespace").and_then(Value::as_str);
        if matches!(str_at(doc, "/kind"), "ClusterRole" | "ClusterRoleBinding") {
            assert_eq!(namespace, None, "{what} is cluster-scoped");
        } else {
            assert_eq!(namespace, Some(release.namespace.as_str()), "{what}");
        }
    }

    let chart = by_kind_and_name(rendered.iter().map(|d| release.normalise(d)));
    let manifests = manifests_objects();
    assert_eq!(
        chart.keys().collect::<Vec<_>>(),
        manifests.keys().collect::<Vec<_>>(),
        "the chart renders other objects than manifests/ (kind, name with the release's prefix removed)"
    );

    let defaults = operator_flag_defaults();
    for (key, want) in &manifests {
        let got = &chart[key];
        let what = format!("{} {}", key.0, key.1);
        for (label, value) in labels(want) {
            assert_eq!(
                labels(got).get(&label),
                Some(&value),
                "{what}: label {label}"
            );
        }
        match key.0.as_str() {
            "ClusterRole" | "Role" => assert_eq!(rules(got), rules(want), "{what}: rules"),
            "ClusterRoleBinding" | "RoleBinding" => {
                assert_eq!(got["roleRef"], want["roleRef"], "{what}: roleRef");
                assert_eq!(got["subjects"], want["subjects"], "{what}: subjects");
            }
            "PodDisruptionBudget" => assert_eq!(got["spec"], want["spec"], "{what}: spec"),
            "Deployment" => {
                assert_eq!(got["spec"]["replicas"], want["spec"]["replicas"], "{what}");
                assert_eq!(got["spec"]["selector"], want["spec"]["selector"], "{what}");
                for (label, value) in labels(&want["spec"]["template"]) {
                    assert_eq!(
                        labels(&got["spec"]["template"]).get(&label),
                        Some(&value),
                        "{what}: pod label {label}"
                    );
                }
                assert_eq!(
                    got.pointer("/spec/template/metadata/annotations"),
                    want.pointer("/spec/template/metadata/annotations"),
                    "{what}: pod annotations"
                );
                let mut pod = got["spec"]["template"]["spec"].clone();
                // The chart passes the operator's flags explicitly, so values.yaml
                // can show and change them; with the default values each must be
                // what the operator assumes when manifests/ leaves it unset.
                for (env, value) in split_flag_env(&mut pod) {
                    let default = defaults.get(&env).unwrap_or_else(|| {
                        panic!("{what}: {env} is no flag of `pixelpipe-operator run`")
                    });
                    assert_eq!(
                        Some(&value),
                        default.as_ref(),
                        "{what}: {env} differs from the operator's default"
                    );
                }
                if let Some(difference) =
                    first_difference("", &pod, &want["spec"]["template"]["spec"])
                {
                    panic!("{what}: the pod spec differs from manifests/ at {difference}");
                }
            }
            "ServiceAccount" => {}
            other => panic!("{what}: no comparison for {other}; add one"),
        }
    }

    // Installed as "pixelpipe" in pixelpipe-system, the namespaced objects have
    // manifests/' names (so docs and samples that name the ServiceAccount
    // apply), and the cluster-scoped ones do not take over manifests/' ones.
    let same = Release {
        name: "pixelpipe".into(),
        namespace: MANIFESTS_NS.into(),
    };
    for doc in same.template(&[]) {
        let key = (
            str_at(&doc, "/kind").to_string(),
            str_at(&doc, "/metadata/name").to_string(),
        );
        let cluster_scoped = matches!(key.0.as_str(), "ClusterRole" | "ClusterRoleBinding");
        assert_eq!(
            manifests.contains_key(&key),
            !cluster_scoped,
            "{key:?} named as by manifests/: {}",
            !cluster_scoped
        );
    }

    // The values take effect.
    let custom = release.template(&[
        "--set",
        "replicas=3,operator.watchNamespace=shop,operator.concurrency=9,image.tag=9.9.9",
        "--set",
        "podDisruptionBudget.enabled=false,image.pullPolicy=Always",
        "--set-json",
        r#"tolerations=[{"key":"dedicated","operator":"Exists"}]"#,
    ]);
    assert!(
        custom
            .iter()
            .all(|d| str_at(d, "/kind") != "PodDisruptionBudget")
    );
    let deployment = custom
        .iter()
        .find(|d| str_at(d, "/kind") == "Deployment")
        .expect("a Deployment");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        str_at(pod, "/containers/0/image"),
        "ghcr.io/pixelpipe/pixelpipe-operator:9.9.9"
    );
    assert_eq!(str_at(pod, "/containers/0/imagePullPolicy"), "Always");
    assert_eq!(str_at(pod, "/tolerations/0/key"), "dedicated");
    let mut pod = pod.clone();
    let flags = split_flag_env(&mut pod);
    assert_eq!(flags["PIXELPIPE_WATCH_NAMESPACE"], "shop");
    assert_eq!(flags["PIXELPIPE_RECONCILE_CONCURRENCY"], "9");
}

/// Uninstalls the release even when the test fails half way. The namespace
/// stays: this control plane has no namespace controller to finalise its
/// deletion (other tests leave theirs too).
struct Uninstall<'a>(&'a Release);

impl Drop for Uninstall<'_> {
    fn drop(&mut self) {
        let _ = helm(&[
            "uninstall",
            &self.0.name,
            "--namespace",
            &self.0.namespace,
            "--ignore-not-found",
        ]);
    }
}

async fn resource_version<K>(api: &Api<K>, name: &str) -> Option<String>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    api.get_opt(name)
        .await
        .unwrap_or_else(|e| panic!("get {name}: {e}"))
        .and_then(|o| o.meta().resource_version.clone())
}

/// Owner labels and annotations Helm stamps on what it installs, and the
/// chart's labels, on one installed object.
fn assert_owned_by<K: Resource>(object: &K, release: &Release) {
    let meta = object.meta();
    let what = meta.name.clone().unwrap_or_default();
    let labels = meta.labels.clone().unwrap_or_default();
    let annotations = meta.annotations.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("Helm"),
        "{what}: {labels:?}"
    );
    assert_eq!(
        labels.get("app.kubernetes.io/instance"),
        Some(&release.name),
        "{what}"
    );
    assert_eq!(
        annotations.get("meta.helm.sh/release-name"),
        Some(&release.name),
        "{what}: {annotations:?}"
    );
    assert_eq!(
        annotations.get("meta.helm.sh/release-namespace"),
        Some(&release.namespace),
        "{what}: {annotations:?}"
    );
}

#[tokio::test]
async fn the_chart_installs_beside_the_manifests_and_uninstalls() {
    kubeconfig();
    let client = client().await;
    let release = Release::unique("pxi");
    let fullname = release.fullname();
    let operator = format!("{fullname}-operator");
    let leader = format!("{operator}-leader");
    let cluster = format!("{}-{operator}", release.namespace);

    // What `kubectl apply -k manifests/` (operator/tests/manifests.rs) may
    // have installed: the chart must leave it alone.
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    let cluster_bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let before = (
        resource_version(&cluster_roles, "pixelpipe-operator").await,
        resource_version(&cluster_bindings, "pixelpipe-operator").await,
        resource_version(&crds, PixelPipeline::crd_name()).await,
    );
    println!(
        "before the install: manifests/ ClusterRole {}, CRD {}",
        if before.0.is_some() {
            "present"
        } else {
            "absent"
        },
        if before.2.is_some() {
            "present"
        } else {
            "absent"
        },
    );

    let _uninstall = Uninstall(&release);
    let out = helm_ok(&[
        "install",
        &release.name,
        "charts/pixelpipe",
        "--namespace",
        &release.namespace,
        "--create-namespace",
    ]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    let status: Value = serde_json::from_str(&helm_ok(&[
        "status",
        &release.name,
        "--namespace",
        &release.namespace,
        "--output",
        "json",
    ]))
    .expect("helm status prints JSON");
    assert_eq!(str_at(&status, "/info/status"), "deployed", "{status}");
    // Helm created the CRD from crds/ only if it was missing.
    crd_established(&client).await;

    let ns = &release.namespace;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let roles: Api<Role> = Api::namespaced(client.clone(), ns);
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
    assert_owned_by(
        &accounts.get(&operator).await.expect("ServiceAccount"),
        &release,
    );
    let deployment = deployments.get(&operator).await.expect("Deployment");
    assert_owned_by(&deployment, &release);
    assert_eq!(deployment.spec.as_ref().and_then(|s| s.replicas), Some(2));
    assert_owned_by(&budgets.get(&operator).await.expect("PDB"), &release);
    assert_owned_by(&roles.get(&leader).await.expect("Role"), &release);
    assert_owned_by(&bindings.get(&leader).await.expect("RoleBinding"), &release);
    assert_owned_by(
        &cluster_roles.get(&cluster).await.expect("ClusterRole"),
        &release,
    );
    assert_owned_by(
        &cluster_bindings
            .get(&cluster)
            .await
            .expect("ClusterRoleBinding"),
        &release,
    );

    // The bindings point at the release's ServiceAccount, as the authorizer sees it.
    let sa = format!("system:serviceaccount:{ns}:{operator}");
    let can_i = |args: &[&str]| {
        let mut all = vec!["auth", "can-i", "--as", &sa];
        all.extend_from_slice(args);
        let out = Command::new("kubectl")
            .args(&all)
            .output()
            .expect("kubectl runs");
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    assert!(can_i(&["watch", "pixelpipelines", "-A"]));
    assert!(can_i(&["patch", "deployments", "-A"]));
    assert!(can_i(&["update", "leases", "-n", ns]));
    assert!(!can_i(&["update", "leases", "-n", MANIFESTS_NS]));
    assert!(!can_i(&["get", "secrets", "-A"]));

    uninstall_removes_everything(&client, &release).await;
    let after = (
        resource_version(&cluster_roles, "pixelpipe-operator").await,
        resource_version(&cluster_bindings, "pixelpipe-operator").await,
    );
    assert_eq!(
        (before.0, before.1),
        after,
        "the release changed manifests/' ClusterRole or ClusterRoleBinding"
    );
    assert!(
        resource_version(&crds, PixelPipeline::crd_name())
            .await
            .is_some(),
        "helm uninstall deleted the CRD: it must never (pipelines would go with it)"
    );
}

async fn uninstall_removes_everything(client: &Client, release: &Release) {
    let out = helm_ok(&[
        "uninstall",
        &release.name,
        "--namespace",
        &release.namespace,
    ]);
    println!("{out}");
    let ns = &release.namespace;
    let operator = format!("{}-operator", release.fullname());
    let leader = format!("{operator}-leader");
    let cluster = format!("{ns}-{operator}");
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let roles: Api<Role> = Api::namespaced(client.clone(), ns);
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    let cluster_bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    eventually(
        "helm uninstall removed every object of the release",
        Duration::from_secs(30),
        || async {
            let left = [
                resource_version(&accounts, &operator).await,
                resource_version(&deployments, &operator).await,
                resource_version(&budgets, &operator).await,
                resource_version(&roles, &leader).await,
                resource_version(&bindings, &leader).await,
                resource_version(&cluster_roles, &cluster).await,
                resource_version(&cluster_bindings, &cluster).await,
            ];
            left.iter().all(Option::is_none).then_some(())
        },
    )
    .await;
}
