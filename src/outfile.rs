//! Output files that are never half-written: every file chancery writes for
//! a user (exports, checkpoints, analysis tables, reports) is written to a
//! temporary file in the same folder, flushed to the disk, and only then given
//! its name; on any failure, or if the writer is dropped unfinished, the
//! temporary file is removed and nothing is left behind. An existing file is
//! refused unless the user asked to replace it ([`Overwrite::Force`]).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::{Error, Result};

/// What to do when the output file already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Refuse (the default everywhere): an earlier output is never lost by a
    /// mistyped path.
    Refuse,
    /// Replace it (`--force`), still atomically: a reader sees the old file
    /// or the new one, never a mixture.
    Force,
}

impl Overwrite {
    /// `Force` when the user gave `--force`.
    pub fn forced(force: bool) -> Overwrite {
        if force { Overwrite::Force } else { Overwrite::Refuse }
    }
}

/// The permissions of an output file unless the user asks for others
/// (`--mode`): it may hold pseudonymised health data, so only the owner reads
/// it, like the database.
pub const OUTPUT_MODE: u32 = crate::keys::DATA_FILE_MODE;

/// Refuses `path` if it exists (or is a dangling symlink) and `overwrite` does
/// not allow replacing it.
fn check_target(path: &Path, overwrite: Overwrite) -> Result<()> {
    if overwrite == Overwrite::Refuse && (path.exists() || path.is_symlink()) {
        return Err(exists(path));
    }
    // A device or pipe (/dev/stdout, /dev/full) is never replaced by a file.
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(Error::Refused(format!("{} is not a regular file; give a file name", path.display())));
    }
    Ok(())
}

fn exists(path: &Path) -> Error {
    Error::Refused(format!(
        "{} already exists; chancery does not overwrite files (remove it, choose another name, or give --force to replace it)",
        path.display()
    ))
}

/// The folder a file is written in ("." for a bare name).
fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// An output file being written: a temporary file beside its final name.
pub struct OutFile {
    temp: BufWriter<NamedTempFile>,
    path: PathBuf,
    overwrite: Overwrite,
}

impl OutFile {
    /// Starts writing `path` with the given permission bits (see
    /// [`OUTPUT_MODE`]): refuses at once if it exists and `overwrite` is
    /// `Refuse`, so no work is done for an output that cannot be kept.
    pub fn create(path: &Path, overwrite: Overwrite, mode: u32) -> Result<OutFile> {
        check_target(path, overwrite)?;
        let dir = folder_of(path);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".partial");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(mode));
        }
        #[cfg(not(unix))]
        let _ = mode;
        // O_EXCL with a random name: never a file someone else prepared.
        let temp = builder.tempfile_in(&dir).map_err(Error::io(format!(
            "creating a temporary file in {} for {}",
            dir.display(),
            path.display()
        )))?;
        Ok(OutFile { temp: BufWriter::with_capacity(1 << 16, temp), path: path.to_path_buf(), overwrite })
    }

    /// The final name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes and syncs the temporary file, so that its bytes are on the
    /// disk before it is named; a full disk is reported here.
    fn finish(self) -> Result<Finished> {
        let what = || format!("writing {}", self.path.display());
        let temp = self.temp.into_inner().map_err(|e| Error::Io { context: what(), source: e.into_error() })?;
        temp.as_file().sync_all().map_err(Error::io(what()))?;
        Ok(Finished { temp, path: self.path, overwrite: self.overwrite })
    }

    /// Gives the written file its name, atomically; without `Force`, a file
    /// that appeared at that name meanwhile is kept and this one discarded.
    pub fn commit(self) -> Result<()> {
        let finished = self.finish()?;
        let dir = folder_of(&finished.path);
        finished.persist()?;
        sync_dir(&dir)
    }
}

impl Write for OutFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.temp.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.temp.write_all(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.temp.flush()
    }
}

/// A temporary file whose bytes are on the disk, waiting for its name.
struct Finished {
    temp: NamedTempFile,
    path: PathBuf,
    overwrite: Overwrite,
}

impl Finished {
    fn persist(self) -> Result<()> {
        let result = match self.overwrite {
            Overwrite::Force => self.temp.persist(&self.path),
            Overwrite::Refuse => self.temp.persist_noclobber(&self.path),
        };
        // On failure the temporary file is handed back and removed as it drops.
        result.map(drop).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                exists(&self.path)
            } else {
                Error::Io { context: format!("naming {}", self.path.display()), source: e.error }
            }
        })
    }
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io(format!("syncing the folder {}", dir.display())))
}

