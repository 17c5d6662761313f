//! The partner payload's JSON, written straight into its buffer: keys are the
//! payload's own constants, written as they are; string values are copied
//! whole when nothing in them needs escaping, which is nearly always. The
//! output is byte for byte what serde_json writes for the same values.

use std::io::Write as _;

use jiff::Timestamp;

/// One JSON object being written; [`Object::close`] ends it.
#[derive(Debug)]
pub(super) struct Object<'b> {
    buf: &'b mut Vec<u8>,
    first: bool,
    /// Every string value is known to need no escaping.
    plain: bool,
}

impl<'b> Object<'b> {
    /// With `plain`, the caller knows that no string value of this object or
    /// of its nested ones holds a `"`, `\\` or control character: they are
    /// copied without being checked.
    pub fn open(buf: &'b mut Vec<u8>, plain: bool) -> Self {
        buf.push(b'{');
        Self {
            buf,
            first: true,
            plain,
        }
    }

    /// `key` is a constant of the payload: plain ASCII, nothing to escape.
    /// Inlined, so that each key's copy has a length known where it is
    /// written, and compiles to a few moves instead of a call to `memcpy`.
    #[inline(always)]
    fn key(&mut self, key: &str) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    #[inline]
    pub fn str(&mut self, key: &str, value: &str) {
        let mut v = self.string(key);
        v.push(value);
        v.close();
    }

    /// A string value to be written in pieces: [`StrValue::push`] each, then
    /// [`StrValue::close`].
    #[inline]
    pub fn string(&mut self, key: &str) -> StrValue<'_> {
        self.key(key);
        self.buf.push(b'"');
        StrValue {
            buf: self.buf,
            plain: self.plain,
        }
    }

    /// Nothing for `None`, as serde's `skip_serializing_if = "Option::is_none"`.
    #[inline]
    pub fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    /// A number or a boolean.
    #[inline]
    pub fn scalar(&mut self, key: &str, value: impl Scalar) {
        self.key(key);
        value.write(self.buf);
    }

    /// A time as an RFC 3339 string in UTC with milliseconds.
    #[inline]
    pub fn time(&mut self, key: &str, value: &Rendered) {
        self.key(key);
        self.buf.push(b'"');
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(b'"');
    }

    /// JSON text checked elsewhere, written as it is.
    #[inline]
    pub fn raw(&mut self, key: &str, json: &str) {
        self.key(key);
        self.buf.extend_from_slice(json.as_bytes());
    }

    #[inline]
    pub fn object(&mut self, key: &str) -> Object<'_> {
        self.key(key);
        Object::open(self.buf, self.plain)
    }

    pub fn close(self) {
        self.buf.push(b'}');
    }
}

/// One string value of an [`Object`], its pieces written as their
/// concatenation.
#[derive(Debug)]
pub(super) struct StrValue<'b> {
    buf: &'b mut Vec<u8>,
    plain: bool,
}

impl StrValue<'_> {
    #[inline]
    pub fn push(&mut self, piece: &str) {
        if self.plain {
            self.buf.extend_from_slice(piece.as_bytes());
        } else {
            string_content(self.buf, piece);
        }
    }

    #[inline]
    pub fn close(self) {
        self.buf.push(b'"');
    }
}

/// A JSON number or boolean, written without the formatting machinery.
pub(super) trait Scalar {
    fn write(self, buf: &mut Vec<u8>);
}

impl Scalar for bool {
    fn write(self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(if self { b"true" } else { b"false" });
    }
}

impl Scalar for u64 {
    fn write(self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(itoa::Buffer::new().format(self).as_bytes());
    }
}

impl Scalar for i64 {
    fn write(self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(itoa::Buffer::new().format(self).as_bytes());
    }
}

/// A time as `2026-11-27T05:00:01.123Z`, what jiff prints with `{:.3}`,
/// rendered once: a job's events share their processing time, and
/// consecutive events mostly their received time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rendered {
    /// Long enough for jiff's widest, `-009999-01-02T01:59:59.999Z`.
    text: [u8; 32],
    len: u8,
}

