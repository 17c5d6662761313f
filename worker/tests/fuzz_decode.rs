//! Property-based fuzzing of the event decoder and validator: whatever bytes
//! arrive, decoding and validation return a value or a rejection with a
//! reason, never a panic; and the decoder agrees with the serde_json one it
//! replaced (`oracle`) on every input but those the new rule rejects.
//! 256 cases per property in CI; more on demand:
//!
//!   PROPTEST_CASES=100000 cargo test --release -p pixelpipe-worker --test fuzz_decode

mod oracle;

use jiff::Timestamp;
use oracle::Verdict;
use pixelpipe_crds::PipelineFile;
use pixelpipe_loadgen::{Generator, Mix};
use pixelpipe_worker::event::{DeadReason, decode};
use pixelpipe_worker::routing::Router;
use pixelpipe_worker::validate::validate;
use proptest::prelude::*;
use std::sync::OnceLock;

const MAX_BYTES: usize = 64 * 1024;

fn valid_event(seed: u64) -> Vec<u8> {
    Generator::new(Mix {
        seed,
        run_id: "fuzz".into(),
        no_consent_share: 0.0,
        malformed_share: 0.0,
        event_bytes: 512,
    })
    .next_message()
    .payload
}

fn pipeline() -> &'static (PipelineFile, Router) {
    static PIPELINE: OnceLock<(PipelineFile, Router)> = OnceLock::new();
    PIPELINE.get_or_init(|| {
        let config =
            PipelineFile::parse(include_str!("../examples/pipeline.yaml")).expect("config");
        let router = Router::new(&config);
        (config, router)
    })
}

/// Decodes and, when that succeeds, validates: the two steps a message meets.
fn judge(bytes: &[u8]) {
    let (config, router) = pipeline();
    let rejection = match decode(Some(bytes), MAX_BYTES) {
        Ok(event) => validate(
            &event,
            router,
            &config.limits,
            Timestamp::now().as_millisecond(),
        )
        .err(),
        Err(r) => Some(r),
    };
    if let Some(r) = rejection {
        assert!(
            !r.detail.is_empty(),
            "a {:?} rejection without a reason",
            r.reason
        );
    }
}

/// The decoder and the oracle agree: both accept, with the same fields and
/// `data` byte for byte, or both reject, for the same reason unless the
/// oracle's pre-scan decided before any field was read. The one new rule:
/// a number past a double's range anywhere is rejected, where the oracle
/// let it through in `data` and unknown fields.
fn agree(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if bytes.is_empty() || bytes.len() > MAX_BYTES {
        return;
    }
    let ours = decode(Some(bytes), MAX_BYTES);
    let theirs = oracle::decode(text);
    // serde reads an array as a struct's fields in order (`"consent":[true]`);
    // an event and its parts are objects, so ours says so, whatever follows.
    if let Err(r) = &ours
        && r.reason == DeadReason::Schema
        && r.detail.ends_with("found an array")
    {
        return;
    }
    match (&ours, &theirs) {
        (Ok(e), Ok(o)) => {
            assert_eq!(
                (e.id(), e.name(), e.timestamp(), e.shop_id, e.client_id()),
                (
                    o.id.as_str(),
                    o.name.as_str(),
                    o.timestamp.as_str(),
                    o.shop_id,
                    o.client_id.as_str()
                )
            );
            assert_eq!(e.region(), o.region.as_deref());
            let c = &e.consent;
            let oc = &o.consent;
            assert_eq!(
                (c.analytics, c.marketing, c.preferences, c.sale_of_data),
                (oc.analytics, oc.marketing, oc.preferences, oc.sale_of_data)
            );
            assert_eq!(
                (e.url(), e.referrer(), e.user_agent()),
                (
                    o.context.url.as_deref(),
                    o.context.referrer.as_deref(),
                    o.context.user_agent.as_deref()
                )
            );
            assert_eq!(
                (e.email(), e.phone()),
                (o.customer.email.as_deref(), o.customer.phone.as_deref())
            );
            assert_eq!(e.data(), o.data.as_ref().map(|d| d.get()));
        }
        (Err(r), Ok(_)) => {
            assert!(
                r.detail.contains("IEEE-754") && out_of_range(text),
                "the oracle accepted what we reject: {r:?} for {text:?}"
            );
        }
        (Ok(_), Err(v)) => panic!("the oracle rejected ({v:?}) what we accept: {text:?}"),
        (Err(r), Err(v)) => {
            if r.detail.contains("IEEE-754") {
                assert!(out_of_range(text), "{r:?} for {text:?}");
                return;
            }
            let expected = match v {
                Verdict::Structure => return,
                Verdict::Malformed => DeadReason::MalformedJson,
                Verdict::Schema => DeadReason::Schema,
            };
            // serde judges a key (unknown, duplicate) before its colon; the
            // parser reads both before the decoder sees the key.
            if v == &Verdict::Schema && r.detail.starts_with("expected `:`") {
                return;
            }
            assert_eq!(r.reason, expected, "{r:?} for {text:?}");
        }
    }
}

