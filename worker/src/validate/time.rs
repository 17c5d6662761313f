//! An event's own time, in Unix milliseconds. Storefronts write one shape,
//! `2026-11-27T05:00:01.123Z`, which is read here digit by digit; anything
//! else RFC 3339 allows (offsets, lower-case letters, leap seconds, the far
//! past and future) goes through jiff's parser, whose generality cost about
//! half of the validate stage.

use jiff::Timestamp;

/// Unix milliseconds of an RFC 3339 time, or `None` when it is not one.
pub(super) fn parse_ms(text: &str) -> Option<i64> {
    match utc(text.as_bytes()) {
        Shape::Read(ms) => Some(ms),
        Shape::Invalid => None,
        Shape::Other => text
            .parse::<Timestamp>()
            .ok()
            .map(Timestamp::as_millisecond),
    }
}

/// What the reading of the common shape made of a text.
#[derive(Debug, PartialEq, Eq)]
enum Shape {
    /// The common shape, at this millisecond.
    Read(i64),
    /// The common shape, with a field out of its range: jiff rejects it too.
    Invalid,
    /// Some other shape: jiff decides.
    Other,
}

/// `YYYY-MM-DDTHH:MM:SS`, then `.` and 1-9 digits or nothing, then `Z`, for
/// the years 1970-9998: positive times, well inside jiff's range, so that
/// the millisecond is the fraction's first three digits (jiff truncates).
fn utc(b: &[u8]) -> Shape {
    let Some((head, rest)) = b.split_first_chunk::<19>() else {
        return Shape::Other;
    };
    let Some(fraction) = rest.strip_suffix(b"Z") else {
        return Shape::Other;
    };
    let digits = match fraction {
        [] => &[][..],
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => digits,
        _ => return Shape::Other,
    };
    let punctuation = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if punctuation.iter().any(|&(at, c)| head[at] != c) {
        return Shape::Other;
    }
    let number = |range: std::ops::Range<usize>| number(&head[range]);
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        number(0..4),
        number(5..7),
        number(8..10),
        number(11..13),
        number(14..16),
        number(17..19),
    ) else {
        return Shape::Other;
    };
    let Some(millis) = millis(digits) else {
        return Shape::Other;
    };
    // Leap seconds (jiff reads :60 as :59) and the edges of jiff's range
    // are jiff's to decide.
    if !(1970..=9998).contains(&year) || second == 60 {
        return Shape::Other;
    }
    // Every field fits its type here (four digits, two, three); jiff's
    // civil time checks each range and the month's length.
    let at = jiff::civil::DateTime::new(
        year as i16,
        month as i8,
        day as i8,
        hour as i8,
        minute as i8,
        second as i8,
        millis as i32 * 1_000_000,
    );
    match at.and_then(|at| jiff::tz::Offset::UTC.to_timestamp(at)) {
        Ok(at) => Shape::Read(at.as_millisecond()),
        Err(_) => Shape::Invalid,
    }
}

/// The decimal value of ASCII digits; `None` if any byte is not one.
fn number(digits: &[u8]) -> Option<i64> {
    digits.iter().try_fold(0, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
    })
}

/// The milliseconds of a fraction's digits (none, or up to nine): the
/// first three, padded with zeros; `None` unless all are digits.
fn millis(digits: &[u8]) -> Option<i64> {
    number(digits)?;
    let first = digits.iter().chain(b"000").take(3);
    Some(first.fold(0, |n, &d| n * 10 + i64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn jiff(text: &str) -> Option<i64> {
        text.parse::<Timestamp>()
            .ok()
            .map(Timestamp::as_millisecond)
    }

    #[test]
    fn the_common_shape_is_read_here() {
        assert_eq!(utc(b"1970-01-01T00:00:00Z"), Shape::Read(0));
        assert_eq!(
            utc(b"2026-11-27T05:00:01.123Z"),
            Shape::Read(1_795_755_601_123)
        );
        assert_eq!(
            utc(b"2026-11-27T05:00:01.123456789Z"),
            Shape::Read(1_795_755_601_123)
        );
        assert_eq!(utc(b"2024-02-30T00:00:00Z"), Shape::Invalid);
        for other in [
            "2026-11-27T05:00:01+00:00",
            "2026-11-27t05:00:01z",
            "2026-11-27T05:00:60Z",
            "1969-12-31T23:59:59.999Z",
            "9999-12-30T22:00:00Z",
            "2026-11-27T05:00:01.1234567890Z",
        ] {
            assert_eq!(utc(other.as_bytes()), Shape::Other, "{other}");
            assert_eq!(parse_ms(other), jiff(other), "{other}");
        }
    }

    proptest! {
        /// Every text in or near the common shape reads as jiff reads it:
        /// digits anywhere, so months, days and hours out of range too.
        #[test]
        fn reads_as_jiff_does(
            text in "[12][0-9]{3}-[01][0-9]-[0-3][0-9][T ][0-2][0-9]:[0-6][0-9]:[0-6][0-9](\\.[0-9]{0,10})?[Zz]?"
        ) {
            prop_assert_eq!(parse_ms(&text), jiff(&text));
        }

        #[test]
        fn any_time_jiff_prints_reads_back(
            ms in 0..=Timestamp::MAX.as_millisecond(),
            nanos in 0..1_000_000i64,
        ) {
            let at = Timestamp::from_nanosecond(i128::from(ms) * 1_000_000 + i128::from(nanos))
                .expect("in range");
            let text = at.to_string();
            prop_assert_eq!(parse_ms(&text), Some(ms));
            prop_assert_eq!(parse_ms(&text), jiff(&text));
        }
    }
}
