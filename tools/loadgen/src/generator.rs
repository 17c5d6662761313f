//! Realistic storefront traffic for tests, benchmarks and the demo: valid
//! events, events without consent, and malformed messages in chosen shares.
//! Deterministic for a seed, so a test knows exactly what it sent.

use jiff::{SignedDuration, Timestamp};
use pixelpipe_crds::{KNOWN_EVENTS, Purpose};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// What a generated customer allowed, as written into the event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Consent {
    pub analytics: bool,
    pub marketing: bool,
    pub preferences: bool,
    pub sale_of_data: bool,
}

impl Consent {
    /// Whether the customer allowed `purpose`.
    pub fn grants(&self, purpose: Purpose) -> bool {
        match purpose {
            Purpose::Analytics => self.analytics,
            Purpose::Marketing => self.marketing,
            Purpose::Preferences => self.preferences,
            Purpose::SaleOfData => self.sale_of_data,
        }
    }
}

/// What kind of message was generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A valid event; its consent flags are random, mostly granted.
    Valid,
    /// A valid event whose customer granted nothing.
    NoConsent,
    /// A message the pipeline must dead-letter.
    Malformed(Malformed),
}

/// The malformed shapes the generator rotates through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Malformed {
    Truncated,
    InvalidUtf8,
    WrongType,
    MissingField,
    UnknownEvent,
    BadTimestamp,
    Empty,
    Garbage,
    DeepNesting,
    Oversized,
}

impl Malformed {
    pub const ALL: [Malformed; 10] = [
        Malformed::Truncated,
        Malformed::InvalidUtf8,
        Malformed::WrongType,
        Malformed::MissingField,
        Malformed::UnknownEvent,
        Malformed::BadTimestamp,
        Malformed::Empty,
        Malformed::Garbage,
        Malformed::DeepNesting,
        Malformed::Oversized,
    ];

    /// The dead-letter reason code the pipeline must give it.
    pub fn expected_reason(self) -> &'static str {
        match self {
            Malformed::Truncated | Malformed::DeepNesting => "malformed_json",
            Malformed::InvalidUtf8 => "invalid_utf8",
            Malformed::WrongType | Malformed::MissingField => "schema",
            Malformed::UnknownEvent => "unknown_event",
            Malformed::BadTimestamp => "invalid_field",
            Malformed::Empty => "empty",
            Malformed::Garbage => "invalid_utf8",
            Malformed::Oversized => "oversized",
        }
    }
}

/// One generated message and the facts a test needs to predict its fate.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Unique per run; also the Kafka key.
    pub id: String,
    pub kind: Kind,
    pub name: &'static str,
    pub consent: Consent,
    pub region: &'static str,
    pub email: String,
    pub phone: String,
    pub payload: Vec<u8>,
}

/// Generator settings.
#[derive(Debug, Clone)]
pub struct Mix {
    pub seed: u64,
    /// Prefix of every id, unique per run.
    pub run_id: String,
    /// Fraction of events whose customer granted nothing.
    pub no_consent_share: f64,
    /// Fraction of messages that are malformed.
    pub malformed_share: f64,
    /// Approximate size of a valid event in bytes.
    pub event_bytes: usize,
}

const REGIONS: [&str; 8] = ["US-CA", "US-NY", "US-TX", "CA-ON", "GB", "DE", "FR", "JP"];

/// A deterministic stream of [`Generated`] messages.
#[derive(Debug)]
pub struct Generator {
    mix: Mix,
    rng: SmallRng,
    seq: u64,
    malformed_seq: usize,
}

