//! Creating a trial ([`init`]) and bringing an older database to this
//! build's schema ([`migrate`]).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{append, flush_state};
use crate::allocation::{self, State};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::event::{Event, TrialCreated};
use crate::keys::{self, KeyOrigin, TrialKey};
use crate::protocol::{Method, Protocol};
use crate::store::Store;

/// What `init` needs.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Protocol file.
    pub protocol: PathBuf,
    /// Database to create.
    pub db: PathBuf,
    /// Trial key file to create.
    pub key: PathBuf,
    /// A fixed seed for tests and demonstrations; otherwise random.
    pub seed: Option<[u8; 32]>,
    /// The acting user.
    pub user: String,
    /// The clock (read inside the transaction that records entry 0).
    pub now: Clock,
}

/// What `init` reports: the values to publish before the first allocation.
#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    /// Trial id.
    pub trial: String,
    /// SHA-256 of the protocol text.
    pub protocol_sha256: String,
    /// Commitment to the seed.
    pub seed_commitment: String,
    /// Public key that signs checkpoints.
    pub signing_public_key: String,
    /// `random` or `given`.
    pub key_origin: String,
    /// Where the trial key was written.
    pub key_file: String,
    /// Where the signing key was written.
    pub signing_key_file: String,
    /// Hash of the first log entry.
    pub head: String,
}

/// Creates a trial: refuses to overwrite anything, writes the key files
/// (0600), creates the database and records the first log entry.
pub fn init(opts: &InitOptions) -> Result<InitReport> {
    let protocol = Protocol::load(&opts.protocol)?;
    // Checked here, for new trials only: a protocol already in a log still verifies.
    if matches!(protocol.method, Method::Minimisation { .. })
        && !allocation::scores_fit(&protocol, allocation::MINIMISATION_PARTICIPANTS)
    {
        return Err(Error::Protocol(format!(
            "{}: the arms' ratios have so large a least common multiple that minimisation scores could exceed exact 128-bit integers; use ratios with fewer distinct prime factors",
            opts.protocol.display()
        )));
    }
    let signing_path = keys::signing_key_path(&opts.key);
    for (path, what) in [(&opts.db, "database"), (&opts.key, "key file"), (&signing_path, "signing key file")] {
        if path.exists() || path.is_symlink() {
            return Err(Error::Refused(format!(
                "{what} {} already exists; chancery never overwrites it (choose another path)",
                path.display()
            )));
        }
    }
    let ((key, signing), origin) = match opts.seed {
        Some(seed) => (TrialKey::from_given_seed(&protocol.id, seed), KeyOrigin::Given),
        None => (TrialKey::random(&protocol.id)?, KeyOrigin::Random),
    };
    key.write(&opts.key)?;
    let result = (|| {
        keys::write_signing_key(&signing_path, &protocol.id, &signing)?;
        let mut store = Store::create(&opts.db)?;
        let event = Event::TrialCreated(TrialCreated {
            trial: protocol.id.clone(),
            title: protocol.title.clone(),
            protocol: protocol.text.clone(),
            protocol_sha256: hex::encode(protocol.sha256()),
            seed_commitment: keys::seed_commitment(&key.seed),
            signing_public_key: hex::encode(signing.verifying_key().to_bytes()),
            key_origin: origin.as_str().into(),
            chancery_version: env!("CARGO_PKG_VERSION").into(),
        });
        let tx = store.transaction()?;
        let mut head = tx.head()?;
        let now = opts.now.stamp(head.ts.as_deref())?;
        let mut state = State::new(&protocol);
        let (_, hash) = append(&tx, &protocol, &mut state, &mut head, &event, &opts.user, now)?;
        flush_state(&tx, &protocol, &state)?;
        tx.commit()?;
        Ok(InitReport {
            trial: protocol.id.clone(),
            protocol_sha256: hex::encode(protocol.sha256()),
            seed_commitment: keys::seed_commitment(&key.seed),
            signing_public_key: hex::encode(signing.verifying_key().to_bytes()),
            key_origin: origin.as_str().into(),
            key_file: opts.key.display().to_string(),
            signing_key_file: signing_path.display().to_string(),
            head: hash,
        })
    })();
    if result.is_err() {
        // Nothing half-made is left behind: remove what this call created.
        let _ = std::fs::remove_file(&opts.key);
        let _ = std::fs::remove_file(&signing_path);
        if !opts.db.exists()
            || Store::open(&opts.db).map(|s| s.head().map(|h| h.len == 0).unwrap_or(true)).unwrap_or(false)
        {
            let _ = std::fs::remove_file(&opts.db);
        }
    }
    result
}

/// Migrates a database written by an older chancery to this build's schema
/// ([`Store::migrate`]): the derived tables only, never the log.
pub fn migrate(db: &Path) -> Result<(i32, i32)> {
    Store::migrate(db)
}
