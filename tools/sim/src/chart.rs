//! PNG charts: simulated runs (oldest-event age against the SLO, arrivals and
//! replicas over time, one line per policy) and live runs ([`draw_timeline`]).

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, anyhow};
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::simulate::Outcome;

/// Where Debian (fonts-dejavu-core) and other distributions keep a sans font.
const FONTS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

fn register_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes = FONTS
                .iter()
                .find_map(|p| std::fs::read(p).ok())
                .ok_or_else(|| {
                    format!(
                        "no TrueType font found (looked in {FONTS:?}); install fonts-dejavu-core"
                    )
                })?;
            // Registered once per process; plotters keeps a 'static reference.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| "the font file is not a valid TrueType font".to_string())
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(127, 127, 127),
];

/// Draws `runs` (label, outcome) into a PNG at `path`.
pub fn draw(path: &Path, title: &str, slo: f64, runs: &[(String, Outcome)]) -> anyhow::Result<()> {
    register_font()?;
    let end = runs
        .iter()
        .filter_map(|(_, o)| o.series.last().map(|s| s.t))
        .fold(1.0, f64::max)
        / 60.0;
    let max_age = runs
        .iter()
        .map(|(_, o)| o.max_age)
        .fold(slo * 1.1, f64::max);
    let max_rate = runs
        .first()
        .map(|(_, o)| o.series.iter().map(|s| s.arrivals).fold(1.0, f64::max))
        .unwrap_or(1.0);
    let max_replicas = runs
        .iter()
        .flat_map(|(_, o)| o.series.iter().map(|s| s.replicas))
        .max()
        .unwrap_or(1)
        .max(1);

    let root = BitMapBackend::new(path, (1200, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let root = root
        .titled(title, ("sans-serif", 26))
        .map_err(|e| anyhow!("{e}"))?;
    let panels = root.split_evenly((3, 1));

    let mut age = ChartBuilder::on(&panels[0])
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .caption("oldest unprocessed event (s)", ("sans-serif", 18))
        .build_cartesian_2d(0.0..end, 0.0..max_age)
        .map_err(|e| anyhow!("{e}"))?;
    age.configure_mesh()
        .x_desc("minutes")
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    age.draw_series(LineSeries::new(
        [(0.0, slo), (end, slo)],
        BLACK.stroke_width(2),
    ))
    .map_err(|e| anyhow!("{e}"))?
    .label(format!("SLO {slo:.0} s"))
    .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK));
    for (i, (label, o)) in runs.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        age.draw_series(LineSeries::new(
            o.series.iter().map(|s| (s.t / 60.0, s.age)),
            color.stroke_width(2),
        ))
        .map_err(|e| anyhow!("{e}"))?
        .label(label.clone())
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    age.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;

    let mut rate = ChartBuilder::on(&panels[1])
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .caption("arrivals (events/s)", ("sans-serif", 18))
        .build_cartesian_2d(0.0..end, 0.0..max_rate * 1.1)
        .map_err(|e| anyhow!("{e}"))?;
    rate.configure_mesh()
        .x_desc("minutes")
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    if let Some((_, o)) = runs.first() {
        rate.draw_series(LineSeries::new(
            o.series.iter().map(|s| (s.t / 60.0, s.arrivals)),
            PALETTE[5],
        ))
        .map_err(|e| anyhow!("{e}"))?;
    }

    let mut reps = ChartBuilder::on(&panels[2])
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .caption("replicas", ("sans-serif", 18))
        .build_cartesian_2d(0.0..end, 0.0..f64::from(max_replicas) * 1.15)
        .map_err(|e| anyhow!("{e}"))?;
    reps.configure_mesh()
        .x_desc("minutes")
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, (_, o)) in runs.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        reps.draw_series(LineSeries::new(
            o.series.iter().map(|s| (s.t / 60.0, f64::from(s.replicas))),
            color.stroke_width(2),
        ))
        .map_err(|e| anyhow!("{e}"))?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// One observation of a live pipeline, for [`draw_timeline`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Point {
    /// Seconds since the start of the run.
    pub t: f64,
    /// Oldest unprocessed event, seconds.
    pub age: f64,
    pub arrivals: f64,
    pub processed: f64,
    pub replicas: i32,
    /// Workers over all four stage pools of one replica.
    pub pool_workers: i32,
}

