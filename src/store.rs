//! The SQLite store: the only module that talks to the database.
//!
//! One file holds the append-only log and the tables derived from it. Every
//! write is one `BEGIN IMMEDIATE` transaction (WAL, `synchronous=FULL`), so a
//! committed allocation survives power loss and concurrent coordinators queue
//! rather than fail. `application_id` and `user_version` identify the file and
//! its schema; anything else is refused on open.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::error::{Error, Result};

/// `application_id` of a chancery database: "CHNC".
pub const APPLICATION_ID: i32 = 0x4348_4E43;
/// The schema version this build writes and reads. Version 2 keeps the
/// derived tables in their primary keys' B-trees (`WITHOUT ROWID`) and leaves
/// an outcome's recording time and user in its log entry (they were copied
/// into every `outcomes` row in version 1); version 4 keeps a request for no
/// further contact in `participant_status` through later status changes
/// (version 3 kept only the latest change's); [`Store::migrate`] brings an
/// older file to this version.
pub const SCHEMA_VERSION: i32 = 4;
/// Page cache of the connections verification uses (KiB): small and fixed, so
/// memory does not grow with the log.
const AUDIT_CACHE_KIB: i64 = 8_192;
/// How long a writer waits for another coordinator's transaction.
pub const BUSY_TIMEOUT_MS: u64 = 30_000;

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
}

/// A write transaction (`BEGIN IMMEDIATE`); dropped without `commit`, it rolls back.
///
/// Written here rather than taken from `rusqlite::Transaction`, which runs
/// `BEGIN` and `COMMIT` through `execute_batch`: SQLite then parses both
/// statements again on every transaction (about 10,000 instructions, a few
/// microseconds of each single randomisation). These are prepared once and
/// kept in the connection's statement cache.
pub struct Tx<'a> {
    tx: &'a Connection,
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

/// The kind of network filesystem a `statfs` magic number names, if any.
/// SQLite's locking, and so its transactions' isolation and durability, is
/// unreliable on these (<https://www.sqlite.org/howtocorrupt.html> §2).
pub fn network_filesystem(magic: i64) -> Option<&'static str> {
    match magic {
        0x6969 => Some("NFS"),
        0x517B => Some("SMB"),
        0xFF53_4D42 => Some("CIFS"),
        0xFE53_4D42 => Some("SMB2"),
        0x5346_414F => Some("AFS"),
        0x0102_1997 => Some("9P"),
        0x00C3_6400 => Some("CephFS"),
        0x0BD0_0BD0 => Some("Lustre"),
        _ => None,
    }
}

/// Refuses a database on a network filesystem, unless the operator has
/// accepted the risk with `CHANCERY_ALLOW_NETWORK_FS=1`.
fn check_local_filesystem(path: &Path) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        if std::env::var_os("CHANCERY_ALLOW_NETWORK_FS").is_some_and(|v| v == "1") {
            return Ok(());
        }
        let Some(magic) = statfs_magic(path) else { return Ok(()) };
        if let Some(kind) = network_filesystem(magic) {
            return Err(Error::Refused(format!(
                "{} is on a network filesystem ({kind}), where SQLite's locking cannot keep a trial's log safe; \
                 keep the database on a local disk (set CHANCERY_ALLOW_NETWORK_FS=1 to accept the risk)",
                path.display()
            )));
        }
    }
    let _ = path;
    Ok(())
}

/// The kind of memory-backed filesystem a `statfs` magic number names, if
/// any: its files are lost when the machine restarts.
pub fn memory_filesystem(magic: i64) -> Option<&'static str> {
    match magic {
        0x0102_1994 => Some("tmpfs"),
        0x8584_58F6 => Some("ramfs"),
        _ => None,
    }
}

/// A warning for a database on a memory-backed filesystem (such as /dev/shm),
/// which a restart empties; `None` on a disk. The caller shows it.
pub fn volatile_warning(path: &Path) -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        let kind = memory_filesystem(statfs_magic(path)?)?;
        Some(format!(
            "warning: {} is on a memory-backed filesystem ({kind}) and will be lost when the machine restarts; keep a trial's database on a disk",
            path.display()
        ))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        None
    }
}

