//! HTTP against the programs under test, with a real client (ureq).

use std::time::Duration;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        // A 503 from /readyz is an answer, not an error.
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// `GET url`: (status, body), or `None` when nothing answers.
pub fn get(url: &str) -> Option<(u16, String)> {
    let mut response = agent().get(url).call().ok()?;
    let status = response.status().as_u16();
    Some((status, response.body_mut().read_to_string().ok()?))
}

/// `GET url?query`, each pair percent-encoded: (status, body), or `None`
/// when nothing answers.
pub fn get_with_query(url: &str, query: &[(&str, &str)]) -> Option<(u16, String)> {
    let mut response = agent()
        .get(url)
        .query_pairs(query.iter().copied())
        .call()
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.body_mut().read_to_string().ok()?))
}

/// `PUT url` with a JSON body: (status, body), or `None` when nothing answers.
pub fn put_json(url: &str, body: &str) -> Option<(u16, String)> {
    let mut response = agent()
        .put(url)
        .header("Content-Type", "application/json")
        .send(body)
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.body_mut().read_to_string().ok()?))
}

/// The sum of a metric family's samples whose line contains `filter`, in a
/// Prometheus text exposition.
pub fn metric_sum(exposition: &str, name: &str, filter: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
