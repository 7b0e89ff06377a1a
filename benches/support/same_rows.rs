//! The structural floor of a randomisation: a raw SQLite transaction that
//! writes exactly the rows chancery's randomisation wrote (its log entry, its
//! referral row, its identity row and its allocation stream's row) into a
//! database with chancery's schema and durability, and does nothing else.
//! Against the raw single-row commit it shows what the derived tables' B-tree
//! pages cost; against chancery, what chancery's own work costs.
//! Shared by `benches/ledger.rs` and `examples/timing.rs`.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{Connection, params};

type Referral = (String, i64, String, String, String, String, Option<String>, Option<String>, Option<String>);

/// The rows one randomisation wrote, read back from its trial's database.
pub struct Rows {
    log: (i64, String, String, String, String),
    referral: Referral,
    identity: Option<(String, String, i64)>,
    stream: Option<(String, i64, i64, i64, i64)>,
}

/// Reads back what the entries `seqs` of the trial at `db` wrote. The
/// stream's row is its current one (the same size as when it was written).
pub fn capture(db: &Path, seqs: impl IntoIterator<Item = u64>) -> Vec<Rows> {
    let conn = Connection::open(db).unwrap();
    let mut referrals: HashMap<i64, Referral> = HashMap::new();
    let mut stmt = conn
        .prepare("SELECT participant, seq, site, status, reasons, screened_at, stratum, arm, identity FROM referrals")
        .unwrap();
    let mut q = stmt.query([]).unwrap();
    while let Some(r) = q.next().unwrap() {
        let row: Referral = (
            r.get(0).unwrap(),
            r.get(1).unwrap(),
            r.get(2).unwrap(),
            r.get(3).unwrap(),
            r.get(4).unwrap(),
            r.get(5).unwrap(),
            r.get(6).unwrap(),
            r.get(7).unwrap(),
            r.get(8).unwrap(),
        );
        referrals.insert(row.1, row);
    }
    let mut identities: HashMap<i64, (String, String, i64)> = HashMap::new();
    let mut stmt = conn.prepare("SELECT identity, participant, seq FROM identities").unwrap();
    let mut q = stmt.query([]).unwrap();
    while let Some(r) = q.next().unwrap() {
        identities.insert(r.get(2).unwrap(), (r.get(0).unwrap(), r.get(1).unwrap(), r.get(2).unwrap()));
    }
    let mut streams: HashMap<String, (String, i64, i64, i64, i64)> = HashMap::new();
    let mut stmt = conn.prepare("SELECT stream, block, start_word, used, next_word FROM allocation_streams").unwrap();
    let mut q = stmt.query([]).unwrap();
    while let Some(r) = q.next().unwrap() {
        let row: (String, i64, i64, i64, i64) =
            (r.get(0).unwrap(), r.get(1).unwrap(), r.get(2).unwrap(), r.get(3).unwrap(), r.get(4).unwrap());
        streams.insert(row.0.clone(), row);
    }
    let mut log = conn.prepare("SELECT seq, ts, type, hash, body FROM log WHERE seq = ?1").unwrap();
    seqs.into_iter()
        .map(|seq| {
            let seq = seq as i64;
            let log = log.query_row([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))).unwrap();
            let referral = referrals.remove(&seq).expect("every captured entry recorded a referral");
            let stream = referral.6.as_ref().and_then(|stratum| streams.get(&format!("blocks/{stratum}")).cloned());
            Rows { log, referral, identity: identities.remove(&seq), stream }
        })
        .collect()
}

/// A raw connection to `copy`, made a copy of the freshly initialised trial
/// database `fresh` (chancery's schema and genesis entry), with chancery's
/// durability (WAL, `synchronous=FULL`) and page cache.
pub fn open_copy(fresh: &Path, copy: &Path) -> Connection {
    std::fs::copy(fresh, copy).unwrap();
    let conn = Connection::open(copy).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.pragma_update(None, "cache_size", -131_072).unwrap();
    conn
}

/// One randomisation's rows in one `BEGIN IMMEDIATE` transaction.
pub fn write(conn: &Connection, rows: &Rows) {
    write_all(conn, std::slice::from_ref(rows));
}

/// Many randomisations' rows in one `BEGIN IMMEDIATE` transaction, as a
/// batch writes them: each entry's log and referral rows in order, their
/// identity rows in key order at the end, and each stream's row once.
pub fn write_all(conn: &Connection, rows: &[Rows]) {
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    for r in rows {
        insert(conn, r);
    }
    let mut identities: Vec<&(String, String, i64)> = rows.iter().filter_map(|r| r.identity.as_ref()).collect();
    identities.sort_unstable();
    for i in identities {
        conn.prepare_cached("INSERT INTO identities (identity, participant, seq) VALUES (?1, ?2, ?3)")
            .unwrap()
            .execute(params![i.0, i.1, i.2])
            .unwrap();
    }
    let streams: std::collections::BTreeMap<&str, &(String, i64, i64, i64, i64)> =
        rows.iter().filter_map(|r| r.stream.as_ref()).map(|s| (s.0.as_str(), s)).collect();
    for s in streams.values() {
        conn.prepare_cached(
            "INSERT OR REPLACE INTO allocation_streams (stream, block, start_word, used, next_word)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .unwrap()
        .execute(params![s.0, s.1, s.2, s.3, s.4])
        .unwrap();
    }
    conn.execute_batch("COMMIT").unwrap();
}

fn insert(conn: &Connection, rows: &Rows) {
    let l = &rows.log;
    conn.prepare_cached("INSERT INTO log (seq, ts, type, hash, body) VALUES (?1, ?2, ?3, ?4, ?5)")
        .unwrap()
        .execute(params![l.0, l.1, l.2, l.3, l.4])
        .unwrap();
    let r = &rows.referral;
    conn.prepare_cached(
        "INSERT INTO referrals (participant, seq, site, status, reasons, screened_at, stratum, arm, identity)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .unwrap()
    .execute(params![r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8])
    .unwrap();
}
