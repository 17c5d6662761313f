//! How many worker pods, and how many workers per stage, a pipeline runs now.
//!
//! With autoscaling `Enabled`, the sizes in the status are the current ones
//! (the autoscaler writes them there, and the workers follow them); the spec's
//! `workers` and `replicas.initial` are where they start. With `DryRun` or
//! `Disabled`, the spec's sizes are the sizes. Either way they are kept within
//! the spec's bounds, which may have changed since the status was written.

use std::fmt;

use pixelpipe_crds::{PerStage, PixelPipeline, StagePool};

/// Workers per stage.
pub type Pools = PerStage<i32>;

/// Replicas and pool sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub replicas: i32,
    pub pools: Pools,
}

/// The sizes the spec declares.
pub fn declared(pp: &PixelPipeline) -> Sizes {
    let r = &pp.spec.replicas;
    Sizes {
        replicas: r.initial.unwrap_or(r.min).clamp(r.min, r.max.max(r.min)),
        pools: pp.spec.stages.as_ref().map(|_, b| within(b, b.workers)),
    }
}

/// The sizes to run now.
pub fn current(pp: &PixelPipeline) -> Sizes {
    let declared = declared(pp);
    if !pp.spec.autoscaling.mode.applies() {
        return declared;
    }
    let Some(status) = pp.status.as_ref() else {
        return declared;
    };
    within_bounds(
        pp,
        Sizes {
            replicas: status.replicas.unwrap_or(declared.replicas),
            pools: status.pools.unwrap_or(declared.pools),
        },
    )
}

/// `sizes` within the spec's bounds, which may have changed since they were
/// decided.
pub fn within_bounds(pp: &PixelPipeline, sizes: Sizes) -> Sizes {
    let r = &pp.spec.replicas;
    let bounds = &pp.spec.stages;
    Sizes {
        replicas: sizes.replicas.clamp(r.min, r.max.max(r.min)),
        pools: sizes.pools.map(|stage, n| within(&bounds[stage], n)),
    }
}

fn within(bounds: &StagePool, n: i32) -> i32 {
    n.clamp(
        bounds.min_workers,
        bounds.max_workers.max(bounds.min_workers),
    )
}

/// What a decision changes, in words: "replicas 2 -> 4, pools 2/2/2/2 -> 2/2/2/8".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub from: Sizes,
    pub to: Sizes,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (from, to) = (&self.from, &self.to);
        let replicas = from.replicas != to.replicas;
        if replicas {
            write!(f, "replicas {} -> {}", from.replicas, to.replicas)?;
        }
        if from.pools != to.pools {
            let sep = if replicas { ", " } else { "" };
            write!(f, "{sep}pools {} -> {}", from.pools, to.pools)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pixelpipe_crds::AutoscalingMode;
    use pixelpipe_crds::PixelPipelineStatus;

    fn sample() -> PixelPipeline {
        pixelpipe_crds::yaml::from_str(include_str!("../../manifests/samples/storefront.yaml"))
            .expect("sample parses")
    }

    fn pools(parse: i32, validate: i32, augment: i32, produce: i32) -> Pools {
        PerStage {
            parse,
            validate,
            augment,
            produce,
        }
    }

    #[test]
    fn a_new_pipeline_starts_at_its_declared_sizes() {
        let pp = sample();
        let s = current(&pp);
        assert_eq!(s.replicas, 1, "replicas.min when initial is omitted");
        assert_eq!(s.pools, pools(2, 2, 2, 2));
        let mut with_initial = sample();
        with_initial.spec.replicas.initial = Some(4);
        assert_eq!(current(&with_initial).replicas, 4);
    }

    #[test]
    fn enabled_autoscaling_keeps_the_sizes_in_the_status_within_bounds() {
        let mut pp = sample();
        pp.status = Some(PixelPipelineStatus {
            replicas: Some(30),
            pools: Some(pools(5, 0, 16, 40)),
            ..PixelPipelineStatus::default()
        });
        let s = current(&pp);
        assert_eq!(s.replicas, 12, "replicas.max");
        assert_eq!(s.pools, pools(5, 1, 16, 32));
    }

    #[test]
    fn dry_run_and_disabled_run_the_declared_sizes() {
        for mode in [AutoscalingMode::DryRun, AutoscalingMode::Disabled] {
            let mut pp = sample();
            pp.spec.autoscaling.mode = mode;
            pp.status = Some(PixelPipelineStatus {
                replicas: Some(6),
                pools: Some(pools(9, 9, 9, 9)),
                ..PixelPipelineStatus::default()
            });
            assert_eq!(current(&pp), declared(&pp), "{mode:?}");
        }
    }

    #[test]
    fn changes_read_in_stage_order() {
        let a = Sizes {
            replicas: 2,
            pools: pools(2, 2, 2, 2),
        };
        let b = Sizes {
            replicas: 4,
            pools: pools(2, 2, 2, 8),
        };
        let change = |from, to| Change { from, to }.to_string();
        assert_eq!(change(a, b), "replicas 2 -> 4, pools 2/2/2/2 -> 2/2/2/8");
        assert_eq!(change(a, Sizes { replicas: 3, ..a }), "replicas 2 -> 3");
        assert_eq!(
            change(
                a,
                Sizes {
                    pools: b.pools,
                    ..a
                }
            ),
            "pools 2/2/2/2 -> 2/2/2/8"
        );
    }
}
