//! The operations a front end can call: every thing a person can do with a
//! trial, each a function with a plain request and a plain result. The
//! `chancery` command line calls these and nothing else of the library's
//! workings (it parses arguments, resolves the clock and the user, and formats
//! what comes back); the HTTP service to come calls the same functions, so no
//! rule lives in one front end only.
//!
//! | group | operation | request | result |
//! |---|---|---|---|
//! | setting up ([`setup`]) | [`init`] | [`InitRequest`] | [`InitReport`](crate::ledger::InitReport) |
//! | | [`migrate`] | a database path | [`Migrated`] |
//! | randomising ([`randomise`](mod@randomise)) | [`randomise()`] (one or a batch) | [`Referrals`] ([`Referrals::single`], [`Referrals::from_csv`]) in a [`RandomiseRequest`] | [`Randomisation`] |
//! | follow-up ([`follow_up`]) | [`record_outcome`] | [`RecordRequest`] | [`Written`](crate::outcome::Written) |
//! | | [`import_outcomes`] | [`ImportRequest`] (CSV bytes) | [`Imported`] |
//! | | [`correct_outcome`] | [`CorrectTo`] ([`CorrectTo::new`]) in a [`CorrectRequest`] | [`Written`](crate::outcome::Written) |
//! | | [`change_status`] (withdraw, reconsent, lost, died) | [`StatusChangeRequest`] ([`StatusChange`]) | [`Written`](crate::outcome::Written) |
//! | | [`due`] (the follow-up work list) | [`DueRequest`] | [`DueList`] |
//! | reading ([`reading`]) | [`status`] | the trial | [`TrialStatus`] |
//! | | [`participant_site`] | a participant id | the site of its referral, if any |
//! | | [`export`] | [`ExportTable`] | [`Table`](crate::export::Table) (written as CSV or JSON by [`Table::write`](crate::export::Table::write)) |
//! | results ([`results`]) | [`analyse`] | [`AnalyseRequest`] | [`Analysed`] |
//! | | [`report`] | [`ReportRequest`] | [`Reported`] |
//! | auditing ([`audit`]) | [`verify`] | [`VerifyRequest`] | [`Verification`] |
//! | | [`checkpoint`] | [`CheckpointRequest`] | [`Checkpoint`](crate::checkpoint::Checkpoint) |
//! | | [`reveal`] | [`RevealRequest`] | [`Revealed`](crate::ledger::Revealed) |
//! | | [`backup`] | [`BackupRequest`] | [`Backup`](crate::verify::Backup) |
//! | several writes, one commit ([`group`]) | [`in_one_commit`](group::in_one_commit) (the service's writer) | [`Job`](group::Job)s on the open trial | one result per job, after the commit |
//! | accounts ([`accounts`]) | [`accounts::add_account`], [`accounts::change_account`], [`accounts::disable_account`], [`accounts::set_password`] | [`accounts::AddAccountRequest`], [`accounts::ChangeAccountRequest`], [`accounts::AccountRequest`] | [`accounts::AccountSummary`] |
//! | | [`accounts::create_token`], [`accounts::revoke_token`], [`accounts::token_account`] | [`accounts::TokenRequest`], [`accounts::RevokeRequest`], a token | [`accounts::NewToken`], [`accounts::TokenSummary`], an [`Account`](crate::accounts::Account) |
//! | | [`accounts::login`], [`accounts::login_attempt`]; [`accounts::list_accounts`], [`accounts::account`], [`accounts::list_tokens`], [`accounts::access_log`] | [`accounts::LoginRequest`] | an [`Account`](crate::accounts::Account) or [`accounts::LoginRefusal`] |
//! | planning ([`planning`]) | [`power`] | [`PowerRequest`] | [`Power`] |
//! | | [`simulate_allocation`], [`simulate_analysis`] | [`SimulateRequest`] | [`Assessment`](crate::design::Assessment), [`OperatingCharacteristics`](crate::operating::OperatingCharacteristics) |
//! | | [`prepare_demo`], [`run_demo`], [`publish_demo`] | [`DemoRequest`] | [`DemoPlan`], [`DemoRun`], [`DemoPublished`] |
//!
//! How a front end calls them:
//! - An operation on a trial takes the open trial, `&Trial` to read or
//!   `&mut Trial` to write, opened once with [`open`] or [`open_read_only`]:
//!   a long-running service keeps one [`Trial`] per database (its allocation
//!   state and accepted key are reused while nobody else writes), the command
//!   line opens one per command. Operations on the database file as a whole
//!   take its path: [`init`] (which creates it), [`migrate`] (which must run
//!   before it can be opened), [`verify`], [`report`] (which verifies) and
//!   [`backup`] (which open their own read-only connections, pinned to one
//!   moment of the log).
//! - What can be checked without the trial is parsed before it is opened, into
//!   the request's own types ([`Referrals`], [`CorrectTo`],
//!   [`checkpoint_from_text`]), so bad input is refused before any database
//!   is touched and a request that reaches an operation is well formed.
//! - Inputs a person uploads are bytes in memory (a CSV file's bytes and the
//!   name to use for it in messages), never a path; keys are read once with
//!   [`read_trial_key`] or [`read_signing_key`] and passed in.
//! - Every write takes the acting user and a [`Clock`](crate::clock::Clock),
//!   read once inside its transaction; defaults that depend on the trial
//!   (today in the trial's time zone, the date of the log's last entry) are
//!   resolved here, not by the front end.
//! - Nothing here prints: warnings ([`volatile_warning`]) and progress are
//!   data or callbacks, and errors are [`Error`]s whose messages
//!   name the command line's options, as the rest of the library's do.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::keys::{self, TrialKey};
pub use crate::ledger::Trial;

