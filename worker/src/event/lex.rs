//! A JSON lexer over text already known to be UTF-8, for the one shape of
//! reading the decoder does: forward only, the named fields taken, nothing
//! built that is not kept; the values stepped over are walked by
//! [`json`](super::json), which calls in here for escapes and numbers. Strings without escapes are
//! borrowed from the payload; the scan for a string's end reads a block
//! of bytes at a time ([`scan`](super::scan)). Every error is
//! `malformed_json` and names its byte.
//!
//! It replaced a general-purpose parser (jiter) whose per-token machinery
//! cost about twice the decode of a whole 1 KB event (docs/benchmarks.md).

use std::borrow::Cow;

use super::{DeadReason, Rejection, scan};

/// The kind of value that starts at the next byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Peek {
    Object,
    Array,
    String,
    Null,
    True,
    False,
    Number,
}

/// A JSON syntax error: what was wrong, at which byte. Small and plain, so
/// the lexer's results stay in registers; it becomes a [`Rejection`] once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Syntax {
    what: &'static str,
    at: usize,
}

impl From<Syntax> for Rejection {
    fn from(e: Syntax) -> Self {
        Rejection::new(
            DeadReason::MalformedJson,
            format!("{} at byte {}", e.what, e.at),
        )
    }
}

pub(super) fn malformed(what: &'static str, at: usize) -> Syntax {
    Syntax { what, at }
}

