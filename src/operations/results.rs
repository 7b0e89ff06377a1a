//! Results: the intention-to-treat analysis ([`analyse`]) and the HTML
//! report ([`report`]).

use std::path::Path;

use chrono::NaiveDate;
use serde::Serialize;

use crate::analysis::Analysis;
use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::ledger::Trial;

/// What [`analyse`] needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnalyseRequest {
    /// Analyse the data as they stood on this date (default: the date of the
    /// log's last entry).
    pub as_of: Option<NaiveDate>,
    /// Also make the tables (analysis.json, estimates, CONSORT, baseline and
    /// survival CSVs).
    pub tables: bool,
}

/// What [`analyse`] found.
#[derive(Debug, Clone, Serialize)]
pub struct Analysed {
    /// The date the data were analysed as of.
    pub as_of: NaiveDate,
    /// The analysis (rendered by [`crate::analysis::markdown`]).
    pub analysis: Analysis,
    /// The tables, by file name, if asked for (none otherwise).
    #[serde(skip)]
    pub tables: Vec<(&'static str, Vec<u8>)>,
}

/// The intention-to-treat analysis: CONSORT flow, baseline table, primary and
/// secondary outcomes, time to first job, subgroups, missing data, CACE.
pub fn analyse(trial: &Trial, request: &AnalyseRequest) -> Result<Analysed> {
    let as_of = match request.as_of {
        Some(d) => d,
        None => trial.last_entry_date()?,
    };
    let analysis = crate::analysis::analyse(&trial.dataset(as_of)?)?;
    let tables = if request.tables { crate::analysis::tables(&analysis)? } else { Vec::new() };
    Ok(Analysed { as_of, analysis, tables })
}

/// What [`report`] needs.
#[derive(Debug, Clone, Default)]
pub struct ReportRequest {
    /// Signed checkpoints to check and show, each with where it came from
    /// ([`super::checkpoint_from_text`]).
    pub checkpoints: Vec<(String, Checkpoint)>,
    /// Report the data as they stood on this date (default: the date of the
    /// log's last entry).
    pub as_of: Option<NaiveDate>,
}

/// The report and what went into it.
#[derive(Debug, Clone, Serialize)]
pub struct Reported {
    /// The self-contained HTML file's text.
    pub html: String,
    /// The analysis it shows.
    pub analysis: Analysis,
    /// The verification it shows (a failed one is shown, not refused).
    pub verification: crate::verify::Report,
}

/// Verifies the trial in `db`, analyses it and renders the HTML report with
/// the CONSORT diagram, tables, charts and the audit status.
pub fn report(db: &Path, request: &ReportRequest) -> Result<Reported> {
    let built = crate::report::for_trial(db, request.checkpoints.clone(), request.as_of)?;
    Ok(Reported { html: built.html, analysis: built.analysis, verification: built.verification })
}
