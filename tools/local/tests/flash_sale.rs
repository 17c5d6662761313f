//! The whole story end to end, in compressed time, on the real node and
//! broker that tests/run.sh starts: kubectl applies the manifests and a
//! PixelPipeline, the kubelet runs the operator and the workers as containers
//! with a CPU limit each, a 3x flash sale arrives, and the pipeline must hold
//! its SLO by resizing itself, then come back down, with every event where
//! the spec says and kubectl telling the story.

use std::time::Instant;

mod common;

use common::{bin_dir, node_env};
use pixelpipe_local::story::{self, Scenario};
use pixelpipe_testkit::prometheus::{Prometheus, dashboard_queries};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flash_sale_is_absorbed_by_resizing_and_every_event_lands_where_the_spec_says() {
    assert!(
        bin_dir().join("pixelpipe-loadgen").exists(),
        "pixelpipe-loadgen is not built in {}",
        bin_dir().display()
    );
    let scenario = Scenario::test();
    let env = node_env("e2e").await;
    let kubectl = |args: &[&str]| common::kubectl(&env, args);
    // A real Prometheus with the shipped scrape configuration and rules
    // discovers the operator and worker pods through the API server.
    let prometheus = Prometheus::start(&env.work_dir.join("prometheus"), &env.kubeconfig, "2s");
    let started = Instant::now();
    let report = story::run(&env, &scenario, CancellationToken::new())
        .await
        .expect("the story runs");
    let story_seconds = started.elapsed().as_secs() + 10;
    println!("{}", report.render());
    let shape = report.shape();

    // The SLO held, from the status and from Kafka's own timestamps.
    assert!(
        report.max_age <= report.slo_seconds,
        "oldest event reached {} s",
        report.max_age
    );
    assert!(
        report.counts.max_delay <= report.slo_seconds,
        "an event took {} s end to end",
        report.counts.max_delay
    );
    // The load was set against what one worker took in here, so the surge
    // outgrows one replica on any host.
    let calibration = report.calibration.as_ref().expect("the test calibrates");
    println!("{calibration}");
    // Up during the surge, back down after.
    assert!(
        shape.peak_replicas > shape.first_replicas && shape.last_replicas == shape.first_replicas,
        "{shape:?}"
    );
    // The slack spent: replicas follow the arrivals closely. The floor
    // counts replicas at the operator's median measure of the run, which
    // sits below what a worker takes in flat out (a lightly loaded worker
    // measures less: docs/benchmarks.md), so a scaler with headroom runs
    // more than the floor at steady load, and scale-down waits a
    // stabilization window. Twenty runs on this machine
    // spent 1.18x to 1.51x the floor (the two green clean-clone CI runs
    // 1.42x); 1.75x leaves room for that spread, and a scaler that held the
    // surge's six replicas to the end would spend about 2.4x.
    println!(
        "replica-seconds {:.0}, floor {:.0}",
        report.replica_seconds(),
        report.floor()
    );
    assert!(
        report.replica_seconds() <= 1.75 * report.floor(),
        "replica-seconds {:.0} against a floor of {:.0}",
        report.replica_seconds(),
        report.floor()
    );
    let reasons: Vec<&str> = report.scale.iter().map(|e| e.reason.as_str()).collect();
    assert!(
        reasons.contains(&"ScaledUp") && reasons.contains(&"ScaledDown"),
        "{reasons:?}"
    );
    assert!(
        report
            .scale
            .iter()
            .any(|e| e.reason == "ScaledUp" && e.message.contains("replicas 1 ->")),
        "no replica scale-up among {:?}",
        report.scale
    );
    // Every valid consenting event delivered to every partner it is due to,
    // nothing shared without consent, every malformed message dead-lettered.
    assert!(report.counts_reconcile(), "{:?}", report.counts);
    assert!(report.sent.sent > 100_000, "{:?}", report.sent);

    // kubectl tells the same story.
    let ns = &scenario.namespace;
    let table = kubectl(&["get", "pixelpipelines", "-n", ns, &scenario.name]);
    assert!(
        table.contains("REPLICAS") && table.contains("Met"),
        "{table}"
    );
    // Capacity measured from the workers' own evidence: each is held by its
    // CPU limit (read from its cgroup), and says so.
    let status = kubectl(&[
        "get",
        "pixelpipeline",
        "-n",
        ns,
        &scenario.name,
        "-o",
        "jsonpath={.status.capacityPerReplica} {.status.bottleneck}",
    ]);
    let (last, bottleneck) = status.split_once(' ').expect("two fields");
    let last: f64 = last.parse().expect("capacityPerReplica measured");
    // What a worker does with its CPU depends on its load (batches fill at
    // a surge; a quiet minute pays the per-batch costs for fewer events), so
    // the run's median measure moves with how long replicas ran lightly
    // loaded (631/s to 1,180/s over CI runs) and the last, after the quiet
    // evening, is lower still. The scenario's number is the intake at load:
    // the operator's measure during the surge. It also follows the host: the
    // same code measured 1,519/s at the surge in one run and 683/s (when it
    // scaled up) in a CI run on a busy host that passed every other check,
    // so the bound is a factor
    // of 2.5 either way around what the calibration measured from the
    // group's offsets in Kafka: a measure of the wrong thing (all replicas'
    // sum, lag totals, a unit slip) is off by more.
    let capacity = report.capacity_at_surge;
    println!(
        "capacity per replica at {} CPU: {capacity:.0}/s at the surge (the median), {:.0}/s over the run, {last}/s (the last)",
        scenario.worker_cpu, report.capacity_per_replica
    );
    let expected = report.worker_capacity;
    assert!(
        (expected / 2.5..=expected * 2.5).contains(&capacity),
        "measured {capacity}/s per replica at {} CPU at the surge; the calibration measured {expected:.0}/s",
        scenario.worker_cpu,
    );
    assert_eq!(bottleneck, "cpu");
    let described = kubectl(&["describe", "pixelpipeline", "-n", ns, &scenario.name]);
    for needle in ["ScaledUp", "ScaledDown", "replicas 1 ->", "Ready", "SLO"] {
        assert!(described.contains(needle), "no {needle:?} in:\n{described}");
    }
    let chart = std::fs::read(report.chart.as_ref().expect("a chart")).expect("chart");
    assert_eq!(&chart[..8], b"\x89PNG\r\n\x1a\n");

    dashboard_and_alerts_have_data(&prometheus, &scenario, story_seconds);
    drop(prometheus);

    // Leave the node's API server as the other tests expect it.
    story::remove(&env, &scenario).await.expect("cleaned up");
    let _ = std::fs::remove_dir_all(&env.work_dir);
}

