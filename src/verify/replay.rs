//! Where one verification's replay writes ([`Replay`], the
//! [`ledger::Sink`] `ledger::apply` writes through): in the exact form the
//! scratch database; in the digest form the digests of the `DIGESTED`
//! tables, the scratch database holding the rest. And the scratch database's
//! temporary file.

use std::path::{Path, PathBuf};

use super::digest::{Cell, RowHasher, Sums, digested, text};
use super::open_pinned;
use crate::error::{Error, Result};
use crate::ledger;
use crate::store::{AccountRow, Head, NewOutcome, NewReferral, StatusRow, Store, StreamRow, TokenRow, TrialRow, Tx};

/// Where one verification's replay writes: in the exact form, the scratch
/// database; in the digest form, the digests of the `DIGESTED` tables, with
/// the scratch database for the rest.
pub(super) struct Replay<'t, 'c> {
    pub(super) scratch: &'t Tx<'c>,
    digest: Option<std::cell::RefCell<ReplayDigest>>,
    /// The live database, opened when a follow-up event first needs it,
    /// pinned to the state verification reads.
    db: &'t Path,
    pinned: &'t Head,
    live: std::cell::RefCell<Option<Store>>,
}

struct ReplayDigest {
    hasher: RowHasher,
    sums: Sums,
    trial: Option<TrialRow>,
    revealed: Option<(u64, String)>,
}

impl<'t, 'c> Replay<'t, 'c> {
    pub(super) fn new(scratch: &'t Tx<'c>, key: Option<&[u8; 32]>, db: &'t Path, pinned: &'t Head) -> Replay<'t, 'c> {
        let digest = key.map(|key| {
            std::cell::RefCell::new(ReplayDigest {
                hasher: RowHasher::new(key),
                sums: Sums::default(),
                trial: None,
                revealed: None,
            })
        });
        Replay { scratch, digest, db, pinned, live: std::cell::RefCell::new(None) }
    }

    /// The replayed digests, the trial row folded in as the last entry left it.
    pub(super) fn finish(self) -> Option<Sums> {
        let mut d = self.digest?.into_inner();
        if let Some(t) = d.trial.take() {
            let (seq, at) = match &d.revealed {
                Some((seq, at)) => (Cell::Int(*seq as i64), text(at)),
                None => (Cell::Null, Cell::Null),
            };
            let h = d.hasher.hash(
                digested("trial"),
                [
                    Cell::Int(1),
                    text(&t.trial_id),
                    text(&t.title),
                    text(&t.protocol),
                    text(&t.protocol_sha256),
                    text(&t.seed_commitment),
                    text(&t.signing_public_key),
                    text(&t.key_origin),
                    text(&t.created_at),
                    seq,
                    at,
                ],
            );
            d.sums[digested("trial")].add(&h);
        }
        Some(d.sums)
    }

    fn fold<'x>(&self, table: &str, cells: impl IntoIterator<Item = Cell<'x>>) -> bool {
        match &self.digest {
            Some(d) => {
                let mut d = d.borrow_mut();
                let t = digested(table);
                let h = d.hasher.hash(t, cells);
                d.sums[t].add(&h);
                true
            }
            None => false,
        }
    }

    /// Whether an entry before `seq` randomised `participant`: in the scratch
    /// database, or in the digest form the live `participants` view of `referrals` (the
    /// digests then show that table to be the replay's, whose rows are inserted
    /// at their entry's seq and never change).
    pub(super) fn randomised_before(&self, participant: &str, seq: u64) -> Result<bool> {
        if self.digest.is_none() {
            return Ok(self.scratch.participant(participant)?.is_some());
        }
        let mut live = self.live.borrow_mut();
        let live = match &mut *live {
            Some(l) => l,
            None => live.insert(
                open_pinned(self.db, self.pinned)?
                    .ok_or_else(|| Error::Integrity("the database changed while it was read; verify again".into()))?,
            ),
        };
        Ok(live.participant_seq(participant)?.is_some_and(|s| s >= 0 && (s as u64) < seq))
    }
}