pub mod accounts;
pub mod audit;
pub mod follow_up;
pub mod group;
pub mod planning;
pub mod randomise;
pub mod reading;
pub mod results;
pub mod setup;

pub use audit::{
    BackupRequest, CheckpointRequest, RevealRequest, Verification, VerifyRequest, backup, checkpoint, reveal, verify,
};
pub use follow_up::{
    CorrectRequest, CorrectTo, DueList, DueRequest, ImportRequest, Imported, RecordRequest, StatusChange,
    StatusChangeRequest, change_status, correct_outcome, due, import_outcomes, record_outcome,
};
pub use planning::{
    DemoPlan, DemoPublished, DemoRequest, DemoRun, Power, PowerDesign, PowerOptions, PowerRequest, SimulateRequest,
    power, prepare_demo, publish_demo, run_demo, simulate_allocation, simulate_analysis,
};
pub use randomise::{Randomisation, RandomiseRequest, Referrals, randomise};
pub use reading::{ExportTable, TrialStatus, export, participant_site, status};
pub use results::{AnalyseRequest, Analysed, ReportRequest, Reported, analyse, report};
pub use setup::{InitRequest, Migrated, init, migrate};

/// The bundled protocol (work-health-ips), used when none is given, so that
/// `chancery demo`, `power` and `simulate` work from any folder.
pub const DEFAULT_PROTOCOL: &str = include_str!("../../protocol/work-health-ips.toml");

/// Opens a trial for the operations that write.
pub fn open(db: &Path) -> Result<Trial> {
    Trial::open(db)
}

/// Opens a trial for the operations that only read (an auditor's read-only
/// copy can be read).
pub fn open_read_only(db: &Path) -> Result<Trial> {
    Trial::open_read_only(db)
}

/// A warning to show before writing to `db` if it is on a memory-backed
/// filesystem, which a restart empties; `None` on a disk.
pub fn volatile_warning(db: &Path) -> Option<String> {
    crate::store::volatile_warning(db)
}

/// The trial key file: the one given, else `<db>.key`.
pub fn key_path(db: &Path, given: Option<&Path>) -> PathBuf {
    given.map_or_else(|| keys::default_key_path(db), Path::to_path_buf)
}

/// Reads the trial key file (seed and identity secret), refusing one that
/// others can read.
pub fn read_trial_key(path: &Path) -> Result<TrialKey> {
    TrialKey::read(path)
}

/// Reads the signing key that belongs with the trial key file `key`
/// (`<key>.signing`).
pub fn read_signing_key(key: &Path) -> Result<ed25519_dalek::SigningKey> {
    keys::read_signing_key(&keys::signing_key_path(key))
}

/// The allocation seed from a trial key file, for an auditor who holds it.
pub fn seed_from_key_file(path: &Path) -> Result<[u8; 32]> {
    Ok(TrialKey::read(path)?.seed)
}

/// A signed checkpoint from its text; `name` (the file it came from) names
/// it in messages and in the verification's report.
pub fn checkpoint_from_text(name: &str, text: &str) -> Result<(String, crate::checkpoint::Checkpoint)> {
    let c = crate::checkpoint::Checkpoint::parse(text).map_err(|m| Error::Input(format!("checkpoint {name}: {m}")))?;
    Ok((name.to_string(), c))
}
