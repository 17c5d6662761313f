//! Server-side enrichment and the partner payload: received time and event age,
//! SHA-256 of normalized identifiers, URLs without personal query parameters.
//! Raw email and phone never leave this module.

use jiff::Timestamp;
use pixelpipe_crds::PrivacySpec;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::event::{Consent, Event};

mod json;

use json::{Object, Rendered};

/// The privacy rules augment applies, with the spec's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privacy {
    /// Query parameters kept in forwarded URLs.
    pub url_query_allowlist: Vec<String>,
    /// Calling code for phone numbers written without `+` or `00`.
    pub phone_country_code: String,
}

impl Privacy {
    pub fn of(spec: &PrivacySpec) -> Self {
        Self {
            url_query_allowlist: spec.query_allowlist(),
            phone_country_code: spec.phone_country_code().to_string(),
        }
    }
}

/// Why a partner payload could not be written.
#[derive(Debug, Clone, Error)]
pub enum PayloadError {
    #[error("the {0} time {1} ms is outside the calendar")]
    Time(&'static str, i64),
}

/// The time at `ms`, rendered as `2026-11-27T05:00:01.123Z`.
fn time(what: &'static str, ms: i64) -> Result<Rendered, PayloadError> {
    Timestamp::from_millisecond(ms)
        .map(Rendered::of)
        .map_err(|_| PayloadError::Time(what, ms))
}

/// Writes the partner payloads of one job's events, processed at `now_ms`:
/// that time is rendered once, and so is each run of events received in
/// the same millisecond (a producer's batch, mostly).
#[derive(Debug)]
pub struct Payloads<'p> {
    privacy: &'p Privacy,
    now_ms: i64,
    processed: Rendered,
    received: Option<(i64, Rendered)>,
}

impl<'p> Payloads<'p> {
    pub fn new(privacy: &'p Privacy, now_ms: i64) -> Result<Self, PayloadError> {
        Ok(Self {
            privacy,
            now_ms,
            processed: time("processing", now_ms)?,
            received: None,
        })
    }

    /// Builds the partner payload for one valid event: the event's own
    /// fields, when it arrived and how old it was when processed, its URLs
    /// without personal query parameters, hashes instead of raw identifiers,
    /// and `data` as it arrived. Absent optional fields are left out.
    ///
    /// `received_ms` is when the pipeline's input topic got the event (the
    /// Kafka timestamp).
    pub fn write(
        &mut self,
        event: &Event,
        event_ms: i64,
        received_ms: i64,
    ) -> Result<Vec<u8>, PayloadError> {
        let received = self.received(received_ms)?;
        let data = event.data();
        // Room for the fields around `data` without growing the buffer.
        let mut buf = Vec::with_capacity(768 + data.map_or(0, str::len));
        // Hashes, times and pieces of the event's own strings: when those arrived
        // without escapes, nothing in the payload needs any.
        let mut o = Object::open(&mut buf, event.strings_are_plain());
        o.str("id", event.id());
        o.str("name", event.name());
        o.str("timestamp", event.timestamp());
        o.time("receivedAt", &received);
        o.time("processedAt", &self.processed);
        o.scalar("eventAgeMs", self.now_ms.saturating_sub(event_ms).max(0));
        o.scalar("shopId", event.shop_id);
        o.str("clientId", event.client_id());
        o.opt_str("region", event.region());
        consent(o.object("consent"), &event.consent);
        context(o.object("context"), event, self.privacy);
        customer(o.object("customer"), event, self.privacy);
        if let Some(data) = data {
            o.raw("data", data);
        }
        o.close();
        Ok(buf)
    }

    fn received(&mut self, ms: i64) -> Result<Rendered, PayloadError> {
        match self.received {
            Some((at, rendered)) if at == ms => Ok(rendered),
            _ => {
                let rendered = time("received", ms)?;
                self.received = Some((ms, rendered));
                Ok(rendered)
            }
        }
    }
}