impl Generator {
    pub fn new(mix: Mix) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(mix.seed),
            mix,
            seq: 0,
            malformed_seq: 0,
        }
    }

    pub fn next_message(&mut self) -> Generated {
        let seq = self.seq;
        self.seq += 1;
        let id = format!("{}-{seq:09}", self.mix.run_id);
        let roll: f64 = self.rng.random();
        let name = KNOWN_EVENTS[self.rng.random_range(0..KNOWN_EVENTS.len())];
        let region = REGIONS[self.rng.random_range(0..REGIONS.len())];
        let consent = if roll < self.mix.malformed_share + self.mix.no_consent_share
            && roll >= self.mix.malformed_share
        {
            Consent::default()
        } else {
            Consent {
                analytics: self.rng.random_bool(0.9),
                marketing: self.rng.random_bool(0.8),
                preferences: self.rng.random_bool(0.5),
                sale_of_data: self.rng.random_bool(0.7),
            }
        };
        let email = format!("Shopper.{seq}@Example.com");
        let phone = format!("+1 555 {:03} {:04}", seq / 10_000 % 1000, seq % 10_000);
        let kind = if roll < self.mix.malformed_share {
            let m = Malformed::ALL[self.malformed_seq % Malformed::ALL.len()];
            self.malformed_seq += 1;
            Kind::Malformed(m)
        } else if consent == Consent::default() {
            Kind::NoConsent
        } else {
            Kind::Valid
        };
        let json = self.event_json(&id, name, region, &consent, &email, &phone);
        let payload = match kind {
            Kind::Malformed(m) => malform(m, json, &id),
            _ => json.into_bytes(),
        };
        Generated {
            id,
            kind,
            name,
            consent,
            region,
            email,
            phone,
            payload,
        }
    }

    fn event_json(
        &mut self,
        id: &str,
        name: &str,
        region: &str,
        c: &Consent,
        email: &str,
        phone: &str,
    ) -> String {
        let client = self.rng.random_range(0..1_000_000u32);
        let items = 1 + self.rng.random_range(0..3usize);
        let line_items: Vec<String> = (0..items)
            .map(|i| {
                format!(
                    r#"{{"productId":"gid://shop/Product/{}","title":"Item {i}","quantity":{},"price":{{"amount":{}.99,"currencyCode":"USD"}}}}"#,
                    self.rng.random_range(1000..9999u32),
                    1 + i,
                    self.rng.random_range(5..300u32)
                )
            })
            .collect();
        let mut json = format!(
            r#"{{"id":"{id}","name":"{name}","timestamp":"{ts}","shopId":{shop},"clientId":"c-{client:06}","region":"{region}","consent":{{"analytics":{a},"marketing":{m},"preferences":{p},"saleOfData":{s}}},"context":{{"url":"https://shop.example/products/tee?variant=1&email={email}&utm_source=newsletter","referrer":"https://search.example/?q=tee","userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"}},"customer":{{"email":"{email}","phone":"{phone}"}},"data":{{"cart":{{"lineItems":[{items}]}},"note":""#,
            ts = format_args!(
                "{:.3}",
                Timestamp::now() - SignedDuration::from_millis(self.rng.random_range(0..500))
            ),
            shop = 4000 + client % 50,
            a = c.analytics,
            m = c.marketing,
            p = c.preferences,
            s = c.sale_of_data,
            items = line_items.join(","),
        );
        // Pad with random text: repeated filler would compress far better
        // than real payloads and make every Kafka-side measurement optimistic.
        const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ";
        while json.len() + 4 < self.mix.event_bytes {
            json.push(ALNUM[self.rng.random_range(0..ALNUM.len())] as char);
        }
        json.push_str(r#""}}"#);
        json
    }
}

