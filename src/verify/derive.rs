//! Derivation, on the derivation thread: the events the chain thread hands
//! on, in log order, replayed through [`ledger::apply`] (the same code live
//! writes use), with the checks made on the way: no participant or identity
//! twice, each stratum from its recorded values, the seed commitment, follow-up
//! only for the randomised, and each allocation (see `allocations.rs`).

use super::allocations::{check_allocation, record_follows, stratum_of_values};
use super::chain::{Step, Texts};
use super::replay::Replay;
use super::{Genesis, Pass};
use crate::allocation::State;
use crate::error::Result;
use crate::event::Event;
use crate::keys;
use crate::ledger;

impl Pass<'_> {
    fn stop(&mut self, seq: u64, why: &'static str) {
        if self.stopped.is_none() {
            self.stopped = Some((seq, why));
        }
    }

    /// One step on the derivation thread, in log order.
    /// `spent`: where an undecoded entry's strings go once it is derived.
    pub(super) fn step(&mut self, tx: &Replay, step: Step, spent: &mut Vec<Texts>) -> Result<()> {
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
            Event::TrialCreated(_)
            | Event::AccountCreated(_)
            | Event::AccountChanged(_)
            | Event::AccountDisabled(_)
            | Event::PasswordSet(_)
            | Event::TokenCreated(_)
            | Event::TokenRevoked(_) => {}
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
}
