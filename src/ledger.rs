//! The trial ledger: creating a trial, randomising referrals, and reading its
//! state, each write as one transaction of one or more log events.
//!
//! This is the library's front door for coordinators. It screens referrals
//! ([`crate::referral`]), allocates ([`crate::allocation`]), records events in
//! the hash-chained log ([`crate::log`]) and derives the tables from them in
//! the same transaction ([`apply`], which replay during verification reuses).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::allocation::{self, State};
use crate::clock::{Clock, Timestamp};
use crate::error::{Error, Result};
use crate::event::{AllocationRecord, Event, Randomised, ReferralScreened, SeedRevealed, TrialCreated};
use crate::identity::IdentityHasher;
use crate::keys::{self, KeyOrigin, TrialKey};
use crate::log::{Entry, EntryTail, FORMAT_VERSION};
use crate::protocol::{Arm, Method, Protocol};
use crate::referral::{self, Decision, Referral, Screened};
use crate::store::{Head, LogRowRef, NewOutcome, NewReferral, StatusRow, Store, StreamRow, TrialRow, Tx};

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

/// The result of one referral, as shown to the coordinator.
#[derive(Debug, Clone, Serialize)]
pub struct Confirmation {
    /// Participant id.
    pub participant: String,
    /// Site.
    pub site: String,
    /// `randomised`, `ineligible` or `declined`.
    pub status: String,
    /// Allocated arm id, if randomised.
    pub arm: Option<String>,
    /// Allocated arm label, if randomised.
    pub arm_label: Option<String>,
    /// Stratum, if randomised.
    pub stratum: Option<String>,
    /// Failed eligibility rules: `id: reason`.
    pub reasons: Vec<String>,
    /// Log sequence number of the event.
    pub seq: u64,
    /// Hash of the event's log entry.
    pub entry_hash: String,
    /// Log length after the transaction (a receipt for the site).
    pub log_length: u64,
    /// Log head after the transaction.
    pub head: String,
}

/// What `reveal` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Revealed {
    /// Sequence number of the `seed_revealed` entry.
    pub seq: u64,
    /// Its hash.
    pub entry_hash: String,
    /// Log length after the reveal.
    pub log_length: u64,
    /// Log head after the reveal.
    pub head: String,
}

/// Counts for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Trial id.
    pub trial: String,
    /// Allocation method.
    pub method: String,
    /// `random`, or `given` for a demonstration seed.
    pub key_origin: String,
    /// Referrals screened.
    pub screened: u64,
    /// Screened out.
    pub ineligible: u64,
    /// Declined consent.
    pub declined: u64,
    /// Randomised.
    pub randomised: u64,
    /// Randomised per arm (every arm listed).
    pub by_arm: BTreeMap<String, u64>,
    /// Randomised per site and arm.
    pub by_site: BTreeMap<String, BTreeMap<String, u64>>,
    /// Randomised per stratum and arm.
    pub by_stratum: BTreeMap<String, BTreeMap<String, u64>>,
    /// Ineligible referrals per failed rule.
    pub ineligible_by_reason: BTreeMap<String, u64>,
    /// Participants with follow-up data, per timepoint, in protocol order (every timepoint listed).
    pub followed_up: Vec<(String, u64)>,
    /// Participants withdrawn, lost to follow-up or died, per status.
    pub not_active: BTreeMap<String, u64>,
    /// Participants who asked for no further contact and have not consented again.
    pub no_further_contact: u64,
    /// Log length.
    pub log_entries: u64,
    /// Log head hash.
    pub head: String,
}

