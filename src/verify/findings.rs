//! The report of findings: each check's running result ([`Finding`]: the
//! first failure, or the one naming the earliest entry), and at the end of
//! the pass every check in report order, passed, failed or skipped, with the
//! message that says what was checked, what failed or why it could not run.

use serde::Serialize;

use super::Pass;
use super::schema::SchemaCheck;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Ran and found nothing wrong.
    Passed,
    /// Ran and found a problem.
    Failed,
    /// Could not run; `message` says why.
    Skipped,
}

/// One named check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The check's name.
    pub name: &'static str,
    /// `true` passed, `false` failed, `null` skipped.
    pub ok: Option<bool>,
    /// Passed, failed or skipped.
    pub status: Status,
    /// The first failing entry's sequence number, if it failed.
    pub seq: Option<u64>,
    /// What was checked, what failed, or why it was skipped.
    pub message: String,
}

/// The verification report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No check failed.
    pub ok: bool,
    /// Every check ran (none skipped).
    pub complete: bool,
    /// Entries in the log whose chain holds (the whole log when `chain` passed).
    pub entries: u64,
    /// Hash of the last entry of that chain.
    pub head: String,
    /// The least sequence number named by a failing check.
    pub first_bad_seq: Option<u64>,
    /// Where the seed for `allocations` came from: `given`, `revealed` or `none`.
    pub seed: &'static str,
    /// Every check, in order.
    pub checks: Vec<Check>,
}

impl Report {
    /// The first failing check (the one naming `first_bad_seq`).
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().filter(|c| c.status == Status::Failed).min_by_key(|c| c.seq.unwrap_or(u64::MAX))
    }
}

/// The names of the checks, in report order.
pub const CHECKS: [&str; 8] = [
    "chain",
    "replay",
    "unique_participants",
    "checkpoints",
    "seed_commitment",
    "allocations",
    "sqlite_integrity",
    "schema",
];

/// A check's running result: nothing found yet, or the first failure.
#[derive(Debug, Clone, Default)]
pub(super) struct Finding(Option<(u64, String)>);

impl Finding {
    pub(super) fn fail(&mut self, seq: u64, msg: String) {
        if self.0.is_none() {
            self.0 = Some((seq, msg));
        }
    }
    /// Records a failure if it is the first or names an earlier entry.
    pub(super) fn fail_min(&mut self, seq: u64, msg: String) {
        if self.0.as_ref().is_none_or(|(s, _)| seq < *s) {
            self.0 = Some((seq, msg));
        }
    }
    pub(super) fn failed(&self) -> bool {
        self.0.is_some()
    }
}

impl Pass<'_> {
    pub(super) fn report(self, integrity: &str, schema: &SchemaCheck) -> Report {
        let entries = self.expected_seq;
        let stopped_note = |name: &str| match self.stopped {
            Some((seq, why)) if why != name => {
                Some(format!("not completed: derivation stopped at entry {seq}, where `{why}` failed"))
            }
            _ => None,
        };
        let mut checks = Vec::new();
        let make = |name: &'static str, f: &Finding, passed: String, skipped: Option<String>| match (&f.0, skipped) {
            (Some((seq, m)), _) => {
                Check { name, ok: Some(false), status: Status::Failed, seq: Some(*seq), message: m.clone() }
            }
            (None, Some(why)) => Check { name, ok: None, status: Status::Skipped, seq: None, message: why },
            (None, None) => Check { name, ok: Some(true), status: Status::Passed, seq: None, message: passed },
        };
        checks.push(make(
            "chain",
            &self.chain,
            format!("{entries} entries: canonical bytes, contiguous seq from 0, hashes, links and times hold"),
            None,
        ));
        checks.push(make(
            "replay",
            &self.replay,
            "replaying the log reproduces every derived table; every stratum follows from its recorded values".into(),
            stopped_note("replay").or_else(|| schema.tables_not_compared()),
        ));
        checks.push(make(
            "unique_participants",
            &self.unique,
            "no participant id recorded twice and no identity randomised twice".into(),
            stopped_note("unique_participants"),
        ));
        // Checkpoints.
        let mut cp = Finding::default();
        let mut unchecked = Vec::new();
        for (i, (origin, c)) in self.checkpoints.iter().enumerate() {
            if let Some(g) = &self.genesis {
                if c.trial != g.trial {
                    cp.fail_min(0, format!("checkpoint {origin} is for trial {:?}, not {:?}", c.trial, g.trial));
                    continue;
                }
                if !c.signature_valid(&g.public_key) {
                    cp.fail_min(
                        0,
                        format!(
                            "checkpoint {origin}: its signature does not verify under the signing key in entry 0: it is not this trial's checkpoint, or entry 0 (and so the whole log) was replaced"
                        ),
                    );
                    continue;
                }
            }
            match &self.checkpoint_results[i] {
                Some(Finding(Some((seq, m)))) => cp.fail_min(*seq, m.clone()),
                Some(_) => {}
                None if !self.chain.failed() => cp.fail_min(
                    entries,
                    format!(
                        "checkpoint {origin} covers {} entries but the log has {entries}: entries {entries}–{} were removed (truncation)",
                        c.length,
                        c.length - 1
                    ),
                ),
                None => unchecked.push(origin.clone()),
            }
        }
        let cp_skip = if self.checkpoints.is_empty() {
            Some("no --checkpoint given: truncation and a consistent rewrite are detectable only against a checkpoint held outside the database".to_string())
        } else if !unchecked.is_empty() && !cp.failed() {
            Some(format!("not checked beyond the chain's break: {}", unchecked.join(", ")))
        } else {
            None
        };
        checks.push(make(
            "checkpoints",
            &cp,
            format!("the log extends all {} checkpoint(s) and their signatures verify", self.checkpoints.len()),
            cp_skip,
        ));
        let no_seed = "no seed: give --key or --seed, or verify after `chancery reveal`".to_string();
        checks.push(make(
            "seed_commitment",
            &self.commitment,
            format!("the {} seed opens the commitment in entry 0", if self.seed_given { "given" } else { "revealed" }),
            (!self.commitment_checked).then(|| no_seed.clone()),
        ));
        let alloc_skip = if self.seed.is_none() {
            Some(no_seed)
        } else if !self.seed_opens {
            Some("the seed does not open the commitment, so allocations cannot be re-derived from it".into())
        } else {
            stopped_note("allocations")
        };
        checks.push(make(
            "allocations",
            &self.allocations,
            format!("all {} allocations re-derive exactly from the seed", self.allocations_checked),
            alloc_skip,
        ));
        let mut sqlite = Finding::default();
        if integrity != "ok" {
            sqlite.fail(0, format!("SQLite's integrity_check reports: {integrity}"));
        }
        checks.push(make("sqlite_integrity", &sqlite, "SQLite's integrity_check: ok".into(), None));
        checks.push(schema.check());
        // A failed check with skipped dependants: the report's ok is the absence of failures.
        let ok = checks.iter().all(|c| c.status != Status::Failed);
        let complete = checks.iter().all(|c| c.status != Status::Skipped);
        let first_bad_seq = checks.iter().filter_map(|c| c.seq).min();
        Report {
            ok,
            complete,
            entries,
            head: self.prev,
            first_bad_seq,
            seed: match (self.seed, self.seed_given) {
                (None, _) => "none",
                (Some(_), true) => "given",
                (Some(_), false) => "revealed",
            },
            checks,
        }
    }
}
