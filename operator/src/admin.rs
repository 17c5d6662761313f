//! The operator's admin endpoint: `/healthz`, `/readyz`, `/metrics`, and each
//! pipeline's observed arrivals at `/pipelines/<namespace>/<name>/arrivals.csv`
//! (what `pixelpipe-sim --profile` replays; see [`crate::arrivals`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::arrivals::ArrivalBook;
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    /// Set once the API server answered; a standby replica is ready too, so a
    /// rollout of the operator is not held up by which replica leads.
    pub ready: Arc<AtomicBool>,
    pub arrivals: Arc<ArrivalBook>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/pipelines/{namespace}/{name}/arrivals.csv", get(arrivals))
        .with_state(state)
}

/// Serves until `stop`.
pub async fn serve(listener: TcpListener, state: AdminState, stop: CancellationToken) {
    if let Err(e) = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "admin endpoint failed");
    }
}

async fn readyz(State(s): State<AdminState>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn metrics(State(s): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn arrivals(
    State(s): State<AdminState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    match s.arrivals.csv(&(namespace, name)) {
        Some(csv) => ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no arrivals recorded for that pipeline (not observed since the operator started)\n",
        )
            .into_response(),
    }
}