/// An open trial.
pub struct Trial {
    pub(crate) store: Store,
    pub(crate) protocol: Protocol,
    pub(crate) row: TrialRow,
    /// The allocation state as this handle's last randomisation left it, with
    /// the log head it belongs to. The state is a function of the log, so it is
    /// reused only while the head read inside a new transaction is that same
    /// head (nobody else has written since); otherwise it is loaded afresh.
    cached_state: Option<(Head, State)>,
    /// The last key this handle accepted and its identity hasher, so that
    /// randomising one referral at a time does not derive them again.
    accepted_key: Option<(TrialKey, IdentityHasher)>,
    /// The permuted blocks this handle's allocations generated, kept for the
    /// next ones (a cache: allocations are the same without it).
    blocks: allocation::Blocks,
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

/// Checks that the trial row is the one the log's entry 0 derives: the
/// `trial` table is an editable copy, and writers screen, allocate and check
/// keys by it, so a protocol or commitment edited there must not be used
/// (an edited age rule once let an ineligible referral be randomised).
fn check_trial_row(store: &Store, row: &TrialRow, db: &Path) -> Result<()> {
    let verify = format!("run `chancery verify --db {}`", db.display());
    let entry0 = store
        .log_row_at(0)?
        .ok_or_else(|| Error::Integrity(format!("{} has a trial record but no log entry 0; {verify}", db.display())))?;
    let created = match Entry::check(&entry0.body).and_then(|e| e.event()) {
        Ok(Event::TrialCreated(t)) => t,
        _ => return Err(Error::Integrity(format!("log entry 0 is not a readable trial_created entry; {verify}"))),
    };
    let short = |h: &str| h.get(..16).unwrap_or(h).to_string();
    use sha2::Digest as _;
    let text_hash = hex::encode(sha2::Sha256::digest(row.protocol.as_bytes()));
    if text_hash != created.protocol_sha256 || row.protocol_sha256 != created.protocol_sha256 {
        return Err(Error::Integrity(format!(
            "the database's trial table was altered: its protocol (sha256 {}…) is not the one log entry 0 commits to (sha256 {}…); nothing was done, {verify}",
            short(&text_hash),
            short(&created.protocol_sha256)
        )));
    }
    let differing = [
        ("trial_id", row.trial_id == created.trial),
        ("title", row.title == created.title),
        ("seed_commitment", row.seed_commitment == created.seed_commitment),
        ("signing_public_key", row.signing_public_key == created.signing_public_key),
        ("key_origin", row.key_origin == created.key_origin),
        ("created_at", row.created_at == entry0.ts),
    ]
    .into_iter()
    .find(|(_, same)| !same);
    if let Some((column, _)) = differing {
        return Err(Error::Integrity(format!(
            "the database's trial table was altered: its {column} is not the one log entry 0 records; nothing was done, {verify}"
        )));
    }
    Ok(())
}

/// Checks a user name for the log.
pub fn check_user(user: &str) -> Result<()> {
    crate::text::user(user).map_err(Error::Input)
}

/// Builds the entry for `event`, appends it, and applies it to the derived tables.
/// Returns the entry's sequence number and hash.
pub(crate) fn append(
    tx: &Tx,
    protocol: &Protocol,
    state: &mut State,
    head: &mut Head,
    event: &Event,
    user: &str,
    now: Timestamp,
) -> Result<(u64, String)> {
    let started = Entry::start_canonical(|out| event.write_canonical_data(out));
    append_started(tx, protocol, state, head, event, None, started, user, &now.to_log_text())
        .map(|(seq, hash, _)| (seq, hash))
}

/// [`append`], given the start of the entry's canonical bytes
/// ([`Entry::start_canonical`] of `event`'s data) and, for a randomisation
/// made here, its factor levels (see [`apply`]); also returns those bytes.
#[allow(clippy::too_many_arguments)]
fn append_started(
    tx: &Tx,
    protocol: &Protocol,
    state: &mut State,
    head: &mut Head,
    event: &Event,
    levels: Option<&[usize]>,
    started: String,
    user: &str,
    ts: &str,
) -> Result<(u64, String, String)> {
    check_user(user)?;
    not_back_dated(head, ts)?;
    let seq = head.len;
    let (body, hash) =
        EntryTail { prev: &head.hash, seq, ts, kind: event.kind(), user, v: FORMAT_VERSION }.finish(started);
    append_finished(tx, protocol, state, head, event, levels, Finished { seq, hash, body }, ts)
        .map(|f| (f.seq, f.hash, f.body))
}

/// Refuses a time earlier than the log's last entry: every write's time
/// comes from [`Clock::stamp`], which has checked it; this holds the log's
/// order whatever a caller passes.
fn not_back_dated(head: &Head, ts: &str) -> Result<()> {
    match &head.ts {
        Some(last) if ts < last.as_str() => Err(Error::Refused(format!(
            "time {ts} is earlier than the log's last entry ({last}); the log cannot be back-dated (check --now or the system clock)"
        ))),
        _ => Ok(()),
    }
}

/// An entry's sequence number, hash and canonical bytes, made before it is written.
struct Finished {
    seq: u64,
    hash: String,
    body: String,
}

/// Appends an entry already finished against `head` (its `prev` is
/// `head.hash`, its seq `head.len`) and applies its event; hands the entry back.
#[allow(clippy::too_many_arguments)]
fn append_finished(
    tx: &Tx,
    protocol: &Protocol,
    state: &mut State,
    head: &mut Head,
    event: &Event,
    levels: Option<&[usize]>,
    f: Finished,
    ts: &str,
) -> Result<Finished> {
    tx.append_log(&LogRowRef { seq: f.seq, ts, kind: event.kind(), hash: &f.hash, body: &f.body })?;
    apply(tx, protocol, state, f.seq, ts, event, levels)?;
    head.len = f.seq + 1;
    head.hash.clone_from(&f.hash);
    if head.ts.as_deref() != Some(ts) {
        head.ts = Some(ts.to_string());
    }
    Ok(f)
}

/// Where [`apply`] and [`flush_state`] write the derived rows: the live
/// transaction ([`Tx`]), or verification's replay, which folds most of them
/// into digests instead of a second database.
pub(crate) trait Sink {
    fn insert_trial(&self, t: &TrialRow) -> Result<()>;
    fn insert_referral(&self, r: &NewReferral) -> Result<()>;
    fn set_revealed(&self, seq: u64, ts: &str) -> Result<()>;
    fn insert_outcomes(
        &self,
        participant: &str,
        timepoint: &str,
        collected_on: &str,
        seq: u64,
        values: &[(&str, &str)],
    ) -> Result<()>;
    fn outcome(&self, participant: &str, timepoint: &str, field: &str) -> Result<Option<(String, String, u32)>>;
    fn update_outcome(&self, o: &NewOutcome) -> Result<()>;
    fn status(&self, participant: &str) -> Result<Option<StatusRow>>;
    fn put_status(&self, st: &StatusRow) -> Result<()>;
    fn put_stream(&self, stream: &str, row: StreamRow) -> Result<()>;
    fn put_count(&self, factor: usize, level: usize, arm: usize, n: u64) -> Result<()>;
}

/// Derives the tables' rows from one event. Live writes and replay both come here,
/// so the tables are by construction a function of the log. `levels`: for a
/// randomisation, the factor levels its stratum label names, when the caller
/// has them already (the allocation made them; replay finds them checking the
/// label against the recorded values), so that the label is not parsed again.
pub(crate) fn apply<S: Sink + ?Sized>(
    tx: &S,
    protocol: &Protocol,
    state: &mut State,
    seq: u64,
    ts: &str,
    event: &Event,
    levels: Option<&[usize]>,
) -> Result<()> {
    match event {
        Event::TrialCreated(t) => tx.insert_trial(&TrialRow {
            trial_id: t.trial.clone(),
            title: t.title.clone(),
            protocol: t.protocol.clone(),
            protocol_sha256: t.protocol_sha256.clone(),
            seed_commitment: t.seed_commitment.clone(),
            signing_public_key: t.signing_public_key.clone(),
            key_origin: t.key_origin.clone(),
            created_at: ts.to_string(),
        }),
        Event::ReferralScreened(r) => tx.insert_referral(&NewReferral {
            participant: &r.participant,
            seq,
            site: &r.site,
            status: &r.status,
            reasons: &r.reasons.join(","),
            screened_at: ts,
            randomised: None,
        }),
        Event::ParticipantRandomised(r) => {
            tx.insert_referral(&NewReferral {
                participant: &r.participant,
                seq,
                site: &r.site,
                status: "randomised",
                reasons: "",
                screened_at: ts,
                randomised: Some((&r.stratum, &r.arm, &r.identity)),
            })?;
            debug_assert!(
                levels.is_none_or(|l| parse_stratum(protocol, &r.stratum).as_deref() == Ok(l)),
                "the levels given are the ones the stratum label names"
            );
            let a = match levels {
                Some(levels) => allocation_from(protocol, r, || Ok(levels.to_vec())),
                None => recorded_allocation(protocol, r),
            }
            .map_err(|m| {
                Error::Integrity(format!("log entry {seq}: the allocation record does not fit the protocol: {m}"))
            })?;
            state.record(&a);
            Ok(())
        }
        Event::SeedRevealed(_) => tx.set_revealed(seq, ts),
        Event::OutcomeRecorded(o) => {
            let values: Vec<(&str, &str)> = o.values.iter().map(|(f, v)| (f.as_str(), v.as_str())).collect();
            tx.insert_outcomes(&o.participant, &o.timepoint, &o.collected_on, seq, &values)
        }
        Event::OutcomeCorrected(c) => {
            let (_, collected_on, version) = tx.outcome(&c.participant, &c.timepoint, &c.field)?.ok_or_else(|| {
                Error::Integrity(format!(
                    "log entry {seq}: corrects {} {} {}, which was never recorded",
                    c.participant, c.timepoint, c.field
                ))
            })?;
            tx.update_outcome(&NewOutcome {
                participant: &c.participant,
                timepoint: &c.timepoint,
                field: &c.field,
                value: &c.new_value,
                collected_on: &collected_on,
                version: version + 1,
                seq,
            })
        }
        Event::StatusChanged(c) => {
            // A request for no further contact stands through later status
            // changes; only `consent_renewed` lifts it.
            let asked = tx.status(&c.participant)?.is_some_and(|s| s.no_further_contact);
            tx.put_status(&StatusRow {
                participant: c.participant.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                no_further_contact: c.no_further_contact || asked,
                on_date: c.on.clone(),
                seq,
            })
        }
        Event::ConsentRenewed(c) => {
            let mut st = tx.status(&c.participant)?.filter(|s| s.no_further_contact).ok_or_else(|| {
                Error::Integrity(format!(
                    "log entry {seq}: renews the consent of {}, who had not asked for no further contact",
                    c.participant
                ))
            })?;
            st.no_further_contact = false;
            st.seq = seq;
            tx.put_status(&st)
        }
    }
}

/// The allocation an event records, with indices resolved against the protocol.
pub(crate) fn recorded_allocation(
    protocol: &Protocol,
    r: &Randomised,
) -> std::result::Result<allocation::Allocation, String> {
    allocation_from(protocol, r, || parse_stratum(protocol, &r.stratum))
}

/// The allocation an event records, with `levels` giving the factor levels its
/// stratum label names.
fn allocation_from(
    protocol: &Protocol,
    r: &Randomised,
    levels: impl FnOnce() -> std::result::Result<Vec<usize>, String>,
) -> std::result::Result<allocation::Allocation, String> {
    let arm = protocol.arms.iter().position(|a| a.id == r.arm).ok_or_else(|| format!("unknown arm {:?}", r.arm))?;
    Ok(allocation::Allocation { arm, levels: levels()?, detail: r.allocation.to_detail(protocol)? })
}

/// Factor level indices from a stratum label.
pub(crate) fn parse_stratum(protocol: &Protocol, label: &str) -> std::result::Result<Vec<usize>, String> {
    if protocol.factors.is_empty() {
        return if label == "all" { Ok(vec![]) } else { Err(format!("stratum {label:?} should be \"all\"")) };
    }
    let parts: Vec<&str> = label.split('|').collect();
    if parts.len() != protocol.factors.len() {
        return Err(format!("stratum {label:?} does not name every factor"));
    }
    protocol
        .factors
        .iter()
        .zip(parts)
        .map(|(f, part)| {
            let (name, level) =
                part.split_once('=').ok_or_else(|| format!("stratum part {part:?} is not name=level"))?;
            if name != f.name {
                return Err(format!("stratum names {name:?} where {:?} was expected", f.name));
            }
            f.levels.iter().position(|l| l == level).ok_or_else(|| format!("{level:?} is not a level of {name}"))
        })
        .collect()
}

/// Loads the allocation state from the derived tables.
pub(crate) fn load_state(tx: &Tx, protocol: &Protocol) -> Result<State> {
    let mut state = State::new(protocol);
    for (stream, row) in tx.streams()? {
        if stream.starts_with("blocks/") {
            state.blocks.insert(
                stream,
                allocation::BlockCursor { block: row.block, start_word: row.start_word, used: row.used },
            );
        } else {
            state.next_word = row.next_word;
        }
    }
    for (f, l, a, n) in tx.counts()? {
        if let Some(c) = state.counts.get_mut(f).and_then(|x| x.get_mut(l)).and_then(|x| x.get_mut(a)) {
            *c = n;
        }
    }
    Ok(state)
}

impl Trial {
    /// Opens an existing trial.
    pub fn open(db: &Path) -> Result<Trial> {
        Trial::with_store(db, Store::open(db)?)
    }

