//! Follow-up: the timepoints ([`Timepoint`]: target day and window) and the
//! outcomes collected at them ([`Outcome`]), exactly one of them the primary
//! outcome, a yes/no measure.

use serde::Deserialize;

use super::fields::{Declared, Kind, parse_kind};
use super::parse::{Raw, Where, check_id};
use crate::error::{Error, Result};

/// A follow-up timepoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Timepoint {
    /// Identifier, e.g. `m12`.
    pub id: String,
    /// Label.
    pub label: String,
    /// Target day after randomisation.
    pub day: u32,
    /// Days either side of the target day that count as in window.
    pub window: u32,
}

/// An outcome collected at follow-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Name, e.g. `phq9`.
    pub name: String,
    /// Label.
    pub label: String,
    /// Type and valid values.
    pub kind: Kind,
    /// Unit.
    pub unit: Option<String>,
    /// Timepoints where it is collected, by id.
    pub timepoints: Vec<String>,
    /// Whether this is the primary outcome.
    pub primary: bool,
    /// The baseline field of the same measure, for ANCOVA.
    pub baseline: Option<String>,
    /// Definition for the codebook.
    pub description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimepoint {
    id: String,
    label: Option<String>,
    day: i64,
    window: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutcome {
    name: String,
    label: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    unit: Option<String>,
    min: Option<toml::Value>,
    max: Option<toml::Value>,
    levels: Option<Vec<String>>,
    timepoints: Vec<String>,
    #[serde(default)]
    primary: bool,
    baseline: Option<String>,
    description: Option<String>,
}

/// The `[[timepoints]]` and `[[outcomes]]` tables, in declaration order.
pub(super) fn timepoints_and_outcomes(raw: &Raw, d: &Declared, w: &Where) -> Result<(Vec<Timepoint>, Vec<Outcome>)> {
    let (file, fields) = (w.file, d.fields);
    let mut timepoints: Vec<Timepoint> = Vec::new();
    for t in &raw.timepoints {
        let r = t.get_ref();
        check_id("timepoint id", &r.id).map_err(|m| w.at(t, m))?;
        if timepoints.iter().any(|x| x.id == r.id) {
            return Err(w.at(t, format!("timepoint {:?} is declared twice", r.id)));
        }
        if !(1..=3650).contains(&r.day) || !(0..=365).contains(&r.window) || r.window >= r.day {
            return Err(
                w.at(t, format!("timepoint {:?}: day must be 1–3650 and window 0–365 and less than the day", r.id))
            );
        }
        timepoints.push(Timepoint {
            id: r.id.clone(),
            label: r.label.clone().unwrap_or_else(|| r.id.clone()),
            day: r.day as u32,
            window: r.window as u32,
        });
    }
    let mut outcomes: Vec<Outcome> = Vec::new();
    for o in &raw.outcomes {
        let r = o.get_ref();
        check_id("outcome name", &r.name).map_err(|m| w.at(o, m))?;
        if outcomes.iter().any(|x| x.name == r.name) {
            return Err(w.at(o, format!("outcome {:?} is declared twice", r.name)));
        }
        let kind = parse_kind(&r.kind, &r.min, &r.max, &r.levels)
            .map_err(|m| w.at(o, format!("outcome {:?}: {m}", r.name)))?;
        if matches!(kind, Kind::NhsNumber) {
            return Err(w.at(o, format!("outcome {:?}: an outcome cannot be an NHS number", r.name)));
        }
        if r.timepoints.is_empty() {
            return Err(w.at(o, format!("outcome {:?} is collected at no timepoint", r.name)));
        }
        for t in &r.timepoints {
            if !timepoints.iter().any(|x| &x.id == t) {
                return Err(w.at(o, format!("outcome {:?} names undeclared timepoint {t:?}", r.name)));
            }
        }
        if let Some(b) = &r.baseline {
            let i = d
                .field_index(b)
                .ok_or_else(|| w.at(o, format!("outcome {:?}: baseline field {b:?} is not declared", r.name)))?;
            if !matches!(fields[i].kind, Kind::Integer { .. } | Kind::Number { .. }) {
                return Err(w.at(o, format!("outcome {:?}: baseline field {b:?} must be numeric", r.name)));
            }
        }
        outcomes.push(Outcome {
            name: r.name.clone(),
            label: r.label.clone().unwrap_or_else(|| r.name.clone()),
            kind,
            unit: r.unit.clone(),
            timepoints: r.timepoints.clone(),
            primary: r.primary,
            baseline: r.baseline.clone(),
            description: r.description.clone(),
        });
    }
    let primaries: Vec<_> = raw.outcomes.iter().filter(|o| o.get_ref().primary).collect();
    if primaries.len() > 1 {
        return Err(w.at(primaries[1], "more than one outcome is marked primary; mark exactly one"));
    }
    if !outcomes.is_empty() && primaries.is_empty() {
        return Err(Error::Protocol(format!(
            "{file}: no outcome is marked primary; mark the primary outcome with primary = true"
        )));
    }
    if let Some(p) = primaries.first() {
        let o = p.get_ref();
        let binary = o.kind.as_str() == "yes_no";
        if !binary {
            return Err(w.at(*p, "the primary outcome must be a yes_no outcome"));
        }
    }
    Ok((timepoints, outcomes))
}
