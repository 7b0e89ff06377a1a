//! Follow-up: which participants are due at which timepoint, and the rules an
//! outcome value must satisfy before it is recorded.
//!
//! Pure: the ledger passes in the participant, their current values and the
//! date; this module says what is due, or why a value cannot be recorded.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use serde::Serialize;

use crate::protocol::{Kind, Protocol, Timepoint};
use crate::referral::{canonical_value, truncate};
use crate::table_input::{CsvFile, CsvOptions, Rows, all_readable};
use crate::values::{canonical_name, parse_date};

/// Follow-up values for one participant at one timepoint, as entered.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeEntry {
    /// Participant id.
    pub participant: String,
    /// Timepoint id.
    pub timepoint: String,
    /// Date the values were collected.
    pub collected_on: NaiveDate,
    /// `FIELD=VALUE` pairs as entered.
    pub values: Vec<(String, String)>,
    /// Why the values were collected outside the timepoint's window, when
    /// they were (an entry outside it without a reason is refused).
    pub window_reason: Option<String>,
}

/// What the rules need to know about a participant.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    /// Date of randomisation.
    pub randomised_on: NaiveDate,
    /// Withdrawn with no further contact.
    pub no_further_contact: bool,
    /// Current values: timepoint → outcome → value (empty: corrected to missing).
    pub current: BTreeMap<String, BTreeMap<String, String>>,
    /// When each timepoint's current values were collected (the latest, of
    /// values not corrected to missing).
    pub collected: BTreeMap<String, NaiveDate>,
    /// The recorded date of death, if the participant died.
    pub died_on: Option<NaiveDate>,
}

/// The first and last day of a timepoint's window for a participant
/// randomised on `randomised_on`: the target day ± the window.
pub fn window(tp: &Timepoint, randomised_on: NaiveDate) -> (NaiveDate, NaiveDate) {
    let target = randomised_on + Duration::days(i64::from(tp.day));
    (target - Duration::days(i64::from(tp.window)), target + Duration::days(i64::from(tp.window)))
}

/// Whether a collection date lies outside the timepoint's window; `None` for
/// an unknown timepoint.
pub fn outside_window(protocol: &Protocol, timepoint: &str, randomised_on: NaiveDate, on: NaiveDate) -> Option<bool> {
    let (opens, closes) = window(protocol.timepoint(timepoint)?, randomised_on);
    Some(on < opens || on > closes)
}

/// Validates an entry against the protocol and the participant's record;
/// returns the canonical values to record, or one message saying what is wrong.
pub fn validate_entry(
    protocol: &Protocol,
    subject: &Subject,
    entry: &OutcomeEntry,
    today: NaiveDate,
) -> Result<BTreeMap<String, String>, String> {
    let p = &entry.participant;
    let t = &entry.timepoint;
    if subject.no_further_contact {
        return Err(format!(
            "participant {p} withdrew and asked for no further contact; no further data may be recorded"
        ));
    }
    let tp = protocol.timepoint(t).ok_or_else(|| {
        format!(
            "unknown timepoint {:?}; the protocol's timepoints are {}",
            truncate(t, 40),
            protocol.timepoints.iter().map(|x| x.id.as_str()).collect::<Vec<_>>().join(", ")
        )
    })?;
    check_date(p, entry.collected_on, subject.randomised_on, today)?;
    if let Some(died) = subject.died_on
        && entry.collected_on > died
    {
        return Err(format!(
            "participant {p}, {t}: the participant is recorded as died on {died}, so nothing can be collected on {}; check --on",
            entry.collected_on
        ));
    }
    check_window(p, tp, subject.randomised_on, entry.collected_on, entry.window_reason.as_deref())?;
    if entry.values.is_empty() {
        return Err(format!("participant {p}, {t}: no values given; give --set FIELD=VALUE"));
    }
    let recorded = subject.current.get(t.as_str());
    let mut values = BTreeMap::new();
    for (name, raw) in &entry.values {
        let o = protocol.outcome(name).ok_or_else(|| {
            format!(
                "unknown outcome {:?}; the protocol's outcomes are {}",
                truncate(name, 40),
                protocol.outcomes.iter().map(|x| x.name.as_str()).collect::<Vec<_>>().join(", ")
            )
        })?;
        if raw.trim().is_empty() {
            continue;
        }
        if !o.timepoints.iter().any(|x| x == &tp.id) {
            return Err(format!(
                "participant {p}: {name} is not collected at {t} (only at {})",
                o.timepoints.join(", ")
            ));
        }
        let v = canonical_value(&o.kind, raw).map_err(|m| format!("participant {p}, {t}: {name}: {m}"))?;
        if values.insert(name.clone(), v).is_some() {
            return Err(format!("participant {p}, {t}: {name} is given twice; give it once"));
        }
        if recorded.and_then(|r| r.get(name)).is_some_and(|old| old.is_empty()) {
            return Err(format!(
                "participant {p}, {t}: {name} was corrected to missing; to give it a value use `chancery outcome correct` with a reason"
            ));
        }
        if let Some(old) = recorded.and_then(|r| r.get(name)) {
            return Err(format!(
                "participant {p}, {t}: {name} is already recorded ({old}); to change it use `chancery outcome correct` with a reason"
            ));
        }
    }
    if values.is_empty() {
        return Err(format!("participant {p}, {t}: every value given is empty; nothing to record"));
    }
    let merged = Values { current: &subject.current, timepoint: t, new: &values };
    let collected = Collected { others: &subject.collected, timepoint: t, on: entry.collected_on };
    consistency(protocol, subject.randomised_on, &merged, &collected, true)
        .map_err(|m| format!("participant {p}, {t}: {m}"))?;
    Ok(values)
}

