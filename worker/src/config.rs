//! The worker's pipeline file: partners, privacy rules and input limits.
//!
//! Kafka addresses, topics and pool sizes come from flags (see `cli`); this file
//! holds what a merchant decides, and it is what the operator writes into the
//! worker's ConfigMap.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;
use thiserror::Error;

use crate::routing::{KNOWN_EVENTS, MAX_PARTNERS};

/// The purposes a customer can consent to: one vocabulary for the
/// PixelPipeline resource and the worker's pipeline file.
pub use pixelpipe_crds::Purpose;

/// Everything the worker reads from its YAML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PipelineConfig {
    /// Where events go. One event can reach several partners.
    pub partners: Vec<PartnerConfig>,
    #[serde(default)]
    pub privacy: PrivacyConfig,
    #[serde(default)]
    pub limits: Limits,
}

/// One marketing partner: its topic, the events it wants, the consent it needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartnerConfig {
    pub name: String,
    pub topic: String,
    /// Event names this partner receives; `"*"` means every known event.
    pub events: Vec<String>,
    /// Purposes the customer must have allowed, all of them.
    #[serde(default)]
    pub required_consent: Vec<Purpose>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrivacyConfig {
    /// Regional rules that add required purposes, e.g. sale-of-data opt-out laws.
    #[serde(default)]
    pub region_rules: Vec<RegionRule>,
    /// Query parameters kept in forwarded URLs; all others are stripped.
    #[serde(default = "default_query_allowlist")]
    pub url_query_allowlist: Vec<String>,
    /// Calling code assumed for phone numbers written without `+` or `00`.
    #[serde(default = "default_country_code")]
    pub default_phone_country_code: String,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self {
            region_rules: Vec::new(),
            url_query_allowlist: default_query_allowlist(),
            default_phone_country_code: default_country_code(),
        }
    }
}

/// In the listed regions, the listed partners (all when omitted) also require
/// `require`. A region entry matches itself and its subdivisions: `US` matches
/// `US-CA`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegionRule {
    pub regions: Vec<String>,
    pub require: Vec<Purpose>,
    #[serde(default)]
    pub partners: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Larger payloads are dead-lettered as `oversized`.
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
    /// Events stamped further than this in the future are dead-lettered.
    #[serde(default = "default_future_skew")]
    pub max_future_skew_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_event_bytes: default_max_event_bytes(),
            max_future_skew_seconds: default_future_skew(),
        }
    }
}

fn default_query_allowlist() -> Vec<String> {
    [
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_term",
        "utm_content",
    ]
    .map(String::from)
    .to_vec()
}
fn default_country_code() -> String {
    "1".into()
}
fn default_max_event_bytes() -> usize {
    64 * 1024
}
fn default_future_skew() -> u64 {
    300
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid pipeline file: {0}")]
    Yaml(#[from] crate::yaml::Error),
    #[error("invalid pipeline file: {0}")]
    Invalid(String),
}

impl PipelineConfig {
    /// Reads and checks the pipeline file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and checks a pipeline document.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Self = crate::yaml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.partners.is_empty() {
            return invalid("at least one partner is required".into());
        }
        if self.partners.len() > MAX_PARTNERS {
            return invalid(format!("at most {MAX_PARTNERS} partners are supported"));
        }
        let mut names = HashSet::new();
        for p in &self.partners {
            if p.name.is_empty() || p.topic.is_empty() {
                return invalid("every partner needs a name and a topic".into());
            }
            if !names.insert(p.name.as_str()) {
                return invalid(format!("partner {:?} is listed twice", p.name));
            }
            if p.events.is_empty() {
                return invalid(format!("partner {:?} lists no events", p.name));
            }
            if let Some(e) = p
                .events
                .iter()
                .find(|e| *e != "*" && !KNOWN_EVENTS.contains(&e.as_str()))
            {
                return invalid(format!(
                    "partner {:?} asks for unknown event {e:?} (known: {})",
                    p.name,
                    KNOWN_EVENTS.join(", ")
                ));
            }
        }
        for rule in &self.privacy.region_rules {
            if rule.regions.is_empty() || rule.require.is_empty() {
                return invalid("a region rule needs regions and required purposes".into());
            }
            for name in rule.partners.iter().flatten() {
                if !names.contains(name.as_str()) {
                    return invalid(format!("region rule names unknown partner {name:?}"));
                }
            }
        }
        if self.limits.max_event_bytes == 0 {
            return invalid("limits.maxEventBytes must be positive".into());
        }
        let cc = &self.privacy.default_phone_country_code;
        if cc.is_empty() || cc.len() > 3 || !cc.bytes().all(|b| b.is_ascii_digit()) {
            return invalid(format!("defaultPhoneCountryCode {cc:?} is not 1-3 digits"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
partners:
  - name: ads
    topic: partner.ads
    events: [checkout_completed, product_added_to_cart]
    requiredConsent: [marketing]
  - name: insights
    topic: partner.insights
    events: ["*"]
    requiredConsent: [analytics]
privacy:
  regionRules:
    - regions: [US-CA]
      require: [saleOfData]
      partners: [ads]
"#;

    #[test]
    fn parses_the_sample() {
        let c = PipelineConfig::parse(SAMPLE).expect("valid");
        assert_eq!(c.partners.len(), 2);
        assert_eq!(c.partners[0].required_consent, vec![Purpose::Marketing]);
        assert_eq!(c.privacy.url_query_allowlist.len(), 5);
        assert_eq!(c.limits.max_event_bytes, 65536);
    }

    #[test]
    fn rejects_mistakes_with_a_message() {
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
                "partners: [{name: a, topic: t, events: ['*'], requiredConsent: [gossip]}]",
                "unknown variant",
            ),
            (
                "partners: [{name: a, topic: t, events: ['*']}]\nprivacy: {regionRules: [{regions: [US], require: [marketing], partners: [b]}]}",
                "unknown partner \"b\"",
            ),
            (
                "partners: [{name: a, topic: t, events: ['*']}]\nbogus: 1",
                "unknown field",
            ),
        ];
        for (doc, want) in cases {
            let err = PipelineConfig::parse(doc).expect_err(doc).to_string();
            assert!(err.contains(want), "{doc}: {err}");
        }
    }
}
