//! Which partners may receive an event: the event name each partner wants, the
//! consent it requires, and regional rules that tighten that consent.

use pixelpipe_crds::{KNOWN_EVENTS, PipelineFile, Purpose};

use crate::event::Consent;

/// A set of partner indices (positions in the config's partner list).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartnerSet(u64);

impl PartnerSet {
    pub fn insert(&mut self, i: usize) {
        self.0 |= 1 << i;
    }
    pub fn contains(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }
    /// The indices in the set, lowest first: one step per partner in it, not
    /// per partner there could be (this runs for every event, up to three
    /// times).
    pub fn iter(self) -> impl Iterator<Item = usize> {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            let i = rest.trailing_zeros() as usize;
            (rest != 0).then(|| {
                rest &= rest - 1;
                i
            })
        })
    }
}

/// Why a valid event reached no partner. A closed set: it labels metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum DropReason {
    /// No partner asks for this event name.
    NotRouted,
    /// The customer did not allow what the interested partners require.
    NoConsent,
    /// Consent was enough in general, but a regional rule required more.
    RegionOptOut,
}

impl DropReason {
    pub const ALL: &'static [DropReason] = <DropReason as strum::VariantArray>::VARIANTS;

    /// Position in [`DropReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn code(self) -> &'static str {
        self.into()
    }
}

/// Purposes as a bit set, so a consent check is one AND.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Purposes(u8);

impl Purposes {
    fn of(list: &[Purpose]) -> Self {
        Self(list.iter().fold(0, |acc, p| acc | Self::bit(*p)))
    }
    fn bit(p: Purpose) -> u8 {
        match p {
            Purpose::Analytics => 1,
            Purpose::Marketing => 2,
            Purpose::Preferences => 4,
            Purpose::SaleOfData => 8,
        }
    }
    fn granted(c: &Consent) -> Self {
        Self(
            u8::from(c.analytics)
                | u8::from(c.marketing) << 1
                | u8::from(c.preferences) << 2
                | u8::from(c.sale_of_data) << 3,
        )
    }
    fn covered_by(self, granted: Purposes) -> bool {
        self.0 & !granted.0 == 0
    }
}

#[derive(Debug)]
struct Partner {
    /// Index into KNOWN_EVENTS, as a bit set.
    wants: u64,
    requires: Purposes,
}

#[derive(Debug)]
struct Rule {
    regions: Vec<String>,
    requires: Purposes,
    partners: PartnerSet,
}

/// The outcome for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub partners: PartnerSet,
    /// Partners that wanted the event but were refused by consent.
    pub refused_consent: PartnerSet,
    /// Partners refused only because of a regional rule.
    pub refused_region: PartnerSet,
}

impl Decision {
    /// Why nobody gets the event, if nobody does.
    pub fn drop_reason(&self) -> Option<DropReason> {
        if !self.partners.is_empty() {
            None
        } else if !self.refused_consent.is_empty() {
            Some(DropReason::NoConsent)
        } else if !self.refused_region.is_empty() {
            Some(DropReason::RegionOptOut)
        } else {
            Some(DropReason::NotRouted)
        }
    }
}

/// The compiled routing table.
#[derive(Debug)]
pub struct Router {
    partners: Vec<Partner>,
    rules: Vec<Rule>,
}

/// Index of a known event name, or `None`.
pub fn event_index(name: &str) -> Option<usize> {
    KNOWN_EVENTS.iter().position(|k| *k == name)
}

impl Router {
    pub fn new(config: &PipelineFile) -> Self {
        let partners = config
            .partners
            .iter()
            .map(|p| Partner {
                wants: p.events.iter().fold(0u64, |acc, e| {
                    if e == "*" {
                        u64::MAX
                    } else {
                        acc | event_index(e).map_or(0, |i| 1 << i)
                    }
                }),
                requires: Purposes::of(&p.required_consent),
            })
            .collect();
        let rules = config
            .privacy
            .region_rules
            .iter()
            .map(|r| {
                let mut set = PartnerSet::default();
                for (i, p) in config.partners.iter().enumerate() {
                    if r.partners
                        .as_ref()
                        .is_none_or(|names| names.contains(&p.name))
                    {
                        set.insert(i);
                    }
                }
                Rule {
                    regions: r.regions.clone(),
                    requires: Purposes::of(&r.require),
                    partners: set,
                }
            })
            .collect();
        Self { partners, rules }
    }

    /// Decides which partners receive an event. `event` is the index from
    /// [`event_index`].
    pub fn route(&self, event: usize, region: Option<&str>, consent: &Consent) -> Decision {
        let granted = Purposes::granted(consent);
        let mut d = Decision {
            partners: PartnerSet::default(),
            refused_consent: PartnerSet::default(),
            refused_region: PartnerSet::default(),
        };
        for (i, p) in self.partners.iter().enumerate() {
            if p.wants & (1 << event) == 0 {
                continue;
            }
            if !p.requires.covered_by(granted) {
                d.refused_consent.insert(i);
                continue;
            }
            let regional = self.regional_requirements(i, region);
            if !regional.covered_by(granted) {
                d.refused_region.insert(i);
                continue;
            }
            d.partners.insert(i);
        }
        d
    }

