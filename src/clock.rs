//! Time: the clock every writing command is given, the log's time format, and
//! the trial's calendar dates.
//!
//! The CLI resolves a [`Clock`]: a fixed time (`--now`, `CHANCERY_NOW`) or the
//! system clock. The library reads it once per write, inside the write
//! transaction, after `BEGIN IMMEDIATE` has taken the write lock
//! ([`Clock::stamp`]): writers that queue for the lock are stamped in the
//! order they write, so the system clock never back-dates the log. Log
//! timestamps are UTC with microseconds in one fixed format, so they compare
//! correctly as text; the dates people enter and "today" are calendar dates in
//! the trial's time zone (the protocol's `timezone`, UTC if it names none).

use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, Utc};
use chrono_tz::Tz;

use crate::error::{Error, Result};

/// How far ahead of the system clock a given time may be without
/// `--allow-future-time`: a few minutes covers a clock set by hand from a
/// watch, not a mistyped year, which would otherwise refuse every later
/// write on the real clock (the log cannot go back).
pub const FUTURE_TOLERANCE_MINUTES: i64 = 5;

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

    /// The calendar date in `zone`: the trial's "today" at this instant.
    pub fn date_in(self, zone: Tz) -> NaiveDate {
        self.0.with_timezone(&zone).date_naive()
    }
}

/// Where the time of a write comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The system clock, read when the write holds the write lock.
    System,
    /// A time given by the user (`--now`, `CHANCERY_NOW`) or by a simulation.
    Fixed(Timestamp),
}

impl From<Timestamp> for Clock {
    fn from(t: Timestamp) -> Clock {
        Clock::Fixed(t)
    }
}

impl Clock {
    /// A time a person gave, checked against the system clock `system`: more
    /// than [`FUTURE_TOLERANCE_MINUTES`] ahead of it is refused unless
    /// `allow_future` (simulations and demonstrations dated ahead).
    pub fn given(t: Timestamp, system: Timestamp, allow_future: bool) -> Result<Clock> {
        if !allow_future && t.0 > system.0 + Duration::minutes(FUTURE_TOLERANCE_MINUTES) {
            return Err(Error::Input(format!(
                "time {} is more than {FUTURE_TOLERANCE_MINUTES} minutes ahead of the system clock ({}); a mistyped --now or CHANCERY_NOW would hold every later write on the real clock back: check it, or give --allow-future-time (CHANCERY_ALLOW_FUTURE_TIME=1) for a simulation or demonstration",
                t.to_log_text(),
                system.to_log_text()
            )));
        }
        Ok(Clock::Fixed(t))
    }

    /// The time now on this clock.
    pub fn read(self) -> Timestamp {
        match self {
            Clock::System => Timestamp::system(),
            Clock::Fixed(t) => t,
        }
    }

    /// The trial's date now on this clock, in `zone`.
    pub fn today(self, zone: Tz) -> NaiveDate {
        self.read().date_in(zone)
    }

    /// The time to record for a write whose log's last entry has time `last`
    /// (log text); read once per write, inside its transaction.
    ///
    /// A fixed time earlier than `last` is refused: the log cannot be
    /// back-dated. The system clock, read after the write lock is taken, is
    /// at or after every entry written on it; if it reads earlier than `last`
    /// (a clock stepped back, or an entry given a time up to the tolerance
    /// ahead), the write is recorded at `last` (equal times are allowed), so
    /// the log stays in time order and no write on the real clock is refused
    /// for it. Only a gap larger than the tolerance, which the system clock
    /// alone cannot make, is refused.
    pub fn stamp(self, last: Option<&str>) -> Result<Timestamp> {
        let now = self.read();
        let Some(last) = last else { return Ok(now) };
        let text = now.to_log_text();
        if text.as_str() >= last {
            return Ok(now);
        }
        match self {
            Clock::Fixed(_) => Err(Error::Refused(format!(
                "time {text} is earlier than the log's last entry ({last}); the log cannot be back-dated (check --now or CHANCERY_NOW)"
            ))),
            Clock::System => {
                let at = Timestamp::parse(last)
                    .map_err(|_| Error::Integrity(format!("the log's last entry has an unreadable time {last:?}")))?;
                if at.0 - now.0 <= Duration::minutes(FUTURE_TOLERANCE_MINUTES) {
                    Ok(at)
                } else {
                    Err(Error::Refused(format!(
                        "the system clock ({text}) is behind the log's last entry ({last}) by more than {FUTURE_TOLERANCE_MINUTES} minutes, and the log cannot be back-dated; set the system clock right, or, if that entry was given a mistaken --now, write with --now at or after it"
                    )))
                }
            }
        }
    }
}

