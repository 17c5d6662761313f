//! The comparison designs, built from the worker's own parts so that only
//! what is compared differs:
//!
//! - **pass-through**, the ceiling: the worker's source (batching, in-flight
//!   bound), producer, acknowledgement tracking and commit cadence, with one
//!   copy stage instead of parse, validate and augment: each input goes to as
//!   many partner topics as the pipeline would send it to, as many bytes as
//!   the partner payload the worker writes for it (both ride in a header the
//!   benchmark's loader sets, [`Outputs`]): the input, then
//!   random hex digits, as incompressible as the payload's hashes. The most
//!   this machine and broker allow for the same I/O.
//! - **forward**: the same, sending each input's own bytes. The payload is
//!   15 % longer than its input, so this does less I/O than the pipeline
//!   must; the benchmark reports it beside the ceiling, to show what the
//!   payload's bytes cost.
//! - **unbounded**: the worker's stages, but each stage spawns a new task per
//!   batch, with unbounded channels and no in-flight bound: the design the
//!   Pixelpipe story started from, kept here as the comparison only.

use std::net::SocketAddr;
use std::sync::Arc;

use async_channel::{Receiver, Sender};
use axum::routing::get;
use pixelpipe_crds::{PipelineFile, Stage};
use pixelpipe_worker::fatal::Fatal;
use pixelpipe_worker::job::{InputMessage, Job, Outcome};
use pixelpipe_worker::metrics::Metrics;
use pixelpipe_worker::offsets::OffsetTracker;
use pixelpipe_worker::pool::{Meter, Next, Pool, Work};
use pixelpipe_worker::routing::PartnerSet;
use pixelpipe_worker::settings::Settings;
use pixelpipe_worker::sink::{AckShared, Produce};
use pixelpipe_worker::slots::Slots;
use pixelpipe_worker::source::{run_committer, run_source};
use pixelpipe_worker::stages::{Augment, Parse, Validate};
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

/// Header the benchmark's loader puts on each input: what the pass-through
/// sends for it ([`Outputs`]). One header, so that the source copies no
/// more per message than it did before the payload's length was in it.
pub const OUTPUTS_HEADER: &str = "pixelpipe-bench-outputs";

/// How many partner topics an input goes to, and how long the partner
/// payload the worker writes for it is
/// ([`crate::payload::PayloadLength`]), as `2 1174` in the header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outputs {
    pub count: usize,
    pub bytes: usize,
}

impl Outputs {
    pub fn header_value(self) -> String {
        format!("{} {}", self.count, self.bytes)
    }

    /// From a message's header; no outputs when it has none or it does
    /// not read as one.
    fn of(msg: &InputMessage) -> Self {
        let parse = |v: &[u8]| {
            let (count, bytes) = std::str::from_utf8(v).ok()?.split_once(' ')?;
            Some(Self {
                count: count.parse().ok()?,
                bytes: bytes.parse().ok()?,
            })
        };
        msg.headers
            .iter()
            .find(|(k, _)| k == OUTPUTS_HEADER)
            .and_then(|(_, v)| parse(v))
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Design {
    PassThrough,
    Forward,
    Unbounded,
}

/// Copies each input to the first [`Outputs::count`] partner topics, as
/// long as its partner payload (`Some` noise to fill it with) or unchanged.
#[derive(Debug)]
struct Copy {
    partners: usize,
    noise: Option<Noise>,
}

/// Random hex digits to lengthen outputs with, generated once.
#[derive(Debug)]
struct Noise(Vec<u8>);

impl Noise {
    fn new() -> Self {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(16);
        Self(
            (0..1 << 20)
                .map(|_| b"0123456789abcdef"[rng.random_range(0..16)])
                .collect(),
        )
    }

    /// `input` followed by `len - input.len()` digits from a place that
    /// `seed` picks, in one allocation of the final length, as the worker's
    /// payload is; the input unchanged when it is at least `len` long.
    fn fill(&self, input: &[u8], len: usize, seed: u64) -> Vec<u8> {
        let pad = len.saturating_sub(input.len()).min(self.0.len());
        let mut out = Vec::with_capacity(input.len() + pad);
        out.extend_from_slice(input);
        let at =
            (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % (self.0.len() - pad + 1);
        out.extend_from_slice(&self.0[at..at + pad]);
        out
    }
}

impl Work for Copy {
    type In = Job;
    type Out = Job;
    async fn run(&self, mut job: Job) -> Job {
        // Prefetching the next input, as the worker's stages do.
        job.each(|msg, outcome| {
            let outputs = Outputs::of(msg);
            let mut partners = PartnerSet::default();
            for i in 0..outputs.count.min(self.partners) {
                partners.insert(i);
            }
            let input = msg.payload.as_deref().unwrap_or_default();
            let payload = match &self.noise {
                Some(noise) => noise.fill(input, outputs.bytes, msg.offset as u64),
                None => input.to_vec(),
            };
            *outcome = Outcome::Ready {
                payload,
                partners,
                event_ms: msg.timestamp_ms.unwrap_or(0),
            };
        });
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
    let (first_tx, slots, _pools) = match design {
        Design::PassThrough | Design::Forward => {
            let cap = settings.queue_capacity;
            let (copy_tx, copy_rx) = async_channel::bounded(cap);
            let (produce_tx, produce_rx) = async_channel::bounded(cap);
            let pools = [
                Pool::start(
                    Stage::Parse,
                    Arc::new(Copy {
                        partners: partners.len(),
                        noise: (design == Design::PassThrough).then(Noise::new),
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
            // The worker's own slots for the same pools and bounds.
            let slots = Slots::new(
                settings.max_in_flight_jobs,
                settings.max_unacknowledged_bytes,
                &settings.pools,
                &metrics,
            );
            (copy_tx, slots, Some(pools))
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
            (parse_tx, Slots::unbounded(&metrics), None)
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
        slots,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_is_its_input_then_hex_digits_to_the_payload_s_length() {
        let noise = Noise::new();
        let input = br#"{"id":"e1"}"#;
        let out = noise.fill(input, 1_180, 42);
        assert_eq!(out.len(), 1_180);
        assert_eq!(&out[..input.len()], input);
        assert!(out[input.len()..].iter().all(u8::is_ascii_hexdigit));
        // Another message's digits come from another place.
        assert_ne!(out, noise.fill(input, 1_180, 43));
    }

    #[test]
    fn the_header_says_how_many_outputs_of_how_many_bytes() {
        let msg = |v: &str| InputMessage {
            partition: 0,
            offset: 0,
            timestamp_ms: None,
            key: None,
            payload: None,
            headers: vec![(OUTPUTS_HEADER.to_string(), v.as_bytes().to_vec())],
        };
        let o = Outputs {
            count: 2,
            bytes: 1_174,
        };
        assert_eq!(o.header_value(), "2 1174");
        assert_eq!(Outputs::of(&msg(&o.header_value())), o);
        assert_eq!(Outputs::of(&msg("2")), Outputs::default());
        assert_eq!(Outputs::of(&msg("x 1")), Outputs::default());
    }

    #[test]
    fn an_input_as_long_as_its_payload_goes_unchanged() {
        let noise = Noise::new();
        assert_eq!(noise.fill(b"0123456789", 4, 1), b"0123456789");
        assert_eq!(noise.fill(b"", 0, 1), b"");
        // No payload longer than the noise: at most all of it, never a panic.
        assert_eq!(noise.fill(b"", usize::MAX, u64::MAX).len(), 1 << 20);
    }
}
