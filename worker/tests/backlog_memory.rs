//! Memory must not follow the backlog: the worker's peak RSS after draining a
//! 1M-event backlog stays within 20% of its peak after a 10k-event backlog.

mod common;

use std::time::Duration;

use common::*;

/// Streams `n` generated events into `topic` without holding them in memory.
fn preload(topic: &str, n: usize, seed: u64) {
    let mut g = Generator::new(Mix {
        seed,
        run_id: unique("b"),
        no_consent_share: 0.1,
        malformed_share: 0.01,
        event_bytes: 1024,
    });
    produce_all(topic, (0..n).map(|_| g.next_message()));
}

/// Drains an `n`-event backlog and returns the worker's peak RSS in KiB.
fn peak_rss_after_backlog(n: usize) -> u64 {
    let p = Pipeline::create("backlog", 6);
    preload(&p.input, n, n as u64);
    let w = Worker::start(&p, &[]);
    let target = n as f64;
    w.wait_until(
        &format!("the {n}-event backlog is drained"),
        Duration::from_secs(600),
        || {
            w.metric("pixelpipe_events_delivered_total")
                + w.metric("pixelpipe_events_dropped_total")
                + w.metric("pixelpipe_events_dead_lettered_total")
                >= target
        },
    );
    let peak = w.peak_rss_kib();
    assert!(w.sigterm(Duration::from_secs(30)).success());
    peak
}

#[test]
fn peak_memory_does_not_grow_with_the_backlog() {
    let small = peak_rss_after_backlog(10_000);
    let large = peak_rss_after_backlog(1_000_000);
    let ratio = large as f64 / small as f64;
    println!(
        "peak RSS: 10k backlog {:.1} MiB, 1M backlog {:.1} MiB, ratio {ratio:.3}",
        small as f64 / 1024.0,
        large as f64 / 1024.0
    );
    assert!(
        ratio <= 1.2,
        "peak RSS grew {ratio:.2}x with a 100x larger backlog"
    );
    assert!(large < 200 * 1024, "peak RSS {large} KiB is over 200 MiB");
}
