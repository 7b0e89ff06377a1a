//! Exports: tables as CSV or JSON that R, Stata and pandas read as-is.
//!
//! CSV has a header row, empty cells for missing values, ISO 8601 dates and
//! no thousands separators. A text cell that a spreadsheet would run as a
//! formula (starting with `=`, `+`, `-` or `@`, or a tab or carriage return)
//! is prefixed with `'`; numeric cells such as `-0.2` are left as numbers.

use std::io::Write;

use chrono::NaiveDate;
use serde::ser::{SerializeMap, Serializer};

use crate::error::{Error, Result};
use crate::followup::outside_window;

/// A table: column names and rows of optional cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows; `None` is a missing value.
    pub rows: Vec<Vec<Option<String>>>,
    /// How each column is written in JSON, by column index; a column not
    /// listed (and every column of an empty list) is text.
    pub json: Vec<JsonCell>,
}

/// How a column's cells are written in a JSON export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonCell {
    /// A string.
    Text,
    /// A number (the cell is a whole number chancery wrote).
    Integer,
    /// JSON already (the log's canonical data), written as it is.
    Json,
}

/// Export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
}

fn is_number(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    let mut parts = body.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    ok(int) && parts.next().is_none_or(ok)
}

/// Escapes a cell against spreadsheet formula injection.
pub fn safe_cell(s: &str) -> String {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') if !is_number(s) => format!("'{s}"),
        _ => s.to_string(),
    }
}

impl Table {
    /// Writes the table in `format`.
    pub fn write(&self, format: Format, out: &mut dyn Write) -> Result<()> {
        match format {
            Format::Csv => {
                let mut w = csv::Writer::from_writer(out);
                let err = |e: csv::Error| Error::Io {
                    context: "writing CSV".into(),
                    source: match e.into_kind() {
                        csv::ErrorKind::Io(io) => io,
                        other => std::io::Error::other(format!("{other:?}")),
                    },
                };
                w.write_record(&self.columns).map_err(err)?;
                for row in &self.rows {
                    w.write_record(row.iter().map(|c| c.as_deref().map(safe_cell).unwrap_or_default())).map_err(err)?;
                }
                w.flush().map_err(Error::io("writing CSV"))
            }
            Format::Json => {
                // Row by row straight to the writer: no tree of values for the
                // whole table beside the table itself.
                let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
                let mut ser = serde_json::Serializer::pretty(&mut out);
                ser.collect_seq(self.rows.iter().map(|row| JsonRow { table: self, row }))
                    .map_err(|e| Error::Io { context: "writing JSON".into(), source: e.into() })?;
                out.write_all(b"\n").and_then(|()| out.flush()).map_err(Error::io("writing JSON"))
            }
        }
    }
}

/// The participants who asked for no further contact and have not renewed
/// consent: every export that lists participants shows it, so that no one
/// contacts them from a spreadsheet.
fn no_further_contact(trial: &crate::ledger::Trial) -> Result<std::collections::BTreeSet<String>> {
    Ok(trial.store().statuses()?.into_iter().filter(|s| s.no_further_contact).map(|s| s.participant).collect())
}

fn yes_no(b: bool) -> Option<String> {
    Some(if b { "yes" } else { "no" }.to_string())
}

/// `t` with a last column, `no_further_contact`, for the participant in
/// column `participant_col` of each row.
fn with_contact_flag(mut t: Table, participant_col: usize, asked: &std::collections::BTreeSet<String>) -> Table {
    t.columns.push("no_further_contact".into());
    for row in &mut t.rows {
        let flag = row.get(participant_col).and_then(|p| p.as_ref()).is_some_and(|p| asked.contains(p));
        row.push(yes_no(flag));
    }
    t
}

/// One row of a table as a JSON object, its cells typed by the table's `json`.
struct JsonRow<'a> {
    table: &'a Table,
    row: &'a [Option<String>],
}

impl serde::Serialize for JsonRow<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let mut m = s.serialize_map(Some(self.table.columns.len()))?;
        for (i, (c, v)) in self.table.columns.iter().zip(self.row).enumerate() {
            let Some(v) = v else {
                m.serialize_entry(c, &())?;
                continue;
            };
            match self.table.json.get(i).copied().unwrap_or(JsonCell::Text) {
                JsonCell::Integer if let Ok(n) = v.parse::<i64>() => m.serialize_entry(c, &n)?,
                JsonCell::Json => {
                    let raw: &serde_json::value::RawValue = serde_json::from_str(v).map_err(S::Error::custom)?;
                    m.serialize_entry(c, raw)?
                }
                _ => m.serialize_entry(c, v)?,
            }
        }
        m.end()
    }
}

