//! Follow-up: recording, importing and correcting outcomes, status changes
//! (withdrawn, consent renewed, lost, died) and the day's work list ([`due`]).

use chrono::NaiveDate;
use serde::Serialize;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::followup::{Correction, Due, OutcomeEntry};
use crate::ledger::Trial;
use crate::outcome::{StatusKind, Written};
use crate::table_input::CsvOptions;
use crate::values::canonical_name;

/// What [`record_outcome`] needs: one participant's values at one timepoint.
#[derive(Debug, Clone)]
pub struct RecordRequest {
    /// Participant id.
    pub participant: String,
    /// Timepoint id.
    pub timepoint: String,
    /// The values, as (outcome, value) pairs.
    pub values: Vec<(String, String)>,
    /// The date they were collected (default: today in the trial's time zone).
    pub on: Option<NaiveDate>,
    /// Why they were collected outside the timepoint's window.
    pub window_reason: Option<String>,
    /// The acting user.
    pub user: String,
    /// The clock.
    pub clock: Clock,
}

/// Records follow-up values for one participant at one timepoint.
pub fn record_outcome(trial: &mut Trial, request: &RecordRequest) -> Result<Written> {
    // The trial's date now; the write checks it against its own reading of
    // the clock, which can only be the same or later.
    let collected_on = request.on.unwrap_or_else(|| request.clock.today(trial.protocol().timezone));
    let entry = OutcomeEntry {
        participant: request.participant.clone(),
        timepoint: request.timepoint.clone(),
        collected_on,
        values: request.values.iter().map(|(k, v)| (canonical_name(k), v.clone())).collect(),
        window_reason: request.window_reason.clone(),
    };
    let written = trial.record_outcomes(&[("outcome".to_string(), entry)], &request.user, request.clock)?;
    written.into_iter().next().ok_or_else(|| Error::Integrity("recording an outcome wrote no log entry".into()))
}

/// What [`import_outcomes`] needs: a CSV file's bytes
/// (`participant,timepoint[,collected_on][,window_reason],<outcome>…`).
#[derive(Debug, Clone)]
pub struct ImportRequest {
    /// The file's name, for messages.
    pub name: String,
    /// Its bytes (checked here against [`crate::bounded::Limits::CSV`]).
    pub csv: Vec<u8>,
    /// Its separator, if not a comma.
    pub delimiter: Option<u8>,
    /// The acting user.
    pub user: String,
    /// The clock.
    pub clock: Clock,
}

/// What [`import_outcomes`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    /// The file's name.
    pub name: String,
    /// One record per row, in file order.
    pub written: Vec<Written>,
}

/// Imports outcomes from CSV, all or nothing. The file is read here, not
/// before the trial is opened: a row without a date is dated today in the
/// trial's time zone.
pub fn import_outcomes(trial: &mut Trial, request: &ImportRequest) -> Result<Imported> {
    crate::bounded::check(&request.name, &request.csv, crate::bounded::Limits::CSV)?;
    let today = request.clock.today(trial.protocol().timezone);
    let options = CsvOptions { delimiter: request.delimiter };
    // Rows that cannot be read are listed with the invalid values of the rest,
    // in file order: one submission finds every problem.
    let rows =
        crate::followup::read_outcome_csv(&request.name, &request.csv[..], today, &options).map_err(Error::Input)?;
    let written = trial.record_outcome_rows(&rows, &request.user, request.clock)?;
    Ok(Imported { name: request.name.clone(), written })
}

/// What a correction sets a value to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorrectTo {
    /// A new value for the field.
    Value {
        /// The field.
        field: String,
        /// Its corrected value (never empty).
        value: String,
    },
    /// Missing.
    Missing {
        /// The field.
        field: String,
    },
}

