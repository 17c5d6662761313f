//! The `Ready`, `Progressing` and `Degraded` conditions, computed from what one
//! reconcile saw. Pure: the caller supplies the previous conditions and the time.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use pixelpipe_crds::reasons::{ConditionType, condition_status, find_condition};

use crate::pods::Failure;
use crate::scalers::ForeignScaler as Foreign;
use ConditionType::{Degraded, ForeignScaler, Progressing, Ready};

/// Why a pipeline cannot be run as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The spec passed the schema but the operator cannot run it.
    InvalidSpec(String),
    /// A child could not be written.
    ApplyFailed(String),
}

/// The worker Deployment's progress, from its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rollout {
    pub desired: i32,
    pub updated: i32,
    pub available: i32,
    /// The Deployment controller has seen the latest template.
    pub observed: bool,
}

impl Rollout {
    pub fn of(d: &Deployment) -> Self {
        let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = d.status.clone().unwrap_or_default();
        Self {
            desired,
            updated: status.updated_replicas.unwrap_or(0),
            available: status.available_replicas.unwrap_or(0),
            observed: status.observed_generation.is_some()
                && status.observed_generation >= d.metadata.generation,
        }
    }

    fn complete(&self) -> bool {
        self.observed && self.updated >= self.desired && self.available >= self.desired
    }
}

/// What a reconcile saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub generation: Option<i64>,
    pub problem: Option<Problem>,
    pub rollout: Option<Rollout>,
    /// An HPA that scales the workers too (looked for only when there is no
    /// problem).
    pub foreign: Option<Foreign>,
    /// Worker pods whose container keeps stopping: (pod, why).
    pub failing: Vec<(String, Failure)>,
}

/// Most failing pods a condition's message names.
const NAMED_PODS: usize = 3;

/// `Degraded` for failing pods: the reason names the worst kind, the
/// message the first few pods.
fn failing_verdict(failing: &[(String, Failure)]) -> Verdict {
    let oom = failing
        .iter()
        .any(|(_, f)| matches!(f, Failure::OomKilled { .. }));
    let reason = if oom {
        "WorkerOOMKilled"
    } else {
        "WorkerCrashLooping"
    };
    let mut message = failing
        .iter()
        .take(NAMED_PODS)
        .map(|(pod, f)| format!("pod {pod}: {f}"))
        .collect::<Vec<_>>()
        .join("; ");
    if failing.len() > NAMED_PODS {
        message.push_str(&format!("; and {} more", failing.len() - NAMED_PODS));
    }
    (true, reason, message)
}

/// The three conditions, plus any other condition (the SLO's) carried over.
/// A condition keeps its `lastTransitionTime` while its status stays the same.
pub fn conditions(obs: &Observation, previous: &[Condition], now: &Time) -> Vec<Condition> {
    let (degraded, progressing, ready) = verdicts(obs);
    let mut out: Vec<Condition> = [
        (Ready, ready),
        (Progressing, progressing),
        (Degraded, degraded),
    ]
    .into_iter()
    .map(|(type_, (holds, reason, message))| {
        let status = condition_status(holds);
        let since = find_condition(previous, type_)
            .filter(|c| c.status == status)
            .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
        Condition {
            type_: type_.as_str().to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            observed_generation: obs.generation,
            last_transition_time: since,
        }
    })
    .collect();
    let foreign = foreign_condition(obs, previous, now);
    let own = [Ready, Progressing, Degraded].map(ConditionType::as_str);
    out.extend(
        previous
            .iter()
            .filter(|c| !own.contains(&c.type_.as_str()))
            .filter(|c| foreign.is_none() || c.type_ != ForeignScaler.as_str())
            .cloned(),
    );
    out.extend(foreign);
    out
}