    /// Opens an existing trial for reading only: every command that writes
    /// nothing uses it, so that an auditor's read-only copy can be read.
    pub fn open_read_only(db: &Path) -> Result<Trial> {
        Trial::with_store(db, Store::open_read_only(db)?)
    }

    fn with_store(db: &Path, store: Store) -> Result<Trial> {
        let row = store.trial()?.ok_or_else(|| {
            Error::Integrity(format!("{} has no trial record; it was not created by `chancery init`", db.display()))
        })?;
        check_trial_row(&store, &row, db)?;
        let protocol = Protocol::parse_recorded(&format!("{} (stored protocol)", db.display()), &row.protocol)?;
        Ok(Trial {
            store,
            protocol,
            row,
            cached_state: None,
            accepted_key: None,
            blocks: allocation::Blocks::default(),
        })
    }

    /// The trial's protocol, as stored at `init`.
    pub fn protocol(&self) -> &Protocol {
        &self.protocol
    }

    /// The trial's record.
    pub fn record(&self) -> &TrialRow {
        &self.row
    }

    /// The store, for reading.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Checks that a key belongs to this trial: its seed opens the commitment.
    pub fn check_key(&self, key: &TrialKey) -> Result<()> {
        if keys::seed_commitment(&key.seed) != self.row.seed_commitment || key.trial != self.row.trial_id {
            return Err(Error::Key(format!(
                "the key file is not this trial's key (its seed does not open trial {:?}'s commitment); give the right --key",
                self.row.trial_id
            )));
        }
        Ok(())
    }

