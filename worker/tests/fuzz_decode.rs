//! Property-based fuzzing of the event decoder and validator: whatever bytes
//! arrive, decoding and validation return a value or a rejection with a
//! reason, never a panic. 256 cases per property in CI; more on demand:
//!
//!   PROPTEST_CASES=100000 cargo test --release -p pixelpipe-worker --test fuzz_decode

use jiff::Timestamp;
use pixelpipe_crds::PipelineFile;
use pixelpipe_loadgen::{Generator, Mix};
use pixelpipe_worker::event::decode;
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
    }

    #[test]
    fn json_shaped_text_is_judged_without_panicking(text in r#"\{("[a-zA-Z]{1,8}":(null|true|-?[0-9]{1,20}(\.[0-9]+)?(e[0-9]{1,4})?|"[^"\\]{0,20}"|\[\]|\{\}),?){0,12}\}"#) {
        judge(text.as_bytes());
    }
}
