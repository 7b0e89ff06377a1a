//! Several writes answered by one commit (group commit): the service's single
//! writer takes every pending request and runs them here.
//!
//! CONTRACT: each job is its own all-or-nothing unit (a refused job is
//! refused alone, the others stand); the results come back in job order, and
//! only once they are durable. This first form commits each job on its own.

use crate::error::Result;
use crate::ledger::Trial;

/// A write to run in a group: an operation on the open trial.
pub type Job<'a, R> = Box<dyn FnOnce(&mut Trial) -> Result<R> + Send + 'a>;

/// Runs `jobs` in order and answers each once its write is durable.
pub fn in_one_commit<R>(trial: &mut Trial, jobs: Vec<Job<'_, R>>) -> Vec<Result<R>> {
    jobs.into_iter().map(|job| job(trial)).collect()
}
