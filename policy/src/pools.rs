//! Pool sizes per stage, from each stage's own evidence. A stage's need at a
//! given load is its busy worker-seconds per second (Little's law: the jobs
//! in it at once are its throughput times the time each takes); scaled to the
//! load a replica carries at capacity and given room to breathe, that is the
//! pool. A CPU-bound stage never gets more workers than the cores the pod may
//! use: past that they only wait for each other.

use pixelpipe_crds::{PerStage, Stage};

use crate::observation::{Bottleneck, Evidence};

/// A pool's workers should be busy at most this much at capacity.
const TARGET_BUSY: f64 = 0.8;

/// Whether a stage's work is CPU (it cannot use more workers than cores) or
/// waiting (producing waits on the producer's queue and acknowledgements).
pub fn cpu_bound(stage: Stage) -> bool {
    !matches!(stage, Stage::Produce)
}

/// Pool sizes for a replica carrying `per_replica` events per second, from
/// evidence gathered at the current sizes; within `bounds` (min, max).
pub fn size_pools(
    evidence: &Evidence,
    per_replica: f64,
    current: PerStage<i32>,
    bounds: PerStage<(i32, i32)>,
) -> PerStage<i32> {
    if evidence.events_per_second <= 0.0 || evidence.true_rate().is_none() {
        return current;
    }
    let scale = per_replica / evidence.events_per_second;
    let cores = evidence.cores.max(1.0).ceil() as i32;
    current.zip(bounds).map(|stage, (now, (min, max))| {
        let load = evidence.stages[stage];
        let need = load.busy * scale / TARGET_BUSY;
        // Grown as soon as the need passes the pool, shrunk only with a
        // quarter to spare: measurement noise does not flap a pool.
        let mut want = if need > f64::from(now) {
            need.ceil() as i32
        } else {
            ((need / TARGET_BUSY).ceil() as i32).min(now)
        };
        // A saturated pool that limits the replica: its need shows only as
        // "all busy", so grow it and measure again.
        if evidence.bottleneck == Bottleneck::Pool(stage) {
            want = want.max(now * 2);
        }
        if cpu_bound(stage) {
            want = want.min(cores);
        }
        want.clamp(min.max(1), max.max(min.max(1)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::StageLoad;

    fn evidence(busy: [f64; 4], bottleneck: Bottleneck, rate: f64, util: f64) -> Evidence {
        Evidence {
            pods: 1,
            events_per_second: rate,
            utilization: util,
            bottleneck,
            stages: PerStage::from_fn(|s| StageLoad {
                busy: busy[s as usize],
                workers: 2.0,
            }),
            cores: 2.0,
        }
    }

    #[test]
    fn each_stage_gets_what_its_busy_time_says_cpu_stages_at_most_the_cores() {
        // Half busy at 10k/s: at 20k/s capacity parse needs 1.2 workers' time.
        let e = evidence([0.6, 0.2, 0.5, 3.0], Bottleneck::Cpu, 10_000.0, 0.5);
        let pools = size_pools(&e, 20_000.0, PerStage::splat(8), PerStage::splat((1, 32)));
        assert_eq!(pools.to_string(), "2/1/2/8");
        // Produce waits rather than computes: it may go past the cores.
        let e = evidence([0.6, 0.2, 0.5, 6.0], Bottleneck::Cpu, 10_000.0, 0.5);
        let pools = size_pools(&e, 20_000.0, PerStage::splat(8), PerStage::splat((1, 32)));
        assert_eq!(pools.produce, 15);
    }

    #[test]
    fn a_saturated_pool_that_limits_grows_and_bounds_hold() {
        let e = evidence(
            [0.2, 0.2, 0.2, 2.0],
            Bottleneck::Pool(Stage::Produce),
            5_000.0,
            1.0,
        );
        let pools = size_pools(&e, 5_000.0, PerStage::splat(2), PerStage::splat((1, 32)));
        assert_eq!(pools.produce, 4);
        let pools = size_pools(&e, 5_000.0, PerStage::splat(2), PerStage::splat((2, 3)));
        assert_eq!(pools.to_string(), "2/2/2/3");
    }

    #[test]
    fn a_pool_shrinks_only_with_room_to_spare() {
        // Parse needs 0.9 of a worker at capacity: 1 would do, barely; 2 stay.
        let e = evidence([0.36, 0.2, 0.2, 0.2], Bottleneck::Cpu, 10_000.0, 0.5);
        let pools = size_pools(&e, 20_000.0, PerStage::splat(2), PerStage::splat((1, 32)));
        assert_eq!(pools.parse, 2);
        // 0.5 of a worker: one is enough.
        let e = evidence([0.2, 0.2, 0.2, 0.2], Bottleneck::Cpu, 10_000.0, 0.5);
        let pools = size_pools(&e, 20_000.0, PerStage::splat(2), PerStage::splat((1, 32)));
        assert_eq!(pools.parse, 1);
    }

    #[test]
    fn no_evidence_of_load_keeps_the_pools() {
        let e = evidence([0.0; 4], Bottleneck::Cpu, 0.0, 0.0);
        let now = PerStage::splat(5);
        assert_eq!(size_pools(&e, 1_000.0, now, PerStage::splat((1, 32))), now);
    }
}