impl Rendered {
    /// Fixed-width digits for the years 0-9999 (every time Kafka carries),
    /// jiff's printer for the rest: formatting machinery cost more than the
    /// rest of the payload's fields together.
    pub fn of(at: Timestamp) -> Self {
        let mut text = [0; 32];
        let t = jiff::tz::Offset::UTC.to_datetime(at);
        let Ok(year) = u16::try_from(t.year()) else {
            let left = {
                let mut rest = &mut text[..];
                let _ = write!(rest, "{at:.3}");
                rest.len()
            };
            return Self {
                text,
                len: (text.len() - left) as u8,
            };
        };
        text[..24].copy_from_slice(b"0000-00-00T00:00:00.000Z");
        let fields: [(usize, usize, u32); 7] = [
            (0, 4, year.into()),
            (5, 2, t.month().unsigned_abs().into()),
            (8, 2, t.day().unsigned_abs().into()),
            (11, 2, t.hour().unsigned_abs().into()),
            (14, 2, t.minute().unsigned_abs().into()),
            (17, 2, t.second().unsigned_abs().into()),
            (20, 3, t.millisecond().unsigned_abs().into()),
        ];
        for (at, width, mut value) in fields {
            for digit in text[at..at + width].iter_mut().rev() {
                *digit = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        Self { text, len: 24 }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.text[..usize::from(self.len)]
    }
}

/// A JSON string's content. The check for bytes that need escaping is a
/// fold with no early exit, so it compiles to wide compares rather than a
/// byte loop.
fn string_content(buf: &mut Vec<u8>, s: &str) {
    let plain = s
        .bytes()
        .fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        buf.extend_from_slice(s.as_bytes());
    } else {
        escaped(buf, s);
    }
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
        Object::open(&mut buf, false).str("k", s);
        let text = String::from_utf8(buf).expect("utf8");
        text["{\"k\":".len()..].to_string()
    }

    #[test]
    fn objects_nest_and_skip_what_is_absent() {
        let mut buf = Vec::new();
        let mut o = Object::open(&mut buf, false);
        o.str("id", "e1");
        o.opt_str("region", None);
        o.scalar("n", 42u64);
        o.time(
            "at",
            &Rendered::of("2026-11-27T05:00:00.01Z".parse().expect("time")),
        );
        let mut c = o.object("consent");
        c.scalar("analytics", true);
        c.scalar("marketing", false);
        c.close();
        o.object("empty").close();
        o.raw("data", r#"{ "a" : [1] }"#);
        o.close();
        assert_eq!(
            String::from_utf8(buf).expect("utf8"),
            r#"{"id":"e1","n":42,"at":"2026-11-27T05:00:00.010Z","consent":{"analytics":true,"marketing":false},"empty":{},"data":{ "a" : [1] }}"#
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

    #[test]
    fn calendar_edges_are_written_as_jiff_prints_them() {
        for text in [
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999Z",
            "2000-02-29T23:59:59.999Z",
            "2000-03-01T00:00:00Z",
            "1900-02-28T12:00:00.5Z",
            "1900-03-01T00:00:00Z",
            "2100-03-01T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "0000-02-29T00:00:00Z",
            "9999-12-30T21:59:59.999Z",
            "-000001-12-31T23:59:59.999Z",
        ] {
            let t: Timestamp = text.parse().expect(text);
            assert_eq!(
                String::from_utf8(Rendered::of(t).as_bytes().to_vec()).expect("utf8"),
                format!("{t:.3}"),
                "{text}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_string_is_written_as_serde_json_writes_it(s in any::<String>()) {
            prop_assert_eq!(written(&s), serde_json::to_string(&s).expect("json"));
        }

        /// The fixed-width writer prints what jiff prints, at any millisecond
        /// of years 0-9999 and beyond them.
        #[test]
        fn times_are_written_as_jiff_prints_them(
            ms in Timestamp::MIN.as_millisecond()..=Timestamp::MAX.as_millisecond()
        ) {
            let t = Timestamp::from_millisecond(ms).expect("in range");
            let text = String::from_utf8(Rendered::of(t).as_bytes().to_vec()).expect("utf8");
            prop_assert_eq!(text, format!("{t:.3}"));
        }
    }
}
