//! Traffic profiles: arrival rates per second of simulated time, built in or
//! read from a CSV with the header `seconds,events_per_second`.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
