//! What the operations read: the log's head, the trial row, the referrals,
//! participants, current outcomes and statuses for the status command and
//! the exports, the log bodies an outcome's history is decoded from, and the
//! look-ups a write makes in its transaction (one participant, an identity,
//! the allocation state).

use rusqlite::{Connection, OptionalExtension};

use super::{
    Head, OutcomeRow, ParticipantRow, ReferralRef, ReferralRow, StatusRow, Store, StreamRow, SubjectRow, TrialRow, Tx,
};
use crate::error::{Error, Result};

impl Store {
    /// The end of the log.
    pub fn head(&self) -> Result<Head> {
        head(&self.conn)
    }

    /// The trial row, if the trial has been created.
    pub fn trial(&self) -> Result<Option<TrialRow>> {
        trial(&self.conn)
    }

    /// Every referral, in log order.
    pub fn referrals(&self) -> Result<Vec<ReferralRow>> {
        let what = "reading referrals";
        let mut stmt = self
            .conn
            .prepare("SELECT participant, seq, site, status, reasons, screened_at FROM referrals ORDER BY seq")
            .map_err(Error::sqlite(what))?;
        stmt.query_map([], |r| {
            Ok(ReferralRow {
                participant: r.get(0)?,
                seq: r.get::<_, i64>(1)? as u64,
                site: r.get(2)?,
                status: r.get(3)?,
                reasons: r.get(4)?,
                screened_at: r.get(5)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(Error::sqlite(what))
    }

    /// Every referral, in participant (key) order, passed to `f` borrowed from
    /// the row: for a reader that orders them itself (by `seq`, a sort of
    /// numbers instead of SQLite's sort of whole rows) and keeps only some of
    /// their text. The first error `f` returns ends the read.
    pub fn for_each_referral(&self, mut f: impl FnMut(ReferralRef<'_>) -> Result<()>) -> Result<()> {
        let what = "reading referrals";
        let mut stmt = self
            .conn
            .prepare_cached("SELECT participant, seq, site, status, reasons, screened_at FROM referrals")
            .map_err(Error::sqlite(what))?;
        let mut rows = stmt.raw_query();
        let not_text = |column: &str| {
            Error::Integrity(format!("{what}: a {column} in the referrals table is not text; run `chancery verify`"))
        };
        // The error is made only on failure (see `for_each_outcome_row`).
        while let Some(r) = rows.next().map_err(|e| Error::sqlite(what)(e))? {
            let text = |i: usize, column: &str| match r.get_ref(i).map_err(|e| Error::sqlite(what)(e))? {
                rusqlite::types::ValueRef::Text(t) => std::str::from_utf8(t).map_err(|_| not_text(column)),
                _ => Err(not_text(column)),
            };
            let seq = match r.get_ref(1).map_err(|e| Error::sqlite(what)(e))? {
                rusqlite::types::ValueRef::Integer(seq) if seq >= 0 => seq as u64,
                _ => return Err(not_text("seq")),
            };
            f(ReferralRef {
                participant: text(0, "participant")?,
                seq,
                site: text(2, "site")?,
                status: text(3, "status")?,
                reasons: text(4, "reasons")?,
                screened_at: text(5, "screened_at")?,
            })?;
        }
        Ok(())
    }

    /// Every randomised participant, in log order.
    pub fn participants(&self) -> Result<Vec<ParticipantRow>> {
        participants(&self.conn)
    }

    /// Every current outcome value, ordered by participant, timepoint, field.
    pub fn outcomes(&self) -> Result<Vec<OutcomeRow>> {
        outcome_rows(&self.conn)
    }

    /// Every non-active participant status.
    pub fn statuses(&self) -> Result<Vec<StatusRow>> {
        status_rows(&self.conn, None)
    }

    /// The bodies of the log entries of one type, in order.
    pub fn log_bodies(&self, kind: &str) -> Result<Vec<(u64, String)>> {
        self.seq_and_body("SELECT seq, body FROM log WHERE type = ?1 ORDER BY seq", [kind])
    }

    /// The bodies of the log entries of one type whose text contains `needle`, in order.
    pub fn log_bodies_containing(&self, kind: &str, needle: &str) -> Result<Vec<(u64, String)>> {
        self.seq_and_body(
            "SELECT seq, body FROM log WHERE type = ?1 AND instr(body, ?2) > 0 ORDER BY seq",
            [kind, needle],
        )
    }

    /// The `(seq, body)` log rows `sql` selects, in its order.
    fn seq_and_body(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<(u64, String)>> {
        let what = "reading the log";
        let mut stmt = self.conn.prepare(sql).map_err(Error::sqlite(what))?;
        stmt.query_map(params, |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(Error::sqlite(what))
    }

    /// When the seed was revealed: the entry's seq and time, if it has been.
    pub fn revealed(&self) -> Result<Option<(u64, String)>> {
        revealed(&self.conn)
    }

    /// The site of the referral with exactly this participant id, if any:
    /// one primary-key search.
    pub fn referral_site(&self, participant: &str) -> Result<Option<String>> {
        self.conn
            .prepare_cached("SELECT site FROM referrals WHERE participant = ?1")
            .and_then(|mut s| s.query_row([participant], |r| r.get(0)).optional())
            .map_err(Error::sqlite("reading a referral's site"))
    }
}

impl Tx<'_> {
    /// Whether a referral with this participant id exists.
    pub fn referral_exists(&self, participant: &str) -> Result<bool> {
        self.tx
            .prepare_cached("SELECT 1 FROM referrals WHERE participant = ?1")
            .and_then(|mut s| s.exists([participant]))
            .map_err(Error::sqlite("checking for a duplicate participant id"))
    }

    /// A recorded participant id that differs from `participant` only in the
    /// case of its letters (`p0001` for `P0001`), if any.
    ///
    /// Searched on the primary key, without an index of its own: under
    /// SQLite's byte order every case variant of an id lies between its
    /// uppercase and lowercase forms, so the search fixes one letter's case
    /// at a time and descends only into ranges that hold a row. An id with
    /// its letters in one place (`P0001`, `SHF-12`) costs a few seeks.
    pub fn participant_in_other_case(&self, participant: &str) -> Result<Option<String>> {
        let what = "checking for a participant id that differs only in case";
        let mut first = self
            .tx
            .prepare_cached("SELECT participant FROM referrals WHERE participant BETWEEN ?1 AND ?2 LIMIT 1")
            .map_err(Error::sqlite(what))?;
        let mut prefixes = vec![String::new()];
        while let Some(prefix) = prefixes.pop() {
            let rest = &participant[prefix.len()..];
            let (lo, hi) =
                (format!("{prefix}{}", rest.to_ascii_uppercase()), format!("{prefix}{}", rest.to_ascii_lowercase()));
            let found: Option<String> =
                first.query_row([&lo, &hi], |r| r.get(0)).optional().map_err(Error::sqlite(what))?;
            let Some(found) = found else { continue };
            if found != participant && found.eq_ignore_ascii_case(participant) {
                return Ok(Some(found));
            }
            if let Some(k) = rest.bytes().position(|b| b.is_ascii_alphabetic()) {
                let (head, letter) = (&rest[..k], &rest[k..=k]);
                prefixes.push(format!("{prefix}{head}{}", letter.to_ascii_lowercase()));
                prefixes.push(format!("{prefix}{head}{}", letter.to_ascii_uppercase()));
            }
        }
        Ok(None)
    }

    /// Every recorded participant id by its lowercase form, for checking a
    /// large batch against them in memory.
    pub fn participant_ids_by_folded(&self) -> Result<std::collections::HashMap<String, String>> {
        let what = "reading the participant ids";
        let mut s = self.tx.prepare("SELECT participant FROM referrals").map_err(Error::sqlite(what))?;
        let rows = s.query_map([], |r| r.get::<_, String>(0)).map_err(Error::sqlite(what))?;
        let mut out = std::collections::HashMap::new();
        for id in rows {
            let id = id.map_err(Error::sqlite(what))?;
            out.insert(id.to_ascii_lowercase(), id);
        }
        Ok(out)
    }

    /// The participant already randomised with this identity hash, if any.
    pub fn participant_with_identity(&self, identity: &str) -> Result<Option<(String, String)>> {
        self.tx
            .prepare_cached(
                "SELECT i.participant, r.site FROM identities AS i JOIN referrals AS r ON r.participant = i.participant
                 WHERE i.identity = ?1",
            )
            .and_then(|mut s| s.query_row([identity], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(Error::sqlite("checking for a duplicate identity"))
    }

    /// The randomised participant with this id, if any.
    pub fn participant(&self, participant: &str) -> Result<Option<ParticipantRow>> {
        self.tx
            .prepare_cached(PARTICIPANT_SQL)
            .and_then(|mut s| s.query_row([participant], participant_row).optional())
            .map_err(Error::sqlite("reading a participant"))
    }

    /// A randomised participant as the follow-up rules see them, if randomised:
    /// randomisation time, whether they withdrew with no further contact, and
    /// their current values as (timepoint, field, value). One index search per call.
    pub fn subject(&self, participant: &str) -> Result<Option<SubjectRow>> {
        let what = "reading a participant's follow-up";
        let mut stmt = self.tx.prepare_cached(SUBJECT_SQL).map_err(Error::sqlite(what))?;
        let mut rows = stmt.query([participant]).map_err(Error::sqlite(what))?;
        let mut out: Option<SubjectRow> = None;
        while let Some(r) = rows.next().map_err(Error::sqlite(what))? {
            let s = match &mut out {
                Some(s) => s,
                None => out.insert(SubjectRow {
                    randomised_at: r.get(0).map_err(Error::sqlite(what))?,
                    no_further_contact: r.get::<_, i64>(1).map_err(Error::sqlite(what))? != 0,
                    current: Vec::new(),
                    status: match r.get::<_, Option<String>>(6).map_err(Error::sqlite(what))? {
                        Some(status) => Some((status, r.get(7).map_err(Error::sqlite(what))?)),
                        None => None,
                    },
                }),
            };
            let timepoint: Option<String> = r.get(2).map_err(Error::sqlite(what))?;
            if let Some(timepoint) = timepoint {
                s.current.push((
                    timepoint,
                    r.get(3).map_err(Error::sqlite(what))?,
                    r.get(4).map_err(Error::sqlite(what))?,
                    r.get(5).map_err(Error::sqlite(what))?,
                ));
            }
        }
        Ok(out)
    }

    /// A participant's follow-up status, if not active.
    pub fn status_of(&self, participant: &str) -> Result<Option<StatusRow>> {
        Ok(status_rows(self.tx, Some(participant))?.into_iter().next())
    }

    /// One current outcome value: (value, collected on, version), if recorded.
    /// Reads the derived table alone, so replay can use it before the log is complete.
    pub fn outcome(&self, participant: &str, timepoint: &str, field: &str) -> Result<Option<(String, String, u32)>> {
        self.tx
            .prepare_cached(OUTCOME_SQL)
            .and_then(|mut s| {
                s.query_row([participant, timepoint, field], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u32)))
                    .optional()
            })
            .map_err(Error::sqlite("reading an outcome"))
    }

    /// Every allocation stream's row.
    pub fn streams(&self) -> Result<Vec<(String, StreamRow)>> {
        let what = "reading allocation state";
        let mut stmt = self
            .tx
            .prepare_cached("SELECT stream, block, start_word, used, next_word FROM allocation_streams")
            .map_err(Error::sqlite(what))?;
        stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                StreamRow {
                    block: r.get::<_, i64>(1)? as u64,
                    start_word: r.get::<_, i64>(2)? as u64,
                    used: r.get::<_, i64>(3)? as u32,
                    next_word: r.get::<_, i64>(4)? as u64,
                },
            ))
        })
        .and_then(|rows| rows.collect())
        .map_err(Error::sqlite(what))
    }

    /// Every non-zero allocation count: (factor, level, arm, n).
    pub fn counts(&self) -> Result<Vec<(usize, usize, usize, u64)>> {
        let what = "reading allocation counts";
        let mut stmt = self
            .tx
            .prepare_cached("SELECT factor, level, arm, n FROM allocation_counts")
            .map_err(Error::sqlite(what))?;
        stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)? as usize,
                r.get::<_, i64>(1)? as usize,
                r.get::<_, i64>(2)? as usize,
                r.get::<_, i64>(3)? as u64,
            ))
        })
        .and_then(|rows| rows.collect())
        .map_err(Error::sqlite(what))
    }
}