/// The allocations table: one row per randomised participant.
pub fn allocations(trial: &crate::ledger::Trial) -> Result<Table> {
    let rows = trial
        .store()
        .participants()?
        .into_iter()
        .map(|p| {
            vec![
                Some(p.participant),
                Some(p.site),
                Some(p.stratum),
                Some(p.arm),
                Some(p.seq.to_string()),
                Some(p.randomised_at),
            ]
        })
        .collect();
    let t = Table {
        columns: ["participant", "site", "stratum", "arm", "seq", "randomised_at"].map(String::from).to_vec(),
        rows,
        json: typed(&[(4, JsonCell::Integer)]),
    };
    Ok(with_contact_flag(t, 0, &no_further_contact(trial)?))
}

/// The log: one row per entry, with its stored hash and canonical data.
pub fn log(trial: &crate::ledger::Trial) -> Result<Table> {
    let mut rows = Vec::new();
    trial.store().each_log_row(|r| {
        let entry = crate::log::Entry::decode(&r.body)
            .map_err(|m| Error::Integrity(format!("log entry {}: {m}; run `chancery verify`", r.seq)))?;
        let mut data = String::new();
        crate::log::write_canonical(&entry.data, &mut data).map_err(Error::Integrity)?;
        rows.push(vec![
            Some(r.seq.to_string()),
            Some(r.ts),
            Some(entry.user),
            Some(r.kind),
            Some(entry.prev),
            Some(r.hash),
            Some(data),
        ]);
        Ok(())
    })?;
    Ok(Table {
        columns: ["seq", "ts", "user", "type", "prev", "hash", "data"].map(String::from).to_vec(),
        rows,
        json: typed(&[(0, JsonCell::Integer), (6, JsonCell::Json)]),
    })
}

