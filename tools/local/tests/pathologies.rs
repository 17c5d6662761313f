//! Autoscaling when more replicas cannot help, end to end against the real
//! API server and broker, with real workers run by the runner and the
//! manifests' operator: a stuck partition, a partner the brokers throttle,
//! and pods that never become Ready. Each time the replicas must not run
//! away, a condition and a Warning Event must name the cause, and scaling
//! must come back once the cause is gone.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Fixture, Load, NAMESPACE, env};
use pixelpipe_crds::reasons::{ConditionType, EventReason, condition_holds, find_condition};
use pixelpipe_crds::{PartitionState, PartnerSpec, PixelPipeline, PixelPipelineStatus, Purpose};
use pixelpipe_local::rig::{self, Env, StandConfig, Topics};
use rdkafka::consumer::{BaseConsumer, Consumer};

/// A pipeline observed every second, with short delays and windows.
fn pipeline(env: &Env, name: &str, topics: &Topics) -> PixelPipeline {
    let mut pp = rig::pipeline(env, NAMESPACE, name, topics, name).expect("pipeline");
    let s = &mut pp.spec;
    s.slo.max_event_age_seconds = 60;
    s.autoscaling.observation_interval_seconds = 1;
    s.autoscaling.pod_start_seconds = 2;
    s.autoscaling.rebalance_seconds = 3;
    s.autoscaling.scale_down_stabilization_seconds = 20;
    s.autoscaling.stuck_after_seconds = 8;
    s.replicas.min = 1;
    s.replicas.max = 6;
    pp
}

fn worker_env(intake: u32) -> Vec<(String, String)> {
    vec![
        ("PIXELPIPE_MAX_EVENTS_PER_SECOND".into(), intake.to_string()),
        ("PIXELPIPE_COMMIT_INTERVAL_MS".into(), "500".into()),
    ]
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", std::process::id() % 100_000)
}