    /// The identity hasher under `key`, once `key` is known to be this trial's
    /// (the last accepted key's, if it is byte for byte the same key).
    fn identity_hasher(&mut self, key: &TrialKey) -> Result<IdentityHasher> {
        if let Some((accepted, hasher)) = &self.accepted_key
            && accepted.seed == key.seed
            && accepted.identity_secret == key.identity_secret
            && accepted.trial == key.trial
        {
            return Ok(hasher.clone());
        }
        self.check_key(key)?;
        let hasher = IdentityHasher::new(&key.identity_key());
        self.accepted_key = Some((key.clone(), hasher.clone()));
        Ok(hasher)
    }

    /// Screens and, where eligible and consenting, randomises each referral in
    /// order, all in one transaction. Each referral comes with where it came from
    /// (e.g. `referrals.csv:4`) for messages. If any referral is invalid, nothing
    /// is written and the error lists every bad one.
    ///
    /// Referrals stream through screening, allocation and the log in one pass;
    /// once one is found bad the rest are only checked, and the transaction is
    /// rolled back at the end.
    ///
    /// The clock is read once, after the transaction has taken the write lock
    /// ([`Clock::stamp`]), and every entry of the call has that time.
    pub fn randomise(
        &mut self,
        key: &TrialKey,
        referrals: &[(String, Referral)],
        user: &str,
        clock: impl Into<Clock>,
    ) -> Result<Vec<Confirmation>> {
        let hasher = self.identity_hasher(key)?;
        check_user(user)?;
        let protocol = &self.protocol;
        let tx = self.store.transaction()?;
        let mut head = tx.head()?;
        let cached = self.cached_state.take().filter(|(at, _)| *at == head);
        // A reveal appends to the log, so with the log's head where this
        // handle's last randomisation left it, randomisation is still open.
        if cached.is_none() {
            refuse_if_revealed(&tx)?;
        }
        let ts = clock.into().stamp(head.ts.as_deref())?.to_log_text();
        let mut state = match cached {
            Some((_, state)) => state,
            None => load_state(&tx, protocol)?,
        };
        // The batch's identity rows are written in key order at the end, and
        // an identity randomised before this batch is found there.
        tx.defer_identities();
        let mut preparer = Preparer {
            protocol,
            seed: &key.seed,
            hasher,
            own_state: None,
            ids: HashMap::with_capacity(referrals.len()),
            folded: HashMap::with_capacity(referrals.len()),
            identities: HashMap::with_capacity(referrals.len()),
            failed: false,
            chain: None,
            blocks: std::mem::take(&mut self.blocks),
        };
        let mut writer = Writer {
            tx: &tx,
            protocol,
            state: &mut state,
            head: &mut head,
            user,
            ts: &ts,
            touched: Touched::default(),
            problems: ids_in_other_case(&tx, referrals)?,
            out: Vec::with_capacity(referrals.len()),
            spent: Vec::new(),
        };
        if referrals.len() < PIPELINE_FROM {
            for (i, (origin, r)) in referrals.iter().enumerate() {
                let prepared = preparer.prepare(i, origin, r, Some(&*writer.state));
                writer.write(prepared)?;
                writer.spent.clear();
            }
        } else {
            // Screening, identity hashing, allocation and the events' canonical
            // data on a second thread, in order, while this one writes: the
            // same work in the same order as above, on two cores, the
            // preparing side with its own copy of the allocation state.
            preparer.own_state = Some(writer.state.clone());
            preparer.chain = Some(Chain { seq: writer.head.len, prev: writer.head.hash.clone(), ts: ts.clone(), user });
            preparer = std::thread::scope(|scope| {
                let (send, receive) = std::sync::mpsc::sync_channel::<Vec<Prepared>>(8);
                let (give_back, spent) = std::sync::mpsc::channel::<Vec<Spent>>();
                let preparing = scope.spawn(move || {
                    for (c, chunk) in referrals.chunks(PIPELINE_CHUNK).enumerate() {
                        let prepared = chunk
                            .iter()
                            .enumerate()
                            .map(|(j, (origin, r))| preparer.prepare(c * PIPELINE_CHUNK + j, origin, r, None))
                            .collect();
                        if send.send(prepared).is_err() {
                            break; // the writer stopped on an error
                        }
                        // Each received batch of spent rows is freed as it is dropped.
                        while spent.try_recv().is_ok() {}
                    }
                    drop(send);
                    for _ in spent {}
                    preparer
                });
                for chunk in receive {
                    for prepared in chunk {
                        writer.write(prepared)?;
                    }
                    // Fails only once the preparing thread has gone: then free here.
                    let _ = give_back.send(std::mem::take(&mut writer.spent));
                }
                drop(give_back);
                preparing
                    .join()
                    .map_err(|_| Error::Integrity("screening a batch stopped unexpectedly; nothing was written".into()))
            })?;
        }
        let Writer { touched, mut problems, mut out, .. } = writer;
        for (identity, participant) in tx.flush_identities()? {
            let (i, origin) = preparer.identities.get(&identity).copied().unwrap_or((usize::MAX, ""));
            let (other, site) = tx.participant_with_identity(&identity)?.unwrap_or_default();
            problems.push((i, already_randomised(origin, &participant, &other, &site)));
        }
        if !problems.is_empty() {
            problems.sort_by_key(|(i, _)| *i);
            return Err(batch_error(referrals.len(), problems.into_iter().map(|(_, m)| m).collect()));
        }
        debug_assert!(
            referrals.len() < PIPELINE_FROM || preparer.own_state.as_ref() == Some(&state),
            "allocation and the derived state agree"
        );
        flush_touched(&tx, protocol, &state, &touched)?;
        tx.commit()?;
        self.cached_state = Some((head.clone(), state));
        self.blocks = preparer.blocks;
        for c in &mut out {
            c.log_length = head.len;
            c.head = head.hash.clone();
        }
        Ok(out)
    }

