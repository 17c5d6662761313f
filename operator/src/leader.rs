//! Leader election through a `coordination.k8s.io/v1` Lease, so that of several
//! operator replicas exactly one reconciles.
//!
//! A candidate takes the Lease when it is free or its holder stopped renewing
//! it for `leaseDurationSeconds`; writes are guarded by the Lease's
//! resourceVersion, so two candidates cannot both win. The holder renews every
//! `renew_every` and gives up leadership if it could not renew for
//! `renew_deadline` (shorter than the lease duration), which is before any
//! other candidate may take over. On a clean shutdown the holder releases the
//! Lease so a standby takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Error};
use tokio_util::sync::CancellationToken;

/// What a candidate may do with a Lease it has read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nobody holds it, or its holder let it expire.
    Take,
    /// This candidate holds it: renew.
    Renew,
    /// Someone else holds it.
    Held(String),
}

/// Judges a Lease as of `now`.
pub fn judge(spec: &LeaseSpec, me: &str, now: Timestamp) -> Verdict {
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return Verdict::Take;
    }
    if holder == me {
        return Verdict::Renew;
    }
    let duration = SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(0).into());
    match &spec.renew_time {
        Some(MicroTime(renewed)) if renewed.saturating_add(duration).is_ok_and(|end| end > now) => {
            Verdict::Held(holder.to_string())
        }
        _ => Verdict::Take,
    }
}

/// The Lease spec after this candidate takes or renews it.
pub fn claimed(
    previous: &LeaseSpec,
    verdict: &Verdict,
    me: &str,
    duration: Duration,
    now: Timestamp,
) -> LeaseSpec {
    let taken_over = *verdict == Verdict::Take
        && previous
            .holder_identity
            .as_deref()
            .is_some_and(|h| !h.is_empty() && h != me);
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)),
        acquire_time: match verdict {
            Verdict::Renew => previous.acquire_time.clone().or(Some(MicroTime(now))),
            _ => Some(MicroTime(now)),
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(previous.lease_transitions.unwrap_or(0) + i32::from(taken_over)),
        ..previous.clone()
    }
}

/// One candidate for one Lease.
#[derive(Debug, Clone)]
pub struct Elector {
    pub api: Api<Lease>,
    pub lease: String,
    pub identity: String,
    pub duration: Duration,
    pub renew_every: Duration,
}

/// How long a holder keeps acting without a successful renewal: two thirds of
/// the lease duration, so it stops before a standby may take the Lease.
pub fn renew_deadline(duration: Duration) -> Duration {
    duration.mul_f64(2.0 / 3.0)
}

/// How one attempt on the Lease ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// This candidate holds the Lease.
    Holding,
    /// Another does: its identity, when known (a lost write race does not say).
    Standby(Option<String>),
}