/// A correction to one recorded value, as entered.
#[derive(Debug, Clone, PartialEq)]
pub struct Correction {
    /// Participant id.
    pub participant: String,
    /// Timepoint id.
    pub timepoint: String,
    /// Outcome name.
    pub field: String,
    /// The corrected value as entered; empty to correct the value to missing.
    pub value: String,
    /// Why the value is corrected.
    pub reason: String,
}

/// Validates a correction of a value collected on `collected_on`; returns the
/// old and the canonical new value (empty: the value is corrected to missing).
pub fn validate_correction(
    protocol: &Protocol,
    subject: &Subject,
    c: &Correction,
    collected_on: NaiveDate,
) -> Result<(String, String), String> {
    let (participant, timepoint, field) = (&c.participant, &c.timepoint, &c.field);
    if c.reason.trim().is_empty() {
        return Err("a correction needs a reason; give --reason TEXT".into());
    }
    let o = protocol.outcome(field).ok_or_else(|| format!("unknown outcome {:?}", truncate(field, 40)))?;
    if protocol.timepoint(timepoint).is_none() {
        return Err(format!("unknown timepoint {:?}", truncate(timepoint, 40)));
    }
    let old = subject.current.get(timepoint.as_str()).and_then(|r| r.get(field)).cloned().ok_or_else(|| {
        format!(
            "participant {participant}, {timepoint}: {field} has no recorded value to correct; record it with `chancery outcome record`"
        )
    })?;
    // An empty value is no value: the correction makes it missing.
    let new = if c.value.trim().is_empty() {
        String::new()
    } else {
        canonical_value(&o.kind, &c.value)
            .map_err(|m| format!("participant {participant}, {timepoint}: {field}: {m}"))?
    };
    if new == old {
        let is = if old.is_empty() { "missing".to_string() } else { old };
        return Err(format!("participant {participant}, {timepoint}: {field} is already {is}; nothing to correct"));
    }
    let corrected = BTreeMap::from([(field.clone(), new.clone())]);
    let merged = Values { current: &subject.current, timepoint, new: &corrected };
    let collected = Collected { others: &subject.collected, timepoint, on: collected_on };
    // A first job date is corrected one timepoint at a time, so a correction
    // may differ from the other timepoints' until they are corrected too.
    consistency(protocol, subject.randomised_on, &merged, &collected, false)
        .map_err(|m| format!("participant {participant}, {timepoint}: {m}"))?;
    Ok((old, new))
}

/// A participant's values as the rules below see them: those recorded, with
/// an entry's (or a correction's) values at its timepoint laid over them,
/// looked up in place rather than merged into a copy.
struct Values<'a> {
    current: &'a BTreeMap<String, BTreeMap<String, String>>,
    timepoint: &'a str,
    new: &'a BTreeMap<String, String>,
}