/// `ForeignScaler`: True while an HPA scales the workers too; False once it
/// is gone; absent on a pipeline that never had one. Left as it was when the
/// reconcile stopped at a problem before looking.
fn foreign_condition(obs: &Observation, previous: &[Condition], now: &Time) -> Option<Condition> {
    let before = find_condition(previous, ForeignScaler);
    if obs.problem.is_some() || (obs.foreign.is_none() && before.is_none()) {
        return None;
    }
    let (holds, reason, message) = match &obs.foreign {
        Some(f) => (true, f.reason(), f.to_string()),
        None => (
            false,
            "None",
            "no HorizontalPodAutoscaler scales the workers or the pipeline".to_string(),
        ),
    };
    let status = condition_status(holds);
    let since = before
        .filter(|c| c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Some(Condition {
        type_: ForeignScaler.as_str().to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: obs.generation,
        last_transition_time: since,
    })
}

/// One condition's verdict: whether it holds, its reason, its message.
type Verdict = (bool, &'static str, String);

/// Degraded, Progressing and Ready, from what a reconcile saw.
fn verdicts(obs: &Observation) -> (Verdict, Verdict, Verdict) {
    match (&obs.problem, obs.rollout) {
        (Some(Problem::InvalidSpec(m)), _) => (
            (true, "InvalidSpec", m.clone()),
            (false, "InvalidSpec", "waiting for a valid spec".to_string()),
            (false, "InvalidSpec", "the spec cannot be run".to_string()),
        ),
        (Some(Problem::ApplyFailed(m)), _) => (
            (true, "ApplyFailed", m.clone()),
            (true, "Retrying", "retrying with backoff".to_string()),
            (
                false,
                "ApplyFailed",
                "the workers could not be updated".to_string(),
            ),
        ),
        (None, rollout) => {
            let r = rollout.unwrap_or_default();
            let pods = format!(
                "{} of {} worker pods updated, {} available",
                r.updated, r.desired, r.available
            );
            let progressing = if r.complete() {
                (false, "RolloutComplete", pods.clone())
            } else {
                (true, "RollingOut", pods.clone())
            };
            let ready = if r.available >= r.desired {
                (true, "WorkersAvailable", pods)
            } else {
                (false, "WorkersUnavailable", pods)
            };
            let degraded = if obs.failing.is_empty() {
                (false, "AsExpected", "children applied".to_string())
            } else {
                failing_verdict(&obs.failing)
            };
            (degraded, progressing, ready)
        }
    }
}

/// Sets one condition, keeping its `lastTransitionTime` if its status is unchanged.
pub fn set(conditions: &mut Vec<Condition>, mut c: Condition) {
    match conditions.iter_mut().find(|o| o.type_ == c.type_) {
        Some(old) => {
            if old.status == c.status {
                c.last_transition_time = old.last_transition_time.clone();
            }
            *old = c;
        }
        None => conditions.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("valid time"))
    }

    fn obs(problem: Option<Problem>, rollout: Option<Rollout>) -> Observation {
        Observation {
            failing: Vec::new(),
            generation: Some(3),
            problem,
            rollout,
            foreign: None,
        }
    }

    fn status_of(cs: &[Condition], t: ConditionType) -> (&str, &str) {
        let c = find_condition(cs, t).expect("present");
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn a_fresh_rollout_is_progressing_and_not_ready() {
        let r = Rollout {
            desired: 2,
            updated: 0,
            available: 0,
            observed: false,
        };
        let cs = conditions(&obs(None, Some(r)), &[], &at(10));
        assert_eq!(status_of(&cs, Ready), ("False", "WorkersUnavailable"));
        assert_eq!(status_of(&cs, Progressing), ("True", "RollingOut"));
        assert_eq!(status_of(&cs, Degraded), ("False", "AsExpected"));
        assert!(cs.iter().all(|c| c.observed_generation == Some(3)));
        assert_eq!(
            find_condition(&cs, Ready).expect("ready").message,
            "0 of 2 worker pods updated, 0 available"
        );
    }

    #[test]
    fn a_complete_rollout_is_ready() {
        let r = Rollout {
            desired: 2,
            updated: 2,
            available: 2,
            observed: true,
        };
        let cs = conditions(&obs(None, Some(r)), &[], &at(10));
        assert_eq!(status_of(&cs, Ready), ("True", "WorkersAvailable"));
        assert_eq!(status_of(&cs, Progressing), ("False", "RolloutComplete"));
    }

    #[test]
    fn failing_worker_pods_are_degraded_naming_them_and_the_worst_kind() {
        let looping = |n: usize| {
            (
                format!("w-{n}"),
                Failure::CrashLooping {
                    restarts: 2,
                    exit_code: Some(2),
                },
            )
        };
        let mut o = obs(None, Some(Rollout::default()));
        o.failing = vec![looping(1)];
        let cs = conditions(&o, &[], &at(10));
        let d = find_condition(&cs, Degraded).expect("degraded");
        assert_eq!(
            (d.status.as_str(), d.reason.as_str(), d.message.as_str()),
            (
                "True",
                "WorkerCrashLooping",
                "pod w-1: crash-looping: exits with code 2, 2 restarts"
            )
        );
        o.failing = (1..=4).map(looping).collect();
        o.failing[2].1 = Failure::OomKilled { restarts: 1 };
        let cs = conditions(&o, &[], &at(10));
        let d = find_condition(&cs, Degraded).expect("degraded");
        assert_eq!(d.reason, "WorkerOOMKilled");
        assert!(d.message.ends_with("; and 1 more"), "{}", d.message);
        assert!(
            d.message.contains("pod w-3: killed for memory"),
            "{}",
            d.message
        );
    }

    #[test]
    fn an_invalid_spec_is_degraded_with_its_message() {
        let cs = conditions(
            &obs(
                Some(Problem::InvalidSpec(
                    "partner \"ads\" is listed twice".into(),
                )),
                None,
            ),
            &[],
            &at(10),
        );
        let d = find_condition(&cs, Degraded).expect("degraded");
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "InvalidSpec")
        );
        assert_eq!(d.message, "partner \"ads\" is listed twice");
        assert_eq!(status_of(&cs, Ready), ("False", "InvalidSpec"));
    }

    #[test]
    fn transition_times_move_only_when_the_status_changes() {
        let r = Rollout {
            desired: 1,
            updated: 0,
            available: 0,
            observed: true,
        };
        let first = conditions(&obs(None, Some(r)), &[], &at(10));
        let same = conditions(&obs(None, Some(r)), &first, &at(20));
        assert_eq!(first, same, "nothing changed, nothing rewritten");
        let done = Rollout {
            updated: 1,
            available: 1,
            ..r
        };
        let later = conditions(&obs(None, Some(done)), &same, &at(30));
        assert_eq!(
            find_condition(&later, Ready)
                .expect("r")
                .last_transition_time,
            at(30)
        );
        assert_eq!(
            find_condition(&later, Degraded)
                .expect("d")
                .last_transition_time,
            at(10),
            "Degraded stayed False"
        );
    }

    #[test]
    fn set_replaces_one_condition_and_keeps_its_transition_time() {
        let slo = |status: &str, at_s: i64, msg: &str| Condition {
            type_: "SLO".into(),
            status: status.into(),
            reason: "Met".into(),
            message: msg.into(),
            observed_generation: Some(1),
            last_transition_time: at(at_s),
        };
        let mut cs = conditions(&obs(None, None), &[], &at(1));
        set(&mut cs, slo("True", 5, "a"));
        set(&mut cs, slo("True", 9, "b"));
        let c = find_condition(&cs, ConditionType::Slo).expect("slo");
        assert_eq!(
            (c.message.as_str(), c.last_transition_time.clone()),
            ("b", at(5))
        );
        set(&mut cs, slo("False", 12, "c"));
        assert_eq!(
            find_condition(&cs, ConditionType::Slo)
                .expect("slo")
                .last_transition_time,
            at(12)
        );
        assert_eq!(cs.len(), 4);
    }

    #[test]
    fn other_conditions_are_carried_over() {
        let slo = Condition {
            type_: "SLO".into(),
            status: "True".into(),
            reason: "Met".into(),
            message: String::new(),
            observed_generation: Some(2),
            last_transition_time: at(1),
        };
        let cs = conditions(&obs(None, None), std::slice::from_ref(&slo), &at(10));
        assert_eq!(find_condition(&cs, ConditionType::Slo), Some(&slo));
        assert_eq!(cs.len(), 4);
    }
}
