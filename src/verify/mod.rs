//! Verification: what an auditor runs to show, without trusting chancery or
//! the people running it, that the log is whole, that the tables follow from
//! it, that it extends every checkpoint handed out, and that every allocation
//! came from the committed seed.
//!
//! Checks, each reported by name (docs/SPEC.md §8):
//! `chain` (every entry is canonical, contiguous, hashed and linked, with time
//! never going backwards), `replay` (replaying the log through the same
//! [`ledger::apply`] live writes use reproduces every derived table, and every
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
//! The replay first runs in a digest form ([`Form::Digest`]): the tables that
//! are only ever inserted into (and the trial row and allocation state, which
//! are written once from what the last entry left) are not written anywhere but
//! folded into a keyed, order-independent digest, and the live tables are
//! folded the same way in key order, each key checked strictly greater than the
//! last; the rest go to the scratch database as before. That form only ever
//! vouches for a trial whose every derivation check passes and whose digests
//! agree; anything else is verified again from the start in the exact form
//! ([`Form::Exact`]), everything replayed into the scratch database, whose
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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::allocation::{self, State};
use crate::checkpoint::Checkpoint;
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::event::{AllocationRecord, Event, Randomised};
use crate::keys;
use crate::ledger;
use crate::log::{Entry, EntryRef, FORMAT_VERSION, GENESIS_PREV};
use crate::protocol::{FieldRef, Protocol};
use crate::store::{
    DERIVED_TABLES, Head, LOG_OBJECTS, LogRow, LogRowRef, NewOutcome, NewReferral, SCHEMA_VERSION, SchemaObject,
    StatusRow, Store, StreamRow, TableDiff, TrialRow, Tx,
};

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

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Ran and found nothing wrong.
    Passed,
    /// Ran and found a problem.
    Failed,
    /// Could not run; `message` says why.
    Skipped,
}

/// One named check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The check's name.
    pub name: &'static str,
    /// `true` passed, `false` failed, `null` skipped.
    pub ok: Option<bool>,
    /// Passed, failed or skipped.
    pub status: Status,
    /// The first failing entry's sequence number, if it failed.
    pub seq: Option<u64>,
    /// What was checked, what failed, or why it was skipped.
    pub message: String,
}

/// The verification report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No check failed.
    pub ok: bool,
    /// Every check ran (none skipped).
    pub complete: bool,
    /// Entries in the log whose chain holds (the whole log when `chain` passed).
    pub entries: u64,
    /// Hash of the last entry of that chain.
    pub head: String,
    /// The least sequence number named by a failing check.
    pub first_bad_seq: Option<u64>,
    /// Where the seed for `allocations` came from: `given`, `revealed` or `none`.
    pub seed: &'static str,
    /// Every check, in order.
    pub checks: Vec<Check>,
}

impl Report {
    /// The first failing check (the one naming `first_bad_seq`).
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().filter(|c| c.status == Status::Failed).min_by_key(|c| c.seq.unwrap_or(u64::MAX))
    }
}

/// The names of the checks, in report order.
pub const CHECKS: [&str; 8] = [
    "chain",
    "replay",
    "unique_participants",
    "checkpoints",
    "seed_commitment",
    "allocations",
    "sqlite_integrity",
    "schema",
];

/// A check's running result: nothing found yet, or the first failure.
#[derive(Debug, Clone, Default)]
struct Finding(Option<(u64, String)>);

impl Finding {
    fn fail(&mut self, seq: u64, msg: String) {
        if self.0.is_none() {
            self.0 = Some((seq, msg));
        }
    }
    /// Records a failure if it is the first or names an earlier entry.
    fn fail_min(&mut self, seq: u64, msg: String) {
        if self.0.as_ref().is_none_or(|(s, _)| seq < *s) {
            self.0 = Some((seq, msg));
        }
    }
    fn failed(&self) -> bool {
        self.0.is_some()
    }
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
        columns.push(scratch.each_row_ref(&format!("SELECT * FROM {table} LIMIT 0"), |_| Ok(()))?);
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

/// Decoded entries waiting for derivation: enough to keep both threads busy,
/// few enough that memory does not depend on the log.
const QUEUE: usize = 512;
/// Entries handed over at a time (one wake-up per batch, not per entry).
const BATCH: usize = 64;

/// An undecoded entry's time, type and data text.
#[derive(Default)]
struct Texts {
    ts: String,
    kind: String,
    data: String,
}

/// What the chain thread hands the derivation, in log order.
// Nearly every step is a `Derive` or an `Undecoded`: boxing them would cost an
// allocation per entry.
#[allow(clippy::large_enum_variant)]
enum Step {
    /// Entry 0 established the trial.
    Genesis(Box<Genesis>),
    /// An entry whose chain checks hold, to derive.
    Derive { seq: u64, ts: String, event: Event },
    /// The same, its event still to be decoded from its type and data text.
    Undecoded { seq: u64, texts: Texts },
    /// The chain broke at this entry: derivation stops there.
    Broken(u64),
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

/// Compares every derived table with its replay: half the tables on a second
/// pair of connections in another thread. The findings are then taken in
/// `DERIVED_TABLES` order, as one thread comparing them all would.
fn compare_tables(
    (live, live_path, pinned): (&Store, &Path, &Head),
    (scratch, scratch_path): (&Store, &Path),
    pass: &mut Pass,
    compared: impl Fn(&str) -> bool + Sync,
) -> Result<()> {
    let last = pass.expected_seq.saturating_sub(1);
    let compare = |live: &Store, scratch: &Store, part: usize| -> Result<Vec<(usize, Option<TableDiff>)>> {
        let mut out = Vec::new();
        for (i, (table, _)) in DERIVED_TABLES.iter().enumerate().filter(|(i, t)| i % 2 == part && compared(t.0)) {
            out.push((i, live.compare_table(scratch, table)?));
        }
        Ok(out)
    };
    // Half the tables on a second connection to the live database, if it can
    // be pinned to the same state as the first (a write may have landed
    // between the two); otherwise all of them on the first.
    let second = open_pinned(live_path, pinned)?;
    let compare = &compare;
    let (mine, other) = std::thread::scope(|s| {
        let other = second.map(|second| s.spawn(move || compare(&second, &Store::open_for_audit(scratch_path)?, 1)));
        let mine = compare(live, scratch, 0);
        (mine, other.map(|o| o.join()))
    });
    let other = match other {
        Some(o) => o.map_err(|_| Error::Integrity("a table comparison stopped unexpectedly".into()))??,
        None => compare(live, scratch, 1)?,
    };
    let mut diffs = mine?;
    diffs.extend(other);
    diffs.sort_by_key(|(i, _)| *i);
    for (i, diff) in diffs {
        let table = DERIVED_TABLES[i].0;
        if let Some(d) = diff {
            // Rows without a seq: the trial row derives from entry 0 (and the reveal);
            // allocation state is the state after the last entry.
            let seq = d.seq.unwrap_or(if table == "trial" { 0 } else { last });
            let what = match (&d.stored, &d.replayed) {
                (Some(s), Some(r)) => format!("stored row {s} differs from the replayed row {r}"),
                (Some(s), None) => format!("stored row {s} is not derived from any log entry"),
                (None, Some(r)) => format!("the replayed row {r} is missing from the database"),
                (None, None) => "differs".to_string(),
            };
            pass.replay.fail_min(
                seq,
                format!(
                    "table {} row {} (entry {seq}): {what}; {} row(s) of {} differ from the log's replay",
                    d.table, d.key, d.rows, d.table
                ),
            );
        }
    }
    Ok(())
}

impl Pass<'_> {
    fn stop(&mut self, seq: u64, why: &'static str) {
        if self.stopped.is_none() {
            self.stopped = Some((seq, why));
        }
    }

