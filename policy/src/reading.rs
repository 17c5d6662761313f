//! From the workers' own reports to the policy's [`Evidence`]: each Ready
//! pod's counters differenced over the observation window, each resource's
//! busy fraction, then the average pod.
//!
//! The resources a worker can run out of, and how busy each was:
//! - **CPU**: CPU seconds per second over the cores the pod may use.
//! - **a stage's pool**: worker-seconds on jobs per second over its workers
//!   (the produce stage's time waiting for room in the producer's queue is
//!   the brokers', not the stage's).
//! - **intake**: the rate read over the intake limit (`--max-events-per-second`).
//! - **delivery**: jobs waiting only for acknowledgements, on average (by
//!   Little's law, their job-seconds per second), over the in-flight bound;
//!   or the produce stage's time waiting for queue room, per worker.

use pixelpipe_crds::evidence::WorkerEvidence;
use pixelpipe_crds::{PerStage, Stage};

use crate::observation::{Bottleneck, Evidence, StageLoad};

/// One pod over one window, per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub events_per_second: f64,
    pub cores: f64,
    /// Busy fraction of each resource, 0..1.
    pub cpu: f64,
    pub stages: PerStage<StageLoad>,
    pub intake: f64,
    pub delivery: f64,
}

/// Seconds a window must span to be read; shorter ones are mostly noise.
const MIN_WINDOW: f64 = 0.5;

/// The least CPU a pod may be given: Kubernetes' smallest unit, one
/// millicore. Only a guard against dividing by nothing; a higher floor would
/// read a pod with a small limit as partly idle when it is saturated.
const MIN_CORES: f64 = 0.001;

/// One pod's usage between two of its reports; `None` when it restarted in
/// between or too little time passed.
pub fn usage(before: &WorkerEvidence, after: &WorkerEvidence) -> Option<Usage> {
    let dt = after.uptime_seconds - before.uptime_seconds;
    if dt < MIN_WINDOW || after.events_completed < before.events_completed {
        return None;
    }
    let per_second = |a: f64, b: f64| ((a - b) / dt).max(0.0);
    let queue_full = per_second(after.queue_full_seconds, before.queue_full_seconds);
    let stages = after.stages.zip(before.stages).map(|stage, (a, b)| {
        let mut busy = per_second(a.busy_seconds, b.busy_seconds);
        if stage == Stage::Produce {
            busy = (busy - queue_full).max(0.0);
        }
        StageLoad {
            busy,
            workers: f64::from(a.workers.max(b.workers).max(1)),
        }
    });
    let waiting = per_second(
        after.acknowledgement_wait_seconds,
        before.acknowledgement_wait_seconds,
    );
    let acknowledgements = waiting / (after.max_in_flight_jobs.max(1) as f64);
    let queue = queue_full / stages.produce.workers;
    Some(Usage {
        events_per_second: (after.events_completed - before.events_completed) as f64 / dt,
        cores: after.cores.max(MIN_CORES),
        cpu: per_second(after.cpu_seconds, before.cpu_seconds) / after.cores.max(MIN_CORES),
        stages,
        intake: after
            .intake_limit
            .filter(|l| *l > 0.0)
            .map_or(0.0, |limit| {
                (after.events_completed - before.events_completed) as f64 / dt / limit
            }),
        delivery: acknowledgements.max(queue),
    })
}

