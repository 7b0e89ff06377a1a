//! Time: the injected clock every writing command uses.
//!
//! The core never reads the wall clock; the CLI passes `--now`, `CHANCERY_NOW`
//! or the system time. Timestamps are UTC with microseconds in one fixed
//! format, so they compare correctly as text.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

use crate::error::{Error, Result};

/// A UTC instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub DateTime<Utc>);

impl Timestamp {
    /// The system clock.
    pub fn system() -> Timestamp {
        Timestamp(Utc::now())
    }

    /// Parses RFC 3339 (`2026-11-22T09:30:00Z`; an offset is converted to UTC).
    pub fn parse(s: &str) -> Result<Timestamp> {
        DateTime::parse_from_rfc3339(s.trim()).map(|t| Timestamp(t.with_timezone(&Utc))).map_err(|_| {
            Error::Input(format!(
                "time {:?} is not RFC 3339; write it like 2026-11-22T09:30:00Z",
                crate::referral::truncate(s, 40)
            ))
        })
    }

    /// The log's text form: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    pub fn to_log_text(self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    /// The calendar date (UTC).
    pub fn date(self) -> NaiveDate {
        self.0.date_naive()
    }
}

/// Parses a calendar date, `YYYY-MM-DD`, by [`crate::values`]' rules.
pub fn parse_date(s: &str) -> Result<NaiveDate> {
    crate::values::parse_date(s).map_err(Error::Input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_text_is_fixed_width_utc() {
        let t = Timestamp::parse("2026-11-22T10:30:00+01:00").unwrap();
        assert_eq!(t.to_log_text(), "2026-11-22T09:30:00.000000Z");
        assert!(Timestamp::parse("22/11/2026").is_err());
    }
}
