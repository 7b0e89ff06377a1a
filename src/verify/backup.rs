//! `backup`: a live trial database copied with SQLite's online backup API,
//! the copy verified (chain, replay, SQLite integrity) before it is given its
//! name; never overwriting unless asked.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{VerifyOptions, verify};
use crate::error::{Error, Result};
use crate::store::Store;

/// What `backup` made.
#[derive(Debug, Clone, Serialize)]
pub struct Backup {
    /// The copy.
    pub path: PathBuf,
    /// Entries in the copied log.
    pub entries: u64,
    /// Its head.
    pub head: String,
}

/// Copies a live trial database with SQLite's online backup API (consistent
/// even while coordinators write), verifies the copy — chain, replay and
/// SQLite integrity — and only then gives it its name. Never overwrites.
pub fn backup(db: &Path, to: &Path, overwrite: crate::outfile::Overwrite) -> Result<Backup> {
    let replace = overwrite == crate::outfile::Overwrite::Force;
    if (to.exists() || to.is_symlink()) && !replace {
        return Err(Error::Refused(format!(
            "{} already exists; chancery does not overwrite files (choose another --to, or give --force to replace it)",
            to.display()
        )));
    }
    let partial = to.with_extension("partial");
    if partial.exists() || partial.is_symlink() {
        return Err(Error::Refused(format!(
            "{} exists (an interrupted backup?); remove it or choose another --to",
            partial.display()
        )));
    }
    let live = Store::open_for_audit(db)?;
    let cleanup = |e: Error| {
        let _ = std::fs::remove_file(&partial);
        e
    };
    live.backup_to(&partial).map_err(cleanup)?;
    drop(live);
    let scratch_dir = partial.parent().map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
    let report = verify(&VerifyOptions { db: partial.clone(), seed: None, checkpoints: Vec::new(), scratch_dir })
        .map_err(cleanup)?;
    if !report.ok {
        let _ = std::fs::remove_file(&partial);
        let why = report.first_failure().map_or(String::new(), |c| format!("{}: {}", c.name, c.message));
        return Err(Error::Integrity(format!(
            "the copy does not verify ({why}); nothing was kept. Run `chancery verify --db {}`",
            db.display()
        )));
    }
    // Verifying the copy (read-only) made its `-wal` and `-shm`. Nothing wrote
    // to the WAL, so the copy is whole without them: remove them rather than
    // leave them beside it under the partial name (a WAL with frames, never
    // expected, goes with the copy instead).
    let with_suffix = |path: &Path, suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    };
    for suffix in ["-wal", "-shm"] {
        let side = with_suffix(&partial, suffix);
        match std::fs::metadata(&side) {
            Err(_) => {}
            Ok(m) if suffix == "-wal" && m.len() > 0 => {
                let with = with_suffix(to, suffix);
                std::fs::rename(&side, &with).map_err(Error::io(format!("naming {}", with.display())))?;
            }
            Ok(_) => std::fs::remove_file(&side).map_err(Error::io(format!("removing {}", side.display())))?,
        }
    }
    if replace {
        // A replaced copy's own side files belong to the old copy: a stale
        // `-wal` beside the new one would be read into it.
        for suffix in ["-wal", "-shm"] {
            let side = with_suffix(to, suffix);
            if side.exists() && !(suffix == "-wal" && with_suffix(&partial, suffix).exists()) {
                std::fs::remove_file(&side).map_err(Error::io(format!("removing {}", side.display())))?;
            }
        }
        std::fs::rename(&partial, to).map_err(Error::io(format!("naming the backup {}", to.display())))?;
    } else {
        // Named without replacing: a file that appeared at `to` meanwhile is kept.
        std::fs::hard_link(&partial, to).map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Refused(format!("{} appeared while the backup was made; nothing was replaced", to.display()))
            } else {
                Error::Io { context: format!("naming the backup {}", to.display()), source: e }
            }
        })?;
        std::fs::remove_file(&partial).map_err(Error::io(format!("removing {}", partial.display())))?;
    }
    Ok(Backup { path: to.to_path_buf(), entries: report.entries, head: report.head })
}