    /// One log row, on the chain thread: the chain checks, then (while the chain
    /// holds) the event, decoded or as its text to decode, is handed on for
    /// derivation.
    /// `pool`: strings handed back by the derivation thread, to fill again.
    fn link(&mut self, row: LogRowRef, steps: &mut Vec<Step>, pool: &mut Vec<Texts>) {
        if self.first_reveal.is_none() && row.kind == "seed_revealed" {
            self.first_reveal = Some(row.seq);
        }
        if self.chain.failed() {
            return;
        }
        let seq = self.expected_seq;
        let (entry, event) = match self.check_link(&row) {
            Ok(x) => x,
            Err(msg) => {
                self.chain.fail(seq, msg);
                steps.push(Step::Broken(seq));
                return;
            }
        };
        self.prev.clear();
        self.prev.push_str(row.hash);
        match &mut self.last_ts {
            Some(t) => {
                t.clear();
                t.push_str(&entry.ts);
            }
            None => self.last_ts = Some(entry.ts.to_string()),
        }
        self.expected_seq += 1;
        if let Some(idx) = self.checkpoint_at.get(&seq) {
            for &i in idx {
                let (origin, c) = &self.checkpoints[i];
                let mut f = Finding::default();
                if c.head != self.prev {
                    f.fail(
                        seq,
                        format!(
                            "checkpoint {origin}: entry {seq} has hash {} but the checkpoint says {}: the log was rewritten or forked at or before entry {seq}",
                            self.prev, c.head
                        ),
                    );
                }
                self.checkpoint_results[i] = Some(f);
            }
        }
        if seq == 0
            && let Some(g) = &self.genesis
        {
            steps.push(Step::Genesis(Box::new(g.clone())));
        }
        steps.push(match event {
            Some(event) => Step::Derive { seq, ts: entry.ts.into_owned(), event },
            None => {
                let mut texts = pool.pop().unwrap_or_default();
                for (to, from) in
                    [(&mut texts.ts, &*entry.ts), (&mut texts.kind, &*entry.kind), (&mut texts.data, entry.data)]
                {
                    to.clear();
                    to.push_str(from);
                }
                Step::Undecoded { seq, texts }
            }
        });
    }

    /// One step on the derivation thread, in log order.
    /// `spent`: where an undecoded entry's strings go once it is derived.
    fn step(&mut self, tx: &Replay, step: Step, spent: &mut Vec<Texts>) -> Result<()> {
        match step {
            Step::Genesis(g) => {
                self.state = Some(State::new(&g.protocol));
                self.genesis = Some(*g);
            }
            Step::Broken(seq) => self.stop(seq, "chain"),
            Step::Derive { seq, ts, event } => {
                if self.stopped.is_none() {
                    self.derive(tx, seq, &ts, &event)?;
                }
            }
            Step::Undecoded { seq, texts } => {
                let Texts { ts, kind, data } = &texts;
                if self.stopped.is_none() {
                    let slot = match kind.as_str() {
                        "participant_randomised" => 0,
                        "referral_screened" => 1,
                        _ => 2,
                    };
                    let mut spare = self.spares[slot].take();
                    let decoded = crate::log::decode_event_into(kind, data, &mut spare);
                    match (decoded, &spare) {
                        (Ok(()), Some(event)) => self.derive(tx, seq, ts, event)?,
                        // A chain failure the chain thread did not look for.
                        _ => self.stop(seq, "chain"),
                    }
                    self.spares[slot] = spare;
                }
                spent.push(texts);
            }
        }
        Ok(())
    }

    /// Follow-up events are only ever recorded for randomised participants.
    fn must_be_randomised(&mut self, tx: &Replay, seq: u64, participant: &str) -> Result<()> {
        if !tx.randomised_before(participant, seq)? {
            self.replay.fail(seq, format!("entry {seq}: follow-up for {participant:?}, who was never randomised"));
        }
        Ok(())
    }

