//! A small HTTP/1.1 client for Pixelpipe's own admin endpoints (probes,
//! metrics, evidence), with a timeout and a bound on what it reads.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum HttpError {
    #[error("invalid URL {0}")]
    Url(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Request(#[from] hyper_util::client::legacy::Error),
    #[error("reading the body: {0}")]
    Body(String),
}

/// A client that keeps connections to the endpoints it talks to.
#[derive(Debug, Clone)]
pub struct Http {
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Default for Http {
    fn default() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl Http {
    /// `GET url`: the status and at most `max_bytes` of body, within `timeout`.
    pub async fn get(
        &self,
        url: &str,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<(u16, Bytes), HttpError> {
        let uri = url.parse().map_err(|_| HttpError::Url(url.to_string()))?;
        let request = async {
            let response = self.client.get(uri).await?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), max_bytes)
                .collect()
                .await
                .map_err(|e| HttpError::Body(e.to_string()))?;
            Ok((status, body.to_bytes()))
        };
        tokio::time::timeout(timeout, request)
            .await
            .map_err(|_| HttpError::Timeout(timeout))?
    }
}