impl Values<'_> {
    /// The value, `None` if missing (never recorded, or corrected to missing).
    fn get(&self, timepoint: &str, name: &str) -> Option<&str> {
        let v = match self.new.get(name) {
            Some(v) if timepoint == self.timepoint => v,
            _ => self.current.get(timepoint)?.get(name)?,
        };
        (!v.is_empty()).then_some(v.as_str())
    }

    /// Every (timepoint, outcome, value), each (timepoint, outcome) once.
    fn all(&self) -> Vec<(&str, &str, &str)> {
        let mut out: Vec<(&str, &str, &str)> = self
            .current
            .iter()
            .flat_map(|(t, m)| m.iter().map(move |(n, v)| (t.as_str(), n.as_str(), v.as_str())))
            .filter(|(t, n, _)| *t != self.timepoint || !self.new.contains_key(*n))
            .collect();
        out.extend(self.new.iter().map(|(n, v)| (self.timepoint, n.as_str(), v.as_str())));
        out.retain(|(_, _, v)| !v.is_empty());
        out
    }
}

/// When each timepoint's values were collected, an entry's (or a
/// correction's) date at its timepoint laid over those recorded.
struct Collected<'a> {
    others: &'a BTreeMap<String, NaiveDate>,
    timepoint: &'a str,
    on: NaiveDate,
}

impl Collected<'_> {
    fn get(&self, timepoint: &str) -> Option<NaiveDate> {
        if timepoint == self.timepoint { Some(self.on) } else { self.others.get(timepoint).copied() }
    }
}

/// Refuses a collection outside the timepoint's window unless a reason is
/// given, and a reason for one inside it (it would flag the value for nothing).
fn check_window(
    p: &str,
    tp: &Timepoint,
    randomised_on: NaiveDate,
    on: NaiveDate,
    reason: Option<&str>,
) -> Result<(), String> {
    let (opens, closes) = window(tp, randomised_on);
    let t = &tp.id;
    let outside = on < opens || on > closes;
    let day = (on - randomised_on).num_days();
    let given = reason.is_some_and(|r| !r.trim().is_empty());
    if let Some(r) = reason {
        if r.chars().count() > 500 {
            return Err(format!("participant {p}, {t}: the window reason is longer than 500 characters; shorten it"));
        }
        if r.chars().any(char::is_control) {
            return Err(format!(
                "participant {p}, {t}: the window reason contains a control character (such as a line break); write it on one line"
            ));
        }
    }
    if outside && !given {
        return Err(format!(
            "participant {p}, {t}: collected on {on}, day {day} after randomisation, outside the {t} window \
             (days {}–{}: {opens} to {closes}); if it was collected then, give the reason with --window-reason TEXT \
             (a window_reason column in a CSV)",
            i64::from(tp.day) - i64::from(tp.window),
            i64::from(tp.day) + i64::from(tp.window),
        ));
    }
    if !outside && reason.is_some() {
        return Err(format!(
            "participant {p}, {t}: collected on {on}, within the {t} window ({opens} to {closes}), but a window reason is given; \
             give a window reason only for a collection outside the window"
        ));
    }
    Ok(())
}

fn check_date(p: &str, on: NaiveDate, randomised_on: NaiveDate, today: NaiveDate) -> Result<(), String> {
    if on < randomised_on {
        return Err(format!(
            "participant {p}: follow-up date {on} is before randomisation ({randomised_on}); check --on"
        ));
    }
    if on > today {
        return Err(format!("participant {p}: follow-up date {on} is in the future (today is {today}); check --on"));
    }
    Ok(())
}