/// Writes `bytes` to `path` as one [`OutFile`] with permissions `mode`.
pub fn write(path: &Path, bytes: &[u8], overwrite: Overwrite, mode: u32) -> Result<()> {
    let mut f = OutFile::create(path, overwrite, mode)?;
    f.write_all(bytes).map_err(Error::io(format!("writing {}", path.display())))?;
    f.commit()
}

/// Writes several files into `dir` (created if needed) as one output: every
/// target is checked first, every file is written and synced, and only then
/// are they named; if naming one fails, those already named by this call are
/// removed again (when not replacing), so the set appears whole or not at all.
/// Returns the paths written, in the order given. Each file gets `mode`.
pub fn write_set(dir: &Path, files: &[(&str, Vec<u8>)], overwrite: Overwrite, mode: u32) -> Result<Vec<PathBuf>> {
    let paths: Vec<PathBuf> = files.iter().map(|(name, _)| dir.join(name)).collect();
    for p in &paths {
        check_target(p, overwrite)?;
    }
    let created = !dir.exists();
    std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let result = write_into(dir, files, &paths, overwrite, mode);
    if result.is_err() && created {
        // Empty again: every temporary file was removed as it dropped.
        let _ = std::fs::remove_dir(dir);
    }
    result.map(|()| paths)
}

fn write_into(dir: &Path, files: &[(&str, Vec<u8>)], paths: &[PathBuf], overwrite: Overwrite, mode: u32) -> Result<()> {
    let mut finished = Vec::with_capacity(files.len());
    for ((_, bytes), path) in files.iter().zip(paths) {
        let mut f = OutFile::create(path, overwrite, mode)?;
        f.write_all(bytes).map_err(Error::io(format!("writing {}", path.display())))?;
        finished.push(f.finish()?);
    }
    let mut named: Vec<PathBuf> = Vec::new();
    for f in finished {
        let path = f.path.clone();
        if let Err(e) = f.persist() {
            if overwrite == Overwrite::Refuse {
                for p in &named {
                    let _ = std::fs::remove_file(p);
                }
            }
            return Err(e);
        }
        named.push(path);
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    /// A writer that fails part-way, as a full disk does.
    fn fill_until_failure(f: &mut OutFile) -> std::io::Result<()> {
        f.write_all(b"participant,arm\nP0001,ips\nP0002,us")?;
        f.flush()?;
        Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device"))
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.csv");
        let mut f = OutFile::create(&path, Overwrite::Refuse, OUTPUT_MODE).unwrap();
        assert!(fill_until_failure(&mut f).is_err());
        drop(f);
        assert!(names(dir.path()).is_empty(), "left behind: {:?}", names(dir.path()));
        // And the rerun is not refused.
        write(&path, b"a\n", Overwrite::Refuse, OUTPUT_MODE).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"a\n");
    }

    #[test]
    fn an_existing_file_is_kept_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.txt");
        std::fs::write(&path, "keep me").unwrap();
        let e = write(&path, b"new", Overwrite::Refuse, OUTPUT_MODE).unwrap_err().to_string();
        assert!(e.contains("already exists") && e.contains("--force"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
        write(&path, b"new", Overwrite::Force, OUTPUT_MODE).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(names(dir.path()), ["cp.txt"]);
    }

    #[test]
    fn a_file_appearing_meanwhile_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let mut f = OutFile::create(&path, Overwrite::Refuse, OUTPUT_MODE).unwrap();
        f.write_all(b"mine").unwrap();
        std::fs::write(&path, "theirs").unwrap();
        let e = f.commit().unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "theirs");
        assert_eq!(names(dir.path()), ["out.csv"]);
    }

    #[cfg(unix)]
    #[test]
    fn outputs_are_readable_by_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        write(&path, b"x", Overwrite::Refuse, OUTPUT_MODE).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_set_is_refused_whole_when_one_file_exists() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.csv"), "old").unwrap();
        let files = [("a.csv", b"a".to_vec()), ("b.csv", b"b".to_vec())];
        let e = write_set(dir.path(), &files, Overwrite::Refuse, OUTPUT_MODE).unwrap_err().to_string();
        assert!(e.contains("b.csv already exists"), "{e}");
        assert_eq!(names(dir.path()), ["b.csv"]);
        write_set(dir.path(), &files, Overwrite::Force, OUTPUT_MODE).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("b.csv")).unwrap(), "b");
        assert_eq!(names(dir.path()), ["a.csv", "b.csv"]);
    }

    #[test]
    fn a_device_is_never_replaced() {
        let e = write(Path::new("/dev/null"), b"x", Overwrite::Force, OUTPUT_MODE).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
