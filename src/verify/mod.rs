//! Verification: what an auditor runs to show, without trusting chancery or
//! the people running it, that the log is whole, that the tables follow from
//! it, that it extends every checkpoint handed out, and that every allocation
//! came from the committed seed.
//!
//! Checks, each reported by name (docs/SPEC.md §8):
//! `chain` (every entry is canonical, contiguous, hashed and linked, with time
//! never going backwards), `replay` (replaying the log through the same
//! `ledger::apply` live writes use reproduces every derived table, and every
//! recorded stratum follows from the recorded values), `unique_participants`
//! (no participant id recorded twice, no identity randomised twice),
//! `checkpoints`, `seed_commitment`, `allocations` (each re-derives exactly
//! from the seed), `sqlite_integrity` and `schema` (every table, view, index
//! and trigger exactly the schema's). Without the seed, replay still checks that
//! each allocation record follows the one before it in its stream. A check that
//! cannot run (no seed before the reveal, no checkpoint given) is reported as
//! skipped, never as passed; a file of an older schema is verified as it is,
//! its derived tables reported as not compared until `chancery migrate`.
//!
//! Verification streams: one pass over the log in sequence order, with the
//! replay written to a temporary SQLite file on disk (not in memory) with a
//! small fixed page cache, and the tables compared row by row with one cursor
//! on each side. Memory is therefore bounded by the protocol (strata, factor
//! levels), never by the log's length.
//!
//! The replay first runs in a digest form (`Form::Digest`): the tables that
//! are only ever inserted into (and the trial row and allocation state, which
//! are written once from what the last entry left) are not written anywhere but
//! folded into a keyed, order-independent digest, and the live tables are
//! folded the same way in key order, each key checked strictly greater than the
//! last; the rest go to the scratch database as before. That form only ever
//! vouches for a trial whose every derivation check passes and whose digests
//! agree; anything else is verified again from the start in the exact form
//! (`Form::Exact`), everything replayed into the scratch database, whose
//! report names the first differing row. The report is the same either way.
//!
//! The work is spread over threads without changing what is found: one thread
//! reads, hashes and checks each entry's canonical bytes ([`Entry::check`]) and
//! decodes its event; another replays the events, in log order through a
//! bounded queue, and makes every derivation check; SQLite's integrity check
//! runs beside them on its own connection, as do the live tables' digests; and
//! the tables the scratch database holds are compared half on each of two
//! threads, the findings taken in table order. Every finding, and
//! so every reported seq, is what one thread doing it all would report.
//!
//! # Where each part is
//!
//! - `mod.rs`: [`verify`] and its options; the two forms and the fall-back
//!   from one to the other; the threads of one verification and the state of
//!   its pass over the log (`Pass`); connections pinned to the same moment.
//! - `chain.rs`: the `chain` check, on the chain thread: each entry's
//!   canonical bytes, seq, hash, link and time, the checkpoints' heads as the
//!   chain reaches them, and what it hands the derivation thread.
//! - `derive.rs`: derivation, on the other thread: each event replayed
//!   through `ledger::apply` in log order, with the uniqueness, stratum,
//!   seed-commitment and follow-up checks on the way.
//! - `allocations.rs`: the allocation records checked without the seed, and
//!   each allocation re-derived from it.
//! - `replay.rs`: where the replay writes (the scratch database, or the
//!   digests beside it) and the temporary file it lives in.
//! - `digest.rs`: the keyed, order-independent table digests, of the replay
//!   and of the live tables.
//! - `compare.rs`: the derived tables compared row by row with the replay.
//! - `schema.rs`: the `schema` check.
//! - `findings.rs`: the report: each check's finding, passed, failed or
//!   skipped, with its message.
//! - `backup.rs`: [`backup()`], a live database copied and verified before it
//!   is named.

mod allocations;
mod backup;
mod chain;
mod compare;
mod derive;
mod digest;
mod findings;
mod replay;
mod schema;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::allocation::{self, State};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::keys;
use crate::ledger;
use crate::log::{Entry, GENESIS_PREV};
use crate::protocol::Protocol;
use crate::store::{Head, LogRow, SCHEMA_VERSION, Store};

pub use backup::{Backup, backup};
use chain::{BATCH, QUEUE, Step, Texts};
use compare::compare_tables;
use digest::{DIGESTED, Digests, live_digests};
use findings::Finding;
pub use findings::{CHECKS, Check, Report, Status};
use replay::{Replay, ScratchFile};
use schema::SchemaCheck;

