//! Liveness against a real wedge: a worker whose fetched events cannot move
//! fails `/healthz` with the reason once its bound has passed, and is healthy
//! again, having lost nothing, once they move.
//!
//! The wedge is the broker frozen with SIGSTOP (`tests/env/kafka.sh freeze`)
//! while the worker streams a backlog. Its sockets stay open and nothing is
//! answered, so every output the worker hands librdkafka waits for an
//! acknowledgement that does not come, while the source keeps taking events
//! from librdkafka's prefetch queue until the in-flight bound is full: pending
//! work that does not move, and an admin thread that still answers. That is
//! what a deadlock inside the worker looks like from outside, made without
//! any switch in the product. A halted broker would not do: its connections
//! close, and librdkafka's errors are not a hang. The worker runs with a 5 s
//! bound (the default, 300 s, is judged in `settings`' unit test and
//! `docs/reliability.md`), so librdkafka's own message timeout (120 s) never
//! ends the wedge first.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const BOUND_SECONDS: u64 = 5;

fn kafka(cmd: &str) -> bool {
    Command::new("bash")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/env/kafka.sh"))
        .arg(cmd)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The test broker, frozen; thawed however the test ends, so a failure here
/// does not hang every later test. `kafka.sh freeze` refuses a node other than
/// the one `KAFKA_BOOTSTRAP` names.
struct Frozen {
    thawed: bool,
}

impl Frozen {
    fn begin() -> Self {
        assert!(kafka("freeze"), "tests/env/kafka.sh freeze failed");
        Self { thawed: false }
    }

    fn thaw(&mut self) {
        self.thawed = true;
        assert!(kafka("thaw"), "tests/env/kafka.sh thaw failed");
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.thawed {
            let _ = kafka("thaw");
        }
    }
}

fn health(w: &Worker) -> (u16, String) {
    w.get("/healthz").unwrap_or((0, String::new()))
}

#[test]
fn a_worker_whose_pending_events_stop_moving_fails_liveness_and_recovers_when_they_move() {
    let p = Pipeline::create("liveness", 6);
    let sent = generate(&unique("l"), 20_000, 0.1, 0.01, 41);
    produce(&p.input, &sent);
    let w = Worker::start(
        &p,
        &[
            "--liveness-bound-seconds",
            &BOUND_SECONDS.to_string(),
            // Paced, so the backlog is still being worked through when the
            // broker freezes, with more of it in the prefetch queue.
            "--max-events-per-second",
            "1000",
            "--batch-max-events",
            "100",
        ],
    );
    w.wait_until("it is mid-stream", Duration::from_secs(60), || {
        w.metric("pixelpipe_events_delivered_total") >= 3_000.0
    });
    let (code, body) = health(&w);
    assert_eq!(
        (code, body.starts_with("ok:")),
        (200, true),
        "healthy while streaming: {body}"
    );

    let mut frozen = Frozen::begin();
    let froze = Instant::now();
    let deadline = Duration::from_secs(BOUND_SECONDS + 10);
    w.wait_until("liveness fails", deadline, || health(&w).0 == 503);
    let failed_after = froze.elapsed();
    let (_, reason) = health(&w);
    let pending = w.metric("pixelpipe_pending_events");
    let stalled = w.metric("pixelpipe_seconds_since_progress");
    frozen.thaw();
    let thawed = Instant::now();

    assert!(
        reason.starts_with("no progress for ")
            && reason.contains(" pending (bound 5.0 s)")
            && reason.lines().count() == 1,
        "the reason, in one line: {reason:?}"
    );
    // The stall began with the last acknowledgement before the freeze, a
    // moment earlier at most.
    assert!(
        failed_after >= Duration::from_secs(BOUND_SECONDS - 1),
        "not before the bound: failed {failed_after:?} after the freeze"
    );
    assert!(
        pending > 0.0,
        "pending events are exported while wedged: {pending}"
    );
    assert!(
        stalled > BOUND_SECONDS as f64,
        "seconds since progress exported past the bound: {stalled}"
    );

    w.wait_until(
        "liveness passes once the broker answers",
        Duration::from_secs(60),
        || health(&w).0 == 200,
    );
    let recovered_after = thawed.elapsed();
    let n = sent.len() as i64;
    w.wait_until(
        "everything is processed after the thaw",
        Duration::from_secs(180),
        || committed(&p.group, &p.input, 6).values().sum::<i64>() >= n,
    );
    let duplicates = assert_all_delivered(&p, &sent);
    assert_nothing_unexpected(&p, &sent);
    let (code, body) = health(&w);
    assert_eq!(code, 200, "healthy once idle: {body}");
    println!(
        "broker frozen: /healthz 503 {:.1} s after the freeze (bound {BOUND_SECONDS} s): {}; \
         200 again {:.1} s after the thaw; 0 lost, 0 shared without consent, \
         {duplicates} duplicates",
        failed_after.as_secs_f64(),
        reason.trim(),
        recovered_after.as_secs_f64()
    );
    assert!(w.sigterm(Duration::from_secs(30)).success());
}
