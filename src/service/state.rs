//! What every request handler shares ([`AppState`]): the trial's file and
//! protocol, the key, the writer, a pool of read-only trials, the sessions
//! and the login rate limiter. Cheap to clone (one `Arc`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::keys::TrialKey;
use crate::ledger::Trial;
use crate::protocol::Protocol;

use super::ServeOptions;
use super::auth::{RateLimiter, Sessions};
use super::writer::Writer;

/// The service's shared state.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    db: PathBuf,
    protocol: Protocol,
    key: Arc<TrialKey>,
    signing: Option<Arc<ed25519_dalek::SigningKey>>,
    writer: Writer,
    readers: Mutex<Vec<Trial>>,
    sessions: Sessions,
    limiter: RateLimiter,
    options: ServeOptions,
    clock: SessionClock,
}

// The key and the signing key are never printed, even in a debug dump.
impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("db", &self.inner.db).finish_non_exhaustive()
    }
}

/// The clock sessions and the login rate limit run on: the monotonic clock,
/// plus an offset tests can move forward ([`SessionClock::advance`]) to
/// expire a session without waiting.
#[derive(Clone, Default)]
pub struct SessionClock {
    skew_ms: Arc<AtomicU64>,
}

impl SessionClock {
    /// Now.
    pub fn now(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.skew_ms.load(Ordering::Relaxed))
    }

    /// Moves this clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.skew_ms.fetch_add(by.as_millis() as u64, Ordering::Relaxed);
    }
}

impl AppState {
    /// The state for serving the trial in `options.db`: opens the writable
    /// trial (started on its own writer thread, returned to be joined at
    /// shutdown), checks that `key` is this trial's, and holds the optional
    /// signing key for checkpoints.
    pub fn new(
        options: ServeOptions,
        key: TrialKey,
        signing: Option<ed25519_dalek::SigningKey>,
    ) -> Result<(AppState, std::thread::JoinHandle<()>)> {
        let trial = Trial::open(&options.db)?;
        trial.check_key(&key)?;
        let protocol = trial.protocol().clone();
        let (writer, thread) = Writer::start(trial)?;
        let state = AppState {
            inner: Arc::new(Inner {
                db: options.db.clone(),
                protocol,
                key: Arc::new(key),
                signing: signing.map(Arc::new),
                writer,
                readers: Mutex::new(Vec::new()),
                sessions: Sessions::default(),
                limiter: RateLimiter::default(),
                options,
                clock: SessionClock::default(),
            }),
        };
        Ok((state, thread))
    }

    /// The database file.
    pub fn db(&self) -> &std::path::Path {
        &self.inner.db
    }

    /// The trial's protocol.
    pub fn protocol(&self) -> &Protocol {
        &self.inner.protocol
    }

    /// The trial's title (shown on every page).
    pub fn title(&self) -> &str {
        &self.inner.protocol.title
    }

    /// The trial key (for randomising and reveal; never sent anywhere).
    pub fn key(&self) -> Arc<TrialKey> {
        self.inner.key.clone()
    }

    /// The signing key, if the service was started with one.
    pub fn signing_key(&self) -> Option<Arc<ed25519_dalek::SigningKey>> {
        self.inner.signing.clone()
    }

    /// The options the service was started with.
    pub fn options(&self) -> &ServeOptions {
        &self.inner.options
    }

    /// The sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    /// The login rate limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.inner.limiter
    }

    /// The clock of sessions and rate limits.
    pub fn clock(&self) -> &SessionClock {
        &self.inner.clock
    }

    /// The clock of the trial's writes (the system clock when serving).
    pub fn trial_clock(&self) -> crate::clock::Clock {
        self.inner.options.clock
    }

    /// Runs a write on the writer thread (see [`Writer::write`]).
    pub async fn write<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Trial) -> Result<T> + Send + 'static,
    {
        self.inner.writer.write(job).await
    }

    /// Runs a read on a read-only trial from the pool, on a blocking thread.
    pub async fn read<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Trial) -> Result<T> + Send + 'static,
    {
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let trial = match state.inner.readers.lock().map_err(|_| poisoned())?.pop() {
                Some(t) => t,
                None => Trial::open_read_only(&state.inner.db)?,
            };
            let result = job(&trial);
            state.inner.readers.lock().map_err(|_| poisoned())?.push(trial);
            result
        })
        .await
        .map_err(|e| Error::Integrity(format!("a read stopped unexpectedly: {e}")))?
    }

    /// Runs `job` with the database path on a blocking thread (verify and
    /// the report open their own connections).
    pub async fn with_db<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&std::path::Path) -> Result<T> + Send + 'static,
    {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || job(&db))
            .await
            .map_err(|e| Error::Integrity(format!("a read stopped unexpectedly: {e}")))?
    }
}

fn poisoned() -> Error {
    Error::Integrity("the pool of read-only trials was poisoned by a failed read".into())
}