/// Parses a calendar date, `YYYY-MM-DD`, by [`crate::values`]' rules.
pub fn parse_date(s: &str) -> Result<NaiveDate> {
    crate::values::parse_date(s).map_err(Error::Input)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn log_text_is_fixed_width_utc() {
        let t = Timestamp::parse("2026-11-22T10:30:00+01:00").unwrap();
        assert_eq!(t.to_log_text(), "2026-11-22T09:30:00.000000Z");
        assert!(Timestamp::parse("22/11/2026").is_err());
    }

    #[test]
    fn a_given_time_far_ahead_of_the_system_clock_needs_the_flag() {
        let system = t("2026-12-07T12:00:00Z");
        assert_eq!(
            Clock::given(t("2026-12-07T12:04:59Z"), system, false).unwrap(),
            Clock::Fixed(t("2026-12-07T12:04:59Z"))
        );
        let e = Clock::given(t("2062-12-07T12:00:00Z"), system, false).unwrap_err().to_string();
        assert!(
            e.contains("more than 5 minutes ahead of the system clock") && e.contains("--allow-future-time"),
            "{e}"
        );
        assert!(Clock::given(t("9999-12-31T00:00:00Z"), system, true).is_ok());
        assert!(Clock::given(t("2020-01-01T00:00:00Z"), system, false).is_ok(), "the past is not refused here");
    }

    #[test]
    fn a_fixed_time_before_the_last_entry_is_refused_the_system_clock_never_back_dates() {
        let last = "2026-12-07T12:00:00.000000Z";
        let e = Clock::Fixed(t("2026-12-07T11:59:59Z")).stamp(Some(last)).unwrap_err().to_string();
        assert!(e.contains("cannot be back-dated"), "{e}");
        assert_eq!(Clock::Fixed(t(last)).stamp(Some(last)).unwrap(), t(last), "equal times are allowed");
        // An entry written up to the tolerance ahead: the real clock records at it.
        let ahead = Timestamp(Utc::now() + Duration::minutes(3)).to_log_text();
        assert_eq!(Clock::System.stamp(Some(&ahead)).unwrap().to_log_text(), ahead);
        let far = Timestamp(Utc::now() + Duration::hours(3)).to_log_text();
        let e = Clock::System.stamp(Some(&far)).unwrap_err().to_string();
        assert!(e.contains("the system clock") && e.contains("cannot be back-dated"), "{e}");
        let now = Clock::System.stamp(Some(last)).unwrap();
        assert!(now.to_log_text().as_str() > last);
    }

    #[test]
    fn the_trial_date_is_the_date_in_its_zone() {
        let london: Tz = "Europe/London".parse().unwrap();
        // 00:30 BST on 1 July is 23:30 UTC on 30 June.
        assert_eq!(t("2026-06-30T23:30:00Z").date_in(london), NaiveDate::from_ymd_opt(2026, 7, 1).unwrap());
        assert_eq!(t("2026-06-30T23:30:00Z").date_in(Tz::UTC), NaiveDate::from_ymd_opt(2026, 6, 30).unwrap());
        // In winter London is UTC.
        assert_eq!(t("2026-12-31T23:30:00Z").date_in(london), NaiveDate::from_ymd_opt(2026, 12, 31).unwrap());
    }
}