    /// The chain checks on one row; returns the decoded entry and its event
    /// (`None`: left to the derivation thread to decode).
    fn check_link<'r>(&mut self, row: &LogRowRef<'r>) -> std::result::Result<(EntryRef<'r>, Option<Event>), String> {
        let seq = self.expected_seq;
        if row.seq != seq {
            return Err(if row.seq > seq {
                format!("entry {seq} is missing: the next stored entry is {}", row.seq)
            } else {
                format!("entry {} is stored out of order (expected {seq})", row.seq)
            });
        }
        let entry = Entry::check(row.body).map_err(|m| format!("entry {seq} does not decode: {m}"))?;
        if entry.seq != seq {
            return Err(format!("entry {seq}'s bytes say seq {}: entries were moved or swapped", entry.seq));
        }
        if entry.v != FORMAT_VERSION {
            return Err(format!("entry {seq} has format version {}; this build verifies {FORMAT_VERSION}", entry.v));
        }
        // The hash as Entry::hash_of writes it (lowercase hex), on the stack.
        let mut hex_hash = [0u8; 64];
        hex::encode_to_slice(Sha256::digest(row.body.as_bytes()), &mut hex_hash).map_err(|e| e.to_string())?;
        if hex_hash[..] != *row.hash.as_bytes() {
            let hash = String::from_utf8_lossy(&hex_hash);
            return Err(format!(
                "entry {seq}'s stored hash {} is not the SHA-256 of its bytes ({hash}): the entry was altered",
                row.hash
            ));
        }
        if entry.prev != self.prev && seq == 0 {
            return Err("entry 0's prev is not 64 zeros".into());
        }
        if entry.prev != self.prev {
            return Err(format!(
                "entry {seq}'s prev {} is not entry {}'s hash {}: the chain is broken",
                entry.prev,
                seq - 1,
                self.prev
            ));
        }
        if entry.ts != row.ts || entry.kind != row.kind {
            return Err(format!("entry {seq}'s ts/type columns disagree with its hashed bytes"));
        }
        // A batch's entries share one time: the same text as the entry before,
        // which passed these checks, needs neither again.
        let as_before = self.last_ts.as_deref() == Some(&*entry.ts);
        if !as_before && Timestamp::parse(&entry.ts).map(|t| t.to_log_text()).ok().as_deref() != Some(&*entry.ts) {
            return Err(format!("entry {seq}'s time {:?} is not in the log's time format", entry.ts));
        }
        if let Some(last) = &self.last_ts
            && !as_before
            && *entry.ts < **last
        {
            return Err(format!("entry {seq}'s time {} is earlier than entry {}'s ({last})", entry.ts, seq - 1));
        }
        if self.defer_decode && seq != 0 {
            // What the match below refuses, read from the type alone.
            if entry.kind == "trial_created" {
                return Err(format!("entry {seq} is a second trial_created"));
            }
            return Ok((entry, None));
        }
        let event = entry.event().map_err(|m| format!("entry {seq}: {m}"))?;
        match (&event, seq) {
            (Event::TrialCreated(t), 0) => {
                if hex::encode(Sha256::digest(t.protocol.as_bytes())) != t.protocol_sha256 {
                    return Err("entry 0's protocol_sha256 is not the SHA-256 of its protocol text".into());
                }
                let protocol = Protocol::parse_recorded("the protocol in log entry 0", &t.protocol)
                    .map_err(|e| format!("entry 0's protocol does not parse: {e}"))?;
                if protocol.id != t.trial {
                    return Err(format!("entry 0 names trial {:?} but its protocol is {:?}", t.trial, protocol.id));
                }
                self.state = Some(State::new(&protocol));
                self.genesis = Some(Genesis {
                    protocol,
                    commitment: t.seed_commitment.clone(),
                    public_key: t.signing_public_key.clone(),
                    trial: t.trial.clone(),
                });
            }
            (_, 0) => return Err("entry 0 must be trial_created".into()),
            (Event::TrialCreated(_), _) => return Err(format!("entry {seq} is a second trial_created")),
            _ => {}
        }
        Ok((entry, Some(event)))
    }

    /// Replays one event into the scratch tables, checking uniqueness, the
    /// stratum, the commitment and (with the seed) the allocation on the way.
    fn derive(&mut self, tx: &Replay, seq: u64, ts: &str, event: &Event) -> Result<()> {
        let (Some(g), Some(mut state)) = (self.genesis.take(), self.state.take()) else { return Ok(()) };
        let result = self.derive_with(tx, &g, &mut state, (seq, ts), event);
        self.genesis = Some(g);
        self.state = Some(state);
        result
    }

    fn derive_with(
        &mut self,
        tx: &Replay,
        g: &Genesis,
        state: &mut State,
        (seq, ts): (u64, &str),
        event: &Event,
    ) -> Result<()> {
        if seq == 0
            && let Some(seed) = &self.seed
        {
            self.seed_opens = keys::seed_commitment(seed) == g.commitment;
            if self.seed_given {
                self.commitment_checked = true;
                if !self.seed_opens {
                    self.commitment.fail(
                        0,
                        "the given seed does not open the seed commitment in entry 0: it is not this trial's seed, or the log was rebuilt under another seed".into(),
                    );
                }
            }
        }
        let before = (self.replay.clone(), self.allocations.clone(), self.allocations_checked);
        let mut levels = None;
        match event {
            Event::ParticipantRandomised(r) => {
                if !self.unique_by_constraint
                    && let Some(msg) = self.duplicate(tx, seq, event)?
                {
                    self.unique.fail(seq, msg);
                    self.stop(seq, "unique_participants");
                    return Ok(());
                }
                // The factor levels, once the label is found to name them.
                levels = match stratum_of_values(&g.protocol, r) {
                    Ok((levels, label)) if label == r.stratum => Some(levels),
                    Ok((_, label)) => {
                        self.replay.fail(
                            seq,
                            format!(
                                "entry {seq}: recorded stratum {:?}, but its recorded values give {label:?}",
                                r.stratum
                            ),
                        );
                        None
                    }
                    Err(m) => {
                        self.replay.fail(seq, format!("entry {seq}: {m}"));
                        None
                    }
                };
                if let Err(m) = record_follows(&g.protocol, state, r) {
                    self.replay.fail(seq, format!("entry {seq}: {m}"));
                }
                if let Some(seed) = self.seed
                    && self.seed_opens
                    && !self.allocations.failed()
                {
                    if let Some(at) = self.revealed {
                        self.allocations
                            .fail(seq, format!("entry {seq} allocates after the seed was revealed at entry {at}"));
                    } else {
                        let to = (&mut self.blocks, &mut self.allocations);
                        check_allocation(&g.protocol, &seed, state, (seq, r), levels.as_deref(), to);
                        self.allocations_checked += 1;
                    }
                }
            }
            Event::ReferralScreened(_) => {
                if !self.unique_by_constraint
                    && let Some(msg) = self.duplicate(tx, seq, event)?
                {
                    self.unique.fail(seq, msg);
                    self.stop(seq, "unique_participants");
                    return Ok(());
                }
            }
            Event::SeedRevealed(r) => {
                if self.revealed.is_some() {
                    self.replay.fail(seq, format!("entry {seq} reveals the seed a second time"));
                }
                let opens = keys::parse_seed(&r.seed).is_ok_and(|s| keys::seed_commitment(&s) == g.commitment)
                    && r.seed == r.seed.to_ascii_lowercase();
                if !opens {
                    self.commitment.fail(seq, format!("entry {seq}: the revealed seed does not open the commitment"));
                }
                self.commitment_checked = true;
                self.revealed = Some(seq);
            }
            Event::OutcomeRecorded(o) => self.must_be_randomised(tx, seq, &o.participant)?,
            Event::OutcomeCorrected(c) => self.must_be_randomised(tx, seq, &c.participant)?,
            Event::StatusChanged(c) => self.must_be_randomised(tx, seq, &c.participant)?,
            Event::ConsentRenewed(c) => self.must_be_randomised(tx, seq, &c.participant)?,
            Event::TrialCreated(_) => {}
        }
        if let Err(e) = ledger::apply(tx, &g.protocol, state, seq, ts, event, levels.as_deref()) {
            // With the replay database's unique indexes, a duplicate is what makes
            // the insert fail: the look-ups run only then, and the entry is judged
            // as if they had run first (what it found before them is forgotten).
            if self.unique_by_constraint
                && let Some(msg) = self.duplicate(tx, seq, event)?
            {
                self.replay = before.0;
                self.allocations = before.1;
                self.allocations_checked = before.2;
                self.unique.fail(seq, msg);
                self.stop(seq, "unique_participants");
                return Ok(());
            }
            self.replay.fail(seq, format!("entry {seq} cannot be replayed: {e}"));
            self.stop(seq, "replay");
        }
        Ok(())
    }

