//! An event's way into the trial: [`append`] builds its entry, chains it to
//! the log's head and appends it; [`apply`] derives the tables' rows from it,
//! through a [`Sink`] (the live transaction, or verification's replay); and
//! the allocation state is loaded from ([`load_state`]) and written to
//! ([`flush_state`]) its tables.

use super::check_user;
use crate::allocation::{self, State};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::event::{Event, Randomised};
use crate::log::{Entry, EntryTail, FORMAT_VERSION};
use crate::protocol::{Method, Protocol};
use crate::store::{Head, LogRowRef, NewOutcome, NewReferral, StatusRow, StreamRow, TrialRow, Tx};

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
pub(super) fn append_started(
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
/// comes from [`Clock::stamp`](crate::clock::Clock::stamp), which has checked it; this holds the log's
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
pub(super) struct Finished {
    pub(super) seq: u64,
    pub(super) hash: String,
    pub(super) body: String,
}

/// Appends an entry already finished against `head` (its `prev` is
/// `head.hash`, its seq `head.len`) and applies its event; hands the entry back.
#[allow(clippy::too_many_arguments)]
pub(super) fn append_finished(
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
pub(crate) trait Sink: super::AccountSink {
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
        Event::AccountCreated(_)
        | Event::AccountChanged(_)
        | Event::AccountDisabled(_)
        | Event::PasswordSet(_)
        | Event::TokenCreated(_)
        | Event::TokenRevoked(_) => super::accounts::apply_account_event(tx, seq, ts, event),
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

pub(super) fn put_next_word<S: Sink + ?Sized>(tx: &S, protocol: &Protocol, state: &State) -> Result<()> {
    let stream = if matches!(protocol.method, Method::Simple) { "simple" } else { "minimisation" };
    tx.put_stream(stream, StreamRow { block: 0, start_word: 0, used: 0, next_word: state.next_word })
}
