//! The worker's pipeline file: the parts of a PixelPipeline's spec that say
//! what happens to events (partners, privacy rules, limits), in the spec's own
//! types. The operator writes it into the worker's ConfigMap; the worker reads
//! it at start. Kafka addresses, topics and pool sizes reach the worker as
//! flags ([`crate::worker::WorkerArgs`]).

use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::check::{SpecError, check_partners};
use crate::sizing::LimitsSpec;
use crate::spec::{PartnerSpec, PixelPipelineSpec, PrivacySpec};

/// Everything a worker reads from its pipeline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PipelineFile {
    /// Where events go. One event can reach several partners.
    pub partners: Vec<PartnerSpec>,
    #[serde(default)]
    pub privacy: PrivacySpec,
    #[serde(default)]
    pub limits: LimitsSpec,
}

#[derive(Debug, Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid pipeline file: {0}")]
    Yaml(#[from] crate::yaml::Error),
    #[error("invalid pipeline file: {0}")]
    Invalid(#[from] SpecError),
}

impl PipelineFile {
    /// The file for a spec.
    pub fn of(spec: &PixelPipelineSpec) -> Self {
        Self {
            partners: spec.partners.clone(),
            privacy: spec.privacy.clone(),
            limits: spec.limits.clone(),
        }
    }

    /// Reads and checks a pipeline file.
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and checks a pipeline document.
    pub fn parse(text: &str) -> Result<Self, FileError> {
        let file: Self = crate::yaml::from_str(text)?;
        file.check()?;
        Ok(file)
    }

    /// The same checks as [`PixelPipelineSpec::check`] makes of these parts.
    pub fn check(&self) -> Result<(), SpecError> {
        check_partners(&self.partners, &self.privacy)?;
        if self.limits.max_event_bytes == 0 {
            return Err(SpecError::ZeroEventBytes);
        }
        Ok(())
    }

    /// The file's text.
    pub fn to_yaml(&self) -> Result<String, crate::yaml::Error> {
        crate::yaml::to_string(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Purpose;

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
    fn parses_the_sample_with_defaults() {
        let f = PipelineFile::parse(SAMPLE).expect("valid");
        assert_eq!(f.partners.len(), 2);
        assert_eq!(f.partners[0].required_consent, vec![Purpose::Marketing]);
        assert_eq!(f.privacy.query_allowlist().len(), 5);
        assert_eq!(f.privacy.phone_country_code(), "1");
        assert_eq!(f.limits.max_event_bytes, 65536);
    }

    #[test]
    fn what_is_written_is_read_back() {
        let f = PipelineFile::parse(SAMPLE).expect("valid");
        let again = PipelineFile::parse(&f.to_yaml().expect("yaml")).expect("valid");
        assert_eq!(f, again);
    }
}