    /// Why a referral or randomisation event duplicates an earlier entry, if it does:
    /// an identity already randomised, or a participant id already recorded.
    fn duplicate(&self, tx: &Replay, seq: u64, event: &Event) -> Result<Option<String>> {
        let tx = tx.scratch;
        let (participant, identity) = match event {
            Event::ParticipantRandomised(r) => (&r.participant, Some(&r.identity)),
            Event::ReferralScreened(r) => (&r.participant, None),
            _ => return Ok(None),
        };
        if let Some(identity) = identity
            && let Some(other) = tx.identity_before(identity, seq)?
        {
            return Ok(Some(format!(
                "entry {seq}: participant {participant} has the identity already randomised as participant {other}"
            )));
        }
        if tx.referral_before(participant, seq)? {
            return Ok(Some(format!("entry {seq}: participant {participant} is recorded twice")));
        }
        Ok(None)
    }

    fn report(self, integrity: &str, schema: &SchemaCheck) -> Report {
        let entries = self.expected_seq;
        let stopped_note = |name: &str| match self.stopped {
            Some((seq, why)) if why != name => {
                Some(format!("not completed: derivation stopped at entry {seq}, where `{why}` failed"))
            }
            _ => None,
        };
        let mut checks = Vec::new();
        let make = |name: &'static str, f: &Finding, passed: String, skipped: Option<String>| match (&f.0, skipped) {
            (Some((seq, m)), _) => {
                Check { name, ok: Some(false), status: Status::Failed, seq: Some(*seq), message: m.clone() }
            }
            (None, Some(why)) => Check { name, ok: None, status: Status::Skipped, seq: None, message: why },
            (None, None) => Check { name, ok: Some(true), status: Status::Passed, seq: None, message: passed },
        };
        checks.push(make(
            "chain",
            &self.chain,
            format!("{entries} entries: canonical bytes, contiguous seq from 0, hashes, links and times hold"),
            None,
        ));
        checks.push(make(
            "replay",
            &self.replay,
            "replaying the log reproduces every derived table; every stratum follows from its recorded values".into(),
            stopped_note("replay").or_else(|| schema.tables_not_compared()),
        ));
        checks.push(make(
            "unique_participants",
            &self.unique,
            "no participant id recorded twice and no identity randomised twice".into(),
            stopped_note("unique_participants"),
        ));
        // Checkpoints.
        let mut cp = Finding::default();
        let mut unchecked = Vec::new();
        for (i, (origin, c)) in self.checkpoints.iter().enumerate() {
            if let Some(g) = &self.genesis {
                if c.trial != g.trial {
                    cp.fail_min(0, format!("checkpoint {origin} is for trial {:?}, not {:?}", c.trial, g.trial));
                    continue;
                }
                if !c.signature_valid(&g.public_key) {
                    cp.fail_min(
                        0,
                        format!(
                            "checkpoint {origin}: its signature does not verify under the signing key in entry 0: it is not this trial's checkpoint, or entry 0 (and so the whole log) was replaced"
                        ),
                    );
                    continue;
                }
            }
            match &self.checkpoint_results[i] {
                Some(Finding(Some((seq, m)))) => cp.fail_min(*seq, m.clone()),
                Some(_) => {}
                None if !self.chain.failed() => cp.fail_min(
                    entries,
                    format!(
                        "checkpoint {origin} covers {} entries but the log has {entries}: entries {entries}–{} were removed (truncation)",
                        c.length,
                        c.length - 1
                    ),
                ),
                None => unchecked.push(origin.clone()),
            }
        }
        let cp_skip = if self.checkpoints.is_empty() {
            Some("no --checkpoint given: truncation and a consistent rewrite are detectable only against a checkpoint held outside the database".to_string())
        } else if !unchecked.is_empty() && !cp.failed() {
            Some(format!("not checked beyond the chain's break: {}", unchecked.join(", ")))
        } else {
            None
        };
        checks.push(make(
            "checkpoints",
            &cp,
            format!("the log extends all {} checkpoint(s) and their signatures verify", self.checkpoints.len()),
            cp_skip,
        ));
        let no_seed = "no seed: give --key or --seed, or verify after `chancery reveal`".to_string();
        checks.push(make(
            "seed_commitment",
            &self.commitment,
            format!("the {} seed opens the commitment in entry 0", if self.seed_given { "given" } else { "revealed" }),
            (!self.commitment_checked).then(|| no_seed.clone()),
        ));
        let alloc_skip = if self.seed.is_none() {
            Some(no_seed)
        } else if !self.seed_opens {
            Some("the seed does not open the commitment, so allocations cannot be re-derived from it".into())
        } else {
            stopped_note("allocations")
        };
        checks.push(make(
            "allocations",
            &self.allocations,
            format!("all {} allocations re-derive exactly from the seed", self.allocations_checked),
            alloc_skip,
        ));
        let mut sqlite = Finding::default();
        if integrity != "ok" {
            sqlite.fail(0, format!("SQLite's integrity_check reports: {integrity}"));
        }
        checks.push(make("sqlite_integrity", &sqlite, "SQLite's integrity_check: ok".into(), None));
        checks.push(schema.check());
        // A failed check with skipped dependants: the report's ok is the absence of failures.
        let ok = checks.iter().all(|c| c.status != Status::Failed);
        let complete = checks.iter().all(|c| c.status != Status::Skipped);
        let first_bad_seq = checks.iter().filter_map(|c| c.seq).min();
        Report {
            ok,
            complete,
            entries,
            head: self.prev,
            first_bad_seq,
            seed: match (self.seed, self.seed_given) {
                (None, _) => "none",
                (Some(_), true) => "given",
                (Some(_), false) => "revealed",
            },
            checks,
        }
    }
}

/// The `schema` check: the file's tables, views, indexes and triggers against
/// those this build's schema creates (docs/SPEC.md §8, appendix A).
struct SchemaCheck {
    /// The file's `user_version`.
    version: i32,
    /// What differs, one phrase per object, in type and name order.
    problems: Vec<String>,
}

impl SchemaCheck {
    /// Compares `sqlite_master` with the schema made afresh. A file of an older
    /// schema has its derived tables in that schema's layout: only the log's
    /// objects (alike in every schema) are compared, and no other trigger may
    /// exist (no schema has had one).
    fn of(live: &Store, version: i32) -> Result<SchemaCheck> {
        let older = version < SCHEMA_VERSION;
        let checked = |o: &&SchemaObject| !older || LOG_OBJECTS.contains(&o.name.as_str()) || o.kind == "trigger";
        let found = live.schema_objects()?;
        let found: Vec<&SchemaObject> = found.iter().filter(checked).collect();
        let expected = Store::expected_schema()?;
        let expected: Vec<&SchemaObject> = expected.iter().filter(checked).collect();
        let problems = schema_differences(&found, &expected, version);
        Ok(SchemaCheck { version, problems })
    }