fn consent(mut o: Object<'_>, c: &Consent) {
    o.scalar("analytics", c.analytics);
    o.scalar("marketing", c.marketing);
    o.scalar("preferences", c.preferences);
    o.scalar("saleOfData", c.sale_of_data);
    o.close();
}

fn context(mut o: Object<'_>, e: &Event, privacy: &Privacy) {
    let allow = &privacy.url_query_allowlist;
    for (key, url) in [("url", e.url()), ("referrer", e.referrer())] {
        if let Some(url) = url {
            let mut v = o.string(key);
            stripped(url, allow, |piece| v.push(piece));
            v.close();
        }
    }
    o.opt_str("userAgent", e.user_agent());
    o.close();
}

fn customer(mut o: Object<'_>, e: &Event, privacy: &Privacy) {
    if let Some(hash) = e.email().and_then(email_sha256) {
        o.str("emailSha256", hash.as_str());
    }
    let phone = e
        .phone()
        .and_then(|p| normalize_phone(p, &privacy.phone_country_code));
    if let Some(p) = phone {
        o.str("phoneSha256", sha256_hex(p.as_str()).as_str());
    }
    o.close();
}

/// Lower-cased, trimmed; `None` when it is not an address at all.
pub fn normalize_email(raw: &str) -> Option<String> {
    let e = raw.trim();
    is_address(e).then(|| e.to_lowercase())
}

/// Something before and after an `@`, and no whitespace. Lower-casing
/// changes neither, so the check runs on the text as it arrived. Bytes, not
/// characters: only a text with non-ASCII bytes can hold non-ASCII
/// whitespace, and only such a text is decoded to look for it.
fn is_address(trimmed: &str) -> bool {
    let b = trimmed.as_bytes();
    // `char::is_whitespace` on ASCII: space, and tab to carriage return.
    let ascii_space = b.iter().any(|c| matches!(c, b' ' | b'\t'..=b'\r'));
    memchr::memchr(b'@', b).is_some_and(|at| at > 0 && at + 1 < b.len())
        && !ascii_space
        && (trimmed.is_ascii() || !trimmed.contains(char::is_whitespace))
}

/// The SHA-256 of [`normalize_email`]'s result. ASCII addresses (nearly
/// all) are lower-cased as they are hashed, with no string in between;
/// others take `str::to_lowercase`, whose Unicode rules depend on context
/// (a final sigma).
pub fn email_sha256(raw: &str) -> Option<Sha256Hex> {
    let e = raw.trim();
    if !is_address(e) {
        return None;
    }
    if !e.is_ascii() {
        return Some(sha256_hex(&e.to_lowercase()));
    }
    Some(sha256(e.as_bytes(), <[u8]>::make_ascii_lowercase))
}

/// A phone number in E.164, on the stack: `+` and at most 15 digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct E164 {
    text: [u8; 16],
    len: usize,
}

impl E164 {
    pub fn as_str(&self) -> &str {
        // `+` and ASCII digits only.
        std::str::from_utf8(&self.text[..self.len]).unwrap_or_default()
    }

    /// `None` past 15 digits: more cannot be a phone.
    fn push(&mut self, digit: u8) -> Option<()> {
        *self.text.get_mut(self.len)? = digit;
        self.len += 1;
        Some(())
    }
}

impl std::fmt::Debug for E164 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a phone number's digits began.
#[derive(Clone, Copy)]
enum Lead {
    /// With `+` or `00`: the digits carry their own country code.
    Own,
    /// Not yet known: this many `0` digits so far (0 or 1).
    Zeros(u8),
}