/// The `statfs` magic number of the filesystem holding `path`'s folder.
#[cfg(target_os = "linux")]
fn statfs_magic(path: &Path) -> Option<i64> {
    use std::os::unix::ffi::OsStrExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `buf` a zeroed statfs
    // that the call only writes into.
    unsafe {
        let mut buf: libc::statfs = std::mem::zeroed();
        if libc::statfs(c.as_ptr(), &mut buf) != 0 {
            return None;
        }
        Some(buf.f_type as i64)
    }
}

/// `path` as an SQLite URI filename with `query` (`%`, `?` and `#` escaped).
fn uri(path: &Path, query: &str) -> String {
    let mut s = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => s.push_str("%25"),
            '?' => s.push_str("%3f"),
            '#' => s.push_str("%23"),
            c => s.push(c),
        }
    }
    s.push('?');
    s.push_str(query);
    s
}

/// Opens an existing database read-only, for the commands that only read.
/// A WAL database needs its `-shm` file, which SQLite creates beside it: on a
/// read-only medium, or in a folder the user cannot write (an auditor's copy),
/// that fails, and the file is then opened as immutable, which needs no
/// `-shm` and reads the main file alone. That is exact only when no `-wal`
/// file holds committed pages, so one that is not empty is refused with what
/// to do. Nothing is ever written either way.
fn open_reader(path: &Path, what: &str) -> Result<Connection> {
    if !path.exists() {
        return Err(Error::Input(format!("database {} does not exist; check --db", path.display())));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(Error::sqlite(what.to_string()))?;
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS)).map_err(Error::sqlite(what.to_string()))?;
    // The first read is where SQLite opens (or fails to create) the -shm.
    let probe = conn.pragma_query_value(None, "application_id", |r| r.get::<_, i32>(0));
    match probe {
        Ok(_) => return Ok(conn),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if matches!(e.code, rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly) => {}
        Err(e) => return Err(Error::sqlite(what.to_string())(e)),
    }
    drop(conn);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    if std::fs::metadata(PathBuf::from(&wal)).is_ok_and(|m| m.len() > 0) {
        return Err(Error::Refused(format!(
            "{} cannot be read here: it is read-only and its write-ahead log {} holds changes not yet in the database; \
             copy both files to a folder you can write, or make the copy with `chancery backup`",
            path.display(),
            PathBuf::from(&wal).display()
        )));
    }
    let conn = Connection::open_with_flags(uri(path, "immutable=1"), flags | OpenFlags::SQLITE_OPEN_URI)
        .map_err(Error::sqlite(what.to_string()))?;
    Ok(conn)
}

fn configure(conn: &Connection, what: &str) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS)).map_err(Error::sqlite(what.to_string()))?;
    conn.pragma_update(None, "foreign_keys", true).map_err(Error::sqlite(what.to_string()))?;
    // Room for every statement a batch uses, the multi-row outcome inserts of
    // each size among them, so none is re-prepared within a batch.
    conn.set_prepared_statement_cache_capacity(64);
    // A day's batch is one transaction; a page cache that holds it avoids
    // spilling half-written pages to the WAL before commit.
    conn.pragma_update(None, "cache_size", -131_072).map_err(Error::sqlite(what.to_string()))?;
    conn.pragma_update(None, "temp_store", "MEMORY").map_err(Error::sqlite(what.to_string()))?;
    // Query-planner stability: without it, SQLite may mark a cached statement
    // for re-preparation whenever a new value is bound (STAT4 is compiled in),
    // and re-parsing the per-participant lookups cost an outcome import ~12%.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(Error::sqlite(what.to_string()))?;
    Ok(())
}

/// Opens an existing database file for writing, configured as every writer
/// is (`synchronous=FULL`); `missing` says what to do when there is no file.
fn open_read_write(path: &Path, what: &str, missing: &str) -> Result<Connection> {
    if !path.exists() {
        return Err(Error::Input(format!("database {} does not exist; {missing}", path.display())));
    }
    check_local_filesystem(path)?;
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(Error::sqlite(what.to_string()))?;
    configure(&conn, what)?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(Error::sqlite(what.to_string()))?;
    Ok(conn)
}

