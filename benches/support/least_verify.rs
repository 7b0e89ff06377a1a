//! What any verifier of a chancery log has to do at the least, each part
//! alone, for the verify bench and the `timing verify` probe: the CPU these
//! parts take, over the machine's cores, is the wall time no verification can
//! beat on it, before a single event has been decoded or replayed.

use std::path::Path;

use sha2::{Digest, Sha256};

use chancery::store::{DERIVED_TABLES, Store};

/// The least the chain check must do: read every log row in sequence order
/// (its hash, time and type columns are checked against the body), SHA-256
/// hash the body, and check that the body is JSON at all (serde_json, keeping
/// nothing; the canonical check is stricter).
pub fn chain(db: &Path) {
    Store::open_for_audit(db)
        .unwrap()
        .each_log_row_ref(|row| {
            std::hint::black_box(Sha256::digest(row.body.as_bytes()));
            let _: serde::de::IgnoredAny = serde_json::from_str(row.body).unwrap();
            Ok(())
        })
        .unwrap();
}

/// The least a comparison of the derived tables with the replay must read:
/// every row of every derived table in key order, every column touched.
/// Returns a count of what was read, so that nothing is optimised away.
pub fn derived_tables(db: &Path) -> u64 {
    let conn = Store::open_for_audit(db).unwrap();
    let mut cells = 0u64;
    for (table, _) in DERIVED_TABLES {
        conn.each_row_in_key_order(table, |row| {
            for i in 0..row.as_ref().column_count() {
                cells += match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Text(t) => t.len() as u64,
                    _ => 1,
                };
            }
            Ok(())
        })
        .unwrap();
    }
    cells
}