/// Prometheus scraped the operator and the workers through the shipped
/// configuration (pod discovery and the pods' scrape hints), loaded the
/// shipped rules, and every query of the shipped dashboard draws something
/// over the story.
fn dashboard_and_alerts_have_data(prometheus: &Prometheus, sc: &Scenario, seconds: u64) {
    for job in ["pixelpipe-operator", "pixelpipe-workers"] {
        let up = prometheus.series_over(&format!("up{{job=\"{job}\"}} == 1"), seconds, 5);
        assert!(
            up >= 1,
            "no {job} target was ever up; Prometheus log:\n{}",
            prometheus.log_tail()
        );
        println!("prometheus: {up} {job} target(s) scraped");
    }
    let rules = prometheus.rules();
    assert!(rules.len() >= 7, "{rules:?}");
    for (name, health) in &rules {
        assert_eq!(health, "ok", "rule {name} does not evaluate: {rules:?}");
    }
    // The SLO held and Kafka was read throughout: those alerts stayed quiet.
    for alert in ["PixelpipeSLOBreached", "PixelpipeLagNotObserved"] {
        let firing = format!("ALERTS{{alertname=\"{alert}\",alertstate=\"firing\"}}");
        assert_eq!(
            prometheus.series_over(&firing, seconds, 5),
            0,
            "{alert} fired"
        );
    }
    let mut empty = Vec::new();
    for (panel, expr) in dashboard_queries(&sc.namespace, &sc.name, "30s") {
        let series = prometheus.series_over(&expr, seconds, 5);
        println!("dashboard: {panel}: {series} series from {expr}");
        if series == 0 {
            empty.push(format!("{panel}: {expr}"));
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without data: {empty:#?}"
    );
}