/// One row per randomised participant: site, strata as used at randomisation,
/// arm, randomisation date, baseline values, current status, and every outcome
/// at every timepoint as its own column (`phq9_m12`, …).
pub fn participants(trial: &crate::ledger::Trial, as_of: chrono::NaiveDate) -> Result<Table> {
    let data = trial.dataset(as_of)?;
    let p = &data.protocol;
    let mut columns: Vec<String> = ["participant", "site", "region", "stratum"].map(String::from).to_vec();
    columns.extend(p.factors.iter().map(|f| format!("strat_{}", f.name)));
    columns.extend(["arm", "randomised_on"].map(String::from));
    let fields: Vec<&str> =
        p.fields.iter().enumerate().filter(|(i, _)| *i != p.identity).map(|(_, f)| f.name.as_str()).collect();
    columns.extend(fields.iter().map(|f| f.to_string()));
    columns.extend(["status", "status_reason", "status_on", "no_further_contact"].map(String::from));
    let asked = no_further_contact(trial)?;
    let mut outcome_cols = Vec::new();
    for o in &p.outcomes {
        for t in &p.timepoints {
            if o.timepoints.contains(&t.id) {
                outcome_cols.push((t.id.clone(), o.name.clone()));
                columns.push(format!("{}_{}", o.name, t.id));
            }
        }
    }
    let rows = data
        .participants
        .iter()
        .map(|r| {
            let mut row = vec![
                Some(r.participant.clone()),
                Some(r.site.clone()),
                r.region.clone(),
                Some(
                    p.factors
                        .iter()
                        .map(|f| format!("{}={}", f.name, r.strata.get(&f.name).unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join("|"),
                ),
            ];
            row.extend(p.factors.iter().map(|f| r.strata.get(&f.name).map(str::to_string)));
            row.push(Some(r.arm.clone()));
            row.push(Some(r.randomised_on.to_string()));
            row.extend(fields.iter().map(|f| r.baseline.get(f).map(str::to_string)));
            let (reason, on) = match &r.status {
                crate::dataset::ParticipantStatus::Active => (None, None),
                crate::dataset::ParticipantStatus::Withdrawn { reason, on, .. }
                | crate::dataset::ParticipantStatus::Lost { reason, on }
                | crate::dataset::ParticipantStatus::Died { reason, on } => {
                    (Some(reason.clone()), Some(on.to_string()))
                }
            };
            row.push(Some(r.status.name().to_string()));
            row.push(reason);
            row.push(on);
            row.push(yes_no(asked.contains(&r.participant)));
            row.extend(outcome_cols.iter().map(|(t, o)| r.outcomes.get(t, o).map(|v| v.value.to_string())));
            row
        })
        .collect();
    Ok(Table { columns, rows, json: Vec::new() })
}

/// Outcomes in long format: one row per current value (empty when
/// corrected to missing), flagged when collected outside its window.
pub fn outcomes(trial: &crate::ledger::Trial) -> Result<Table> {
    let mut reasons = trial.window_reasons()?;
    let randomised = trial.randomisation_dates()?;
    let protocol = trial.protocol();
    let rows = trial
        .store()
        .outcomes()?
        .into_iter()
        .map(|o| {
            let reason = reasons.remove(&(o.participant.clone(), o.timepoint.clone(), o.field.clone()));
            // Values recorded before windows were enforced carry no reason
            // but are flagged all the same.
            let outside = reason.is_some()
                || match (randomised.get(&o.participant), NaiveDate::parse_from_str(&o.collected_on, "%Y-%m-%d")) {
                    (Some(r), Ok(on)) => outside_window(protocol, &o.timepoint, *r, on).unwrap_or(false),
                    _ => false,
                };
            vec![
                Some(o.participant),
                Some(o.timepoint),
                Some(o.field),
                Some(o.value).filter(|v| !v.is_empty()),
                Some(o.collected_on),
                Some(if outside { "yes" } else { "no" }.to_string()),
                reason,
                Some(o.recorded_at),
                Some(o.user),
                Some(o.version.to_string()),
            ]
        })
        .collect();
    let t = Table {
        columns: [
            "participant",
            "timepoint",
            "field",
            "value",
            "collected_on",
            "out_of_window",
            "window_reason",
            "recorded_at",
            "user",
            "version",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        json: typed(&[(9, JsonCell::Integer)]),
    };
    Ok(with_contact_flag(t, 0, &no_further_contact(trial)?))
}

/// Every outcome change: old value, new value, who, when, why.
pub fn history(trial: &crate::ledger::Trial) -> Result<Table> {
    let rows = trial
        .history()?
        .into_iter()
        .map(|h| {
            vec![
                Some(h.seq.to_string()),
                Some(h.participant),
                Some(h.timepoint),
                Some(h.field),
                Some(h.change),
                h.old_value.filter(|v| !v.is_empty()),
                Some(h.new_value).filter(|v| !v.is_empty()),
                Some(h.collected_on),
                Some(h.user),
                Some(h.at),
                h.reason,
            ]
        })
        .collect();
    let t = Table {
        columns: [
            "seq",
            "participant",
            "timepoint",
            "field",
            "change",
            "old_value",
            "new_value",
            "collected_on",
            "user",
            "at",
            "reason",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        json: typed(&[(0, JsonCell::Integer)]),
    };
    Ok(with_contact_flag(t, 1, &no_further_contact(trial)?))
}

/// Every column of every export with its type, unit, valid values and definition.
pub fn codebook(trial: &crate::ledger::Trial) -> Result<Table> {
    let p = trial.protocol();
    let mut rows: Vec<Vec<Option<String>>> = Vec::new();
    let mut add = |export: &str, column: &str, kind: &str, unit: Option<&str>, valid: &str, definition: &str| {
        rows.push(vec![
            Some(export.into()),
            Some(column.into()),
            Some(kind.into()),
            unit.map(str::to_string),
            Some(valid.into()),
            Some(definition.into()),
        ]);
    };
    let ids = p.sites.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(", ");
    let arms = p.arms.iter().map(|a| format!("{} ({})", a.id, a.label)).collect::<Vec<_>>().join(", ");
    for export in ["allocations", "participants"] {
        add(export, "participant", "text", None, "participant id", "Participant (referral) identifier");
        add(export, "site", "category", None, &ids, "Recruiting site");
        add(export, "stratum", "text", None, "factor=level|…", "Stratum as used at randomisation");
        add(export, "arm", "category", None, &arms, "Allocated arm (analysed as allocated: intention to treat)");
    }
    add("allocations", "seq", "integer", None, "0 or more", "Sequence number of the allocation's log entry");
    add("allocations", "randomised_at", "datetime", None, "RFC 3339 UTC", "When the allocation was committed");
    add("participants", "region", "category", None, &p.regions().join(", "), "Region of the site");
    for f in &p.factors {
        add(
            "participants",
            &format!("strat_{}", f.name),
            "category",
            None,
            &f.levels.join(", "),
            &format!("Stratification factor {} as used at randomisation", f.name),
        );
    }
    add("participants", "randomised_on", "date", None, "YYYY-MM-DD", "Date of randomisation (trial's time zone)");
    for (i, f) in p.fields.iter().enumerate() {
        if i == p.identity {
            continue;
        }
        let stage = match f.stage {
            crate::protocol::Stage::Screening => "screening",
            crate::protocol::Stage::Consent => "consent",
            crate::protocol::Stage::Baseline => "baseline",
        };
        let def =
            format!("{} ({stage}){}", f.label, f.description.as_deref().map(|d| format!(": {d}")).unwrap_or_default());
        add("participants", &f.name, f.kind.name(), f.unit.as_deref(), &f.kind.describe(), &def);
    }
    add("participants", "status", "category", None, "active, withdrawn, lost, died", "Follow-up status");
    add("participants", "status_reason", "text", None, "free text", "Reason given for the status change");
    add("participants", "status_on", "date", None, "YYYY-MM-DD", "Date of the status change");
    const NO_FURTHER_CONTACT: &str = "yes: the participant asked for no further contact or data collection and has not consented again since (it stands whatever status followed); do not contact them";
    for export in ["allocations", "participants", "outcomes", "history"] {
        add(export, "no_further_contact", "yes_no", None, "yes, no", NO_FURTHER_CONTACT);
    }
    for o in &p.outcomes {
        for t in &p.timepoints {
            if o.timepoints.contains(&t.id) {
                let def = format!(
                    "{} at {} (day {} ± {}){}{}",
                    o.label,
                    t.label,
                    t.day,
                    t.window,
                    if o.primary { "; PRIMARY OUTCOME" } else { "" },
                    o.description.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
                );
                add(
                    "participants",
                    &format!("{}_{}", o.name, t.id),
                    o.kind.name(),
                    o.unit.as_deref(),
                    &o.kind.describe(),
                    &def,
                );
            }
        }
    }
    for (c, k, d) in [
        ("participant", "text", "Participant identifier"),
        ("timepoint", "category", "Follow-up timepoint"),
        ("field", "category", "Outcome name (see the participants rows of this codebook)"),
        ("value", "text", "Current value, as the outcome's type (empty: missing, or corrected to missing)"),
        ("collected_on", "date", "Date the value was collected"),
        ("out_of_window", "category", "yes if collected outside the timepoint's window (target day ± window)"),
        ("window_reason", "text", "Why it was collected outside the window, as recorded"),
        ("recorded_at", "datetime", "When the current value was recorded (UTC)"),
        ("user", "text", "Who recorded the current value"),
        ("version", "integer", "1 for the original value, +1 per correction"),
    ] {
        add("outcomes", c, k, None, "", d);
    }
    for (c, k, d) in [
        ("seq", "integer", "Sequence number of the change's log entry"),
        ("participant", "text", "Participant identifier"),
        ("timepoint", "category", "Follow-up timepoint"),
        ("field", "category", "Outcome name"),
        ("change", "category", "recorded or corrected"),
        ("old_value", "text", "Value before a correction (empty for the original record)"),
        ("new_value", "text", "Value after the change (empty: corrected to missing)"),
        ("collected_on", "date", "Date the value was collected"),
        ("user", "text", "Who made the change"),
        ("at", "datetime", "When the change was made (UTC)"),
        ("reason", "text", "Why a value was corrected, or why it was collected outside its window"),
    ] {
        add("history", c, k, None, "", d);
    }
    Ok(Table {
        columns: ["export", "column", "type", "unit", "valid", "definition"].map(String::from).to_vec(),
        rows,
        json: Vec::new(),
    })
}

/// Column kinds for JSON: text but for the given (index, kind) pairs.
fn typed(kinds: &[(usize, JsonCell)]) -> Vec<JsonCell> {
    let mut v = vec![JsonCell::Text; kinds.iter().map(|(i, _)| i + 1).max().unwrap_or(0)];
    for &(i, k) in kinds {
        v[i] = k;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_escaped_and_negative_numbers_are_not() {
        assert_eq!(safe_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(safe_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(safe_cell("+1-2"), "'+1-2");
        assert_eq!(safe_cell("-0.2"), "-0.2");
        assert_eq!(safe_cell("-"), "'-");
        assert_eq!(safe_cell("ips"), "ips");
    }

    #[test]
    fn csv_has_a_header_and_empty_missing_cells() {
        let t =
            Table { columns: vec!["a".into(), "b".into()], rows: vec![vec![Some("x,y".into()), None]], json: vec![] };
        let mut out = Vec::new();
        t.write(Format::Csv, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a,b\n\"x,y\",\n");
    }

    #[test]
    fn json_cells_are_typed_and_streamed_as_before() {
        let t = Table {
            columns: vec!["seq".into(), "data".into(), "t".into()],
            rows: vec![vec![Some("7".into()), Some(r#"{"a":[1,"x"]}"#.into()), None]],
            json: typed(&[(0, JsonCell::Integer), (1, JsonCell::Json)]),
        };
        let mut out = Vec::new();
        t.write(Format::Json, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, serde_json::json!([{ "seq": 7, "data": { "a": [1, "x"] }, "t": null }]));
        assert!(String::from_utf8(out).unwrap().starts_with("[\n  {\n    \"seq\": 7,"));
    }
}
