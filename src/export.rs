//! Exports: tables as CSV or JSON that R, Stata and pandas read as-is.
//!
//! CSV has a header row, empty cells for missing values, ISO 8601 dates and
//! no thousands separators. A text cell that a spreadsheet would run as a
//! formula (starting with `=`, `+`, `-` or `@`, or a tab or carriage return)
//! is prefixed with `'`; numeric cells such as `-0.2` are left as numbers.

use std::io::Write;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A table: column names and rows of optional cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows; `None` is a missing value.
    pub rows: Vec<Vec<Option<String>>>,
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
                    source: std::io::Error::other(e.to_string()),
                };
                w.write_record(&self.columns).map_err(err)?;
                for row in &self.rows {
                    w.write_record(row.iter().map(|c| c.as_deref().map(safe_cell).unwrap_or_default())).map_err(err)?;
                }
                w.flush().map_err(Error::io("writing CSV"))
            }
            Format::Json => {
                let rows: Vec<Value> = self
                    .rows
                    .iter()
                    .map(|row| {
                        let mut m = Map::new();
                        for (c, v) in self.columns.iter().zip(row) {
                            m.insert(c.clone(), v.clone().map(Value::String).unwrap_or(Value::Null));
                        }
                        Value::Object(m)
                    })
                    .collect();
                serde_json::to_writer_pretty(&mut *out, &rows)
                    .map_err(|e| Error::Io { context: "writing JSON".into(), source: e.into() })?;
                out.write_all(b"\n").map_err(Error::io("writing JSON"))
            }
        }
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
    Ok(Table {
        columns: ["participant", "site", "stratum", "arm", "seq", "randomised_at"].map(String::from).to_vec(),
        rows,
    })
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
    Ok(Table { columns: ["seq", "ts", "user", "type", "prev", "hash", "data"].map(String::from).to_vec(), rows })
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
        let t = Table { columns: vec!["a".into(), "b".into()], rows: vec![vec![Some("x,y".into()), None]] };
        let mut out = Vec::new();
        t.write(Format::Csv, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a,b\n\"x,y\",\n");
    }
}