    /// Signs a checkpoint of the log as it stands: its length and head, now.
    /// Refuses a signing key that is not the one whose public half is in the
    /// trial's first log entry.
    pub fn checkpoint(
        &self,
        signing: &ed25519_dalek::SigningKey,
        now: Timestamp,
    ) -> Result<crate::checkpoint::Checkpoint> {
        if hex::encode(signing.verifying_key().to_bytes()) != self.row.signing_public_key {
            return Err(Error::Key(format!(
                "the signing key is not trial {:?}'s (its public key differs from the one in log entry 0); give the right --key",
                self.row.trial_id
            )));
        }
        let head = self.store.head()?;
        Ok(crate::checkpoint::Checkpoint::sign(&self.row.trial_id, head.len, &head.hash, now, signing))
    }

    /// Reveals the seed: appends `seed_revealed` with the seed and the reason.
    /// From then on anyone can re-derive every allocation from the log alone,
    /// and [`Trial::randomise`] is refused.
    pub fn reveal(&mut self, key: &TrialKey, reason: &str, user: &str, clock: impl Into<Clock>) -> Result<Revealed> {
        self.check_key(key)?;
        check_user(user)?;
        let reason = crate::text::reason("--reason", reason).map_err(Error::Input)?;
        let tx = self.store.transaction()?;
        refuse_if_revealed(&tx)?;
        let mut head = tx.head()?;
        let now = clock.into().stamp(head.ts.as_deref())?;
        let mut state = load_state(&tx, &self.protocol)?;
        let event = Event::SeedRevealed(SeedRevealed { seed: hex::encode(key.seed), reason: reason.to_string() });
        let (seq, hash) = append(&tx, &self.protocol, &mut state, &mut head, &event, user, now)?;
        tx.commit()?;
        Ok(Revealed { seq, entry_hash: hash, log_length: head.len, head: head.hash })
    }

    /// Counts by status, arm, site and stratum, and the log head.
    pub fn status(&self) -> Result<Status> {
        let head = self.store.head()?;
        let mut s = Status {
            trial: self.row.trial_id.clone(),
            method: self.protocol.method.name().into(),
            key_origin: self.row.key_origin.clone(),
            screened: 0,
            ineligible: 0,
            declined: 0,
            randomised: 0,
            by_arm: self.protocol.arms.iter().map(|a| (a.id.clone(), 0)).collect(),
            by_site: BTreeMap::new(),
            by_stratum: BTreeMap::new(),
            ineligible_by_reason: BTreeMap::new(),
            followed_up: Vec::new(),
            not_active: BTreeMap::new(),
            no_further_contact: 0,
            log_entries: head.len,
            head: head.hash,
        };
        for r in self.store.referrals()? {
            s.screened += 1;
            match r.status.as_str() {
                "ineligible" => {
                    s.ineligible += 1;
                    for reason in r.reasons.split(',').filter(|x| !x.is_empty()) {
                        *s.ineligible_by_reason.entry(reason.to_string()).or_default() += 1;
                    }
                }
                "declined" => s.declined += 1,
                _ => {}
            }
        }
        let zero: BTreeMap<String, u64> = self.protocol.arms.iter().map(|a| (a.id.clone(), 0)).collect();
        for p in self.store.participants()? {
            s.randomised += 1;
            *s.by_arm.entry(p.arm.clone()).or_default() += 1;
            *s.by_site.entry(p.site.clone()).or_insert_with(|| zero.clone()).entry(p.arm.clone()).or_default() += 1;
            *s.by_stratum.entry(p.stratum.clone()).or_insert_with(|| zero.clone()).entry(p.arm.clone()).or_default() +=
                1;
        }
        // Rows come ordered by participant and timepoint: count each pair once.
        let mut last = (String::new(), String::new());
        let mut by_timepoint: BTreeMap<String, u64> = BTreeMap::new();
        self.store.for_each_outcome_value(|participant, timepoint, _, _, _| {
            if (last.0.as_str(), last.1.as_str()) != (participant, timepoint) {
                last = (participant.to_string(), timepoint.to_string());
                *by_timepoint.entry(last.1.clone()).or_default() += 1;
            }
        })?;
        s.followed_up = self
            .protocol
            .timepoints
            .iter()
            .map(|t| (t.id.clone(), by_timepoint.get(&t.id).copied().unwrap_or(0)))
            .collect();
        for st in self.store.statuses()? {
            s.no_further_contact += u64::from(st.no_further_contact);
            *s.not_active.entry(st.status).or_default() += 1;
        }
        Ok(s)
    }
}

/// Refuses a write that would allocate after the seed was revealed.
/// Batches at least this long are screened and allocated on a second thread
/// while this one writes; shorter ones (a single randomisation, a day's
/// referrals) run on one, where starting a thread would cost more than it saves.
const PIPELINE_FROM: usize = 512;
/// Referrals handed from one thread to the other at a time.
const PIPELINE_CHUNK: usize = 128;

/// A referral screened, its identity hashed and, while the batch can still be
/// written, allocated and its event encoded: what the preparing side of a
/// batch hands the writing side, in input order.
struct Prepared<'a> {
    index: usize,
    origin: &'a str,
    /// `Err`: the problem with this referral, as reported.
    screening: std::result::Result<Screening<'a>, String>,
}

