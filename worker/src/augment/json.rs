//! The partner payload's JSON, written straight into its buffer: keys are the
//! payload's own constants, written as they are; string values are copied
//! whole when nothing in them needs escaping, which is nearly always. The
//! output is byte for byte what serde_json writes for the same values.

use std::fmt::Display;
use std::io::Write as _;

/// One JSON object being written; [`Object::close`] ends it.
#[derive(Debug)]
pub(super) struct Object<'b> {
    buf: &'b mut Vec<u8>,
    first: bool,
}

impl<'b> Object<'b> {
    pub fn open(buf: &'b mut Vec<u8>) -> Self {
        buf.push(b'{');
        Self { buf, first: true }
    }

    /// `key` is a constant of the payload: plain ASCII, nothing to escape.
    fn key(&mut self, key: &str) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    pub fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        string(self.buf, value);
    }

    /// Nothing for `None`, as serde's `skip_serializing_if = "Option::is_none"`.
    pub fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    /// A number or a boolean: its `Display` is its JSON.
    pub fn scalar(&mut self, key: &str, value: impl Display) {
        self.key(key);
        let _ = write!(self.buf, "{value}");
    }

    /// A string whose `Display` never needs escaping (an RFC 3339 time).
    pub fn plain(&mut self, key: &str, value: impl Display) {
        self.key(key);
        let _ = write!(self.buf, "\"{value}\"");
    }

    /// JSON text checked elsewhere, written as it is.
    pub fn raw(&mut self, key: &str, json: &str) {
        self.key(key);
        self.buf.extend_from_slice(json.as_bytes());
    }

    pub fn object(&mut self, key: &str) -> Object<'_> {
        self.key(key);
        Object::open(self.buf)
    }

    pub fn close(self) {
        self.buf.push(b'}');
    }
}

/// A JSON string. The check for bytes that need escaping is a fold with no
/// early exit, so it compiles to wide compares rather than a byte loop.
fn string(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    let plain = s
        .bytes()
        .fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        buf.extend_from_slice(s.as_bytes());
    } else {
        escaped(buf, s);
    }
    buf.push(b'"');
}

/// serde_json's escapes: `"`, `\`, the short forms of five controls, and
/// `\u00XX` for the other controls; everything else as it is.
fn escaped(buf: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in s.as_bytes() {
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            0x08 => buf.extend_from_slice(b"\\b"),
            0x0c => buf.extend_from_slice(b"\\f"),
            0x00..=0x1f => {
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[usize::from(b >> 4)]);
                buf.push(HEX[usize::from(b & 0xf)]);
            }
            _ => buf.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn written(s: &str) -> String {
        let mut buf = Vec::new();
        string(&mut buf, s);
        String::from_utf8(buf).expect("utf8")
    }

    #[test]
    fn objects_nest_and_skip_what_is_absent() {
        let mut buf = Vec::new();
        let mut o = Object::open(&mut buf);
        o.str("id", "e1");
        o.opt_str("region", None);
        o.scalar("n", 42u64);
        o.plain("at", "2026-11-27T05:00:00.000Z");
        let mut c = o.object("consent");
        c.scalar("analytics", true);
        c.scalar("marketing", false);
        c.close();
        o.object("empty").close();
        o.raw("data", r#"{ "a" : [1] }"#);
        o.close();
        assert_eq!(
            String::from_utf8(buf).expect("utf8"),
            r#"{"id":"e1","n":42,"at":"2026-11-27T05:00:00.000Z","consent":{"analytics":true,"marketing":false},"empty":{},"data":{ "a" : [1] }}"#
        );
    }

    #[test]
    fn escapes_as_serde_json_does() {
        for s in [
            "",
            "plain",
            "q\"b\\s",
            "\n\r\t\u{8}\u{c}",
            "\u{0}\u{1f}\u{7f}",
            "é/😀",
        ] {
            assert_eq!(written(s), serde_json::to_string(s).expect("json"), "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn any_string_is_written_as_serde_json_writes_it(s in any::<String>()) {
            prop_assert_eq!(written(&s), serde_json::to_string(&s).expect("json"));
        }
    }
}
