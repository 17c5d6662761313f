//! What a pipeline must do with each generated message, stated from the
//! PixelPipeline spec on its own terms (not with the worker's routing code),
//! so the end-to-end check is independent of the code it checks.

use pixelpipe_crds::PixelPipelineSpec;
use pixelpipe_loadgen::{Generated, Kind};

/// Where one message must end up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Delivered to these partners (names), at least once each.
    Delivered(Vec<String>),
    /// Shared with nobody: no partner's events, consent and region rules allow it.
    NotShared,
    DeadLettered,
}

pub fn fate(spec: &PixelPipelineSpec, g: &Generated) -> Fate {
    if matches!(g.kind, Kind::Malformed(_)) {
        return Fate::DeadLettered;
    }
    let partners: Vec<String> = spec
        .partners
        .iter()
        .filter(|p| p.events.iter().any(|e| e == "*" || e == g.name))
        .filter(|p| p.required_consent.iter().all(|&c| g.consent.grants(c)))
        .filter(|p| {
            spec.privacy.region_rules.iter().all(|r| {
                let applies = r.regions.iter().any(|x| x == g.region)
                    && r.partners.as_ref().is_none_or(|ps| ps.contains(&p.name));
                !applies || r.require.iter().all(|&c| g.consent.grants(c))
            })
        })
        .map(|p| p.name.clone())
        .collect();
    if partners.is_empty() {
        Fate::NotShared
    } else {
        Fate::Delivered(partners)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pixelpipe_crds::PixelPipeline;
    use pixelpipe_loadgen::{Consent, Generator, Malformed, Mix};

    fn spec() -> PixelPipelineSpec {
        let text = include_str!("../../../manifests/samples/storefront.yaml");
        pixelpipe_crds::yaml::from_str::<PixelPipeline>(text)
            .expect("sample")
            .spec
    }

    fn message(name: &'static str, region: &'static str, consent: Consent) -> Generated {
        let mut g = Generator::new(Mix {
            seed: 1,
            run_id: "t".into(),
            no_consent_share: 0.0,
            malformed_share: 0.0,
            event_bytes: 256,
        })
        .next_message();
        g.kind = Kind::Valid;
        g.name = name;
        g.region = region;
        g.consent = consent;
        g
    }

    #[test]
    fn the_sample_routes_by_event_consent_and_region() {
        let all = Consent {
            analytics: true,
            marketing: true,
            preferences: true,
            sale_of_data: true,
        };
        let s = spec();
        assert_eq!(
            fate(&s, &message("checkout_completed", "GB", all)),
            Fate::Delivered(vec!["ads".into(), "insights".into(), "audiences".into()])
        );
        // California without sale-of-data consent: no ads, no audiences.
        let no_sale = Consent {
            sale_of_data: false,
            ..all
        };
        assert_eq!(
            fate(&s, &message("checkout_completed", "US-CA", no_sale)),
            Fate::Delivered(vec!["insights".into()])
        );
        assert_eq!(
            fate(&s, &message("page_viewed", "GB", Consent::default())),
            Fate::NotShared
        );
        let mut bad = message("page_viewed", "GB", all);
        bad.kind = Kind::Malformed(Malformed::Truncated);
        assert_eq!(fate(&s, &bad), Fate::DeadLettered);
    }
}
