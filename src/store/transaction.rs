//! The write transaction: [`Tx`] begun by [`Store::transaction`], the log
//! append and the derived-table writes `ledger::apply` makes through it (it
//! is the live trial's `ledger::Sink`), the identities a batch holds back to
//! write in key order, commit, and the rollback of a transaction dropped
//! without one; and the group of writes committed together (group commit),
//! in which each transaction is a savepoint of the group's one transaction.

use std::cell::{Cell, RefCell};

use rusqlite::{Connection, params};

use super::reads::{head, revealed, trial};
use super::{Head, Held, LogRowRef, NewOutcome, NewReferral, StatusRow, Store, StreamRow, TrialRow, Tx};
use crate::error::{Error, Result};

impl Store {
    /// Begins a write transaction: `BEGIN IMMEDIATE`, or within a group
    /// ([`Store::begin_group`]) a savepoint of the group's transaction, so
    /// that every write works the same inside a group and out of it.
    pub fn transaction(&mut self) -> Result<Tx<'_>> {
        let Some(broken) = &self.group else {
            self.conn
                .prepare_cached("BEGIN IMMEDIATE")
                .and_then(|mut s| s.execute([]))
                .map_err(Error::sqlite("starting a write transaction"))?;
            return Ok(Tx::new(&self.conn, None));
        };
        // SQLite rolls a whole transaction back on some errors (a full disk,
        // I/O): a savepoint begun then would be a transaction of its own,
        // committed by its release, outside the group.
        if let Some(e) = group_failed(&self.conn, broken) {
            return Err(e);
        }
        self.conn
            .prepare_cached("SAVEPOINT write")
            .and_then(|mut s| s.execute([]))
            .map_err(Error::sqlite("starting a write in a group"))?;
        Ok(Tx::new(&self.conn, Some((broken, true))))
    }

    /// Begins a group of writes committed together: one `BEGIN IMMEDIATE`
    /// transaction, in which each [`Store::transaction`] until
    /// [`Store::end_group`] is a savepoint (released by its commit, rolled
    /// back alone when dropped without one).
    pub fn begin_group(&mut self) -> Result<()> {
        if self.group.is_some() {
            return Err(Error::Integrity("a group of writes was begun inside another; nothing was written".into()));
        }
        self.conn
            .prepare_cached("BEGIN IMMEDIATE")
            .and_then(|mut s| s.execute([]))
            .map_err(Error::sqlite("starting a group of writes"))?;
        self.group = Some(Cell::new(false));
        Ok(())
    }

    /// Ends the group [`Store::begin_group`] began: commits it, or rolls it
    /// back whole if any write in it could not be undone alone. Until this
    /// returns `Ok`, nothing the group wrote is visible or durable; after an
    /// error, nothing of it was written.
    pub fn end_group(&mut self) -> Result<()> {
        let Some(broken) = self.group.take() else {
            return Err(Error::Integrity("no group of writes to commit; nothing was written".into()));
        };
        let committed = if let Some(e) = group_failed(&self.conn, &broken) {
            Err(e)
        } else {
            self.conn
                .prepare_cached("COMMIT")
                .and_then(|mut s| s.execute([]))
                .map(drop)
                .map_err(Error::sqlite("committing a group of writes, so nothing of it was written"))
        };
        if committed.is_err() && !self.conn.is_autocommit() {
            // As for a single transaction: a failed ROLLBACK leaves nothing
            // uncommitted durable.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        committed
    }

    /// Marks the group begun by [`Store::begin_group`] to be rolled back whole
    /// by [`Store::end_group`] (a write in it stopped half made).
    pub fn abandon_group(&mut self) {
        if let Some(broken) = &self.group {
            broken.set(true);
        }
    }
}

/// Why a group cannot go on, if it cannot: a write in it could not be
/// undone alone, or SQLite rolled its transaction back (marked on `broken`).
fn group_failed(conn: &Connection, broken: &Cell<bool>) -> Option<Error> {
    let why = if conn.is_autocommit() {
        "the database rolled back the group of writes this was part of (a full disk or an I/O error)"
    } else if broken.get() {
        "a write in the group this was part of could not be undone alone, so the group was rolled back"
    } else {
        return None;
    };
    broken.set(true);
    Some(Error::Integrity(format!("{why}; nothing of the group was written, try again")))
}