fn malform(m: Malformed, json: String, id: &str) -> Vec<u8> {
    match m {
        Malformed::Truncated => json.as_bytes()[..json.len() / 2].to_vec(),
        Malformed::InvalidUtf8 => {
            let mut b = json.into_bytes();
            b[20] = 0xff;
            b
        }
        Malformed::WrongType => json.replacen(r#""shopId":"#, r#""shopId":"x"#, 1).into_bytes(),
        Malformed::MissingField => json.replacen(r#""consent":"#, r#""consentX":"#, 1).into_bytes(),
        Malformed::UnknownEvent => {
            format!(r#"{{"id":"{id}","name":"teleported","timestamp":"2026-01-01T00:00:00Z","shopId":1,"clientId":"c","consent":{{}}}}"#)
                .into_bytes()
        }
        Malformed::BadTimestamp => {
            format!(r#"{{"id":"{id}","name":"page_viewed","timestamp":"yesterday","shopId":1,"clientId":"c","consent":{{}}}}"#)
                .into_bytes()
        }
        Malformed::Empty => Vec::new(),
        Malformed::Garbage => (0..256u32).map(|i| (i * 7 + 0x80) as u8).collect(),
        Malformed::DeepNesting => format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
        Malformed::Oversized => {
            let mut s = json;
            s.insert_str(1, &format!(r#""pad":"{}","#, "p".repeat(70 * 1024)));
            s.into_bytes()
        }
    }
}

/// Rates over time: phases of `seconds@events_per_second`, run one after the
/// other (`30@1000,60@3000,60@1000` is a steady minute, a 3x surge, steady).
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    phases: Vec<(f64, f64)>,
}

impl Schedule {
    pub fn constant(seconds: f64, per_second: f64) -> Self {
        Self {
            phases: vec![(seconds, per_second)],
        }
    }

    pub fn seconds(&self) -> f64 {
        self.phases.iter().map(|&(s, _)| s).sum()
    }

    /// Events due by `elapsed` seconds into the run.
    pub fn due(&self, elapsed: f64) -> u64 {
        let mut left = elapsed.max(0.0);
        let mut due = 0.0;
        for &(seconds, rate) in &self.phases {
            let t = left.min(seconds);
            due += t * rate;
            left -= t;
            if left <= 0.0 {
                break;
            }
        }
        due as u64
    }

    /// The rate at `elapsed` seconds (0 after the end).
    pub fn rate_at(&self, elapsed: f64) -> f64 {
        let mut start = 0.0;
        for &(seconds, rate) in &self.phases {
            if elapsed < start + seconds {
                return rate;
            }
            start += seconds;
        }
        0.0
    }
}

impl std::str::FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let phases = s
            .split(',')
            .map(|phase| {
                let (seconds, rate) = phase
                    .trim()
                    .split_once('@')
                    .ok_or_else(|| format!("{phase:?} is not SECONDS@EVENTS_PER_SECOND"))?;
                let number = |v: &str, what: &str| match v.trim().parse::<f64>() {
                    Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
                    _ => Err(format!("{phase:?}: {what} {v:?} is not a number >= 0")),
                };
                Ok((number(seconds, "seconds")?, number(rate, "rate")?))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self { phases })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pixelpipe_worker::event::decode;

    #[test]
    fn a_schedule_runs_its_phases_in_order() {
        let s: Schedule = "10@100, 5@300,10@100".parse().expect("schedule");
        assert_eq!(s.seconds(), 25.0);
        assert_eq!(s.due(5.0), 500);
        assert_eq!(s.due(12.0), 1_000 + 600);
        assert_eq!(s.due(100.0), 1_000 + 1_500 + 1_000);
        assert_eq!(s.rate_at(11.0), 300.0);
        assert_eq!(s.rate_at(25.0), 0.0);
        assert!("10x100".parse::<Schedule>().is_err());
        assert!("10@-1".parse::<Schedule>().is_err());
    }

    fn mix() -> Mix {
        Mix {
            seed: 7,
            run_id: "t".into(),
            no_consent_share: 0.2,
            malformed_share: 0.1,
            event_bytes: 1024,
        }
    }

    #[test]
    fn is_deterministic_and_sized() {
        let a: Vec<_> = {
            let mut g = Generator::new(mix());
            (0..50).map(|_| g.next_message()).collect()
        };
        let mut g = Generator::new(mix());
        for x in &a {
            let y = g.next_message();
            assert_eq!((x.id.as_str(), x.kind), (y.id.as_str(), y.kind));
        }
        let valid = a
            .iter()
            .find(|g| g.kind == Kind::Valid)
            .expect("some valid");
        assert!(
            (1000..1100).contains(&valid.payload.len()),
            "{}",
            valid.payload.len()
        );
    }

    #[test]
    fn shares_and_shapes_hold() {
        let mut g = Generator::new(mix());
        let all: Vec<_> = (0..10_000).map(|_| g.next_message()).collect();
        let count = |f: &dyn Fn(&Kind) -> bool| all.iter().filter(|g| f(&g.kind)).count();
        let malformed = count(&|k| matches!(k, Kind::Malformed(_)));
        let no_consent = count(&|k| *k == Kind::NoConsent);
        assert!((800..1200).contains(&malformed), "{malformed}");
        assert!((1700..2300).contains(&no_consent), "{no_consent}");
        for m in all
            .iter()
            .filter(|g| g.kind != Kind::Valid && g.kind != Kind::NoConsent)
        {
            let decoded = decode(Some(&m.payload), 64 * 1024);
            if let Ok(e) = decoded {
                // Only the validate stage can catch these two.
                assert!(
                    matches!(
                        m.kind,
                        Kind::Malformed(Malformed::UnknownEvent | Malformed::BadTimestamp)
                    ),
                    "{}",
                    e.id()
                );
            }
        }
        for v in all
            .iter()
            .filter(|g| matches!(g.kind, Kind::Valid | Kind::NoConsent))
        {
            decode(Some(&v.payload), 64 * 1024).expect("valid events decode");
        }
    }
}