/// What to verify, and with what.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The trial database (opened read-only).
    pub db: PathBuf,
    /// The allocation seed, if the auditor holds it (from `--key` or `--seed`);
    /// otherwise the seed revealed in the log, if any, is used.
    pub seed: Option<[u8; 32]>,
    /// Checkpoints to check, each with where it came from (for messages).
    pub checkpoints: Vec<(String, Checkpoint)>,
    /// Folder for the temporary replay database.
    pub scratch_dir: PathBuf,
}

/// What the first entry establishes.
#[derive(Clone)]
struct Genesis {
    protocol: Protocol,
    commitment: String,
    public_key: String,
    trial: String,
}

/// The single pass over the log.
struct Pass<'a> {
    expected_seq: u64,
    prev: String,
    last_ts: Option<String>,
    genesis: Option<Genesis>,
    seed: Option<[u8; 32]>,
    seed_given: bool,
    /// The seed opens the commitment (known after entry 0).
    seed_opens: bool,
    state: Option<State>,
    revealed: Option<u64>,
    /// Where derivation (replay, uniqueness, allocations) stopped, and why.
    stopped: Option<(u64, &'static str)>,
    /// The replay database refuses a second row with the same identity or
    /// participant id, so duplicates need looking up only when an insert fails.
    unique_by_constraint: bool,
    /// The first row whose `type` column is `seed_revealed` (chain thread).
    first_reveal: Option<u64>,
    /// The chain thread leaves decoding the events (after entry 0) to the
    /// derivation thread (the digest form: the two threads then carry about
    /// the same work). An event that does not decode there stops derivation,
    /// so the digest form cannot vouch and the exact form, which decodes on
    /// the chain thread, reports it as a chain failure.
    defer_decode: bool,
    /// Events decoded before on the derivation thread, by kind
    /// (`participant_randomised`, `referral_screened`, any other), whose
    /// allocations the next of their kind reuses.
    spares: [Option<Event>; 3],
    chain: Finding,
    replay: Finding,
    unique: Finding,
    commitment: Finding,
    commitment_checked: bool,
    allocations: Finding,
    allocations_checked: u64,
    /// The permuted blocks re-derivation generated, kept for the next allocations.
    blocks: allocation::Blocks,
    /// Checkpoint indices by the seq of the entry their head names.
    checkpoint_at: BTreeMap<u64, Vec<usize>>,
    checkpoints: &'a [(String, Checkpoint)],
    checkpoint_results: Vec<Option<Finding>>,
}

/// Verifies a trial database. An `Err` means verification could not be done
/// at all (no such file, not a chancery database, no room for the replay);
/// anything wrong with the trial's records is a failing check in the report.
pub fn verify(opts: &VerifyOptions) -> Result<Report> {
    // The digest form vouches for an intact trial; anything it cannot vouch for
    // (a failing check, a digest that differs, an error) is verified again from
    // the start in the exact form, whose report names the damage.
    // The digest form is a second path kept for speed: half the exact form's
    // CPU (`chancery verify --key`, 100,001 entries: 0.77-0.90 s against
    // 1.40-1.70 s; BENCHMARKS.md).
    if let Ok(Ok(report)) = verify_with(opts, true, Form::Digest) {
        return Ok(report);
    }
    match verify_with(opts, true, Form::Exact)? {
        Ok(report) => Ok(report),
        // The trial row pointed at the wrong reveal: find it by scanning the log.
        // (Without the hint there is nothing to rerun for.)
        Err(Rerun) => {
            verify_with(opts, false, Form::Exact)?.map_err(|_| Error::Integrity("verification was rerun twice".into()))
        }
    }
}

/// Verifies in the digest form alone: the report if that form vouches for
/// every check it decides, `None` where [`verify`] would fall back to the
/// exact form. For tests, which show that intact trials take the fast form.
#[doc(hidden)]
pub fn verify_by_digest(opts: &VerifyOptions) -> Result<Option<Report>> {
    Ok(verify_with(opts, true, Form::Digest)?.ok())
}

/// The pass must run again: it named the wrong entry as the log's first
/// reveal, or (in the digest form) it cannot vouch for its result.
struct Rerun;

/// How the replay is compared with the live tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// The tables that are only ever inserted into or derived from the final
    /// allocation state (`DIGESTED`) are folded, on each side, into an
    /// order-independent digest; the others are replayed into the scratch
    /// database and compared row by row. Vouches only for a trial whose every
    /// derivation check passes and whose digests agree.
    Digest,
    /// Every table replayed into the scratch database and compared row by row,
    /// naming the first differing row.
    Exact,
}

