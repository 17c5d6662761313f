//! Reading each Ready worker's `/evidence`: in parallel up to a bound, each
//! within a timeout; a pod that does not answer contributes nothing.

use std::time::Duration;

use futures::StreamExt;
use pixelpipe_crds::evidence::{EVIDENCE_PATH, WorkerEvidence};
use pixelpipe_crds::worker::ADMIN_PORT;
use pixelpipe_runtime::http::Http;

use crate::pods::WorkerPod;

/// How long one pod may take to answer.
const TIMEOUT: Duration = Duration::from_secs(1);
/// The most bytes read from one pod (a report of thousands of partitions fits).
const MAX_BYTES: usize = 256 * 1024;
/// Pods read at once.
const CONCURRENCY: usize = 16;

/// The reports of the Ready pods that answered, by pod name.
pub async fn scrape(http: &Http, pods: &[WorkerPod]) -> Vec<(String, WorkerEvidence)> {
    let targets: Vec<(String, String)> = pods
        .iter()
        .filter(|p| p.ready && !p.terminating)
        .filter_map(|p| Some((p.name.clone(), url(p.ip.as_deref()?))))
        .collect();
    let answers: Vec<Option<(String, WorkerEvidence)>> = futures::stream::iter(targets)
        .map(|(name, url)| one(http.clone(), name, url))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    answers.into_iter().flatten().collect()
}

async fn one(http: Http, name: String, url: String) -> Option<(String, WorkerEvidence)> {
    match read(&http, &url).await {
        Ok(e) => Some((name, e)),
        Err(why) => {
            tracing::debug!(pod = %name, %url, %why, "no evidence from a worker");
            None
        }
    }
}

fn url(ip: &str) -> String {
    if ip.contains(':') {
        format!("http://[{ip}]:{ADMIN_PORT}{EVIDENCE_PATH}")
    } else {
        format!("http://{ip}:{ADMIN_PORT}{EVIDENCE_PATH}")
    }
}

async fn read(http: &Http, url: &str) -> Result<WorkerEvidence, String> {
    let (status, body) = http
        .get(url, TIMEOUT, MAX_BYTES)
        .await
        .map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("HTTP {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("not evidence: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_bracket_ipv6() {
        assert_eq!(url("10.1.2.3"), "http://10.1.2.3:9090/evidence");
        assert_eq!(url("fd00::7"), "http://[fd00::7]:9090/evidence");
    }
}
