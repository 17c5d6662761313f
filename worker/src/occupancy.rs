//! How many things are in a state, integrated over time: worker-seconds a
//! pool spent on jobs, job-seconds jobs spent waiting for acknowledgements.
//! The integral runs continuously, so a job that has waited a minute already
//! counts a minute: a counter bumped when the job ends would tell the
//! autoscaler nothing until then, which under a slow broker is too late.

use std::sync::Mutex;
use std::time::Instant;

/// What jobs wait on outside the pools, for the autoscaler.
#[derive(Debug, Default)]
pub struct Waits {
    /// Jobs whose outputs are all sent, waiting for acknowledgements.
    pub acknowledgements: Occupancy,
    /// Produce workers waiting for room in the producer's queue, or for
    /// acknowledgements to free room for their outputs.
    pub queue: Occupancy,
}

#[derive(Debug, Default)]
pub struct Occupancy {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    count: u64,
    /// Count-seconds up to `since`.
    integral: f64,
    since: Option<Instant>,
}

impl Inner {
    fn advance(&mut self, now: Instant) {
        if let Some(since) = self.since {
            self.integral += self.count as f64 * now.duration_since(since).as_secs_f64();
        }
        self.since = Some(now);
    }
}

impl Occupancy {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more in the state.
    pub fn enter(&self) {
        let mut i = self.lock();
        i.advance(Instant::now());
        i.count += 1;
    }

    /// One fewer in the state.
    pub fn leave(&self) {
        let mut i = self.lock();
        i.advance(Instant::now());
        i.count = i.count.saturating_sub(1);
    }

    /// How many are in the state now.
    pub fn count(&self) -> u64 {
        self.lock().count
    }

    /// Count-seconds so far, up to now.
    pub fn seconds(&self) -> f64 {
        let mut i = self.lock();
        i.advance(Instant::now());
        i.integral
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_integral_grows_while_things_are_in_the_state() {
        let o = Occupancy::default();
        assert_eq!(o.seconds(), 0.0);
        o.enter();
        o.enter();
        std::thread::sleep(Duration::from_millis(50));
        let two = o.seconds();
        assert!((0.09..0.2).contains(&two), "{two}");
        o.leave();
        o.leave();
        o.leave();
        assert_eq!(o.count(), 0, "never below zero");
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            (o.seconds() - two).abs() < 0.01,
            "nothing in it, nothing added"
        );
    }
}