/// The lexer's position in one payload.
#[derive(Debug)]
pub(super) struct Lexer<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(text: &'a str) -> Self {
        Self { text, at: 0 }
    }

    /// The byte offset of the next unread byte.
    #[inline]
    pub fn index(&self) -> usize {
        self.at
    }

    /// The text from `start` to the current position.
    #[inline]
    pub fn since(&self, start: usize) -> &'a str {
        self.text.get(start..self.at).unwrap_or_default()
    }

    #[inline]
    pub fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// Moves to byte `at`, where a caller that read ahead on its own stopped.
    #[inline]
    pub fn seek(&mut self, at: usize) {
        self.at = at;
    }

    /// The next byte that is not whitespace, not consumed.
    #[inline]
    fn next_byte(&mut self) -> Option<u8> {
        let b = self.bytes();
        while let Some(&c) = b.get(self.at) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(c);
            }
            self.at += 1;
        }
        None
    }

    /// What kind of value comes next.
    #[inline]
    pub fn peek(&mut self) -> Result<Peek, Syntax> {
        Ok(match self.next_byte() {
            Some(b'{') => Peek::Object,
            Some(b'[') => Peek::Array,
            Some(b'"') => Peek::String,
            Some(b'n') => Peek::Null,
            Some(b't') => Peek::True,
            Some(b'f') => Peek::False,
            Some(b'-' | b'0'..=b'9') => Peek::Number,
            Some(_) => return Err(malformed("expected a value", self.at)),
            None => return Err(malformed("end of input, expected a value", self.at)),
        })
    }

    /// Consumes `byte` if it is next (after whitespace).
    #[inline]
    fn eat(&mut self, byte: u8) -> bool {
        let found = self.next_byte() == Some(byte);
        if found {
            self.at += 1;
        }
        found
    }

    /// Opens the object whose `{` is next: its first key, or `None` if empty.
    #[inline]
    pub fn object_first(&mut self) -> Result<Option<Cow<'a, str>>, Syntax> {
        self.open_object(Self::key)
    }

    /// After a member's value: the next key, or `None` at the object's end.
    #[inline]
    pub fn object_next(&mut self) -> Result<Option<Cow<'a, str>>, Syntax> {
        self.next_member(Self::key)
    }

    /// Past the `{` that is next: its first key, read by `key`, or `None`.
    #[inline]
    fn open_object<K>(
        &mut self,
        key: impl FnOnce(&mut Self) -> Result<K, Syntax>,
    ) -> Result<Option<K>, Syntax> {
        self.at += 1;
        if self.eat(b'}') {
            return Ok(None);
        }
        key(self).map(Some)
    }

    /// Past the `,` or `}` after a member: the next key, read by `key`, or
    /// `None` at the object's end.
    #[inline]
    fn next_member<K>(
        &mut self,
        key: impl FnOnce(&mut Self) -> Result<K, Syntax>,
    ) -> Result<Option<K>, Syntax> {
        match self.next_byte() {
            Some(b',') => {
                self.at += 1;
                key(self).map(Some)
            }
            Some(b'}') => {
                self.at += 1;
                Ok(None)
            }
            _ => Err(malformed("expected `,` or `}`", self.at)),
        }
    }

    /// Past the `{` that is next, if its first key is `name`, written as
    /// `"name":` with nothing around it; otherwise nothing is consumed.
    #[inline]
    pub fn object_first_is(&mut self, name: &str) -> bool {
        self.key_is(self.at + 1, name)
    }

    /// Past the `,` after a member, if the next key is `name`, written as
    /// [`Self::object_first_is`] says; otherwise only whitespace is consumed.
    #[inline]
    pub fn object_next_is(&mut self, name: &str) -> bool {
        self.next_byte() == Some(b',') && self.key_is(self.at + 1, name)
    }

    /// Whether `"name":` is at `at`: then it is a key that needs no reading,
    /// and the position moves past its colon.
    #[inline]
    fn key_is(&mut self, at: usize, name: &str) -> bool {
        let b = self.bytes();
        let n = name.len();
        let found = b.get(at) == Some(&b'"')
            && b.get(at + 1..at + 1 + n) == Some(name.as_bytes())
            && b.get(at + 1 + n..at + 3 + n) == Some(b"\":".as_slice());
        if found {
            self.at = at + 3 + n;
        }
        found
    }

    fn key(&mut self) -> Result<Cow<'a, str>, Syntax> {
        self.key_quote()?;
        let key = self.string()?;
        self.colon().map(|()| key)
    }

    #[inline]
    fn key_quote(&mut self) -> Result<(), Syntax> {
        match self.next_byte() {
            Some(b'"') => Ok(()),
            _ => Err(malformed("expected a key", self.at)),
        }
    }

    #[inline]
    fn colon(&mut self) -> Result<(), Syntax> {
        if self.eat(b':') {
            Ok(())
        } else {
            Err(malformed("expected `:`", self.at))
        }
    }

    /// The string whose `"` is next: borrowed unless it has escapes.
    #[inline]
    pub fn string(&mut self) -> Result<Cow<'a, str>, Syntax> {
        let start = self.at + 1;
        let end = self.plain_run(start);
        match self.bytes().get(end) {
            Some(b'"') => {
                self.at = end + 1;
                Ok(Cow::Borrowed(self.text.get(start..end).unwrap_or_default()))
            }
            _ => {
                let mut owned = String::from(self.text.get(start..end).unwrap_or_default());
                self.at = end;
                self.rest_of_string(Some(&mut owned))?;
                Ok(Cow::Owned(owned))
            }
        }
    }

    /// From a byte that ended a plain run to after the closing quote:
    /// escapes decoded into `out` when given, and checked either way.
    pub fn rest_of_string(&mut self, mut out: Option<&mut String>) -> Result<(), Syntax> {
        loop {
            match self.bytes().get(self.at) {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    let c = self.escape()?;
                    if let Some(out) = out.as_deref_mut() {
                        out.push(c);
                    }
                }
                Some(_) => return Err(malformed("control character in a string", self.at)),
                None => return Err(malformed("end of input in a string", self.at)),
            }
            let start = self.at;
            self.at = self.plain_run(start);
            if let Some(out) = out.as_deref_mut() {
                out.push_str(self.text.get(start..self.at).unwrap_or_default());
            }
        }
    }

    /// The escape whose `\` is next, consumed. A `\u` escape of a leading
    /// surrogate must be followed by one of a trailing surrogate: partners'
    /// parsers reject, or silently replace, half a pair.
    fn escape(&mut self) -> Result<char, Syntax> {
        let at = self.at;
        let c = match self.bytes().get(at + 1) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => return self.unicode_escape(),
            _ => return Err(malformed("invalid escape", at)),
        };
        self.at += 2;
        Ok(c)
    }

    fn unicode_escape(&mut self) -> Result<char, Syntax> {
        let at = self.at;
        let first = self.hex4(at + 2)?;
        self.at = at + 6;
        let code = match first {
            0xD800..=0xDBFF => {
                let b = self.bytes();
                let second = if b.get(self.at) == Some(&b'\\') && b.get(self.at + 1) == Some(&b'u')
                {
                    self.hex4(self.at + 2)?
                } else {
                    0
                };
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(malformed("unpaired surrogate escape", at));
                }
                self.at += 6;
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(malformed("unpaired surrogate escape", at)),
            c => c,
        };
        char::from_u32(code).ok_or_else(|| malformed("invalid escape", at))
    }

    /// Four hex digits at `at`.
    fn hex4(&self, at: usize) -> Result<u32, Syntax> {
        let digits = self
            .bytes()
            .get(at..at + 4)
            .ok_or_else(|| malformed("end of input in an escape", at))?;
        digits.iter().try_fold(0, |code, &d| {
            let v = char::from(d)
                .to_digit(16)
                .ok_or_else(|| malformed("invalid escape", at))?;
            Ok(code << 4 | v)
        })
    }

    /// The end of the run of bytes from `from` that a string holds as they
    /// are: the first `"`, `\\` or control byte, or the end of the text.
    #[inline]
    fn plain_run(&self, from: usize) -> usize {
        scan::plain_run(self.bytes(), from)
    }

    /// The `null` that is next.
    #[inline]
    pub fn null(&mut self) -> Result<(), Syntax> {
        self.literal(b"null")
    }

    /// The `true` or `false` that `peek` announced.
    #[inline]
    pub fn boolean(&mut self, peek: Peek) -> Result<bool, Syntax> {
        let value = peek == Peek::True;
        self.literal(if value { b"true" } else { b"false" })?;
        Ok(value)
    }

    #[inline]
    fn literal(&mut self, word: &[u8]) -> Result<(), Syntax> {
        if self.bytes().get(self.at..self.at + word.len()) != Some(word) {
            return Err(malformed("expected a value", self.at));
        }
        self.at += word.len();
        Ok(())
    }

    /// The number that is next, as its text, checked against JSON's grammar
    /// (`-`, no leading zeros, digits after `.` and the exponent).
    pub fn number(&mut self) -> Result<&'a str, Syntax> {
        let b = self.bytes();
        let start = self.at;
        let mut i = start + usize::from(b.get(start) == Some(&b'-'));
        let digits = |i: usize| {
            i + b[i.min(b.len())..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count()
        };
        let int_end = digits(i);
        let bad = |at| Err(malformed("invalid number", at));
        match int_end - i {
            0 => return bad(i),
            n if n > 1 && b[i] == b'0' => return bad(i),
            _ => {}
        }
        i = int_end;
        if b.get(i) == Some(&b'.') {
            let end = digits(i + 1);
            if end == i + 1 {
                return bad(end);
            }
            i = end;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let end = digits(i);
            if end == i {
                return bad(end);
            }
            i = end;
        }
        self.at = i;
        Ok(self.since(start))
    }

    /// Nothing but whitespace is left.
    pub fn finish(&mut self) -> Result<(), Syntax> {
        match self.next_byte() {
            None => Ok(()),
            Some(_) => Err(malformed("trailing characters", self.at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn string(text: &str) -> Result<Cow<'_, str>, Syntax> {
        let mut l = Lexer::new(text);
        assert_eq!(l.peek()?, Peek::String);
        let s = l.string()?;
        l.finish()?;
        Ok(s)
    }

    #[test]
    fn borrows_plain_strings_and_decodes_escapes() {
        assert!(matches!(
            string(r#""plain text, long enough""#),
            Ok(Cow::Borrowed("plain text, long enough"))
        ));
        assert_eq!(
            string(r#""a\"b\\c\/d\n\u00e9\ud83d\ude00""#).expect("ok"),
            "a\"b\\c/d\né😀"
        );
        for bad in [
            r#""\x""#,
            r#""\u12""#,
            r#""\ud800""#,
            r#""\udc00x""#,
            "\"a\u{1}b\"",
            r#""open"#,
            r#""\ud800\u0041""#,
        ] {
            assert!(string(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_follow_the_grammar() {
        for ok in [
            "0",
            "-0",
            "12.5",
            "1e5",
            "1E+5",
            "-1.5e-300",
            "123456789012345678901234567890",
        ] {
            let mut l = Lexer::new(ok);
            assert_eq!(l.number().expect(ok), ok);
        }
        for bad in ["-", "01", "1.", ".5", "1e", "1e+", "-a"] {
            let mut l = Lexer::new(bad);
            let whole = l.number().and_then(|_| l.finish());
            assert!(whole.is_err(), "{bad}");
        }
    }

    proptest! {
        /// Any string serde_json writes reads back to itself.
        #[test]
        fn reads_back_what_serde_json_writes(s in any::<String>()) {
            let json = serde_json::to_string(&s).expect("json");
            let read = string(&json).expect("reads");
            prop_assert_eq!(read.as_ref(), s.as_str());
        }

        /// The end-of-string scan agrees with a byte loop at every offset.
        #[test]
        fn the_word_scan_finds_the_first_stop(bytes in prop::collection::vec(prop_oneof![Just(b'"'), Just(b'\\'), Just(0x1fu8), Just(0x20u8), Just(0x80u8), Just(b'a')], 0..40), from in 0usize..40) {
            let text: String = bytes.iter().map(|&b| if b == 0x80 { 'é' } else { char::from(b) }).collect();
            let l = Lexer::new(&text);
            let from = from.min(text.len());
            let expected = (from..text.len()).find(|&i| matches!(text.as_bytes()[i], b'"' | b'\\' | 0..=0x1f)).unwrap_or(text.len());
            prop_assert_eq!(l.plain_run(from), expected);
        }
    }
}