    /// Why the derived tables were not compared, for a file of an older schema.
    fn tables_not_compared(&self) -> Option<String> {
        (self.version < SCHEMA_VERSION).then(|| {
            format!(
                "not compared: the derived tables are in schema {}'s layout (this build's is {SCHEMA_VERSION}); the log was replayed and every other check ran. Run `chancery migrate` (it rebuilds only the derived tables) and verify again to compare them",
                self.version
            )
        })
    }

    fn check(&self) -> Check {
        let check = |status, ok, message| Check { name: "schema", ok, status, seq: None, message };
        if !self.problems.is_empty() {
            let mut message = self.problems.iter().take(6).cloned().collect::<Vec<_>>().join("; ");
            if self.problems.len() > 6 {
                message.push_str(&format!("; and {} more", self.problems.len() - 6));
            }
            return check(Status::Failed, Some(false), message);
        }
        if self.version < SCHEMA_VERSION {
            return check(
                Status::Skipped,
                None,
                format!(
                    "schema {}, older than this build's {SCHEMA_VERSION}: the log table and its append-only triggers are as every schema defines them and there is no other trigger; the derived tables' layout is not checked until `chancery migrate`",
                    self.version
                ),
            );
        }
        check(
            Status::Passed,
            Some(true),
            format!(
                "the tables, views, indexes and triggers are exactly schema {SCHEMA_VERSION}'s; application_id and user_version are chancery's"
            ),
        )
    }
}

/// Each object that is not as `expected` defines it: missing, not part of the
/// schema, or defined otherwise. Both lists sorted by type and name.
fn schema_differences(found: &[&SchemaObject], expected: &[&SchemaObject], version: i32) -> Vec<String> {
    let key = |o: &SchemaObject| (o.kind.clone(), o.name.clone());
    let mut problems = Vec::new();
    let (mut f, mut e) = (found.iter().peekable(), expected.iter().peekable());
    loop {
        match (f.peek(), e.peek()) {
            (None, None) => break,
            (Some(x), Some(y)) if key(x) == key(y) => {
                if x != y {
                    problems.push(format!("{} {} differs from schema {version}'s definition", x.kind, x.name));
                }
                f.next();
                e.next();
            }
            (Some(x), y) if y.is_none_or(|y| key(x) < key(y)) => {
                problems.push(format!("{} {} is not part of schema {version}", x.kind, x.name));
                f.next();
            }
            (_, Some(y)) => {
                problems.push(format!("{} {} is missing", y.kind, y.name));
                e.next();
            }
            (Some(_), None) => unreachable!("handled above"),
        }
    }
    problems
}

/// Whether a randomisation's allocation record follows the one before it in
/// its stream, as any allocation must, checked without the seed (docs/SPEC.md
/// §8.1): permuted blocks number from 1 and fill positions 1, 2, … of a block
/// with the same start word, a new block (the next number, position 1, a later
/// start word) beginning only once the last one's positions filled one of the
/// protocol's block sizes; simple randomisation and minimisation use the words
/// that follow the previous participant's. `state` is the state before it.
fn record_follows(protocol: &Protocol, state: &State, r: &Randomised) -> std::result::Result<(), String> {
    use crate::protocol::Method;
    match (&protocol.method, &r.allocation) {
        (
            Method::PermutedBlocks { block_sizes },
            AllocationRecord::PermutedBlocks { stream, block, start_word, position },
        ) => {
            let expected = format!("blocks/{}", r.stratum);
            if *stream != expected {
                return Err(format!(
                    "the allocation record names stream {stream:?}, but its stratum's is {expected:?}"
                ));
            }
            let at = format!("block {block} (start word {start_word}) position {position}");
            let max = block_sizes.iter().copied().max().unwrap_or(0);
            if *position > max {
                return Err(format!("{at} is beyond the largest block size, {max}"));
            }
            match state.blocks.get(stream) {
                None if (*block, *start_word, *position) == (1, 0, 1) => Ok(()),
                None => {
                    Err(format!("{at} is the stream's first allocation, which takes block 1 (start word 0) position 1"))
                }
                Some(c) if *block == c.block && *start_word == c.start_word && *position == c.used + 1 => Ok(()),
                Some(c)
                    if *block == c.block + 1
                        && *start_word > c.start_word
                        && *position == 1
                        && block_sizes.contains(&c.used) =>
                {
                    Ok(())
                }
                Some(c) => Err(format!(
                    "{at} does not follow the stream's last allocation, block {} (start word {}) position {}: positions fill a block in turn, and a new block starts (position 1, at a later word) only when the last is full{}",
                    c.block,
                    c.start_word,
                    c.used,
                    if *position <= c.used && *block == c.block { "; this position was already used" } else { "" }
                )),
            }
        }
        (Method::Simple, AllocationRecord::Simple { stream, word_start, word_end })
        | (Method::Minimisation { .. }, AllocationRecord::Minimisation { stream, word_start, word_end, .. }) => {
            let (name, least) =
                if matches!(protocol.method, Method::Simple) { ("simple", 1) } else { ("minimisation", 0) };
            if stream != name {
                return Err(format!("the allocation record names stream {stream:?}, not {name:?}"));
            }
            if *word_start != state.next_word {
                return Err(format!(
                    "the allocation uses words from {word_start}, but the previous allocation's ended at {}: each starts where the last ended",
                    state.next_word
                ));
            }
            if *word_end < word_start.saturating_add(least) {
                return Err(format!("the allocation's words end at {word_end}, before they start ({word_start})"));
            }
            Ok(())
        }
        _ => Err("the allocation record is not of the protocol's method".into()),
    }
}

/// The factor levels the recorded values give, and their stratum label (docs/SPEC.md §6.1).
fn stratum_of_values(protocol: &Protocol, r: &Randomised) -> std::result::Result<(Vec<usize>, String), String> {
    let mut levels = Vec::with_capacity(protocol.factors.len());
    for f in &protocol.factors {
        let value = match f.source {
            FieldRef::Site => Some(r.site.clone()),
            FieldRef::Region => protocol.site(&r.site).and_then(|s| s.region.clone()),
            FieldRef::Field(i) => r.values.get(&protocol.fields[i].name).cloned(),
        };
        let level = value
            .as_ref()
            .and_then(|v| f.levels.iter().position(|l| l == v))
            .ok_or_else(|| format!("the recorded values give no level of factor {} ({value:?})", f.name))?;
        levels.push(level);
    }
    let label = allocation::stratum_label(protocol, &levels);
    Ok((levels, label))
}