// `head` and `revealed` run in every write transaction: their statements are
// cached, as re-preparing them cost a single randomisation ~7% of its CPU.
pub(super) fn head(c: &Connection) -> Result<Head> {
    let row: Option<(i64, String, String)> = c
        .prepare_cached("SELECT seq, hash, ts FROM log ORDER BY seq DESC LIMIT 1")
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
        .map_err(Error::sqlite("reading the log head"))?;
    Ok(match row {
        None => Head { len: 0, hash: crate::log::GENESIS_PREV.into(), ts: None },
        Some((seq, hash, ts)) => Head { len: seq as u64 + 1, hash, ts: Some(ts) },
    })
}

pub(super) fn trial(c: &Connection) -> Result<Option<TrialRow>> {
    c.query_row(
        "SELECT trial_id, title, protocol, protocol_sha256, seed_commitment, signing_public_key, key_origin, created_at FROM trial",
        [],
        |r| {
            Ok(TrialRow {
                trial_id: r.get(0)?,
                title: r.get(1)?,
                protocol: r.get(2)?,
                protocol_sha256: r.get(3)?,
                seed_commitment: r.get(4)?,
                signing_public_key: r.get(5)?,
                key_origin: r.get(6)?,
                created_at: r.get(7)?,
            })
        },
    )
    .optional()
    .map_err(Error::sqlite("reading the trial"))
}

