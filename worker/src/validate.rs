//! Semantic checks the JSON schema cannot express, then the routing decision.

use crate::config::Limits;
use crate::event::{DeadReason, Event, Rejection};
use crate::routing::{Decision, Router, event_index};
use crate::time::parse_rfc3339_ms;

/// Identifiers longer than this are not identifiers.
const MAX_ID_LEN: usize = 128;

/// A valid event's facts that later stages need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validated {
    /// The event's own timestamp, Unix milliseconds.
    pub event_ms: i64,
    pub decision: Decision,
}

/// Checks one decoded event and decides where it goes.
pub fn validate(
    event: &Event,
    router: &Router,
    limits: &Limits,
    now_ms: i64,
) -> Result<Validated, Rejection> {
    let invalid = |m: String| Err(Rejection::new(DeadReason::InvalidField, m));
    let Some(index) = event_index(&event.name) else {
        return Err(Rejection::new(
            DeadReason::UnknownEvent,
            format!("unknown event name ({} bytes)", event.name.len()),
        ));
    };
    for (field, value) in [("id", &event.id), ("clientId", &event.client_id)] {
        if value.trim().is_empty() || value.len() > MAX_ID_LEN {
            return invalid(format!("{field} must be 1-{MAX_ID_LEN} characters"));
        }
    }
    let Some(event_ms) = parse_rfc3339_ms(&event.timestamp) else {
        return invalid("timestamp is not RFC 3339".into());
    };
    let skew_ms = limits.max_future_skew_seconds.saturating_mul(1000) as i64;
    if event_ms > now_ms.saturating_add(skew_ms) {
        return invalid(format!(
            "timestamp is more than {}s in the future",
            limits.max_future_skew_seconds
        ));
    }
    if let Some(region) = &event.region
        && !valid_region(region)
    {
        return invalid("region is not an ISO 3166 code like US or US-CA".into());
    }
    Ok(Validated {
        event_ms,
        decision: router.route(index, event.region.as_deref(), &event.consent),
    })
}

/// `CC` or `CC-SUB`, with a 2-letter country and a 1-3 character subdivision.
fn valid_region(r: &str) -> bool {
    let b = r.as_bytes();
    let country = b.len() >= 2 && b[..2].iter().all(u8::is_ascii_alphabetic);
    country
        && (b.len() == 2
            || (b[2] == b'-'
                && (4..=6).contains(&b.len())
                && b[3..].iter().all(u8::is_ascii_alphanumeric)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PipelineConfig;
    use crate::event::decode;
    use crate::routing::DropReason;

    const NOW: i64 = 1_795_755_601_123; // 2026-11-27T05:00:01.123Z

    fn check(json: &str) -> Result<Validated, Rejection> {
        let config = PipelineConfig::parse(
            "partners: [{name: a, topic: t, events: ['*'], requiredConsent: [marketing]}]",
        )
        .expect("valid");
        let event = decode(Some(json.as_bytes()), 1 << 20).expect("decodes");
        validate(&event, &Router::new(&config), &config.limits, NOW)
    }

    fn event(name: &str, ts: &str, region: &str, marketing: bool) -> String {
        format!(
            r#"{{"id":"e","name":"{name}","timestamp":"{ts}","shopId":1,"clientId":"c",
            "region":"{region}","consent":{{"marketing":{marketing}}}}}"#
        )
    }

    #[test]
    fn accepts_and_routes_a_valid_event() {
        let v = check(&event(
            "checkout_completed",
            "2026-11-27T04:59:00Z",
            "US-CA",
            true,
        ))
        .expect("valid");
        assert_eq!(v.event_ms, NOW - 61_123);
        assert_eq!(v.decision.partners.len(), 1);
        let v = check(&event(
            "checkout_completed",
            "2026-11-27T04:59:00Z",
            "DE",
            false,
        ))
        .expect("valid");
        assert_eq!(v.decision.drop_reason(), Some(DropReason::NoConsent));
    }

    #[test]
    fn rejects_what_the_schema_cannot() {
        let reason = |json: String| check(&json).expect_err("invalid").reason;
        assert_eq!(
            reason(event(
                "checkout_exploded",
                "2026-11-27T04:59:00Z",
                "US",
                true
            )),
            DeadReason::UnknownEvent
        );
        assert_eq!(
            reason(event("page_viewed", "yesterday", "US", true)),
            DeadReason::InvalidField
        );
        assert_eq!(
            reason(event("page_viewed", "2026-11-27T05:10:00Z", "US", true)),
            DeadReason::InvalidField
        );
        assert_eq!(
            reason(event(
                "page_viewed",
                "2026-11-27T04:59:00Z",
                "California",
                true
            )),
            DeadReason::InvalidField
        );
        let blank_id = event("page_viewed", "2026-11-27T04:59:00Z", "US", true)
            .replace(r#""id":"e""#, r#""id":" ""#);
        assert_eq!(reason(blank_id), DeadReason::InvalidField);
    }
}
