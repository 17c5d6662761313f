//! What a failed reconcile reports: the step that failed, whether retrying
//! soon can help, and how long to wait before the next try.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use thiserror::Error;

use crate::children::ChildError;
use crate::credentials::CredentialsError;
use crate::metrics::Step;

#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot build the children: {0}")]
    Build(#[from] ChildError),
    #[error("cannot apply {kind} {name}: {source}")]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot write the status: {0}")]
    Status(#[source] kube::Error),
    #[error("cannot read the Kafka credentials: {0}")]
    Credentials(#[source] CredentialsError),
}

impl Error {
    pub(crate) fn step(&self) -> Step {
        match self {
            Error::Build(_) => Step::build,
            Error::Apply { .. } => Step::apply,
            Error::Status(_) => Step::status,
            Error::Credentials(_) => Step::credentials,
        }
    }

    /// Whether retrying soon can help: the API server was away, busy or lost
    /// a race. A request it refused for what it is (invalid, forbidden) or a
    /// pipeline the children cannot be built from fails the same way until
    /// something changes.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Build(_) => false,
            Error::Credentials(e) => e.is_transient(),
            Error::Apply { source, .. } | Error::Status(source) => match source {
                kube::Error::Api(s) => s.code == 409 || s.code == 429 || s.code >= 500,
                _ => true,
            },
        }
    }
}

/// Delay before retry `attempt` (1-based) of a transient failure: 1 s
/// doubling to at most 5 minutes.
pub fn backoff(attempt: u32) -> Duration {
    let max = Duration::from_secs(300);
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(max)
        .without_max_times()
        .build()
        .nth(attempt.saturating_sub(1).min(16) as usize)
        .unwrap_or(max)
}

/// A permanent failure is looked at again after this long, or at the next
/// change of the pipeline or its children, whichever comes first.
pub const PERMANENT_RETRY: Duration = Duration::from_secs(300);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes() {
        let delays: Vec<u64> = (1..=12).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }
}
