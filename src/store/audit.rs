//! Verification's reads, kept apart from the write path: the log streamed
//! (owned or borrowed rows), the derived tables row by row and compared with
//! their replay, the uniqueness the replay database enforces, the look-ups
//! replay makes of earlier entries, the live tables' rows for their digests,
//! where the seed's reveal is recorded (without scanning the log), SQLite's
//! integrity check, and the online backup.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::reads::head;
use super::schema::DERIVED_TABLES;
use super::{Head, LogRow, LogRowRef, Store, Tx};
use crate::error::{Error, Result};

/// Where a derived table and its replay from the log disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDiff {
    /// The table.
    pub table: String,
    /// Key of the reported row.
    pub key: String,
    /// The log entry the reported row derives from, if the table has a `seq` column.
    pub seq: Option<u64>,
    /// The stored row (`None`: missing from the database).
    pub stored: Option<String>,
    /// The replayed row (`None`: the database has a row the log does not account for).
    pub replayed: Option<String>,
    /// How many rows differ in all.
    pub rows: u64,
}

impl Store {
    /// Pins this connection to the database as it stands now: begins a read
    /// transaction that lasts until the connection is dropped, so every later
    /// read on it sees this one state, whatever writers commit meanwhile.
    /// Returns the log's head in that state; two pinned connections with the
    /// same head see the same tables (every write appends a log entry).
    pub fn pin_snapshot(&self) -> Result<Head> {
        if self.conn.is_autocommit() {
            self.conn.execute_batch("BEGIN DEFERRED").map_err(Error::sqlite("beginning a read"))?;
        }
        head(&self.conn)
    }

    /// Calls `f` on every log row in sequence order, streaming.
    pub fn each_log_row(&self, mut f: impl FnMut(LogRow) -> Result<()>) -> Result<()> {
        self.scan_log(|r| f(log_row(r).map_err(Error::sqlite("reading the log"))?))
    }