/// The average pod's evidence; `None` without any usage.
pub fn evidence(usages: &[Usage]) -> Option<Evidence> {
    let n = usages.len();
    if n == 0 {
        return None;
    }
    let mean = |f: &dyn Fn(&Usage) -> f64| usages.iter().map(f).sum::<f64>() / n as f64;
    let stages = PerStage::from_fn(|stage| StageLoad {
        busy: mean(&|u| u.stages[stage].busy),
        workers: mean(&|u| u.stages[stage].workers),
    });
    let mut candidates = vec![(Bottleneck::Cpu, mean(&|u| u.cpu))];
    candidates.extend(
        stages
            .iter()
            .map(|(stage, l)| (Bottleneck::Pool(stage), l.busy / l.workers.max(1.0))),
    );
    candidates.push((Bottleneck::Intake, mean(&|u| u.intake)));
    candidates.push((Bottleneck::Delivery, mean(&|u| u.delivery)));
    // The first of equals wins: CPU, then the stages in order.
    let (bottleneck, utilization) =
        candidates
            .into_iter()
            .fold((Bottleneck::Cpu, f64::MIN), |best, c| {
                if c.1 > best.1 { c } else { best }
            });
    Some(Evidence {
        pods: n,
        events_per_second: mean(&|u| u.events_per_second),
        utilization: utilization.clamp(0.0, 1.0),
        bottleneck,
        stages,
        cores: mean(&|u| u.cores),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pixelpipe_crds::evidence::StageEvidence;

    /// A pod after `t` seconds at `rate` events/s using `cpu` cores of 2,
    /// stages busy as given (worker-seconds per second, 2 workers each).
    fn report(t: f64, rate: f64, cpu: f64, busy: [f64; 4]) -> WorkerEvidence {
        let mut i = 0;
        WorkerEvidence {
            uptime_seconds: t,
            cores: 2.0,
            cpu_seconds: cpu * t,
            events_read: (rate * t) as u64,
            events_completed: (rate * t) as u64,
            stages: PerStage::from_fn(|_| {
                let s = StageEvidence {
                    workers: 2,
                    busy_seconds: busy[i] * t,
                    jobs: 0,
                };
                i += 1;
                s
            }),
            max_in_flight_jobs: 16,
            ..WorkerEvidence::default()
        }
    }

    #[test]
    fn a_cpu_bound_pod_reads_as_cpu_and_its_true_rate_follows() {
        let u = usage(
            &report(10.0, 1000.0, 1.0, [0.1; 4]),
            &report(20.0, 1000.0, 1.0, [0.1; 4]),
        )
        .expect("usage");
        assert_eq!(u.events_per_second, 1000.0);
        assert_eq!(u.cpu, 0.5);
        let e = evidence(&[u, u]).expect("evidence");
        assert_eq!(
            (e.pods, e.bottleneck, e.utilization),
            (2, Bottleneck::Cpu, 0.5)
        );
        assert_eq!(e.true_rate(), Some(2000.0));
    }

    #[test]
    fn a_pod_with_a_small_cpu_limit_that_uses_all_of_it_is_saturated() {
        // 50m, all used, 1,200 events/s: its capacity is what it does.
        let pod = |t: f64| WorkerEvidence {
            cores: 0.05,
            ..report(t, 1_200.0, 0.05, [0.1; 4])
        };
        let u = usage(&pod(10.0), &pod(12.0)).expect("usage");
        assert!((u.cpu - 1.0).abs() < 1e-9, "{}", u.cpu);
        let e = evidence(&[u]).expect("evidence");
        assert_eq!(e.bottleneck, Bottleneck::Cpu);
        assert!((e.true_rate().expect("rate") - 1_200.0).abs() < 1e-6);
    }

    #[test]
    fn a_saturated_pool_is_the_bottleneck() {
        let u = usage(
            &report(0.0, 500.0, 0.4, [0.2, 1.9, 0.2, 0.2]),
            &report(10.0, 500.0, 0.4, [0.2, 1.9, 0.2, 0.2]),
        )
        .expect("usage");
        let e = evidence(&[u]).expect("evidence");
        assert_eq!(e.bottleneck, Bottleneck::Pool(Stage::Validate));
        assert!((e.utilization - 0.95).abs() < 1e-9);
    }

    #[test]
    fn waiting_for_acknowledgements_is_delivery_and_queue_wait_is_not_produce_work() {
        let mut a = report(0.0, 100.0, 0.1, [0.0; 4]);
        let mut b = report(10.0, 100.0, 0.1, [0.0, 0.0, 0.0, 1.8]);
        // 14 of 16 jobs waiting on acknowledgements on average.
        b.acknowledgement_wait_seconds = 140.0;
        // The produce stage's busy time was all queue waiting.
        b.queue_full_seconds = 18.0;
        a.queue_full_seconds = 0.0;
        let u = usage(&a, &b).expect("usage");
        assert_eq!(u.stages.produce.busy, 0.0);
        let e = evidence(&[u]).expect("evidence");
        assert_eq!(e.bottleneck, Bottleneck::Delivery);
        assert!((e.utilization - 0.9).abs() < 1e-9, "{}", e.utilization);
    }

    #[test]
    fn an_intake_limit_reads_as_the_rate_over_it() {
        let mut a = report(0.0, 900.0, 0.2, [0.1; 4]);
        let mut b = report(10.0, 900.0, 0.2, [0.1; 4]);
        a.intake_limit = Some(1_000.0);
        b.intake_limit = Some(1_000.0);
        let e = evidence(&[usage(&a, &b).expect("usage")]).expect("evidence");
        assert_eq!(e.bottleneck, Bottleneck::Intake);
        assert_eq!(e.true_rate(), Some(1_000.0));
    }

    #[test]
    fn a_restart_or_a_short_window_is_not_read() {
        let later = report(30.0, 100.0, 0.5, [0.1; 4]);
        let restarted = report(2.0, 100.0, 0.5, [0.1; 4]);
        assert!(usage(&later, &restarted).is_none());
        assert!(usage(&later, &report(30.2, 100.0, 0.5, [0.1; 4])).is_none());
        assert!(evidence(&[]).is_none());
    }
}