/// E.164: `+` and digits. Separators are dropped, `00` becomes `+`, and numbers
/// without either get `default_cc` in place of one leading `0` (the trunk
/// prefix). `None` when the digit count cannot be a phone. One pass over the
/// bytes, nothing allocated.
pub fn normalize_phone(raw: &str, default_cc: &str) -> Option<E164> {
    let t = raw.trim().as_bytes();
    let mut e = E164 {
        text: [0; 16],
        len: 1,
    };
    e.text[0] = b'+';
    let mut lead = if t.first() == Some(&b'+') {
        Lead::Own
    } else {
        Lead::Zeros(0)
    };
    for &b in t {
        if !b.is_ascii_digit() {
            if matches!(b, b' ' | b'+' | b'-' | b'(' | b')' | b'.') {
                continue;
            }
            return None;
        }
        lead = match (lead, b) {
            (Lead::Own, d) => e.push(d).map(|()| Lead::Own)?,
            (Lead::Zeros(0), b'0') => Lead::Zeros(1),
            (Lead::Zeros(_), b'0') => Lead::Own,
            (Lead::Zeros(_), d) => {
                default_cc.bytes().try_for_each(|c| e.push(c))?;
                e.push(d).map(|()| Lead::Own)?
            }
        };
    }
    if let Lead::Zeros(_) = lead {
        default_cc.bytes().try_for_each(|c| e.push(c))?;
    }
    (9..=16).contains(&e.len).then_some(e)
}

/// Lowercase hex SHA-256, the form conversion APIs expect.
pub fn sha256_hex(s: &str) -> Sha256Hex {
    sha256(s.as_bytes(), |_| ())
}

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3).
const SHA256_INIT: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// The longest message that pads into one 64-byte block: the `0x80` byte
/// and the 8-byte bit length must fit after it.
const ONE_BLOCK: usize = 64 - 1 - 8;

/// The SHA-256 of `message` with `map` applied to each piece of it (a
/// block's worth, copied) before it is hashed. A message that fits one
/// block, as every E.164 phone and nearly every address does, is padded
/// here and compressed once, without the hasher's buffering around that
/// one compression (a tenth of the hash, in criterion).
fn sha256(message: &[u8], map: impl Fn(&mut [u8])) -> Sha256Hex {
    if message.len() > ONE_BLOCK {
        return sha256_hashed(message, map);
    }
    let mut block = [0u8; 64];
    let head = &mut block[..message.len()];
    head.copy_from_slice(message);
    map(head);
    block[message.len()] = 0x80;
    let bits = (message.len() as u64) * 8;
    block[ONE_BLOCK + 1..].copy_from_slice(&bits.to_be_bytes());
    let mut state = SHA256_INIT;
    sha2::compress256(&mut state, &[block.into()]);
    let mut digest = [0u8; 32];
    for (out, word) in digest.chunks_exact_mut(4).zip(state) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    Sha256Hex::of(&digest)
}

/// [`sha256`] of a message longer than a block, through the hasher.
fn sha256_hashed(message: &[u8], map: impl Fn(&mut [u8])) -> Sha256Hex {
    let mut hasher = Sha256::new();
    let mut block = [0u8; 64];
    for chunk in message.chunks(block.len()) {
        let piece = &mut block[..chunk.len()];
        piece.copy_from_slice(chunk);
        map(piece);
        hasher.update(piece);
    }
    Sha256Hex::of(hasher.finalize().as_slice())
}

/// A SHA-256 as 64 lowercase hex digits, kept on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sha256Hex([u8; 64]);