/// A labelled, coloured line of a [`draw_timeline`] panel.
type Line<'a> = (&'a str, RGBColor, &'a dyn Fn(&Point) -> f64);

/// A live run in four panels over seconds: oldest age against the SLO,
/// arrival and processing rates, pool workers, replicas.
pub fn draw_timeline(path: &Path, title: &str, slo: f64, points: &[Point]) -> anyhow::Result<()> {
    register_font()?;
    let end = points.last().map_or(1.0, |p| p.t.max(1.0));
    let root = BitMapBackend::new(path, (1200, 1200)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let root = root
        .titled(title, ("sans-serif", 26))
        .map_err(|e| anyhow!("{e}"))?;
    let panels = root.split_evenly((4, 1));
    let top = |f: &dyn Fn(&Point) -> f64| points.iter().map(f).fold(0.0, f64::max);
    let panel = |area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
                 caption: &str,
                 y_max: f64,
                 lines: &[Line<'_>],
                 slo_line: Option<f64>|
     -> anyhow::Result<()> {
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .caption(caption, ("sans-serif", 18))
            .build_cartesian_2d(0.0..end, 0.0..(y_max * 1.15).max(1.0))
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        if let Some(slo) = slo_line {
            chart
                .draw_series(LineSeries::new(
                    [(0.0, slo), (end, slo)],
                    BLACK.stroke_width(2),
                ))
                .map_err(|e| anyhow!("{e}"))?
                .label(format!("SLO {slo:.0} s"))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK));
        }
        for &(label, color, f) in lines {
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|p| (p.t, f(p))),
                    color.stroke_width(2),
                ))
                .map_err(|e| anyhow!("{e}"))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        Ok(())
    };
    panel(
        &panels[0],
        "oldest unprocessed event (s)",
        top(&|p| p.age).max(slo),
        &[("oldest event age", PALETTE[1], &|p| p.age)],
        Some(slo),
    )?;
    panel(
        &panels[1],
        "events/s",
        top(&|p| p.arrivals.max(p.processed)),
        &[
            ("arriving", PALETTE[5], &|p| p.arrivals),
            ("processed", PALETTE[0], &|p| p.processed),
        ],
        None,
    )?;
    panel(
        &panels[2],
        "pool workers per replica (4 stages)",
        top(&|p| f64::from(p.pool_workers)),
        &[("pool workers", PALETTE[2], &|p| f64::from(p.pool_workers))],
        None,
    )?;
    panel(
        &panels[3],
        "replicas",
        top(&|p| f64::from(p.replicas)),
        &[("replicas", PALETTE[3], &|p| f64::from(p.replicas))],
        None,
    )?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;
    use crate::simulate::{Scaler, simulate};
    use crate::world::World;
    use pixelpipe_policy::Tuning;

    #[test]
    fn a_chart_is_a_png() {
        let p = Profile::builtin("flash-sale").expect("profile");
        let w = World {
            replica_capacity: 5_000.0,
            partitions: 24,
            max_replicas: 24,
            pod_start: 60.0,
            rebalance: 15.0,
            slo: 300.0,
            commit_delay: 0.0,
            pathology: None,
        };
        let runs = vec![
            (
                "pixelpipe".to_string(),
                simulate(&p, &w, Scaler::Pixelpipe(Tuning::default())),
            ),
            (
                "static 12".to_string(),
                simulate(&p, &w, Scaler::Static(12)),
            ),
        ];
        let path = std::env::temp_dir().join(format!("pixelpipe-chart-{}.png", std::process::id()));
        draw(&path, "flash-sale", 300.0, &runs).expect("drawn");
        let bytes = std::fs::read(&path).expect("written");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(bytes.len() > 10_000, "{} bytes", bytes.len());
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_timeline_is_a_png() {
        let points: Vec<Point> = (0..100)
            .map(|i| Point {
                t: f64::from(i) * 2.0,
                age: f64::from(i % 30),
                arrivals: if (30..60).contains(&i) {
                    2_400.0
                } else {
                    800.0
                },
                processed: 800.0,
                replicas: 1 + i32::from((35..70).contains(&i)),
                pool_workers: 8,
            })
            .collect();
        let path =
            std::env::temp_dir().join(format!("pixelpipe-timeline-{}.png", std::process::id()));
        draw_timeline(&path, "live", 60.0, &points).expect("drawn");
        let bytes = std::fs::read(&path).expect("written");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let _ = std::fs::remove_file(path);
    }
}