impl<'a> Tx<'a> {
    fn new(tx: &'a Connection, group: Option<(&'a Cell<bool>, bool)>) -> Tx<'a> {
        Tx {
            tx,
            group,
            pending_identities: RefCell::new(None),
            log_insert: RefCell::new(None),
            referral_insert: RefCell::new(None),
        }
    }
}

impl Tx<'_> {
    /// The end of the log.
    pub fn head(&self) -> Result<Head> {
        head(self.tx)
    }

    /// The trial row.
    pub fn trial(&self) -> Result<Option<TrialRow>> {
        trial(self.tx)
    }

    /// When the seed was revealed, if it has been.
    pub fn revealed(&self) -> Result<Option<(u64, String)>> {
        revealed(self.tx)
    }

    /// Records the seed's reveal on the trial row.
    pub fn set_revealed(&self, seq: u64, ts: &str) -> Result<()> {
        self.tx
            .execute("UPDATE trial SET revealed_seq = ?1, revealed_at = ?2", params![seq as i64, ts])
            .map(drop)
            .map_err(Error::sqlite("recording the seed's reveal"))
    }

    /// Appends a log row.
    pub fn append_log(&self, row: &LogRowRef) -> Result<()> {
        held(
            self.tx,
            &self.log_insert,
            "INSERT INTO log (seq, ts, type, hash, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            |s| s.execute(params![row.seq as i64, row.ts, row.kind, row.hash, row.body]),
        )
        .map(drop)
        .map_err(Error::sqlite("appending to the log"))
    }

    /// Inserts the trial row.
    pub fn insert_trial(&self, t: &TrialRow) -> Result<()> {
        self.tx
            .execute(
                "INSERT INTO trial (singleton, trial_id, title, protocol, protocol_sha256, seed_commitment, signing_public_key, key_origin, created_at) VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![t.trial_id, t.title, t.protocol, t.protocol_sha256, t.seed_commitment, t.signing_public_key, t.key_origin, t.created_at],
            )
            .map(drop)
            .map_err(Error::sqlite("recording the trial"))
    }

    /// Inserts a referral's row: a randomised one carries its stratum, arm
    /// and identity hash.
    pub fn insert_referral(&self, r: &NewReferral) -> Result<()> {
        let (stratum, arm, identity) = match r.randomised {
            Some((stratum, arm, identity)) => (Some(stratum), Some(arm), Some(identity)),
            None => (None, None, None),
        };
        held(
            self.tx,
            &self.referral_insert,
            "INSERT INTO referrals (participant, seq, site, status, reasons, screened_at, stratum, arm, identity)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            |s| {
                s.execute(params![
                    r.participant,
                    r.seq as i64,
                    r.site,
                    r.status,
                    r.reasons,
                    r.screened_at,
                    stratum,
                    arm,
                    identity
                ])
            },
        )
        .map_err(Error::sqlite("recording a referral"))?;
        let Some(identity) = identity else { return Ok(()) };
        if let Some(pending) = self.pending_identities.borrow_mut().as_mut() {
            pending.push((identity.to_string(), r.participant.to_string(), r.seq));
            return Ok(());
        }
        self.insert_identity(identity, r.participant, r.seq)
    }

    fn insert_identity(&self, identity: &str, participant: &str, seq: u64) -> Result<()> {
        self.tx
            .prepare_cached("INSERT INTO identities (identity, participant, seq) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![identity, participant, seq as i64]))
            .map(drop)
            .map_err(Error::sqlite("recording an identity"))
    }

    /// From now until [`Tx::flush_identities`], holds back the `identities`
    /// rows of randomised referrals, so a batch writes them in key order: its
    /// identity hashes are random, and B-tree inserts in key order touch each
    /// page once instead of a random page per row (a third of a large batch's
    /// time). A second randomisation of an identity is then refused at the
    /// flush, not at its referral's insert.
    pub fn defer_identities(&self) {
        self.pending_identities.borrow_mut().get_or_insert_with(Vec::new);
    }

    /// Writes the held-back `identities` rows in key order and stops holding
    /// them back. Returns the (identity, participant) pairs refused because the
    /// identity was already randomised; those rows are not written.
    pub fn flush_identities(&self) -> Result<Vec<(String, String)>> {
        let Some(mut pending): Option<Vec<(String, String, u64)>> = self.pending_identities.borrow_mut().take() else {
            return Ok(vec![]);
        };
        pending.sort_unstable();
        const ROWS: usize = 64;
        // The statement text for a full chunk, made once per process.
        static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let sql = SQL.get_or_init(|| {
            let rows: Vec<String> =
                (0..ROWS).map(|i| format!("(?{},?{},?{})", 1 + 3 * i, 2 + 3 * i, 3 + 3 * i)).collect();
            format!("INSERT INTO identities (identity, participant, seq) VALUES {}", rows.join(","))
        });
        let is_duplicate = |e: &Error| {
            matches!(e, Error::Sqlite { source: rusqlite::Error::SqliteFailure(e, _), .. }
                if e.code == rusqlite::ErrorCode::ConstraintViolation)
        };
        let mut refused = Vec::new();
        for chunk in pending.chunks(ROWS) {
            // A full chunk in one statement; a statement that fails writes
            // nothing, and its rows are then written one by one to find which.
            if chunk.len() == ROWS {
                let mut stmt = self.tx.prepare_cached(sql).map_err(Error::sqlite("recording identities"))?;
                for (i, (identity, participant, seq)) in chunk.iter().enumerate() {
                    let bind = |stmt: &mut rusqlite::CachedStatement| -> rusqlite::Result<()> {
                        stmt.raw_bind_parameter(1 + 3 * i, identity)?;
                        stmt.raw_bind_parameter(2 + 3 * i, participant)?;
                        stmt.raw_bind_parameter(3 + 3 * i, *seq as i64)
                    };
                    bind(&mut stmt).map_err(Error::sqlite("recording identities"))?;
                }
                match stmt.raw_execute().map_err(Error::sqlite("recording identities")) {
                    Ok(_) => continue,
                    Err(e) if is_duplicate(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            for (identity, participant, seq) in chunk {
                match self.insert_identity(identity, participant, *seq) {
                    Ok(()) => {}
                    Err(e) if is_duplicate(&e) => refused.push((identity.clone(), participant.clone())),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(refused)
    }

    /// Records the first values of one participant at one timepoint, collected
    /// on one date, from log entry `seq` (their recording time and user are
    /// that entry's). A value already there is a constraint error: recording
    /// never overwrites. The values go in as multi-row statements whose
    /// shared columns are bound once (a statement per value cost an import a
    /// quarter of its time). `OR FAIL`, not the default `ABORT`: a failure
    /// fails the whole transaction anyway, and ABORT would make SQLite keep a
    /// statement journal of every multi-row insert in case it had to undo just
    /// that statement.
    pub fn insert_outcomes(
        &self,
        participant: &str,
        timepoint: &str,
        collected_on: &str,
        seq: u64,
        values: &[(&str, &str)],
    ) -> Result<()> {
        const MAX_ROWS: usize = 32;
        // The statement text for each number of rows, made once per process.
        static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let sql = SQL.get_or_init(|| {
            (1..=MAX_ROWS)
                .map(|n| {
                    let rows: Vec<String> =
                        (0..n).map(|i| format!("(?1,?2,?{},?{},?3,1,?4)", 5 + 2 * i, 6 + 2 * i)).collect();
                    format!(
                        "INSERT OR FAIL INTO outcomes (participant, timepoint, field, value, collected_on, version, seq) VALUES {}",
                        rows.join(",")
                    )
                })
                .collect()
        });
        let what = "recording an outcome";
        for chunk in values.chunks(MAX_ROWS) {
            let mut stmt = self.tx.prepare_cached(&sql[chunk.len() - 1]).map_err(Error::sqlite(what))?;
            let mut bind = || -> rusqlite::Result<()> {
                stmt.raw_bind_parameter(1, participant)?;
                stmt.raw_bind_parameter(2, timepoint)?;
                stmt.raw_bind_parameter(3, collected_on)?;
                stmt.raw_bind_parameter(4, seq as i64)?;
                for (i, (field, value)) in chunk.iter().enumerate() {
                    stmt.raw_bind_parameter(5 + 2 * i, field)?;
                    stmt.raw_bind_parameter(6 + 2 * i, value)?;
                }
                stmt.raw_execute().map(drop)
            };
            bind().map_err(Error::sqlite(what))?;
        }
        Ok(())
    }

    /// Replaces a recorded value with its correction.
    pub fn update_outcome(&self, o: &NewOutcome) -> Result<()> {
        let what = "recording a correction";
        let n = self
            .tx
            .prepare_cached(
                "UPDATE outcomes SET value = ?4, collected_on = ?5, version = ?6, seq = ?7
                 WHERE participant = ?1 AND timepoint = ?2 AND field = ?3",
            )
            .and_then(|mut s| {
                s.execute(params![
                    o.participant,
                    o.timepoint,
                    o.field,
                    o.value,
                    o.collected_on,
                    o.version as i64,
                    o.seq as i64
                ])
            })
            .map_err(Error::sqlite(what))?;
        if n != 1 {
            return Err(Error::Integrity(format!(
                "{what}: {} {} {} is not recorded",
                o.participant, o.timepoint, o.field
            )));
        }
        Ok(())
    }

    /// Sets a participant's follow-up status.
    pub fn put_status(&self, st: &StatusRow) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO participant_status (participant, status, reason, no_further_contact, on_date, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (participant) DO UPDATE SET status = ?2, reason = ?3, no_further_contact = ?4, on_date = ?5, seq = ?6",
            )
            .and_then(|mut s| {
                s.execute(params![
                    st.participant,
                    st.status,
                    st.reason,
                    st.no_further_contact as i64,
                    st.on_date,
                    st.seq as i64
                ])
            })
            .map(drop)
            .map_err(Error::sqlite("recording a status change"))
    }

    /// Sets a stream's row.
    pub fn put_stream(&self, stream: &str, row: StreamRow) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO allocation_streams (stream, block, start_word, used, next_word) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (stream) DO UPDATE SET block = ?2, start_word = ?3, used = ?4, next_word = ?5",
            )
            .and_then(|mut s| {
                s.execute(params![stream, row.block as i64, row.start_word as i64, row.used as i64, row.next_word as i64])
            })
            .map(drop)
            .map_err(Error::sqlite("updating allocation state"))
    }

    /// Sets a (factor, level, arm) count.
    pub fn put_count(&self, factor: usize, level: usize, arm: usize, n: u64) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO allocation_counts (factor, level, arm, n) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (factor, level, arm) DO UPDATE SET n = ?4",
            )
            .and_then(|mut s| s.execute(params![factor as i64, level as i64, arm as i64, n as i64]))
            .map(drop)
            .map_err(Error::sqlite("updating allocation counts"))
    }

    /// Commits; until this returns, nothing is visible or durable.
    /// Held-back identities are written first; one already randomised
    /// refuses the commit. In a group, releases the savepoint: the write
    /// stands unless the group's own commit fails.
    pub fn commit(mut self) -> Result<()> {
        if let Some((_, participant)) = self.flush_identities()?.first() {
            return Err(Error::Refused(format!(
                "participant {participant} has the identity of a participant already randomised; a person is randomised once"
            )));
        }
        if let Some((broken, open)) = &mut self.group {
            if let Some(e) = group_failed(self.tx, broken) {
                return Err(e);
            }
            self.tx
                .prepare_cached("RELEASE write")
                .and_then(|mut s| s.execute([]))
                .map_err(Error::sqlite("ending a write in a group"))?;
            *open = false;
            return Ok(());
        }
        self.tx.prepare_cached("COMMIT").and_then(|mut s| s.execute([])).map(drop).map_err(Error::sqlite("committing"))
        // Drop finds the transaction ended (or, if COMMIT failed, rolls it back).
    }
}

/// Runs `f` on the statement `slot` holds, preparing `sql` into it first if empty.
fn held<'a, T>(
    conn: &'a Connection,
    slot: &Held<'a>,
    sql: &str,
    f: impl FnOnce(&mut rusqlite::CachedStatement<'a>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let mut slot = slot.borrow_mut();
    let statement = match &mut *slot {
        Some(s) => s,
        None => slot.insert(conn.prepare_cached(sql)?),
    };
    f(statement)
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        match self.group {
            // A savepoint still open: this write alone is undone, and the
            // group goes on. If that fails, the group cannot commit.
            Some((broken, true)) => {
                if self.tx.is_autocommit() || self.tx.execute_batch("ROLLBACK TO write; RELEASE write").is_err() {
                    broken.set(true);
                }
            }
            Some((_, false)) => {}
            // Still open: dropped before commit (an error on the way), or COMMIT failed.
            None => {
                if !self.tx.is_autocommit() {
                    // A failed ROLLBACK leaves nothing to do: SQLite rolls back what it can
                    // when the connection closes, and nothing uncommitted is durable.
                    let _ = self.tx.execute_batch("ROLLBACK");
                }
            }
        }
    }
}

