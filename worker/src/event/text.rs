//! The payload's bytes as text: the one pass over every byte of an event
//! besides the lexer's. The standard library's check reads a word or two at
//! a time; simdutf8 checks 64-byte blocks with AVX2 or SSE4.2, whichever the
//! CPU has (chosen at run time, so the binary stays portable), several times
//! faster on a 1 KB event. It can only hand back a `&str`, so taking the `Vec`
//! as a `String` after its check needs the one unchecked conversion below.
#![allow(unsafe_code)]

/// `bytes` as a `String`, or the bytes back with where the first invalid
/// sequence starts.
pub(super) fn utf8(bytes: Vec<u8>) -> Result<String, (Vec<u8>, usize)> {
    if simdutf8::basic::from_utf8(&bytes).is_ok() {
        // SAFETY: simdutf8 has just checked that all of `bytes` is UTF-8.
        return Ok(unsafe { String::from_utf8_unchecked(bytes) });
    }
    // Only invalid input pays for the second, slower check that says where.
    let at = simdutf8::compat::from_utf8(&bytes).map_or_else(|e| e.valid_up_to(), |s| s.len());
    Err((bytes, at))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::utf8;

    #[test]
    fn says_where_the_first_invalid_sequence_starts() {
        assert_eq!(
            utf8(b"{\"a\":\"\xc3\xa9\"}".to_vec()),
            Ok("{\"a\":\"é\"}".to_string())
        );
        let bad = b"{\"a\":\"\xff\"}".to_vec();
        assert_eq!(utf8(bad.clone()), Err((bad, 6)));
        let truncated = b"ab\xe2\x82".to_vec();
        assert_eq!(utf8(truncated.clone()), Err((truncated, 2)));
    }

    proptest! {
        #[test]
        fn agrees_with_the_standard_library(
            bytes in prop_oneof![
                // Valid text with a byte or two changed, and raw bytes.
                (any::<String>(), any::<(usize, u8)>()).prop_map(|(s, (at, b))| {
                    let mut bytes = s.into_bytes();
                    if let Some(x) = bytes.get_mut(at % 200) { *x = b; }
                    bytes
                }),
                any::<String>().prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), 0..200),
            ],
        ) {
            let expected = String::from_utf8(bytes.clone())
                .map_err(|e| (bytes.clone(), e.utf8_error().valid_up_to()));
            prop_assert_eq!(utf8(bytes), expected);
        }
    }
}
