//! The arrivals each pipeline saw: one row per minute (the mean of that
//! minute's observations), the last 24 hours, served by the operator's admin
//! endpoint at `/pipelines/<namespace>/<name>/arrivals.csv` in the CSV form
//! `pixelpipe-sim --profile` reads, so users replay their own traffic against
//! the policy. In memory only: it starts empty when the operator restarts.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::MAX_PIPELINES;

/// Minutes kept per pipeline.
pub const MINUTES: usize = 24 * 60;

type Key = (String, String);

#[derive(Debug, Default)]
struct Record {
    /// (minute since the epoch, sum of rates, observations)
    minutes: VecDeque<(i64, f64, u32)>,
    updated_ms: i64,
}

/// Every pipeline's record.
#[derive(Debug, Default)]
pub struct ArrivalBook {
    records: Mutex<HashMap<Key, Record>>,
}

impl ArrivalBook {
    /// Adds one observation of `rate` events/s at `at_ms`.
    pub fn record(&self, key: &Key, at_ms: i64, rate: f64) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.len() >= MAX_PIPELINES && !records.contains_key(key) {
            let stalest = records
                .iter()
                .min_by_key(|(_, r)| r.updated_ms)
                .map(|(k, _)| k.clone());
            if let Some(k) = stalest {
                records.remove(&k);
            }
        }
        let r = records.entry(key.clone()).or_default();
        r.updated_ms = at_ms;
        let minute = at_ms.div_euclid(60_000);
        match r.minutes.back_mut() {
            // A clock stepped back adds to the last minute.
            Some((m, sum, n)) if *m >= minute => {
                *sum += rate;
                *n += 1;
            }
            _ => r.minutes.push_back((minute, rate, 1)),
        }
        while r.minutes.len() > MINUTES {
            r.minutes.pop_front();
        }
    }

    pub fn forget(&self, key: &Key) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        records.remove(key);
    }

    /// The record as `seconds,events_per_second`, seconds from its first
    /// minute; `None` for a pipeline never observed.
    pub fn csv(&self, key: &Key) -> Option<String> {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let r = records.get(key)?;
        let first = r.minutes.front()?.0;
        let mut out = format!(
            "# arrivals of {}/{}: the mean per minute, from minute {first} since the epoch\nseconds,events_per_second\n",
            key.0, key.1
        );
        for &(minute, sum, n) in &r.minutes {
            let _ = writeln!(
                out,
                "{},{:.1}",
                (minute - first) * 60,
                sum / f64::from(n.max(1))
            );
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_average_their_observations_and_are_bounded() {
        let book = ArrivalBook::default();
        let key = ("shop".to_string(), "storefront".to_string());
        assert!(book.csv(&key).is_none());
        book.record(&key, 60_000, 100.0);
        book.record(&key, 90_000, 200.0);
        book.record(&key, 180_000, 50.0);
        let csv = book.csv(&key).expect("csv");
        let rows: Vec<&str> = csv.lines().skip(1).collect();
        assert_eq!(rows, ["seconds,events_per_second", "0,150.0", "120,50.0"]);
        for m in 4..(MINUTES as i64 + 14) {
            book.record(&key, m * 60_000, 1.0);
        }
        assert_eq!(book.csv(&key).expect("csv").lines().count(), MINUTES + 2);
        book.forget(&key);
        assert!(book.csv(&key).is_none());
    }
}