    fn regional_requirements(&self, partner: usize, region: Option<&str>) -> Purposes {
        let Some(region) = region else {
            return Purposes::default();
        };
        self.rules
            .iter()
            .filter(|r| {
                r.partners.contains(partner) && r.regions.iter().any(|e| region_matches(e, region))
            })
            .fold(Purposes::default(), |acc, r| Purposes(acc.0 | r.requires.0))
    }
}

/// `US` matches `US` and `US-CA`; `US-CA` matches only `US-CA`. Case-insensitive.
fn region_matches(entry: &str, region: &str) -> bool {
    region.len() >= entry.len()
        && region[..entry.len()].eq_ignore_ascii_case(entry)
        && (region.len() == entry.len() || region.as_bytes()[entry.len()] == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use pixelpipe_crds::MAX_PARTNERS;
    use proptest::prelude::*;

    proptest! {
        /// The set gives back what was put in it, lowest first.
        #[test]
        fn a_partner_set_iterates_its_members(members in prop::collection::btree_set(0..MAX_PARTNERS, 0..=MAX_PARTNERS)) {
            let mut set = PartnerSet::default();
            members.iter().for_each(|&i| set.insert(i));
            prop_assert_eq!(set.len(), members.len());
            prop_assert!(set.iter().eq(members.iter().copied()));
        }
    }

    fn router() -> Router {
        let config = PipelineFile::parse(
            r#"
partners:
  - {name: ads, topic: t.ads, events: [checkout_completed, product_added_to_cart], requiredConsent: [marketing]}
  - {name: insights, topic: t.insights, events: ["*"], requiredConsent: [analytics]}
  - {name: broker, topic: t.broker, events: [checkout_completed], requiredConsent: [marketing, saleOfData]}
privacy:
  regionRules:
    - {regions: [US-CA, EU], require: [saleOfData], partners: [ads]}
"#,
        )
        .expect("valid");
        Router::new(&config)
    }

    fn consent(analytics: bool, marketing: bool, sale: bool) -> Consent {
        Consent {
            analytics,
            marketing,
            preferences: false,
            sale_of_data: sale,
        }
    }

    fn ev(name: &str) -> usize {
        event_index(name).expect("known")
    }

    #[test]
    fn fans_out_to_every_partner_that_wants_it_and_is_allowed() {
        let d = router().route(
            ev("checkout_completed"),
            Some("US-NY"),
            &consent(true, true, true),
        );
        assert_eq!(d.partners.iter().collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(d.drop_reason(), None);
    }

    #[test]
    fn consent_is_required_per_partner() {
        let r = router();
        let d = r.route(ev("checkout_completed"), None, &consent(true, false, false));
        assert_eq!(d.partners.iter().collect::<Vec<_>>(), vec![1]);
        assert_eq!(d.refused_consent.iter().collect::<Vec<_>>(), vec![0, 2]);
        let d = r.route(
            ev("checkout_completed"),
            None,
            &consent(false, false, false),
        );
        assert!(d.partners.is_empty());
        assert_eq!(d.drop_reason(), Some(DropReason::NoConsent));
    }

    #[test]
    fn regional_rules_tighten_consent() {
        let r = router();
        let cart = ev("product_added_to_cart");
        let d = r.route(cart, Some("US-CA"), &consent(true, true, false));
        assert_eq!(d.partners.iter().collect::<Vec<_>>(), vec![1]);
        assert_eq!(d.refused_region.iter().collect::<Vec<_>>(), vec![0]);
        let d = r.route(cart, Some("EU-FR"), &consent(true, true, false));
        assert_eq!(d.refused_region.iter().collect::<Vec<_>>(), vec![0]);
        let d = r.route(cart, Some("EUROPA"), &consent(true, true, false));
        assert_eq!(d.partners.iter().collect::<Vec<_>>(), vec![0, 1]);
        let d = r.route(cart, Some("us-ca"), &consent(true, true, true));
        assert_eq!(d.partners.iter().collect::<Vec<_>>(), vec![0, 1]);
        // Nobody left, and a regional rule was among the refusals.
        let d = r.route(cart, Some("US-CA"), &consent(false, true, false));
        assert!(d.partners.is_empty() && d.refused_region.contains(0));
        assert_eq!(d.drop_reason(), Some(DropReason::NoConsent));
        let only_ads = Router::new(
            &PipelineFile::parse(
                "partners: [{name: ads, topic: t, events: ['*'], requiredConsent: [marketing]}]
privacy: {regionRules: [{regions: [US-CA], require: [saleOfData]}]}",
            )
            .expect("valid"),
        );
        let d = only_ads.route(cart, Some("US-CA"), &consent(false, true, false));
        assert_eq!(d.drop_reason(), Some(DropReason::RegionOptOut));
    }

    #[test]
    fn unwanted_events_are_not_routed() {
        let config =
            PipelineFile::parse("partners: [{name: a, topic: t, events: [checkout_completed]}]")
                .expect("valid");
        let d = Router::new(&config).route(ev("page_viewed"), None, &consent(true, true, true));
        assert_eq!(d.drop_reason(), Some(DropReason::NotRouted));
    }
}