/// Built-in consistency rules between the employment outcomes, applied when
/// the protocol declares them (by these names): in paid work with 0 weeks
/// worked; more weeks worked than have passed since randomisation or since
/// the first job began; a first job date before randomisation or after the
/// follow-up date, or (for a new value) unlike the one at another timepoint;
/// paid work for 13+ weeks without any first job date, or with less than 13
/// weeks between the first job (or randomisation) and that collection; 13+
/// weeks worked by 12 months but the primary outcome no.
///
/// Weeks are counted as calendar weeks begun: a job that began on the day of
/// collection is in its first week, so `w` weeks need `7·(w − 1)` days.
fn consistency(
    protocol: &Protocol,
    randomised_on: NaiveDate,
    values: &Values,
    collected: &Collected,
    same_first_job: bool,
) -> Result<(), String> {
    let has = |name: &str| protocol.outcome(name).is_some();
    let (in_paid_work, weeks, first_job, primary) =
        (has("in_paid_work"), has("weeks_in_paid_work"), has("first_job_date"), has("paid_work_13_weeks"));
    let get = |t: &str, name: &str| values.get(t, name);
    let date = |v: &str| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok();
    let all = values.all();
    // The first job date at a timepoint, else the one recorded at another
    // (they are one date: the first job after randomisation).
    let first_job_at = |t: &str| {
        get(t, "first_job_date")
            .and_then(date)
            .or_else(|| all.iter().find(|(_, n, _)| *n == "first_job_date").and_then(|(_, _, v)| date(v)))
    };
    let (t, on) = (collected.timepoint, collected.on);
    if in_paid_work && weeks && get(t, "in_paid_work") == Some("yes") && get(t, "weeks_in_paid_work") == Some("0") {
        return Err("in_paid_work is yes but weeks_in_paid_work is 0; one of them is wrong".into());
    }
    if let Some(w) = get(t, "weeks_in_paid_work").and_then(|w| w.parse::<i64>().ok()) {
        let elapsed = (on - randomised_on).num_days();
        if w * 7 > elapsed + 6 {
            return Err(format!("weeks_in_paid_work is {w} but only {elapsed} days have passed since randomisation"));
        }
        if w > 0
            && let Some(d) = first_job_at(t)
            && w * 7 > (on - d).num_days() + 7
        {
            let days = (on - d).num_days();
            let when = if days < 0 {
                format!("{} days after the collection on {on}", -days)
            } else {
                format!("{days} days before the collection on {on}")
            };
            return Err(format!(
                "weeks_in_paid_work is {w} but the first job began on {d}, {when}; one of them is wrong"
            ));
        }
    }
    if let Some(d) = get(t, "first_job_date").and_then(date) {
        if d > on {
            return Err(format!("first_job_date {d} is after the follow-up date {on}"));
        }
        if d < randomised_on {
            return Err(format!(
                "first_job_date {d} is before randomisation ({randomised_on}); record only the first job after randomisation"
            ));
        }
        if same_first_job
            && let Some((other, _, v)) =
                all.iter().find(|(o, n, v)| *o != t && *n == "first_job_date" && date(v) != Some(d))
        {
            return Err(format!(
                "first_job_date {d} differs from the one recorded at {other} ({v}); the first job after randomisation is one date at every timepoint: \
                 record the same date, or correct the one that is wrong with `chancery outcome correct`"
            ));
        }
    }
    if primary {
        for &(pt, n, v) in &all {
            if n != "paid_work_13_weeks" || v != "yes" {
                continue;
            }
            let Some(p_on) = collected.get(pt) else { continue };
            let since = (p_on - randomised_on).num_days();
            if 13 * 7 > since + 6 {
                return Err(format!(
                    "paid_work_13_weeks is yes at {pt} but only {since} days passed between randomisation and that collection ({p_on}); one of them is wrong"
                ));
            }
            if first_job
                && let Some(d) = first_job_at(pt)
                && 13 * 7 > (p_on - d).num_days() + 7
            {
                return Err(format!(
                    "paid_work_13_weeks is yes at {pt} but the first job began on {d}, only {} days before that collection ({p_on}); \
                     13 weeks in work need at least 84 days: one of them is wrong",
                    (p_on - d).num_days()
                ));
            }
        }
    }
    if primary && first_job {
        let primary_yes = all.iter().any(|(_, n, v)| *n == "paid_work_13_weeks" && *v == "yes");
        let any_job = all.iter().any(|(_, n, _)| *n == "first_job_date");
        if primary_yes && !any_job {
            return Err("paid_work_13_weeks is yes but no first_job_date is recorded at any timepoint; record the first job date".into());
        }
    }
    if primary && weeks {
        for &(t, n, v) in &all {
            if n == "paid_work_13_weeks"
                && v == "no"
                && get(t, "weeks_in_paid_work").and_then(|w| w.parse::<i64>().ok()).is_some_and(|w| w >= 13)
            {
                return Err(
                    "weeks_in_paid_work is 13 or more but paid_work_13_weeks is no; one of them is wrong".into()
                );
            }
        }
    }
    Ok(())
}