struct Screening<'a> {
    participant: String,
    identity: String,
    randomise: bool,
    /// `None` once the batch is known to fail: nothing more is written.
    write: Option<ToWrite<'a>>,
}

struct ToWrite<'a> {
    confirmed: Confirmation,
    event: Event,
    arm: Option<&'a Arm>,
    allocated: Option<allocation::Allocation>,
    body: Body,
}

/// The entry's bytes as far as the preparing side could take them.
enum Body {
    /// [`Entry::start_canonical`] of the event's data: the writer finishes it.
    Started(String),
    /// The whole entry, chained to the one prepared before it.
    Finished(Finished),
}

/// Screens and allocates a batch's referrals in order: from the writer's
/// allocation state, or on a thread of its own from its own copy, which it
/// advances as it allocates.
struct Preparer<'a> {
    protocol: &'a Protocol,
    seed: &'a [u8; 32],
    hasher: IdentityHasher,
    /// Its own copy of the state, when it runs on a thread of its own.
    own_state: Option<State>,
    /// Participant id → where it first appears in the batch.
    ids: HashMap<&'a str, &'a str>,
    /// Lowercase participant id → the id and where it first appears.
    folded: HashMap<String, (&'a str, &'a str)>,
    /// Identity hash of each referral to randomise → its index and origin.
    identities: HashMap<String, (usize, &'a str)>,
    failed: bool,
    /// On a thread of its own, the log's head as the entries prepared so far
    /// will leave it: the entries are then finished and hashed there too.
    chain: Option<Chain<'a>>,
    /// The blocks its allocations generated (the trial handle's, handed back).
    blocks: allocation::Blocks,
}

/// Where the next entry of a batch goes, and what every entry of it shares.
struct Chain<'a> {
    seq: u64,
    prev: String,
    ts: String,
    user: &'a str,
}

impl<'a> Preparer<'a> {
    /// `shared`: the writer's state, up to date with every referral before
    /// this one; `None` to allocate from (and advance) its own.
    fn prepare(&mut self, index: usize, origin: &'a str, r: &'a Referral, shared: Option<&State>) -> Prepared<'a> {
        let screening = self.screen(index, origin, r, shared);
        self.failed |= screening.is_err();
        Prepared { index, origin, screening }
    }

    fn screen(
        &mut self,
        index: usize,
        origin: &'a str,
        r: &'a Referral,
        shared: Option<&State>,
    ) -> std::result::Result<Screening<'a>, String> {
        use std::collections::hash_map::Entry as Slot;
        let s = referral::screen(self.protocol, r).map_err(|m| format!("{origin}: {m}"))?;
        match self.ids.entry(r.participant.as_str()) {
            Slot::Occupied(first) => {
                return Err(format!(
                    "{origin}: participant {} appears twice in this batch (also at {}); each referral needs its own id",
                    r.participant,
                    first.get()
                ));
            }
            Slot::Vacant(slot) => {
                slot.insert(origin);
            }
        }
        if r.participant.bytes().any(|b| b.is_ascii_alphabetic()) {
            match self.folded.entry(r.participant.to_ascii_lowercase()) {
                Slot::Occupied(first) => {
                    let (other, at) = first.get();
                    return Err(differs_in_case(origin, &r.participant, other, &format!("is at {at}")));
                }
                Slot::Vacant(slot) => {
                    slot.insert((r.participant.as_str(), origin));
                }
            }
        }
        let identity = self.hasher.hash(&s.identity);
        let randomise = s.decision == Decision::Randomise;
        if randomise {
            match self.identities.entry(identity.clone()) {
                Slot::Occupied(first) => {
                    return Err(format!(
                        "{origin}: participant {} has the same NHS number as the referral at {}; a person is randomised once",
                        r.participant,
                        first.get().1
                    ));
                }
                Slot::Vacant(slot) => {
                    slot.insert((index, origin));
                }
            }
        }
        let participant = s.participant.clone();
        // The writer's state, or (on a thread of its own) the preparer's copy,
        // advanced below past each allocation.
        let from = match (shared, &self.own_state) {
            (Some(state), _) | (None, Some(state)) => state,
            (None, None) => return Err(format!("{origin}: no allocation state to allocate from; nothing was written")),
        };
        let write = (!self.failed).then(|| {
            let confirmed = confirmation(self.protocol, &s);
            let (event, arm, allocated) =
                referral_event(self.protocol, self.seed, from, s, identity.clone(), &mut self.blocks);
            let started = Entry::start_canonical(|out| event.write_canonical_data(out));
            let body = match &mut self.chain {
                None => Body::Started(started),
                Some(c) => {
                    let tail = EntryTail {
                        prev: &c.prev,
                        seq: c.seq,
                        ts: &c.ts,
                        kind: event.kind(),
                        user: c.user,
                        v: FORMAT_VERSION,
                    };
                    let (body, hash) = tail.finish(started);
                    c.seq += 1;
                    c.prev.clone_from(&hash);
                    Body::Finished(Finished { seq: c.seq - 1, hash, body })
                }
            };
            ToWrite { confirmed, event, arm, allocated, body }
        });
        if let (None, Some(own), Some(a)) =
            (shared, self.own_state.as_mut(), write.as_ref().and_then(|w| w.allocated.as_ref()))
        {
            own.record(a);
        }
        Ok(Screening { participant, identity, randomise, write })
    }
}