impl Sha256Hex {
    fn of(digest: &[u8]) -> Self {
        let mut hex = [0; 64];
        // 64 bytes is exactly twice the digest: encoding cannot fail. The
        // SIMD encoder (chosen at run time) takes a few nanoseconds where a
        // table lookup per nibble took tens, twice per event.
        let _ = faster_hex::hex_encode(digest, &mut hex);
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        // Hex digits are ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Drops the fragment and every query parameter not in `allow`.
pub fn strip_url(url: &str, allow: &[String]) -> String {
    let mut out = String::with_capacity(url.len());
    stripped(url, allow, |piece| out.push_str(piece));
    out
}

/// [`strip_url`]'s result given to `out` in pieces borrowed from `url`: the
/// payload writes them without building the string. The query runs from
/// the first `?` to the first `#` after it; a `#` before any `?` leaves none.
fn stripped<'u>(url: &'u str, allow: &[String], mut out: impl FnMut(&'u str)) {
    let bytes = url.as_bytes();
    let (base, query) = match memchr::memchr2(b'?', b'#', bytes) {
        Some(q) if bytes.get(q) == Some(&b'?') => {
            let query = url.get(q + 1..).unwrap_or_default();
            let end = memchr::memchr(b'#', query.as_bytes()).unwrap_or(query.len());
            (
                url.get(..q).unwrap_or_default(),
                query.get(..end).unwrap_or_default(),
            )
        }
        Some(fragment) => (url.get(..fragment).unwrap_or_default(), ""),
        None => (url, ""),
    };
    out(base);
    let mut separator = "?";
    for pair in pieces(query, b'&') {
        let key = memchr::memchr(b'=', pair.as_bytes())
            .and_then(|eq| pair.get(..eq))
            .unwrap_or(pair);
        if allow.iter().any(|a| a == key) {
            out(separator);
            out(pair);
            separator = "&";
        }
    }
}

/// `s` split at each `sep`, as `str::split` does, by `memchr`: the
/// standard library's searcher cost a tenth of augment in criterion.
fn pieces(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let ends = memchr::memchr_iter(sep, s.as_bytes()).chain([s.len()]);
    ends.map(move |end| {
        // `sep` is ASCII, so both ends are on character boundaries.
        let piece = s.get(start..end).unwrap_or_default();
        start = end + 1;
        piece
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::decode;
    use proptest::prelude::*;

    fn privacy() -> Privacy {
        Privacy::of(&PrivacySpec::default())
    }

    /// One event's partner payload, as a job of one event writes it.
    fn partner_payload(
        event: &Event,
        event_ms: i64,
        received_ms: i64,
        now_ms: i64,
        privacy: &Privacy,
    ) -> Result<Vec<u8>, PayloadError> {
        Payloads::new(privacy, now_ms)?.write(event, event_ms, received_ms)
    }

    fn allow() -> Vec<String> {
        privacy().url_query_allowlist
    }

    #[test]
    fn hashes_normalized_identifiers() {
        assert_eq!(
            normalize_email("  Ana@Example.COM "),
            Some("ana@example.com".into())
        );
        assert_eq!(normalize_email("not-an-address"), None);
        assert_eq!(normalize_email("@x"), None);
        // A published test vector: SHA-256("test@example.com").
        assert_eq!(
            sha256_hex("test@example.com").as_str(),
            "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"
        );
    }

    fn phone(raw: &str, cc: &str) -> Option<String> {
        normalize_phone(raw, cc).map(|e| e.as_str().to_string())
    }

    #[test]
    fn normalizes_phones_to_e164() {
        assert_eq!(phone("+1 555 010 0199", "1"), Some("+15550100199".into()));
        assert_eq!(phone("(555) 010-0199", "1"), Some("+15550100199".into()));
        assert_eq!(
            phone("0044 20 7946 0958", "1"),
            Some("+442079460958".into())
        );
        assert_eq!(phone("020 7946 0958", "44"), Some("+442079460958".into()));
        assert_eq!(phone("call me", "1"), None);
        assert_eq!(phone("12", "1"), None);
    }

    #[test]
    fn phones_longer_than_fifteen_digits_are_not_phones() {
        assert_eq!(phone("+1234567890123456", "1"), None);
        assert_eq!(
            phone("+123456789012345", "1").as_deref(),
            Some("+123456789012345")
        );
        assert_eq!(phone("0000 1234 5678", "1").as_deref(), Some("+0012345678"));
        assert_eq!(phone("012 3456 7890", "1").as_deref(), Some("+11234567890"));
    }

    /// The reading `normalize_phone` had before it became one pass: digits
    /// filtered out, then `+`, `00` or leading zeros looked at.
    fn phone_by_filtering(raw: &str, default_cc: &str) -> Option<String> {
        let t = raw.trim();
        if !t
            .bytes()
            .all(|b| b.is_ascii_digit() || b" +-().".contains(&b))
        {
            return None;
        }
        let mut digits = t.bytes().filter(u8::is_ascii_digit).peekable();
        let cc = if t.starts_with('+') {
            ""
        } else if digits.clone().take(2).eq(*b"00") {
            digits.nth(1);
            ""
        } else {
            while digits.next_if_eq(&b'0').is_some() {}
            default_cc
        };
        let text: Vec<u8> = b"+"
            .iter()
            .copied()
            .chain(cc.bytes())
            .chain(digits)
            .collect();
        (9..=16)
            .contains(&text.len())
            .then(|| String::from_utf8(text).expect("ascii"))
    }

    proptest! {
        #[test]
        fn one_pass_phones_agree_with_filtering(
            raw in "[ 0-9+().x-]{0,22}",
            cc in "[0-9]{0,3}",
        ) {
            prop_assert_eq!(phone(&raw, &cc), phone_by_filtering(&raw, &cc));
        }
    }

    /// SHA-256 as the `sha2` hasher computes it, in hex.
    fn oracle(bytes: &[u8]) -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn one_block_and_longer_messages_hash_as_the_hasher_does() {
        // Both sides of the one-block limit, and of a block's length.
        for len in 0..=130 {
            let message: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            assert_eq!(
                sha256_hex(&message).as_str(),
                oracle(message.as_bytes()),
                "{len}"
            );
            let upper = message.to_uppercase();
            assert_eq!(
                sha256(upper.as_bytes(), <[u8]>::make_ascii_lowercase).as_str(),
                oracle(message.as_bytes()),
                "{len}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_text_hashes_as_the_hasher_does(s in any::<String>()) {
            prop_assert_eq!(sha256_hex(&s).as_str().to_string(), oracle(s.as_bytes()));
        }

        /// Hashing while lower-casing is hashing the normalized address.
        #[test]
        fn email_hash_is_the_hash_of_the_normalized_address(
            raw in "[ \t\x0b\x0cA-Za-z0-9@.ΣΑß_-]{0,90}"
        ) {
            prop_assert_eq!(
                email_sha256(&raw),
                normalize_email(&raw).map(|e| sha256_hex(&e))
            );
        }
    }

    proptest! {
        #[test]
        fn pieces_are_what_split_gives(s in "[a&é]{0,12}") {
            prop_assert_eq!(pieces(&s, b'&').collect::<Vec<_>>(), s.split('&').collect::<Vec<_>>());
        }

        /// The stripped URL is what splitting at `#`, `?`, `&` and `=` gives.
        #[test]
        fn stripping_agrees_with_splitting(url in "[a-z?#&=]{0,24}") {
            let allow: Vec<String> = vec!["a".into(), "".into(), "b=".into()];
            let without_fragment = url.split_once('#').map_or(url.as_str(), |(u, _)| u);
            let (base, query) = without_fragment.split_once('?').unwrap_or((without_fragment, ""));
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| allow.iter().any(|a| a == pair.split_once('=').map_or(*pair, |(k, _)| k)))
                .collect();
            let expected = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
            prop_assert_eq!(strip_url(&url, &allow), expected);
        }
    }

    #[test]
    fn strips_personal_query_parameters() {
        let a = allow();
        assert_eq!(
            strip_url(
                "https://s.example/checkout?token=abc&email=a%40b.c&utm_source=x#frag",
                &a
            ),
            "https://s.example/checkout?utm_source=x"
        );
        assert_eq!(
            strip_url("https://s.example/p?email=a@b.c", &a),
            "https://s.example/p"
        );
        assert_eq!(strip_url("https://s.example/p", &a), "https://s.example/p");
    }

    #[test]
    fn payload_has_hashes_and_no_raw_identifiers() {
        let raw = r#"{"id":"e1","name":"checkout_completed","timestamp":"2026-11-27T05:00:00.000Z",
            "shopId":7,"clientId":"c-9","consent":{"marketing":true},
            "context":{"url":"https://s.example/thanks?email=ana@example.com&utm_medium=cpc","userAgent":"UA/1"},
            "customer":{"email":"Ana@Example.com","phone":"+1 555 010 0199"},
            "data":{"checkout":{"totalPrice":{"amount":129.5,"currencyCode":"USD"}}}}"#;
        let e = decode(Some(raw.as_bytes()), 1 << 16).expect("decodes");
        let start = e
            .timestamp()
            .parse::<Timestamp>()
            .expect("ts")
            .as_millisecond();
        let out =
            partner_payload(&e, start, start + 10, start + 2500, &privacy()).expect("payload");
        let text = String::from_utf8(out).expect("utf8");
        assert!(!text.to_lowercase().contains("ana@example.com"), "{text}");
        assert!(!text.contains("555"), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["eventAgeMs"], 2500);
        assert_eq!(v["receivedAt"], "2026-11-27T05:00:00.010Z");
        assert_eq!(
            v["context"]["url"],
            "https://s.example/thanks?utm_medium=cpc"
        );
        assert_eq!(
            v["customer"]["emailSha256"],
            sha256_hex("ana@example.com").as_str()
        );
        assert_eq!(
            v["customer"]["phoneSha256"],
            sha256_hex("+15550100199").as_str()
        );
        assert_eq!(v["data"]["checkout"]["totalPrice"]["amount"], 129.5);
    }

    #[test]
    fn the_payload_is_exactly_this_text() {
        let raw = r#"{"id":"e\"1","name":"page_viewed","timestamp":"2026-11-27T05:00:00Z",
            "shopId":7,"clientId":"c-9","region":"US-CA","consent":{"marketing":true},
            "context":{"url":"https://s.example/p?email=a@b.c#top","userAgent":"UA\t1"},
            "customer":{"email":"Ana@Example.com"},"data":[1,2]}"#;
        let e = decode(Some(raw.as_bytes()), 1 << 16).expect("decodes");
        let at = 1_764_219_600_000; // 2025-11-27T05:00:00Z
        let out = partner_payload(&e, at, at + 10, at + 2500, &privacy()).expect("payload");
        let expected = format!(
            "{{\"id\":\"e\\\"1\",\"name\":\"page_viewed\",\"timestamp\":\"2026-11-27T05:00:00Z\",\
             \"receivedAt\":\"2025-11-27T05:00:00.010Z\",\"processedAt\":\"2025-11-27T05:00:02.500Z\",\
             \"eventAgeMs\":2500,\"shopId\":7,\"clientId\":\"c-9\",\"region\":\"US-CA\",\
             \"consent\":{{\"analytics\":false,\"marketing\":true,\"preferences\":false,\"saleOfData\":false}},\
             \"context\":{{\"url\":\"https://s.example/p\",\"userAgent\":\"UA\\t1\"}},\
             \"customer\":{{\"emailSha256\":\"{}\"}},\"data\":[1,2]}}",
            sha256_hex("ana@example.com").as_str()
        );
        assert_eq!(String::from_utf8(out).expect("utf8"), expected);
    }

    /// An event whose strings arrived without escapes takes the unchecked
    /// copy; the same values spelled with escapes take the escaping writer.
    /// Both write the same payload.
    #[test]
    fn plain_and_escaped_spellings_give_the_same_payload() {
        let raw = r#"{"id":"e1","name":"page_viewed","timestamp":"2026-11-27T05:00:00Z",
            "shopId":7,"clientId":"c-9","consent":{},"context":{"userAgent":"UA/1 é"}}"#;
        let escaped = raw.replace("UA/1 é", r"UA\/1 \u00e9");
        let payload = |raw: &str| {
            let e = decode(Some(raw.as_bytes()), 1 << 16).expect("decodes");
            (
                e.strings_are_plain(),
                partner_payload(&e, 0, 0, 0, &privacy()).expect("payload"),
            )
        };
        let (plain, a) = payload(raw);
        let (not_plain, b) = payload(&escaped);
        assert!(plain && !not_plain);
        assert_eq!(
            String::from_utf8(a).expect("utf8"),
            String::from_utf8(b).expect("utf8")
        );
    }

    #[test]
    fn data_is_forwarded_byte_for_byte_as_the_last_member() {
        let base = r#"{"id":"e1","name":"page_viewed","timestamp":"2026-11-27T05:00:00Z",
            "shopId":7,"clientId":"c-9","consent":{}DATA}"#;
        let with = base.replace("DATA", r#","data" : { "a" : [1, 2.50, "\u00e9"] } "#);
        let e = decode(Some(with.as_bytes()), 1 << 16).expect("decodes");
        let out = partner_payload(&e, 0, 0, 0, &privacy()).expect("payload");
        let text = String::from_utf8(out).expect("utf8");
        assert!(
            text.ends_with(r#","data":{ "a" : [1, 2.50, "\u00e9"] }}"#),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["data"]["a"][2], "é");
        for none in [
            base.replace("DATA", ""),
            base.replace("DATA", r#","data":null"#),
        ] {
            let e = decode(Some(none.as_bytes()), 1 << 16).expect("decodes");
            let out = partner_payload(&e, 0, 0, 0, &privacy()).expect("payload");
            let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
            assert!(v.get("data").is_none(), "{v}");
        }
    }

    /// One job's writer keeps the last received time rendered: each
    /// payload still carries its own event's time, repeated or not.
    #[test]
    fn a_job_s_payloads_each_carry_their_own_received_time() {
        let raw = r#"{"id":"e1","name":"page_viewed","timestamp":"2026-11-27T05:00:00Z",
            "shopId":7,"clientId":"c-9","consent":{}}"#;
        let e = decode(Some(raw.as_bytes()), 1 << 16).expect("decodes");
        let at = 1_764_219_600_000; // 2025-11-27T05:00:00Z
        let privacy = privacy();
        let mut payloads = Payloads::new(&privacy, at + 2500).expect("in the calendar");
        for (received, expected) in [
            (at + 10, "2025-11-27T05:00:00.010Z"),
            (at + 10, "2025-11-27T05:00:00.010Z"),
            (at + 11, "2025-11-27T05:00:00.011Z"),
            (at - 1, "2025-11-27T04:59:59.999Z"),
            (at + 11, "2025-11-27T05:00:00.011Z"),
        ] {
            let out = payloads.write(&e, at, received).expect("payload");
            let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
            assert_eq!(v["receivedAt"], expected);
            assert_eq!(v["processedAt"], "2025-11-27T05:00:02.500Z");
        }
        let err = payloads.write(&e, at, i64::MAX).expect_err("out of range");
        assert!(err.to_string().contains("received time"), "{err}");
    }

    #[test]
    fn a_time_outside_the_calendar_is_an_error_not_an_empty_payload() {
        let raw = r#"{"id":"e1","name":"page_viewed","timestamp":"2026-11-27T05:00:00Z",
            "shopId":7,"clientId":"c-9","consent":{}}"#;
        let e = decode(Some(raw.as_bytes()), 1 << 16).expect("decodes");
        let err = partner_payload(&e, 0, i64::MAX, 0, &privacy()).expect_err("out of range");
        assert!(err.to_string().contains("received time"), "{err}");
        let err = partner_payload(&e, 0, 0, i64::MAX, &privacy()).expect_err("out of range");
        assert!(err.to_string().contains("processing time"), "{err}");
    }
}
