//! The crate's error type: one kind per way an operation can be refused.
//!
//! Messages are lowercase, without a trailing period, and say what was wrong,
//! where, and what to do, so that the CLI can print them as one line.

use std::fmt;

/// A `Result` whose error is chancery's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an operation was refused or failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The protocol file is malformed or inconsistent.
    Protocol(String),
    /// A value, referral, CSV file or argument given by the user is invalid.
    Input(String),
    /// The operation is valid in form but not allowed now (duplicate, closed trial, ...).
    Refused(String),
    /// The database or its log failed an integrity check.
    Integrity(String),
    /// A key file problem (missing, exists, unsafe permissions, malformed).
    Key(String),
    /// SQLite reported an error.
    Sqlite {
        /// What chancery was doing.
        context: String,
        /// The underlying error.
        source: rusqlite::Error,
    },
    /// A file could not be read or written.
    Io {
        /// What chancery was doing, including the path.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps a SQLite error with what was being done.
    pub fn sqlite(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Error {
        let context = context.into();
        // A value of the wrong type in one of chancery's own tables: only an
        // edit outside chancery (or a damaged file) puts one there.
        let tampered = |context: &str, column: &str| {
            Error::Integrity(format!(
                "{context}: {column} holds a value of the wrong type, so the database was changed outside chancery; run `chancery verify`"
            ))
        };
        move |source| match &source {
            rusqlite::Error::InvalidColumnType(_, column, _) => tampered(&context, &format!("column {column}")),
            rusqlite::Error::IntegralValueOutOfRange(..) | rusqlite::Error::FromSqlConversionFailure(..) => {
                tampered(&context, "a column")
            }
            _ => Error::Sqlite { context, source },
        }
    }

    /// The same error again (the kind and message), for each of several
    /// requests that failed together (a group of writes whose commit failed).
    pub fn again(&self) -> Error {
        match self {
            Error::Protocol(m) => Error::Protocol(m.clone()),
            Error::Input(m) => Error::Input(m.clone()),
            Error::Refused(m) => Error::Refused(m.clone()),
            Error::Integrity(m) => Error::Integrity(m.clone()),
            Error::Key(m) => Error::Key(m.clone()),
            Error::Sqlite { context, source: rusqlite::Error::SqliteFailure(code, message) } => Error::Sqlite {
                context: context.clone(),
                source: rusqlite::Error::SqliteFailure(*code, message.clone()),
            },
            Error::Io { context, source } => {
                Error::Io { context: context.clone(), source: std::io::Error::new(source.kind(), source.to_string()) }
            }
            Error::Sqlite { .. } => Error::Integrity(self.to_string()),
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Protocol(m) | Error::Input(m) | Error::Refused(m) | Error::Integrity(m) | Error::Key(m) => {
                f.write_str(m)
            }
            Error::Sqlite { context, source } => {
                if let rusqlite::Error::SqliteFailure(e, _) = source {
                    if e.code == rusqlite::ErrorCode::DatabaseBusy || e.code == rusqlite::ErrorCode::DatabaseLocked {
                        return write!(
                            f,
                            "{context}: the database is busy (another coordinator is writing); try again in a moment"
                        );
                    }
                    if e.code == rusqlite::ErrorCode::DatabaseCorrupt {
                        return write!(
                            f,
                            "{context}: the database file is damaged ({source}); restore it from a backup (`chancery backup` makes verified copies) and run `chancery verify`"
                        );
                    }
                    if e.code == rusqlite::ErrorCode::NotADatabase {
                        return write!(
                            f,
                            "{context}: the file is not a SQLite database or is corrupted; restore it from a backup"
                        );
                    }
                }
                write!(f, "{context}: {source}")
            }
            Error::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Sqlite { source, .. } => Some(source),
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
