//! The trial ledger: creating a trial, randomising referrals, and reading its
//! state, each write as one transaction of one or more log events.
//!
//! This is where a trial's writes are made; front ends reach it through
//! [`crate::operations`], not directly. It screens referrals
//! ([`crate::referral`]), allocates ([`crate::allocation`]), records events in
//! the hash-chained log ([`crate::log`]) and derives the tables from them in
//! the same transaction (`apply`, which replay during verification reuses).
//!
//! Which file holds what:
//! - `mod.rs`: [`Trial`]: opening it (its trial row checked against log entry
//!   0), the key check, `checkpoint` and `reveal`; the user-name check and the
//!   error listing a batch's bad records.
//! - `create.rs`: creating a trial ([`init`]) and [`migrate`].
//! - `randomise.rs`: [`Trial::randomise`], the randomisation pipeline: a
//!   `Preparer` (screening, identity hash, allocation, the event's canonical
//!   data; from 512 referrals on a second thread) feeding a `Writer` in input
//!   order, and the allocation-state rows a batch changed.
//! - `apply.rs`: `append` (an entry built, chained and appended) and `apply`
//!   (an event's derived-table writes, shared by live writes and verify's
//!   replay through the `Sink` trait); the allocation state loaded from and
//!   flushed to its tables.
//! - `accounts.rs`: accounts and API tokens on a [`Trial`] (each change one
//!   transaction and one log event; password and token hashes kept beside
//!   the log, never in it), logging in with its lockout, and the account
//!   events' derived rows (`apply`'s part for them).
//! - `status.rs`: [`Trial::status`], the counts by status, arm, site and stratum.

use std::collections::HashSet;
use std::path::Path;

use serde::Serialize;

use crate::allocation::{self, State};
use crate::clock::{Clock, Timestamp};
use crate::error::{Error, Result};
use crate::event::{Event, SeedRevealed};
use crate::identity::IdentityHasher;
use crate::keys::{self, TrialKey};
use crate::log::Entry;
use crate::protocol::Protocol;
use crate::store::{Head, Store, TrialRow, Tx};

mod accounts;
mod apply;
mod create;
mod randomise;
mod status;

pub(crate) use accounts::AccountSink;
pub(crate) use accounts::account_of;
pub use accounts::{
    LOCKOUT, Lockout, LoginRefusal, NAME_MAX_CHARS, PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS, PasswordCheck,
    TOKEN_DAYS_DEFAULT, TOKEN_DAYS_MAX, TOKEN_PREFIX, check_account_name, check_password, grant, hash_password,
};
pub(crate) use apply::{Sink, append, apply, flush_state, load_state, parse_stratum};
pub use create::{InitOptions, InitReport, init, migrate};
pub use randomise::Confirmation;
pub use status::Status;

/// What `reveal` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Revealed {
    /// Sequence number of the `seed_revealed` entry.
    pub seq: u64,
    /// Its hash.
    pub entry_hash: String,
    /// Log length after the reveal.
    pub log_length: u64,
    /// Log head after the reveal.
    pub head: String,
}

/// An open trial.
pub struct Trial {
    pub(crate) store: Store,
    pub(crate) protocol: Protocol,
    pub(crate) row: TrialRow,
    /// The allocation state as this handle's last randomisation left it, with
    /// the log head it belongs to. The state is a function of the log, so it is
    /// reused only while the head read inside a new transaction is that same
    /// head (nobody else has written since); otherwise it is loaded afresh.
    /// Kept because loading it costs more than the rest of a randomisation's
    /// own work: 167,000 → 284,000 instructions a call without it
    /// (`valgrind --tool=callgrind`, `timing one 300`; BENCHMARKS.md).
    cached_state: Option<(Head, State)>,
    /// The last key this handle accepted and its identity hasher, so that
    /// randomising one referral at a time does not derive them again.
    accepted_key: Option<(TrialKey, IdentityHasher)>,
    /// The permuted blocks this handle's allocations generated, kept for the
    /// next ones (a cache: allocations are the same without it; what it buys
    /// is measured at [`allocation::Blocks`]).
    blocks: allocation::Blocks,
}

