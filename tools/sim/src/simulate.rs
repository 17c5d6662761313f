//! A one-second-step simulation of a consumer group under a traffic profile,
//! scaled by a static size, a KEDA-style rule, or Pixelpipe's [`policy`]
//! (the same code the operator runs).
//!
//! The model: events arrive at the profile's rate; each ready replica
//! processes up to its capacity (half of it with pools at their minimum, all of
//! it at their maximum), and the replica with the most partitions is the
//! bottleneck; a new replica is ready after the pod start delay; every change
//! of the group's members pauses all consumption for the rebalance pause;
//! offsets are committed every 2 s; the oldest event's age is exact (FIFO).
//!
//! [`policy`]: pixelpipe_policy

use std::collections::VecDeque;

use pixelpipe_policy::{
    self as policy, Current, Limits, Policy, Signals, Tuning, effective_replicas,
};

/// Arrival rate per second of simulated time.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub rates: Vec<f64>,
}

/// Base rate of the built-in profiles: about a billion events a day.
pub const BASE_RATE: f64 = 12_000.0;

impl Profile {
    /// `steady`, `diurnal` or `flash-sale`, with ±10 % deterministic noise.
    pub fn builtin(name: &str) -> Option<Self> {
        let points: Vec<(f64, f64)> = match name {
            "steady" => vec![(0.0, 1.0), (7_200.0, 1.0)],
            // A compressed day: night at 30 %, an evening peak at 140 %.
            "diurnal" => (0..=48)
                .map(|i| {
                    let t = f64::from(i) * 450.0;
                    let phase = (t / 21_600.0 - 0.25) * std::f64::consts::TAU;
                    (t, 0.85 - 0.55 * phase.cos())
                })
                .collect(),
            // Steady, a 3x surge ramping in over 5 minutes and held 30, back to steady.
            "flash-sale" => vec![
                (0.0, 1.0),
                (2_400.0, 1.0),
                (2_700.0, 3.0),
                (4_500.0, 3.0),
                (5_100.0, 1.0),
                (7_200.0, 1.0),
            ],
            _ => return None,
        };
        let points: Vec<(f64, f64)> = points
            .into_iter()
            .map(|(t, f)| (t, f * BASE_RATE))
            .collect();
        Some(Self::from_points(name, &points, true))
    }

    pub const BUILTIN: [&'static str; 3] = ["steady", "diurnal", "flash-sale"];

    /// A CSV with the header `seconds,events_per_second`, linear between rows.
    pub fn from_csv(name: &str, text: &str) -> Result<Self, String> {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        match lines.next() {
            Some("seconds,events_per_second") => {}
            other => {
                return Err(format!(
                    "expected the header `seconds,events_per_second`, got {other:?}"
                ));
            }
        }
        let mut points = Vec::new();
        for (i, line) in lines.enumerate() {
            let row = i + 2;
            let (t, r) = line
                .split_once(',')
                .ok_or(format!("row {row}: expected two columns"))?;
            let t: f64 = t
                .trim()
                .parse()
                .map_err(|_| format!("row {row}: seconds {t:?} is not a number"))?;
            let r: f64 = r
                .trim()
                .parse()
                .map_err(|_| format!("row {row}: rate {r:?} is not a number"))?;
            if !(t.is_finite() && r.is_finite() && r >= 0.0 && t >= 0.0) {
                return Err(format!(
                    "row {row}: seconds and rate must be finite and not negative"
                ));
            }
            if points.last().is_some_and(|&(prev, _)| t <= prev) {
                return Err(format!("row {row}: seconds must increase"));
            }
            points.push((t, r));
        }
        if points.len() < 2 {
            return Err("a profile needs at least two rows".into());
        }
        if points.last().is_some_and(|&(t, _)| t > 7.0 * 86_400.0) {
            return Err("profiles are limited to seven days".into());
        }
        Ok(Self::from_points(name, &points, false))
    }

    fn from_points(name: &str, points: &[(f64, f64)], noise: bool) -> Self {
        let end = points.last().map_or(0.0, |p| p.0) as usize;
        let mut rates = Vec::with_capacity(end);
        let mut seg = 0;
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        for t in 0..end {
            let x = t as f64;
            while seg + 2 < points.len() && points[seg + 1].0 <= x {
                seg += 1;
            }
            let (t0, r0) = points[seg];
            let (t1, r1) = points[seg + 1];
            let base = r0 + (r1 - r0) * ((x - t0) / (t1 - t0)).clamp(0.0, 1.0);
            let factor = if noise {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                0.9 + 0.2 * (rng >> 11) as f64 / (1u64 << 53) as f64
            } else {
                1.0
            };
            rates.push(base * factor);
        }
        Self {
            name: name.to_string(),
            rates,
        }
    }

    pub fn scaled(&self, factor: f64) -> Self {
        Self {
            name: self.name.clone(),
            rates: self.rates.iter().map(|r| r * factor).collect(),
        }
    }

    pub fn peak(&self) -> f64 {
        self.rates.iter().copied().fold(0.0, f64::max)
    }
}

/// The system being scaled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct World {
    /// Events/s one replica processes with its pools at their maximum.
    pub replica_capacity: f64,
    pub partitions: i32,
    pub max_replicas: i32,
    pub pod_start: f64,
    pub rebalance: f64,
    pub slo: f64,
}