pub(super) fn revealed(c: &Connection) -> Result<Option<(u64, String)>> {
    let row: Option<(Option<i64>, Option<String>)> = c
        .prepare_cached("SELECT revealed_seq, revealed_at FROM trial")
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(Error::sqlite("reading the trial"))?;
    Ok(match row {
        Some((Some(seq), Some(ts))) => Some((seq as u64, ts)),
        _ => None,
    })
}

// The per-participant reads run once per imported row: each must be an index
// search, never a scan (a test checks the query plans).
// An outcome row's recording time and user are its log entry's (`ts`, `user`),
// read through the entry's `seq`; a LEFT JOIN, so that a value whose entry is
// missing still shows (verification names the damage).
const ALL_OUTCOMES_SQL: &str = "SELECT o.participant, o.timepoint, o.field, o.value, o.collected_on,
            COALESCE(l.ts, ''), COALESCE(json_extract(l.body, '$.user'), ''), o.version, o.seq
     FROM outcomes AS o LEFT JOIN log AS l ON l.seq = o.seq
     ORDER BY o.participant, o.timepoint, o.field";
const OUTCOME_SQL: &str =
    "SELECT value, collected_on, version FROM outcomes WHERE participant = ?1 AND timepoint = ?2 AND field = ?3";
const STATUS_OF_SQL: &str =
    "SELECT participant, status, reason, no_further_contact, on_date, seq FROM participant_status
     WHERE participant = ?1 ORDER BY participant";
