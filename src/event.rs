//! The events the log records, one type per kind of change, and their data.
//!
//! Values are text (the canonical text of each field) and integers, never
//! floats, so that every event has one canonical encoding.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::allocation::Detail;
use crate::log::{write_canonical, write_string};
use crate::protocol::Protocol;

/// A change to the trial, as recorded in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Event {
    /// The first entry: the protocol and the commitments.
    TrialCreated(TrialCreated),
    /// A referral screened out (ineligible) or that declined consent.
    ReferralScreened(ReferralScreened),
    /// A participant allocated to an arm.
    ParticipantRandomised(Randomised),
    /// The allocation seed, published when recruitment closed; no allocation follows it.
    SeedRevealed(SeedRevealed),
    /// Follow-up values collected for a participant at a timepoint.
    OutcomeRecorded(OutcomeRecorded),
    /// A recorded outcome value corrected; the original stays in the log.
    OutcomeCorrected(OutcomeCorrected),
    /// A participant withdrew, was lost to follow-up, or died.
    StatusChanged(StatusChanged),
    /// A participant who asked for no further contact consented to it again.
    ConsentRenewed(ConsentRenewed),
    /// An account added, with its roles and sites.
    AccountCreated(AccountGranted),
    /// An account's roles and sites replaced (the full new set).
    AccountChanged(AccountGranted),
    /// An account disabled: it can no longer log in or use its tokens.
    AccountDisabled(AccountDisabled),
    /// An account's password set anew (never the password or its hash).
    PasswordSet(PasswordSet),
    /// An API token created for an account (its public id, never the token).
    TokenCreated(TokenCreated),
    /// An API token revoked.
    TokenRevoked(TokenRevoked),
}

impl Event {
    /// The event type name as written in the log.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::TrialCreated(_) => "trial_created",
            Event::ReferralScreened(_) => "referral_screened",
            Event::ParticipantRandomised(_) => "participant_randomised",
            Event::SeedRevealed(_) => "seed_revealed",
            Event::OutcomeRecorded(_) => "outcome_recorded",
            Event::OutcomeCorrected(_) => "outcome_corrected",
            Event::StatusChanged(_) => "status_changed",
            Event::ConsentRenewed(_) => "consent_renewed",
            Event::AccountCreated(_) => "account_created",
            Event::AccountChanged(_) => "account_changed",
            Event::AccountDisabled(_) => "account_disabled",
            Event::PasswordSet(_) => "password_set",
            Event::TokenCreated(_) => "token_created",
            Event::TokenRevoked(_) => "token_revoked",
        }
    }

    /// The event's data object.
    pub fn data(&self) -> Value {
        // Each variant's data directly: serialising the tagged enum and taking
        // its `data` member built and dropped an outer object per event.
        let v = match self {
            Event::TrialCreated(d) => serde_json::to_value(d),
            Event::ReferralScreened(d) => serde_json::to_value(d),
            Event::ParticipantRandomised(d) => serde_json::to_value(d),
            Event::SeedRevealed(d) => serde_json::to_value(d),
            Event::OutcomeRecorded(d) => serde_json::to_value(d),
            Event::OutcomeCorrected(d) => serde_json::to_value(d),
            Event::StatusChanged(d) => serde_json::to_value(d),
            Event::ConsentRenewed(d) => serde_json::to_value(d),
            Event::AccountCreated(d) | Event::AccountChanged(d) => serde_json::to_value(d),
            Event::AccountDisabled(d) => serde_json::to_value(d),
            Event::PasswordSet(d) => serde_json::to_value(d),
            Event::TokenCreated(d) => serde_json::to_value(d),
            Event::TokenRevoked(d) => serde_json::to_value(d),
        };
        v.expect("event data are strings, integers, lists and maps with string keys")
    }

    /// Appends the canonical encoding (docs/SPEC.md §2) of the event's data:
    /// the bytes `log::write_canonical(&self.data())` writes. The two events a
    /// batch writes by the thousand are written directly, their members in key
    /// order (building a `serde_json::Value` tree for each cost an outcome
    /// import an eighth of its time); a test holds the two ways equal.
    pub fn write_canonical_data(&self, out: &mut String) {
        let member = |out: &mut String, first: bool, key: &str| {
            out.push_str(if first { "{\"" } else { ",\"" });
            out.push_str(key);
            out.push_str("\":");
        };
        let map = |out: &mut String, m: &BTreeMap<String, String>| {
            // BTreeMap<String, _> iterates in byte order of the keys: canonical order.
            out.push('{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_string(v, out);
            }
            out.push('}');
        };
        match self {
            Event::OutcomeRecorded(o) => {
                member(out, true, "collected_on");
                write_string(&o.collected_on, out);
                member(out, false, "participant");
                write_string(&o.participant, out);
                member(out, false, "timepoint");
                write_string(&o.timepoint, out);
                member(out, false, "values");
                map(out, &o.values);
                if let Some(r) = &o.window_reason {
                    member(out, false, "window_reason");
                    write_string(r, out);
                }
                out.push('}');
            }
            Event::ParticipantRandomised(r) => {
                member(out, true, "allocation");
                r.allocation.write_canonical(out);
                for (key, value) in [
                    ("arm", &r.arm),
                    ("identity", &r.identity),
                    ("participant", &r.participant),
                    ("site", &r.site),
                    ("stratum", &r.stratum),
                ] {
                    member(out, false, key);
                    write_string(value, out);
                }
                member(out, false, "values");
                map(out, &r.values);
                out.push('}');
            }
            _ => write_canonical(&self.data(), out).expect("event data hold strings, small integers, lists and maps"),
        }
    }

    /// Rebuilds an event from a log entry's type and data.
    pub fn from_parts(kind: &str, data: &Value) -> Result<Event, String> {
        let v = serde_json::json!({"type": kind, "data": data});
        serde_json::from_value(v).map_err(|e| format!("event {kind:?} does not decode: {e}"))
    }
}