/// Checks that the trial row is the one the log's entry 0 derives: the
/// `trial` table is an editable copy, and writers screen, allocate and check
/// keys by it, so a protocol or commitment edited there must not be used
/// (an edited age rule once let an ineligible referral be randomised).
fn check_trial_row(store: &Store, row: &TrialRow, db: &Path) -> Result<()> {
    let verify = format!("run `chancery verify --db {}`", db.display());
    let entry0 = store
        .log_row_at(0)?
        .ok_or_else(|| Error::Integrity(format!("{} has a trial record but no log entry 0; {verify}", db.display())))?;
    let created = match Entry::check(&entry0.body).and_then(|e| e.event()) {
        Ok(Event::TrialCreated(t)) => t,
        _ => return Err(Error::Integrity(format!("log entry 0 is not a readable trial_created entry; {verify}"))),
    };
    let short = |h: &str| h.get(..16).unwrap_or(h).to_string();
    use sha2::Digest as _;
    let text_hash = hex::encode(sha2::Sha256::digest(row.protocol.as_bytes()));
    if text_hash != created.protocol_sha256 || row.protocol_sha256 != created.protocol_sha256 {
        return Err(Error::Integrity(format!(
            "the database's trial table was altered: its protocol (sha256 {}…) is not the one log entry 0 commits to (sha256 {}…); nothing was done, {verify}",
            short(&text_hash),
            short(&created.protocol_sha256)
        )));
    }
    let differing = [
        ("trial_id", row.trial_id == created.trial),
        ("title", row.title == created.title),
        ("seed_commitment", row.seed_commitment == created.seed_commitment),
        ("signing_public_key", row.signing_public_key == created.signing_public_key),
        ("key_origin", row.key_origin == created.key_origin),
        ("created_at", row.created_at == entry0.ts),
    ]
    .into_iter()
    .find(|(_, same)| !same);
    if let Some((column, _)) = differing {
        return Err(Error::Integrity(format!(
            "the database's trial table was altered: its {column} is not the one log entry 0 records; nothing was done, {verify}"
        )));
    }
    Ok(())
}

/// Checks a user name for the log.
pub fn check_user(user: &str) -> Result<()> {
    crate::text::user(user).map_err(Error::Input)
}

impl Trial {
    /// Opens an existing trial.
    pub fn open(db: &Path) -> Result<Trial> {
        Trial::with_store(db, Store::open(db)?)
    }

    /// Opens an existing trial for reading only: every command that writes
    /// nothing uses it, so that an auditor's read-only copy can be read.
    pub fn open_read_only(db: &Path) -> Result<Trial> {
        Trial::with_store(db, Store::open_read_only(db)?)
    }

    fn with_store(db: &Path, store: Store) -> Result<Trial> {
        let row = store.trial()?.ok_or_else(|| {
            Error::Integrity(format!("{} has no trial record; it was not created by `chancery init`", db.display()))
        })?;
        check_trial_row(&store, &row, db)?;
        let protocol = Protocol::parse_recorded(&format!("{} (stored protocol)", db.display()), &row.protocol)?;
        Ok(Trial {
            store,
            protocol,
            row,
            cached_state: None,
            accepted_key: None,
            blocks: allocation::Blocks::default(),
        })
    }

    /// The trial's protocol, as stored at `init`.
    pub fn protocol(&self) -> &Protocol {
        &self.protocol
    }

    /// The trial's record.
    pub fn record(&self) -> &TrialRow {
        &self.row
    }

    /// The store, for reading.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Checks that a key belongs to this trial: its seed opens the commitment.
    pub fn check_key(&self, key: &TrialKey) -> Result<()> {
        if keys::seed_commitment(&key.seed) != self.row.seed_commitment || key.trial != self.row.trial_id {
            return Err(Error::Key(format!(
                "the key file is not this trial's key (its seed does not open trial {:?}'s commitment); give the right --key",
                self.row.trial_id
            )));
        }
        Ok(())
    }