impl CorrectTo {
    /// The correction asked for by `--set FIELD=VALUE` (as a (field, value)
    /// pair) or `--clear FIELD`. An empty value is a correction to missing
    /// only when asked for by `--clear`, so that a slip of `--set FIELD=` is
    /// not taken for one. (The messages name the command line's options, as
    /// the library's messages do.)
    pub fn new(set: Option<(String, String)>, clear: Option<String>) -> Result<CorrectTo> {
        match (set, clear) {
            (Some(_), Some(_)) => Err(Error::Input("give --set FIELD=VALUE or --clear FIELD, not both".into())),
            (Some((field, value)), None) => {
                if value.trim().is_empty() {
                    return Err(Error::Input(format!(
                        "--set {:?} gives no value; to correct {} to missing use --clear {}",
                        format!("{field}={value}"),
                        field.trim(),
                        field.trim()
                    )));
                }
                Ok(CorrectTo::Value { field, value })
            }
            (None, Some(field)) => Ok(CorrectTo::Missing { field }),
            (None, None) => Err(Error::Input("give --set FIELD=VALUE or --clear FIELD".into())),
        }
    }
}

/// What [`correct_outcome`] needs.
#[derive(Debug, Clone)]
pub struct CorrectRequest {
    /// Participant id.
    pub participant: String,
    /// Timepoint id.
    pub timepoint: String,
    /// The correction.
    pub to: CorrectTo,
    /// Why the value is corrected.
    pub reason: String,
    /// The acting user.
    pub user: String,
    /// The clock.
    pub clock: Clock,
}

/// Corrects a recorded value; the original stays in the log and the history.
pub fn correct_outcome(trial: &mut Trial, request: &CorrectRequest) -> Result<Written> {
    let (field, value) = match &request.to {
        CorrectTo::Value { field, value } => (field.as_str(), value.as_str()),
        CorrectTo::Missing { field } => (field.as_str(), ""),
    };
    let correction = Correction {
        participant: request.participant.clone(),
        timepoint: request.timepoint.clone(),
        field: canonical_name(field),
        value: value.to_string(),
        reason: request.reason.clone(),
    };
    trial.correct_outcome(&correction, &request.user, request.clock)
}

/// A change of a participant's follow-up status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    /// Withdrew (they stay in their arm for intention to treat).
    Withdrawn {
        /// They asked for no further contact: no more data may be recorded.
        no_further_contact: bool,
    },
    /// A participant who asked for no further contact consented again: the
    /// only way the request is lifted.
    ConsentRenewed,
    /// Lost to follow-up.
    Lost,
    /// Died.
    Died,
}

/// What [`change_status`] needs.
#[derive(Debug, Clone)]
pub struct StatusChangeRequest {
    /// Participant id.
    pub participant: String,
    /// The change.
    pub change: StatusChange,
    /// Why.
    pub reason: String,
    /// The date of the change (default: today in the trial's time zone).
    pub on: Option<NaiveDate>,
    /// The acting user.
    pub user: String,
    /// The clock.
    pub clock: Clock,
}

/// Records a status change.
pub fn change_status(trial: &mut Trial, request: &StatusChangeRequest) -> Result<Written> {
    let r = request;
    let (kind, no_further_contact) = match r.change {
        StatusChange::ConsentRenewed => {
            return trial.renew_consent(&r.participant, &r.reason, r.on, &r.user, r.clock);
        }
        StatusChange::Withdrawn { no_further_contact } => (StatusKind::Withdrawn, no_further_contact),
        StatusChange::Lost => (StatusKind::Lost, false),
        StatusChange::Died => (StatusKind::Died, false),
    };
    trial.change_status(&r.participant, kind, &r.reason, no_further_contact, r.on, &r.user, r.clock)
}

/// What [`due`] needs.
#[derive(Debug, Clone, Copy)]
pub struct DueRequest {
    /// The date to plan for (default: today in the trial's time zone).
    pub on: Option<NaiveDate>,
    /// The clock, for today.
    pub clock: Clock,
}

/// The follow-up work list.
#[derive(Debug, Clone, Serialize)]
pub struct DueList {
    /// The date it is for.
    pub on: NaiveDate,
    /// Who is due, in window or overdue, at which timepoint, by window close
    /// date (the arm is not shown).
    pub due: Vec<Due>,
}

/// Who is due, in window or overdue, on a date.
pub fn due(trial: &Trial, request: &DueRequest) -> Result<DueList> {
    let on = request.on.unwrap_or_else(|| request.clock.today(trial.protocol().timezone));
    Ok(DueList { on, due: trial.due(on)? })
}
