//! What the API server's schema cannot judge about a spec: the operator checks
//! it before building anything, and reports a failure as `Degraded`.

use pixelpipe_crds::PixelPipeline;
use pixelpipe_worker::config::PipelineConfig;

use crate::children::pipeline_file;

/// Why a spec cannot be run, in words for `kubectl describe`.
pub fn check(pp: &PixelPipeline) -> Result<(), String> {
    // The workers would refuse a pipeline file their parser rejects (unknown
    // event names, a partner listed twice, a region rule naming no partner...),
    // so the file is checked with that same parser.
    PipelineConfig::parse(&pipeline_file(&pp.spec)).map_err(|e| e.to_string())?;
    let mut topics = std::collections::HashSet::new();
    for p in &pp.spec.partners {
        if !topics.insert(p.topic.as_str()) {
            return Err(format!(
                "partner {:?} writes to topic {:?}, which another partner already uses",
                p.name, p.topic
            ));
        }
    }
    if pp.spec.worker.image.trim().is_empty() {
        return Err("worker.image is empty".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PixelPipeline {
        serde_yaml::from_str(include_str!("../../manifests/samples/storefront.yaml"))
            .expect("sample parses")
    }

    #[test]
    fn the_sample_is_valid() {
        assert_eq!(check(&sample()), Ok(()));
    }

    #[test]
    fn unknown_event_names_are_reported_with_the_known_ones() {
        let mut pp = sample();
        pp.spec.partners[0].events = vec!["page_veiwed".into()];
        let err = check(&pp).expect_err("typo accepted");
        assert!(err.contains("unknown event \"page_veiwed\""), "{err}");
        assert!(err.contains("page_viewed"), "{err}");
    }

    #[test]
    fn partners_must_not_share_names_or_topics() {
        let mut pp = sample();
        pp.spec.partners[1].name = "ads".into();
        assert!(check(&pp).expect_err("dup name").contains("listed twice"));
        let mut pp = sample();
        pp.spec.partners[1].topic = "partner.ads".into();
        assert!(
            check(&pp)
                .expect_err("dup topic")
                .contains("another partner")
        );
    }

    #[test]
    fn region_rules_must_name_existing_partners() {
        let mut pp = sample();
        pp.spec.privacy.region_rules[0].partners = Some(vec!["nobody".into()]);
        assert!(check(&pp).expect_err("rule").contains("unknown partner"));
    }
}
