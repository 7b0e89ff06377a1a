//! The service's one writer: a thread that owns the writable [`Trial`] and
//! runs every write (randomisations, outcomes, status changes, account and
//! token changes, login attempts) through
//! [`operations::group::in_one_commit`](crate::operations::group::in_one_commit),
//! answering each request only once its group has committed.
//!
//! Requests queue on a channel; the thread blocks for the first, takes up to
//! [`GROUP_LIMIT`] more that are already waiting, and runs them as one group.
//! A job's result travels back type-erased and is downcast by
//! [`Writer::write`], which alone knows its type.

use std::any::Any;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::ledger::Trial;
use crate::operations::group::{self, Job};

/// The most requests one group commit takes besides the first.
pub const GROUP_LIMIT: usize = 256;

type Erased = Box<dyn Any + Send>;
type Reply = oneshot::Sender<Result<Erased>>;
type Queued = (Job<'static, Erased>, Reply);

/// A handle to the writer thread (cheap to clone). When every handle is
/// dropped the thread finishes the group it is running and stops.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Queued>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Writer {
    /// Starts the writer thread on `trial`; returns the handle and the thread
    /// (join it after dropping every handle, to wait for the last commit).
    pub fn start(trial: Trial) -> Result<(Writer, JoinHandle<()>)> {
        let (queue, rx) = mpsc::channel::<Queued>();
        let thread = std::thread::Builder::new()
            .name("chancery-writer".into())
            .spawn(move || run(trial, rx))
            .map_err(Error::io("starting the writer thread"))?;
        Ok((Writer { queue }, thread))
    }

    /// Runs `job` on the writable trial in the next group and returns its
    /// result once the group is durable.
    pub async fn write<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Trial) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let erased: Job<'static, Erased> = Box::new(move |trial: &mut Trial| job(trial).map(|t| Box::new(t) as Erased));
        self.queue.send((erased, reply)).map_err(|_| stopped())?;
        let result = answer.await.map_err(|_| stopped())??;
        result
            .downcast::<T>()
            .map(|b| *b)
            .map_err(|_| Error::Integrity("the writer answered with the wrong type".into()))
    }
}

fn stopped() -> Error {
    Error::Refused("the service is shutting down; the request was not written".into())
}

fn run(mut trial: Trial, rx: mpsc::Receiver<Queued>) {
    while let Ok(first) = rx.recv() {
        let mut queued = vec![first];
        while queued.len() <= GROUP_LIMIT {
            match rx.try_recv() {
                Ok(q) => queued.push(q),
                Err(_) => break,
            }
        }
        let (jobs, replies): (Vec<_>, Vec<_>) = queued.into_iter().unzip();
        let results = group::in_one_commit(&mut trial, jobs);
        for (reply, result) in replies.into_iter().zip(results) {
            // A requester that went away (its connection closed) still had
            // its write committed; nobody is left to tell.
            let _ = reply.send(result);
        }
    }
}