impl World {
    /// Whether any policy could hold the SLO: the peak fits the partitions.
    pub fn can_serve(&self, profile: &Profile) -> bool {
        profile.peak() <= f64::from(self.partitions.min(self.max_replicas)) * self.replica_capacity
    }
}

/// Pool workers per stage at level 0 and 1, for worker-seconds.
const POOL_MIN: f64 = 1.0;
const POOL_MAX: f64 = 32.0;
const STAGES: f64 = 4.0;
const COMMIT_EVERY: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scaler {
    Static(i32),
    /// KEDA's Kafka scaler through the HPA, with this lag threshold (messages).
    Keda(f64),
    Pixelpipe(Tuning),
}

impl Scaler {
    pub fn label(&self) -> String {
        match self {
            Scaler::Static(n) => format!("static {n}"),
            Scaler::Keda(t) => format!("keda lag {}", policy::count(*t)),
            Scaler::Pixelpipe(_) => "pixelpipe".to_string(),
        }
    }
}

/// One point of the time series, every 10 s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: f64,
    pub age: f64,
    pub arrivals: f64,
    pub replicas: i32,
    pub pool_level: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub max_age: f64,
    pub seconds_over: u64,
    pub replica_seconds: f64,
    pub worker_seconds: f64,
    pub scale_actions: u32,
    pub series: Vec<Sample>,
    /// The last reasons Pixelpipe gave, for the report.
    pub reasons: Vec<String>,
}

/// KEDA's HPA: lag polled every 30 s, synced every 15 s, 10 % tolerance,
/// scale-down to the highest recommendation of the last 300 s, scale-up by at
/// most max(+100 %, +4 pods) per sync, between 1 and the partitions.
#[derive(Debug)]
struct Hpa {
    threshold: f64,
    metric: f64,
    recommendations: VecDeque<(usize, i32)>,
}

impl Hpa {
    fn sync(&mut self, t: usize, current: i32, ceiling: i32) -> i32 {
        let ratio = self.metric / (f64::from(current) * self.threshold);
        let raw = if (ratio - 1.0).abs() <= 0.1 {
            current
        } else {
            (self.metric / self.threshold).ceil() as i32
        }
        .clamp(1, ceiling);
        self.recommendations.push_back((t, raw));
        while self
            .recommendations
            .front()
            .is_some_and(|&(s, _)| t - s > 300)
        {
            self.recommendations.pop_front();
        }
        let stabilized = self
            .recommendations
            .iter()
            .map(|&(_, n)| n)
            .max()
            .unwrap_or(raw);
        if raw > current {
            raw.min((current * 2).max(current + 4)).min(ceiling)
        } else {
            stabilized.min(current)
        }
    }
}

/// Replicas that cover `rate` with 25 % headroom: where every policy starts,
/// and the static size for a profile's peak.
pub fn sized_for(rate: f64, world: &World) -> i32 {
    let ceiling = world.partitions.min(world.max_replicas).max(1);
    (1..=ceiling)
        .find(|&n| effective_replicas(n, world.partitions) * world.replica_capacity >= 1.25 * rate)
        .unwrap_or(ceiling)
}