/// Re-derives one allocation from the seed and the replayed state; `levels`,
/// the factor levels its stratum label names, if known.
fn check_allocation(
    protocol: &Protocol,
    seed: &[u8; 32],
    state: &State,
    (seq, r): (u64, &Randomised),
    levels: Option<&[usize]>,
    (blocks, f): (&mut allocation::Blocks, &mut Finding),
) {
    let parsed;
    let levels = match levels {
        Some(l) => l,
        None => match ledger::parse_stratum(protocol, &r.stratum) {
            Ok(l) => {
                parsed = l;
                &parsed
            }
            Err(m) => return f.fail(seq, format!("entry {seq}: {m}")),
        },
    };
    let derived = allocation::allocate_with(protocol, seed, state, levels, blocks);
    let arm = &protocol.arms[derived.arm].id;
    let record = AllocationRecord::from_detail(protocol, &derived.detail);
    if *arm != r.arm {
        f.fail(
            seq,
            format!("entry {seq}: participant {} is recorded in arm {} but the seed gives {arm}", r.participant, r.arm),
        );
    } else if record != r.allocation {
        f.fail(
            seq,
            format!(
                "entry {seq}: participant {}'s allocation record {:?} differs from the one the seed gives {:?}",
                r.participant, r.allocation, record
            ),
        );
    }
}

/// The tables the digest form folds into digests: each is only ever inserted
/// into by `ledger::apply` (or, for the trial row, set from entry 0 and the
/// reveal, and for the allocation state, written once from the final state),
/// so its replay is the multiset of rows the events emit. The others
/// (`outcomes`, `participant_status`) are replayed into the scratch database,
/// as corrections and status changes replace rows in place.
const DIGESTED: [&str; 5] = ["trial", "referrals", "identities", "allocation_streams", "allocation_counts"];

/// A table's digest: the sum, modulo 2^256, of a keyed SHA-256 of each row's
/// encoding (types, lengths and bytes of every column). The sum does not depend
/// on the order rows are added in, so the replay (in log order) and the live
/// table (in key order) can each be folded in one pass with constant memory.
/// The key is fresh random bytes for each verification, unknown when the
/// database was written: a sum of unkeyed hashes could be matched by a chosen
/// set of forged rows (a generalised birthday search), a sum of keyed ones only
/// by chance, about 2^-200 at worst.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sum([u64; 4]);

impl Sum {
    fn add(&mut self, h: &[u8; 32]) {
        let mut carry = 0u64;
        for (i, limb) in self.0.iter_mut().enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&h[8 * i..8 * i + 8]);
            let (a, c1) = limb.overflowing_add(u64::from_le_bytes(word));
            let (b, c2) = a.overflowing_add(carry);
            *limb = b;
            carry = u64::from(c1) + u64::from(c2);
        }
    }
}

/// One column's value as SQLite stores it.
#[derive(Debug, Clone, Copy)]
enum Cell<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a [u8]),
    Blob(&'a [u8]),
}

impl<'a> From<rusqlite::types::ValueRef<'a>> for Cell<'a> {
    fn from(v: rusqlite::types::ValueRef<'a>) -> Cell<'a> {
        use rusqlite::types::ValueRef as V;
        match v {
            V::Null => Cell::Null,
            V::Integer(i) => Cell::Int(i),
            V::Real(f) => Cell::Real(f),
            V::Text(t) => Cell::Text(t),
            V::Blob(b) => Cell::Blob(b),
        }
    }
}

/// A key value kept from one row to the next, bytes and all.
#[derive(Debug, Clone)]
enum KeyValue {
    Null,
    Int(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl KeyValue {
    fn of(v: rusqlite::types::ValueRef) -> KeyValue {
        use rusqlite::types::ValueRef as V;
        match v {
            V::Null => KeyValue::Null,
            V::Integer(i) => KeyValue::Int(i),
            V::Real(f) => KeyValue::Real(f),
            V::Text(t) => KeyValue::Text(t.to_vec()),
            V::Blob(b) => KeyValue::Blob(b.to_vec()),
        }
    }

    /// Becomes `v`, reusing its buffer.
    fn set(&mut self, v: rusqlite::types::ValueRef) {
        match (self, v) {
            (KeyValue::Text(t), rusqlite::types::ValueRef::Text(new)) => {
                t.clear();
                t.extend_from_slice(new);
            }
            (this, v) => *this = KeyValue::of(v),
        }
    }

    fn as_ref(&self) -> rusqlite::types::ValueRef<'_> {
        use rusqlite::types::ValueRef as V;
        match self {
            KeyValue::Null => V::Null,
            KeyValue::Int(i) => V::Integer(*i),
            KeyValue::Real(f) => V::Real(*f),
            KeyValue::Text(t) => V::Text(t),
            KeyValue::Blob(b) => V::Blob(b),
        }
    }
}

fn text(s: &str) -> Cell<'_> {
    Cell::Text(s.as_bytes())
}

/// Hashes rows under the verification's key.
struct RowHasher {
    keyed: Sha256,
    buf: Vec<u8>,
}

impl RowHasher {
    fn new(key: &[u8; 32]) -> RowHasher {
        // Domain and key fill exactly one block, compressed once and not per row.
        let mut keyed = Sha256::new();
        keyed.update(b"chancery verify row digest\0\0\0\0\0\0");
        keyed.update(key);
        RowHasher { keyed, buf: Vec::with_capacity(512) }
    }

    /// The keyed hash of one row of table `table` (its index in `DIGESTED`).
    fn hash<'c>(&mut self, table: usize, cells: impl IntoIterator<Item = Cell<'c>>) -> [u8; 32] {
        self.buf.clear();
        self.buf.push(table as u8);
        for cell in cells {
            match cell {
                Cell::Null => self.buf.push(0),
                Cell::Int(i) => {
                    self.buf.push(1);
                    self.buf.extend_from_slice(&i.to_le_bytes());
                }
                Cell::Real(f) => {
                    self.buf.push(2);
                    self.buf.extend_from_slice(&f.to_bits().to_le_bytes());
                }
                Cell::Text(t) | Cell::Blob(t) => {
                    self.buf.push(if matches!(cell, Cell::Text(_)) { 3 } else { 4 });
                    self.buf.extend_from_slice(&(t.len() as u64).to_le_bytes());
                    self.buf.extend_from_slice(t);
                }
            }
        }
        let mut h = self.keyed.clone();
        h.update(&self.buf);
        h.finalize().into()
    }
}

/// Each digested table's digest, in `DIGESTED` order.
type Sums = [Sum; DIGESTED.len()];

/// The two sides' digests: `None` on the live side where its rows cannot match
/// any replay (columns other than the schema's, keys not strictly increasing,
/// an identity twice).
struct Digests {
    stored: Option<Sums>,
    replayed: Option<Sums>,
}

fn digested(table: &str) -> usize {
    DIGESTED.iter().position(|t| *t == table).unwrap_or(0)
}

