//! The derived tables compared row by row with their replay in the scratch
//! database, half of them on a second pinned connection, the differences
//! reported in table order as the `replay` check's findings.

use std::path::Path;

use super::{Pass, open_pinned};
use crate::error::{Error, Result};
use crate::store::{DERIVED_TABLES, Head, Store, TableDiff};

/// Compares every derived table with its replay: half the tables on a second
/// pair of connections in another thread. The findings are then taken in
/// `DERIVED_TABLES` order, as one thread comparing them all would.
pub(super) fn compare_tables(
    (live, live_path, pinned): (&Store, &Path, &Head),
    (scratch, scratch_path): (&Store, &Path),
    pass: &mut Pass,
    compared: impl Fn(&str) -> bool + Sync,
) -> Result<()> {
    let last = pass.expected_seq.saturating_sub(1);
    let compare = |live: &Store, scratch: &Store, part: usize| -> Result<Vec<(usize, Option<TableDiff>)>> {
        let mut out = Vec::new();
        for (i, (table, _)) in DERIVED_TABLES.iter().enumerate().filter(|(i, t)| i % 2 == part && compared(t.0)) {
            out.push((i, live.compare_table(scratch, table)?));
        }
        Ok(out)
    };
    // Half the tables on a second connection to the live database, if it can
    // be pinned to the same state as the first (a write may have landed
    // between the two); otherwise all of them on the first.
    let second = open_pinned(live_path, pinned)?;
    let compare = &compare;
    let (mine, other) = std::thread::scope(|s| {
        let other = second.map(|second| s.spawn(move || compare(&second, &Store::open_for_audit(scratch_path)?, 1)));
        let mine = compare(live, scratch, 0);
        (mine, other.map(|o| o.join()))
    });
    let other = match other {
        Some(o) => o.map_err(|_| Error::Integrity("a table comparison stopped unexpectedly".into()))??,
        None => compare(live, scratch, 1)?,
    };
    let mut diffs = mine?;
    diffs.extend(other);
    diffs.sort_by_key(|(i, _)| *i);
    for (i, diff) in diffs {
        let table = DERIVED_TABLES[i].0;
        if let Some(d) = diff {
            // Rows without a seq: the trial row derives from entry 0 (and the reveal);
            // allocation state is the state after the last entry.
            let seq = d.seq.unwrap_or(if table == "trial" { 0 } else { last });
            let what = match (&d.stored, &d.replayed) {
                (Some(s), Some(r)) => format!("stored row {s} differs from the replayed row {r}"),
                (Some(s), None) => format!("stored row {s} is not derived from any log entry"),
                (None, Some(r)) => format!("the replayed row {r} is missing from the database"),
                (None, None) => "differs".to_string(),
            };
            pass.replay.fail_min(
                seq,
                format!(
                    "table {} row {} (entry {seq}): {what}; {} row(s) of {} differ from the log's replay",
                    d.table, d.key, d.rows, d.table
                ),
            );
        }
    }
    Ok(())
}
