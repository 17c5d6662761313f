//! The decoder the worker shipped before its single-pass parser: serde_json
//! with derived types, after a byte scan for nesting depth and unpaired
//! surrogates (the parts serde_json skips unchecked). Kept here, and only
//! here, as the oracle the new decoder is compared with.

use serde::Deserialize;
use serde_json::value::RawValue;

pub const MAX_DEPTH: usize = 32;

#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
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

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    pub url: Option<String>,
    pub referrer: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    pub email: Option<String>,
    pub phone: Option<String>,
}

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
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
}

/// Why the oracle rejected a payload. `Structure` is the pre-scan's
/// verdict (too deep, or an unpaired surrogate), which it gave before
/// reading any field: the single-pass decoder may meet a schema error first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Structure,
    Malformed,
    Schema,
}

/// The oracle's decode of a payload already within size and valid UTF-8.
pub fn decode(text: &str) -> Result<Event, Verdict> {
    if !scan_is_fine(text.as_bytes()) {
        return Err(Verdict::Structure);
    }
    serde_json::from_str::<Event>(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => Verdict::Schema,
        _ => Verdict::Malformed,
    })
}

fn scan_is_fine(bytes: &[u8]) -> bool {
    let (mut depth, mut in_string) = (0usize, false);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        if in_string {
            match b {
                b'"' => in_string = false,
                b'\\' if bytes.get(i) == Some(&b'u') => match surrogate(bytes, i + 1) {
                    Some(true)
                        if surrogate(bytes, i + 7) == Some(false)
                            && bytes.get(i + 5..i + 7) == Some(b"\\u") =>
                    {
                        i += 11
                    }
                    Some(_) => return false,
                    None => i += 5,
                },
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
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// `Some(true)` for a high half of a surrogate pair, `Some(false)` for a low one.
fn surrogate(bytes: &[u8], at: usize) -> Option<bool> {
    let hex = std::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
    match u16::from_str_radix(hex, 16).ok()? {
        0xD800..=0xDBFF => Some(true),
        0xDC00..=0xDFFF => Some(false),
        _ => None,
    }
}