/// The schema version of a chancery database; refuses any other file, and one
/// written by a newer chancery.
/// Refuses a file of an older schema: only `chancery migrate` (and an
/// auditor's `verify`) read one.
fn require_current(version: i32, path: &Path) -> Result<()> {
    if version < SCHEMA_VERSION {
        return Err(Error::Refused(format!(
            "{} has schema {version}, older than this build's {SCHEMA_VERSION}; back it up, then run `chancery migrate --db {}`",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

fn schema_of(conn: &Connection, path: &Path, what: &str) -> Result<i32> {
    let app: i32 =
        conn.pragma_query_value(None, "application_id", |r| r.get(0)).map_err(Error::sqlite(what.to_string()))?;
    if app != APPLICATION_ID {
        return Err(Error::Refused(format!("{} is not a chancery database; check --db", path.display())));
    }
    let version: i32 =
        conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(Error::sqlite(what.to_string()))?;
    if version > SCHEMA_VERSION {
        return Err(Error::Refused(format!(
            "{} was written by a newer chancery (schema {version}, this build reads {SCHEMA_VERSION}); upgrade chancery",
            path.display()
        )));
    }
    Ok(version)
}

impl Store {
    /// Creates a new database; refuses if the file exists.
    pub fn create(path: &Path) -> Result<Store> {
        if path.exists() || path.is_symlink() {
            return Err(Error::Refused(format!(
                "{} already exists; chancery never overwrites a database (choose another --db)",
                path.display()
            )));
        }
        let what = format!("creating database {}", path.display());
        check_local_filesystem(path)?;
        // The file is made owner-only before SQLite opens it; SQLite gives the
        // `-wal` and `-shm` it creates the database's mode.
        crate::keys::create_new_file(path, crate::keys::DATA_FILE_MODE)
            .map_err(|e| Error::Io { context: what.clone(), source: e })?;
        let made = (|| {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(Error::sqlite(what.clone()))?;
            conn.pragma_update(None, "journal_mode", "WAL").map_err(Error::sqlite(what.clone()))?;
            conn.pragma_update(None, "synchronous", "FULL").map_err(Error::sqlite(what.clone()))?;
            configure(&conn, &what)?;
            let store = Store { conn };
            store.install_schema(&what)?;
            Ok(store)
        })();
        if made.is_err() {
            // The file this call made is no database yet: leave nothing behind.
            for suffix in ["", "-wal", "-shm"] {
                let mut side = path.as_os_str().to_owned();
                side.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(side));
            }
        }
        made
    }

    /// A database in memory with the schema (for replay during verification).
    pub fn in_memory() -> Result<Store> {
        let what = "creating an in-memory database";
        let conn = Connection::open_in_memory().map_err(Error::sqlite(what))?;
        let store = Store { conn };
        store.install_schema(what)?;
        Ok(store)
    }

    /// A new scratch database with the schema, for replay during verification:
    /// no journal and no fsync (it is thrown away), and a small page cache so
    /// that replaying a long log does not grow memory.
    pub fn scratch(path: &Path) -> Result<Store> {
        let what = format!("creating the replay database {}", path.display());
        // It holds a copy of the trial's data while it lives: owner only.
        crate::keys::create_new_file(path, crate::keys::DATA_FILE_MODE)
            .map_err(|e| Error::Io { context: what.clone(), source: e })?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(Error::sqlite(what.clone()))?;
        conn.pragma_update(None, "journal_mode", "OFF").map_err(Error::sqlite(what.clone()))?;
        conn.pragma_update(None, "synchronous", "OFF").map_err(Error::sqlite(what.clone()))?;
        conn.pragma_update(None, "cache_size", -AUDIT_CACHE_KIB).map_err(Error::sqlite(what.clone()))?;
        conn.pragma_update(None, "temp_store", "FILE").map_err(Error::sqlite(what.clone()))?;
        let store = Store { conn };
        store.install_schema(&what)?;
        Ok(store)
    }

    /// Opens a chancery database read-only for an auditor, with a small page
    /// cache: verification streams the file and never writes to it.
    pub fn open_for_audit(path: &Path) -> Result<Store> {
        let (store, version) = Store::open_any_for_audit(path)?;
        if version < SCHEMA_VERSION {
            return Err(Error::Refused(format!(
                "{} has schema {version}, older than this build's {SCHEMA_VERSION}; run `chancery migrate --db {}` first (it rebuilds only the tables derived from the log, in one transaction)",
                path.display(),
                path.display()
            )));
        }
        Ok(store)
    }

    /// Opens a chancery database read-only for an auditor, as
    /// [`Store::open_for_audit`] does, but accepting any schema a chancery
    /// release wrote (1 to this build's): verification checks an older file's
    /// log without migrating it. Returns the file's schema version.
    pub fn open_any_for_audit(path: &Path) -> Result<(Store, i32)> {
        let what = format!("opening database {} for verification", path.display());
        let conn = open_reader(path, &what)?;
        conn.pragma_update(None, "cache_size", -AUDIT_CACHE_KIB).map_err(Error::sqlite(what.clone()))?;
        let app: i32 =
            conn.pragma_query_value(None, "application_id", |r| r.get(0)).map_err(Error::sqlite(what.clone()))?;
        if app != APPLICATION_ID {
            return Err(Error::Refused(format!("{} is not a chancery database; check --db", path.display())));
        }
        let version: i32 =
            conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(Error::sqlite(what.clone()))?;
        if !(1..=SCHEMA_VERSION).contains(&version) {
            return Err(Error::Refused(format!(
                "{} has schema {version}; this build verifies schema {SCHEMA_VERSION} (and reads the log of schemas 1 to {})",
                path.display(),
                SCHEMA_VERSION - 1
            )));
        }
        Ok((Store { conn }, version))
    }

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
    fn install_schema(&self, what: &str) -> Result<()> {
        self.conn
            .execute_batch(&format!(
                "BEGIN; {SCHEMA} {DERIVED_SCHEMA} PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(Error::sqlite(what.to_string()))
    }

    /// Opens an existing chancery database, checking what it is.
    pub fn open(path: &Path) -> Result<Store> {
        let what = format!("opening database {}", path.display());
        let conn = open_read_write(path, &what, "create it with `chancery init` or check --db")?;
        require_current(schema_of(&conn, path, &what)?, path)?;
        Ok(Store { conn })
    }

    /// Opens an existing chancery database for reading only (the commands
    /// that write nothing: status, exports, the analysis, the report): it
    /// works on a read-only copy, and cannot change the file.
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let what = format!("opening database {}", path.display());
        let conn = open_reader(path, &what)?;
        configure(&conn, &what)?;
        require_current(schema_of(&conn, path, &what)?, path)?;
        Ok(Store { conn })
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
        sql.push_str(
            "UPDATE participant_status SET no_further_contact = 1 WHERE participant IN (
                 SELECT json_extract(body, '$.data.participant') FROM log
                 WHERE type = 'status_changed' AND json_extract(body, '$.data.no_further_contact') = 1);\n",
        );
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

    /// Begins a write transaction.
    pub fn transaction(&mut self) -> Result<Tx<'_>> {
        self.conn
            .prepare_cached("BEGIN IMMEDIATE")
            .and_then(|mut s| s.execute([]))
            .map_err(Error::sqlite("starting a write transaction"))?;
        Ok(Tx {
            tx: &self.conn,
            pending_identities: RefCell::new(None),
            log_insert: RefCell::new(None),
            referral_insert: RefCell::new(None),
        })
    }

    /// The end of the log.
    pub fn head(&self) -> Result<Head> {
        head(&self.conn)
    }

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

    /// The trial row, if the trial has been created.
    pub fn trial(&self) -> Result<Option<TrialRow>> {
        trial(&self.conn)
    }

    /// Calls `f` on every log row in sequence order, streaming.
    pub fn each_log_row(&self, mut f: impl FnMut(LogRow) -> Result<()>) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, ts, type, hash, body FROM log ORDER BY seq")
            .map_err(Error::sqlite("reading the log"))?;
        let mut rows = stmt.query([]).map_err(Error::sqlite("reading the log"))?;
        while let Some(r) = rows.next().map_err(Error::sqlite("reading the log"))? {
            let row = LogRow {
                seq: r.get::<_, i64>(0).map_err(Error::sqlite("reading the log"))? as u64,
                ts: r.get(1).map_err(Error::sqlite("reading the log"))?,
                kind: r.get(2).map_err(Error::sqlite("reading the log"))?,
                hash: r.get(3).map_err(Error::sqlite("reading the log"))?,
                body: r.get(4).map_err(Error::sqlite("reading the log"))?,
            };
            f(row)?;
        }
        Ok(())
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
        let what = "reading the log";
        let mut stmt =
            self.conn.prepare("SELECT seq, body FROM log WHERE type = ?1 ORDER BY seq").map_err(Error::sqlite(what))?;
        stmt.query_map([kind], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(Error::sqlite(what))
    }

    /// The bodies of the log entries of one type whose text contains `needle`, in order.
    pub fn log_bodies_containing(&self, kind: &str, needle: &str) -> Result<Vec<(u64, String)>> {
        let what = "reading the log";
        let mut stmt = self
            .conn
            .prepare("SELECT seq, body FROM log WHERE type = ?1 AND instr(body, ?2) > 0 ORDER BY seq")
            .map_err(Error::sqlite(what))?;
        stmt.query_map([kind, needle], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(Error::sqlite(what))
    }

    /// Rows of a derived table as text, ordered by its key, for replay comparison.
    pub fn table_rows(&self, table: &str) -> Result<Vec<(String, String)>> {
        let (name, key) = DERIVED_TABLES
            .iter()
            .find(|(t, _)| *t == table)
            .ok_or_else(|| Error::Integrity(format!("{table} is not a derived table")))?;
        let what = format!("reading table {name}");
        let mut stmt =
            self.conn.prepare(&format!("SELECT * FROM {name} ORDER BY {key}")).map_err(Error::sqlite(what.clone()))?;
        let cols = stmt.column_count();
        let key_cols: Vec<usize> = key.split(',').map(|k| stmt.column_index(k.trim()).unwrap_or(0)).collect();
        stmt.query_map([], |r| {
            let mut all = Vec::with_capacity(cols);
            for i in 0..cols {
                let v: rusqlite::types::Value = r.get(i)?;
                all.push(match v {
                    rusqlite::types::Value::Null => "NULL".to_string(),
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Real(f) => format!("{f:?}"),
                    rusqlite::types::Value::Text(t) => format!("{t:?}"),
                    rusqlite::types::Value::Blob(b) => format!("x'{}'", hex::encode(b)),
                });
            }
            let k = key_cols.iter().map(|&i| all[i].clone()).collect::<Vec<_>>().join(",");
            Ok((k, all.join("|")))
        })
        .and_then(|rows| rows.collect())
        .map_err(Error::sqlite(what))
    }

    /// Calls `f` with each row of a derived table in key order, streaming: the
    /// row's key and full text as in [`Store::table_rows`], and its `seq` column
    /// if the table has one.
    pub fn each_table_row(
        &self,
        table: &str,
        mut f: impl FnMut(String, String, Option<u64>) -> Result<()>,
    ) -> Result<()> {
        let (name, key) = DERIVED_TABLES
            .iter()
            .find(|(t, _)| *t == table)
            .ok_or_else(|| Error::Integrity(format!("{table} is not a derived table")))?;
        let what = format!("reading table {name}");
        let mut stmt =
            self.conn.prepare(&format!("SELECT * FROM {name} ORDER BY {key}")).map_err(Error::sqlite(what.clone()))?;
        let cols = stmt.column_count();
        let key_cols: Vec<usize> = key.split(',').map(|k| stmt.column_index(k.trim()).unwrap_or(0)).collect();
        let seq_col = stmt.column_index("seq").ok();
        let mut rows = stmt.query([]).map_err(Error::sqlite(what.clone()))?;
        while let Some(r) = rows.next().map_err(Error::sqlite(what.clone()))? {
            let mut all = Vec::with_capacity(cols);
            let mut seq = None;
            for i in 0..cols {
                let v: rusqlite::types::Value = r.get(i).map_err(Error::sqlite(what.clone()))?;
                if Some(i) == seq_col
                    && let rusqlite::types::Value::Integer(n) = v
                {
                    seq = u64::try_from(n).ok();
                }
                all.push(match v {
                    rusqlite::types::Value::Null => "NULL".to_string(),
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Real(f) => format!("{f:?}"),
                    rusqlite::types::Value::Text(t) => format!("{t:?}"),
                    rusqlite::types::Value::Blob(b) => format!("x'{}'", hex::encode(b)),
                });
            }
            let k = key_cols.iter().map(|&i| all[i].clone()).collect::<Vec<_>>().join(",");
            f(k, all.join("|"), seq)?;
        }
        Ok(())
    }

    /// Compares a derived table here with the same table in `replayed`, row by
    /// row in key order with one cursor on each (constant memory). Returns the
    /// number of differing rows and, of those, the one with the least `seq`
    /// (rows without a `seq` column come last).
    pub fn compare_table(&self, replayed: &Store, table: &str) -> Result<Option<TableDiff>> {
        let (name, key) = DERIVED_TABLES
            .iter()
            .find(|(t, _)| *t == table)
            .ok_or_else(|| Error::Integrity(format!("{table} is not a derived table")))?;
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

    /// When the seed was revealed: the entry's seq and time, if it has been.
    pub fn revealed(&self) -> Result<Option<(u64, String)>> {
        revealed(&self.conn)
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
}

// `head` and `revealed` run in every write transaction: their statements are
// cached, as re-preparing them cost a single randomisation ~7% of its CPU.
fn head(c: &Connection) -> Result<Head> {
    let row: Option<(i64, String, String)> = c
        .prepare_cached("SELECT seq, hash, ts FROM log ORDER BY seq DESC LIMIT 1")
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
        .map_err(Error::sqlite("reading the log head"))?;
    Ok(match row {
        None => Head { len: 0, hash: crate::log::GENESIS_PREV.into(), ts: None },
        Some((seq, hash, ts)) => Head { len: seq as u64 + 1, hash, ts: Some(ts) },
    })
}

fn trial(c: &Connection) -> Result<Option<TrialRow>> {
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

fn revealed(c: &Connection) -> Result<Option<(u64, String)>> {
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

/// A `log` row read as `SELECT seq, ts, type, hash, body`.
fn log_row(r: &rusqlite::Row) -> rusqlite::Result<LogRow> {
    Ok(LogRow { seq: r.get::<_, i64>(0)? as u64, ts: r.get(1)?, kind: r.get(2)?, hash: r.get(3)?, body: r.get(4)? })
}

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
    stmt.query_map([], |r| {
        Ok(ParticipantRow {
            participant: r.get(0)?,
            seq: r.get::<_, i64>(1)? as u64,
            site: r.get(2)?,
            stratum: r.get(3)?,
            arm: r.get(4)?,
            identity: r.get(5)?,
            randomised_at: r.get(6)?,
        })
    })
    .and_then(|rows| rows.collect())
    .map_err(Error::sqlite(what))
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
            .and_then(|mut s| {
                s.query_row([participant], |r| {
                    Ok(ParticipantRow {
                        participant: r.get(0)?,
                        seq: r.get::<_, i64>(1)? as u64,
                        site: r.get(2)?,
                        stratum: r.get(3)?,
                        arm: r.get(4)?,
                        identity: r.get(5)?,
                        randomised_at: r.get(6)?,
                    })
                })
                .optional()
            })
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
    /// refuses the commit.
    pub fn commit(self) -> Result<()> {
        if let Some((_, participant)) = self.flush_identities()?.first() {
            return Err(Error::Refused(format!(
                "participant {participant} has the identity of a participant already randomised; a person is randomised once"
            )));
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
        // Still open: dropped before commit (an error on the way), or COMMIT failed.
        if !self.tx.is_autocommit() {
            // A failed ROLLBACK leaves nothing to do: SQLite rolls back what it can
            // when the connection closes, and nothing uncommitted is durable.
            let _ = self.tx.execute_batch("ROLLBACK");
        }
    }
}

impl Store {
    /// Every current outcome value, ordered by participant, timepoint and
    /// field, passed to `f` as `(participant, timepoint, field, value,
    /// collected_on)` borrowed from the row, with no allocation per row.
    pub fn for_each_outcome_value(&self, mut f: impl FnMut(&str, &str, &str, &str, &str)) -> Result<()> {
        self.for_each_outcome_row((None, None), |row| {
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

    /// The current outcome values of the participants in `range` (ids from
    /// `.0`, inclusive, to `.1`, exclusive, in byte order; `None` for an open
    /// end), ordered by participant, timepoint and field, passed to
    /// `f` as the row's bytes: a reader that compares most of them with the
    /// row before (the same participant, a known timepoint and field, the
    /// same date) need not check that each is UTF-8, and checks the rest
    /// itself. The first error `f` returns ends the read.
    pub fn for_each_outcome_row(
        &self,
        (from, to): (Option<&str>, Option<&str>),
        mut f: impl FnMut(StoredOutcome<'_>) -> Result<()>,
    ) -> Result<()> {
        let what = "reading outcomes";
        let sql = match (from.is_some(), to.is_some()) {
            (false, false) => {
                "SELECT participant, timepoint, field, value, collected_on FROM outcomes
                 ORDER BY participant, timepoint, field"
            }
            (true, false) => {
                "SELECT participant, timepoint, field, value, collected_on FROM outcomes
                 WHERE participant >= ?1 ORDER BY participant, timepoint, field"
            }
            (false, true) => {
                "SELECT participant, timepoint, field, value, collected_on FROM outcomes
                 WHERE participant < ?2 ORDER BY participant, timepoint, field"
            }
            (true, true) => {
                "SELECT participant, timepoint, field, value, collected_on FROM outcomes
                 WHERE participant >= ?1 AND participant < ?2 ORDER BY participant, timepoint, field"
            }
        };
        let mut stmt = self.conn.prepare_cached(sql).map_err(Error::sqlite(what))?;
        for (i, bound) in [from, to].into_iter().enumerate() {
            if let Some(b) = bound {
                stmt.raw_bind_parameter(i + 1, b).map_err(Error::sqlite(what))?;
            }
        }
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

    /// A referral id near the middle of the referrals in byte order (`None`
    /// when there are none): where to split a read of the outcome values,
    /// which are keyed by participant, into two halves of about equal size.
    /// Counting and stepping over half the referrals' keys is a small part of
    /// reading their outcome values.
    pub fn referral_near_middle(&self) -> Result<Option<String>> {
        let what = "finding the middle referral";
        self.conn
            .query_row(
                "SELECT participant FROM referrals ORDER BY participant
                 LIMIT 1 OFFSET (SELECT count(*) FROM referrals) / 2",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(Error::sqlite(what))
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
}

impl Store {
    /// A second, read-only connection to this store's database file, for a
    /// read that runs on another thread beside this connection's (the
    /// dataset's outcome values beside its randomisations); `None` for a
    /// database in memory, or if the file cannot be opened again. It reads
    /// whatever state is current when its own read begins, so a caller that
    /// needs one state across both connections compares their
    /// [`Store::read_snapshot`] heads.
    pub fn second_reader(&self) -> Option<Store> {
        let path = self.conn.path().filter(|p| !p.is_empty())?;
        let conn = open_reader(Path::new(path), "opening a second reader").ok()?;
        conn.pragma_update(None, "cache_size", -AUDIT_CACHE_KIB).ok()?;
        Some(Store { conn })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_filesystems_are_recognised_and_local_disks_pass() {
        assert_eq!(network_filesystem(0x6969), Some("NFS"));
        assert_eq!(network_filesystem(0xFF53_4D42), Some("CIFS"));
        assert_eq!(network_filesystem(0xEF53), None, "ext4");
        let dir = tempfile::tempdir().unwrap();
        check_local_filesystem(&dir.path().join("t.db")).unwrap();
    }

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

    #[test]
    fn a_file_that_is_not_chancery_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        Connection::open(&path).unwrap().execute_batch("CREATE TABLE x (y);").unwrap();
        let e = Store::open(&path).err().unwrap().to_string();
        assert!(e.contains("is not a chancery database"), "{e}");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(Store::create(&path).unwrap());
        Connection::open(&path).unwrap().pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        let e = Store::open(&path).err().unwrap().to_string();
        assert!(e.contains("newer chancery"), "{e}");
    }

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

    #[test]
    fn create_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(Store::create(&path).unwrap());
        assert!(Store::create(&path).err().unwrap().to_string().contains("already exists"));
    }
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

// Verification's reads, kept apart from the write path.
impl Store {
    /// Calls `f` on every log row in sequence order, streaming, with the row's
    /// text borrowed rather than copied. The same rows, in the same order, as
    /// [`Store::each_log_row`], and the same errors for a row that is not text.
    pub fn each_log_row_ref(&self, mut f: impl FnMut(LogRowRef<'_>) -> Result<()>) -> Result<()> {
        let what = "reading the log";
        let mut stmt =
            self.conn.prepare("SELECT seq, ts, type, hash, body FROM log ORDER BY seq").map_err(Error::sqlite(what))?;
        let mut rows = stmt.query([]).map_err(Error::sqlite(what))?;
        while let Some(r) = rows.next().map_err(Error::sqlite(what))? {
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
            .map_err(Error::sqlite(what))?;
            f(row)?;
        }
        Ok(())
    }
}

// Verification's uniqueness checks on the replay database.
impl Store {
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
}

// Verification's look-ups during replay.
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

// Verification's reads of the live tables for their digests.
impl Store {
    /// Runs a read-only query of verification's, calling `f` with each row as
    /// SQLite holds it (nothing copied); returns the query's column names.
    pub fn each_row_ref(&self, sql: &str, mut f: impl FnMut(&rusqlite::Row<'_>) -> Result<()>) -> Result<Vec<String>> {
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
}

// Where verification finds the seed's reveal without scanning the log.
impl Store {
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
