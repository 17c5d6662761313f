//! A real Prometheus server (built by `tests/env/prometheus.sh`; its
//! directory in `PIXELPIPE_PROMETHEUS_DIR`) scraping what the tests run, with
//! the scrape configuration and rules the project ships in
//! `manifests/monitoring/`, and the queries its dashboard makes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use crate::process::{Process, free_port};

/// The directory holding `prometheus` and `promtool`.
pub fn binaries() -> PathBuf {
    PathBuf::from(std::env::var("PIXELPIPE_PROMETHEUS_DIR").unwrap_or_else(|_| {
        panic!(
            "PIXELPIPE_PROMETHEUS_DIR is not set: tests/run.sh sets it (tests/env/prometheus.sh build; export PIXELPIPE_PROMETHEUS_DIR=$(tests/env/prometheus.sh path))"
        )
    }))
}

/// A file of `manifests/monitoring/`.
pub fn monitoring(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../manifests/monitoring")
        .join(file)
}

fn read_yaml(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The PrometheusRule's `spec`: a plain rules file, as Prometheus reads it.
pub fn rules_file() -> String {
    let rule = read_yaml(&monitoring("prometheusrule.yaml"));
    serde_yaml::to_string(&rule["spec"]).expect("rules serialize")
}

/// The shipped scrape configuration (`manifests/monitoring/prometheus.yml`)
/// pointed at the test's API server through `kubeconfig`, scraping every
/// `interval`, with `rules` (a file path) loaded.
pub fn scrape_config(kubeconfig: &Path, interval: &str, rules: &Path) -> String {
    let mut config = read_yaml(&monitoring("prometheus.yml"));
    config["global"]["scrape_interval"] = interval.into();
    config["global"]["evaluation_interval"] = interval.into();
    config["rule_files"] = Yaml::Sequence(vec![rules.display().to_string().into()]);
    let jobs = config["scrape_configs"]
        .as_sequence_mut()
        .expect("scrape_configs");
    for job in jobs {
        for sd in job["kubernetes_sd_configs"]
            .as_sequence_mut()
            .expect("kubernetes_sd_configs")
        {
            sd["kubeconfig_file"] = kubeconfig.display().to_string().into();
        }
    }
    serde_yaml::to_string(&config).expect("config serializes")
}

/// Every query of the shipped dashboard (`dashboard.json`): (panel title,
/// PromQL), with its variables bound to `namespace` and `pipeline` and the
/// rate window to `window`, as Grafana would send them.
pub fn dashboard_queries(namespace: &str, pipeline: &str, window: &str) -> Vec<(String, String)> {
    let path = monitoring("dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dashboard: Json = serde_json::from_str(&text).expect("dashboard.json parses");
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            let bound = expr
                .replace("$namespace", namespace)
                .replace("$pipeline", pipeline)
                .replace("$__rate_interval", window);
            out.push((title.to_string(), bound));
        }
    }
    out
}

/// A Prometheus server of the test's own, killed when dropped.
#[derive(Debug)]
pub struct Prometheus {
    process: Process,
    _dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus on a free port with the shipped configuration and
    /// rules (see [`scrape_config`]), its data in `dir`.
    pub fn start(dir: &Path, kubeconfig: &Path, interval: &str) -> Self {
        std::fs::create_dir_all(dir).expect("prometheus dir");
        let rules = dir.join("pixelpipe.rules.yaml");
        std::fs::write(&rules, rules_file()).expect("rules written");
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, scrape_config(kubeconfig, interval, &rules))
            .expect("config written");
        let addr: std::net::SocketAddr =
            format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let mut command = Command::new(binaries().join("prometheus"));
        command.args([
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", dir.join("data").display()),
            &format!("--web.listen-address={addr}"),
            "--storage.tsdb.retention.time=2h",
            "--log.level=warn",
        ]);
        let process = Process::start("prometheus", command, addr, &dir.join("prometheus.log"));
        process.wait_until("Prometheus is ready", Duration::from_secs(60), || {
            matches!(process.get("/-/ready"), Some((200, _)))
        });
        Self {
            process,
            _dir: dir.to_path_buf(),
        }
    }

    fn api(&self, path: &str, query: &[(&str, &str)]) -> Json {
        let (status, body) = crate::http::get_with_query(&self.process.url(path), query)
            .unwrap_or_else(|| panic!("Prometheus does not answer {path}"));
        assert_eq!(status, 200, "{path} {query:?}: {body}");
        serde_json::from_str(&body).expect("Prometheus answers JSON")
    }

    /// The series `expr` returns over the last `seconds`, at `step` seconds,
    /// with at least one number: what a dashboard panel over that range
    /// would draw.
    pub fn series_over(&self, expr: &str, seconds: u64, step: u64) -> usize {
        let end = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let (start, end, step) = (
            end.saturating_sub(seconds).to_string(),
            end.to_string(),
            step.to_string(),
        );
        let query = [
            ("query", expr),
            ("start", &start),
            ("end", &end),
            ("step", &step),
        ];
        let answer = self.api("/api/v1/query_range", &query);
        // A series of NaN only (a quantile of no traffic) draws nothing.
        answer["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|series| {
                series["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|v| v[1].as_str().is_some_and(|x| x != "NaN"))
            })
            .count()
    }

    /// Each scrape target's job and health ("up", "down", "unknown").
    pub fn targets(&self) -> Vec<(String, String)> {
        let answer = self.api("/api/v1/targets", &[("state", "active")]);
        answer["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t["labels"]["job"].as_str().unwrap_or_default().to_string(),
                    t["health"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// Each loaded rule's name and health ("ok", "err", "unknown").
    pub fn rules(&self) -> Vec<(String, String)> {
        let answer = self.api("/api/v1/rules", &[]);
        let mut out = Vec::new();
        for group in answer["data"]["groups"].as_array().into_iter().flatten() {
            for rule in group["rules"].as_array().into_iter().flatten() {
                out.push((
                    rule["name"].as_str().unwrap_or_default().to_string(),
                    rule["health"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        out
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}