/// Data of `trial_created`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialCreated {
    /// Trial id.
    pub trial: String,
    /// Trial title.
    pub title: String,
    /// The protocol file's full text.
    pub protocol: String,
    /// SHA-256 of the protocol text, hex.
    pub protocol_sha256: String,
    /// Commitment to the allocation seed, hex.
    pub seed_commitment: String,
    /// Ed25519 public key that signs checkpoints, hex.
    pub signing_public_key: String,
    /// `random`, or `given` for a demonstration seed.
    pub key_origin: String,
    /// The chancery version that created the trial.
    pub chancery_version: String,
}

/// Data of `referral_screened`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferralScreened {
    /// Participant (referral) id.
    pub participant: String,
    /// Site id.
    pub site: String,
    /// `ineligible` or `declined`.
    pub status: String,
    /// Failed eligibility rule ids (empty when declined).
    pub reasons: Vec<String>,
    /// Screening values (and consent), canonical text; never the identity.
    pub values: BTreeMap<String, String>,
}

/// Data of `participant_randomised`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Randomised {
    /// Participant id.
    pub participant: String,
    /// Site id.
    pub site: String,
    /// Keyed hash of the identity value.
    pub identity: String,
    /// Screening, consent and baseline values, canonical text; never the identity.
    pub values: BTreeMap<String, String>,
    /// Stratum label as used at randomisation.
    pub stratum: String,
    /// Allocated arm id.
    pub arm: String,
    /// How the allocation was decided.
    pub allocation: AllocationRecord,
}

/// Data of `seed_revealed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRevealed {
    /// The allocation seed, 64 lowercase hex digits; it must open the trial's `seed_commitment`.
    pub seed: String,
    /// Why it was revealed (e.g. recruitment closed).
    pub reason: String,
}

/// Data of `outcome_recorded`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeRecorded {
    /// Participant id.
    pub participant: String,
    /// Timepoint id.
    pub timepoint: String,
    /// Date the values were collected, YYYY-MM-DD.
    pub collected_on: String,
    /// Outcome values, canonical text, by outcome name.
    pub values: BTreeMap<String, String>,
    /// Why the values were collected outside the timepoint's window; the
    /// member is present only then (older entries never have it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_reason: Option<String>,
}

