//! The `chain` check, on the chain thread: each stored row checked in seq
//! order (canonical bytes, contiguous seq, SHA-256, link to the entry before,
//! time format and order, entry 0 a `trial_created` whose protocol parses),
//! checkpoints' heads compared as the chain reaches them, and each entry
//! handed to the derivation thread, decoded or as its text ([`Step`]).

use sha2::{Digest, Sha256};

use super::findings::Finding;
use super::{Genesis, Pass};
use crate::allocation::State;
use crate::clock::Timestamp;
use crate::event::Event;
use crate::log::{Entry, EntryRef, FORMAT_VERSION};
use crate::protocol::Protocol;
use crate::store::LogRowRef;

/// Decoded entries waiting for derivation: enough to keep both threads busy,
/// few enough that memory does not depend on the log.
pub(super) const QUEUE: usize = 512;
/// Entries handed over at a time (one wake-up per batch, not per entry).
pub(super) const BATCH: usize = 64;

/// An undecoded entry's time, type and data text.
#[derive(Default)]
pub(super) struct Texts {
    pub(super) ts: String,
    pub(super) kind: String,
    pub(super) data: String,
}

/// What the chain thread hands the derivation, in log order.
// Nearly every step is a `Derive` or an `Undecoded`: boxing them would cost an
// allocation per entry.
#[allow(clippy::large_enum_variant)]
pub(super) enum Step {
    /// Entry 0 established the trial.
    Genesis(Box<Genesis>),
    /// An entry whose chain checks hold, to derive.
    Derive { seq: u64, ts: String, event: Event },
    /// The same, its event still to be decoded from its type and data text.
    Undecoded { seq: u64, texts: Texts },
    /// The chain broke at this entry: derivation stops there.
    Broken(u64),
}

impl Pass<'_> {
    /// One log row, on the chain thread: the chain checks, then (while the chain
    /// holds) the event, decoded or as its text to decode, is handed on for
    /// derivation.
    /// `pool`: strings handed back by the derivation thread, to fill again.
    pub(super) fn link(&mut self, row: LogRowRef, steps: &mut Vec<Step>, pool: &mut Vec<Texts>) {
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
}
