//! Reading a trial: its counts and log head ([`status`]) and the export
//! tables ([`export()`]).

use serde::Serialize;

use crate::error::Result;
use crate::export::{self, Table};
use crate::ledger::{Status, Trial};

/// The trial's state at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct TrialStatus {
    /// The protocol's title.
    pub title: String,
    /// Counts by status, arm, site and stratum, follow-up, and the log head.
    pub status: Status,
    /// The largest difference between arms' counts within a stratum: the
    /// allocation's balance where it matters.
    pub largest_stratum_difference: i64,
}

/// Counts of screened, ineligible, declined and randomised referrals, by arm,
/// site and stratum, follow-up and status counts, and the log head.
pub fn status(trial: &Trial) -> Result<TrialStatus> {
    let status = trial.status()?;
    Ok(TrialStatus {
        title: trial.protocol().title.clone(),
        largest_stratum_difference: largest_stratum_difference(&status),
        status,
    })
}

/// The largest difference between two arms' counts within one stratum.
pub(crate) fn largest_stratum_difference(s: &Status) -> i64 {
    s.by_stratum
        .values()
        .map(|c| {
            let v: Vec<i64> = c.values().map(|&n| n as i64).collect();
            v.iter().max().unwrap_or(&0) - v.iter().min().unwrap_or(&0)
        })
        .max()
        .unwrap_or(0)
}

/// The tables a trial exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportTable {
    /// One row per randomised participant: site, stratum, arm, when.
    Allocations,
    /// The log, entry by entry.
    Log,
    /// One row per randomised participant with baseline, status and every
    /// current outcome (as of the date of the log's last entry).
    Participants,
    /// Current outcome values, one row per value.
    Outcomes,
    /// Every outcome value as first recorded and every correction.
    History,
    /// What each exported column means.
    Codebook,
}

/// Builds an export table, to be written as CSV or JSON ([`Table::write`]).
pub fn export(trial: &Trial, what: ExportTable) -> Result<Table> {
    match what {
        ExportTable::Allocations => export::allocations(trial),
        ExportTable::Log => export::log(trial),
        ExportTable::Participants => export::participants(trial, trial.last_entry_date()?),
        ExportTable::Outcomes => export::outcomes(trial),
        ExportTable::History => export::history(trial),
        ExportTable::Codebook => export::codebook(trial),
    }
}

/// The site of the referral with exactly this participant id, if there is
/// one: the service answers a coordinator about a participant only at their
/// own sites.
pub fn participant_site(trial: &Trial, participant: &str) -> Result<Option<String>> {
    trial.store().referral_site(participant)
}
