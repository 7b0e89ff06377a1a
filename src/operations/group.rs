//! Several writes answered by one commit (group commit): the service's single
//! writer takes every pending request and runs them here.
//!
//! CONTRACT: each job is its own all-or-nothing unit (a refused job is
//! refused alone, the others stand); the results come back in job order, and
//! only once they are durable.
//!
//! The jobs run inside one `BEGIN IMMEDIATE … COMMIT` (WAL,
//! `synchronous=FULL`: one `fsync` for the group), each operation's own
//! transaction a savepoint in it ([`Store::begin_group`](crate::store::Store::begin_group)),
//! so every operation works in a group unchanged: a refused job's savepoint
//! is rolled back and the next job sees the log as the last standing job left
//! it. Each operation reads the clock inside its savepoint, after the jobs
//! before it, so entry times never decrease within a group or across groups.
//!
//! What a `Trial` keeps between writes stays true whatever happens to the
//! group: its allocation state is keyed by the log head it belongs to (and a
//! head's hash covers the whole log), so a state left by a job whose
//! savepoint or group was rolled back matches no head the database can show
//! again, and is loaded afresh; the accepted key and the permuted blocks
//! depend on the key and seed alone.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::{Error, Result};
use crate::ledger::Trial;

/// A write to run in a group: an operation on the open trial.
pub type Job<'a, R> = Box<dyn FnOnce(&mut Trial) -> Result<R> + Send + 'a>;

/// Runs `jobs` in order in one transaction, each in a savepoint of its own,
/// commits once, and answers each once the group is durable. If the group
/// cannot begin or commit, every job that would have written gets the error
/// saying nothing was written (a job refused on its own keeps its refusal,
/// which is still true and says what to correct). A job that panics is
/// answered with an error and the whole group is rolled back, since its
/// write may have been left half made.
pub fn in_one_commit<R>(trial: &mut Trial, jobs: Vec<Job<'_, R>>) -> Vec<Result<R>> {
    if jobs.is_empty() {
        return Vec::new();
    }
    if let Err(e) = trial.store.begin_group() {
        return jobs.iter().map(|_| Err(e.again())).collect();
    }
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        match catch_unwind(AssertUnwindSafe(|| job(trial))) {
            Ok(result) => results.push(result),
            Err(_) => {
                trial.store.abandon_group();
                results.push(Err(Error::Integrity(
                    "this write stopped unexpectedly, so its group was rolled back; nothing of the group was written, try again".into(),
                )));
            }
        }
    }
    match trial.store.end_group() {
        Ok(()) => results,
        Err(e) => results.into_iter().map(|r| r.and(Err(e.again()))).collect(),
    }
}