impl ledger::Sink for Replay<'_, '_> {
    fn insert_trial(&self, t: &TrialRow) -> Result<()> {
        match &self.digest {
            Some(d) => {
                let mut d = d.borrow_mut();
                if d.trial.is_some() {
                    return Err(Error::Integrity("a second trial row".into()));
                }
                d.trial = Some(t.clone());
                Ok(())
            }
            None => self.scratch.insert_trial(t),
        }
    }
    fn insert_referral(&self, r: &NewReferral) -> Result<()> {
        let (stratum, arm, identity) = match r.randomised {
            Some((stratum, arm, identity)) => (text(stratum), text(arm), text(identity)),
            None => (Cell::Null, Cell::Null, Cell::Null),
        };
        let cells = [
            text(r.participant),
            Cell::Int(r.seq as i64),
            text(r.site),
            text(r.status),
            text(r.reasons),
            text(r.screened_at),
            stratum,
            arm,
            identity,
        ];
        if !self.fold("referrals", cells) {
            return self.scratch.insert_referral(r);
        }
        if let Some((_, _, identity)) = r.randomised {
            self.fold("identities", [text(identity), text(r.participant), Cell::Int(r.seq as i64)]);
        }
        Ok(())
    }
    fn set_revealed(&self, seq: u64, ts: &str) -> Result<()> {
        match &self.digest {
            Some(d) => {
                let mut d = d.borrow_mut();
                // As the UPDATE does: nothing without a trial row, the last reveal kept.
                if d.trial.is_some() {
                    d.revealed = Some((seq, ts.to_string()));
                }
                Ok(())
            }
            None => self.scratch.set_revealed(seq, ts),
        }
    }
    fn insert_outcomes(
        &self,
        participant: &str,
        timepoint: &str,
        collected_on: &str,
        seq: u64,
        values: &[(&str, &str)],
    ) -> Result<()> {
        self.scratch.insert_outcomes(participant, timepoint, collected_on, seq, values)
    }
    fn outcome(&self, participant: &str, timepoint: &str, field: &str) -> Result<Option<(String, String, u32)>> {
        self.scratch.outcome(participant, timepoint, field)
    }
    fn update_outcome(&self, o: &NewOutcome) -> Result<()> {
        self.scratch.update_outcome(o)
    }
    fn status(&self, participant: &str) -> Result<Option<StatusRow>> {
        self.scratch.status_of(participant)
    }
    fn put_status(&self, st: &StatusRow) -> Result<()> {
        self.scratch.put_status(st)
    }
    fn put_stream(&self, stream: &str, row: StreamRow) -> Result<()> {
        let cells = [
            text(stream),
            Cell::Int(row.block as i64),
            Cell::Int(row.start_word as i64),
            Cell::Int(row.used as i64),
            Cell::Int(row.next_word as i64),
        ];
        if self.fold("allocation_streams", cells) { Ok(()) } else { self.scratch.put_stream(stream, row) }
    }
    fn put_count(&self, factor: usize, level: usize, arm: usize, n: u64) -> Result<()> {
        let cells = [Cell::Int(factor as i64), Cell::Int(level as i64), Cell::Int(arm as i64), Cell::Int(n as i64)];
        if self.fold("allocation_counts", cells) { Ok(()) } else { self.scratch.put_count(factor, level, arm, n) }
    }
}

// The account tables are replayed into the scratch database in both forms:
// their rows change in place (a change, a disabling, a revocation).
impl ledger::AccountSink for Replay<'_, '_> {
    fn account(&self, name: &str) -> Result<Option<AccountRow>> {
        self.scratch.account(name)
    }
    fn put_account(&self, a: &AccountRow) -> Result<()> {
        self.scratch.put_account(a)
    }
    fn token(&self, id: &str) -> Result<Option<TokenRow>> {
        self.scratch.token(id)
    }
    fn put_token(&self, t: &TokenRow) -> Result<()> {
        self.scratch.put_token(t)
    }
}

/// A temporary file removed (with SQLite's side files) when dropped.
pub(super) struct ScratchFile(pub(super) PathBuf);

impl ScratchFile {
    pub(super) fn new(dir: &Path) -> Result<ScratchFile> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let path = dir.join(format!("chancery-verify-{}-{nanos}.db", std::process::id()));
        if path.exists() {
            return Err(Error::Refused(format!("{} already exists", path.display())));
        }
        Ok(ScratchFile(path))
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let mut p = self.0.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
    }
}
