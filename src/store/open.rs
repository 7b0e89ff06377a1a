//! Opening a database: creating one (never over an existing file), opening
//! one to write, to read only (as immutable when its folder or medium is
//! read-only), for an auditor (any schema a release wrote), and the scratch
//! and in-memory databases replay writes into; the checks made first (a
//! network filesystem refused, a memory-backed one warned of, a file that is
//! not chancery's or of another schema refused) and the pragmas every
//! connection is configured with.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::Store;
use super::schema::{APPLICATION_ID, SCHEMA_VERSION};
use crate::error::{Error, Result};

/// Page cache of the connections verification uses (KiB): small and fixed, so
/// memory does not grow with the log.
const AUDIT_CACHE_KIB: i64 = 8_192;
/// How long a writer waits for another coordinator's transaction.
pub const BUSY_TIMEOUT_MS: u64 = 30_000;

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
pub(super) fn open_read_write(path: &Path, what: &str, missing: &str) -> Result<Connection> {
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

/// The `user_version` of a chancery database; refuses any other file.
fn chancery_version(conn: &Connection, path: &Path, what: &str) -> Result<i32> {
    let app: i32 =
        conn.pragma_query_value(None, "application_id", |r| r.get(0)).map_err(Error::sqlite(what.to_string()))?;
    if app != APPLICATION_ID {
        return Err(Error::Refused(format!("{} is not a chancery database; check --db", path.display())));
    }
    conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(Error::sqlite(what.to_string()))
}

/// The schema version of a chancery database; refuses any other file, and one
/// written by a newer chancery.
pub(super) fn schema_of(conn: &Connection, path: &Path, what: &str) -> Result<i32> {
    let version = chancery_version(conn, path, what)?;
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
            let store = Store { conn, group: None };
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
        let store = Store { conn, group: None };
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
        let store = Store { conn, group: None };
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
        let version = chancery_version(&conn, path, &what)?;
        if !(1..=SCHEMA_VERSION).contains(&version) {
            return Err(Error::Refused(format!(
                "{} has schema {version}; this build verifies schema {SCHEMA_VERSION} (and reads the log of schemas 1 to {})",
                path.display(),
                SCHEMA_VERSION - 1
            )));
        }
        Ok((Store { conn, group: None }, version))
    }

    /// Opens an existing chancery database, checking what it is.
    pub fn open(path: &Path) -> Result<Store> {
        let what = format!("opening database {}", path.display());
        let conn = open_read_write(path, &what, "create it with `chancery init` or check --db")?;
        require_current(schema_of(&conn, path, &what)?, path)?;
        Ok(Store { conn, group: None })
    }

    /// Opens an existing chancery database for reading only (the commands
    /// that write nothing: status, exports, the analysis, the report): it
    /// works on a read-only copy, and cannot change the file.
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let what = format!("opening database {}", path.display());
        let conn = open_reader(path, &what)?;
        configure(&conn, &what)?;
        require_current(schema_of(&conn, path, &what)?, path)?;
        Ok(Store { conn, group: None })
    }
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
    fn create_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(Store::create(&path).unwrap());
        assert!(Store::create(&path).err().unwrap().to_string().contains("already exists"));
    }
}