/// Data of `outcome_corrected`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeCorrected {
    /// Participant id.
    pub participant: String,
    /// Timepoint id.
    pub timepoint: String,
    /// Outcome name.
    pub field: String,
    /// The value being corrected.
    pub old_value: String,
    /// The corrected value; empty when the value is corrected to missing.
    pub new_value: String,
    /// Why.
    pub reason: String,
}

/// Data of `status_changed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusChanged {
    /// Participant id.
    pub participant: String,
    /// `withdrawn`, `lost` or `died`.
    pub status: String,
    /// Why.
    pub reason: String,
    /// Withdrawn and asked for no further contact or data collection.
    pub no_further_contact: bool,
    /// Date of the change, YYYY-MM-DD.
    pub on: String,
}

/// Data of `consent_renewed`: lifts a request for no further contact, which
/// no status change lifts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentRenewed {
    /// Participant id.
    pub participant: String,
    /// Why contact and data collection are permitted again (how the
    /// participant gave consent).
    pub reason: String,
    /// Date consent was given again, YYYY-MM-DD.
    pub on: String,
}

/// Data of `account_created` and `account_changed`: the account's roles and
/// sites from this entry on, in full (not a difference), so that the log
/// shows at every moment who could do what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountGranted {
    /// The account's name.
    pub account: String,
    /// Its roles (`admin`, `coordinator`, `data_manager`, `evaluator`,
    /// `auditor`), sorted in that order, none twice.
    pub roles: Vec<String>,
    /// Its sites (protocol site ids), sorted, none twice; empty unless it is a coordinator.
    pub sites: Vec<String>,
    /// Why.
    pub reason: String,
}

/// Data of `account_disabled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountDisabled {
    /// The account's name.
    pub account: String,
    /// Why.
    pub reason: String,
}

/// Data of `password_set`: that the password was set, by whom and why; the
/// password and its hash never enter the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordSet {
    /// The account's name.
    pub account: String,
    /// Why.
    pub reason: String,
}

/// Data of `token_created`: the token's public id; the token and its hash
/// never enter the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCreated {
    /// The account the token acts as.
    pub account: String,
    /// The token's public id.
    pub token_id: String,
    /// When it expires (the log's time format).
    pub expires_at: String,
}

/// Data of `token_revoked`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRevoked {
    /// The token's public id.
    pub token_id: String,
    /// Why.
    pub reason: String,
}

/// How an allocation was decided, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum AllocationRecord {
    /// See [`Detail::Blocks`].
    PermutedBlocks {
        /// Stream name.
        stream: String,
        /// Block number from 1.
        block: u64,
        /// Stream word where the block's generation starts.
        start_word: u64,
        /// Position in the block from 1.
        position: u32,
    },
    /// See [`Detail::Simple`].
    Simple {
        /// Stream name.
        stream: String,
        /// First word used.
        word_start: u64,
        /// Word after the last used.
        word_end: u64,
    },
    /// See [`Detail::Minimisation`].
    Minimisation {
        /// Stream name.
        stream: String,
        /// First word used.
        word_start: u64,
        /// Word after the last used.
        word_end: u64,
        /// Score per arm id, as decimal text (integers that may exceed 2^53).
        scores: BTreeMap<String, String>,
        /// Arm ids with the least score, in arm order.
        preferred: Vec<String>,
        /// Draw in 0..1,000,000 between preferred and other arms, if made.
        draw_p: Option<u32>,
        /// Draw among the chosen set, if made.
        draw_arm: Option<u32>,
    },
}

