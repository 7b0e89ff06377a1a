//! Follow-up: which participants are due at which timepoint, and the rules an
//! outcome value must satisfy before it is recorded.
//!
//! Pure: the ledger passes in the participant, their current values and the
//! date; this module says what is due, or why a value cannot be recorded.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use serde::Serialize;

use crate::protocol::{Kind, Protocol};
use crate::referral::{canonical_value, truncate};
use crate::table_input::{CsvFile, CsvOptions};
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
}

/// What the rules need to know about a participant.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    /// Date of randomisation.
    pub randomised_on: NaiveDate,
    /// Withdrawn with no further contact.
    pub no_further_contact: bool,
    /// Current values: timepoint → outcome → value.
    pub current: BTreeMap<String, BTreeMap<String, String>>,
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
    consistency(protocol, subject.randomised_on, &merged, &[(t.as_str(), entry.collected_on)])
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
    /// The corrected value as entered.
    pub value: String,
    /// Why the value is corrected.
    pub reason: String,
}

/// Validates a correction of a value collected on `collected_on`; returns the
/// old and the canonical new value.
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
    let new = canonical_value(&o.kind, &c.value)
        .map_err(|m| format!("participant {participant}, {timepoint}: {field}: {m}"))?;
    if new == old {
        return Err(format!("participant {participant}, {timepoint}: {field} is already {old}; nothing to correct"));
    }
    let corrected = BTreeMap::from([(field.clone(), new.clone())]);
    let merged = Values { current: &subject.current, timepoint, new: &corrected };
    consistency(protocol, subject.randomised_on, &merged, &[(timepoint.as_str(), collected_on)])
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
    fn get(&self, timepoint: &str, name: &str) -> Option<&str> {
        if timepoint == self.timepoint
            && let Some(v) = self.new.get(name)
        {
            return Some(v);
        }
        self.current.get(timepoint)?.get(name).map(String::as_str)
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
        out
    }
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
/// worked; more weeks worked than have passed; a first job date before
/// randomisation or after the follow-up date; paid work for 13+ weeks without
/// any first job date; 13+ weeks worked by 12 months but the primary outcome no.
fn consistency(
    protocol: &Protocol,
    randomised_on: NaiveDate,
    values: &Values,
    collected: &[(&str, NaiveDate)],
) -> Result<(), String> {
    let has = |name: &str| protocol.outcome(name).is_some();
    let (in_paid_work, weeks, first_job, primary) =
        (has("in_paid_work"), has("weeks_in_paid_work"), has("first_job_date"), has("paid_work_13_weeks"));
    let get = |t: &str, name: &str| values.get(t, name);
    for (t, on) in collected {
        if in_paid_work && weeks && get(t, "in_paid_work") == Some("yes") && get(t, "weeks_in_paid_work") == Some("0") {
            return Err("in_paid_work is yes but weeks_in_paid_work is 0; one of them is wrong".into());
        }
        if let Some(w) = get(t, "weeks_in_paid_work").and_then(|w| w.parse::<i64>().ok()) {
            let elapsed = (*on - randomised_on).num_days();
            if w * 7 > elapsed + 6 {
                return Err(format!(
                    "weeks_in_paid_work is {w} but only {elapsed} days have passed since randomisation"
                ));
            }
        }
        if let Some(d) = get(t, "first_job_date").and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()) {
            if d > *on {
                return Err(format!("first_job_date {d} is after the follow-up date {on}"));
            }
            if d < randomised_on {
                return Err(format!(
                    "first_job_date {d} is before randomisation ({randomised_on}); record only the first job after randomisation"
                ));
            }
        }
    }
    let all = if primary { values.all() } else { Vec::new() };
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
            let opens = target - Duration::days(i64::from(t.window));
            let closes = target + Duration::days(i64::from(t.window));
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
/// `participant,timepoint[,collected_on],<outcome>…`. Rows without a
/// `collected_on` cell are dated `default_on`. Every malformed row is reported.
pub fn parse_outcome_csv(
    name: &str,
    bytes: &[u8],
    default_on: NaiveDate,
) -> Result<Vec<(String, OutcomeEntry)>, String> {
    read_outcome_csv(name, bytes, default_on, &CsvOptions::default())
}

/// [`parse_outcome_csv`] from any reader, read as `options` say (see [`crate::table_input`]).
pub fn read_outcome_csv(
    name: &str,
    input: impl std::io::Read,
    default_on: NaiveDate,
    options: &CsvOptions,
) -> Result<Vec<(String, OutcomeEntry)>, String> {
    let file = CsvFile::read(name, input, options)?;
    let headers = file.headers();
    if headers.len() < 3 || headers[0] != "participant" || headers[1] != "timepoint" {
        return Err(format!(
            "{name}:{}: the header must start with participant,timepoint then outcome names (found {:?})",
            file.header_line(),
            truncate(&headers.join(","), 60)
        ));
    }
    let date_col = headers.iter().position(|h| h == "collected_on");
    let mut out = Vec::new();
    let problems = file.rows(|line, record| {
        let collected_on = match date_col.map(|i| record[i].trim()).filter(|d| !d.is_empty()) {
            None => default_on,
            Some(d) => parse_date(d).map_err(|m| format!("collected_on {m}"))?,
        };
        let values = headers
            .iter()
            .enumerate()
            .skip(2)
            .filter(|(i, _)| Some(*i) != date_col)
            .map(|(i, h)| (h.clone(), record[i].to_string()))
            .collect();
        out.push((
            format!("{name}:{line}"),
            OutcomeEntry {
                participant: record[0].trim().to_string(),
                timepoint: canonical_name(&record[1]),
                collected_on,
                values,
            },
        ));
        Ok(())
    });
    if !problems.is_empty() {
        return Err(format!(
            "{} rows of {name} cannot be read, so nothing was written:\n  {}",
            problems.len(),
            problems.join("\n  ")
        ));
    }
    if out.is_empty() {
        return Err(format!("{name}: the file has a header but no rows"));
    }
    Ok(out)
}
