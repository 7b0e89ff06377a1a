//! Input files read with a limit: a file given by mistake (a device such as
//! `/dev/zero`, a database named as a CSV, a runaway export) is refused with
//! its size instead of growing memory until the process is killed. The limits
//! sit where files are opened, apart from the parsers.

use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

/// A checkpoint is five short lines (a few hundred bytes).
pub const CHECKPOINT_BYTES: u64 = 16 * 1024;
/// A protocol file is a few kilobytes of TOML.
pub const PROTOCOL_BYTES: u64 = 1024 * 1024;
/// A CSV of referrals or outcomes: room for millions of rows.
pub const CSV_BYTES: u64 = 512 * 1024 * 1024;
/// A CSV line: a referral or an outcome row is a few hundred bytes.
pub const CSV_LINE_BYTES: usize = 64 * 1024;

/// The limits one kind of file is read under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// What the file is, for messages ("checkpoint", "outcome CSV").
    pub what: &'static str,
    /// The most bytes read in all.
    pub max_bytes: u64,
    /// The longest line, in bytes (`None`: lines are not limited).
    pub max_line: Option<usize>,
}

impl Limits {
    /// A checkpoint file.
    pub const CHECKPOINT: Limits = Limits { what: "checkpoint", max_bytes: CHECKPOINT_BYTES, max_line: None };
    /// A protocol file.
    pub const PROTOCOL: Limits = Limits { what: "protocol", max_bytes: PROTOCOL_BYTES, max_line: None };
    /// A CSV file of referrals or outcomes.
    pub const CSV: Limits = Limits { what: "CSV file", max_bytes: CSV_BYTES, max_line: Some(CSV_LINE_BYTES) };
}

/// Why a bounded read stopped.
#[derive(Debug, Clone, Copy)]
enum Over {
    Size,
    Line(u64),
}

/// A reader that fails once more than `max_bytes` have been read, or a line
/// grows longer than `max_line`.
pub struct Bounded<R> {
    inner: R,
    limits: Limits,
    read: u64,
    line_len: usize,
    line: u64,
    over: Option<Over>,
}

impl<R: Read> Bounded<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, limits: Limits) -> Bounded<R> {
        Bounded { inner, limits, read: 0, line_len: 0, line: 1, over: None }
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.over.is_some() {
            return Err(std::io::Error::other("input over its limit"));
        }
        // One byte beyond the limit is read to tell a file of exactly the
        // limit from a longer one.
        let room = (self.limits.max_bytes + 1 - self.read).min(buf.len() as u64) as usize;
        let n = self.inner.read(&mut buf[..room])?;
        self.read += n as u64;
        if self.read > self.limits.max_bytes {
            self.over = Some(Over::Size);
            return Err(std::io::Error::other("input over its size limit"));
        }
        if let Some(max_line) = self.limits.max_line {
            for &b in &buf[..n] {
                if b == b'\n' {
                    self.line += 1;
                    self.line_len = 0;
                } else {
                    self.line_len += 1;
                    if self.line_len > max_line {
                        self.over = Some(Over::Line(self.line));
                        return Err(std::io::Error::other("input line over its limit"));
                    }
                }
            }
        }
        Ok(n)
    }
}

fn megabytes(n: u64) -> String {
    if n >= 1024 * 1024 { format!("{} MiB", n / (1024 * 1024)) } else { format!("{} KiB", n / 1024) }
}

/// Reads the whole of `path` under `limits`; past a limit, one line saying
/// which limit, where, and what to do.
pub fn read(path: &Path, limits: Limits) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(Error::io(format!("reading {}", path.display())))?;
    let mut reader = Bounded::new(file, limits);
    let mut bytes = Vec::new();
    match reader.read_to_end(&mut bytes) {
        Ok(_) => Ok(bytes),
        Err(e) => Err(match reader.over {
            Some(over) => over_limit(&path.display().to_string(), limits, over),
            None => Error::Io { context: format!("reading {}", path.display()), source: e },
        }),
    }
}