fn condition(s: &PixelPipelineStatus, type_: ConditionType) -> Option<(String, String, String)> {
    find_condition(&s.conditions, type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The condition, when it is False.
fn turned_false(s: &PixelPipelineStatus, type_: ConditionType) -> Option<(String, String, String)> {
    condition(s, type_).filter(|c| c.0 == "False")
}

async fn until_ready(f: &Fixture) {
    f.until("Ready", Duration::from_secs(120), |s| {
        condition_holds(&s.conditions, ConditionType::Ready).then_some(())
    })
    .await;
}

/// Waits until `group` is Stable with `members` members, each assigned
/// partitions.
fn until_partitions_shared(group: &str, members: usize) {
    let client: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", pixelpipe_testkit::kafka::bootstrap())
        .create()
        .expect("client");
    let shared = || {
        let Ok(list) = client.fetch_group_list(Some(group), Duration::from_secs(5)) else {
            return false;
        };
        list.groups().first().is_some_and(|g| {
            g.state() == "Stable"
                && g.members().len() == members
                && g.members()
                    .iter()
                    .all(|m| m.assignment().is_some_and(|a| assigned_partitions(a) > 0))
        })
    };
    pixelpipe_testkit::wait::until(Duration::from_secs(60), shared)
        .expect("the workers share the partitions within 60 s");
}

/// Partitions in a consumer protocol assignment: version (i16), then per
/// topic a name (i16 length, bytes) and partitions (i32 count, i32 each).
fn assigned_partitions(bytes: &[u8]) -> usize {
    let mut at = 2;
    let mut take = |n: usize| {
        let field = bytes.get(at..at + n);
        at += n;
        field
    };
    let be_i32 = |b: &[u8]| i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let Some(topics) = take(4).map(be_i32) else {
        return 0;
    };
    let mut partitions = 0;
    for _ in 0..topics.max(0) {
        let Some(name) = take(2).map(|b| i16::from_be_bytes([b[0], b[1]])) else {
            return partitions;
        };
        take(name.max(0) as usize);
        let Some(count) = take(4).map(be_i32) else {
            return partitions;
        };
        partitions += count.max(0) as usize;
        take(4 * count.max(0) as usize);
    }
    partitions
}

/// The replica count the status shows each second, for `seconds`.
async fn watch_replicas(f: &Fixture, seconds: u64) -> Vec<i32> {
    let mut seen = Vec::new();
    for _ in 0..seconds {
        seen.push(f.status().await.replicas.unwrap_or(0));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_partition_is_named_left_out_of_scaling_and_recovers() {
    let env = env("stuck").await;
    let name = unique("stuck");
    let topics = Topics::with_partners(&name, &["insights"]);
    // The blocked partner's topic does not exist yet: its events wait in the
    // producer (for as long as librdkafka may wait for a topic to appear),
    // unacknowledged, while the worker stays Ready.
    let blocked = format!("{name}.partner.blocked");
    let mut pp = pipeline(&env, &name, &topics);
    pp.spec.replicas.min = 2;
    pp.spec.partners = vec![
        partner(
            "insights",
            topics.partner("insights").expect("topic"),
            "page_viewed",
        ),
        partner("blocked", &blocked, "checkout_completed"),
    ];
    pp.spec
        .kafka
        .options
        .insert("topic.metadata.propagation.max.ms".into(), "110000".into());
    let input = topics.input.clone();
    let group = pp.consumer_group();
    let f = Fixture::start(
        env,
        topics,
        pp,
        StandConfig {
            namespace: NAMESPACE.into(),
            worker_env: worker_env(1_000),
            max_pods: None,
        },
    )
    .await;
    until_ready(&f).await;
    // Events sent while the workers still share out the partitions would let
    // the first worker take partition 0's blocked events before handing it
    // over, and then stall on its own partitions too: stalled everywhere,
    // not one partition stuck.
    until_partitions_shared(&group, 2);
    // Only partition 0 carries events for the blocked partner.
    let load = Load::start(&input, 6, 40.0, |p| {
        if p == 0 {
            "checkout_completed"
        } else {
            "page_viewed"
        }
    });
    // Partition 0's jobs soon hold every in-flight slot of the worker that
    // owns it, so that worker's other partitions stop with it and may be
    // named first or alongside (docs/autoscaling.md); partition 0 must be.
    let (_, reason, message) = f
        .until("partition 0 is stuck", Duration::from_secs(90), |s| {
            turned_false(s, ConditionType::PartitionsHealthy)
                .filter(|c| c.2.contains("partition 0 at offset"))
        })
        .await;
    println!("stuck: {message}");
    assert_eq!(reason, "Stuck");
    let status = f.status().await;
    assert!(
        status
            .partitions
            .iter()
            .any(|p| p.partition == 0 && p.state == PartitionState::Stuck),
        "{:?}",
        status.partitions
    );
    // Scaling leaves it out: the healthy partitions fit the minimum.
    let replicas = watch_replicas(&f, 15).await;
    println!("replicas while partition 0 is stuck: {replicas:?}");
    assert!(replicas.iter().all(|&n| n == 2), "replicas {replicas:?}");
    let warned = f.events().await;
    assert!(
        warned
            .iter()
            .any(|(r, m)| r == EventReason::PartitionsUnhealthy.as_str()
                && m.contains("partition 0")),
        "{warned:?}"
    );

    // The partner's topic is created: the waiting events get through.
    pixelpipe_loadgen::topics::ensure_topics(&f.env.kafka, &[(&blocked, 3)])
        .await
        .expect("create");
    f.until(
        "the partitions are healthy again",
        Duration::from_secs(90),
        |s| condition_holds(&s.conditions, ConditionType::PartitionsHealthy).then_some(()),
    )
    .await;
    load.stop();
    f.until("the backlog is processed", Duration::from_secs(60), |s| {
        (s.lag == Some(0)).then_some(())
    })
    .await;
    f.finish().await;
}

fn partner(name: &str, topic: &str, event: &str) -> PartnerSpec {
    PartnerSpec {
        name: name.into(),
        topic: topic.into(),
        events: vec![event.into()],
        required_consent: vec![Purpose::Analytics],
    }
}

/// Removes a broker quota when dropped, so a failing test leaves none.
struct Quota(&'static str);

impl Quota {
    fn set(client: &'static str, bytes_per_second: u64) -> Self {
        quota(client, &bytes_per_second.to_string());
        Self(client)
    }
}

impl Drop for Quota {
    fn drop(&mut self) {
        quota(self.0, "none");
    }
}

fn quota(client: &str, bytes: &str) {
    let script = pixelpipe_local::story::repo_root().join("tests/env/kafka.sh");
    let ok = std::process::Command::new("bash")
        .arg(script)
        .args(["quota", client, bytes])
        .status()
        .expect("kafka.sh quota");
    assert!(ok.success(), "kafka.sh quota {client} {bytes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_partner_caps_replicas_where_they_stop_helping() {
    let env = env("throttled").await;
    let name = unique("throttled");
    let topics = Topics::with_partners(&name, &["insights"]);
    let mut pp = pipeline(&env, &name, &topics);
    // Outputs wait behind the quota for minutes. With the default message
    // timeout (120 s) they would start to time out and be retried, turning
    // the workers not Ready (PodsNotReady, a signal of its own) while this
    // test waits for the delivery limit to be judged.
    pp.spec
        .kafka
        .options
        .insert("message.timeout.ms".into(), "600000".into());
    let input = topics.input.clone();
    let f = Fixture::start(
        env,
        topics,
        pp,
        StandConfig {
            namespace: NAMESPACE.into(),
            // Uncompressed, so the quota below is in events.
            worker_env: [
                worker_env(2_000),
                vec![("PIXELPIPE_COMPRESSION".into(), "none".into())],
            ]
            .concat(),
            max_pods: None,
        },
    )
    .await;
    until_ready(&f).await;
    // The brokers take 60 kB/s from the workers, all of them together (a
    // quota is per client id): under 100 partner messages/s, whatever the
    // replicas. 300 events/s arrive.
    let throttle = Quota::set("pixelpipe-worker", 60_000);
    let load = Load::start(&input, 6, 50.0, |_| "page_viewed");
    let (_, reason, message) = f
        .until(
            "scaling is found not to help",
            // Half the SLO's slack, one step, its start and a minute to
            // judge it (throttled acknowledgements come in bursts).
            Duration::from_secs(240),
            |s| turned_false(s, ConditionType::ScalingEffective),
        )
        .await;
    assert_eq!(reason, "DeliveryLimited", "{message}");
    let status = f.status().await;
    assert_eq!(status.bottleneck.as_deref(), Some("delivery"));
    // At most the one step up that found the limit (half again the capacity).
    let replicas = watch_replicas(&f, 15).await;
    println!("replicas while the brokers throttle: {replicas:?}");
    assert!(replicas.iter().all(|&n| n <= 2), "replicas {replicas:?}");
    assert!(
        f.events()
            .await
            .iter()
            .any(|(r, _)| r == EventReason::ScalingIneffective.as_str())
    );

    drop(throttle);
    f.until("scaling helps again", Duration::from_secs(90), |s| {
        condition_holds(&s.conditions, ConditionType::ScalingEffective).then_some(())
    })
    .await;
    load.stop();
    f.until("the backlog is processed", Duration::from_secs(90), |s| {
        (s.lag == Some(0)).then_some(())
    })
    .await;
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_that_never_become_ready_are_not_added_to_and_scaling_resumes_with_room() {
    let env = env("unready").await;
    let name = unique("unready");
    let topics = Topics::with_partners(&name, &["insights"]);
    let pp = pipeline(&env, &name, &topics);
    let input = topics.input.clone();
    // Room for the two operator replicas and one worker: the node is full
    // after that.
    let room = Arc::new(AtomicUsize::new(3));
    let f = Fixture::start(
        env,
        topics,
        pp,
        StandConfig {
            namespace: NAMESPACE.into(),
            worker_env: worker_env(300),
            max_pods: Some(room.clone()),
        },
    )
    .await;
    until_ready(&f).await;
    // 600 events/s for a worker that takes 300: more replicas are needed,
    // and the ones added stay Pending.
    let load = Load::start(&input, 6, 100.0, |_| "page_viewed");
    let (_, reason, message) = f
        .until(
            "pods not becoming Ready are seen",
            Duration::from_secs(150),
            |s| turned_false(s, ConditionType::ScalingEffective),
        )
        .await;
    assert_eq!(reason, "PodsNotReady", "{message}");
    // Not to the maximum: what the arrivals need (3 of 300/s for 600/s over
    // 6 partitions), more only to try one pod at a time.
    let replicas = watch_replicas(&f, 15).await;
    println!("replicas while the node is full: {replicas:?}");
    assert!(replicas.iter().all(|&n| n <= 4), "replicas {replicas:?}");
    assert!(
        f.events()
            .await
            .iter()
            .any(|(r, m)| r == EventReason::ScalingIneffective.as_str() && m.contains("Ready"))
    );

    // The node gets room: the Pending pods start and scaling resumes.
    room.store(10, Ordering::Relaxed);
    f.until("scaling helps again", Duration::from_secs(90), |s| {
        condition_holds(&s.conditions, ConditionType::ScalingEffective).then_some(())
    })
    .await;
    f.until(
        "the oldest event is back under the target",
        Duration::from_secs(120),
        |s| (s.slo_state == Some(pixelpipe_crds::SloState::Met)).then_some(()),
    )
    .await;
    load.stop();
    f.finish().await;
}
