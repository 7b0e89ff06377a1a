//! The SQLite store: the only module that talks to the database.
//!
//! **Only the store talks to SQLite**: no other module holds a connection,
//! a statement or SQL text, so every read and write of a trial's file is here.
//! (Verification's digests read rows as SQLite holds them, `rusqlite`'s
//! borrowed values, so they need not be copied; the queries are still here.)
//!
//! One file holds the append-only log and the tables derived from it. Every
//! write is one `BEGIN IMMEDIATE` transaction (WAL, `synchronous=FULL`), so a
//! committed allocation survives power loss and concurrent coordinators queue
//! rather than fail; in a group of writes committed together
//! ([`Store::begin_group`]) each is a savepoint of the group's transaction. `application_id` and `user_version` identify the file and
//! its schema; anything else is refused on open.
//!
//! Which file holds what:
//! - `mod.rs`: [`Store`] and [`Tx`] and the rows they read and write.
//! - `schema.rs`: the schema's SQL, its version, what verification compares it
//!   with ([`Store::expected_schema`]), and [`Store::migrate`] from an older one.
//! - `open.rs`: opening and creating a file (for writing, for reading only,
//!   for an auditor, a scratch or in-memory replay database) and the checks
//!   made first (a network or memory-backed filesystem, a file that is not
//!   chancery's or is of another schema).
//! - `transaction.rs`: the write transaction: the log append and the
//!   derived-table writes `ledger::apply` makes (the `ledger::Sink` of a live
//!   trial), the deferred identities of a batch, commit and rollback, and
//!   groups of writes (savepoints in one transaction).
//! - `reads.rs`: what the operations read: the log's head, the trial row,
//!   referrals, participants, outcomes, statuses, and a write's look-ups of
//!   one participant and of the allocation state.
//! - `dataset.rs`: the analysis dataset's reads: outcome values and
//!   randomising entries borrowed from SQLite's rows, a read snapshot, a
//!   second reader for another thread.
//! - `accounts.rs`: the accounts' tables: `accounts` and `tokens` (derived
//!   from the log), `credentials`, `token_secrets` and `access_log` (not).
//! - `audit.rs`: verification's reads: the log streamed, the derived tables
//!   row by row and compared with a replay, uniqueness, SQLite's integrity
//!   check, and the backup.

use std::cell::{Cell, RefCell};

use rusqlite::Connection;

mod accounts;
mod audit;
mod dataset;
mod open;
mod reads;
mod schema;
mod transaction;

pub use accounts::{AccessRow, AccountRow, Credential, TokenRow};
pub use audit::TableDiff;
pub(crate) use audit::sql_order_ref;
pub use dataset::{RandomisingRow, ReadSnapshot, StoredOutcome};
pub use open::{BUSY_TIMEOUT_MS, memory_filesystem, network_filesystem, volatile_warning};
pub use schema::{APPLICATION_ID, DERIVED_TABLES, LOG_OBJECTS, SCHEMA_VERSION, SchemaObject, normalise_sql};

/// The end of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Number of entries.
    pub len: u64,
    /// Hash of the last entry (the genesis `prev` when empty).
    pub hash: String,
    /// Timestamp of the last entry, if any.
    pub ts: Option<String>,
}

/// A stored log row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// Sequence number (the row key).
    pub seq: u64,
    /// Timestamp column.
    pub ts: String,
    /// Type column.
    pub kind: String,
    /// Stored hash.
    pub hash: String,
    /// Stored canonical bytes.
    pub body: String,
}

/// A stored log row borrowed from SQLite's row buffer (see [`Store::each_log_row_ref`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRowRef<'a> {
    /// Sequence number (the row key).
    pub seq: u64,
    /// Timestamp column.
    pub ts: &'a str,
    /// Type column.
    pub kind: &'a str,
    /// Stored hash.
    pub hash: &'a str,
    /// Stored canonical bytes.
    pub body: &'a str,
}

/// A referral row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferralRow {
    /// Participant id.
    pub participant: String,
    /// Log entry.
    pub seq: u64,
    /// Site.
    pub site: String,
    /// `randomised`, `ineligible` or `declined`.
    pub status: String,
    /// Failed rule ids, comma-separated.
    pub reasons: String,
    /// Timestamp.
    pub screened_at: String,
}

/// A referrals row borrowed from SQLite's row buffer (see
/// [`Store::for_each_referral`]); the fields of [`ReferralRow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferralRef<'a> {
    /// Participant id.
    pub participant: &'a str,
    /// Log entry.
    pub seq: u64,
    /// Site.
    pub site: &'a str,
    /// `randomised`, `ineligible` or `declined`.
    pub status: &'a str,
    /// Failed rule ids, comma-separated.
    pub reasons: &'a str,
    /// Timestamp.
    pub screened_at: &'a str,
}

/// A randomised participant row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantRow {
    /// Participant id.
    pub participant: String,
    /// Log entry of the allocation.
    pub seq: u64,
    /// Site.
    pub site: String,
    /// Stratum as used at randomisation.
    pub stratum: String,
    /// Arm id.
    pub arm: String,
    /// Keyed identity hash.
    pub identity: String,
    /// Timestamp of randomisation.
    pub randomised_at: String,
}