impl Elector {
    /// One attempt to take or renew the Lease.
    pub async fn try_hold(&self) -> Result<Attempt, Error> {
        let now = Timestamp::now();
        let Some(lease) = self.api.get_opt(&self.lease).await? else {
            let fresh = Lease {
                metadata: ObjectMeta {
                    name: Some(self.lease.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(claimed(
                    &LeaseSpec::default(),
                    &Verdict::Take,
                    &self.identity,
                    self.duration,
                    now,
                )),
            };
            return attempt(self.api.create(&PostParams::default(), &fresh).await);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let verdict = judge(&spec, &self.identity, now);
        if let Verdict::Held(holder) = verdict {
            return Ok(Attempt::Standby(Some(holder)));
        }
        let updated = Lease {
            spec: Some(claimed(&spec, &verdict, &self.identity, self.duration, now)),
            ..lease
        };
        // The resourceVersion read above makes this a compare-and-swap.
        attempt(
            self.api
                .replace(&self.lease, &PostParams::default(), &updated)
                .await,
        )
    }

    /// Waits until this candidate holds the Lease; false if `stop` came first.
    pub async fn acquire(&self, stop: &CancellationToken) -> bool {
        let mut last_holder = None;
        loop {
            match self.try_hold().await {
                Ok(Attempt::Holding) => {
                    tracing::info!(lease = %self.lease, identity = %self.identity, "acquired the leader Lease");
                    return true;
                }
                Ok(Attempt::Standby(holder)) => {
                    if holder.is_some() && holder != last_holder {
                        tracing::info!(lease = %self.lease, holder = ?holder, "standing by: another replica leads");
                        last_holder = holder;
                    }
                }
                Err(e) => {
                    tracing::warn!(lease = %self.lease, error = %e, "cannot read the leader Lease")
                }
            }
            tokio::select! {
                () = stop.cancelled() => return false,
                () = tokio::time::sleep(self.renew_every) => {}
            }
        }
    }

    /// Renews until `stop` (returns true) or until leadership is lost (false).
    pub async fn hold(&self, stop: &CancellationToken) -> bool {
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => return true,
                () = tokio::time::sleep(self.renew_every) => {}
            }
            match self.try_hold().await {
                Ok(Attempt::Holding) => renewed = tokio::time::Instant::now(),
                Ok(Attempt::Standby(_)) => {
                    tracing::error!(lease = %self.lease, "another replica took the leader Lease");
                    return false;
                }
                Err(e) => {
                    tracing::warn!(lease = %self.lease, error = %e, "cannot renew the leader Lease");
                    if renewed.elapsed() >= renew_deadline(self.duration) {
                        tracing::error!(lease = %self.lease, "could not renew the leader Lease in time");
                        return false;
                    }
                }
            }
        }
    }

    /// Gives the Lease up, if still held, so a standby need not wait it out.
    pub async fn release(&self) {
        let Ok(Some(lease)) = self.api.get_opt(&self.lease).await else {
            return;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        let released = Lease {
            spec: Some(LeaseSpec {
                holder_identity: None,
                lease_duration_seconds: Some(1),
                renew_time: Some(MicroTime(Timestamp::now())),
                ..spec
            }),
            ..lease
        };
        match self
            .api
            .replace(&self.lease, &PostParams::default(), &released)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.lease, "released the leader Lease"),
            Err(e) => {
                tracing::warn!(lease = %self.lease, error = %e, "could not release the leader Lease")
            }
        }
    }
}

/// A written Lease is held; a 409 means another candidate wrote it first.
fn attempt<T>(result: Result<T, Error>) -> Result<Attempt, Error> {
    match result {
        Ok(_) => Ok(Attempt::Holding),
        Err(Error::Api(s)) if s.code == 409 => Ok(Attempt::Standby(None)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("valid time")
    }

    fn lease(holder: Option<&str>, renewed: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: Some(duration),
            renew_time: Some(MicroTime(at(renewed))),
            acquire_time: Some(MicroTime(at(renewed - 100))),
            lease_transitions: Some(4),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_free_lease_is_taken() {
        assert_eq!(judge(&LeaseSpec::default(), "a", at(0)), Verdict::Take);
        assert_eq!(
            judge(&lease(Some(""), 100, 15), "a", at(101)),
            Verdict::Take
        );
    }

    #[test]
    fn a_live_lease_of_another_is_respected_until_it_expires() {
        let l = lease(Some("b"), 100, 15);
        assert_eq!(judge(&l, "a", at(114)), Verdict::Held("b".into()));
        assert_eq!(judge(&l, "a", at(116)), Verdict::Take);
    }

    #[test]
    fn the_holder_renews_its_own_lease() {
        let l = lease(Some("a"), 100, 15);
        assert_eq!(judge(&l, "a", at(500)), Verdict::Renew);
        let renewed = claimed(&l, &Verdict::Renew, "a", Duration::from_secs(15), at(500));
        assert_eq!(renewed.acquire_time, l.acquire_time, "still the same term");
        assert_eq!(renewed.renew_time, Some(MicroTime(at(500))));
        assert_eq!(renewed.lease_transitions, Some(4));
    }

    #[test]
    fn taking_over_counts_a_transition() {
        let l = lease(Some("b"), 100, 15);
        let taken = claimed(&l, &Verdict::Take, "a", Duration::from_secs(15), at(200));
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(200))));
        assert_eq!(taken.lease_transitions, Some(5));
        let fresh = claimed(
            &LeaseSpec::default(),
            &Verdict::Take,
            "a",
            Duration::from_secs(15),
            at(200),
        );
        assert_eq!(fresh.lease_transitions, Some(0));
        assert_eq!(fresh.lease_duration_seconds, Some(15));
    }

    #[test]
    fn the_holder_gives_up_before_anyone_may_take_over() {
        for d in [3, 15, 60] {
            assert!(renew_deadline(Duration::from_secs(d)) < Duration::from_secs(d));
        }
    }
}
