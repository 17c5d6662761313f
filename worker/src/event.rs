//! The storefront event as it arrives on the input topic, and its decoder.
//!
//! Decoding checks bytes, UTF-8, JSON syntax and types. Everything the schema
//! cannot say (known event names, sane timestamps) is the validate stage's job.
//! Unknown fields are accepted and never forwarded: only what this type names can
//! reach a partner.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Why a message went to the dead-letter topic. The code is a metric label and a
/// header, so the set is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum DeadReason {
    /// The message had no payload or an empty one.
    Empty,
    /// The payload exceeds the configured maximum event size.
    Oversized,
    /// The payload is not valid UTF-8.
    InvalidUtf8,
    /// The payload is not JSON (syntax error, truncation, nesting too deep).
    MalformedJson,
    /// JSON, but not an event: wrong types, missing or duplicate fields.
    Schema,
    /// The event name is not one Pixelpipe knows.
    UnknownEvent,
    /// A field has a value the schema allows but the event cannot have.
    InvalidField,
    /// A partner payload could not be written (a bug, never data).
    Unserializable,
}

impl DeadReason {
    /// Every reason, for pre-registering metrics.
    pub const ALL: &'static [DeadReason] = <DeadReason as strum::VariantArray>::VARIANTS;

    /// The stable, machine-readable code.
    pub fn code(self) -> &'static str {
        self.into()
    }

    /// The stage that gives this reason.
    pub fn stage(self) -> pixelpipe_crds::Stage {
        use pixelpipe_crds::Stage;
        match self {
            DeadReason::UnknownEvent | DeadReason::InvalidField => Stage::Validate,
            DeadReason::Unserializable => Stage::Augment,
            _ => Stage::Parse,
        }
    }
}

/// A rejected message: the reason code and a sentence for the person reading the
/// dead-letter topic. The detail never quotes the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: DeadReason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: DeadReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// What the customer allowed. Every flag defaults to "not allowed".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Consent {
    #[serde(default)]
    pub analytics: bool,
    #[serde(default)]
    pub marketing: bool,
    #[serde(default)]
    pub preferences: bool,
    #[serde(default)]
    pub sale_of_data: bool,
}

/// Where the event happened. URLs may carry personal data in query strings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    pub url: Option<String>,
    pub referrer: Option<String>,
    pub user_agent: Option<String>,
}

/// Raw customer identifiers. They are hashed by augment and never forwarded.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// A decoded storefront event.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: String,
    pub name: String,
    pub timestamp: String,
    pub shop_id: u64,
    pub client_id: String,
    #[serde(default)]
    pub region: Option<String>,
    pub consent: Consent,
    #[serde(default)]
    pub context: Context,
    #[serde(default)]
    pub customer: Customer,
    /// Event-specific payload, kept as raw JSON text: it is forwarded as is, and
    /// building a tree of it would cost more than the rest of the event.
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
}

/// Deepest object/array nesting accepted anywhere in an event.
pub const MAX_DEPTH: usize = 32;

/// What a single pass over the raw text finds that serde_json does not check
/// in the parts it skips (unknown fields) or keeps raw (`data`).
#[derive(Debug, PartialEq, Eq)]
enum Structure {
    Fine,
    /// Nesting of `[` and `{` outside strings went past [`MAX_DEPTH`].
    TooDeep,
    /// A `\u` escape of half a surrogate pair, at this byte: not a character,
    /// and many partners' parsers reject or mangle it.
    LoneSurrogate(usize),
}

