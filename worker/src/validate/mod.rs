//! Semantic checks the JSON schema cannot express, then the routing decision.

use pixelpipe_crds::LimitsSpec;

use crate::event::{DeadReason, Event, Rejection};
use crate::routing::{Decision, Router, event_index};

mod time;

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
    limits: &LimitsSpec,
    now_ms: i64,
) -> Result<Validated, Rejection> {
    let invalid = |m: String| Err(Rejection::new(DeadReason::InvalidField, m));
    let Some(index) = event_index(event.name()) else {
        return Err(Rejection::new(
            DeadReason::UnknownEvent,
            format!("unknown event name ({} bytes)", event.name().len()),
        ));
    };
    for (field, value) in [("id", event.id()), ("clientId", event.client_id())] {
        if value.trim().is_empty() || value.len() > MAX_ID_LEN {
            return invalid(format!("{field} must be 1-{MAX_ID_LEN} characters"));
        }
    }
    let Some(event_ms) = time::parse_ms(event.timestamp()) else {
        return invalid("timestamp is not RFC 3339".into());
    };
    let skew_ms = i64::from(limits.max_future_skew_seconds).saturating_mul(1000);
    if event_ms > now_ms.saturating_add(skew_ms) {
        return invalid(format!(
            "timestamp is more than {}s in the future",
            limits.max_future_skew_seconds
        ));
    }
    if let Some(region) = event.region()
        && !valid_region(region)
    {
        return invalid("region is not an ISO 3166 code like US or US-CA".into());
    }
    Ok(Validated {
        event_ms,
        decision: router.route(index, event.region(), &event.consent),
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
    use crate::event::decode;
    use crate::routing::DropReason;
    use pixelpipe_crds::PipelineFile;

    const NOW: i64 = 1_795_755_601_123; // 2026-11-27T05:00:01.123Z

    fn check(json: &str) -> Result<Validated, Rejection> {
        let config = PipelineFile::parse(
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

    #[test]
    fn timestamps_are_rfc_3339_with_an_offset() {
        let at = |ts: &str| check(&event("page_viewed", ts, "US", true)).map(|v| v.event_ms);
        assert_eq!(at("2026-11-27T05:00:01.123Z"), Ok(NOW));
        assert_eq!(at("2026-11-27T07:00:01.123+02:00"), Ok(NOW));
        assert_eq!(at("2026-11-26T23:30:01.123-05:30"), Ok(NOW));
        assert_eq!(at("2026-11-27T05:00:01.123456789Z"), Ok(NOW));
        for bad in [
            "",
            "2026-11-27",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-27T24:00:00Z",
            "2026-11-27T05:00:01.Z",
            "2026-11-27T05:00:01",
            "2026-11-27T05:00:01Zjunk",
            "20x6-11-27T05:00:01Z",
        ] {
            assert_eq!(
                at(bad).map_err(|r| r.reason),
                Err(DeadReason::InvalidField),
                "{bad:?}"
            );
        }
    }
}
