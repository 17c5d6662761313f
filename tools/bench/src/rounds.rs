//! Designs measured in rounds: every round runs each design once, so whatever
//! drifts over a benchmark (the broker's log cleaner, page cache, a
//! neighbour's load) hits every design alike. Each round starts one design
//! later (ABC BCA CAB ...), so no design always runs first, just after the
//! input was loaded, or always right after the same neighbour; and runs of
//! the first design before the rounds, not counted, take the broker's first
//! reads of a freshly loaded input and, when the broker is a process here,
//! its first minutes of load, until its CPU per event holds still. Each
//! ratio is taken within a round, against that round's baseline, and
//! reported as its median with the spread.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::suite::{Input, Measurement, Plan, Pools, Run, Variant, measure, median, medians};

/// A ratio over the rounds: median, lowest and highest.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Self {
        Self {
            median: median(values.to_vec()),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

impl fmt::Display for Spread {
    /// `0.93x (0.90-0.97)`; a single round has no spread to show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}x", self.median)?;
        if self.max > self.min {
            write!(f, " ({:.2}-{:.2})", self.min, self.max)?;
        }
        Ok(())
    }
}

/// One design over all rounds.
#[derive(Debug, Clone)]
pub struct Design {
    pub variant: Variant,
    /// The median of each measure over the rounds.
    pub median: Measurement,
    /// Events per second over the baseline's, per round.
    pub throughput: Spread,
    /// CPU per event over the baseline's, per round.
    pub cpu: Spread,
    /// Stage times of the last round.
    pub stages: HashMap<String, f64>,
}

/// Measures `variants` in `plan.runs` rounds; the first is the baseline the
/// ratios are taken against.
pub(crate) async fn interleaved(
    plan: &Plan,
    input: &Input,
    variants: &[Variant],
) -> anyhow::Result<Vec<Design>> {
    let mut runs: Vec<Vec<Run>> = variants.iter().map(|_| Vec::new()).collect();
    if let Some(&first) = variants.first() {
        warm_up(plan, input, first).await?;
    }
    for round in 1..=plan.runs {
        for i in order(round, variants.len()) {
            let v = variants[i];
            let run = measure(plan, input, v).await?;
            let m = &run.m;
            eprintln!(
                "  {:<32} round {round}: {:>8.0} events/s, {:>6.2} us/event, p99 {:>5.2} s, {:>6.1} MiB, broker {:>5.2} us/event",
                v.label(),
                m.events_per_second,
                m.cpu_us_per_event,
                m.p99_age,
                m.peak_rss_mib,
                m.broker_cpu_us_per_event
            );
            runs[i].push(run);
        }
    }
    let baseline: Vec<Measurement> = runs[0].iter().map(|r| r.m).collect();
    Ok(variants
        .iter()
        .zip(runs)
        .map(|(&variant, runs)| design(variant, runs, &baseline))
        .collect())
}

/// The least warm-up: a fresh broker's CPU per event falls from about 10 us
/// to about 3.5 over its first three to four minutes of load, more than any
/// design differs from another, and four million-event runs (under a
/// minute) left it at 5-6 (docs/benchmarks.md).
const WARM_UP_LEAST: Duration = Duration::from_secs(180);

/// The most: a broker that never holds still does not hold the verdict
/// back longer than this.
const WARM_UP_MOST: Duration = Duration::from_secs(360);

/// The broker's CPU per event holds still once it moves less than this share
/// from one warm-up run to the next.
const STILL: f64 = 0.1;

/// Whether this process has warmed the broker: it then stays warm for the
/// benchmark's later rounds, which the pools' probes and the other sections
/// keep under load in between.
static BROKER_WARM: AtomicBool = AtomicBool::new(false);

/// Runs `first` before the rounds, not counted: for at least
/// [`WARM_UP_LEAST`] and then until the broker's CPU per event holds still,
/// for at most [`WARM_UP_MOST`]. Once when the broker is not measured (it
/// runs elsewhere), is already warm, or in smoke mode.
async fn warm_up(plan: &Plan, input: &Input, first: Variant) -> anyhow::Result<()> {
    let once = plan.smoke || BROKER_WARM.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut before: Option<f64> = None;
    loop {
        let m = measure(plan, input, first).await?.m;
        let broker = m.broker_cpu_us_per_event;
        let elapsed = started.elapsed();
        eprintln!(
            "  {:<32} warm-up:  {:>8.0} events/s, broker {broker:>5.2} us/event at {:>3} s (not counted)",
            first.label(),
            m.events_per_second,
            elapsed.as_secs(),
        );
        if once || broker <= 0.0 {
            return Ok(());
        }
        if warm(elapsed, before, broker) {
            BROKER_WARM.store(true, Ordering::Relaxed);
            return Ok(());
        }
        before = Some(broker);
    }
}

/// Whether a broker `elapsed` into its warm-up, whose CPU per event read
/// `before` in the previous run and `now` in this one, is warm.
fn warm(elapsed: Duration, before: Option<f64>, now: f64) -> bool {
    elapsed >= WARM_UP_MOST
        || (elapsed >= WARM_UP_LEAST && before.is_some_and(|b| holds_still(b, now)))
}

/// Whether a broker's CPU per event moved less than [`STILL`] of it.
fn holds_still(before: f64, now: f64) -> bool {
    (before - now).abs() <= STILL * before
}