/// Folds the live digested tables into their digests, reading each as the exact
/// form's comparison does (`SELECT *` in key order) and checking on the way
/// that its columns are the schema's (`columns`, from the scratch database) and
/// its keys strictly increasing, so that no key is there twice and both sides
/// would be walked in the same order (for `identities`, keyed by the identity
/// hash, that no person is there twice). `None` if any of that fails.
/// Opens another read-only connection to the live database pinned to the
/// same state as `pinned`, or `None` if a write has moved the log since.
fn open_pinned(db: &Path, pinned: &Head) -> Result<Option<Store>> {
    let store = Store::open_for_audit(db)?;
    let head = store.pin_snapshot()?;
    Ok((head.len == pinned.len && head.hash == pinned.hash).then_some(store))
}

/// The live tables' digests in the pinned state, or `None` (the digest form
/// then declines) if that state cannot be read on a second connection.
fn live_digests(db: &Path, pinned: &Head, key: &[u8; 32], columns: &[Vec<String>]) -> Result<Option<Sums>> {
    let Some(live) = open_pinned(db, pinned)? else {
        return Ok(None);
    };
    let mut hasher = RowHasher::new(key);
    let mut sums = Sums::default();
    for (t, table) in DIGESTED.iter().enumerate() {
        let key_names = DERIVED_TABLES.iter().find(|(n, _)| n == table).map_or("", |(_, k)| k);
        let expected = &columns[t];
        let key_cols: Vec<usize> =
            key_names.split(',').filter_map(|k| expected.iter().position(|c| c == k.trim())).collect();
        let mut ordered = !key_cols.is_empty();
        let mut last: Option<Vec<KeyValue>> = None;
        let mut sum = Sum::default();
        let names = live.each_row_ref(&format!("SELECT * FROM {table} ORDER BY {key_names}"), |row| {
            let n = row.as_ref().column_count();
            if n != expected.len() {
                ordered = false;
                return Ok(());
            }
            let cell = |i: usize| row.get_ref(i).map_err(Error::sqlite("reading a derived table"));
            match &mut last {
                Some(prev) => {
                    let mut order = std::cmp::Ordering::Equal;
                    for (k, &i) in key_cols.iter().enumerate() {
                        order = crate::store::sql_order_ref(prev[k].as_ref(), cell(i)?);
                        if order.is_ne() {
                            break;
                        }
                    }
                    if order.is_ge() {
                        ordered = false;
                    }
                    for (k, &i) in key_cols.iter().enumerate() {
                        prev[k].set(cell(i)?);
                    }
                }
                None => last = Some(key_cols.iter().map(|&i| cell(i).map(KeyValue::of)).collect::<Result<_>>()?),
            }
            // A column that cannot be read hashes as NULL: the digests then differ, and
            // the exact form reports.
            sum.add(&hasher.hash(t, (0..n).map(|i| row.get_ref(i).map_or(Cell::Null, Cell::from))));
            Ok(())
        })?;
        if !ordered && last.is_some() || names != *expected {
            return Ok(None);
        }
        sums[t] = sum;
    }
    Ok(Some(sums))
}

/// Where one verification's replay writes: in the exact form, the scratch
/// database; in the digest form, the digests of the `DIGESTED` tables, with
/// the scratch database for the rest.
struct Replay<'t, 'c> {
    scratch: &'t Tx<'c>,
    digest: Option<std::cell::RefCell<ReplayDigest>>,
    /// The live database, opened when a follow-up event first needs it,
    /// pinned to the state verification reads.
    db: &'t Path,
    pinned: &'t Head,
    live: std::cell::RefCell<Option<Store>>,
}

struct ReplayDigest {
    hasher: RowHasher,
    sums: Sums,
    trial: Option<TrialRow>,
    revealed: Option<(u64, String)>,
}

impl<'t, 'c> Replay<'t, 'c> {
    fn new(scratch: &'t Tx<'c>, key: Option<&[u8; 32]>, db: &'t Path, pinned: &'t Head) -> Replay<'t, 'c> {
        let digest = key.map(|key| {
            std::cell::RefCell::new(ReplayDigest {
                hasher: RowHasher::new(key),
                sums: Sums::default(),
                trial: None,
                revealed: None,
            })
        });
        Replay { scratch, digest, db, pinned, live: std::cell::RefCell::new(None) }
    }

    /// The replayed digests, the trial row folded in as the last entry left it.
    fn finish(self) -> Option<Sums> {
        let mut d = self.digest?.into_inner();
        if let Some(t) = d.trial.take() {
            let (seq, at) = match &d.revealed {
                Some((seq, at)) => (Cell::Int(*seq as i64), text(at)),
                None => (Cell::Null, Cell::Null),
            };
            let h = d.hasher.hash(
                digested("trial"),
                [
                    Cell::Int(1),
                    text(&t.trial_id),
                    text(&t.title),
                    text(&t.protocol),
                    text(&t.protocol_sha256),
                    text(&t.seed_commitment),
                    text(&t.signing_public_key),
                    text(&t.key_origin),
                    text(&t.created_at),
                    seq,
                    at,
                ],
            );
            d.sums[digested("trial")].add(&h);
        }
        Some(d.sums)
    }

    fn fold<'x>(&self, table: &str, cells: impl IntoIterator<Item = Cell<'x>>) -> bool {
        match &self.digest {
            Some(d) => {
                let mut d = d.borrow_mut();
                let t = digested(table);
                let h = d.hasher.hash(t, cells);
                d.sums[t].add(&h);
                true
            }
            None => false,
        }
    }

    /// Whether an entry before `seq` randomised `participant`: in the scratch
    /// database, or in the digest form the live `participants` view of `referrals` (the
    /// digests then show that table to be the replay's, whose rows are inserted
    /// at their entry's seq and never change).
    fn randomised_before(&self, participant: &str, seq: u64) -> Result<bool> {
        if self.digest.is_none() {
            return Ok(self.scratch.participant(participant)?.is_some());
        }
        let mut live = self.live.borrow_mut();
        let live = match &mut *live {
            Some(l) => l,
            None => live.insert(
                open_pinned(self.db, self.pinned)?
                    .ok_or_else(|| Error::Integrity("the database changed while it was read; verify again".into()))?,
            ),
        };
        Ok(live.participant_seq(participant)?.is_some_and(|s| s >= 0 && (s as u64) < seq))
    }
}

