//! The schema: its SQL (the log, the trial row, and the tables derived from
//! the log), its version, the objects verification compares a file's
//! `sqlite_master` with, and the migration of an older file to it. The SQL
//! text is part of the file format: `verify` compares `sqlite_master` with a
//! schema made afresh, and docs/SPEC.md (appendix A) and
//! tests/vectors/verify.py hold copies of it.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::Store;
use super::accounts::ACCOUNTS_SCHEMA;
use super::open::{open_read_write, schema_of};
use crate::error::{Error, Result};

/// `application_id` of a chancery database: "CHNC".
pub const APPLICATION_ID: i32 = 0x4348_4E43;
/// The schema version this build writes and reads. Version 2 keeps the
/// derived tables in their primary keys' B-trees (`WITHOUT ROWID`) and leaves
/// an outcome's recording time and user in its log entry (they were copied
/// into every `outcomes` row in version 1); version 4 keeps a request for no
/// further contact in `participant_status` through later status changes
/// (version 3 kept only the latest change's); version 5 adds the accounts'
/// tables (`accounts` and `tokens`, derived from the log, and `credentials`,
/// `token_secrets` and `access_log`, which are not); [`Store::migrate`]
/// brings an older file to this version.
pub const SCHEMA_VERSION: i32 = 5;

const SCHEMA: &str = "
CREATE TABLE log (
    seq  INTEGER PRIMARY KEY,
    ts   TEXT NOT NULL,
    type TEXT NOT NULL,
    hash TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TRIGGER log_is_append_only_update BEFORE UPDATE ON log
BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER log_is_append_only_delete BEFORE DELETE ON log
BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;

CREATE TABLE trial (
    singleton          INTEGER PRIMARY KEY CHECK (singleton = 1),
    trial_id           TEXT NOT NULL,
    title              TEXT NOT NULL,
    protocol           TEXT NOT NULL,
    protocol_sha256    TEXT NOT NULL,
    seed_commitment    TEXT NOT NULL,
    signing_public_key TEXT NOT NULL,
    key_origin         TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    revealed_seq       INTEGER,
    revealed_at        TEXT
);

";

/// The tables derived from the log other than `trial`: what a migration rebuilds.
const DERIVED_SCHEMA: &str = "
CREATE TABLE referrals (
    participant TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL,
    site        TEXT NOT NULL,
    status      TEXT NOT NULL,
    reasons     TEXT NOT NULL,
    screened_at TEXT NOT NULL,
    stratum     TEXT,
    arm         TEXT,
    identity    TEXT,
    CHECK ((status = 'randomised') = (stratum IS NOT NULL AND arm IS NOT NULL AND identity IS NOT NULL))
) WITHOUT ROWID;

-- One row per randomised person, keyed by their identity hash: what refuses a
-- second randomisation. A table of its own (not an index on `referrals`), so a
-- batch can write its rows in key order.
CREATE TABLE identities (
    identity    TEXT PRIMARY KEY,
    participant TEXT NOT NULL,
    seq         INTEGER NOT NULL
) WITHOUT ROWID;

-- A randomised referral is a participant: one row, one B-tree, one page less
-- for each randomisation to write than a table of its own.
CREATE VIEW participants (participant, seq, site, stratum, arm, identity, randomised_at) AS
    SELECT participant, seq, site, stratum, arm, identity, screened_at FROM referrals WHERE status = 'randomised';

CREATE TABLE outcomes (
    participant  TEXT NOT NULL,
    timepoint    TEXT NOT NULL,
    field        TEXT NOT NULL,
    value        TEXT NOT NULL,
    collected_on TEXT NOT NULL,
    version      INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    PRIMARY KEY (participant, timepoint, field)
) WITHOUT ROWID;


CREATE TABLE participant_status (
    participant        TEXT PRIMARY KEY,
    status             TEXT NOT NULL,
    reason             TEXT NOT NULL,
    no_further_contact INTEGER NOT NULL,
    on_date            TEXT NOT NULL,
    seq                INTEGER NOT NULL

) WITHOUT ROWID;

CREATE TABLE allocation_streams (
    stream     TEXT PRIMARY KEY,
    block      INTEGER NOT NULL,
    start_word INTEGER NOT NULL,
    used       INTEGER NOT NULL,
    next_word  INTEGER NOT NULL

) WITHOUT ROWID;

CREATE TABLE allocation_counts (
    factor INTEGER NOT NULL,
    level  INTEGER NOT NULL,
    arm    INTEGER NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (factor, level, arm)

) WITHOUT ROWID;
";

/// The derived tables, in the order replay compares them, with their key column.
pub const DERIVED_TABLES: &[(&str, &str)] = &[
    ("trial", "singleton"),
    ("referrals", "participant"),
    ("identities", "identity"),
    ("outcomes", "participant, timepoint, field"),
    ("participant_status", "participant"),
    ("allocation_streams", "stream"),
    ("allocation_counts", "factor, level, arm"),
    ("accounts", "name"),
    ("tokens", "token_id"),
];

/// The objects of the schema that hold the log: every schema version defines
/// them alike, so they are checked in a file of any version.
pub const LOG_OBJECTS: [&str; 3] = ["log", "log_is_append_only_update", "log_is_append_only_delete"];

/// One row of `sqlite_master`: a table, view, index or trigger.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SchemaObject {
    /// `table`, `view`, `index` or `trigger`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// The table it belongs to (its own name for a table or view).
    pub table: String,
    /// Its `CREATE` statement, whitespace normalised; empty if none is stored.
    pub sql: String,
}

