//! The pipeline against a real broker: routing, consent, hashing, dead letters,
//! reconciled counts, and live pool resizing under load.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;
use pixelpipe_worker::augment::sha256_hex;

#[test]
fn mixed_stream_reaches_exactly_the_allowed_partners() {
    let p = Pipeline::create("mixed", 4);
    let sent = generate(&unique("m"), 12_000, 0.15, 0.05, 11);
    produce(&p.input, &sent);
    let worker = Worker::start(&p, &[]);
    let n = sent.len() as f64;
    worker.wait_until(
        "every message is accounted for",
        Duration::from_secs(120),
        || {
            let done = worker.metric("pixelpipe_events_delivered_total")
                + worker.metric("pixelpipe_events_dropped_total")
                + worker.metric("pixelpipe_events_dead_lettered_total");
            done >= n
        },
    );

    // Counts reconcile: in = delivered + dropped + dead-lettered.
    let metric = |m: &str| worker.metric(m);
    let (in_, delivered, dropped, dead) = (
        metric("pixelpipe_events_in_total"),
        metric("pixelpipe_events_delivered_total"),
        metric("pixelpipe_events_dropped_total"),
        metric("pixelpipe_events_dead_lettered_total"),
    );
    println!("in {in_} = delivered {delivered} + dropped {dropped} + dead-lettered {dead}");
    assert_eq!(in_, n);
    assert_eq!(delivered + dropped + dead, in_);

    let (want_ads, want_insights) = expected_ids(&sent);
    let by_id: HashMap<&str, &Generated> = sent.iter().map(|g| (g.id.as_str(), g)).collect();
    for (topic, want) in [(&p.ads, &want_ads), (&p.insights, &want_insights)] {
        let got = read_topic(topic, want.len(), Duration::from_secs(60));
        let counts = key_counts(&got);
        let got_ids: HashSet<String> = counts.keys().cloned().collect();
        let missing = want.difference(&got_ids).count();
        let unexpected = got_ids.difference(want).count();
        assert_eq!(
            (missing, unexpected),
            (0, 0),
            "{topic}: missing/unexpected events"
        );
        assert!(
            counts.values().all(|c| *c == 1),
            "{topic}: no duplicates in a clean run"
        );
        for r in &got {
            let g = by_id[r.key.as_str()];
            let text = String::from_utf8(r.payload.clone()).expect("utf8 payload");
            let lower = text.to_lowercase();
            assert!(
                !lower.contains(&g.email.to_lowercase()),
                "raw email leaked to {topic}"
            );
            assert!(
                !lower.contains("shopper."),
                "raw email local part leaked to {topic}"
            );
            assert!(!text.contains(&g.phone), "raw phone leaked to {topic}");
            let v: serde_json::Value =
                serde_json::from_str(&text).expect("partner payload is JSON");
            assert_eq!(v["id"], g.id.as_str());
            assert_eq!(
                v["customer"]["emailSha256"],
                sha256_hex(&g.email.to_lowercase()).as_str()
            );
            let digits: String = g.phone.chars().filter(char::is_ascii_digit).collect();
            assert_eq!(
                v["customer"]["phoneSha256"],
                sha256_hex(&format!("+{digits}")).as_str()
            );
            assert_eq!(
                v["context"]["url"],
                "https://shop.example/products/tee?utm_source=newsletter"
            );
            assert!(v["eventAgeMs"].as_i64().is_some_and(|a| a >= 0));
            assert!(v["receivedAt"].is_string());
        }
    }

    // Every malformed message is dead-lettered once, with its bytes and reason.
    let malformed: Vec<&Generated> = sent
        .iter()
        .filter(|g| matches!(g.kind, Kind::Malformed(_)))
        .collect();
    assert!(malformed.len() > 400, "the mix has malformed messages");
    let dlq = read_topic(&p.dlq, malformed.len(), Duration::from_secs(60));
    assert_eq!(
        dlq.len(),
        malformed.len(),
        "one dead letter per malformed message"
    );
    let dead_by_key: HashMap<&str, &Record> = dlq.iter().map(|r| (r.key.as_str(), r)).collect();
    for g in malformed {
        let Kind::Malformed(m) = g.kind else {
            unreachable!()
        };
        let r = dead_by_key
            .get(g.id.as_str())
            .unwrap_or_else(|| panic!("{} ({m:?}) not dead-lettered", g.id));
        assert_eq!(r.payload, g.payload, "original bytes kept");
        assert_eq!(r.headers["pixelpipe.reason"], m.expected_reason(), "{m:?}");
        assert!(["parse", "validate"].contains(&r.headers["pixelpipe.stage"].as_str()));
        assert_eq!(r.headers["pixelpipe.source.topic"], p.input);
        assert!(r.headers["pixelpipe.source.offset"].parse::<i64>().is_ok());
        assert!(!r.headers["pixelpipe.detail"].is_empty());
    }
    assert_eq!(dead_by_key.len() as f64, dead);

    // Dropped = valid events that reached nobody.
    let nobody = sent
        .iter()
        .filter(|g| !matches!(g.kind, Kind::Malformed(_)) && expected_partners(g) == (false, false))
        .count();
    assert_eq!(dropped, nobody as f64);
    let status = worker.sigterm(Duration::from_secs(30));
    assert!(status.success(), "clean exit, got {status}");
}