// The live transaction is where `ledger::apply` writes outside verification.
impl crate::ledger::Sink for Tx<'_> {
    fn insert_trial(&self, t: &TrialRow) -> Result<()> {
        Tx::insert_trial(self, t)
    }
    fn insert_referral(&self, r: &NewReferral) -> Result<()> {
        Tx::insert_referral(self, r)
    }
    fn set_revealed(&self, seq: u64, ts: &str) -> Result<()> {
        Tx::set_revealed(self, seq, ts)
    }
    fn insert_outcomes(
        &self,
        participant: &str,
        timepoint: &str,
        collected_on: &str,
        seq: u64,
        values: &[(&str, &str)],
    ) -> Result<()> {
        Tx::insert_outcomes(self, participant, timepoint, collected_on, seq, values)
    }
    fn outcome(&self, participant: &str, timepoint: &str, field: &str) -> Result<Option<(String, String, u32)>> {
        Tx::outcome(self, participant, timepoint, field)
    }
    fn update_outcome(&self, o: &NewOutcome) -> Result<()> {
        Tx::update_outcome(self, o)
    }
    fn status(&self, participant: &str) -> Result<Option<StatusRow>> {
        Tx::status_of(self, participant)
    }
    fn put_status(&self, st: &StatusRow) -> Result<()> {
        Tx::put_status(self, st)
    }
    fn put_stream(&self, stream: &str, row: StreamRow) -> Result<()> {
        Tx::put_stream(self, stream, row)
    }
    fn put_count(&self, factor: usize, level: usize, arm: usize, n: u64) -> Result<()> {
        Tx::put_count(self, factor, level, arm, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(tx: &Tx, seq: u64) {
        let body = format!("{{\"seq\":{seq}}}");
        tx.append_log(&LogRowRef { seq, ts: "2026-12-08T00:00:00.000000Z", kind: "k", hash: "h", body: &body })
            .unwrap();
    }

    /// In a group each write is a savepoint: one dropped without commit is
    /// undone alone, and the others are committed by the group's one commit.
    #[test]
    fn a_write_dropped_in_a_group_is_undone_alone() {
        let mut s = Store::in_memory().unwrap();
        s.begin_group().unwrap();
        let tx = s.transaction().unwrap();
        append(&tx, 0);
        tx.commit().unwrap();
        let tx = s.transaction().unwrap();
        append(&tx, 1);
        drop(tx);
        let tx = s.transaction().unwrap();
        assert_eq!(tx.head().unwrap().len, 1, "the dropped write is undone, the one before stands");
        append(&tx, 1);
        tx.commit().unwrap();
        assert!(!s.conn.is_autocommit(), "a write's commit in a group is not the group's commit");
        s.end_group().unwrap();
        assert!(s.conn.is_autocommit());
        assert_eq!(s.head().unwrap().len, 2);
        // Outside a group, a transaction is its own again.
        let tx = s.transaction().unwrap();
        append(&tx, 2);
        tx.commit().unwrap();
        assert!(s.conn.is_autocommit());
        assert_eq!(s.head().unwrap().len, 3);
    }

    /// See: SQLite rolls a whole transaction back on a full disk or an I/O
    /// error. A write begun in the group after that must not become a
    /// transaction of its own (its savepoint's release would commit it
    /// alone); it is refused, and the group ends in an error.
    #[test]
    fn a_group_whose_transaction_was_lost_writes_nothing_more() {
        let mut s = Store::in_memory().unwrap();
        s.begin_group().unwrap();
        let tx = s.transaction().unwrap();
        append(&tx, 0);
        tx.commit().unwrap();
        s.conn.execute_batch("ROLLBACK").unwrap(); // as SQLite does on SQLITE_FULL
        let e = s.transaction().err().unwrap().to_string();
        assert!(
            e.contains("the database rolled back the group") && e.contains("nothing of the group was written"),
            "{e}"
        );
        let e = s.end_group().unwrap_err().to_string();
        assert!(e.contains("nothing of the group was written"), "{e}");
        assert!(s.conn.is_autocommit());
        assert_eq!(s.head().unwrap().len, 0);
        // A group abandoned after a write stood is rolled back whole.
        s.begin_group().unwrap();
        let tx = s.transaction().unwrap();
        append(&tx, 0);
        tx.commit().unwrap();
        s.abandon_group();
        assert!(s.end_group().is_err());
        assert_eq!(s.head().unwrap().len, 0);
        s.begin_group().unwrap();
        assert!(s.begin_group().is_err(), "groups do not nest");
        s.end_group().unwrap();
    }
}