impl ledger::Sink for Replay<'_, '_> {
    fn insert_trial(&self, t: &TrialRow) -> Result<()> {
        match &self.digest {
            Some(d) => {
                let mut d = d.borrow_mut();
                if d.trial.is_some() {
                    return Err(Error::Integrity("a second trial row".into()));
                }
                d.trial = Some(t.clone());
                Ok(())
            }
            None => self.scratch.insert_trial(t),
        }
    }
    fn insert_referral(&self, r: &NewReferral) -> Result<()> {
        let (stratum, arm, identity) = match r.randomised {
            Some((stratum, arm, identity)) => (text(stratum), text(arm), text(identity)),
            None => (Cell::Null, Cell::Null, Cell::Null),
        };
        let cells = [
            text(r.participant),
            Cell::Int(r.seq as i64),
            text(r.site),
            text(r.status),
            text(r.reasons),
            text(r.screened_at),
            stratum,
            arm,
            identity,
        ];
        if !self.fold("referrals", cells) {
            return self.scratch.insert_referral(r);
        }
        if let Some((_, _, identity)) = r.randomised {
            self.fold("identities", [text(identity), text(r.participant), Cell::Int(r.seq as i64)]);
        }
        Ok(())
    }
    fn set_revealed(&self, seq: u64, ts: &str) -> Result<()> {
        match &self.digest {
            Some(d) => {
                let mut d = d.borrow_mut();
                // As the UPDATE does: nothing without a trial row, the last reveal kept.
                if d.trial.is_some() {
                    d.revealed = Some((seq, ts.to_string()));
                }
                Ok(())
            }
            None => self.scratch.set_revealed(seq, ts),
        }
    }
    fn insert_outcomes(
        &self,
        participant: &str,
        timepoint: &str,
        collected_on: &str,
        seq: u64,
        values: &[(&str, &str)],
    ) -> Result<()> {
        self.scratch.insert_outcomes(participant, timepoint, collected_on, seq, values)
    }
    fn outcome(&self, participant: &str, timepoint: &str, field: &str) -> Result<Option<(String, String, u32)>> {
        self.scratch.outcome(participant, timepoint, field)
    }
    fn update_outcome(&self, o: &NewOutcome) -> Result<()> {
        self.scratch.update_outcome(o)
    }
    fn status(&self, participant: &str) -> Result<Option<StatusRow>> {
        self.scratch.status_of(participant)
    }
    fn put_status(&self, st: &StatusRow) -> Result<()> {
        self.scratch.put_status(st)
    }
    fn put_stream(&self, stream: &str, row: StreamRow) -> Result<()> {
        let cells = [
            text(stream),
            Cell::Int(row.block as i64),
            Cell::Int(row.start_word as i64),
            Cell::Int(row.used as i64),
            Cell::Int(row.next_word as i64),
        ];
        if self.fold("allocation_streams", cells) { Ok(()) } else { self.scratch.put_stream(stream, row) }
    }
    fn put_count(&self, factor: usize, level: usize, arm: usize, n: u64) -> Result<()> {
        let cells = [Cell::Int(factor as i64), Cell::Int(level as i64), Cell::Int(arm as i64), Cell::Int(n as i64)];
        if self.fold("allocation_counts", cells) { Ok(()) } else { self.scratch.put_count(factor, level, arm, n) }
    }
}

/// A temporary file removed (with SQLite's side files) when dropped.
struct ScratchFile(PathBuf);

impl ScratchFile {
    fn new(dir: &Path) -> Result<ScratchFile> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let path = dir.join(format!("chancery-verify-{}-{nanos}.db", std::process::id()));
        if path.exists() {
            return Err(Error::Refused(format!("{} already exists", path.display())));
        }
        Ok(ScratchFile(path))
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let mut p = self.0.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
    }
}

/// What `backup` made.
#[derive(Debug, Clone, Serialize)]
pub struct Backup {
    /// The copy.
    pub path: PathBuf,
    /// Entries in the copied log.
    pub entries: u64,
    /// Its head.
    pub head: String,
}

/// Copies a live trial database with SQLite's online backup API (consistent
/// even while coordinators write), verifies the copy — chain, replay and
/// SQLite integrity — and only then gives it its name. Never overwrites.
pub fn backup(db: &Path, to: &Path, overwrite: crate::outfile::Overwrite) -> Result<Backup> {
    let replace = overwrite == crate::outfile::Overwrite::Force;
    if (to.exists() || to.is_symlink()) && !replace {
        return Err(Error::Refused(format!(
            "{} already exists; chancery does not overwrite files (choose another --to, or give --force to replace it)",
            to.display()
        )));
    }
    let partial = to.with_extension("partial");
    if partial.exists() || partial.is_symlink() {
        return Err(Error::Refused(format!(
            "{} exists (an interrupted backup?); remove it or choose another --to",
            partial.display()
        )));
    }
    let live = Store::open_for_audit(db)?;
    let cleanup = |e: Error| {
        let _ = std::fs::remove_file(&partial);
        e
    };
    live.backup_to(&partial).map_err(cleanup)?;
    drop(live);
    let scratch_dir = partial.parent().map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
    let report = verify(&VerifyOptions { db: partial.clone(), seed: None, checkpoints: Vec::new(), scratch_dir })
        .map_err(cleanup)?;
    if !report.ok {
        let _ = std::fs::remove_file(&partial);
        let why = report.first_failure().map_or(String::new(), |c| format!("{}: {}", c.name, c.message));
        return Err(Error::Integrity(format!(
            "the copy does not verify ({why}); nothing was kept. Run `chancery verify --db {}`",
            db.display()
        )));
    }
    // Verifying the copy (read-only) made its `-wal` and `-shm`. Nothing wrote
    // to the WAL, so the copy is whole without them: remove them rather than
    // leave them beside it under the partial name (a WAL with frames, never
    // expected, goes with the copy instead).
    let with_suffix = |path: &Path, suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    };
    for suffix in ["-wal", "-shm"] {
        let side = with_suffix(&partial, suffix);
        match std::fs::metadata(&side) {
            Err(_) => {}
            Ok(m) if suffix == "-wal" && m.len() > 0 => {
                let with = with_suffix(to, suffix);
                std::fs::rename(&side, &with).map_err(Error::io(format!("naming {}", with.display())))?;
            }
            Ok(_) => std::fs::remove_file(&side).map_err(Error::io(format!("removing {}", side.display())))?,
        }
    }
    if replace {
        // A replaced copy's own side files belong to the old copy: a stale
        // `-wal` beside the new one would be read into it.
        for suffix in ["-wal", "-shm"] {
            let side = with_suffix(to, suffix);
            if side.exists() && !(suffix == "-wal" && with_suffix(&partial, suffix).exists()) {
                std::fs::remove_file(&side).map_err(Error::io(format!("removing {}", side.display())))?;
            }
        }
        std::fs::rename(&partial, to).map_err(Error::io(format!("naming the backup {}", to.display())))?;
    } else {
        // Named without replacing: a file that appeared at `to` meanwhile is kept.
        std::fs::hard_link(&partial, to).map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Refused(format!("{} appeared while the backup was made; nothing was replaced", to.display()))
            } else {
                Error::Io { context: format!("naming the backup {}", to.display()), source: e }
            }
        })?;
        std::fs::remove_file(&partial).map_err(Error::io(format!("removing {}", partial.display())))?;
    }
    Ok(Backup { path: to.to_path_buf(), entries: report.entries, head: report.head })
}