/// A definition with every run of ASCII whitespace (space, tab, line feed,
/// carriage return, form feed) made one space and none at either end: SQLite
/// keeps a `CREATE` statement's text as written, so layout alone never makes
/// two definitions differ.
pub fn normalise_sql(sql: &str) -> String {
    sql.split([' ', '\t', '\n', '\r', '\x0c']).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

fn schema_objects(c: &Connection) -> Result<Vec<SchemaObject>> {
    let what = "reading the schema (sqlite_master)";
    let mut stmt = c
        .prepare("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")
        .map_err(Error::sqlite(what))?;
    let rows = stmt
        .query_map([], |r| {
            Ok(SchemaObject {
                kind: r.get(0)?,
                name: r.get(1)?,
                table: r.get(2)?,
                sql: normalise_sql(&r.get::<_, Option<String>>(3)?.unwrap_or_default()),
            })
        })
        .map_err(Error::sqlite(what))?;
    let mut out = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(Error::sqlite(what))?;
    out.sort();
    Ok(out)
}

impl Store {
    /// The file's tables, views, indexes and triggers as `sqlite_master` lists
    /// them, SQLite's own objects (`sqlite_autoindex_…`, `sqlite_stat1`, …)
    /// left out, each definition's whitespace normalised ([`normalise_sql`]);
    /// sorted by type and name.
    pub fn schema_objects(&self) -> Result<Vec<SchemaObject>> {
        schema_objects(&self.conn)
    }

    /// What this build's schema creates, as [`Store::schema_objects`] lists it:
    /// the schema made afresh in memory.
    pub fn expected_schema() -> Result<Vec<SchemaObject>> {
        Store::in_memory()?.schema_objects()
    }
    pub(super) fn install_schema(&self, what: &str) -> Result<()> {
        self.conn
            .execute_batch(&format!(
                "BEGIN; {SCHEMA} {DERIVED_SCHEMA} {ACCOUNTS_SCHEMA} PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(Error::sqlite(what.to_string()))
    }

    /// Brings a database written by an older chancery to this build's schema,
    /// in one transaction: the log and the trial row are untouched (so every
    /// hash, and what `verify` checks, stays as it was); the derived tables are
    /// rebuilt in the new layout from their old rows. Returns the schema
    /// versions before and after. Refuses a file that is not a chancery
    /// database, one from a newer chancery, and one already current.
    pub fn migrate(path: &Path) -> Result<(i32, i32)> {
        let what = format!("migrating database {}", path.display());
        let mut conn = open_read_write(path, &what, "check --db")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(Error::sqlite(what.clone()))?;
        // Read inside the write transaction, so no other migration can run between.
        let version = schema_of(&tx, path, &what)?;
        if version == SCHEMA_VERSION {
            return Err(Error::Refused(format!(
                "{} already has this build's schema ({SCHEMA_VERSION}); nothing to migrate",
                path.display()
            )));
        }
        if !(1..SCHEMA_VERSION).contains(&version) {
            return Err(Error::Refused(format!(
                "{} has schema {version}, which no chancery release wrote; restore it from a backup",
                path.display()
            )));
        }
        let mut sql = String::new();
        if version < 3 {
            sql.push_str(&Self::migration_to_3());
        }
        // Schema 3 → 4: a request for no further contact stands through later
        // status changes. No older chancery wrote `consent_renewed`, so a
        // participant's request stands if any of their status changes made one.
        if version < 4 {
            sql.push_str(
                "UPDATE participant_status SET no_further_contact = 1 WHERE participant IN (
                     SELECT json_extract(body, '$.data.participant') FROM log
                     WHERE type = 'status_changed' AND json_extract(body, '$.data.no_further_contact') = 1);\n",
            );
        }
        // Schema 4 → 5: the accounts' tables. No older chancery wrote an
        // account event, so the derived ones start empty, as a replay leaves them.
        sql.push_str(ACCOUNTS_SCHEMA);
        sql.push_str(&format!("PRAGMA user_version = {SCHEMA_VERSION};"));
        tx.execute_batch(&sql).map_err(Error::sqlite(what.clone()))?;
        tx.commit().map_err(Error::sqlite(what))?;
        Ok((version, SCHEMA_VERSION))
    }

    /// The SQL that turns a schema 1 or 2 file's derived tables into schema 3's.
    /// Schema 1 → 2: the same rows in WITHOUT ROWID tables; `outcomes` loses
    /// its copies of the log entry's time and user. Schema 2 → 3:
    /// `participants` becomes a view of the randomised referrals, whose rows
    /// take its stratum, arm and identity, and `identities` keys the identity
    /// hashes. Both read the columns schemas 1 and 2 share.
    fn migration_to_3() -> String {
        let mut sql = String::new();
        for table in
            ["referrals", "participants", "outcomes", "participant_status", "allocation_streams", "allocation_counts"]
        {
            sql.push_str(&format!("ALTER TABLE {table} RENAME TO old_{table};\n"));
        }
        sql.push_str(DERIVED_SCHEMA);
        sql.push_str(
            "INSERT INTO referrals (participant, seq, site, status, reasons, screened_at, stratum, arm, identity)
             SELECT r.participant, r.seq, r.site, r.status, r.reasons, r.screened_at, p.stratum, p.arm, p.identity
             FROM old_referrals AS r LEFT JOIN old_participants AS p ON p.participant = r.participant;
             INSERT INTO identities (identity, participant, seq) SELECT identity, participant, seq FROM old_participants;
             DROP TABLE old_referrals;
             DROP TABLE old_participants;\n",
        );
        for (table, columns) in [
            ("outcomes", "participant, timepoint, field, value, collected_on, version, seq"),
            ("participant_status", "participant, status, reason, no_further_contact, on_date, seq"),
            ("allocation_streams", "stream, block, start_word, used, next_word"),
            ("allocation_counts", "factor, level, arm, n"),
        ] {
            sql.push_str(&format!(
                "INSERT INTO {table} ({columns}) SELECT {columns} FROM old_{table};\nDROP TABLE old_{table};\n"
            ));
        }
        sql
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LogRowRef;

    #[test]
    fn the_log_refuses_update_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut s = Store::create(&path).unwrap();
        let tx = s.transaction().unwrap();
        tx.append_log(&LogRowRef { seq: 0, ts: "t", kind: "k", hash: "h", body: "b" }).unwrap();
        tx.commit().unwrap();
        assert!(s.conn.execute("UPDATE log SET body = 'x'", []).is_err());
        assert!(s.conn.execute("DELETE FROM log", []).is_err());
    }
}
