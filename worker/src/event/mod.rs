//! The storefront event as it arrives on the input topic, and its decoder.
//!
//! Decoding checks bytes, UTF-8, JSON syntax and types. Everything the schema
//! cannot say (known event names, sane timestamps) is the validate stage's job.
//! Unknown fields are accepted and never forwarded: only what this type names can
//! reach a partner.
//!
//! The decoder reads the payload once ([`read`]): the typed fields, and every
//! other value checked as it is skipped ([`json`]) for what partners' parsers
//! would choke on or read differently: nesting past [`MAX_DEPTH`], unpaired
//! surrogate escapes, numbers outside the IEEE-754 double range.

mod json;
mod lex;
mod read;
mod scan;
mod text;

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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Consent {
    pub analytics: bool,
    pub marketing: bool,
    pub preferences: bool,
    pub sale_of_data: bool,
}

/// Where one of an event's strings sits: in the payload it arrived in, or,
/// when it had escapes, in the event's buffer of decoded strings.
///
/// Offsets are `u32`: [`decode_in_place`] takes no payload past
/// [`MAX_PAYLOAD`], and decoding only shortens strings. With eleven spans,
/// that makes the event 192 bytes instead of about 330.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
    decoded: bool,
}

impl Span {
    const EMPTY: Span = Span {
        start: 0,
        end: 0,
        decoded: false,
    };

    /// Bytes `start..end` of the payload, or of the decoded strings.
    fn new(start: usize, end: usize, decoded: bool) -> Self {
        // Both within a payload of at most MAX_PAYLOAD bytes.
        Self {
            start: start as u32,
            end: end as u32,
            decoded,
        }
    }
}

/// A decoded storefront event. It owns the payload it was read from, and
/// its strings are spans of it: decoding allocates nothing for them and
/// copies nothing, except strings with escapes, which are decoded into one
/// buffer of their own (empty, so unallocated, for nearly every event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The payload, as it arrived.
    text: String,
    /// The strings that had escapes, decoded.
    decoded: String,
    id: Span,
    name: Span,
    timestamp: Span,
    pub shop_id: u64,
    client_id: Span,
    region: Option<Span>,
    pub consent: Consent,
    url: Option<Span>,
    referrer: Option<Span>,
    user_agent: Option<Span>,
    email: Option<Span>,
    phone: Option<Span>,
    data: Option<Span>,
}

impl Event {
    fn get(&self, span: Span) -> &str {
        let text = if span.decoded {
            &self.decoded
        } else {
            &self.text
        };
        text.get(span.start as usize..span.end as usize)
            .unwrap_or_default()
    }

    /// Asks for the event and its payload ahead of a stage's work on it
    /// ([`crate::prefetch`]).
    #[inline]
    pub fn prefetch(&self) {
        crate::prefetch::value(self);
        crate::prefetch::bytes(self.text.as_bytes());
    }

    /// The payload the event was decoded from, as it arrived: a later
    /// stage that dead-letters the event puts it back in its message.
    pub fn into_payload(self) -> Vec<u8> {
        self.text.into_bytes()
    }

    fn get_opt(&self, span: Option<Span>) -> Option<&str> {
        span.map(|s| self.get(s))
    }

    pub fn id(&self) -> &str {
        self.get(self.id)
    }

    pub fn name(&self) -> &str {
        self.get(self.name)
    }

    /// The event's own time, as the storefront wrote it (validate parses it).
    pub fn timestamp(&self) -> &str {
        self.get(self.timestamp)
    }

    pub fn client_id(&self) -> &str {
        self.get(self.client_id)
    }

    pub fn region(&self) -> Option<&str> {
        self.get_opt(self.region)
    }

    /// Where the event happened. URLs may carry personal data in query strings.
    pub fn url(&self) -> Option<&str> {
        self.get_opt(self.url)
    }

    pub fn referrer(&self) -> Option<&str> {
        self.get_opt(self.referrer)
    }

    pub fn user_agent(&self) -> Option<&str> {
        self.get_opt(self.user_agent)
    }

    /// A raw customer identifier: hashed by augment, never forwarded.
    pub fn email(&self) -> Option<&str> {
        self.get_opt(self.email)
    }

    /// A raw customer identifier: hashed by augment, never forwarded.
    pub fn phone(&self) -> Option<&str> {
        self.get_opt(self.phone)
    }

    /// Whether every string the accessors return arrived without escapes, so
    /// holds no `"`, `\\` or control character: written into JSON as it is,
    /// with nothing to escape and nothing to check. `data` is JSON text and
    /// not one of these strings.
    pub fn strings_are_plain(&self) -> bool {
        // An escape decodes to at least one character.
        self.decoded.is_empty()
    }