fn verify_with(
    opts: &VerifyOptions,
    reveal_from_trial_row: bool,
    form: Form,
) -> Result<std::result::Result<Report, Rerun>> {
    let (live, version) = Store::open_any_for_audit(&opts.db)?;
    // Coordinators may be writing while an auditor verifies: every read is of
    // the database as it stood here (the log and its tables read at one
    // moment, on this connection and on every other one verification opens).
    let pinned = live.pin_snapshot()?;
    // An older schema's derived tables are not compared (their layout is not
    // this build's), so there is nothing for the digests to vouch for.
    if version < SCHEMA_VERSION && form == Form::Digest {
        return Ok(Err(Rerun));
    }
    let schema = SchemaCheck::of(&live, version)?;
    if !schema.problems.is_empty() && form == Form::Digest {
        return Ok(Err(Rerun));
    }

    // The seed: the auditor's, or the one revealed in the log's first
    // `seed_revealed` entry. Reading the reveal ahead of the pass by its `type`
    // column is safe: the pass checks that column against the hashed bytes, and
    // that the seed opens the commitment. To find that entry without a scan of
    // the whole log, the trial row's `revealed_seq` is taken as a hint (it is not
    // trusted: the pass notes where the first `seed_revealed` row really is, and
    // if the hint was wrong verification runs again with the scan).
    let (seed, seed_given, assumed_reveal) = match opts.seed {
        Some(s) => (Some(s), true, None),
        None => {
            let hinted = if reveal_from_trial_row { hinted_reveal(&live) } else { None };
            match hinted {
                Some(row) => (row.as_ref().and_then(seed_in), false, Some(row.map(|r| r.seq))),
                None => (live.first_log_row_of_type("seed_revealed")?.as_ref().and_then(seed_in), false, None),
            }
        }
    };

    let scratch_path = ScratchFile::new(&opts.scratch_dir)?;
    let mut scratch = Store::scratch(&scratch_path.0)?;
    // In the digest form, duplicates are ruled out after the pass instead: by the
    // live tables' keys and identities each strictly increasing in key order.
    let unique_by_constraint = form == Form::Digest
        || scratch.enforces_unique("identities", "identity")? && scratch.enforces_unique("referrals", "participant")?;
    let digest_key = match form {
        Form::Digest => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| Error::Integrity(format!("no randomness for the digests: {e}")))?;
            Some(key)
        }
        Form::Exact => None,
    };
    let mut columns = Vec::new();
    for table in DIGESTED {
        columns.push(scratch.table_columns(table)?);
    }
    let new_pass = || Pass {
        expected_seq: 0,
        prev: GENESIS_PREV.to_string(),
        last_ts: None,
        genesis: None,
        seed,
        seed_given,
        seed_opens: false,
        state: None,
        revealed: None,
        stopped: None,
        unique_by_constraint,
        first_reveal: None,
        defer_decode: form == Form::Digest,
        spares: [None, None, None],
        chain: Finding::default(),
        replay: Finding::default(),
        unique: Finding::default(),
        commitment: Finding::default(),
        commitment_checked: false,
        allocations: Finding::default(),
        allocations_checked: 0,
        blocks: allocation::Blocks::default(),
        checkpoint_at: BTreeMap::new(),
        checkpoints: &opts.checkpoints,
        checkpoint_results: vec![None; opts.checkpoints.len()],
    };
    let mut links = new_pass();
    for (i, (_, c)) in opts.checkpoints.iter().enumerate() {
        links.checkpoint_at.entry(c.length - 1).or_default().push(i);
    }
    let mut pass = new_pass();
    // Three threads, each over its own connection: SQLite's integrity check of
    // the file; the chain (reading, hashing and decoding each entry in order);
    // and the derivation, which replays the decoded events in the same order
    // through a bounded queue, so that memory stays bounded and every finding
    // (and so every reported seq) is what one thread doing both would find.
    let (integrity, links, live, digests) =
        std::thread::scope(|s| -> Result<(String, Pass, Store, Option<Digests>)> {
            let integrity = s.spawn(|| Store::open_any_for_audit(&opts.db)?.0.integrity_check());
            let live_digests = digest_key.map(|key| {
                let columns = &columns;
                let pinned = &pinned;
                s.spawn(move || live_digests(&opts.db, pinned, &key, columns))
            });
            let (steps, queue) = std::sync::mpsc::sync_channel::<Vec<Step>>(QUEUE / BATCH);
            // The undecoded entries' strings come back to be filled again, so
            // they are neither allocated per entry nor freed on another thread.
            let (give_back, spent) = std::sync::mpsc::channel::<Vec<Texts>>();
            let chain = s.spawn(move || -> Result<(Pass, Store)> {
                let mut batch = Vec::with_capacity(BATCH);
                let mut pool = Vec::new();
                live.each_log_row_ref(|row| {
                    links.link(row, &mut batch, &mut pool);
                    if batch.len() >= BATCH {
                        // A failed send means derivation has already ended with an error, which verify reports.
                        let _ = steps.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                        pool.extend(spent.try_iter().flatten());
                    }
                    Ok(())
                })?;
                let _ = steps.send(batch);
                Ok((links, live))
            });
            let derived = (|| {
                let tx = scratch.transaction()?;
                let replay = Replay::new(&tx, digest_key.as_ref(), &opts.db, &pinned);
                for batch in queue {
                    let mut texts = Vec::with_capacity(batch.len());
                    for step in batch {
                        pass.step(&replay, step, &mut texts)?;
                    }
                    // Fails only once the chain thread has finished: then they are freed here.
                    let _ = give_back.send(texts);
                }
                if pass.stopped.is_none()
                    && let (Some(g), Some(state)) = (&pass.genesis, &pass.state)
                {
                    ledger::flush_state(&replay, &g.protocol, state)?;
                }
                let sums = replay.finish();
                tx.commit()?;
                Ok(sums)
            })();
            // The chain thread stops sending if derivation ended early with an error.
            let (links, live) =
                chain.join().map_err(|_| Error::Integrity("the chain check stopped unexpectedly".into()))??;
            let replayed = derived?;
            let integrity = integrity
                .join()
                .map_err(|_| Error::Integrity("SQLite's integrity check stopped unexpectedly".into()))??;
            let digests = match live_digests {
                Some(t) => {
                    let stored =
                        t.join().map_err(|_| Error::Integrity("a table digest stopped unexpectedly".into()))??;
                    Some(Digests { stored, replayed })
                }
                None => None,
            };
            Ok((integrity, links, live, digests))
        })?;
    if assumed_reveal.is_some_and(|seq| seq != links.first_reveal) {
        return Ok(Err(Rerun));
    }
    pass.expected_seq = links.expected_seq;
    pass.prev = links.prev;
    pass.last_ts = links.last_ts;
    pass.chain = links.chain;
    pass.checkpoint_results = links.checkpoint_results;
    if pass.expected_seq == 0 && !pass.chain.failed() {
        pass.chain.fail(0, "the log is empty: it has no trial_created entry".into());
    }
    if let Some(d) = &digests {
        // The digest form vouches only for what the exact form would pass.
        let agree = d.stored.as_ref().is_some_and(|stored| Some(stored) == d.replayed.as_ref());
        if !agree
            || pass.chain.failed()
            || pass.stopped.is_some()
            || pass.replay.failed()
            || pass.unique.failed()
            || integrity != "ok"
        {
            return Ok(Err(Rerun));
        }
    }
    if !pass.chain.failed() && pass.stopped.is_none() && version == SCHEMA_VERSION {
        let compared = |table: &str| form == Form::Exact || !DIGESTED.contains(&table);
        compare_tables((&live, &opts.db, &pinned), (&scratch, &scratch_path.0), &mut pass, compared)?;
        if form == Form::Digest && pass.replay.failed() {
            return Ok(Err(Rerun));
        }
    }
    drop(scratch);
    Ok(Ok(pass.report(&integrity, &schema)))
}

/// The seed in a `seed_revealed` entry, if it reads as one.
fn seed_in(row: &LogRow) -> Option<[u8; 32]> {
    Entry::check(&row.body).ok().and_then(|e| e.event().ok()).and_then(|e| match e {
        Event::SeedRevealed(r) => keys::parse_seed(&r.seed).ok(),
        _ => None,
    })
}

/// The log's first `seed_revealed` row as the trial row names it: `Some(None)`
/// if it records no reveal, `None` if it cannot serve as a hint.
fn hinted_reveal(live: &Store) -> Option<Option<LogRow>> {
    match live.revealed_seq_hint().ok()? {
        None => Some(None),
        Some(seq) => live.log_row_at(seq).ok()?.filter(|r| r.kind == "seed_revealed").map(Some),
    }
}

/// Opens another read-only connection to the live database pinned to the
/// same state as `pinned`, or `None` if a write has moved the log since.
fn open_pinned(db: &Path, pinned: &Head) -> Result<Option<Store>> {
    let store = Store::open_for_audit(db)?;
    let head = store.pin_snapshot()?;
    Ok((head.len == pinned.len && head.hash == pinned.hash).then_some(store))
}
