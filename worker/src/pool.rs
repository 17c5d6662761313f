//! One resizable pool of workers, reused by every stage.
//!
//! A pool owns N tasks that take jobs from one bounded channel, run the stage's
//! work function, and send the result into the next stage's bounded channel.
//! Resizing never loses or repeats a job: a retiring worker finishes the job it
//! holds, forwards it, and only then exits; a job still in the channel is taken by
//! whichever worker remains.

use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::occupancy::Occupancy;
use std::time::Instant;

use async_channel::{Receiver, Sender};
use pixelpipe_crds::Stage;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What a stage does to one job.
pub trait Work: Send + Sync + 'static {
    type In: Send + 'static;
    type Out: Send + 'static;
    fn run(&self, job: Self::In) -> impl Future<Output = Self::Out> + Send;
}

/// What a pool records about its work: each job's duration, and the
/// worker-seconds and jobs summed (the autoscaler's busy time).
#[derive(Debug, Clone)]
pub struct Meter {
    pub duration: Histogram,
    pub busy: crate::metrics::Seconds,
    pub jobs: Counter,
    /// A finished job is progress on pending work.
    pub progress: crate::liveness::Progress,
}

impl Meter {
    /// The meter of `stage`, registered in `metrics`.
    pub fn of(metrics: &crate::metrics::Metrics, stage: Stage) -> Self {
        let label = crate::metrics::StageLabel { stage };
        Self {
            duration: metrics.batch_duration.get_or_create(&label).clone(),
            busy: metrics.stage_busy.get_or_create(&label).clone(),
            jobs: metrics.stage_jobs.get_or_create(&label).clone(),
            progress: metrics.progress.clone(),
        }
    }

    fn record(&self, seconds: f64) {
        self.duration.observe(seconds);
        self.busy.inc_by(seconds);
        self.jobs.inc();
        self.progress.moved();
    }
}

type Spawner = Box<dyn Fn(CancellationToken) -> JoinHandle<()> + Send + Sync>;

struct Worker {
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

/// A running pool. Type-erased so the pipeline can hold every stage's pool in one
/// list and resize them by name.
pub struct Pool {
    stage: Stage,
    busy: Arc<Occupancy>,
    queued: Box<dyn Fn() -> usize + Send + Sync>,
    capacity: usize,
    /// `None` once the pool is closing: no new workers can start.
    spawn: Mutex<Option<Spawner>>,
    workers: Mutex<Vec<Worker>>,
    /// Workers told to stop that may still be finishing a job.
    retiring: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("stage", &self.stage)
            .field("size", &self.size())
            .field("busy", &self.busy())
            .finish()
    }
}

/// Where a pool's results go.
#[derive(Debug)]
pub enum Next<T> {
    /// Into the next stage's channel; the send waits while it is full.
    Stage(Sender<T>),
    /// Nowhere: the last stage.
    End,
}

impl Pool {
    /// Starts `size` workers running `work` on jobs from `input`. Must be called
    /// within a Tokio runtime; the workers, including later ones, run there.
    pub fn start<W: Work>(
        stage: Stage,
        work: Arc<W>,
        input: Receiver<W::In>,
        next: Next<W::Out>,
        size: usize,
        meter: Meter,
    ) -> Self {
        let busy = Arc::new(Occupancy::default());
        let queued = {
            let input = input.clone();
            Box::new(move || input.len()) as Box<dyn Fn() -> usize + Send + Sync>
        };
        let capacity = input.capacity().unwrap_or(usize::MAX);
        // Resizes arrive from other threads (the admin endpoint has its own
        // runtime); workers must always run on the runtime that started the pool.
        let runtime = tokio::runtime::Handle::current();
        let spawner: Spawner = {
            let busy = busy.clone();
            Box::new(move |stop: CancellationToken| {
                let input = input.clone();
                let next = match &next {
                    Next::Stage(tx) => Next::Stage(tx.clone()),
                    Next::End => Next::End,
                };
                runtime.spawn(worker_loop(
                    stage,
                    work.clone(),
                    input,
                    next,
                    stop,
                    busy.clone(),
                    meter.clone(),
                ))
            })
        };
        let pool = Self {
            stage,
            busy,
            queued,
            capacity,
            spawn: Mutex::new(Some(spawner)),
            workers: Mutex::new(Vec::new()),
            retiring: Mutex::new(Vec::new()),
        };
        pool.resize(size);
        pool
    }

    /// The stage this pool runs.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Workers running now (retiring ones excluded).
    pub fn size(&self) -> usize {
        lock(&self.workers).len()
    }

    /// Workers in the middle of a job.
    pub fn busy(&self) -> usize {
        usize::try_from(self.busy.count()).unwrap_or(usize::MAX)
    }

    /// Worker-seconds spent on jobs since the pool started, up to now.
    pub fn busy_seconds(&self) -> f64 {
        self.busy.seconds()
    }