/// Where a participant stands against one timepoint's window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Due {
    /// Participant id.
    pub participant: String,
    /// Site.
    pub site: String,
    /// Timepoint id.
    pub timepoint: String,
    /// Target date (randomisation + day).
    pub target: NaiveDate,
    /// First day of the window.
    pub window_opens: NaiveDate,
    /// Last day of the window.
    pub window_closes: NaiveDate,
    /// `due soon` (window opens within 14 days), `in window`, or `overdue`.
    pub state: String,
    /// Days past the window's close (overdue only).
    pub days_overdue: i64,
}

/// The follow-ups a coordinator should work on, as of `on`: every timepoint
/// with nothing recorded whose window opens within 14 days, is open, or has
/// closed. The arm is deliberately not shown: outcome assessors may be blinded.
pub fn due(
    protocol: &Protocol,
    participant: &str,
    site: &str,
    randomised_on: NaiveDate,
    recorded: &[String],
    on: NaiveDate,
) -> Vec<Due> {
    protocol
        .timepoints
        .iter()
        .filter(|t| !recorded.contains(&t.id))
        .filter_map(|t| {
            let target = randomised_on + Duration::days(i64::from(t.day));
            let (opens, closes) = window(t, randomised_on);
            let state = if on > closes {
                "overdue"
            } else if on >= opens {
                "in window"
            } else if (opens - on).num_days() <= 14 {
                "due soon"
            } else {
                return None;
            };
            Some(Due {
                participant: participant.to_string(),
                site: site.to_string(),
                timepoint: t.id.clone(),
                target,
                window_opens: opens,
                window_closes: closes,
                state: state.into(),
                days_overdue: if state == "overdue" { (on - closes).num_days() } else { 0 },
            })
        })
        .collect()
}

/// Whether a kind holds numbers (for exports and the codebook).
pub fn is_numeric(kind: &Kind) -> bool {
    matches!(kind, Kind::Integer { .. } | Kind::Number { .. })
}

/// Reads a batch of outcomes from CSV bytes with the header
/// `participant,timepoint[,collected_on][,window_reason],<outcome>…`. Rows
/// without a `collected_on` cell are dated `default_on`; a `window_reason`
/// cell says why a row was collected outside its window. Refused whole, every
/// malformed row listed, if any row cannot be read.
pub fn parse_outcome_csv(
    name: &str,
    bytes: &[u8],
    default_on: NaiveDate,
) -> Result<Vec<(String, OutcomeEntry)>, String> {
    all_readable(name, read_outcome_csv(name, bytes, default_on, &CsvOptions::default())?)
}

