//! The two comparison designs, built from the worker's own parts so that only
//! what is compared differs:
//!
//! - **pass-through**: the worker's source (batching, in-flight bound),
//!   producer, acknowledgement tracking and commit cadence, with one copy
//!   stage instead of parse, validate and augment: each input goes unchanged
//!   to as many partner topics as the pipeline would send it to (the count
//!   rides in a header the benchmark's loader sets). The most this machine and
//!   broker allow for the same I/O.
//! - **unbounded**: the worker's stages, but each stage spawns a new task per
//!   batch, with unbounded channels and no in-flight bound: the design the
//!   Pixelpipe story started from, kept here as the comparison only.

use std::net::SocketAddr;
use std::sync::Arc;

use async_channel::{Receiver, Sender};
use axum::routing::get;
use pixelpipe_crds::{PipelineFile, Stage};
use pixelpipe_worker::fatal::Fatal;
use pixelpipe_worker::job::{Job, Outcome};
use pixelpipe_worker::metrics::Metrics;
use pixelpipe_worker::offsets::OffsetTracker;
use pixelpipe_worker::pool::{Meter, Next, Pool, Work};
use pixelpipe_worker::routing::PartnerSet;
use pixelpipe_worker::settings::Settings;
use pixelpipe_worker::sink::{AckShared, Produce};
use pixelpipe_worker::source::{run_committer, run_source};
use pixelpipe_worker::stages::{Augment, Parse, Validate};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Header with the number of partner topics an input goes to.
pub const FANOUT_HEADER: &str = "pixelpipe-bench-fanout";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Design {
    PassThrough,
    Unbounded,
}

/// Copies each input to the first `fanout` partner topics, unchanged.
#[derive(Debug)]
struct Copy {
    partners: usize,
}

impl Work for Copy {
    type In = Job;
    type Out = Job;
    async fn run(&self, mut job: Job) -> Job {
        for (msg, outcome) in job.messages.iter().zip(job.outcomes.iter_mut()) {
            let fanout = msg
                .headers
                .iter()
                .find(|(k, _)| k == FANOUT_HEADER)
                .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<usize>().ok())
                .unwrap_or(0)
                .min(self.partners);
            let mut partners = PartnerSet::default();
            for i in 0..fanout {
                partners.insert(i);
            }
            *outcome = Outcome::Ready {
                payload: msg.payload.clone().unwrap_or_default(),
                partners,
                event_ms: msg.timestamp_ms.unwrap_or(0),
            };
        }
        job
    }
}

/// A stage of the unbounded design: a new task per batch, no bound.
fn spawn_per_batch<W: Work<In = Job>>(
    work: Arc<W>,
    input: Receiver<Job>,
    next: Option<Sender<W::Out>>,
) {
    tokio::spawn(async move {
        while let Ok(job) = input.recv().await {
            let (work, next) = (work.clone(), next.clone());
            tokio::spawn(async move {
                let out = work.run(job).await;
                if let Some(next) = next {
                    let _ = next.send(out).await;
                }
            });
        }
    });
}

/// Runs `design` until `stop`. No drain: the benchmark measures from outside
/// and stops the process when the input is committed.
pub async fn run(
    design: Design,
    settings: Settings,
    config: PipelineFile,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let partners: Vec<String> = config.partners.iter().map(|p| p.name.clone()).collect();
    let metrics = Arc::new(Metrics::new(&partners));
    let tracker = Arc::new(OffsetTracker::default());
    let (producer, consumer) = pixelpipe_worker::pipeline::connect(
        &settings,
        &tracker,
        &metrics,
        None,
        Default::default(),
    )?;
    let produce = Arc::new(Produce::new(
        producer,
        &config,
        &settings.input_topic,
        &settings.dead_letter_topic,
        AckShared::new(
            tracker.clone(),
            metrics.clone(),
            Fatal::default(),
            &partners,
        ),
    ));
    let meter = |stage| Meter::of(&metrics, stage);
    let (first_tx, in_flight, _pools) = match design {
        Design::PassThrough => {
            let cap = settings.queue_capacity;
            let (copy_tx, copy_rx) = async_channel::bounded(cap);
            let (produce_tx, produce_rx) = async_channel::bounded(cap);
            let pools = [
                Pool::start(
                    Stage::Parse,
                    Arc::new(Copy {
                        partners: partners.len(),
                    }),
                    copy_rx,
                    Next::Stage(produce_tx),
                    settings.pools.parse,
                    meter(Stage::Parse),
                ),
                Pool::start(
                    Stage::Produce,
                    produce,
                    produce_rx,
                    Next::End,
                    settings.pools.produce,
                    meter(Stage::Produce),
                ),
            ];
            let in_flight = Arc::new(Semaphore::new(settings.max_in_flight_jobs));
            (copy_tx, in_flight, Some(pools))
        }
        Design::Unbounded => {
            let (parse_tx, parse_rx) = async_channel::unbounded();
            let (validate_tx, validate_rx) = async_channel::unbounded();
            let (augment_tx, augment_rx) = async_channel::unbounded();
            let (produce_tx, produce_rx) = async_channel::unbounded();
            spawn_per_batch(
                Arc::new(Parse {
                    max_event_bytes: config.limits.max_event_bytes as usize,
                }),
                parse_rx,
                Some(validate_tx),
            );
            spawn_per_batch(
                Arc::new(Validate::new(config.clone(), &metrics)),
                validate_rx,
                Some(augment_tx),
            );
            spawn_per_batch(
                Arc::new(Augment::new(&config.privacy)),
                augment_rx,
                Some(produce_tx),
            );
            spawn_per_batch(produce, produce_rx, None::<Sender<()>>);
            // No bound on batches in flight: the consumer reads as fast as the broker sends.
            (
                parse_tx,
                Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
                None,
            )
        }
    };
    if let Some(addr) = settings.admin_addr {
        serve_metrics(addr, metrics.clone(), stop.clone()).await?;
    }
    let source = tokio::spawn(run_source(
        consumer.clone(),
        tracker.clone(),
        metrics.clone(),
        first_tx,
        in_flight,
        settings.batching,
        stop.clone(),
    ));
    let committer = tokio::spawn(run_committer(
        consumer,
        settings.input_topic.clone(),
        tracker,
        metrics,
        settings.commit_interval,
        stop.clone(),
    ));
    stop.cancelled().await;
    let _ = source.await;
    let _ = committer.await;
    Ok(())
}

/// `GET /metrics` on the admin address, the worker's counters included, so
/// that tools/bench/profile.sh counts a design's events as it counts the
/// worker's.
async fn serve_metrics(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = axum::Router::new().route("/metrics", get(move || async move { metrics.encode() }));
    tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(e) = serve.await {
            tracing::warn!(error = %e, "the metrics endpoint failed");
        }
    });
    Ok(())
}
