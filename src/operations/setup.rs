//! Setting a trial up: creating it ([`init`]) and bringing a database written
//! by an older chancery to this build's schema ([`migrate`]). Both take the
//! database's path: one creates it, the other must run before it can be opened.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::clock::Clock;
use crate::error::Result;
use crate::ledger::{self, InitOptions, InitReport};

/// What [`init`] needs.
#[derive(Debug, Clone)]
pub struct InitRequest {
    /// The protocol file.
    pub protocol: PathBuf,
    /// The database to create.
    pub db: PathBuf,
    /// The key file to create (default `<db>.key`).
    pub key: Option<PathBuf>,
    /// A fixed seed, for tests and demonstrations only; otherwise random.
    pub seed: Option<[u8; 32]>,
    /// The acting user.
    pub user: String,
    /// The clock (read inside the transaction that records entry 0).
    pub clock: Clock,
}

/// Creates a trial: the database, its key files (0600) and the first log
/// entry; reports the values to publish before the first allocation.
pub fn init(request: &InitRequest) -> Result<InitReport> {
    ledger::init(&InitOptions {
        protocol: request.protocol.clone(),
        key: super::key_path(&request.db, request.key.as_deref()),
        db: request.db.clone(),
        seed: request.seed,
        user: request.user.clone(),
        now: request.clock,
    })
}

/// What [`migrate`] did.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Migrated {
    /// The schema the database had.
    pub from: i32,
    /// The schema it has now.
    pub to: i32,
}

/// Brings a database written by an older chancery to this build's schema, in
/// one transaction that rebuilds the derived tables from the log and leaves
/// the log, and so every hash, untouched.
pub fn migrate(db: &Path) -> Result<Migrated> {
    let (from, to) = ledger::migrate(db)?;
    Ok(Migrated { from, to })
}
