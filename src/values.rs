//! The rules for values people type: one set, used by every command and
//! every file, so that what one place accepts no other place refuses.
//!
//! - Surrounding whitespace is ignored.
//! - Names (timepoints, outcomes, fields, levels, sites, CSV headers) are
//!   matched without regard to case and recorded as the protocol spells them
//!   (every protocol name is lowercase).
//! - Dates are `YYYY-MM-DD`; a month or day of one digit (`2026-7-1`, as a
//!   spreadsheet may write it) is read and recorded as `2026-07-01`.
//! - Whole and decimal numbers may carry a leading `+` or leading zeros; they
//!   are recorded without them (`+034` is `34`). No exponents, no thousands
//!   separators, no decimal comma.
//!
//! Pure: values in, values or messages out.

use chrono::NaiveDate;

use crate::referral::truncate;

/// A name as typed, in the form the protocol declares names: trimmed, lowercase.
pub fn canonical_name(s: &str) -> String {
    s.trim().to_ascii_lowercase()
}

/// Parses a calendar date `YYYY-MM-DD` (month and day may have one digit).
/// The message quotes the value and says the form to use.
pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    let v = s.trim();
    let mut parts = v.split('-');
    let field = |p: Option<&str>, widths: std::ops::RangeInclusive<usize>| {
        p.filter(|p| widths.contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u32>().ok())
    };
    let (y, m, d) = (field(parts.next(), 4..=4), field(parts.next(), 1..=2), field(parts.next(), 1..=2));
    let date = match (y, m, d, parts.next()) {
        (Some(y), Some(m), Some(d), None) => i32::try_from(y).ok().and_then(|y| NaiveDate::from_ymd_opt(y, m, d)),
        _ => None,
    };
    date.ok_or_else(|| {
        let hint = if v.contains('/') || v.contains('.') {
            " (a spreadsheet may have reformatted it: format the column as text)"
        } else {
            ""
        };
        format!("{:?} is not a date; write it as YYYY-MM-DD, for example 2026-07-01{hint}", truncate(v, 40))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_take_one_form_with_or_without_leading_zeros() {
        let d = |s: &str| parse_date(s).map(|d| d.to_string());
        assert_eq!(d("2026-07-01").unwrap(), "2026-07-01");
        assert_eq!(d(" 2026-7-1 ").unwrap(), "2026-07-01");
        for bad in
            ["2026-02-29", "01/07/2026", "2026-007-01", "+2026-07-01", "26-07-01", "2026-07-01T00:00", "", "2026--1"]
        {
            assert!(d(bad).is_err(), "{bad}");
        }
        assert!(d("01/07/2026").unwrap_err().contains("format the column as text"));
    }

    #[test]
    fn names_are_matched_in_the_protocols_spelling() {
        assert_eq!(canonical_name(" M4 "), "m4");
    }
}