/// Checks bytes already in memory (an upload, a file read by a front end)
/// against `limits`, with the message [`read`] gives; `name` names them.
/// Operations that take a file's bytes check them here, so a front end that
/// did not read them through [`read`] gets the same bounds.
pub fn check(name: &str, bytes: &[u8], limits: Limits) -> Result<()> {
    let mut reader = Bounded::new(bytes, limits);
    match std::io::copy(&mut reader, &mut std::io::sink()) {
        Ok(_) => Ok(()),
        Err(e) => Err(match reader.over {
            Some(over) => over_limit(name, limits, over),
            None => Error::Io { context: format!("reading {name}"), source: e },
        }),
    }
}

fn over_limit(name: &str, limits: Limits, over: Over) -> Error {
    match over {
        Over::Size => Error::Input(format!(
            "{name} is larger than a {} can be (over {}); check the file name",
            limits.what,
            megabytes(limits.max_bytes)
        )),
        Over::Line(line) => Error::Input(format!(
            "{name} line {line}: longer than {} bytes, more than any row of a {} holds; check the file (is it a CSV file?)",
            limits.max_line.unwrap_or_default(),
            limits.what
        )),
    }
}

/// Reads `path` as UTF-8 text under `limits`.
pub fn read_to_string(path: &Path, limits: Limits) -> Result<String> {
    String::from_utf8(read(path, limits)?).map_err(|e| {
        Error::Input(format!("{} is not UTF-8 text (byte {})", path.display(), e.utf8_error().valid_up_to()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_bytes: u64, max_line: Option<usize>) -> Limits {
        Limits { what: "test file", max_bytes, max_line }
    }

    fn read_all(bytes: &[u8], l: Limits) -> std::result::Result<Vec<u8>, Option<Over>> {
        let mut r = Bounded::new(bytes, l);
        let mut out = Vec::new();
        r.read_to_end(&mut out).map(|_| out).map_err(|_| r.over)
    }

    #[test]
    fn a_file_of_exactly_the_limit_is_read_and_one_byte_more_is_refused() {
        assert_eq!(read_all(b"abcd", limits(4, None)).unwrap(), b"abcd");
        assert!(matches!(read_all(b"abcde", limits(4, None)), Err(Some(Over::Size))));
    }

    #[test]
    fn a_long_line_is_refused_with_its_number() {
        assert!(read_all(b"ab\ncd\n", limits(100, Some(2))).is_ok());
        assert!(matches!(read_all(b"ab\ncd\nefg\n", limits(100, Some(2))), Err(Some(Over::Line(3)))));
    }

    #[test]
    fn an_endless_device_is_refused_without_reading_it_all() {
        let zero = std::fs::File::open("/dev/zero").unwrap();
        let mut r = Bounded::new(zero.take(1 << 30), limits(1 << 20, Some(1 << 10)));
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).is_err());
        assert!(out.len() <= 1 << 20);
        let e = read(Path::new("/dev/zero"), Limits::CHECKPOINT).unwrap_err().to_string();
        assert_eq!(e, "/dev/zero is larger than a checkpoint can be (over 16 KiB); check the file name");
    }

    #[test]
    fn bytes_in_memory_meet_the_same_limits_with_the_same_messages_as_a_file() {
        let dir = std::env::temp_dir().join(format!("chancery-bounded-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let l = limits(8, Some(3));
        for bytes in [&b"abc\ndef\n"[..], b"abc\nde", b"abcd\n", b"ab\nabc\nabcd", b"abc\nabc\nab", b"a\r\nbc\r\n"] {
            let path = dir.join("f.csv");
            std::fs::write(&path, bytes).unwrap();
            let from_file = read(&path, l).map(|_| ()).map_err(|e| e.to_string());
            let name = path.display().to_string();
            let in_memory = check(&name, bytes, l).map_err(|e| e.to_string());
            assert_eq!(in_memory, from_file, "{:?}", String::from_utf8_lossy(bytes));
        }
        assert!(check("x", b"abc\nabc\nab", l).unwrap_err().to_string().contains("larger than a test file"));
        assert!(check("x", b"ab\nabcd", l).unwrap_err().to_string().starts_with("x line 2: longer than 3 bytes"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