impl AllocationRecord {
    /// Appends the record's canonical JSON: the two records of fixed shape
    /// written member by member in key order, a minimisation record (maps and
    /// optional members) through the generic encoder.
    fn write_canonical(&self, out: &mut String) {
        let number = |out: &mut String, key: &str, n: u64| {
            out.push_str(key);
            out.push_str(&n.to_string());
        };
        match self {
            AllocationRecord::PermutedBlocks { stream, block, start_word, position } => {
                number(out, "{\"block\":", *block);
                out.push_str(",\"method\":\"permuted_blocks\"");
                number(out, ",\"position\":", u64::from(*position));
                number(out, ",\"start_word\":", *start_word);
                out.push_str(",\"stream\":");
                write_string(stream, out);
                out.push('}');
            }
            AllocationRecord::Simple { stream, word_start, word_end } => {
                out.push_str("{\"method\":\"simple\",\"stream\":");
                write_string(stream, out);
                number(out, ",\"word_end\":", *word_end);
                number(out, ",\"word_start\":", *word_start);
                out.push('}');
            }
            AllocationRecord::Minimisation { .. } => {
                let record = serde_json::to_value(self).expect("allocation records serialise");
                write_canonical(&record, out).expect("allocation records hold strings and small integers");
            }
        }
    }

    /// Records a decided allocation with arm names.
    pub fn from_detail(protocol: &Protocol, d: &Detail) -> AllocationRecord {
        match d {
            Detail::Blocks { stream, block, start_word, position } => AllocationRecord::PermutedBlocks {
                stream: stream.clone(),
                block: *block,
                start_word: *start_word,
                position: *position,
            },
            Detail::Simple { stream, word_start, word_end } => {
                AllocationRecord::Simple { stream: stream.clone(), word_start: *word_start, word_end: *word_end }
            }
            Detail::Minimisation { stream, word_start, word_end, scores, preferred, draw_p, draw_arm } => {
                AllocationRecord::Minimisation {
                    stream: stream.clone(),
                    word_start: *word_start,
                    word_end: *word_end,
                    scores: protocol.arms.iter().zip(scores).map(|(a, s)| (a.id.clone(), s.to_string())).collect(),
                    preferred: preferred.iter().map(|&k| protocol.arms[k].id.clone()).collect(),
                    draw_p: *draw_p,
                    draw_arm: *draw_arm,
                }
            }
        }
    }

    /// The decision detail with arm indices; `Err` if it names an unknown arm.
    pub fn to_detail(&self, protocol: &Protocol) -> Result<Detail, String> {
        let arm_index =
            |id: &str| protocol.arms.iter().position(|a| a.id == id).ok_or_else(|| format!("unknown arm {id:?}"));
        Ok(match self {
            AllocationRecord::PermutedBlocks { stream, block, start_word, position } => {
                Detail::Blocks { stream: stream.clone(), block: *block, start_word: *start_word, position: *position }
            }
            AllocationRecord::Simple { stream, word_start, word_end } => {
                Detail::Simple { stream: stream.clone(), word_start: *word_start, word_end: *word_end }
            }
            AllocationRecord::Minimisation { stream, word_start, word_end, scores, preferred, draw_p, draw_arm } => {
                let mut s = Vec::new();
                for a in &protocol.arms {
                    let v = scores.get(&a.id).ok_or_else(|| format!("no score for arm {:?}", a.id))?;
                    s.push(v.parse::<u128>().map_err(|_| format!("score {v:?} is not an integer"))?);
                }
                Detail::Minimisation {
                    stream: stream.clone(),
                    word_start: *word_start,
                    word_end: *word_end,
                    scores: s,
                    preferred: preferred.iter().map(|a| arm_index(a)).collect::<Result<_, _>>()?,
                    draw_p: *draw_p,
                    draw_arm: *draw_arm,
                }
            }
        })
    }
}

