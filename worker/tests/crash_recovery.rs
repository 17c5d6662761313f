//! At-least-once across crashes and restarts, against a real broker.

mod common;

use std::thread;
use std::time::Duration;

use common::*;

#[test]
fn sigkill_mid_stream_loses_nothing() {
    let p = Pipeline::create("kill", 6);
    // Long runs kill more often, so they need a longer stream.
    let sent = generate(&unique("k"), rounds(60_000, 200_000), 0.1, 0.01, 21);
    produce(&p.input, &sent);
    let mut kills = 0;
    let rounds = rounds(3, 10);
    for round in 0..rounds {
        // A killed member holds its partitions until its session times out;
        // the broker's minimum keeps the restarts quick.
        let w = Worker::start(
            &p,
            &[
                "--batch-max-events",
                "200",
                "--kafka-option",
                "session.timeout.ms=6000",
            ],
        );
        // Kill at different depths into the stream.
        let at = 5_000.0 * (round % 3 + 1) as f64;
        w.wait_until("it is mid-stream", Duration::from_secs(60), || {
            w.metric("pixelpipe_events_delivered_total") >= at
        });
        w.sigkill();
        kills += 1;
    }
    let w = Worker::start(&p, &[]);
    let n = sent.len();
    w.wait_until("the rest is processed", Duration::from_secs(120), || {
        // The survivor's counters start at zero; it is done once it is idle
        // after consuming what was left uncommitted.
        let c = committed(&p.group, &p.input, 6);
        let total: i64 = c.values().sum();
        total as usize >= n
    });
    let duplicates = assert_all_delivered(&p, &sent);
    println!("{kills} SIGKILLs: 0 lost, {duplicates} duplicate partner messages");
    w.stop_cleanly(Duration::from_secs(30));
}

