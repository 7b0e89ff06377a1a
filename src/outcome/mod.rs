//! The outcome store's operations: recording, importing and correcting
//! follow-up values, status changes, the follow-up list, and the analysis
//! dataset. Each write is one transaction of log events (see [`crate::ledger`]).
//!
//! Which file holds what:
//! - `mod.rs`: what a write reports ([`Written`]), [`StatusKind`], and the
//!   dates read from log times and stored dates.
//! - `write.rs`: the follow-up writes on [`Trial`](crate::ledger::Trial):
//!   `record_outcomes`, `correct_outcome`, `change_status`, `renew_consent`.
//! - `reads.rs`: the follow-up reads: `due`, `history` and the window reasons
//!   (decoded from the log itself), the randomisations and their dates.
//! - `dataset.rs`: `dataset`, the analysis dataset read from one snapshot on
//!   one connection, the randomising entries decoded on a thread beside it.

use chrono::NaiveDate;
use serde::Serialize;

use crate::clock::Timestamp;

mod dataset;
mod reads;
mod write;

/// What a write reports.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    /// Participant id.
    pub participant: String,
    /// Log sequence number of the event.
    pub seq: u64,
    /// Hash of the event's entry.
    pub entry_hash: String,
}

/// A participant's follow-up status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    /// Withdrew from the trial.
    Withdrawn,
    /// Lost to follow-up.
    Lost,
    /// Died.
    Died,
}

impl StatusKind {
    /// `withdrawn`, `lost` or `died`.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusKind::Withdrawn => "withdrawn",
            StatusKind::Lost => "lost",
            StatusKind::Died => "died",
        }
    }
}

/// The date a timestamp or date begins with (`NaiveDate::MIN` if none). The
/// common fixed-width `YYYY-MM-DD` is read directly (chrono's format parser
/// was a tenth of reading the outcome values, one date per timepoint per
/// participant); anything else as chrono's `%Y-%m-%d` reads it.
fn date_of(ts: &str) -> NaiveDate {
    let b = ts.as_bytes();
    if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
        let digits = |r: std::ops::Range<usize>| -> Option<u32> {
            b[r].iter().try_fold(0u32, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))
        };
        if let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10)) {
            return NaiveDate::from_ymd_opt(y as i32, m, d).unwrap_or(NaiveDate::MIN);
        }
    }
    NaiveDate::parse_from_str(ts.get(..10).unwrap_or(""), "%Y-%m-%d").unwrap_or(NaiveDate::MIN)
}

/// The calendar date in the trial's `zone` of a log time (UTC): the date of
/// randomisation that the dates people enter are compared with.
fn local_date_of(ts: &str, zone: chrono_tz::Tz) -> NaiveDate {
    match zone {
        chrono_tz::Tz::UTC => date_of(ts),
        _ => Timestamp::parse(ts).map_or_else(|_| date_of(ts), |t| t.date_in(zone)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_directly_are_those_chrono_reads() {
        let chrono =
            |ts: &str| NaiveDate::parse_from_str(ts.get(..10).unwrap_or(""), "%Y-%m-%d").unwrap_or(NaiveDate::MIN);
        for ts in [
            "2026-03-02",
            "2026-03-02T09:00:00Z",
            "2026-02-30",
            "2026-13-01",
            "0000-01-01",
            "9999-12-31",
            "2026-3-02xx",
            "+2026-03-0",
            "2026-03-0a",
            "",
            "2026-03-02\u{e9}",
            "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
        ] {
            assert_eq!(date_of(ts), chrono(ts), "{ts:?}");
        }
    }
}