pub fn simulate(profile: &Profile, world: &World, scaler: Scaler) -> Outcome {
    let ceiling = world.partitions.min(world.max_replicas).max(1);
    let first = profile.rates.first().copied().unwrap_or(0.0);
    let start = match scaler {
        Scaler::Static(n) => n.clamp(1, ceiling),
        _ => sized_for(first, world),
    };
    // Ready times of the pods that exist (ready or starting).
    let mut pods: Vec<f64> = vec![0.0; start as usize];
    let mut members = start;
    let mut pool_level = 1.0;
    let mut pause_until = 0.0;
    let mut policy = Policy::default();
    let limits = Limits {
        min_replicas: 1,
        max_replicas: world.max_replicas,
        partitions: world.partitions,
        slo_seconds: world.slo,
    };
    let mut hpa = Hpa {
        threshold: if let Scaler::Keda(t) = scaler { t } else { 1.0 },
        metric: 0.0,
        recommendations: VecDeque::new(),
    };

    let n = profile.rates.len();
    let mut cum = Vec::with_capacity(n);
    let (mut arrived, mut processed, mut committed) = (0.0f64, 0.0f64, 0.0f64);
    let mut oldest = 0usize;
    // (arrived, committed) over the last interval, for the observer's rates.
    let interval = match scaler {
        Scaler::Pixelpipe(tuning) => tuning.interval.max(1.0) as usize,
        _ => 1,
    };
    let mut history: VecDeque<(f64, f64)> = VecDeque::with_capacity(interval + 2);
    let mut out = Outcome {
        max_age: 0.0,
        seconds_over: 0,
        replica_seconds: 0.0,
        worker_seconds: 0.0,
        scale_actions: 0,
        series: Vec::with_capacity(n / 10 + 1),
        reasons: Vec::new(),
    };
    for (t, &rate) in profile.rates.iter().enumerate() {
        let now = t as f64;
        arrived += rate;
        cum.push(arrived);

        let ready = pods.iter().filter(|&&r| r <= now).count() as i32;
        if ready != members {
            members = ready;
            pause_until = now + world.rebalance;
        }
        if now >= pause_until && members > 0 {
            let per_pod = world.replica_capacity * (0.5 + 0.5 * pool_level);
            processed =
                (processed + per_pod * effective_replicas(members, world.partitions)).min(arrived);
        }
        if t % COMMIT_EVERY == 0 {
            committed = processed;
        }
        while oldest < t && cum[oldest] <= committed {
            oldest += 1;
        }
        let lag = arrived - committed;
        let age = if lag > 0.5 { now - oldest as f64 } else { 0.0 };
        out.max_age = out.max_age.max(age);
        if age > world.slo {
            out.seconds_over += 1;
        }
        out.replica_seconds += pods.len() as f64;
        out.worker_seconds +=
            pods.len() as f64 * STAGES * (POOL_MIN + pool_level * (POOL_MAX - POOL_MIN));

        history.push_back((arrived, committed));
        if history.len() > interval + 1 {
            history.pop_front();
        }
        let desired = match scaler {
            Scaler::Static(_) => None,
            Scaler::Keda(_) => {
                if t % 30 == 0 {
                    hpa.metric = lag;
                }
                (t % 15 == 0).then(|| hpa.sync(t, pods.len() as i32, ceiling))
            }
            Scaler::Pixelpipe(tuning) => {
                if t % interval == 0 && t > 0 {
                    let (a0, c0) = history.front().copied().unwrap_or((0.0, 0.0));
                    let span = (history.len() - 1).max(1) as f64;
                    let signals = Signals {
                        now,
                        lag,
                        oldest_age: age,
                        arrival_rate: (arrived - a0) / span,
                        processing_rate: (committed - c0) / span,
                    };
                    let current = Current {
                        replicas: pods.len() as i32,
                        pool_level,
                    };
                    let d = policy.decide(&signals, current, &limits, &tuning);
                    if d.changed {
                        if out.reasons.len() == 64 {
                            out.reasons.remove(0);
                        }
                        out.reasons.push(format!(
                            "t={t}s {} (replicas {} -> {}, pool level {:.2} -> {:.2})",
                            d.reason,
                            current.replicas,
                            d.replicas,
                            current.pool_level,
                            d.pool_level
                        ));
                    }
                    pool_level = d.pool_level;
                    Some(d.replicas)
                } else {
                    None
                }
            }
        };
        if let Some(want) = desired {
            let have = pods.len() as i32;
            if want > have {
                pods.extend(std::iter::repeat_n(
                    now + world.pod_start,
                    (want - have) as usize,
                ));
                out.scale_actions += 1;
            } else if want < have {
                // Starting pods go first: they cost no rebalance.
                pods.sort_by(|a, b| b.total_cmp(a));
                pods.drain(..(have - want) as usize);
                out.scale_actions += 1;
            }
        }
        if t % 10 == 0 {
            out.series.push(Sample {
                t: now,
                age,
                arrivals: rate,
                replicas: pods.len() as i32,
                pool_level,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(capacity: f64) -> World {
        World {
            replica_capacity: capacity,
            partitions: 24,
            max_replicas: 24,
            pod_start: 60.0,
            rebalance: 15.0,
            slo: 300.0,
        }
    }

    #[test]
    fn csv_profiles_interpolate_and_reject_mistakes() {
        let p =
            Profile::from_csv("x", "seconds,events_per_second\n0,100\n10,200\n").expect("valid");
        assert_eq!(p.rates.len(), 10);
        assert_eq!(p.rates[5], 150.0);
        for (bad, why) in [
            ("0,1\n1,2", "header"),
            ("seconds,events_per_second\n0,1", "two rows"),
            ("seconds,events_per_second\n0,1\n0,2", "increase"),
            ("seconds,events_per_second\n0,1\n5,-2", "negative"),
            ("seconds,events_per_second\n0,1\n5,x", "not a number"),
        ] {
            let err = Profile::from_csv("x", bad).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_builtin_flash_sale_triples_the_base_rate() {
        let p = Profile::builtin("flash-sale").expect("builtin");
        let steady: f64 = p.rates[..2_000].iter().sum::<f64>() / 2_000.0;
        let surge: f64 = p.rates[3_000..4_000].iter().sum::<f64>() / 1_000.0;
        assert!((steady / BASE_RATE - 1.0).abs() < 0.02, "{steady}");
        assert!((surge / steady - 3.0).abs() < 0.1, "{surge}");
        assert!(Profile::builtin("nope").is_none());
    }

    #[test]
    fn too_few_replicas_breach_and_enough_hold() {
        let p = Profile::builtin("steady").expect("steady");
        let w = world(5_000.0);
        let under = simulate(&p, &w, Scaler::Static(2));
        assert!(under.seconds_over > 0 && under.max_age > 300.0);
        let enough = simulate(&p, &w, Scaler::Static(4));
        assert_eq!(enough.seconds_over, 0);
        assert!(enough.max_age < 10.0, "{}", enough.max_age);
        assert_eq!(enough.replica_seconds, 4.0 * 7_200.0);
    }

    #[test]
    fn the_hpa_keeps_its_tolerance_window_and_step_limits() {
        let mut hpa = Hpa {
            threshold: 1_000.0,
            metric: 10_500.0,
            recommendations: VecDeque::new(),
        };
        assert_eq!(hpa.sync(0, 10, 96), 10, "within 10 %: no change");
        hpa.metric = 100_000.0;
        assert_eq!(hpa.sync(15, 10, 96), 20, "+100 % at most");
        assert_eq!(hpa.sync(30, 2, 96), 6, "or +4 pods");
        assert_eq!(hpa.sync(45, 20, 24), 24, "capped at the partitions");
        hpa.metric = 1_000.0;
        assert_eq!(
            hpa.sync(60, 24, 24),
            24,
            "a high recommendation 15 s ago holds"
        );
        for t in (75..=360).step_by(15) {
            hpa.sync(t, 24, 24);
        }
        assert_eq!(
            hpa.sync(375, 24, 24),
            1,
            "the window passed: down to the lag's count"
        );
        hpa.metric = 0.0;
        assert_eq!(hpa.sync(390, 1, 24), 1, "never below one");
    }

    #[test]
    fn keda_scales_with_lag_and_pixelpipe_holds_the_flash_sale() {
        let p = Profile::builtin("flash-sale").expect("flash");
        let w = world(5_000.0);
        let keda = simulate(&p, &w, Scaler::Keda(10_000.0));
        assert!(keda.scale_actions > 0);
        let pp = simulate(&p, &w, Scaler::Pixelpipe(Tuning::default()));
        assert_eq!(pp.seconds_over, 0, "{:?}", pp.reasons);
        let peak = pp.series.iter().map(|s| s.replicas).max().unwrap_or(0);
        assert!(
            peak >= 8,
            "36k/s at 5k/s per replica needs 8 or more, got {peak}"
        );
        let last = pp.series.last().map(|s| s.replicas).unwrap_or(0);
        assert!(last < peak, "scaled back down after the surge");
    }
}