#[test]
fn sigterm_under_load_drains_commits_and_exits_zero() {
    let p = Pipeline::create("term", 6);
    let sent = generate(&unique("t"), 40_000, 0.1, 0.01, 22);
    // Keep producing while the worker runs, so SIGTERM lands under load.
    let (first, rest) = sent.split_at(10_000);
    produce(&p.input, first);
    let w = Worker::start(&p, &["--batch-max-events", "200"]);
    let feeder = {
        let topic = p.input.clone();
        let rest = rest.to_vec();
        thread::spawn(move || {
            for chunk in rest.chunks(2_000) {
                produce(&topic, chunk);
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    w.wait_until("it is busy", Duration::from_secs(60), || {
        w.metric("pixelpipe_events_delivered_total") >= 5_000.0
    });
    let in_before_term = w.metric("pixelpipe_events_in_total");
    w.stop_cleanly(Duration::from_secs(40));
    feeder.join().expect("feeder");

    // Everything consumed before the stop was delivered and committed.
    let committed_before: i64 = committed(&p.group, &p.input, 6).values().sum();
    assert!(
        committed_before as f64 >= in_before_term,
        "committed {committed_before} < consumed {in_before_term}"
    );
    let delivered_before = key_counts(&read_topic(&p.insights, 1, Duration::from_secs(30)));

    // A restart continues from the commit: nothing delivered before is repeated.
    let w = Worker::start(&p, &[]);
    let n = sent.len() as i64;
    w.wait_until("the rest is processed", Duration::from_secs(120), || {
        committed(&p.group, &p.input, 6).values().sum::<i64>() >= n
    });
    assert_eq!(
        assert_all_delivered(&p, &sent),
        0,
        "a clean stop and restart deliver nothing twice"
    );
    let after = key_counts(&read_topic(&p.insights, 1, Duration::from_secs(30)));
    for id in delivered_before.keys() {
        assert_eq!(after[id], 1, "{id} delivered again after restart");
    }
    w.stop_cleanly(Duration::from_secs(30));
}

/// Outputs librdkafka still holds when the pools have finished are not
/// purged by the stop: the worker waits for their acknowledgements, commits
/// them and exits 0. A long linger keeps them in the producer's queue.
#[test]
fn sigterm_with_outputs_still_in_the_producer_waits_for_their_acknowledgements() {
    let p = Pipeline::create("linger", 3);
    let sent = generate(&unique("l"), 2_000, 0.0, 0.0, 23);
    produce(&p.input, &sent);
    let w = Worker::start(
        &p,
        &[
            "--batch-max-events",
            "100",
            "--kafka-option",
            "linger.ms=3000",
        ],
    );
    w.wait_until("events are taken in", Duration::from_secs(60), || {
        w.metric("pixelpipe_events_in_total") >= 500.0
    });
    let taken = w.metric("pixelpipe_events_in_total");
    let delivered = w.metric("pixelpipe_events_delivered_total");
    assert!(
        delivered < taken,
        "the test needs outputs in flight at the stop: {delivered} of {taken} delivered"
    );
    w.stop_cleanly(Duration::from_secs(40));
    let at_stop: i64 = committed(&p.group, &p.input, 3).values().sum();
    assert!(
        at_stop as f64 >= taken,
        "committed {at_stop} < taken in {taken}"
    );
    let w = Worker::start(&p, &[]);
    w.wait_until("the rest is processed", Duration::from_secs(120), || {
        committed(&p.group, &p.input, 3).values().sum::<i64>() >= sent.len() as i64
    });
    assert_eq!(
        assert_all_delivered(&p, &sent),
        0,
        "nothing delivered twice"
    );
    w.stop_cleanly(Duration::from_secs(30));
}

#[test]
fn a_worker_joining_and_leaving_under_load_loses_nothing() {
    let p = Pipeline::create("rebalance", 6);
    let sent = generate(&unique("r"), 60_000, 0.1, 0.01, 23);
    let (first, rest) = sent.split_at(20_000);
    produce(&p.input, first);
    // Capped intake keeps both workers busy for the whole test.
    let cap = [
        "--max-events-per-second",
        "4000",
        "--batch-max-events",
        "200",
    ];
    let a = Worker::start(&p, &cap);
    let feeder = {
        let topic = p.input.clone();
        let rest = rest.to_vec();
        thread::spawn(move || {
            for chunk in rest.chunks(4_000) {
                produce(&topic, chunk);
                thread::sleep(Duration::from_millis(500));
            }
        })
    };
    a.wait_until(
        "the first worker is mid-stream",
        Duration::from_secs(60),
        || a.metric("pixelpipe_events_delivered_total") >= 5_000.0,
    );
    let b = Worker::start(&p, &cap);
    b.wait_until(
        "the second worker took partitions and delivered",
        Duration::from_secs(60),
        || b.metric("pixelpipe_events_delivered_total") >= 3_000.0,
    );
    assert!(
        b.sigterm(Duration::from_secs(30)).success(),
        "the leaving worker drains and exits 0"
    );
    feeder.join().expect("feeder");
    let n = sent.len() as i64;
    a.wait_until("the rest is processed", Duration::from_secs(120), || {
        committed(&p.group, &p.input, 6).values().sum::<i64>() >= n
    });
    let duplicates = assert_all_delivered(&p, &sent);
    assert_nothing_unexpected(&p, &sent);
    println!(
        "a worker joined and left under load: 0 lost, 0 shared without consent, {duplicates} duplicate partner messages"
    );
    assert!(a.sigterm(Duration::from_secs(30)).success());
}

#[test]
fn exactly_once_mode_shows_read_committed_consumers_no_duplicate_across_sigkills() {
    let p = Pipeline::create("eos", 6);
    let sent = generate(&unique("x"), rounds(30_000, 100_000), 0.1, 0.01, 29);
    produce(&p.input, &sent);
    // The same transactional id across restarts, as a pod keeps its name: the
    // restart fences the killed process and aborts what it left open.
    let id = format!("{}.worker", p.group);
    let args = [
        "--exactly-once",
        "--transactional-id",
        id.as_str(),
        "--batch-max-events",
        "200",
        "--kafka-option",
        "session.timeout.ms=6000",
    ];
    let kills = rounds(3, 10);
    for round in 0..kills {
        let w = Worker::start(&p, &args);
        // Small steps: each restart replays what was not committed, and the
        // sum of the steps (plus what is delivered between polls) must stay
        // well below the deliverable events, or the last round never gets there.
        let at = 1_500.0 * (round % 3 + 1) as f64;
        w.wait_until("it is mid-stream", Duration::from_secs(60), || {
            w.metric("pixelpipe_events_delivered_total") >= at
        });
        w.sigkill();
    }
    let w = Worker::start(&p, &args);
    let n = sent.len() as i64;
    w.wait_until("the rest is processed", Duration::from_secs(180), || {
        committed(&p.group, &p.input, 6).values().sum::<i64>() >= n
    });
    let (ads, insights) = expected_ids(&sent);
    let mut aborted = 0;
    for (topic, want) in [(&p.ads, ads), (&p.insights, insights)] {
        let counts = key_counts(&read_topic(topic, want.len(), Duration::from_secs(90)));
        let missing = want.iter().filter(|id| !counts.contains_key(*id)).count();
        let repeated: usize = counts.values().map(|c| c - 1).sum();
        let extra = counts.keys().filter(|id| !want.contains(*id)).count();
        assert_eq!(
            (missing, repeated, extra),
            (0, 0, 0),
            "{topic}: (missing, duplicates, not due) for a read-committed consumer"
        );
        let all = read_topic_isolated(
            topic,
            want.len(),
            Duration::from_secs(30),
            "read_uncommitted",
        );
        aborted += all.len() - want.len();
    }
    let malformed = sent
        .iter()
        .filter(|g| matches!(g.kind, Kind::Malformed(_)))
        .count();
    let dead = key_counts(&read_topic(&p.dlq, malformed, Duration::from_secs(30)));
    assert_eq!(
        dead.len(),
        malformed,
        "every malformed message dead-lettered"
    );
    assert!(dead.values().all(|&c| c == 1), "each dead letter once");
    println!(
        "exactly-once, {kills} SIGKILLs: 0 lost, 0 duplicates for read-committed consumers \
         ({aborted} records of aborted transactions visible only to read-uncommitted ones)"
    );
    w.stop_cleanly(Duration::from_secs(30));
}