/// The designs' indices in the order round `round` (from 1) runs them: the
/// first round in the given order, each next one starting one design later.
fn order(round: usize, designs: usize) -> impl Iterator<Item = usize> {
    let start = round.saturating_sub(1) % designs.max(1);
    (0..designs).map(move |i| (start + i) % designs)
}

fn design(variant: Variant, runs: Vec<Run>, baseline: &[Measurement]) -> Design {
    let ratio = |f: fn(&Measurement) -> f64| {
        let per_round: Vec<f64> = runs
            .iter()
            .zip(baseline)
            .map(|(r, b)| f(&r.m) / f(b).max(1e-9))
            .collect();
        Spread::of(&per_round)
    };
    let ms: Vec<Measurement> = runs.iter().map(|r| r.m).collect();
    Design {
        variant,
        median: medians(&ms),
        throughput: ratio(|m| m.events_per_second),
        cpu: ratio(|m| m.cpu_us_per_event),
        stages: runs.last().map(|r| r.stages.clone()).unwrap_or_default(),
    }
}

/// The lines a script reads from the end of the benchmark's output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// The pools the autoscaler picked from the worker's evidence.
    pub pools: Pools,
    /// Pixelpipe's events per second over the ceiling's (median of rounds).
    pub throughput_ratio: f64,
    pub pixelpipe_cpu_us: f64,
    pub ceiling_cpu_us: f64,
    /// Pixelpipe's events per second over the forward's, which sends the
    /// input's own bytes (medians over the rounds).
    pub forward_throughput_ratio: f64,
    pub forward_cpu_us: f64,
}

impl fmt::Display for Verdict {
    /// Two lines against the forward, then the three issue 16 asked for,
    /// last, against the ceiling.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ratio throughput_vs_forward {:.3}",
            self.forward_throughput_ratio
        )?;
        writeln!(f, "cpu_us_per_event forward {:.2}", self.forward_cpu_us)?;
        writeln!(f, "ratio throughput {:.3}", self.throughput_ratio)?;
        writeln!(
            f,
            "cpu_us_per_event pixelpipe {:.2} ceiling {:.2}",
            self.pixelpipe_cpu_us, self.ceiling_cpu_us
        )?;
        write!(
            f,
            "events_per_core_second pixelpipe {:.0}",
            1e6 / self.pixelpipe_cpu_us.max(1e-9)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(events_per_second: f64, cpu_us_per_event: f64) -> Run {
        Run {
            m: Measurement {
                events_per_second,
                cpu_us_per_event,
                ..Measurement::default()
            },
            ..Run::default()
        }
    }

    #[test]
    fn the_broker_holds_still_within_a_tenth() {
        assert!(!holds_still(10.0, 6.0), "a fresh broker warming");
        assert!(holds_still(3.6, 3.4));
        assert!(holds_still(3.4, 3.7));
        assert!(!holds_still(3.4, 3.8));
    }

    #[test]
    fn the_broker_is_warm_after_minutes_of_load_once_it_holds_still() {
        let s = Duration::from_secs;
        assert!(!warm(s(60), Some(3.5), 3.5), "too early, however still");
        assert!(!warm(s(200), None, 3.5), "nothing to compare with yet");
        assert!(!warm(s(200), Some(5.0), 3.5), "still falling");
        assert!(warm(s(200), Some(3.6), 3.5));
        assert!(warm(s(360), Some(9.0), 3.5), "bounded");
    }

    #[test]
    fn each_round_starts_one_design_later() {
        let rounds: Vec<Vec<usize>> = (1..=4).map(|r| order(r, 3).collect()).collect();
        assert_eq!(rounds, [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]);
        assert_eq!(order(1, 0).count(), 0);
    }

    #[test]
    fn ratios_are_taken_within_each_round() {
        // The machine slows by half in round 2: a design that keeps pace with
        // the baseline in both rounds is at 1.0x, whatever the drift.
        let baseline = [run(100.0, 5.0).m, run(50.0, 10.0).m];
        let d = design(
            Variant::Unbounded,
            vec![run(90.0, 6.0), run(45.0, 12.0)],
            &baseline,
        );
        assert_eq!(d.throughput.median, 0.9);
        assert_eq!((d.throughput.min, d.throughput.max), (0.9, 0.9));
        assert!((d.cpu.median - 1.2).abs() < 1e-12);
        assert_eq!(d.median.events_per_second, 67.5);
    }

    #[test]
    fn a_spread_shows_its_range() {
        let s = Spread::of(&[0.97, 0.9, 0.93]);
        assert_eq!(s.to_string(), "0.93x (0.90-0.97)");
        assert_eq!(Spread::of(&[1.5]).to_string(), "1.50x");
    }

    #[test]
    fn the_verdict_is_lines_a_script_can_split() {
        let v = Verdict {
            pools: Pools::splat(1),
            throughput_ratio: 0.9512,
            pixelpipe_cpu_us: 8.0,
            ceiling_cpu_us: 6.5,
            forward_throughput_ratio: 0.9,
            forward_cpu_us: 5.75,
        };
        assert_eq!(
            v.to_string(),
            "ratio throughput_vs_forward 0.900\ncpu_us_per_event forward 5.75\n\
             ratio throughput 0.951\ncpu_us_per_event pixelpipe 8.00 ceiling 6.50\n\
             events_per_core_second pixelpipe 125000"
        );
    }
}
