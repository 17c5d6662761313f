//! A corpus of hostile payloads through a real broker: each one dead-lettered,
//! byte for byte, with its reason; the valid events around them delivered; the
//! worker up, with bounded memory.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use rdkafka::producer::{BaseRecord, Producer};

const BASE: &str = r#"{"id":"ID","name":"checkout_completed","timestamp":"2026-01-01T00:00:00Z","shopId":1,"clientId":"c","region":"US-NY","consent":{"analytics":true,"marketing":false},"data":DATA}"#;

fn event(id: &str, data: &str) -> Vec<u8> {
    BASE.replace("ID", id).replace("DATA", data).into_bytes()
}

fn edit(id: &str, from: &str, to: &str) -> Vec<u8> {
    let e = String::from_utf8(event(id, "{}")).expect("utf8");
    assert!(e.contains(from), "{from} not in the base event");
    e.replacen(from, to, 1).into_bytes()
}

/// The reasons a case may be dead-lettered with.
type Reasons = &'static [&'static str];

/// One hostile message: its key, its payload, the reasons that are right.
struct Case {
    key: String,
    payload: Option<Vec<u8>>,
    reasons: Reasons,
}

fn corpus(run: &str) -> Vec<Case> {
    let mut garbage = Vec::with_capacity(4096);
    let mut x: u32 = 0x9e37_79b9;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        garbage.push((x >> 24) as u8);
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let line_items = format!(
        r#"{{"cart":{{"lineItems":[{}]}}}}"#,
        vec![r#"{"sku":"s-1","quantity":1}"#; 200_000].join(",")
    );
    let ten_mb = format!(r#"{{"note":"{}"}}"#, "A".repeat(10 * 1024 * 1024));
    const MALFORMED: Reasons = &["malformed_json"];
    const SCHEMA: Reasons = &["schema"];
    let cases: Vec<(&str, Option<Vec<u8>>, Reasons)> = vec![
        (
            "truncated",
            Some(event("x", "{}")[..60].to_vec()),
            MALFORMED,
        ),
        ("deep-100k-bare", Some(deep.clone().into_bytes()), MALFORMED),
        ("deep-100k-in-data", Some(event("x", &deep)), MALFORMED),
        ("string-10mb", Some(event("x", &ten_mb)), &["oversized"]),
        (
            "line-items-200k",
            Some(event("x", &line_items)),
            &["oversized"],
        ),
        (
            "invalid-utf8",
            Some(
                edit("x", "\"c\"", "\"c\u{0}\"")
                    .iter()
                    .map(|&b| if b == 0 { 0xc3 } else { b })
                    .collect(),
            ),
            &["invalid_utf8"],
        ),
        (
            "duplicate-consent-key",
            Some(edit(
                "x",
                r#""marketing":false"#,
                r#""marketing":false,"marketing":true"#,
            )),
            SCHEMA,
        ),
        (
            "duplicate-id-key",
            Some(edit("x", r#""id":"x""#, r#""id":"x","id":"y""#)),
            SCHEMA,
        ),
        (
            "nan",
            Some(edit("x", r#""shopId":1"#, r#""shopId":NaN"#)),
            MALFORMED,
        ),
        (
            "infinity",
            Some(edit("x", r#""shopId":1"#, r#""shopId":Infinity"#)),
            MALFORMED,
        ),
        (
            "nan-in-data",
            Some(event("x", r#"{"price":NaN}"#)),
            MALFORMED,
        ),
        (
            "huge-exponent",
            Some(edit("x", r#""shopId":1"#, r#""shopId":1e999"#)),
            MALFORMED,
        ),
        (
            "wrong-type-shop",
            Some(edit("x", r#""shopId":1"#, r#""shopId":"1""#)),
            SCHEMA,
        ),
        (
            "wrong-type-consent",
            Some(edit(
                "x",
                r#""consent":{"analytics":true,"marketing":false}"#,
                r#""consent":true"#,
            )),
            SCHEMA,
        ),
        (
            "null-consent",
            Some(edit(
                "x",
                r#""consent":{"analytics":true,"marketing":false}"#,
                r#""consent":null"#,
            )),
            SCHEMA,
        ),
        (
            "null-id",
            Some(edit("x", r#""id":"x""#, r#""id":null"#)),
            SCHEMA,
        ),
        ("null-payload", Some(b"null".to_vec()), SCHEMA),
        ("empty", Some(Vec::new()), &["empty"]),
        ("tombstone", None, &["empty"]),
        (
            "binary-garbage",
            Some(garbage),
            &["invalid_utf8", "malformed_json"],
        ),
        (
            "lone-surrogate-id",
            Some(edit("x", r#""id":"x""#, r#""id":"x\ud800""#)),
            MALFORMED,
        ),
        (
            "huge-exponent-in-data",
            Some(event("x", r#"{"price":1e999}"#)),
            MALFORMED,
        ),
        (
            "negative-overflow-in-data",
            Some(event("x", r#"{"items":[{"price":-1e309}]}"#)),
            MALFORMED,
        ),
        (
            "400-digits-in-data",
            Some(event("x", &format!(r#"{{"total":{}}}"#, "9".repeat(400)))),
            MALFORMED,
        ),
        (
            "huge-exponent-unknown-field",
            Some(edit("x", r#""shopId":1"#, r#""shopId":1,"weight":2E+400"#)),
            MALFORMED,
        ),
        (
            "lone-surrogate-in-data",
            Some(event("x", r#"{"note":"\udc00"}"#)),
            MALFORMED,
        ),
    ];
    cases
        .into_iter()
        .map(|(name, payload, reasons)| Case {
            key: format!("{run}-{name}"),
            payload,
            reasons,
        })
        .collect()
}

#[test]
fn hostile_payloads_are_dead_lettered_whole_and_their_neighbours_delivered() {
    let p = Pipeline::create("hostile", 3);
    // Room for the 100k-deep nesting to reach the parser's depth check; the
    // 10 MB string and the 200k line items are still over the limit.
    let mut yaml = std::fs::read_to_string(&p.config_path).expect("pipeline file");
    yaml.push_str("limits:\n  maxEventBytes: 1048576\n");
    std::fs::write(&p.config_path, yaml).expect("pipeline file");

    let run = unique("h");
    let cases = corpus(&run);
    let before = generate(&format!("{run}-a"), 1_500, 0.1, 0.0, 41);
    let after = generate(&format!("{run}-b"), 1_500, 0.1, 0.0, 43);
    produce(&p.input, &before);
    let producer = producer();
    for c in &cases {
        let mut r = BaseRecord::<[u8], [u8]>::to(&p.input).key(c.key.as_bytes());
        if let Some(payload) = &c.payload {
            r = r.payload(payload.as_slice());
        }
        producer.send(r).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    produce(&p.input, &after);

    let w = Worker::start(&p, &[]);
    let total: usize = before.len() + after.len() + cases.len();
    w.wait_until("everything is committed", Duration::from_secs(120), || {
        committed(&p.group, &p.input, 3).values().sum::<i64>() as usize >= total
    });
    assert!(w.get("/healthz").is_some(), "the worker is up");

    let dead: HashMap<String, Record> = read_topic(&p.dlq, cases.len(), Duration::from_secs(60))
        .into_iter()
        .map(|r| (r.key.clone(), r))
        .collect();
    let mut table = Vec::new();
    for c in &cases {
        let r = dead
            .get(&c.key)
            .unwrap_or_else(|| panic!("{} was not dead-lettered", c.key));
        let reason = r
            .headers
            .get("pixelpipe.reason")
            .map(String::as_str)
            .unwrap_or("");
        assert!(
            c.reasons.contains(&reason),
            "{}: reason {reason:?}, expected one of {:?} (detail: {:?})",
            c.key,
            c.reasons,
            r.headers.get("pixelpipe.detail")
        );
        assert_eq!(
            r.payload,
            c.payload.clone().unwrap_or_default(),
            "{}: the dead letter carries the payload byte for byte",
            c.key
        );
        table.push(format!(
            "{} ({} bytes): {reason}",
            c.key.trim_start_matches(&format!("{run}-")),
            r.payload.len()
        ));
    }
    let neighbours: Vec<_> = before.into_iter().chain(after).collect();
    let duplicates = assert_all_delivered(&p, &neighbours);
    assert_nothing_unexpected(&p, &neighbours);
    let rss = w.peak_rss_kib() / 1024;
    println!(
        "hostile corpus: {} messages dead-lettered with their reasons, {} valid neighbours delivered \
         ({duplicates} duplicates), peak RSS {rss} MiB\n  {}",
        cases.len(),
        neighbours.len(),
        table.join("\n  ")
    );
    assert!(
        rss < 400,
        "memory stays bounded with 10 MB messages: {rss} MiB"
    );
    assert!(w.sigterm(Duration::from_secs(30)).success());
}
