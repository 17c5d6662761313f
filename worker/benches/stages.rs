//! Per-event cost of the worker's CPU stages on a typical ~1 KB event:
//! `cargo bench -p pixelpipe-worker --bench stages`. Augment and serialize are
//! one function (the partner payload borrows from the event and is written
//! straight to bytes), so they are measured together, and apart from hashing.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use jiff::Timestamp;
use pixelpipe_crds::PipelineFile;
use pixelpipe_loadgen::{Generator, Kind, Mix};
use pixelpipe_worker::augment::{Payloads, Privacy, sha256_hex};
use pixelpipe_worker::event::{decode, decode_in_place};
use pixelpipe_worker::routing::Router;
use pixelpipe_worker::validate::validate;

// The worker's allocator: the events' strings and payloads are allocations.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn events() -> Vec<Vec<u8>> {
    let mut g = Generator::new(Mix {
        seed: 3,
        run_id: "bench".into(),
        no_consent_share: 0.0,
        malformed_share: 0.0,
        event_bytes: 1024,
    });
    (0..256)
        .map(|_| g.next_message())
        .filter(|m| m.kind == Kind::Valid)
        .map(|m| m.payload)
        .collect()
}

fn stages(c: &mut Criterion) {
    let config = PipelineFile::parse(include_str!("../examples/pipeline.yaml")).expect("config");
    let router = Router::new(&config);
    let payloads = events();
    let decoded: Vec<_> = payloads
        .iter()
        .map(|p| decode(Some(p), 65_536).expect("valid"))
        .collect();
    let now = Timestamp::now().as_millisecond();
    let privacy = Privacy::of(&config.privacy);
    let validated: Vec<_> = decoded
        .iter()
        .map(|e| validate(e, &router, &config.limits, now).expect("valid"))
        .collect();
    let n = payloads.len() as u64;

    let mut group = c.benchmark_group("per event");
    group.throughput(Throughput::Elements(n));
    // The event takes its payload, as in the worker, where the consumer's
    // copy is the source's cost: the copies are made outside the timing.
    group.bench_function("parse", |b| {
        b.iter_batched_ref(
            || payloads.iter().cloned().map(Some).collect::<Vec<_>>(),
            |owned| {
                for p in owned.iter_mut() {
                    black_box(decode_in_place(black_box(p), 65_536).ok());
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("validate", |b| {
        b.iter(|| {
            for e in &decoded {
                black_box(validate(black_box(e), &router, &config.limits, now).ok());
            }
        })
    });
    // One job's payloads, as the augment stage writes them. Each event was
    // received in a millisecond of its own, the least favourable case for
    // the received time kept rendered (live, a producer's batch shares one).
    group.bench_function("augment and serialize", |b| {
        b.iter(|| {
            let mut payloads = Payloads::new(&privacy, now).expect("now is in the calendar");
            for (i, (e, v)) in decoded.iter().zip(&validated).enumerate() {
                let received = now - 1000 + i as i64;
                black_box(payloads.write(black_box(e), v.event_ms, received).ok());
            }
        })
    });
    group.bench_function("hash one identifier", |b| {
        b.iter(|| {
            for _ in 0..n {
                black_box(sha256_hex(black_box("shopper.42@example.com")));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
