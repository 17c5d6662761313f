//! The generated CRD against a real kube-apiserver (started by
//! `tests/env/kube.sh`; `KUBECONFIG` points at it): accepted, documented for
//! `kubectl explain`, and enforcing its rules with messages a person reads.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn kubeconfig() -> String {
    std::env::var("KUBECONFIG").unwrap_or_else(|_| {
        panic!("KUBECONFIG is not set: these tests need a real API server (tests/env/kube.sh start, or tests/run.sh)")
    })
}

fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("kubectl finishes")
}

fn ok(args: &[&str], stdin: Option<&str>) -> String {
    let out = kubectl(args, stdin);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rejected(args: &[&str], stdin: &str) -> String {
    let out = kubectl(args, Some(stdin));
    assert!(
        !out.status.success(),
        "the API server accepted an invalid PixelPipeline"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn install_crd() {
    let crd = concat!(env!("CARGO_MANIFEST_DIR"), "/pixelpipeline.yaml");
    // Forced: other suites install the CRD on the same API server under
    // their own field manager, and this one must install the file as it is.
    ok(
        &["apply", "--server-side", "--force-conflicts", "-f", crd],
        None,
    );
    // Polled, not `kubectl wait`: that fails outright ("accessor error:
    // <nil>") when it reads the CRD before the API server wrote a condition.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let established = r#"jsonpath={.status.conditions[?(@.type=="Established")].status}"#;
    // Before the first condition the filter itself fails: not yet, too.
    let is_established = || {
        let out = kubectl(
            &["get", "crd/pixelpipelines.pixelpipe.dev", "-o", established],
            None,
        );
        out.status.success() && out.stdout == b"True"
    };
    while !is_established() {
        assert!(
            std::time::Instant::now() < deadline,
            "the CRD was not established within 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The sample pipeline, without its namespace: each test applies it to its own.
fn sample() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/samples/storefront.yaml"
    ))
    .expect("sample exists")
    .lines()
    .filter(|l| !l.trim_start().starts_with("namespace:"))
    .map(|l| format!("{l}\n"))
    .collect()
}

fn namespace(name: &str) -> String {
    let ns = format!("{name}-{}", std::process::id());
    let _ = kubectl(&["create", "namespace", &ns], None);
    ns
}

#[test]
fn the_crd_is_accepted_and_documented() {
    install_crd();
    let explain = ok(&["explain", "pixelpipeline.spec.stages"], None);
    assert!(
        explain.contains("Worker pool sizes per pipeline stage"),
        "{explain}"
    );
    let explain = ok(
        &["explain", "pixelpipeline.spec.stages.produce.maxWorkers"],
        None,
    );
    assert!(
        explain.contains("Most workers autoscaling may start"),
        "{explain}"
    );
    let explain = ok(
        &["explain", "pixelpipeline.spec.slo.maxEventAgeSeconds"],
        None,
    );
    assert!(explain.contains("oldest unprocessed event"), "{explain}");
}

#[test]
fn a_valid_pipeline_is_stored_with_defaults_and_shown_with_columns() {
    install_crd();
    let ns = namespace("valid");
    ok(&["apply", "-n", &ns, "-f", "-"], Some(&sample()));
    let stored = ok(
        &[
            "get",
            "-n",
            &ns,
            "pixelpipeline",
            "storefront",
            "-o",
            "json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&stored).expect("json");
    assert_eq!(
        v["spec"]["batch"]["maxEvents"], 250,
        "defaults are filled in"
    );
    assert_eq!(
        v["spec"]["autoscaling"]["scaleDownStabilizationSeconds"],
        300
    );
    // The scale subresource needs a count in the spec: 1, meaning `min`.
    assert_eq!(v["spec"]["replicas"]["initial"], 1);
    let scale = ok(
        &[
            "get",
            "-n",
            &ns,
            "pxp",
            "storefront",
            "--subresource",
            "scale",
            "-o",
            "json",
        ],
        None,
    );
    let scale: serde_json::Value = serde_json::from_str(&scale).expect("json");
    assert_eq!(scale["spec"]["replicas"], 1, "{scale}");
    let out = kubectl(
        &["scale", "-n", &ns, "pxp", "storefront", "--replicas=13"],
        None,
    );
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "13 is above replicas.max");
    assert!(
        message.contains("replicas.initial must not exceed replicas.max"),
        "{message}"
    );
    let table = ok(&["get", "-n", &ns, "pxp"], None);
    let header = table.lines().next().unwrap_or_default();
    for column in ["NAME", "REPLICAS", "POOLS", "LAG", "OLDEST", "SLO", "AGE"] {
        assert!(header.contains(column), "missing column {column}: {header}");
    }
}

#[test]
fn invalid_pipelines_are_rejected_with_the_rule_message() {
    install_crd();
    let ns = namespace("invalid");
    let base = sample();
    let cases = [
        (
            base.replace(
                "produce: {workers: 2, minWorkers: 1, maxWorkers: 32}",
                "produce: {workers: 40, minWorkers: 1, maxWorkers: 32}",
            ),
            "workers must lie between minWorkers and maxWorkers",
        ),
        (
            base.replace("min: 1\n    max: 12", "min: 5\n    max: 2"),
            "replicas.min must not exceed replicas.max",
        ),
        (
            base.replace("    inputTopic: storefront.events\n", ""),
            "spec.kafka.inputTopic: Required value",
        ),
        (
            base.replace("topic: partner.insights", "topic: storefront.events"),
            "partner topics must differ from the input and dead-letter topics",
        ),
        (
            base.replace("maxEventAgeSeconds: 300", "maxEventAgeSeconds: 0"),
            "spec.slo.maxEventAgeSeconds",
        ),
        (
            base.replace("requiredConsent: [analytics]", "requiredConsent: [gossip]"),
            "Unsupported value: \"gossip\"",
        ),
    ];
    for (doc, message) in cases {
        let err = rejected(&["apply", "-n", &ns, "-f", "-"], &doc);
        assert!(err.contains(message), "expected {message:?} in: {err}");
    }
}
