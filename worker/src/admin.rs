//! The admin HTTP endpoint: probes, metrics, and live pool sizes.
//!
//! `GET /healthz` is liveness judged on progress ([`crate::liveness`]): 503
//! with the reason once fetched events have not moved for longer than the
//! bound, 200 otherwise (idle and draining included).
//! `GET /pools` reports each stage's pool; `PUT /pools` with a JSON body such as
//! `{"produce": 8}` resizes the named stages without a restart. `GET /evidence`
//! is what the autoscaler reads ([`pixelpipe_crds::evidence`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pixelpipe_crds::Stage;
use pixelpipe_crds::evidence::EVIDENCE_PATH;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::evidence::Reporter;
use crate::metrics::Metrics;
use crate::pipeline::{Health, PoolResize, Pools};

#[derive(Debug, Clone)]
pub struct AdminState {
    pub pools: Arc<Pools>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub evidence: Arc<Reporter>,
    /// How long pending events may go without progress.
    pub liveness_bound: Duration,
    /// Whether the last `/healthz` found a wedge: logged when that changes,
    /// not at every probe.
    pub wedged: Arc<AtomicBool>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/pools", get(get_pools).put(put_pools))
        .route(EVIDENCE_PATH, get(evidence))
        .with_state(state)
}

/// Serves on a thread of its own with its own runtime: the stage pools keep the
/// main runtime's threads busy, and probes must answer within their timeout
/// however loaded the pipeline is.
pub fn spawn(
    listener: std::net::TcpListener,
    state: AdminState,
    stop: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "admin endpoint has no runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => serve(listener, state, stop).await,
                    Err(e) => tracing::error!(error = %e, "admin endpoint cannot listen"),
                }
            });
        })
}

/// Serves until `stop`.
pub async fn serve(listener: TcpListener, state: AdminState, stop: CancellationToken) {
    let app = router(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "admin endpoint failed");
    }
}

async fn healthz(State(s): State<AdminState>) -> Response {
    let verdict = s.metrics.progress.judge(Instant::now(), s.liveness_bound);
    let live = verdict.is_live();
    if s.wedged.swap(!live, Ordering::AcqRel) == live {
        if live {
            tracing::info!(%verdict, "progress resumed");
        } else {
            tracing::error!(%verdict, "wedged: liveness fails until pending work moves");
        }
    }
    let code = if live {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{verdict}\n")).into_response()
}

async fn readyz(State(s): State<AdminState>) -> Response {
    match s.health.not_ready() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<AdminState>) -> Response {
    s.pools.export(&s.metrics);
    s.metrics.export_progress(Instant::now());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn evidence(State(s): State<AdminState>) -> Response {
    Json(s.evidence.report()).into_response()
}

async fn get_pools(State(s): State<AdminState>) -> Response {
    Json(s.pools.status()).into_response()
}

async fn put_pools(State(s): State<AdminState>, body: axum::body::Bytes) -> Response {
    // Keyed by stage so a misspelt stage is an error, not a silent no-op.
    let wanted: BTreeMap<Stage, usize> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("invalid resize: {e}\n")).into_response();
        }
    };
    let resize = PoolResize::from_fn(|stage| wanted.get(&stage).copied());
    match s.pools.resize(resize) {
        Ok(sizes) => Json(sizes).into_response(),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, format!("{e}\n")).into_response(),
    }
}