    /// Event-specific payload, exactly the JSON text that arrived, checked by
    /// the decoder (syntax, nesting, escapes, numbers): it is forwarded as
    /// is, and building a tree of it would cost more than the rest of the event.
    pub fn data(&self) -> Option<&str> {
        self.get_opt(self.data)
    }
}

/// Deepest object/array nesting accepted anywhere in an event.
pub const MAX_DEPTH: usize = 32;

/// The longest payload any limit lets through: `limits.maxEventBytes` is a
/// `u32`, and so are an event's offsets.
const MAX_PAYLOAD: usize = u32::MAX as usize;

/// Decodes one message payload into an [`Event`], which takes the payload
/// (no copy); a payload that does not decode stays where it was, for the
/// dead letter.
pub fn decode_in_place(
    payload: &mut Option<Vec<u8>>,
    max_bytes: usize,
) -> Result<Event, Rejection> {
    let len = payload.as_ref().map_or(0, Vec::len);
    let max_bytes = max_bytes.min(MAX_PAYLOAD);
    if len == 0 {
        return Err(Rejection::new(DeadReason::Empty, "empty payload"));
    }
    if len > max_bytes {
        return Err(Rejection::new(
            DeadReason::Oversized,
            format!("payload is {len} bytes, limit {max_bytes}"),
        ));
    }
    let text = match text::utf8(payload.take().unwrap_or_default()) {
        Ok(text) => text,
        Err((bytes, at)) => {
            *payload = Some(bytes);
            return Err(Rejection::new(
                DeadReason::InvalidUtf8,
                format!("invalid UTF-8 at byte {at}"),
            ));
        }
    };
    read::event(text).map_err(|(rejection, text)| {
        *payload = Some(text.into_bytes());
        rejection
    })
}