/// A current outcome value (`outcomes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeRow {
    /// Participant id.
    pub participant: String,
    /// Timepoint id.
    pub timepoint: String,
    /// Outcome name.
    pub field: String,
    /// Canonical value text.
    pub value: String,
    /// Date the value was collected (YYYY-MM-DD).
    pub collected_on: String,
    /// When it was recorded (log time).
    pub recorded_at: String,
    /// Who recorded it.
    pub user: String,
    /// 1 for the first value, +1 per correction.
    pub version: u32,
    /// Log entry of the latest change.
    pub seq: u64,
}

/// A referral as written to `referrals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewReferral<'a> {
    /// Participant id.
    pub participant: &'a str,
    /// Log entry.
    pub seq: u64,
    /// Site.
    pub site: &'a str,
    /// `randomised`, `ineligible` or `declined`.
    pub status: &'a str,
    /// Failed rule ids, comma-separated.
    pub reasons: &'a str,
    /// Timestamp.
    pub screened_at: &'a str,
    /// A randomised referral's stratum, arm and keyed identity hash.
    pub randomised: Option<(&'a str, &'a str, &'a str)>,
}

/// A current outcome value as written to `outcomes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewOutcome<'a> {
    /// Participant id.
    pub participant: &'a str,
    /// Timepoint id.
    pub timepoint: &'a str,
    /// Outcome name.
    pub field: &'a str,
    /// Canonical value text.
    pub value: &'a str,
    /// Date the value was collected (YYYY-MM-DD).
    pub collected_on: &'a str,
    /// 1 for the first value, +1 per correction.
    pub version: u32,
    /// Log entry of the latest change.
    pub seq: u64,
}

/// One change to an outcome, as read from the log (`Trial::history`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// Log entry.
    pub seq: u64,
    /// Participant id.
    pub participant: String,
    /// Timepoint id.
    pub timepoint: String,
    /// Outcome name.
    pub field: String,
    /// `recorded` or `corrected`.
    pub change: String,
    /// Value before (corrections).
    pub old_value: Option<String>,
    /// Value after.
    pub new_value: String,
    /// Collection date.
    pub collected_on: String,
    /// Who.
    pub user: String,
    /// When (log time).
    pub at: String,
    /// Why (corrections).
    pub reason: Option<String>,
}

/// A randomised participant as the follow-up rules see them ([`Tx::subject`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectRow {
    /// Timestamp of randomisation.
    pub randomised_at: String,
    /// Withdrawn with no further contact.
    pub no_further_contact: bool,
    /// Current values: (timepoint, field, value, collected on).
    pub current: Vec<(String, String, String, String)>,
    /// The follow-up status and its date, if not active.
    pub status: Option<(String, String)>,
}

/// A participant's follow-up status (`participant_status`); absent means active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    /// Participant id.
    pub participant: String,
    /// `withdrawn`, `lost` or `died`.
    pub status: String,
    /// Why.
    pub reason: String,
    /// The participant asked for no further contact (at a withdrawal) and
    /// has not renewed consent since, whatever status followed.
    pub no_further_contact: bool,
    /// Date of the change.
    pub on_date: String,
    /// The log entry that last changed the row (a status change, or the
    /// renewed consent that lifted the request).
    pub seq: u64,
}

/// A row of `allocation_streams`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRow {
    /// Block number.
    pub block: u64,
    /// Block start word.
    pub start_word: u64,
    /// Allocations used from the block.
    pub used: u32,
    /// Next word (simple and minimisation streams).
    pub next_word: u64,
}

/// The trial's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialRow {
    /// Trial id.
    pub trial_id: String,
    /// Title.
    pub title: String,
    /// Protocol text.
    pub protocol: String,
    /// Protocol hash.
    pub protocol_sha256: String,
    /// Seed commitment.
    pub seed_commitment: String,
    /// Checkpoint public key.
    pub signing_public_key: String,
    /// `random` or `given`.
    pub key_origin: String,
    /// Creation time.
    pub created_at: String,
}

/// An open chancery database.
pub struct Store {
    conn: Connection,
    /// While a group of writes runs ([`Store::begin_group`]): its one
    /// `BEGIN IMMEDIATE` transaction is open and each [`Store::transaction`]
    /// is a savepoint in it. Set once a write in the group could not be
    /// undone alone, so the group is rolled back whole.
    group: Option<Cell<bool>>,
}

/// A write transaction (`BEGIN IMMEDIATE`, or in a group a savepoint);
/// dropped without `commit`, it rolls back (to its savepoint).
///
/// Written here rather than taken from `rusqlite::Transaction`, which runs
/// `BEGIN` and `COMMIT` through `execute_batch`: SQLite then parses both
/// statements again on every transaction (about 10,000 instructions, a few
/// microseconds of each single randomisation). These are prepared once and
/// kept in the connection's statement cache.
pub struct Tx<'a> {
    tx: &'a Connection,
    /// In a group: the group's flag that it must be rolled back whole, and
    /// whether this transaction's savepoint is still open.
    group: Option<(&'a Cell<bool>, bool)>,
    /// `identities` rows held back until [`Tx::flush_identities`], when
    /// deferred (`None`: written at once).
    pending_identities: RefCell<Option<Vec<(String, String, u64)>>>,
    /// The log and referral inserts, taken from the statement cache once and
    /// held until the transaction ends: a batch runs each once a referral,
    /// and taking a statement from rusqlite's cache and handing it back
    /// (hashing its text, clearing its bindings) cost a sixth of writing one.
    log_insert: Held<'a>,
    referral_insert: Held<'a>,
}

/// A statement held by a transaction, prepared when first used.
type Held<'a> = RefCell<Option<rusqlite::CachedStatement<'a>>>;
