//! Checking a JSON value while stepping over it, without recursion: what
//! partners' standard parsers reject or read differently never passes, even in
//! parts the worker does not read (`data`, unknown fields).

use super::lex::{Lexer, Syntax, malformed};
use super::{DeadReason, MAX_DEPTH, Rejection, scan};

/// The containers open inside the value being skipped: a bit per level, set
/// for an array. [`MAX_DEPTH`] levels fit, so the stack needs no allocation.
#[derive(Debug)]
struct Open {
    arrays: u64,
    len: usize,
    /// Containers already open around the value: they count toward the limit.
    outer: usize,
}

impl Open {
    fn push(&mut self, array: bool) -> Result<(), Rejection> {
        if self.outer + self.len >= MAX_DEPTH {
            return Err(Rejection::new(
                DeadReason::MalformedJson,
                format!("nesting deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.arrays = (self.arrays & !(1 << self.len)) | (u64::from(array) << self.len);
        self.len += 1;
        Ok(())
    }

    /// Whether the innermost open container is an array; `None` when none is.
    fn top(&self) -> Option<bool> {
        let top = self.len.checked_sub(1)?;
        Some(self.arrays & (1 << top) != 0)
    }
}

/// Consumes the value at the lexer's next byte, `outer` containers deep,
/// checking all of it.
///
/// This walks about half of an event's tokens (`data`, unknown fields) and
/// a third of parse's time, so it is one loop over the bytes with the
/// position in a local, rather than a call into the lexer per token
/// (criterion's parse 8-10 % faster). The rare paths, escapes and numbers,
/// are the lexer's own.
pub(super) fn skip(j: &mut Lexer, outer: usize) -> Result<(), Rejection> {
    let b = j.bytes();
    let mut i = j.index();
    let mut open = Open {
        arrays: 0,
        len: 0,
        outer,
    };
    'value: loop {
        i = space(b, i);
        match b.get(i) {
            Some(b'"') => i = string(j, i)?,
            Some(b'{') => {
                open.push(false)?;
                i = space(b, i + 1);
                if b.get(i) != Some(&b'}') {
                    i = key(j, i)?;
                    continue 'value;
                }
                i += 1;
                open.len -= 1;
            }
            Some(b'[') => {
                open.push(true)?;
                i = space(b, i + 1);
                if b.get(i) != Some(&b']') {
                    continue 'value;
                }
                i += 1;
                open.len -= 1;
            }
            Some(b'-' | b'0'..=b'9') => {
                j.seek(i);
                finite(j.number()?, i)?;
                i = j.index();
            }
            Some(b't') => i = literal(b, i, b"true")?,
            Some(b'f') => i = literal(b, i, b"false")?,
            Some(b'n') => i = literal(b, i, b"null")?,
            Some(_) => return Err(malformed("expected a value", i).into()),
            None => return Err(malformed("end of input, expected a value", i).into()),
        }
        // A value ended: step its container, closing each that ends here too.
        while let Some(array) = open.top() {
            i = space(b, i);
            match (b.get(i), array) {
                (Some(b','), true) => {
                    i += 1;
                    continue 'value;
                }
                (Some(b','), false) => {
                    i = key(j, space(b, i + 1))?;
                    continue 'value;
                }
                (Some(b']'), true) | (Some(b'}'), false) => {
                    i += 1;
                    open.len -= 1;
                }
                (_, true) => return Err(malformed("expected `,` or `]`", i).into()),
                (_, false) => return Err(malformed("expected `,` or `}`", i).into()),
            }
        }
        j.seek(i);
        return Ok(());
    }
}

/// Past the whitespace from `i`.
#[inline]
fn space(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// Past the string whose `"` is at `i`, checked.
#[inline]
fn string(j: &mut Lexer, i: usize) -> Result<usize, Syntax> {
    let end = scan::plain_run(j.bytes(), i + 1);
    if j.bytes().get(end) == Some(&b'"') {
        return Ok(end + 1);
    }
    j.seek(end);
    j.rest_of_string(None)?;
    Ok(j.index())
}

/// Past the key at `i` and its `:`.
#[inline]
fn key(j: &mut Lexer, i: usize) -> Result<usize, Syntax> {
    if j.bytes().get(i) != Some(&b'"') {
        return Err(malformed("expected a key", i));
    }
    let i = space(j.bytes(), string(j, i)?);
    if j.bytes().get(i) != Some(&b':') {
        return Err(malformed("expected `:`", i));
    }
    Ok(i + 1)
}

/// Past `word` at `i`.
#[inline]
fn literal(b: &[u8], i: usize, word: &[u8]) -> Result<usize, Syntax> {
    match b.get(i..i + word.len()) {
        Some(w) if w == word => Ok(i + word.len()),
        _ => Err(malformed("expected a value", i)),
    }
}

/// A number partners can read as a double: JSON allows any digits, but most
/// parsers (JavaScript's, Python's with defaults, Go's) fail or give infinity
/// past about 1.8e308. Underflow to zero is what every parser does: accepted.
pub(super) fn finite(number: &str, at: usize) -> Result<(), Rejection> {
    let digits_before_point = number
        .bytes()
        .take_while(|&b| b != b'.')
        .filter(u8::is_ascii_digit)
        .count();
    let exponent = number.bytes().any(|b| b == b'e' || b == b'E');
    // Fewer than 309 integer digits and no exponent: below 1e308, so finite.
    if !exponent && digits_before_point <= 308 {
        return Ok(());
    }
    let value: f64 = number.parse().unwrap_or(f64::INFINITY);
    if value.is_finite() {
        Ok(())
    } else {
        Err(Rejection::new(
            DeadReason::MalformedJson,
            format!("number outside the IEEE-754 double range at byte {at}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verdict on a whole document: `None` when it passes.
    fn check(text: &str) -> Option<String> {
        let mut j = Lexer::new(text);
        let result = skip(&mut j, 0).and_then(|()| Ok(j.finish()?));
        result.err().map(|r| {
            assert_eq!(r.reason, DeadReason::MalformedJson);
            r.detail
        })
    }

    #[test]
    fn accepts_json() {
        for ok in [
            "[]",
            "{}",
            r#"{"a":[1,-2.5e3,true,false,null,"x",{"b":{}}],"c":"\ud83d\ude00"}"#,
            " [ 1 , [ ] , { } ] ",
            r#"["\\ud800"]"#,
            "1.7976931348623157e308",
            "1e-400",
        ] {
            assert_eq!(check(ok), None, "{ok}");
        }
    }

    #[test]
    fn counts_nesting_outside_strings_only() {
        let deep = |n| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(check(&deep(MAX_DEPTH)), None);
        let too_deep = check(&deep(MAX_DEPTH + 1)).expect("rejected");
        assert!(too_deep.contains("nesting deeper than 32"), "{too_deep}");
        let mixed = format!("{}{}", "{\"a\":[".repeat(16), "]}".repeat(16));
        assert_eq!(check(&mixed), None);
        let mixed = format!("[{}{}]", "{\"a\":[".repeat(16), "]}".repeat(16));
        assert!(check(&mixed).is_some());
        assert_eq!(check(&format!("[\"{}\"]", "[".repeat(100))), None);
        assert_eq!(check(&format!("[\"\\\"{}\"]", "[".repeat(100))), None);
        let hostile = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(check(&hostile).is_some());
    }

    #[test]
    fn the_outer_containers_count() {
        let text = format!("{}{}", "[".repeat(30), "]".repeat(30));
        let mut j = Lexer::new(&text);
        assert!(skip(&mut j, 2).is_ok());
        let mut j = Lexer::new(&text);
        assert!(skip(&mut j, 3).is_err());
    }

    #[test]
    fn rejects_unpaired_surrogates() {
        for bad in [
            r#"["x\ud800"]"#,
            r#"["\ude00\ud83d"]"#,
            r#"["\ud83d\n"]"#,
            r#"{"\udc00":1}"#,
            r#"["\ud83d"#,
        ] {
            assert!(check(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn rejects_numbers_past_a_double() {
        for bad in ["1e999", "-1e309", "[0.5e400]", "{\"a\":1E+309}"] {
            let detail = check(bad).expect(bad);
            assert!(detail.contains("IEEE-754"), "{bad}: {detail}");
        }
        let digits = format!("[{}]", "9".repeat(400));
        assert!(check(&digits).expect("rejected").contains("IEEE-754"));
        assert_eq!(check(&format!("[{}]", "9".repeat(308))), None);
        assert_eq!(check(&format!("[{}.5]", "9".repeat(308))), None);
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in [
            "",
            "[",
            "[1,]",
            "{\"a\"}",
            "{\"a\":}",
            "[01]",
            "NaN",
            "[Infinity]",
            "[tru]",
            "{'a':1}",
            "[\"\u{1}\"]",
            "[1 2]",
        ] {
            assert!(check(bad).is_some(), "{bad:?}");
        }
    }
}