/// The rows of an outcome CSV (see [`parse_outcome_csv`]) from any reader,
/// read as `options` say (see [`crate::table_input`]), each with where it
/// stands and its entry or why it cannot be read, in file order, so that an
/// import lists these problems with those of the values in one report. Only a
/// file that cannot be read at all, or whose header is wrong, is an error here.
pub fn read_outcome_csv(
    name: &str,
    input: impl std::io::Read,
    default_on: NaiveDate,
    options: &CsvOptions,
) -> Result<Rows<OutcomeEntry>, String> {
    let file = CsvFile::read(name, input, options)?;
    file.expect_header(&["participant", "timepoint"], 3, "outcome names")?;
    let headers = file.headers();
    let date_col = headers.iter().position(|h| h == "collected_on");
    let reason_col = headers.iter().position(|h| h == "window_reason");
    file.collect_each("rows", |record| {
        let collected_on = match date_col.map(|i| record[i].trim()).filter(|d| !d.is_empty()) {
            None => default_on,
            Some(d) => parse_date(d).map_err(|m| format!("collected_on {m}"))?,
        };
        let values = headers
            .iter()
            .enumerate()
            .skip(2)
            .filter(|(i, _)| Some(*i) != date_col && Some(*i) != reason_col)
            .map(|(i, h)| (h.clone(), record[i].to_string()))
            .collect();
        let window_reason = reason_col.map(|i| record[i].trim()).filter(|r| !r.is_empty()).map(str::to_string);
        Ok(OutcomeEntry {
            participant: record[0].trim().to_string(),
            timepoint: canonical_name(&record[1]),
            collected_on,
            values,
            window_reason,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protocol() -> Protocol {
        Protocol::parse("work-health-ips.toml", include_str!("../protocol/work-health-ips.toml")).unwrap()
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn entry(timepoint: &str, on: &str, values: &[(&str, &str)]) -> OutcomeEntry {
        OutcomeEntry {
            participant: "P1".into(),
            timepoint: timepoint.into(),
            collected_on: date(on),
            values: values.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            window_reason: None,
        }
    }

    fn subject() -> Subject {
        Subject {
            randomised_on: date("2026-03-02"),
            no_further_contact: false,
            current: BTreeMap::new(),
            collected: BTreeMap::new(),
            died_on: None,
        }
    }

    /// Weeks are weeks begun: a job that began on the day of collection is
    /// in its first week, and 13 weeks need 84 days (12 whole weeks and a day
    /// of the 13th). See: issue 18, "13+ weeks in work" 19 days after a first job.
    #[test]
    fn weeks_in_work_are_counted_as_weeks_begun_since_the_first_job() {
        let (p, s, today) = (protocol(), subject(), date("2027-12-31"));
        let at = |on: &str, values: &[(&str, &str)]| validate_entry(&p, &s, &entry("m12", on, values), today);
        assert!(at("2027-03-02", &[("weeks_in_paid_work", "1"), ("first_job_date", "2027-03-02")]).is_ok());
        let two = at("2027-03-02", &[("weeks_in_paid_work", "2"), ("first_job_date", "2027-03-02")]).unwrap_err();
        assert!(two.contains("weeks_in_paid_work is 2 but the first job began on 2027-03-02, 0 days before"), "{two}");
        // A job after the collection is said so, not as a negative count. See: "-11 days before".
        let after = at("2027-03-02", &[("weeks_in_paid_work", "2"), ("first_job_date", "2027-03-10")]).unwrap_err();
        assert!(after.contains("began on 2027-03-10, 8 days after the collection on 2027-03-02"), "{after}");
        let yes = |job: &str| at("2027-03-02", &[("paid_work_13_weeks", "yes"), ("first_job_date", job)]);
        assert!(yes("2026-12-08").is_ok(), "84 days");
        let short = yes("2026-12-09").unwrap_err();
        assert!(short.contains("only 83 days before that collection (2027-03-02)"), "{short}");
    }

    /// The window's last day is in it, the next is not; a reason lets it through.
    #[test]
    fn the_window_is_the_target_day_plus_or_minus_the_window() {
        let (p, s, today) = (protocol(), subject(), date("2027-12-31"));
        // m4: target 2026-07-02, ±30 days.
        assert!(validate_entry(&p, &s, &entry("m4", "2026-06-02", &[("phq9", "3")]), today).is_ok());
        assert!(validate_entry(&p, &s, &entry("m4", "2026-08-01", &[("phq9", "3")]), today).is_ok());
        let late = validate_entry(&p, &s, &entry("m4", "2026-08-02", &[("phq9", "3")]), today).unwrap_err();
        assert!(late.contains("day 153 after randomisation, outside the m4 window"), "{late}");
        let mut with_reason = entry("m4", "2026-08-02", &[("phq9", "3")]);
        with_reason.window_reason = Some("in hospital in July".into());
        assert!(validate_entry(&p, &s, &with_reason, today).is_ok());
        assert_eq!(outside_window(&p, "m4", s.randomised_on, date("2026-08-02")), Some(true));
        assert_eq!(outside_window(&p, "m4", s.randomised_on, date("2026-08-01")), Some(false));
        assert_eq!(outside_window(&p, "m9", s.randomised_on, date("2026-08-01")), None);
    }
}
