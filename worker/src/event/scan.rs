//! The lexer's innermost loop: how far a string runs before a byte that ends
//! or escapes it. Most of an event's bytes are string contents (a URL, a user
//! agent, free text in `data`), so this is where parsing spends its time.
//!
//! On x86-64 it reads sixteen bytes at a time with SSE2, which every x86-64
//! CPU has, so the shipped binary stays portable. Elsewhere it reads eight at
//! a time in a `u64`. The `memchr` crate cannot say "any byte below 0x20", and
//! its setup cost more than this loop on short strings (measured: parse 1.24
//! us against 1.0 with the eight-byte loop).

/// The index of the first `"`, `\` or control byte at or after `from`, or
/// `bytes.len()` when there is none.
#[inline]
pub(super) fn plain_run(bytes: &[u8], from: usize) -> usize {
    match wide_run(bytes, from) {
        Wide::Stop(at) => at,
        Wide::Tail(tail) => {
            tail + bytes
                .get(tail..)
                .unwrap_or_default()
                .iter()
                .take_while(|&&c| c >= 0x20 && c != b'"' && c != b'\\')
                .count()
        }
    }
}

/// Where a scan of whole blocks ended.
enum Wide {
    /// At this special byte.
    Stop(usize),
    /// Where the blocks end: fewer bytes than a block are left, none of
    /// them looked at.
    Tail(usize),
}

/// Whole sixteen-byte blocks from `from`, up to the first special byte.
#[cfg(target_arch = "x86_64")]
#[inline]
fn wide_run(bytes: &[u8], mut i: usize) -> Wide {
    use safe_arch::{
        cmp_eq_mask_i8_m128i, m128i, min_u8_m128i, move_mask_i8_m128i, set_splat_i8_m128i,
    };
    let quote = set_splat_i8_m128i(b'"' as i8);
    let backslash = set_splat_i8_m128i(b'\\' as i8);
    let below_space = set_splat_i8_m128i(0x1f);
    while let Some(block) = bytes.get(i..).and_then(<[u8]>::first_chunk::<16>) {
        let v = m128i::from(*block);
        // A byte is a control byte when min(byte, 0x1f) is the byte itself.
        let special = cmp_eq_mask_i8_m128i(v, quote)
            | cmp_eq_mask_i8_m128i(v, backslash)
            | cmp_eq_mask_i8_m128i(min_u8_m128i(v, below_space), v);
        let mask = move_mask_i8_m128i(special) as u32;
        if mask != 0 {
            return Wide::Stop(i + mask.trailing_zeros() as usize);
        }
        i += 16;
    }
    Wide::Tail(i)
}

/// Whole eight-byte words from `from`, as [`wide_run`] with blocks of eight.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn wide_run(bytes: &[u8], mut i: usize) -> Wide {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    // A byte of `x` is zero: the lowest flag is exact, which is the one used.
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    while let Some(word) = bytes.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let w = u64::from_le_bytes(*word);
        let stop = zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
        if stop != 0 {
            return Wide::Stop(i + (stop.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    Wide::Tail(i)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::plain_run;

    fn byte_by_byte(bytes: &[u8], from: usize) -> usize {
        (from..bytes.len())
            .find(|&i| matches!(bytes[i], b'"' | b'\\' | 0..=0x1f))
            .unwrap_or(bytes.len())
    }

    #[test]
    fn stops_at_each_special_byte_in_every_position_of_a_block() {
        for special in [b'"', b'\\', 0x00, 0x1f] {
            for at in 0..40 {
                let mut bytes = vec![b'a'; 40];
                bytes[at] = special;
                assert_eq!(plain_run(&bytes, 0), at, "{special:#x} at {at}");
            }
        }
        // Bytes just past the specials, and UTF-8's high bytes, are plain.
        let plain: Vec<u8> = [b' ', b'#', b']', 0x7f, 0x80, 0xc3, 0xff].repeat(5);
        assert_eq!(plain_run(&plain, 0), plain.len());
    }

    proptest! {
        #[test]
        fn agrees_with_a_byte_by_byte_scan(
            bytes in proptest::collection::vec(
                prop_oneof![4 => 0x20u8..=0xff, 1 => Just(b'"'), 1 => Just(b'\\'), 1 => 0u8..0x20],
                0..80,
            ),
            from in 0usize..80,
        ) {
            let from = from.min(bytes.len());
            prop_assert_eq!(plain_run(&bytes, from), byte_by_byte(&bytes, from));
        }
    }
}