/// Appends a batch's prepared referrals to the log in order, applying each to
/// the derived tables; after the first problem, only checks the rest.
struct Writer<'t, 'c, 'a> {
    tx: &'t Tx<'c>,
    protocol: &'a Protocol,
    state: &'t mut State,
    head: &'t mut Head,
    user: &'a str,
    /// The call's time, as log text.
    ts: &'a str,
    touched: Touched,
    /// Problems with the index of the referral they are about.
    problems: Vec<(usize, String)>,
    out: Vec<Confirmation>,
    /// What written referrals leave, for the thread that allocated it to free.
    spent: Vec<Spent>,
}

/// An event and its entry's bytes once written. With two threads they go back
/// to the preparing one to be freed: the allocator frees a block on the
/// thread that allocated it much faster than on another.
type Spent = (Event, String);

impl Writer<'_, '_, '_> {
    fn write(&mut self, p: Prepared) -> Result<()> {
        let (index, origin) = (p.index, p.origin);
        let s = match p.screening {
            Ok(s) => s,
            Err(m) => {
                self.problems.push((index, m));
                return Ok(());
            }
        };
        let w = match s.write {
            Some(w) if self.problems.is_empty() => w,
            _ => {
                // Nothing will be written; keep checking the rest for the report.
                if self.tx.referral_exists(&s.participant)? {
                    self.problems.push((index, already_recorded(origin, &s.participant)));
                } else if s.randomise
                    && let Some((other, site)) = self.tx.participant_with_identity(&s.identity)?
                {
                    self.problems.push((index, already_randomised(origin, &s.participant, &other, &site)));
                }
                return Ok(());
            }
        };
        let ToWrite { mut confirmed, event, arm, allocated, body } = w;
        let written = match body {
            Body::Started(started) => {
                let levels = allocated.as_ref().map(|a| &a.levels[..]);
                append_started(
                    self.tx,
                    self.protocol,
                    self.state,
                    self.head,
                    &event,
                    levels,
                    started,
                    self.user,
                    self.ts,
                )
            }
            Body::Finished(f) if f.seq == self.head.len => {
                let levels = allocated.as_ref().map(|a| &a.levels[..]);
                append_finished(self.tx, self.protocol, self.state, self.head, &event, levels, f, self.ts)
                    .map(|f| (f.seq, f.hash, f.body))
            }
            Body::Finished(_) => {
                Err(Error::Integrity("the batch's entries went out of step with the log; nothing was written".into()))
            }
        };
        match written {
            Ok((seq, entry_hash, body)) => {
                if let Some(a) = &allocated {
                    self.touched.note(a);
                }
                if let (Some(arm), Event::ParticipantRandomised(r)) = (arm, &event) {
                    confirmed.arm = Some(arm.id.clone());
                    confirmed.arm_label = Some(arm.label.clone());
                    confirmed.stratum = Some(r.stratum.clone());
                }
                confirmed.seq = seq;
                confirmed.entry_hash = entry_hash;
                self.out.push(confirmed);
                self.spent.push((event, body));
                Ok(())
            }
            // The participant id was recorded before this batch (the failed
            // event's own rows are rolled back with the transaction).
            Err(e) if is_constraint(&e) && self.tx.referral_exists(&s.participant)? => {
                self.problems.push((index, already_recorded(origin, &s.participant)));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

fn refuse_if_revealed(tx: &Tx) -> Result<()> {
    match tx.revealed()? {
        Some((seq, ts)) => Err(Error::Refused(format!(
            "the allocation seed was revealed at {ts} (log entry {seq}), so randomisation is closed: allocations made now would be predictable"
        ))),
        None => Ok(()),
    }
}

/// Referrals whose participant id differs only in case from one already
/// recorded: likely the same referral entered twice, so refused, naming it.
/// A large batch checks against every recorded id in memory; a small one
/// searches the store for each.
fn ids_in_other_case(tx: &Tx, referrals: &[(String, Referral)]) -> Result<Vec<(usize, String)>> {
    let mut problems = Vec::new();
    let recorded = if referrals.len() >= PIPELINE_FROM { Some(tx.participant_ids_by_folded()?) } else { None };
    for (i, (origin, r)) in referrals.iter().enumerate() {
        let id = r.participant.as_str();
        if !id.bytes().any(|b| b.is_ascii_alphabetic()) {
            continue;
        }
        let other = match &recorded {
            Some(m) => m.get(&id.to_ascii_lowercase()).filter(|o| *o != id).cloned(),
            None => tx.participant_in_other_case(id)?,
        };
        if let Some(other) = other {
            problems.push((i, differs_in_case(origin, id, &other, "is already recorded")));
        }
    }
    Ok(problems)
}

fn differs_in_case(origin: &str, participant: &str, other: &str, where_: &str) -> String {
    format!(
        "{origin}: participant {participant} differs only in case from participant {other}, which {where_}: likely the same referral; use {other} if it is, or an id that differs in more than case"
    )
}

fn already_recorded(origin: &str, participant: &str) -> String {
    format!(
        "{origin}: participant {participant} is already recorded; a participant id is used once (see `chancery export --what allocations`)"
    )
}

fn already_randomised(origin: &str, participant: &str, other: &str, site: &str) -> String {
    format!(
        "{origin}: participant {participant}: this NHS number was already randomised as participant {other} at {site}; a person is randomised once"
    )
}

fn is_constraint(e: &Error) -> bool {
    matches!(e, Error::Sqlite { source: rusqlite::Error::SqliteFailure(f, _), .. } if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

/// The event recording a screened referral, allocating it if it is to be
/// randomised; its values move into the event.
fn referral_event<'p>(
    protocol: &'p Protocol,
    seed: &[u8; 32],
    state: &State,
    s: Screened,
    identity: String,
    blocks: &mut allocation::Blocks,
) -> (Event, Option<&'p Arm>, Option<allocation::Allocation>) {
    match s.decision {
        Decision::Ineligible(reasons) => (
            Event::ReferralScreened(ReferralScreened {
                participant: s.participant,
                site: s.site,
                status: "ineligible".into(),
                reasons,
                values: s.values,
            }),
            None,
            None,
        ),
        Decision::Declined => (
            Event::ReferralScreened(ReferralScreened {
                participant: s.participant,
                site: s.site,
                status: "declined".into(),
                reasons: vec![],
                values: s.values,
            }),
            None,
            None,
        ),
        Decision::Randomise => {
            let levels = referral::factor_levels(protocol, &s);
            let a = allocation::allocate_with(protocol, seed, state, &levels, blocks);
            let stratum = allocation::stratum_label(protocol, &levels);
            let arm = &protocol.arms[a.arm];
            (
                Event::ParticipantRandomised(Randomised {
                    participant: s.participant,
                    site: s.site,
                    identity,
                    values: s.values,
                    stratum,
                    arm: arm.id.clone(),
                    allocation: AllocationRecord::from_detail(protocol, &a.detail),
                }),
                Some(arm),
                Some(a),
            )
        }
    }
}

/// What a randomise call reports of a screened referral; the arm, stratum,
/// entry and head are filled in once it is written.
fn confirmation(protocol: &Protocol, s: &Screened) -> Confirmation {
    let reasons = match &s.decision {
        Decision::Ineligible(ids) => ids
            .iter()
            .map(|id| {
                let reason = protocol.eligibility.iter().find(|r| &r.id == id).map(|r| r.reason.as_str()).unwrap_or("");
                format!("{id}: {reason}")
            })
            .collect(),
        _ => vec![],
    };
    Confirmation {
        participant: s.participant.clone(),
        site: s.site.clone(),
        status: s.decision.status().into(),
        arm: None,
        arm_label: None,
        stratum: None,
        reasons,
        seq: 0,
        entry_hash: String::new(),
        log_length: 0,
        head: String::new(),
    }
}

/// Writes the allocation state to its tables: once per transaction, after the
/// transaction's events, both live and in replay.
pub(crate) fn flush_state<S: Sink + ?Sized>(tx: &S, protocol: &Protocol, state: &State) -> Result<()> {
    for (stream, c) in &state.blocks {
        tx.put_stream(stream, StreamRow { block: c.block, start_word: c.start_word, used: c.used, next_word: 0 })?;
    }
    if !matches!(protocol.method, Method::PermutedBlocks { .. }) && state.next_word > 0 {
        put_next_word(tx, protocol, state)?;
    }
    // Only minimisation reads the counts; other methods need not keep them.
    if matches!(protocol.method, Method::Minimisation { .. }) {
        for (f, levels) in state.counts.iter().enumerate() {
            for (l, arms) in levels.iter().enumerate() {
                for (a, &n) in arms.iter().enumerate() {
                    if n > 0 {
                        tx.put_count(f, l, a, n)?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn put_next_word<S: Sink + ?Sized>(tx: &S, protocol: &Protocol, state: &State) -> Result<()> {
    let stream = if matches!(protocol.method, Method::Simple) { "simple" } else { "minimisation" };
    tx.put_stream(stream, StreamRow { block: 0, start_word: 0, used: 0, next_word: state.next_word })
}

/// The allocation-state rows a transaction's allocations changed: a
/// coordinator's single randomisation changes one stratum's stream, and
/// rewriting every stratum's row made each commit write pages it did not change.
#[derive(Debug, Default)]
struct Touched {
    streams: BTreeSet<String>,
    next_word: bool,
    counts: BTreeSet<(usize, usize, usize)>,
}

impl Touched {
    fn note(&mut self, a: &allocation::Allocation) {
        match &a.detail {
            allocation::Detail::Blocks { stream, .. } => {
                self.streams.insert(stream.clone());
            }
            allocation::Detail::Simple { .. } | allocation::Detail::Minimisation { .. } => self.next_word = true,
        }
        self.counts.extend(a.levels.iter().enumerate().map(|(f, &l)| (f, l, a.arm)));
    }
}

/// Writes the rows `touched` names, leaving the tables as [`flush_state`] would.
fn flush_touched(tx: &Tx, protocol: &Protocol, state: &State, touched: &Touched) -> Result<()> {
    for stream in &touched.streams {
        if let Some(c) = state.blocks.get(stream) {
            tx.put_stream(stream, StreamRow { block: c.block, start_word: c.start_word, used: c.used, next_word: 0 })?;
        }
    }
    if !matches!(protocol.method, Method::PermutedBlocks { .. }) && touched.next_word && state.next_word > 0 {
        put_next_word(tx, protocol, state)?;
    }
    if matches!(protocol.method, Method::Minimisation { .. }) {
        for &(f, l, a) in &touched.counts {
            if let Some(&n) = state.counts.get(f).and_then(|x| x.get(l)).and_then(|x| x.get(a))
                && n > 0
            {
                tx.put_count(f, l, a, n)?;
            }
        }
    }
    Ok(())
}

pub(crate) fn batch_error(total: usize, problems: Vec<String>) -> Error {
    if total == 1 && problems.len() == 1 {
        let only = problems.into_iter().next().unwrap_or_default();
        // A single record from the command line: its origin ("referral",
        // "outcome") is noise. A file's one row keeps its `file:line`.
        let msg = match only.split_once(": ") {
            Some((origin, m)) if !origin.contains(':') => m.to_string(),
            _ => only,
        };
        return Error::Input(format!("{msg}; nothing was written"));
    }
    let n = problems.len();
    let mut seen = HashSet::new();
    let lines: Vec<String> = problems.into_iter().filter(|p| seen.insert(p.clone())).collect();
    Error::Input(format!(
        "{n} of {total} records are invalid, so none was written; correct them and submit the file again:\n  {}",
        lines.join("\n  ")
    ))
}
