//! The monitoring the project ships (`manifests/monitoring/`), checked with
//! Prometheus' own tools built from its Go module (`tests/env/prometheus.sh`):
//! the rules are valid and every alert has unit tests that pass, the scrape
//! configuration loads, and the kustomize component renders. That a real
//! Prometheus scrapes the operator and the workers with this configuration,
//! and that every dashboard query returns data, is the flash-sale test's part
//! (`tools/local/tests/flash_sale.rs`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use pixelpipe_testkit::prometheus::{binaries, monitoring, rules_file, scrape_config};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pixelpipe-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Runs `promtool args` in `dir`; its output, or a panic with it.
fn promtool(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(binaries().join("promtool"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

fn alerts_in(rules: &str) -> BTreeSet<String> {
    let rules: serde_yaml::Value = serde_yaml::from_str(rules).expect("rules parse");
    rules["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_sequence().into_iter().flatten())
        .filter_map(|r| r["alert"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn the_alert_rules_are_valid_and_every_alert_has_a_passing_unit_test() {
    let dir = scratch("rules");
    let rules = rules_file();
    std::fs::write(dir.join("rules.yaml"), &rules).expect("rules written");
    let tests = std::fs::read_to_string(monitoring("rules-test.yaml")).expect("rules-test.yaml");
    std::fs::write(dir.join("rules-test.yaml"), &tests).expect("tests written");

    let checked = promtool(&dir, &["check", "rules", "rules.yaml"]);
    println!("{checked}");
    let alerts = alerts_in(&rules);
    assert!(alerts.len() >= 6, "{alerts:?}");
    for alert in &alerts {
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "no promtool test for the alert {alert}"
        );
    }
    let tested = promtool(&dir, &["test", "rules", "rules-test.yaml"]);
    println!("{tested}");
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn a_rule_that_drifts_from_its_tests_fails_them() {
    // The unit tests can fail: the at-risk threshold moved from 80% to 90%
    // of the SLO makes the alert late, and promtool says so.
    let dir = scratch("rules-drift");
    let drifted = rules_file().replace("> 0.8", "> 0.9");
    assert_ne!(drifted, rules_file(), "the threshold is no longer `> 0.8`");
    std::fs::write(dir.join("rules.yaml"), drifted).expect("rules written");
    std::fs::copy(monitoring("rules-test.yaml"), dir.join("rules-test.yaml")).expect("copy");
    let out = Command::new(binaries().join("promtool"))
        .args(["test", "rules", "rules-test.yaml"])
        .current_dir(&dir)
        .output()
        .expect("promtool runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("alertname: PixelpipeSLOAtRisk, time: 4m"),
        "{text}"
    );
}

#[test]
fn the_scrape_configuration_loads_with_its_rules() {
    let dir = scratch("scrape-config");
    let rules = dir.join("pixelpipe.rules.yaml");
    std::fs::write(&rules, rules_file()).expect("rules written");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, "apiVersion: v1\nkind: Config\nclusters: []\n")
        .expect("kubeconfig");
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, scrape_config(&kubeconfig, "15s", &rules)).expect("config");
    let out = promtool(
        &dir,
        &["check", "config", "--syntax-only", "prometheus.yml"],
    );
    println!("{out}");
    // The shipped file itself, as a user would copy it next to the rules.
    std::fs::copy(monitoring("prometheus.yml"), dir.join("shipped.yml")).expect("copy");
    promtool(&dir, &["check", "config", "shipped.yml"]);
}

#[test]
fn the_monitoring_component_renders_its_pod_monitors_and_rules() {
    let dir = scratch("component");
    // Kustomize takes only relative paths: from the overlay up to `/`, then
    // down to the repository.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root");
    let up = "../".repeat(dir.components().count() - 1);
    let from_root = root
        .strip_prefix("/")
        .expect("absolute")
        .display()
        .to_string();
    let overlay = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [{up}{from_root}/manifests]\ncomponents: [{up}{from_root}/manifests/monitoring]\n"
    );
    std::fs::write(dir.join("kustomization.yaml"), overlay).expect("overlay");
    let out = Command::new("kubectl")
        .args(["kustomize", &dir.display().to_string()])
        .output()
        .expect("kubectl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for object in [
        "kind: PodMonitor\nmetadata:\n  labels:\n    app.kubernetes.io/name: pixelpipe-operator",
        "name: pixelpipe-workers",
        "kind: PrometheusRule",
        "kind: Deployment",
    ] {
        assert!(text.contains(object), "{object:?} not rendered:\n{text}");
    }
}