/// Decodes the data of the two events a log holds by the thousand
/// (`participant_randomised`, `referral_screened`) straight from their
/// canonical text, without serde's intermediate buffers (the internally tagged
/// allocation record is otherwise read into a buffer of its members first).
/// `data` must already have passed the canonical check, so members come in key
/// order with no whitespace. `None` for anything it does not read (another
/// event, an escaped string, a minimisation record, an integer out of range,
/// any surprise): the caller then takes serde's way, so the result, and every
/// refusal's message, is serde's.
pub(crate) fn decode_canonical_data(kind: &str, data: &str) -> Option<Event> {
    // An empty event of the kind, filled by the one reader of its members.
    let empty = String::new;
    let mut event = match kind {
        "participant_randomised" => Event::ParticipantRandomised(Randomised {
            participant: empty(),
            site: empty(),
            identity: empty(),
            values: BTreeMap::new(),
            stratum: empty(),
            arm: empty(),
            allocation: AllocationRecord::Simple { stream: empty(), word_start: 0, word_end: 0 },
        }),
        "referral_screened" => Event::ReferralScreened(ReferralScreened {
            participant: empty(),
            site: empty(),
            status: empty(),
            reasons: Vec::new(),
            values: BTreeMap::new(),
        }),
        _ => return None,
    };
    decode_canonical_data_into(kind, data, &mut event).then_some(event)
}

/// [`decode_canonical_data`] into an event decoded before, reusing its strings,
/// reasons and values map (a verifier decodes a million entries that differ
/// only in their values; this allocates for none of them). `false` when
/// `into` is another kind of event or the text is not what the direct decoder
/// reads: then `into` holds a mixture of old and new fields, and the caller
/// decodes afresh. When `true`, `into` is exactly what
/// `decode_canonical_data(kind, data)` returns.
pub(crate) fn decode_canonical_data_into(kind: &str, data: &str, into: &mut Event) -> bool {
    let mut c = Canon { s: data, i: 0 };
    let read = match (kind, into) {
        ("participant_randomised", Event::ParticipantRandomised(r)) => (|| {
            c.key(true, "allocation")?;
            c.allocation_into(&mut r.allocation)?;
            c.key(false, "arm")?;
            c.string_into(&mut r.arm)?;
            c.key(false, "identity")?;
            c.string_into(&mut r.identity)?;
            c.key(false, "participant")?;
            c.string_into(&mut r.participant)?;
            c.key(false, "site")?;
            c.string_into(&mut r.site)?;
            c.key(false, "stratum")?;
            c.string_into(&mut r.stratum)?;
            c.key(false, "values")?;
            c.string_map_into(&mut r.values)
        })(),
        ("referral_screened", Event::ReferralScreened(r)) => (|| {
            c.key(true, "participant")?;
            c.string_into(&mut r.participant)?;
            c.key(false, "reasons")?;
            c.string_array_into(&mut r.reasons)?;
            c.key(false, "site")?;
            c.string_into(&mut r.site)?;
            c.key(false, "status")?;
            c.string_into(&mut r.status)?;
            c.key(false, "values")?;
            c.string_map_into(&mut r.values)
        })(),
        _ => None,
    };
    read.is_some() && c.byte(b'}').is_some() && c.i == data.len()
}