    /// Calls `f` on every log row as SQLite holds it (`seq, ts, type, hash,
    /// body`), in sequence order, streaming: what [`Store::each_log_row`] and
    /// [`Store::each_log_row_ref`] read.
    fn scan_log(&self, mut f: impl FnMut(&rusqlite::Row<'_>) -> Result<()>) -> Result<()> {
        let what = "reading the log";
        let mut stmt =
            self.conn.prepare("SELECT seq, ts, type, hash, body FROM log ORDER BY seq").map_err(Error::sqlite(what))?;
        let mut rows = stmt.query([]).map_err(Error::sqlite(what))?;
        while let Some(r) = rows.next().map_err(Error::sqlite(what))? {
            f(r)?;
        }
        Ok(())
    }

    /// Compares a derived table here with the same table in `replayed`, row by
    /// row in key order with one cursor on each (constant memory). Returns the
    /// number of differing rows and, of those, the one with the least `seq`
    /// (rows without a `seq` column come last).
    pub fn compare_table(&self, replayed: &Store, table: &str) -> Result<Option<TableDiff>> {
        let (name, key) = derived_table(table)?;
        let what = format!("comparing table {name} with its replay");
        let sql = format!("SELECT * FROM {name} ORDER BY {key}");
        let mut a_stmt = self.conn.prepare(&sql).map_err(Error::sqlite(what.clone()))?;
        let mut b_stmt = replayed.conn.prepare(&sql).map_err(Error::sqlite(what.clone()))?;
        let names: Vec<String> = a_stmt.column_names().map(|c| c.to_string()).collect();
        let b_names: Vec<String> = b_stmt.column_names().map(|c| c.to_string()).collect();
        if names != b_names {
            return Ok(Some(TableDiff {
                table: name.to_string(),
                key: String::new(),
                seq: None,
                stored: Some(format!("columns {}", names.join(", "))),
                replayed: Some(format!("columns {}", b_names.join(", "))),
                rows: 1,
            }));
        }
        let key_cols: Vec<usize> = key.split(',').map(|k| a_stmt.column_index(k.trim()).unwrap_or(0)).collect();
        let seq_col = names.iter().position(|c| c == "seq");
        let ncols = names.len();
        let mut a_rows = a_stmt.query([]).map_err(Error::sqlite(what.clone()))?;
        let mut b_rows = b_stmt.query([]).map_err(Error::sqlite(what.clone()))?;
        // Rows are compared where SQLite holds them (borrowed values, no copy);
        // only a differing row is copied out, for the report.
        let owned = |r: &rusqlite::Row| -> rusqlite::Result<Vec<rusqlite::types::Value>> {
            (0..ncols).map(|i| r.get::<_, rusqlite::types::Value>(i)).collect()
        };
        let mut a = a_rows.next().map_err(Error::sqlite(what.clone()))?;
        let mut b = b_rows.next().map_err(Error::sqlite(what.clone()))?;
        let mut diff: Option<TableDiff> = None;
        let mut count = 0u64;
        let seq_of = |row: &[rusqlite::types::Value]| match seq_col.map(|i| &row[i]) {
            Some(rusqlite::types::Value::Integer(n)) => u64::try_from(*n).ok(),
            _ => None,
        };
        fn cell<'r>(r: &'r rusqlite::Row<'_>, i: usize, what: &str) -> Result<rusqlite::types::ValueRef<'r>> {
            r.get_ref(i).map_err(Error::sqlite(what.to_string()))
        }
        while a.is_some() || b.is_some() {
            let mut order = std::cmp::Ordering::Equal;
            let mut differs = true;
            match (a, b) {
                (Some(x), Some(y)) => {
                    for &i in &key_cols {
                        order = sql_order_ref(cell(x, i, &what)?, cell(y, i, &what)?);
                        if order.is_ne() {
                            break;
                        }
                    }
                    if order.is_eq() {
                        differs = false;
                        for i in 0..ncols {
                            if !same_value_ref(cell(x, i, &what)?, cell(y, i, &what)?) {
                                differs = true;
                                break;
                            }
                        }
                    }
                }
                (Some(_), None) => order = std::cmp::Ordering::Less,
                _ => order = std::cmp::Ordering::Greater,
            }
            if differs {
                let stored = match order {
                    std::cmp::Ordering::Greater => None,
                    _ => a.map(owned).transpose().map_err(Error::sqlite(what.clone()))?,
                };
                let replay = match order {
                    std::cmp::Ordering::Less => None,
                    _ => b.map(owned).transpose().map_err(Error::sqlite(what.clone()))?,
                };
                count += 1;
                // The log's own seq (the replayed row's) names the entry; a stored row
                // with no replayed twin names itself.
                let seq = replay.as_deref().and_then(seq_of).or_else(|| stored.as_deref().and_then(seq_of));
                let better = match &diff {
                    None => true,
                    Some(d) => {
                        matches!((seq, d.seq), (Some(s), Some(t)) if s < t) || (seq.is_some() && d.seq.is_none())
                    }
                };
                if better {
                    let row = stored.as_deref().or(replay.as_deref()).unwrap_or_default();
                    // A row in both: its key and the columns that differ, no more.
                    let shown: Vec<usize> = match (stored.as_deref(), replay.as_deref()) {
                        (Some(x), Some(y)) => (0..ncols)
                            .filter(|i| key_cols.contains(i) || !same_value_ref((&x[*i]).into(), (&y[*i]).into()))
                            .collect(),
                        _ => (0..ncols).collect(),
                    };
                    diff = Some(TableDiff {
                        table: name.to_string(),
                        key: key_cols.iter().map(|&i| text_of(&row[i])).collect::<Vec<_>>().join(","),
                        seq,
                        stored: stored.as_deref().map(|r| row_text_named(&names, r, &shown)),
                        replayed: replay.as_deref().map(|r| row_text_named(&names, r, &shown)),
                        rows: 0,
                    });
                }
            }
            if order.is_le() {
                a = a_rows.next().map_err(Error::sqlite(what.clone()))?;
            }
            if order.is_ge() {
                b = b_rows.next().map_err(Error::sqlite(what.clone()))?;
            }
        }
        Ok(diff.map(|d| TableDiff { rows: count, ..d }))
    }

    /// The first log row of an event type, if any (by the `type` column).
    pub fn first_log_row_of_type(&self, kind: &str) -> Result<Option<LogRow>> {
        self.conn
            .query_row(
                "SELECT seq, ts, type, hash, body FROM log WHERE type = ?1 ORDER BY seq LIMIT 1",
                [kind],
                log_row,
            )
            .optional()
            .map_err(Error::sqlite("reading the log"))
    }

    /// SQLite's own `PRAGMA integrity_check`: `ok`, or what it found.
    pub fn integrity_check(&self) -> Result<String> {
        let what = "running SQLite's integrity check";
        let mut stmt = self.conn.prepare("PRAGMA integrity_check").map_err(Error::sqlite(what))?;
        let lines: Vec<String> =
            stmt.query_map([], |r| r.get(0)).and_then(|rows| rows.collect()).map_err(Error::sqlite(what))?;
        Ok(lines.join("; "))
    }

    /// Copies the database to `to` with SQLite's online backup API.
    pub fn backup_to(&self, to: &Path) -> Result<()> {
        let what = format!("backing up to {}", to.display());
        crate::keys::create_new_file(to, crate::keys::DATA_FILE_MODE)
            .map_err(|e| Error::Io { context: what.clone(), source: e })?;
        let mut dst = Connection::open(to).map_err(Error::sqlite(what.clone()))?;
        let backup = rusqlite::backup::Backup::new(&self.conn, &mut dst).map_err(Error::sqlite(what.clone()))?;
        backup.run_to_completion(256, std::time::Duration::from_millis(0), None).map_err(Error::sqlite(what))
    }

    /// Calls `f` on every log row in sequence order, streaming, with the row's
    /// text borrowed rather than copied. The same rows, in the same order, as
    /// [`Store::each_log_row`], and the same errors for a row that is not text.
    pub fn each_log_row_ref(&self, mut f: impl FnMut(LogRowRef<'_>) -> Result<()>) -> Result<()> {
        self.scan_log(|r| {
            let text = |i: usize| -> rusqlite::Result<&str> {
                r.get_ref(i)?.as_str().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(i, r.get_ref_unwrap(i).data_type(), Box::new(e))
                })
            };
            let row = (|| {
                Ok::<_, rusqlite::Error>(LogRowRef {
                    seq: r.get::<_, i64>(0)? as u64,
                    ts: text(1)?,
                    kind: text(2)?,
                    hash: text(3)?,
                    body: text(4)?,
                })
            })()
            .map_err(Error::sqlite("reading the log"))?;
            f(row)
        })
    }

