//! What the API server's schema cannot judge about a pipeline, checked in one
//! place for the operator (before it builds anything) and the worker (when it
//! reads its pipeline file): the same rules, so a file the operator writes is
//! one the workers accept.

use std::collections::HashSet;

use thiserror::Error;

use crate::spec::{PartnerSpec, PixelPipelineSpec, PrivacySpec};

/// Event names a partner can ask for; anything else is dead-lettered as
/// `unknown_event`.
pub const KNOWN_EVENTS: &[&str] = &[
    "page_viewed",
    "product_viewed",
    "collection_viewed",
    "search_submitted",
    "product_added_to_cart",
    "product_removed_from_cart",
    "cart_viewed",
    "checkout_started",
    "payment_info_submitted",
    "checkout_completed",
];

/// Partners per pipeline, at most: the router keeps them as a 64-bit set.
pub const MAX_PARTNERS: usize = 64;

/// Why a pipeline cannot be run, in words for `kubectl describe`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    #[error("at least one partner is required")]
    NoPartners,
    #[error("at most {MAX_PARTNERS} partners are supported")]
    TooManyPartners,
    #[error("every partner needs a name and a topic")]
    UnnamedPartner,
    #[error("partner {0:?} is listed twice")]
    DuplicatePartner(String),
    #[error("partner {partner:?} writes to topic {topic:?}, which another partner already uses")]
    SharedTopic { partner: String, topic: String },
    #[error("partner {0:?} lists no events")]
    NoEvents(String),
    #[error("partner {partner:?} asks for unknown event {event:?} (known: {known})", known = KNOWN_EVENTS.join(", "))]
    UnknownEvent { partner: String, event: String },
    #[error("a region rule needs regions and required purposes")]
    EmptyRegionRule,
    #[error("region rule names unknown partner {0:?}")]
    UnknownRulePartner(String),
    #[error("defaultPhoneCountryCode {0:?} is not 1-3 digits")]
    CountryCode(String),
    #[error("limits.maxEventBytes must be positive")]
    ZeroEventBytes,
    #[error("worker.image is empty")]
    NoImage,
}

impl PixelPipelineSpec {
    /// Everything the schema cannot say about a spec.
    pub fn check(&self) -> Result<(), SpecError> {
        check_partners(&self.partners, &self.privacy)?;
        if self.limits.max_event_bytes == 0 {
            return Err(SpecError::ZeroEventBytes);
        }
        if self.worker.image.trim().is_empty() {
            return Err(SpecError::NoImage);
        }
        Ok(())
    }
}

/// The partner list and the privacy rules that name them.
pub fn check_partners(partners: &[PartnerSpec], privacy: &PrivacySpec) -> Result<(), SpecError> {
    if partners.is_empty() {
        return Err(SpecError::NoPartners);
    }
    if partners.len() > MAX_PARTNERS {
        return Err(SpecError::TooManyPartners);
    }
    let mut names = HashSet::new();
    let mut topics = HashSet::new();
    for p in partners {
        check_partner(p)?;
        if !names.insert(p.name.as_str()) {
            return Err(SpecError::DuplicatePartner(p.name.clone()));
        }
        if !topics.insert(p.topic.as_str()) {
            return Err(SpecError::SharedTopic {
                partner: p.name.clone(),
                topic: p.topic.clone(),
            });
        }
    }
    for rule in &privacy.region_rules {
        if rule.regions.is_empty() || rule.require.is_empty() {
            return Err(SpecError::EmptyRegionRule);
        }
        if let Some(name) = rule
            .partners
            .iter()
            .flatten()
            .find(|n| !names.contains(n.as_str()))
        {
            return Err(SpecError::UnknownRulePartner(name.clone()));
        }
    }
    let cc = privacy.phone_country_code();
    if cc.is_empty() || cc.len() > 3 || !cc.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SpecError::CountryCode(cc.to_string()));
    }
    Ok(())
}

fn check_partner(p: &PartnerSpec) -> Result<(), SpecError> {
    if p.name.is_empty() || p.topic.is_empty() {
        return Err(SpecError::UnnamedPartner);
    }
    if p.events.is_empty() {
        return Err(SpecError::NoEvents(p.name.clone()));
    }
    match p
        .events
        .iter()
        .find(|e| *e != "*" && !KNOWN_EVENTS.contains(&e.as_str()))
    {
        Some(event) => Err(SpecError::UnknownEvent {
            partner: p.name.clone(),
            event: event.clone(),
        }),
        None => Ok(()),
    }
}

/// Query parameters kept in forwarded URLs when the spec names none: the
/// campaign parameters.
pub const DEFAULT_QUERY_ALLOWLIST: [&str; 5] = [
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
];

/// Calling code assumed when the spec names none.
pub const DEFAULT_PHONE_COUNTRY_CODE: &str = "1";

impl PrivacySpec {
    /// The query parameters kept in forwarded URLs.
    pub fn query_allowlist(&self) -> Vec<String> {
        match &self.url_query_allowlist {
            Some(list) => list.clone(),
            None => DEFAULT_QUERY_ALLOWLIST.map(String::from).to_vec(),
        }
    }

    /// The calling code for phone numbers written without `+` or `00`.
    pub fn phone_country_code(&self) -> &str {
        self.default_phone_country_code
            .as_deref()
            .unwrap_or(DEFAULT_PHONE_COUNTRY_CODE)
    }
}

#[cfg(test)]
mod tests {
    use crate::PipelineFile;

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("partners: []", "at least one partner"),
            (
                "partners: [{name: a, topic: t, events: [page_viewd]}]",
                "unknown event \"page_viewd\"",
            ),
            (
                "partners: [{name: a, topic: t, events: ['*']}, {name: a, topic: u, events: ['*']}]",
                "listed twice",
            ),
            (
                "partners: [{name: a, topic: t, events: ['*']}, {name: b, topic: t, events: ['*']}]",
                "another partner already uses",
            ),
            (
                "partners: [{name: a, topic: t, events: ['*'], requiredConsent: [gossip]}]",
                "unknown variant",
            ),
            (
                "partners: [{name: a, topic: t, events: ['*']}]\nprivacy: {regionRules: [{regions: [US], require: [marketing], partners: [b]}]}",
                "unknown partner \"b\"",
            ),
            (
                "partners: [{name: a, topic: t, events: ['*']}]\nprivacy: {defaultPhoneCountryCode: '12345'}",
                "not 1-3 digits",
            ),
            (
                "partners: [{name: a, topic: t, events: ['*']}]\nbogus: 1",
                "unknown field",
            ),
        ];
        for (doc, want) in cases {
            let err = PipelineFile::parse(doc).expect_err(doc).to_string();
            assert!(err.contains(want), "{doc}: {err}");
        }
    }
}