    /// Jobs waiting in this pool's input channel.
    pub fn queued(&self) -> usize {
        (self.queued)()
    }

    /// The input channel's bound.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Grows or shrinks the pool to `target` workers. A no-op once closing.
    pub fn resize(&self, target: usize) {
        let spawn = lock(&self.spawn);
        let Some(spawn) = spawn.as_ref() else { return };
        let mut workers = lock(&self.workers);
        while workers.len() < target {
            let stop = CancellationToken::new();
            let handle = spawn(stop.clone());
            workers.push(Worker { stop, handle });
        }
        if workers.len() > target {
            let mut retiring = lock(&self.retiring);
            retiring.retain(|h| !h.is_finished());
            for w in workers.drain(target..) {
                w.stop.cancel();
                retiring.push(w.handle);
            }
        }
    }

    /// Stops accepting resizes and waits until every worker has exited, which
    /// happens once the input channel is closed and drained. Dropping the spawner
    /// drops the pool's own handle on the next channel, so that channel closes
    /// when the last worker exits.
    pub async fn join(&self) {
        drop(lock(&self.spawn).take());
        let handles: Vec<JoinHandle<()>> = lock(&self.workers)
            .drain(..)
            .map(|w| w.handle)
            .chain(lock(&self.retiring).drain(..))
            .collect();
        for h in handles {
            if let Err(e) = h.await {
                tracing::error!(stage = %self.stage, error = %e, "pool worker failed");
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn worker_loop<W: Work>(
    stage: Stage,
    work: Arc<W>,
    input: Receiver<W::In>,
    next: Next<W::Out>,
    stop: CancellationToken,
    busy: Arc<Occupancy>,
    meter: Meter,
) {
    loop {
        // Biased: a retiring worker takes no new job. Dropping `recv` before it
        // completes leaves the job in the channel for another worker.
        let job = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            job = input.recv() => match job {
                Ok(job) => job,
                Err(_) => return, // closed and drained: the pipeline is shutting down
            },
        };
        busy.enter();
        let started = Instant::now();
        let out = work.run(job).await;
        meter.record(started.elapsed().as_secs_f64());
        busy.leave();
        if let Next::Stage(tx) = &next
            && tx.send(out).await.is_err()
        {
            // Only possible if the next pool vanished, which shutdown order rules out.
            tracing::error!(%stage, "next stage is gone; job dropped");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::time::Duration;

    struct Double;
    impl Work for Double {
        type In = u64;
        type Out = u64;
        async fn run(&self, job: u64) -> u64 {
            tokio::time::sleep(Duration::from_micros(job % 7 * 100)).await;
            job * 2
        }
    }

    fn meter() -> Meter {
        Meter {
            duration: Histogram::new([0.001, 0.01]),
            busy: Default::default(),
            jobs: Default::default(),
            progress: Default::default(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resizing_under_load_loses_and_repeats_nothing() {
        let (in_tx, in_rx) = async_channel::bounded(4);
        let (out_tx, out_rx) = async_channel::bounded(4);
        let pool = Arc::new(Pool::start(
            Stage::Parse,
            Arc::new(Double),
            in_rx,
            Next::Stage(out_tx),
            3,
            meter(),
        ));
        let n = 5_000u64;
        let producer = tokio::spawn(async move {
            for i in 0..n {
                in_tx.send(i).await.expect("pool accepts");
            }
        });
        let resizer = {
            let pool = pool.clone();
            tokio::spawn(async move {
                for size in [1usize, 8, 2, 16, 1, 5, 3].into_iter().cycle().take(60) {
                    pool.resize(size);
                    assert_eq!(pool.size(), size);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        };
        let mut seen = HashSet::new();
        for _ in 0..n {
            let v = tokio::time::timeout(Duration::from_secs(20), out_rx.recv())
                .await
                .expect("no job stuck")
                .expect("channel open");
            assert!(seen.insert(v), "job {v} delivered twice");
        }
        producer.await.expect("producer");
        resizer.await.expect("resizer");
        assert_eq!(seen, (0..n).map(|i| i * 2).collect());
        pool.join().await;
        assert!(out_rx.recv().await.is_err(), "output closes after join");
    }

    #[tokio::test]
    async fn a_full_output_stops_the_pool_taking_input() {
        let (in_tx, in_rx) = async_channel::bounded(2);
        let (out_tx, out_rx) = async_channel::bounded::<u64>(1);
        let _pool = Pool::start(
            Stage::Parse,
            Arc::new(Double),
            in_rx,
            Next::Stage(out_tx),
            1,
            meter(),
        );
        for i in 0..4 {
            in_tx.send(i).await.expect("accepted");
        }
        // One result waits in the output, one in the worker's hand, two in input.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            in_tx.try_send(99).is_err(),
            "input must be full: backpressure"
        );
        assert_eq!(out_rx.recv().await.ok(), Some(0));
    }
}
