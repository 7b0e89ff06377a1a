//! Auditing: checking the trial's records ([`verify`]), signing a statement
//! of the log's length and head ([`checkpoint`]), publishing the seed when
//! recruitment closes ([`reveal`]) and copying a live database safely
//! ([`backup`]).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::checkpoint::Checkpoint;
use crate::clock::Clock;
use crate::error::Result;
use crate::keys::TrialKey;
use crate::ledger::{Revealed, Trial};
use crate::outfile::Overwrite;
use crate::verify::{Backup, VerifyOptions};

/// What [`verify`] needs besides the database.
#[derive(Debug, Clone, Default)]
pub struct VerifyRequest {
    /// The allocation seed, if the auditor holds it (from the key file,
    /// [`super::seed_from_key_file`], or as given): every allocation is then
    /// re-derived (after a reveal, the revealed seed is used without it).
    pub seed: Option<[u8; 32]>,
    /// Signed checkpoints the log must extend, each with where it came from
    /// ([`super::checkpoint_from_text`]).
    pub checkpoints: Vec<(String, Checkpoint)>,
}

/// What [`verify`] found.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Every check, in order, with the log's length and head.
    pub report: crate::verify::Report,
    /// Why the trial fails verification, naming the first failing check and
    /// the entry it names; `None` if every check that could run passed.
    pub failure: Option<String>,
}

/// Checks the trial's records: the log's chain, the tables against a replay
/// of the log, unique participants, checkpoints, the seed commitment and
/// (with the seed, or after the reveal) every allocation; then SQLite's own
/// check. The database is read only. A failed check is a result, not an
/// error: the report says which.
pub fn verify(db: &Path, request: &VerifyRequest) -> Result<Verification> {
    let report = crate::verify::verify(&VerifyOptions {
        db: db.to_path_buf(),
        seed: request.seed,
        checkpoints: request.checkpoints.clone(),
        scratch_dir: std::env::temp_dir(),
    })?;
    let failure = report.first_failure().map(|c| match c.seq {
        Some(seq) => format!("verification failed at log entry {seq}: {} check: {}", c.name, c.message),
        // A check of the file rather than of an entry (the schema).
        None => format!("verification failed: {} check: {}", c.name, c.message),
    });
    Ok(Verification { report, failure })
}

/// What [`checkpoint`] needs besides the trial and its signing key.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointRequest {
    /// The clock: the checkpoint's time.
    pub clock: Clock,
}

/// Signs a statement of the log's length and head, now, to hand to the data
/// monitoring committee, the registry or a site. Refuses a signing key that
/// is not the trial's.
pub fn checkpoint(
    trial: &Trial,
    signing: &ed25519_dalek::SigningKey,
    request: &CheckpointRequest,
) -> Result<Checkpoint> {
    trial.checkpoint(signing, request.clock.read())
}

/// What [`reveal`] needs besides the trial and its key.
#[derive(Debug, Clone)]
pub struct RevealRequest {
    /// Why the seed is revealed now.
    pub reason: String,
    /// The acting user.
    pub user: String,
    /// The clock.
    pub clock: Clock,
}

/// Publishes the allocation seed in the log: from then on anyone can
/// re-derive every allocation, and randomisation is refused.
pub fn reveal(trial: &mut Trial, key: &TrialKey, request: &RevealRequest) -> Result<Revealed> {
    trial.reveal(key, &request.reason, &request.user, request.clock)
}

/// What [`backup`] needs besides the database.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    /// The new copy.
    pub to: PathBuf,
    /// Replace an existing copy there.
    pub force: bool,
}

/// Copies a live trial database (SQLite's online backup, consistent while
/// coordinators write), verifies the copy and keeps it only if it verifies.
pub fn backup(db: &Path, request: &BackupRequest) -> Result<Backup> {
    crate::verify::backup(db, &request.to, Overwrite::forced(request.force))
}