    /// The identity hasher under `key`, once `key` is known to be this trial's
    /// (the last accepted key's, if it is byte for byte the same key).
    fn identity_hasher(&mut self, key: &TrialKey) -> Result<IdentityHasher> {
        if let Some((accepted, hasher)) = &self.accepted_key
            && accepted.seed == key.seed
            && accepted.identity_secret == key.identity_secret
            && accepted.trial == key.trial
        {
            return Ok(hasher.clone());
        }
        self.check_key(key)?;
        let hasher = IdentityHasher::new(&key.identity_key());
        self.accepted_key = Some((key.clone(), hasher.clone()));
        Ok(hasher)
    }

    /// Signs a checkpoint of the log as it stands: its length and head, now.
    /// Refuses a signing key that is not the one whose public half is in the
    /// trial's first log entry.
    pub fn checkpoint(
        &self,
        signing: &ed25519_dalek::SigningKey,
        now: Timestamp,
    ) -> Result<crate::checkpoint::Checkpoint> {
        if hex::encode(signing.verifying_key().to_bytes()) != self.row.signing_public_key {
            return Err(Error::Key(format!(
                "the signing key is not trial {:?}'s (its public key differs from the one in log entry 0); give the right --key",
                self.row.trial_id
            )));
        }
        let head = self.store.head()?;
        Ok(crate::checkpoint::Checkpoint::sign(&self.row.trial_id, head.len, &head.hash, now, signing))
    }

    /// Reveals the seed: appends `seed_revealed` with the seed and the reason.
    /// From then on anyone can re-derive every allocation from the log alone,
    /// and [`Trial::randomise`] is refused.
    pub fn reveal(&mut self, key: &TrialKey, reason: &str, user: &str, clock: impl Into<Clock>) -> Result<Revealed> {
        self.check_key(key)?;
        check_user(user)?;
        let reason = crate::text::reason("--reason", reason).map_err(Error::Input)?;
        let tx = self.store.transaction()?;
        refuse_if_revealed(&tx)?;
        let mut head = tx.head()?;
        let now = clock.into().stamp(head.ts.as_deref())?;
        let mut state = load_state(&tx, &self.protocol)?;
        let event = Event::SeedRevealed(SeedRevealed { seed: hex::encode(key.seed), reason: reason.to_string() });
        let (seq, hash) = append(&tx, &self.protocol, &mut state, &mut head, &event, user, now)?;
        tx.commit()?;
        Ok(Revealed { seq, entry_hash: hash, log_length: head.len, head: head.hash })
    }
}

/// Refuses a write that would allocate after the seed was revealed.
fn refuse_if_revealed(tx: &Tx) -> Result<()> {
    match tx.revealed()? {
        Some((seq, ts)) => Err(Error::Refused(format!(
            "the allocation seed was revealed at {ts} (log entry {seq}), so randomisation is closed: allocations made now would be predictable"
        ))),
        None => Ok(()),
    }
}

pub(crate) fn batch_error(total: usize, problems: Vec<String>) -> Error {
    if total == 1 && problems.len() == 1 {
        let only = problems.into_iter().next().unwrap_or_default();
        // A single record from the command line: its origin ("referral",
        // "outcome") is noise. A file's one row keeps its `file:line`.
        let msg = match only.split_once(": ") {
            Some((origin, m)) if !origin.contains(':') => m.to_string(),
            _ => only,
        };
        return Error::Input(format!("{msg}; nothing was written"));
    }
    let n = problems.len();
    let mut seen = HashSet::new();
    let lines: Vec<String> = problems.into_iter().filter(|p| seen.insert(p.clone())).collect();
    Error::Input(format!(
        "{n} of {total} records are invalid, so none was written; correct them and submit the file again:\n  {}",
        lines.join("\n  ")
    ))
}