#[test]
fn pools_resize_under_load_without_losing_or_repeating() {
    let p = Pipeline::create("resize", 6);
    let sent = generate(&unique("r"), 80_000, 0.1, 0.0, 12);
    produce(&p.input, &sent);
    let worker = Worker::start(&p, &["--pools", "1/1/1/1", "--batch-max-events", "200"]);
    let (_, sizes) = worker.get("/pools").expect("pools answer");
    assert!(sizes.contains(r#""stage":"parse","workers":1"#), "{sizes}");
    let plan = [
        (8, 1, 3, 2),
        (1, 6, 1, 8),
        (4, 4, 4, 4),
        (2, 1, 7, 1),
        (1, 1, 1, 1),
        (5, 3, 2, 6),
    ];
    let mut step = 0;
    let n = sent.len() as f64;
    while worker.metric("pixelpipe_events_delivered_total")
        + worker.metric("pixelpipe_events_dropped_total")
        < n
    {
        let (a, b, c, d) = plan[step % plan.len()];
        let body = format!(r#"{{"parse":{a},"validate":{b},"augment":{c},"produce":{d}}}"#);
        let (status, reply) = worker.put("/pools", &body).expect("resize answers");
        assert_eq!(status, 200, "{reply}");
        assert_eq!(
            reply,
            format!(r#"{{"parse":{a},"validate":{b},"augment":{c},"produce":{d}}}"#)
        );
        step += 1;
        assert!(step < 2_000, "pipeline stuck; log:\n{}", worker.log_tail());
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("{step} resizes while processing {n} events");
    assert!(step >= 20, "resized only {step} times while under load");
    let (status, reply) = worker.put("/pools", r#"{"parse":0}"#).expect("answers");
    assert_eq!(status, 422, "{reply}");
    let (status, _) = worker
        .put("/pools", r#"{"parse":100000}"#)
        .expect("answers");
    assert_eq!(status, 422);
    let (status, _) = worker.put("/pools", r#"{"parsing":2}"#).expect("answers");
    assert_eq!(status, 400);

    let (want_ads, want_insights) = expected_ids(&sent);
    for (topic, want) in [(&p.ads, &want_ads), (&p.insights, &want_insights)] {
        let got = key_counts(&read_topic(topic, want.len(), Duration::from_secs(60)));
        let got_ids: HashSet<String> = got.keys().cloned().collect();
        assert_eq!(&got_ids, want, "{topic}: nothing lost, nothing extra");
        let repeated = got.values().filter(|c| **c > 1).count();
        assert_eq!(repeated, 0, "{topic}: a resize repeated a job");
    }
    assert!(worker.sigterm(Duration::from_secs(30)).success());
}