// What the follow-up rules need of a participant, in one search: the
// randomisation time, a no-further-contact withdrawal, and the current values.
const SUBJECT_SQL: &str = "SELECT p.randomised_at, COALESCE(s.no_further_contact, 0), o.timepoint, o.field, o.value,
     o.collected_on, s.status, s.on_date
     FROM participants AS p
     LEFT JOIN participant_status AS s ON s.participant = p.participant
     LEFT JOIN outcomes AS o ON o.participant = p.participant
     WHERE p.participant = ?1";
const PARTICIPANT_SQL: &str =
    "SELECT participant, seq, site, stratum, arm, identity, randomised_at FROM participants WHERE participant = ?1";

fn outcome_rows(c: &Connection) -> Result<Vec<OutcomeRow>> {
    let what = "reading outcomes";
    let mut stmt = c.prepare_cached(ALL_OUTCOMES_SQL).map_err(Error::sqlite(what))?;
    stmt.query_map([], |r| {
        Ok(OutcomeRow {
            participant: r.get(0)?,
            timepoint: r.get(1)?,
            field: r.get(2)?,
            value: r.get(3)?,
            collected_on: r.get(4)?,
            recorded_at: r.get(5)?,
            user: r.get(6)?,
            version: r.get::<_, i64>(7)? as u32,
            seq: r.get::<_, i64>(8)? as u64,
        })
    })
    .and_then(|rows| rows.collect())
    .map_err(Error::sqlite(what))
}

