//! Randomising referrals ([`Trial::randomise`]): a batch's pipeline, in which a
//! `Preparer` screens, hashes, allocates and encodes each referral in order
//! (on a second thread for large batches) and a `Writer` appends and applies
//! them; and the allocation-state rows the batch changed, written at its end.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use super::apply::{Finished, append_finished, append_started, put_next_word};
use super::{Trial, batch_error, check_user, load_state, refuse_if_revealed};
use crate::allocation::{self, State};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::event::{AllocationRecord, Event, Randomised, ReferralScreened};
use crate::identity::IdentityHasher;
use crate::keys::TrialKey;
use crate::log::{Entry, EntryTail, FORMAT_VERSION};
use crate::protocol::{Arm, Method, Protocol};
use crate::referral::{self, Decision, Referral, Screened};
use crate::store::{Head, StreamRow, Tx};

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

impl Trial {
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
}

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

/// Writes the rows `touched` names, leaving the tables as [`flush_state`](super::flush_state) would.
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