/// [`decode_in_place`] on a copy of `payload`.
pub fn decode(payload: Option<&[u8]>, max_bytes: usize) -> Result<Event, Rejection> {
    decode_in_place(&mut payload.map(<[u8]>::to_vec), max_bytes)
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
        assert_eq!(e.name(), "page_viewed");
        assert_eq!(e.shop_id, 4211);
        assert!(e.consent.analytics && !e.consent.marketing && !e.consent.sale_of_data);
        assert_eq!(e.email(), Some(" Ana@Example.com "));
        assert_eq!(e.url(), Some("https://shop.example/p?email=a@b.c"));
        assert_eq!(e.referrer(), None);
        assert_eq!(
            (e.id(), e.client_id(), e.region()),
            ("e1", "c-1", Some("US-CA"))
        );
        assert!(e.data().expect("data").contains("currencyCode"));
    }

    #[test]
    fn the_event_takes_its_payload_and_a_rejection_leaves_it() {
        let mut payload = Some(GOOD.as_bytes().to_vec());
        let e = decode_in_place(&mut payload, 64 * 1024).expect("decodes");
        assert_eq!(payload, None);
        assert_eq!(e.into_payload(), GOOD.as_bytes());
        let truncated = GOOD.as_bytes()[..40].to_vec();
        let missing = GOOD.replace("\"shopId\":4211,", "").into_bytes();
        for bad in [vec![0xff, b'{'], truncated, missing, b"[]".to_vec()] {
            let mut payload = Some(bad.clone());
            assert!(decode_in_place(&mut payload, 64 * 1024).is_err());
            assert_eq!(payload, Some(bad), "left for the dead letter");
        }
    }

    /// Every field an event names, as text, to compare two decodes.
    fn fields(e: &Event) -> String {
        format!(
            "{:?}",
            (
                (e.id(), e.name(), e.timestamp(), e.shop_id, e.client_id()),
                (e.region(), e.consent, e.url(), e.referrer(), e.user_agent()),
                (e.email(), e.phone(), e.data()),
            )
        )
    }

    /// The expected next key's bytes are a shortcut, not a rule: the fields
    /// read the same in any order, spacing or spelling of their keys, and a
    /// key met again after the expected one is still a duplicate.
    #[test]
    fn fields_read_the_same_whatever_the_order_and_spelling_of_keys() {
        let inner = r#""consent":{"analytics":true,"marketing":false,"preferences":true,"saleOfData":false},"context":{"url":"u","referrer":"r","userAgent":"UA"},"customer":{"email":"a@b.c","phone":"+1"}"#;
        let canonical = format!(
            r#"{{"id":"e1","name":"page_viewed","timestamp":"2026-11-27T05:00:01.123Z","shopId":4211,"clientId":"c-1","region":"US-CA",{inner},"data":[1,2]}}"#
        );
        let reordered = r#"{"data":[1,2],"customer":{"phone":"+1","email":"a@b.c"},"context":{"userAgent":"UA","url":"u","referrer":"r"},"consent":{"saleOfData":false,"preferences":true,"marketing":false,"analytics":true},"region":"US-CA","clientId":"c-1","shopId":4211,"timestamp":"2026-11-27T05:00:01.123Z","name":"page_viewed","id":"e1"}"#.to_string();
        let variants = [
            reordered,
            canonical.replace(r#"{"id""#, r#"{"ids":0,"i":1,"id""#),
            canonical.replace(r#","name""#, r#","nam":{"id":2},"name""#),
            canonical.replace("\":", "\" :").replace(",\"", ", \""),
            canonical.replace(r#""shopId":"#, r#""shop\u0049d":"#),
            canonical.replace(r#""url":"#, r#""\u0075rl":"#),
        ];
        let expected = fields(&decode(Some(canonical.as_bytes()), 64 * 1024).expect("decodes"));
        for text in &variants {
            let e = decode(Some(text.as_bytes()), 64 * 1024).expect(text);
            assert_eq!(fields(&e), expected, "{text}");
        }
        for duplicate in [
            canonical.replace(r#","name""#, r#","id":"e2","name""#),
            canonical.replace(
                r#""marketing":false"#,
                r#""marketing":false,"analytics":true"#,
            ),
            canonical.replace(r#","referrer""#, r#","url":"v","referrer""#),
        ] {
            let detail = decode(Some(duplicate.as_bytes()), 64 * 1024)
                .expect_err(&duplicate)
                .detail;
            assert!(
                detail.starts_with("duplicate field"),
                "{duplicate}: {detail}"
            );
        }
    }

    #[test]
    fn escaped_strings_are_decoded_beside_the_payload() {
        let escaped = GOOD
            .replace("\"c-1\"", r#""c-\u0031\n""#)
            .replace("\"UA\"", r#""U\"A""#);
        let e = decode(Some(escaped.as_bytes()), 64 * 1024).expect("decodes");
        assert_eq!((e.client_id(), e.user_agent()), ("c-1\n", Some("U\"A")));
        assert_eq!((e.id(), e.region()), ("e1", Some("US-CA")));
        assert!(!e.strings_are_plain());
        let plain = decode(Some(GOOD.as_bytes()), 64 * 1024).expect("decodes");
        assert!(plain.strings_are_plain());
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
    fn numbers_past_a_double_are_malformed_anywhere() {
        for (from, to) in [
            ("\"amount\":12.5", "\"amount\":1e999"),
            ("\"amount\":12.5", "\"amount\":-1e309"),
            ("\"extra\":\"ignored\"", "\"extra\":1E+400"),
            ("\"shopId\":4211", "\"shopId\":1e999"),
        ] {
            let bad = GOOD.replacen(from, to, 1);
            assert_ne!(bad, GOOD, "{from}");
            assert_eq!(reason(bad.as_bytes()), DeadReason::MalformedJson, "{bad}");
        }
        // The largest double, and underflow to zero, are numbers partners read.
        for fine in ["1.7976931348623157e308", "1e-400", "-0.0"] {
            let ok = GOOD.replace("12.5", fine);
            let e = decode(Some(ok.as_bytes()), 64 * 1024).expect(fine);
            assert!(e.data().expect("data").contains(fine));
        }
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_field() {
        let detail = |bad: String| match decode(Some(bad.as_bytes()), 64 * 1024) {
            Err(r) if r.reason == DeadReason::Schema => r.detail,
            other => panic!("{other:?} for {bad}"),
        };
        assert_eq!(
            detail(GOOD.replace("4211", "-4211")),
            "field `shopId`: expected a whole number from 0 to 18446744073709551615"
        );
        assert_eq!(
            detail(GOOD.replace("\"analytics\":true", "\"analytics\":1")),
            "field `analytics`: expected a boolean, found a number"
        );
        assert_eq!(
            detail(GOOD.replace("\"c-1\"", "null")),
            "field `clientId`: expected a string, found null"
        );
        assert_eq!(
            detail(GOOD.replace("\"marketing\":false", "\"ads\":false")),
            "unknown field `ads` in `consent`, expected one of `analytics`, `marketing`, \
             `preferences`, `saleOfData`"
        );
        assert_eq!(
            detail(GOOD.replace("\"shopId\":4211,", "")),
            "missing field `shopId`"
        );
        assert_eq!(detail("[]".into()), "an event is an object, found an array");
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