    /// Whether `table` has a unique index on exactly `column` that covers every
    /// row (not partial): then a second row with the same value cannot be inserted.
    pub fn enforces_unique(&self, table: &str, column: &str) -> Result<bool> {
        let what = format!("reading the indexes of {table}");
        let mut list = self
            .conn
            .prepare("SELECT name, \"unique\", partial FROM pragma_index_list(?1)")
            .map_err(Error::sqlite(what.clone()))?;
        let indexes: Vec<(String, bool, bool)> = list
            .query_map([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(Error::sqlite(what.clone()))?;
        let mut info =
            self.conn.prepare("SELECT name FROM pragma_index_info(?1)").map_err(Error::sqlite(what.clone()))?;
        for (name, unique, partial) in indexes {
            if !unique || partial {
                continue;
            }
            let cols: Vec<Option<String>> = info
                .query_map([&name], |r| r.get(0))
                .and_then(|rows| rows.collect())
                .map_err(Error::sqlite(what.clone()))?;
            if cols.len() == 1 && cols[0].as_deref() == Some(column) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A derived table's column names, as this database's schema has them.
    pub fn table_columns(&self, table: &str) -> Result<Vec<String>> {
        self.each_row_ref(&format!("SELECT * FROM {} LIMIT 0", derived_table(table)?.0), |_| Ok(()))
    }

    /// Every row of a derived table in its key's order, each passed to `f` as
    /// SQLite holds it (nothing copied); returns the table's column names.
    pub fn each_row_in_key_order(
        &self,
        table: &str,
        f: impl FnMut(&rusqlite::Row<'_>) -> Result<()>,
    ) -> Result<Vec<String>> {
        let (name, key) = derived_table(table)?;
        self.each_row_ref(&format!("SELECT * FROM {name} ORDER BY {key}"), f)
    }

    fn each_row_ref(&self, sql: &str, mut f: impl FnMut(&rusqlite::Row<'_>) -> Result<()>) -> Result<Vec<String>> {
        let what = "reading a derived table";
        let mut stmt = self.conn.prepare(sql).map_err(Error::sqlite(what))?;
        let names = stmt.column_names().map(|c| c.to_string()).collect();
        let mut rows = stmt.query([]).map_err(Error::sqlite(what))?;
        while let Some(r) = rows.next().map_err(Error::sqlite(what))? {
            f(r)?;
        }
        Ok(names)
    }

    /// The `seq` of the `participants` row whose participant id is exactly
    /// `participant` (compared here byte for byte, whatever the table's
    /// collation says), if there is one and its `seq` is an integer.
    pub fn participant_seq(&self, participant: &str) -> Result<Option<i64>> {
        let what = "reading a participant";
        let mut stmt = self
            .conn
            .prepare_cached("SELECT participant, seq FROM participants WHERE participant = ?1")
            .map_err(Error::sqlite(what))?;
        let mut rows = stmt.query([participant]).map_err(Error::sqlite(what))?;
        while let Some(r) = rows.next().map_err(Error::sqlite(what))? {
            let id = r.get_ref(0).map_err(Error::sqlite(what))?;
            let seq = r.get_ref(1).map_err(Error::sqlite(what))?;
            if let (rusqlite::types::ValueRef::Text(id), rusqlite::types::ValueRef::Integer(seq)) = (id, seq)
                && id == participant.as_bytes()
            {
                return Ok(Some(seq));
            }
        }
        Ok(None)
    }

    /// The trial row's `revealed_seq`, if it is an integer (`Ok(None)`: no reveal
    /// recorded). A hint only: verification checks it against the log.
    pub fn revealed_seq_hint(&self) -> Result<Option<u64>> {
        self.conn
            .query_row(
                "SELECT CASE WHEN typeof(revealed_seq) = 'integer' AND revealed_seq >= 0 THEN revealed_seq END,
                        typeof(revealed_seq) = 'null'
                 FROM trial",
                [],
                |r| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, bool>(1)?)),
            )
            .map_err(Error::sqlite("reading the trial"))
            .and_then(|(seq, null)| match (seq, null) {
                (Some(seq), _) => Ok(Some(seq as u64)),
                (None, true) => Ok(None),
                (None, false) => Err(Error::Integrity("the trial row's revealed_seq is not an entry".into())),
            })
    }

    /// The log row with this seq, if there is one.
    pub fn log_row_at(&self, seq: u64) -> Result<Option<LogRow>> {
        self.conn
            .query_row("SELECT seq, ts, type, hash, body FROM log WHERE seq = ?1", [seq as i64], log_row)
            .optional()
            .map_err(Error::sqlite("reading the log"))
    }
}

impl Tx<'_> {
    /// The participant randomised with this identity hash by an entry before `seq`, if any.
    pub fn identity_before(&self, identity: &str, seq: u64) -> Result<Option<String>> {
        self.tx
            .prepare_cached(
                "SELECT i.participant FROM identities AS i JOIN referrals AS r ON r.participant = i.participant
                 WHERE i.identity = ?1 AND r.seq < ?2",
            )
            .and_then(|mut s| s.query_row(params![identity, seq as i64], |r| r.get(0)).optional())
            .map_err(Error::sqlite("checking for a duplicate identity"))
    }

    /// Whether an entry before `seq` recorded a referral with this participant id.
    pub fn referral_before(&self, participant: &str, seq: u64) -> Result<bool> {
        self.tx
            .prepare_cached("SELECT 1 FROM referrals WHERE participant = ?1 AND seq < ?2")
            .and_then(|mut s| s.exists(params![participant, seq as i64]))
            .map_err(Error::sqlite("checking for a duplicate participant id"))
    }
}

/// SQLite's sort order for the values of one column: NULL, numbers, text (by bytes), blobs.
pub(crate) fn sql_order_ref(a: rusqlite::types::ValueRef, b: rusqlite::types::ValueRef) -> std::cmp::Ordering {
    use rusqlite::types::ValueRef as V;
    let class = |v: &V| match v {
        V::Null => 0,
        V::Integer(_) | V::Real(_) => 1,
        V::Text(_) => 2,
        V::Blob(_) => 3,
    };
    match (a, b) {
        (V::Integer(x), V::Integer(y)) => x.cmp(&y),
        (V::Integer(x), V::Real(y)) => (x as f64).total_cmp(&y),
        (V::Real(x), V::Integer(y)) => x.total_cmp(&(y as f64)),
        (V::Real(x), V::Real(y)) => x.total_cmp(&y),
        (V::Text(x), V::Text(y)) => x.cmp(y),
        (V::Blob(x), V::Blob(y)) => x.cmp(y),
        _ => class(&a).cmp(&class(&b)),
    }
}

/// A derived table's name and key columns, as [`DERIVED_TABLES`] lists them.
fn derived_table(table: &str) -> Result<(&'static str, &'static str)> {
    DERIVED_TABLES
        .iter()
        .find(|(t, _)| *t == table)
        .copied()
        .ok_or_else(|| Error::Integrity(format!("{table} is not a derived table")))
}

/// A stored value as the replay comparison shows it.
fn text_of(v: &rusqlite::types::Value) -> String {
    match v {
        rusqlite::types::Value::Null => "NULL".to_string(),
        rusqlite::types::Value::Integer(i) => i.to_string(),
        rusqlite::types::Value::Real(f) => format!("{f:?}"),
        rusqlite::types::Value::Text(t) => format!("{t:?}"),
        rusqlite::types::Value::Blob(b) => format!("x'{}'", hex::encode(b)),
    }
}

/// Exact equality of two stored values (reals by their bits, so the comparison
/// is a total one: what is stored is what was written).
fn same_value_ref(a: rusqlite::types::ValueRef, b: rusqlite::types::ValueRef) -> bool {
    use rusqlite::types::ValueRef as V;
    match (a, b) {
        (V::Real(x), V::Real(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

/// The `shown` columns of a row as `name=value`, for a report on one line: a
/// text of more than 80 characters as its start, length and SHA-256 (an
/// edited protocol in full made the message pages long).
fn row_text_named(names: &[String], row: &[rusqlite::types::Value], shown: &[usize]) -> String {
    use sha2::Digest as _;
    let value = |v: &rusqlite::types::Value| match v {
        rusqlite::types::Value::Text(t) if t.chars().count() > 80 => format!(
            "{:?}… ({} characters, sha256 {}…)",
            t.chars().take(24).collect::<String>(),
            t.chars().count(),
            &hex::encode(sha2::Sha256::digest(t.as_bytes()))[..16]
        ),
        v => text_of(v),
    };
    shown
        .iter()
        .filter_map(|&i| Some(format!("{}={}", names.get(i)?, value(row.get(i)?))))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A `log` row read as `SELECT seq, ts, type, hash, body`.
fn log_row(r: &rusqlite::Row) -> rusqlite::Result<LogRow> {
    Ok(LogRow { seq: r.get::<_, i64>(0)? as u64, ts: r.get(1)?, kind: r.get(2)?, hash: r.get(3)?, body: r.get(4)? })
}