/// A cursor over canonical JSON text (see [`decode_canonical_data`]).
struct Canon<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Canon<'a> {
    fn byte(&mut self, b: u8) -> Option<()> {
        (self.s.as_bytes().get(self.i) == Some(&b)).then(|| self.i += 1)
    }

    fn lit(&mut self, l: &str) -> Option<()> {
        self.s.as_bytes()[self.i..].starts_with(l.as_bytes()).then(|| self.i += l.len())
    }

    /// `{"key":` for the first member, `,"key":` for the others.
    fn key(&mut self, first: bool, key: &str) -> Option<()> {
        self.byte(if first { b'{' } else { b',' })?;
        self.byte(b'"')?;
        self.lit(key)?;
        self.lit("\":")
    }

    /// A string with nothing escaped (anything else: `None`), borrowed.
    fn str_ref(&mut self) -> Option<&'a str> {
        self.byte(b'"')?;
        let rest = self.s.as_bytes().get(self.i..)?;
        let end = rest.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if rest[end] != b'"' {
            return None;
        }
        let text = self.s.get(self.i..self.i + end)?;
        self.i += end + 1;
        Some(text)
    }

    /// A string with nothing escaped (anything else: `None`).
    fn string(&mut self) -> Option<String> {
        self.str_ref().map(str::to_string)
    }

    /// [`Canon::string`] into `out`, keeping its allocation.
    fn string_into(&mut self, out: &mut String) -> Option<()> {
        let text = self.str_ref()?;
        out.clear();
        out.push_str(text);
        Some(())
    }

    /// A non-negative integer as the canonical form writes it.
    fn unsigned(&mut self) -> Option<u64> {
        let bytes = self.s.as_bytes();
        let start = self.i;
        let mut n: u64 = 0;
        while let Some(d) = bytes.get(self.i).filter(|b| b.is_ascii_digit()) {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.i += 1;
        }
        let digits = self.i - start;
        (digits > 0 && (digits == 1 || bytes[start] != b'0')).then_some(n)
    }

    fn string_map(&mut self) -> Option<BTreeMap<String, String>> {
        self.byte(b'{')?;
        let mut pairs = Vec::new();
        if self.byte(b'}').is_none() {
            loop {
                let k = self.string()?;
                self.byte(b':')?;
                pairs.push((k, self.string()?));
                if self.byte(b',').is_none() {
                    self.byte(b'}')?;
                    break;
                }
            }
        }
        // In key order already (canonical): collected into the map in one build.
        Some(pairs.into_iter().collect())
    }

    /// [`Canon::string_map`] into `map`: values overwritten in place while the
    /// keys are the map's own, in its order (one protocol's events all have
    /// the same fields); otherwise the map is read afresh.
    fn string_map_into(&mut self, map: &mut BTreeMap<String, String>) -> Option<()> {
        if map.is_empty() {
            *map = self.string_map()?;
            return Some(());
        }
        let start = self.i;
        self.byte(b'{')?;
        let mut slots = map.iter_mut();
        let mut same = true;
        if self.byte(b'}').is_none() {
            loop {
                let k = self.str_ref()?;
                self.byte(b':')?;
                let v = self.str_ref()?;
                match slots.next() {
                    Some((key, value)) if key == k => {
                        value.clear();
                        value.push_str(v);
                    }
                    _ => {
                        same = false;
                        break;
                    }
                }
                if self.byte(b',').is_none() {
                    self.byte(b'}')?;
                    break;
                }
            }
        }
        if same && slots.next().is_none() {
            return Some(());
        }
        self.i = start;
        *map = self.string_map()?;
        Some(())
    }

    /// An array of unescaped strings into `items`, reusing its strings.
    fn string_array_into(&mut self, items: &mut Vec<String>) -> Option<()> {
        self.byte(b'[')?;
        let mut n = 0;
        if self.byte(b']').is_none() {
            loop {
                let text = self.str_ref()?;
                match items.get_mut(n) {
                    Some(item) => {
                        item.clear();
                        item.push_str(text);
                    }
                    None => items.push(text.to_string()),
                }
                n += 1;
                if self.byte(b',').is_none() {
                    self.byte(b']')?;
                    break;
                }
            }
        }
        items.truncate(n);
        Some(())
    }

    /// A permuted-blocks or simple allocation record into `record`, keeping
    /// its stream name's allocation (minimisation: `None`, left to serde).
    fn allocation_into(&mut self, record: &mut AllocationRecord) -> Option<()> {
        let mut stream = match record {
            AllocationRecord::PermutedBlocks { stream, .. }
            | AllocationRecord::Simple { stream, .. }
            | AllocationRecord::Minimisation { stream, .. } => std::mem::take(stream),
        };
        *record = if self.lit("{\"block\":").is_some() {
            let block = self.unsigned()?;
            self.lit(",\"method\":\"permuted_blocks\"")?;
            self.key(false, "position")?;
            let position = u32::try_from(self.unsigned()?).ok()?;
            self.key(false, "start_word")?;
            let start_word = self.unsigned()?;
            self.key(false, "stream")?;
            self.string_into(&mut stream)?;
            self.byte(b'}')?;
            AllocationRecord::PermutedBlocks { stream, block, start_word, position }
        } else {
            self.lit("{\"method\":\"simple\"")?;
            self.key(false, "stream")?;
            self.string_into(&mut stream)?;
            self.key(false, "word_end")?;
            let word_end = self.unsigned()?;
            self.key(false, "word_start")?;
            let word_start = self.unsigned()?;
            self.byte(b'}')?;
            AllocationRecord::Simple { stream, word_start, word_end }
        };
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn generic(e: &Event) -> String {
        let mut out = String::new();
        write_canonical(&e.data(), &mut out).unwrap();
        out
    }

    fn direct(e: &Event) -> String {
        let mut out = String::new();
        e.write_canonical_data(&mut out);
        out
    }

    // Any text, controls, quotes, backslashes and non-ASCII included.
    fn text() -> impl Strategy<Value = String> {
        proptest::string::string_regex("(?s).{0,12}").unwrap()
    }

    fn allocation() -> impl Strategy<Value = AllocationRecord> {
        prop_oneof![
            (text(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(stream, b, s, position)| {
                AllocationRecord::PermutedBlocks { stream, block: b.into(), start_word: s.into(), position }
            }),
            (text(), any::<u32>(), any::<u32>()).prop_map(|(stream, a, b)| AllocationRecord::Simple {
                stream,
                word_start: a.into(),
                word_end: b.into()
            }),
            (
                text(),
                proptest::collection::btree_map(text(), text(), 0..4),
                proptest::collection::vec(text(), 0..3),
                proptest::option::of(any::<u32>()),
                proptest::option::of(any::<u32>())
            )
                .prop_map(|(stream, scores, preferred, draw_p, draw_arm)| AllocationRecord::Minimisation {
                    stream,
                    word_start: 3,
                    word_end: 9,
                    scores,
                    preferred,
                    draw_p,
                    draw_arm
                }),
        ]
    }

    proptest! {
        #[test]
        fn outcome_data_written_directly_is_the_canonical_encoding(
            participant in text(), timepoint in text(), collected_on in text(),
            values in proptest::collection::btree_map(text(), text(), 0..12),
            window_reason in proptest::option::of(text()),
        ) {
            let e = Event::OutcomeRecorded(OutcomeRecorded { participant, timepoint, collected_on, values, window_reason });
            prop_assert_eq!(direct(&e), generic(&e));
        }

        #[test]
        fn randomisation_data_written_directly_is_the_canonical_encoding(
            strings in proptest::collection::vec(text(), 5),
            values in proptest::collection::btree_map(text(), text(), 0..16),
            allocation in allocation(),
        ) {
            let e = screened_or_randomised(false, &strings, values, vec![], allocation);
            prop_assert_eq!(direct(&e), generic(&e));
        }
    }

    /// Mutations of an event's data: drop a member (of the data or of its
    /// allocation record), add one, or give one a value of another type.
    fn mutate(data: &mut Value, drop: usize, extra: bool, retype: usize, nested: bool) {
        let target = if nested && data.get("allocation").is_some() { &mut data["allocation"] } else { data };
        let Value::Object(map) = target else { return };
        let keys: Vec<String> = map.keys().cloned().collect();
        if let Some(k) = keys.get(drop) {
            map.remove(k);
        }
        if extra {
            map.insert("zzz".into(), Value::from(1));
        }
        if let Some(k) = keys.get(retype) {
            map.insert(k.clone(), Value::from(4_294_967_296_u64));
        }
    }

    proptest! {
        #[test]
        fn the_direct_decoder_reads_what_serde_reads(
            strings in proptest::collection::vec(text(), 5),
            values in proptest::collection::btree_map(text(), text(), 0..6),
            reasons in proptest::collection::vec(text(), 0..3),
            allocation in allocation(),
            screened in any::<bool>(),
            (drop, extra, retype, nested) in (0..16usize, any::<bool>(), 0..16usize, any::<bool>()),
        ) {
            let e = screened_or_randomised(screened, &strings, values, reasons, allocation);
            let mut data = e.data();
            let plain = direct(&e);
            if let Some(d) = decode_canonical_data(e.kind(), &plain) {
                prop_assert_eq!(&d, &e);
            } else {
                // Only escapes and minimisation records are left to serde.
                prop_assert!(plain.contains('\\') || plain.contains("minimisation"), "{}", plain);
            }
            mutate(&mut data, drop, extra, retype, nested);
            let mut text = String::new();
            write_canonical(&data, &mut text).unwrap();
            if let Some(d) = decode_canonical_data(e.kind(), &text) {
                prop_assert_eq!(Ok(d), Event::from_parts(e.kind(), &data));
            }
        }
    }

    fn screened_or_randomised(
        screened: bool,
        strings: &[String],
        values: BTreeMap<String, String>,
        reasons: Vec<String>,
        allocation: AllocationRecord,
    ) -> Event {
        if screened {
            Event::ReferralScreened(ReferralScreened {
                participant: strings[0].clone(),
                site: strings[1].clone(),
                status: strings[2].clone(),
                reasons,
                values,
            })
        } else {
            Event::ParticipantRandomised(Randomised {
                participant: strings[0].clone(),
                site: strings[1].clone(),
                identity: strings[2].clone(),
                values,
                stratum: strings[3].clone(),
                arm: strings[4].clone(),
                allocation,
            })
        }
    }

    proptest! {
        #[test]
        fn decoding_into_an_earlier_event_reads_what_decoding_afresh_reads(
            strings in proptest::collection::vec(text(), 10),
            values in proptest::collection::btree_map("[a-e]{1,2}", text(), 0..5),
            // Often the same fields as the first event's, so the in-place path runs.
            same_fields in any::<bool>(),
            other_values in proptest::collection::btree_map("[a-e]{1,2}", text(), 0..5),
            reasons in (proptest::collection::vec(text(), 0..3), proptest::collection::vec(text(), 0..3)),
            allocations in (allocation(), allocation()),
            screened in (any::<bool>(), any::<bool>()),
            (drop, extra, retype, nested, mutated) in (0..16usize, any::<bool>(), 0..16usize, any::<bool>(), any::<bool>()),
        ) {
            let earlier = screened_or_randomised(screened.0, &strings[..5], values.clone(), reasons.0, allocations.0);
            let later_values = if same_fields {
                values.keys().zip(other_values.values().chain(std::iter::repeat(&String::new()))).map(|(k, v)| (k.clone(), v.clone())).collect()
            } else {
                other_values
            };
            let later = screened_or_randomised(screened.1, &strings[5..], later_values, reasons.1, allocations.1);
            let mut text = direct(&later);
            if mutated {
                let mut data = later.data();
                mutate(&mut data, drop, extra, retype, nested);
                text.clear();
                write_canonical(&data, &mut text).unwrap();
            }
            let fresh = decode_canonical_data(later.kind(), &text);
            let mut into = decode_canonical_data(earlier.kind(), &direct(&earlier)).unwrap_or(earlier);
            if decode_canonical_data_into(later.kind(), &text, &mut into) {
                // What serde reads from the same text, and what a fresh decode reads.
                let value: Value = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(Ok(into.clone()), Event::from_parts(later.kind(), &value));
                prop_assert_eq!(Some(into), fresh);
            } else {
                // Declined only where a fresh decode declines too, or the kinds differ.
                prop_assert!(fresh.is_none() || screened.0 != screened.1, "{}", text);
            }
        }
    }

    #[test]
    fn other_events_take_the_generic_encoding() {
        let e = Event::StatusChanged(StatusChanged {
            participant: "P1".into(),
            status: "withdrawn".into(),
            reason: "moved \"away\"\n".into(),
            no_further_contact: true,
            on: "2026-07-01".into(),
        });
        assert_eq!(direct(&e), generic(&e));
        assert!(direct(&e).starts_with("{\"no_further_contact\":true,"));
    }
}