fn status_rows(c: &Connection, participant: Option<&str>) -> Result<Vec<StatusRow>> {
    let what = "reading participant status";
    // Two statements, not `?1 IS NULL OR participant = ?1`: that form defeats the
    // primary-key index and made every per-participant lookup a full scan.
    let sql = match participant {
        Some(_) => STATUS_OF_SQL,
        None => {
            "SELECT participant, status, reason, no_further_contact, on_date, seq FROM participant_status
             WHERE ?1 IS NULL ORDER BY participant"
        }
    };
    let mut stmt = c.prepare_cached(sql).map_err(Error::sqlite(what))?;
    stmt.query_map([participant], |r| {
        Ok(StatusRow {
            participant: r.get(0)?,
            status: r.get(1)?,
            reason: r.get(2)?,
            no_further_contact: r.get::<_, i64>(3)? != 0,
            on_date: r.get(4)?,
            seq: r.get::<_, i64>(5)? as u64,
        })
    })
    .and_then(|rows| rows.collect())
    .map_err(Error::sqlite(what))
}

fn participants(c: &Connection) -> Result<Vec<ParticipantRow>> {
    let what = "reading participants";
    let mut stmt = c
        .prepare("SELECT participant, seq, site, stratum, arm, identity, randomised_at FROM participants ORDER BY seq")
        .map_err(Error::sqlite(what))?;
    stmt.query_map([], participant_row).and_then(|rows| rows.collect()).map_err(Error::sqlite(what))
}

/// A `participants` row read as `SELECT participant, seq, site, stratum, arm,
/// identity, randomised_at`.
fn participant_row(r: &rusqlite::Row) -> rusqlite::Result<ParticipantRow> {
    Ok(ParticipantRow {
        participant: r.get(0)?,
        seq: r.get::<_, i64>(1)? as u64,
        site: r.get(2)?,
        stratum: r.get(3)?,
        arm: r.get(4)?,
        identity: r.get(5)?,
        randomised_at: r.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_participant_reads_search_an_index_and_never_scan() {
        // Regression: `?1 IS NULL OR participant = ?1` made each of these a full
        // table scan, so importing n rows cost O(n²).
        let store = Store::in_memory().unwrap();
        for sql in [OUTCOME_SQL, STATUS_OF_SQL, PARTICIPANT_SQL, SUBJECT_SQL] {
            let mut stmt = store.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let args = vec!["P1"; stmt.parameter_count()];
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
            assert!(plan.iter().all(|step| step.starts_with("SEARCH")), "{sql}: {plan:?}");
        }
    }
}