fn scan(bytes: &[u8]) -> Structure {
    let (mut depth, mut in_string) = (0usize, false);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        if in_string {
            match b {
                b'"' => in_string = false,
                b'\\' if bytes.get(i) == Some(&b'u') => {
                    let at = i - 1;
                    match surrogate(bytes, i + 1) {
                        Some(High)
                            if surrogate(bytes, i + 7) == Some(Low)
                                && bytes.get(i + 5..i + 7) == Some(b"\\u") =>
                        {
                            i += 11
                        }
                        Some(_) => return Structure::LoneSurrogate(at),
                        None => i += 5,
                    }
                }
                b'\\' => i += 1,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Structure::TooDeep;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Structure::Fine
}

#[derive(Debug, PartialEq, Eq)]
enum Half {
    High,
    Low,
}
use Half::{High, Low};

/// Which half of a surrogate pair the four hex digits at `at` encode, if any.
fn surrogate(bytes: &[u8], at: usize) -> Option<Half> {
    let hex = std::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
    match u16::from_str_radix(hex, 16).ok()? {
        0xD800..=0xDBFF => Some(High),
        0xDC00..=0xDFFF => Some(Low),
        _ => None,
    }
}

/// Decodes one message payload into an [`Event`].
pub fn decode(payload: Option<&[u8]>, max_bytes: usize) -> Result<Event, Rejection> {
    let bytes = match payload {
        None | Some([]) => return Err(Rejection::new(DeadReason::Empty, "empty payload")),
        Some(b) => b,
    };
    if bytes.len() > max_bytes {
        return Err(Rejection::new(
            DeadReason::Oversized,
            format!("payload is {} bytes, limit {max_bytes}", bytes.len()),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Rejection::new(
            DeadReason::InvalidUtf8,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        )
    })?;
    // serde_json skips unknown fields and keeps `data` raw without a depth
    // limit or a surrogate check; partners should not receive either.
    match scan(bytes) {
        Structure::Fine => {}
        Structure::TooDeep => {
            return Err(Rejection::new(
                DeadReason::MalformedJson,
                format!("nesting deeper than {MAX_DEPTH} levels"),
            ));
        }
        Structure::LoneSurrogate(at) => {
            return Err(Rejection::new(
                DeadReason::MalformedJson,
                format!("unpaired surrogate escape at byte {at}"),
            ));
        }
    }
    serde_json::from_str::<Event>(text).map_err(|e| {
        let reason = match e.classify() {
            serde_json::error::Category::Data => DeadReason::Schema,
            _ => DeadReason::MalformedJson,
        };
        Rejection::new(reason, e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"id":"e1","name":"page_viewed","timestamp":"2026-11-27T05:00:01.123Z",
        "shopId":4211,"clientId":"c-1","region":"US-CA",
        "consent":{"analytics":true,"marketing":false},
        "context":{"url":"https://shop.example/p?email=a@b.c","userAgent":"UA"},
        "customer":{"email":" Ana@Example.com ","phone":"+1 555 0100"},
        "data":{"product":{"id":"p1","price":{"amount":12.5,"currencyCode":"USD"}}},
        "extra":"ignored"}"#;

    fn reason(payload: &[u8]) -> DeadReason {
        match decode(Some(payload), 64 * 1024) {
            Ok(_) => panic!("decoded {:?}", String::from_utf8_lossy(payload)),
            Err(r) => r.reason,
        }
    }

    #[test]
    fn reason_codes_are_snake_case() {
        assert_eq!(DeadReason::MalformedJson.code(), "malformed_json");
        assert_eq!(DeadReason::InvalidUtf8.code(), "invalid_utf8");
        assert_eq!(DeadReason::ALL.len(), 8);
    }

    #[test]
    fn decodes_a_full_event() {
        let e = decode(Some(GOOD.as_bytes()), 64 * 1024).expect("decodes");
        assert_eq!(e.name, "page_viewed");
        assert_eq!(e.shop_id, 4211);
        assert!(e.consent.analytics && !e.consent.marketing && !e.consent.sale_of_data);
        assert_eq!(e.customer.email.as_deref(), Some(" Ana@Example.com "));
        assert!(e.data.expect("data").get().contains("currencyCode"));
    }

    #[test]
    fn classifies_bad_input() {
        assert_eq!(reason(b""), DeadReason::Empty);
        assert_eq!(reason(&[0xff, 0xfe, b'{']), DeadReason::InvalidUtf8);
        assert_eq!(reason(&GOOD.as_bytes()[..40]), DeadReason::MalformedJson);
        assert_eq!(reason(b"NaN"), DeadReason::MalformedJson);
        assert_eq!(
            reason(&GOOD.replace("4211", "\"4211\"").into_bytes()),
            DeadReason::Schema
        );
        assert_eq!(
            reason(&GOOD.replace("\"shopId\":4211,", "").into_bytes()),
            DeadReason::Schema
        );
        assert_eq!(
            reason(
                &GOOD
                    .replace("\"id\":\"e1\",", "\"id\":\"e1\",\"id\":\"e2\",")
                    .into_bytes()
            ),
            DeadReason::Schema
        );
        assert_eq!(reason(b"[1,2,3]"), DeadReason::Schema);
        assert_eq!(reason(b"null"), DeadReason::Schema);
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let nested = GOOD.replace("\"extra\":\"ignored\"", &format!("\"extra\":{deep}"));
        assert_eq!(
            decode(Some(nested.as_bytes()), usize::MAX)
                .map(|_| ())
                .map_err(|r| r.reason),
            Err(DeadReason::MalformedJson)
        );
        assert_eq!(
            decode(Some(GOOD.as_bytes()), 10)
                .map(|_| ())
                .map_err(|r| r.reason),
            Err(DeadReason::Oversized)
        );
    }

    #[test]
    fn counts_nesting_outside_strings_only() {
        let deep = |n| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(scan(deep(MAX_DEPTH).as_bytes()), Structure::Fine);
        assert_eq!(scan(deep(MAX_DEPTH + 1).as_bytes()), Structure::TooDeep);
        let in_string = format!("{{\"a\":\"{}\"}}", "[".repeat(100));
        assert_eq!(scan(in_string.as_bytes()), Structure::Fine);
        let escaped_quote = format!("{{\"a\":\"\\\"{}\"}}", "[".repeat(100));
        assert_eq!(scan(escaped_quote.as_bytes()), Structure::Fine);
    }

    #[test]
    fn finds_unpaired_surrogates_and_accepts_pairs() {
        assert_eq!(scan(br#"["\ud83d\ude00"]"#), Structure::Fine);
        assert_eq!(
            scan(br#"["\\ud800"]"#),
            Structure::Fine,
            "an escaped backslash"
        );
        assert_eq!(scan(br#"["x\ud800"]"#), Structure::LoneSurrogate(3));
        assert_eq!(scan(br#"["\ude00\ud83d"]"#), Structure::LoneSurrogate(2));
        assert_eq!(scan(br#"["\ud83d\n"]"#), Structure::LoneSurrogate(2));
        assert_eq!(scan(br#"["\ud83d"#), Structure::LoneSurrogate(2));
        assert_eq!(
            scan(br#"["\u00e9\u"]"#),
            Structure::Fine,
            "serde_json rejects the short one"
        );
    }

    #[test]
    fn rejects_lone_surrogates_in_forwarded_strings() {
        let bad = GOOD.replace("c-1", "c-\\ud800");
        assert!(matches!(
            reason(bad.as_bytes()),
            DeadReason::MalformedJson | DeadReason::Schema
        ));
        // `data` is forwarded as raw text and unknown fields are skipped: a lone
        // surrogate there would reach partners' parsers unchecked.
        for (field, text) in [
            ("data", "\\udc00"),
            ("data", "a\\ud800b"),
            ("data", "\\ud800\\u0041"),
            ("extra", "\\ud83d"),
        ] {
            let bad = if field == "data" {
                GOOD.replace("\"id\":\"p1\"", &format!("\"id\":\"{text}\""))
            } else {
                GOOD.replace("\"ignored\"", &format!("\"{text}\""))
            };
            assert_ne!(bad, GOOD);
            assert_eq!(
                reason(bad.as_bytes()),
                DeadReason::MalformedJson,
                "{text} in {field}"
            );
        }
        // A proper pair (an emoji) is fine anywhere.
        let pair = GOOD.replace("\"id\":\"p1\"", "\"id\":\"\\ud83d\\ude00\"");
        assert!(decode(Some(pair.as_bytes()), 64 * 1024).is_ok());
    }
}
