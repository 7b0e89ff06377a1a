//! The analysis dataset's reads: the current outcome values and each
//! participant's randomising log entry, passed borrowed from SQLite's row
//! buffer; a read snapshot that holds one state across reads.

use rusqlite::Connection;

use super::reads::head;
use super::{Head, Store};
use crate::error::{Error, Result};

impl Store {
    /// Every current outcome value, ordered by participant, timepoint and
    /// field, passed to `f` as `(participant, timepoint, field, value,
    /// collected_on)` borrowed from the row, with no allocation per row.
    pub fn for_each_outcome_value(&self, mut f: impl FnMut(&str, &str, &str, &str, &str)) -> Result<()> {
        self.for_each_outcome_row(|row| {
            f(
                row.text(row.participant)?,
                row.text(row.timepoint)?,
                row.text(row.field)?,
                row.text(row.value)?,
                row.text(row.collected_on)?,
            );
            Ok(())
        })
    }

    /// The current outcome values, ordered by participant, timepoint and
    /// field, passed to `f` as the row's bytes: a reader that compares most
    /// of them with the row before (the same participant, a known timepoint
    /// and field, the same date) need not check that each is UTF-8, and
    /// checks the rest itself. The first error `f` returns ends the read.
    pub fn for_each_outcome_row(&self, mut f: impl FnMut(StoredOutcome<'_>) -> Result<()>) -> Result<()> {
        let what = "reading outcomes";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT participant, timepoint, field, value, collected_on FROM outcomes
                 ORDER BY participant, timepoint, field",
            )
            .map_err(Error::sqlite(what))?;
        let mut rows = stmt.raw_query();
        // The error is made only on failure: `Error::sqlite` allocates its
        // context when called, six times a row here otherwise.
        while let Some(r) = rows.next().map_err(|e| Error::sqlite(what)(e))? {
            let mut cols: [&[u8]; 5] = [b""; 5];
            for (i, c) in cols.iter_mut().enumerate() {
                *c = match r.get_ref(i).map_err(|e| Error::sqlite(what)(e))? {
                    rusqlite::types::ValueRef::Text(t) => t,
                    _ => {
                        return Err(Error::Integrity(format!("{what}: column {i} of the outcomes table is not text")));
                    }
                };
            }
            let [participant, timepoint, field, value, collected_on] = cols;
            f(StoredOutcome { participant, timepoint, field, value, collected_on })?;
        }
        Ok(())
    }

    /// Each randomised participant's randomising log entry, read by primary
    /// key through the `seq` the participants table records for it (no scan
    /// of the log), passed to `f` borrowed from the row, in no particular
    /// order. A participant whose seq names no log entry is passed with
    /// `entry: None`, so that the caller can refuse it rather than skip it.
    pub fn for_each_randomising_entry(&self, mut f: impl FnMut(RandomisingRow<'_>) -> Result<()>) -> Result<()> {
        let what = "reading the randomisations";
        // Unordered: ordering by participants.seq here would sort the entry
        // bodies through a temporary b-tree, slower than the log scan it
        // replaces; callers sort the decoded entries by seq instead.
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT participants.participant, participants.seq, log.type, log.body
                 FROM participants LEFT JOIN log ON log.seq = participants.seq",
            )
            .map_err(Error::sqlite(what))?;
        let mut rows = stmt.query([]).map_err(Error::sqlite(what))?;
        let not_text = |table: &str, column: &str| {
            Error::Integrity(format!("{what}: a {column} in the {table} table is not text; run `chancery verify`"))
        };
        // The error is made only on failure (see `for_each_outcome_value`).
        while let Some(r) = rows.next().map_err(|e| Error::sqlite(what)(e))? {
            let col = |i: usize| r.get_ref(i).map_err(|e| Error::sqlite(what)(e));
            let participant = col(0)?.as_str().map_err(|_| not_text("participants", "participant"))?;
            let seq = match col(1)? {
                rusqlite::types::ValueRef::Integer(seq) if seq >= 0 => seq as u64,
                _ => {
                    return Err(Error::Integrity(format!(
                        "{what}: participant {participant}'s seq is not a log entry number; run `chancery verify`"
                    )));
                }
            };
            let entry = match (col(2)?, col(3)?) {
                (rusqlite::types::ValueRef::Null, _) => None,
                (kind, body) => Some((
                    kind.as_str().map_err(|_| not_text("log", "type"))?,
                    body.as_str().map_err(|_| not_text("log", "body"))?,
                )),
            };
            f(RandomisingRow { participant, seq, entry })?;
        }
        Ok(())
    }

    /// Begins a read transaction: until the returned guard is dropped, every
    /// read on this connection sees the one state of the database whose log
    /// head is returned. Every write appends a log entry in its own
    /// transaction, so two connections whose snapshots have equal heads (length
    /// and last hash) see the same tables. Inside a transaction already open
    /// on this connection, that transaction's state is the one read.
    pub fn read_snapshot(&self) -> Result<(ReadSnapshot<'_>, Head)> {
        let began = self.conn.is_autocommit();
        if began {
            self.conn.execute_batch("BEGIN DEFERRED").map_err(Error::sqlite("beginning a read"))?;
        }
        let guard = ReadSnapshot { conn: &self.conn, began };
        // The first read fixes the snapshot (WAL: the log end it sees).
        let head = head(&self.conn)?;
        Ok((guard, head))
    }
}

/// A read transaction begun by [`Store::read_snapshot`]; ended when dropped.
pub struct ReadSnapshot<'a> {
    conn: &'a Connection,
    began: bool,
}

impl Drop for ReadSnapshot<'_> {
    fn drop(&mut self) {
        if self.began {
            // Nothing was written: ending the read cannot lose anything, and
            // a failure leaves SQLite to end it when the connection closes.
            let _ = self.conn.execute_batch("COMMIT");
        }
    }
}

/// One outcome value's row as stored, borrowed from SQLite's row buffer
/// (see [`Store::for_each_outcome_row`]): text columns, not checked to be UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredOutcome<'a> {
    /// Participant id.
    pub participant: &'a [u8],
    /// Timepoint id.
    pub timepoint: &'a [u8],
    /// Outcome field name.
    pub field: &'a [u8],
    /// The value's canonical text.
    pub value: &'a [u8],
    /// The date it was collected on (`YYYY-MM-DD`).
    pub collected_on: &'a [u8],
}

impl<'a> StoredOutcome<'a> {
    /// One of the row's columns as text; an integrity error (naming the
    /// participant where it is text) if it is not UTF-8.
    pub fn text(&self, column: &'a [u8]) -> Result<&'a str> {
        std::str::from_utf8(column).map_err(|_| {
            Error::Integrity(format!(
                "reading outcomes: a value of participant {} in the outcomes table is not text; run `chancery verify`",
                String::from_utf8_lossy(self.participant)
            ))
        })
    }
}

/// A participants row and the log entry its seq names (see
/// [`Store::for_each_randomising_entry`]), borrowed from SQLite's row buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomisingRow<'a> {
    /// Participant id, from the participants table.
    pub participant: &'a str,
    /// The seq the participants table records for the randomising entry.
    pub seq: u64,
    /// That log entry's type column and stored body; `None` if there is no entry with that seq.
    pub entry: Option<(&'a str, &'a str)>,
}