/// serde_json, reading the whole text as a value, finds a number it cannot hold.
fn out_of_range(text: &str) -> bool {
    match serde_json::from_str::<serde_json::Value>(text) {
        Err(e) => e.to_string().contains("number out of range"),
        Ok(_) => false,
    }
}

/// Mutations that keep most of a real event, where parsers break.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Nest(usize, usize),
}

fn apply(mut bytes: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
    match m {
        Mutation::Truncate(i) => bytes.truncate(at(*i, bytes.len())),
        Mutation::Flip(i, b) => {
            if !bytes.is_empty() {
                let i = *i % bytes.len();
                bytes[i] ^= b | 1;
            }
        }
        Mutation::Insert(i, extra) => {
            let i = at(*i, bytes.len());
            bytes.splice(i..i, extra.iter().copied());
        }
        Mutation::Nest(i, depth) => {
            let i = at(*i, bytes.len());
            let nest: Vec<u8> = std::iter::repeat_n(b'[', *depth)
                .chain(std::iter::repeat_n(b']', *depth))
                .collect();
            bytes.splice(i..i, nest);
        }
    }
    bytes
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<usize>(),
            prop::collection::vec(
                prop_oneof![
                    Just(b'"'),
                    Just(b'\\'),
                    Just(b'{'),
                    Just(b'}'),
                    Just(b','),
                    Just(b':'),
                    any::<u8>()
                ],
                1..16
            )
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..100_000).prop_map(|(i, d)| Mutation::Nest(i, d)),
    ]
}

proptest! {
    // Failures are printed with their minimal input; no regression files
    // (an integration test has no lib.rs beside it to keep them).
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_are_judged_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        judge(&bytes);
        agree(&bytes);
    }

    #[test]
    fn mutated_events_are_judged_without_panicking(
        seed in any::<u64>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut bytes = valid_event(seed);
        for m in &mutations {
            bytes = apply(bytes, m);
        }
        judge(&bytes);
        agree(&bytes);
    }

    #[test]
    fn json_shaped_text_is_judged_without_panicking(text in r#"\{("[a-zA-Z]{1,8}":(null|true|-?[0-9]{1,20}(\.[0-9]+)?(e[0-9]{1,4})?|"[^"\\]{0,20}"|\[\]|\{\}),?){0,12}\}"#) {
        judge(text.as_bytes());
        agree(text.as_bytes());
    }

    #[test]
    fn events_with_edited_fields_decode_as_the_oracle_does(
        seed in any::<u64>(),
        field in prop_oneof![
            Just("id"), Just("name"), Just("shopId"), Just("consent"), Just("context"),
            Just("customer"), Just("data"), Just("region"), Just("marketing"), Just("email"),
        ],
        value in prop_oneof![
            Just("null".to_string()), Just("true".to_string()), Just("\"x\"".to_string()),
            Just("{}".to_string()), Just("[]".to_string()), Just("-1".to_string()),
            Just("1.5".to_string()), Just("1e3".to_string()), Just("1e999".to_string()),
            Just("18446744073709551616".to_string()), Just("\"\\ud800\"".to_string()),
            Just("{\"a\":1,\"a\":2}".to_string()), Just("\"\\u00e9\"".to_string()),
            "-?[0-9]{1,25}(\\.[0-9]{1,5})?([eE][-+]?[0-9]{1,3})?",
        ],
        duplicate in any::<bool>(),
    ) {
        let text = String::from_utf8(valid_event(seed)).expect("utf8");
        let key = format!("\"{field}\":");
        let edited = match text.find(&key) {
            Some(at) if duplicate => {
                let mut t = text.clone();
                t.insert_str(at, &format!("{key}{value},"));
                t
            }
            Some(at) => {
                // Replace the member's value up to the next `,"` or the end.
                let from = at + key.len();
                let to = text[from..].find(",\"").map_or(text.len() - 1, |i| from + i);
                format!("{}{value}{}", &text[..from], &text[to..])
            }
            None => text.replacen('{', &format!("{{{key}{value},"), 1),
        };
        agree(edited.as_bytes());
    }
}
