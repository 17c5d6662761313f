//! The request to stop: SIGTERM (the kubelet) or SIGINT (Ctrl-C).

/// Resolves on SIGTERM or SIGINT.
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        }
        // No signal handlers (not expected on Linux): Ctrl-C still works.
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
