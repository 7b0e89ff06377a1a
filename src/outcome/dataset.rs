//! [`Trial::dataset`]: the analysis dataset, read from one snapshot of the
//! database on one connection, the randomising entries decoded on a thread of
//! their own while the rest is read.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use compact_str::CompactString;
use rayon::prelude::*;

use super::{date_of, local_date_of};
use crate::dataset::{
    Dataset, NamedValues, Names, OutcomeKeys, OutcomeValue, Outcomes, ParticipantRecord, ParticipantStatus,
    ReferralRecord,
};
use crate::error::{Error, Result};
use crate::ledger::Trial;
use crate::log::Entry;
use crate::store::Store;

impl Trial {
    /// The analysis dataset as of `as_of`: values collected after it are left out.
    ///
    /// One state of the database is read: every read below is on this
    /// connection, inside one read transaction.
    pub fn dataset(&self, as_of: NaiveDate) -> Result<Dataset> {
        let (_snapshot, _head) = self.store.read_snapshot()?;
        let protocol = self.protocol.clone();
        let zone = protocol.timezone;
        // The randomising entries, read by key through the participants table,
        // their bodies copied into chunks that another thread decodes while
        // this one reads on (the rest of the referrals, the statuses and the
        // outcome values). The decoder hands each chunk's buffer back for
        // reuse. (The outcome values were once read in two halves on two more
        // connections; on this machine's two cores that bought nothing
        // measurable, see BENCHMARKS.md, and was folded into this one read.)
        let (referrals, statuses, randomisations, outcomes) = std::thread::scope(|scope| {
            let (to_decoder, chunks) = std::sync::mpsc::channel::<RandomisingEntries>();
            let (give_back, returned) = std::sync::mpsc::channel::<RandomisingEntries>();
            let decoded = scope.spawn(move || {
                let mut out = Vec::new();
                let mut names = DecodedNames::default();
                let mut failed = None;
                for mut chunk in chunks {
                    if failed.is_none()
                        && let Err(e) = chunk.decode_into(&mut out, &mut names, zone)
                    {
                        failed = Some(e);
                    }
                    chunk.clear();
                    // The reader may be done; then the buffer is simply dropped.
                    let _ = give_back.send(chunk);
                }
                if let Some(e) = failed {
                    return Err(e);
                }
                // Unstable: each seq is one entry, decoded once (a participant row
                // naming another's entry fails the participant check).
                out.sort_unstable_by_key(|(seq, _, _)| *seq);
                Ok((out.into_iter().map(|(_, on, r)| (on, r)).collect::<Vec<_>>(), names))
            });
            let sent = self.randomising_entries(|chunk| {
                let empty = returned.try_recv().unwrap_or_default();
                // The decoder stops only after this thread drops `to_decoder`.
                let _ = to_decoder.send(std::mem::replace(chunk, empty));
            });
            drop(to_decoder);
            let rest = sent.and_then(|()| {
                Ok((self.referral_records(as_of)?, self.status_records(as_of)?, outcome_runs(&self.store, as_of)?))
            });
            let decoded = decoded.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            let (referrals, statuses, outcomes) = rest?;
            let randomisations = decoded?;
            Ok::<_, Error>((referrals, statuses, randomisations, outcomes))
        })?;
        let (mut runs, seen) = outcomes;
        let keys = Arc::new(OutcomeKeys::new(seen.clone()));
        let renumber: Vec<u32> = seen.iter().map(|(t, f)| keys.index(t, f).expect("a key of the table")).collect();
        let (randomisations, names) = randomisations;
        let (baseline_names, baseline_renumber) = names.baseline.table();
        let (strata_names, strata_renumber) = names.strata.table();
        let named = |table: &Arc<Names>, renumber: &[u32], mut values: Vec<(u32, CompactString)>| {
            for (k, _) in &mut values {
                *k = renumber[*k as usize];
            }
            NamedValues::from_indexed(table.clone(), values)
        };
        // The records are built on the thread pool (the cores are otherwise
        // idle here, the reads done), in randomisation order, once each
        // participant's run of outcome values is moved out of the runs (the
        // one step that needs them mutably).
        let owned: Vec<_> = randomisations
            .into_iter()
            .filter(|(on, _)| *on <= as_of)
            .map(|r| {
                let own = runs.binary_search_by(|(p, _)| p.as_str().cmp(&r.1.participant)).ok();
                (r, own.map(|k| std::mem::take(&mut runs[k].1)).unwrap_or_default())
            })
            .collect();
        let participants: Vec<ParticipantRecord> = owned
            .into_par_iter()
            .map(|((randomised_on, r), mut own)| {
                for (k, _) in &mut own {
                    *k = renumber[*k as usize];
                }
                ParticipantRecord {
                    region: protocol.site(&r.site).and_then(|s| s.region.clone()),
                    status: statuses.get(&r.participant).cloned().unwrap_or(ParticipantStatus::Active),
                    outcomes: Outcomes::from_indexed(keys.clone(), own),
                    participant: r.participant,
                    site: r.site,
                    arm: r.arm,
                    strata: named(&strata_names, &strata_renumber, r.strata),
                    randomised_on,
                    baseline: named(&baseline_names, &baseline_renumber, r.baseline),
                }
            })
            .collect();
        Ok(Dataset { protocol, referrals, participants, as_of })
    }

    /// The screened referrals up to `as_of`, for the dataset, in log order.
    fn referral_records(&self, as_of: NaiveDate) -> Result<Vec<ReferralRecord>> {
        let mut out: Vec<(u64, ReferralRecord)> = Vec::new();
        // Referrals screened on one day follow one another in the log, not in
        // key order, but a day's timestamps share their date: it is read once
        // for each run of them.
        // (In a time zone other than UTC the date is the zone's, read for each.)
        let mut day: (String, NaiveDate) = (String::new(), NaiveDate::MIN);
        let zone = self.protocol.timezone;
        self.store.for_each_referral(|r| {
            let date = r.screened_at.get(..10).unwrap_or(r.screened_at);
            if zone != chrono_tz::Tz::UTC {
                day.1 = local_date_of(r.screened_at, zone);
            } else if day.0 != date {
                day = (date.to_string(), date_of(r.screened_at));
            }
            if day.1 <= as_of {
                out.push((
                    r.seq,
                    ReferralRecord {
                        participant: r.participant.to_string(),
                        site: r.site.to_string(),
                        status: r.status.to_string(),
                        reasons: r.reasons.split(',').filter(|x| !x.is_empty()).map(str::to_string).collect(),
                    },
                ));
            }
            Ok(())
        })?;
        out.sort_unstable_by_key(|(seq, _)| *seq);
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }

    /// Each participant's follow-up status as of `as_of` (none: active).
    fn status_records(&self, as_of: NaiveDate) -> Result<BTreeMap<String, ParticipantStatus>> {
        Ok(self
            .store
            .statuses()?
            .into_iter()
            .filter(|s| date_of(&s.on_date) <= as_of)
            .map(|s| {
                let on = date_of(&s.on_date);
                let st = match s.status.as_str() {
                    "withdrawn" => {
                        ParticipantStatus::Withdrawn { reason: s.reason, no_further_contact: s.no_further_contact, on }
                    }
                    "lost" => ParticipantStatus::Lost { reason: s.reason, on },
                    _ => ParticipantStatus::Died { reason: s.reason, on },
                };
                (s.participant, st)
            })
            .collect())
    }

    /// Every participant's randomising log entry, found by the seq its
    /// participants row records, passed to `full` in chunks of about
    /// [`CHUNK_BYTES`] (the last when the read ends), which it may take and
    /// replace. A row whose seq names no entry, or an entry of another type,
    /// is an integrity error.
    fn randomising_entries(&self, mut full: impl FnMut(&mut RandomisingEntries)) -> Result<()> {
        let mut out = RandomisingEntries::default();
        self.store.for_each_randomising_entry(|row| {
            let Some((kind, body)) = row.entry else {
                return Err(Error::Integrity(format!(
                    "participant {} was randomised by log entry {}, which is not in the log; run `chancery verify`",
                    row.participant, row.seq
                )));
            };
            if kind != "participant_randomised" {
                return Err(Error::Integrity(format!(
                    "participant {} was randomised by log entry {}, which is a {kind} entry; run `chancery verify`",
                    row.participant, row.seq
                )));
            }
            let start = out.text.len();
            out.text.push_str(row.participant);
            let split = out.text.len();
            out.text.push_str(body);
            out.rows.push(RandomisingSpan { seq: row.seq, start, split, end: out.text.len() });
            if out.text.len() >= CHUNK_BYTES {
                full(&mut out);
            }
            Ok(())
        })?;
        if !out.rows.is_empty() {
            full(&mut out);
        }
        Ok(())
    }
}

/// Each participant's outcome values (participant, values under provisional
/// key numbers) in participant (byte) order, and the keys in order of their
/// numbers ([`outcome_runs`]).
type OutcomeRuns = (Vec<(String, Vec<(u32, OutcomeValue)>)>, Vec<(String, String)>);

/// The current outcome values collected up to `as_of`, read from `store`:
/// of the participants in `range` (see [`Store::for_each_outcome_row`]).
///
/// Rows come ordered by participant, then timepoint and field: each
/// participant's run of values is gathered, then moved into a vector of its
/// own size; keys are numbered in order of first sight (a key is most often
/// the one after the last key seen, so that guess is tried first), to be
/// renumbered in key order once all are known. Runs are kept in participant
/// (byte) order for binary search. A participant id, key or date equal to
/// the one before (or to a known key) is compared as bytes and not checked
/// again as text.
fn outcome_runs(store: &Store, as_of: NaiveDate) -> Result<OutcomeRuns> {
    let mut runs: Vec<(String, Vec<(u32, OutcomeValue)>)> = Vec::new();
    let mut run_of = String::new();
    let mut run: Vec<(u32, OutcomeValue)> = Vec::new();
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut last_key = 0usize;
    let mut last_date: (Vec<u8>, NaiveDate) = (Vec::new(), NaiveDate::MIN);
    store.for_each_outcome_row(|row| {
        if last_date.0 != row.collected_on {
            last_date.1 = date_of(row.text(row.collected_on)?);
            last_date.0.clear();
            last_date.0.extend_from_slice(row.collected_on);
        }
        let collected_on = last_date.1;
        // A value corrected to missing is missing to the analysis.
        if collected_on > as_of || row.value.is_empty() {
            return Ok(());
        }
        if run_of.as_bytes() != row.participant {
            let participant = row.text(row.participant)?;
            if !run.is_empty() {
                // Moved into an exact-size vector; `run` keeps its buffer.
                let mut own = Vec::with_capacity(run.len());
                own.append(&mut run);
                runs.push((std::mem::take(&mut run_of), own));
            }
            run_of = participant.to_string();
        }
        let is =
            |k: usize| seen.get(k).is_some_and(|(t, f)| t.as_bytes() == row.timepoint && f.as_bytes() == row.field);
        let key = if is(last_key + 1) {
            last_key + 1
        } else if let Some(k) = (0..seen.len()).find(|&k| is(k)) {
            k
        } else {
            seen.push((row.text(row.timepoint)?.to_string(), row.text(row.field)?.to_string()));
            seen.len() - 1
        };
        last_key = key;
        run.push((key as u32, OutcomeValue { value: CompactString::from(row.text(row.value)?), collected_on }));
        Ok(())
    })?;
    if !run.is_empty() {
        runs.push((run_of, run));
    }
    Ok((runs, seen))
}

/// Bytes of randomising entries read before they are handed to the decoder:
/// enough to keep the hand-over cost negligible, small enough to stay in
/// cache and to reuse a few buffers rather than fill fresh memory.
const CHUNK_BYTES: usize = 1 << 20;

/// The participants' randomising entries as read: each participant id and
/// entry body, one after the other in `text`.
#[derive(Default)]
struct RandomisingEntries {
    text: String,
    rows: Vec<RandomisingSpan>,
}

/// Where one participant's id (`start..split`) and entry body (`split..end`)
/// lie in [`RandomisingEntries::text`], and the seq its row records.
struct RandomisingSpan {
    seq: u64,
    start: usize,
    split: usize,
    end: usize,
}

impl RandomisingEntries {
    /// Empties the chunk, keeping its buffers.
    fn clear(&mut self) {
        self.text.clear();
        self.rows.clear();
    }

    /// Appends the chunk's randomisations to `out` with their seqs and dates:
    /// each entry checked to be canonical, of its seq, and a randomisation of
    /// the participant whose row names it. Only what the dataset keeps is
    /// decoded (the identity hash and the allocation record are skipped, but
    /// must be there: `chancery verify` checks them).
    fn decode_into(
        &self,
        out: &mut Vec<(u64, NaiveDate, Randomisation)>,
        names: &mut DecodedNames,
        zone: chrono_tz::Tz,
    ) -> Result<()> {
        for row in &self.rows {
            let seq = row.seq;
            let (participant, body) = (&self.text[row.start..row.split], &self.text[row.split..row.end]);
            let entry = Entry::check(body)
                .map_err(|m| Error::Integrity(format!("log entry {seq}: {m}; run `chancery verify`")))?;
            let parts = match entry.kind.as_ref() {
                "participant_randomised" => serde_json::from_str::<RandomisedParts>(entry.data).ok(),
                _ => None,
            };
            let Some(r) = parts else {
                return Err(Error::Integrity(format!("log entry {seq} does not decode; run `chancery verify`")));
            };
            if entry.seq != seq || r.participant != participant {
                return Err(Error::Integrity(format!(
                    "log entry {seq} is not the randomisation of participant {participant}, whose row names it; \
                     run `chancery verify`"
                )));
            }
            let strata = r
                .stratum
                .split('|')
                .filter_map(|part| part.split_once('='))
                .map(|(k, v)| (names.strata.id(k), CompactString::from(v)))
                .collect();
            let baseline =
                r.values.0.iter().map(|(k, v)| (names.baseline.id(&k.0), CompactString::from(&*v.0))).collect();
            out.push((
                seq,
                local_date_of(&entry.ts, zone),
                Randomisation { participant: r.participant, site: r.site, arm: r.arm, strata, baseline },
            ));
        }
        Ok(())
    }
}

/// A randomisation as the dataset keeps it, its named values under the
/// decoder's provisional name numbers ([`SeenNames`]).
struct Randomisation {
    participant: String,
    site: String,
    arm: String,
    /// Each stratification factor's level, from the stratum label.
    strata: Vec<(u32, CompactString)>,
    baseline: Vec<(u32, CompactString)>,
}

/// The names the decoder has met, numbered in order of first sight; the next
/// name is most often the one after the last, so that guess is tried first.
#[derive(Default)]
struct SeenNames {
    names: Vec<String>,
    last: usize,
}

impl SeenNames {
    fn id(&mut self, name: &str) -> u32 {
        let k = if self.names.get(self.last + 1).is_some_and(|n| n == name) {
            self.last + 1
        } else if let Some(k) = self.names.iter().position(|n| n == name) {
            k
        } else {
            self.names.push(name.to_string());
            self.names.len() - 1
        };
        self.last = k;
        k as u32
    }

    /// The sorted table, and each provisional number's index in it.
    fn table(self) -> (Arc<Names>, Vec<u32>) {
        let table = Arc::new(Names::new(self.names.clone()));
        let renumber = self.names.iter().map(|n| table.index(n).expect("a name of the table")).collect();
        (table, renumber)
    }
}

/// The provisional name numbers of the baseline fields and the strata.
#[derive(Default)]
struct DecodedNames {
    baseline: SeenNames,
    strata: SeenNames,
}

/// A JSON object of strings as its (name, value) pairs in order, borrowed
/// from the text where no unescaping is needed.
struct TextPairs<'a>(Vec<(Text<'a>, Text<'a>)>);

/// A JSON string, borrowed where it can be.
#[derive(serde::Deserialize)]
struct Text<'a>(#[serde(borrow)] std::borrow::Cow<'a, str>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for TextPairs<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<TextPairs<'a>, D::Error> {
        struct Pairs<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Pairs<'a> {
            type Value = TextPairs<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> std::result::Result<TextPairs<'a>, M::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(pair) = map.next_entry::<Text<'de>, Text<'de>>()? {
                    out.push(pair);
                }
                Ok(TextPairs(out))
            }
        }
        d.deserialize_map(Pairs(std::marker::PhantomData))
    }
}

/// What the dataset reads of a `participant_randomised` event's data: the
/// event's members, the two it does not use skipped unread.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RandomisedParts<'a> {
    participant: String,
    site: String,
    #[allow(dead_code)]
    identity: serde::de::IgnoredAny,
    #[serde(borrow)]
    values: TextPairs<'a>,
    #[serde(borrow)]
    stratum: std::borrow::Cow<'a, str>,
    arm: String,
    #[allow(dead_code)]
    allocation: serde::de::IgnoredAny,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small demonstration trial in `dir`, its database's path.
    fn demo_trial(dir: &std::path::Path) -> std::path::PathBuf {
        crate::demo::run(
            &crate::demo::DemoOptions {
                dir: dir.join("trial"),
                protocol: concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/work-health-ips.toml").into(),
                referrals: 400,
                seed: [7; 32],
                effect_pp: 4.0,
            },
            |_, _, _| {},
        )
        .unwrap()
        .db
    }

    /// The dataset's referrals, read in key order and sorted by seq, are the
    /// referrals in log order (SQLite's `ORDER BY seq`), dates filtered alike.
    #[test]
    fn referrals_sorted_by_seq_are_the_referrals_in_log_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = demo_trial(dir.path());
        let mut trial = Trial::open(&db).unwrap();
        // More referrals, whose ids sort before the demo's and in the
        // opposite order to the log's, so that key order is not log order.
        let key = crate::keys::TrialKey::read(&crate::keys::default_key_path(&db)).unwrap();
        let extra: Vec<(String, crate::referral::Referral)> =
            crate::demo::simulate_referrals(&trial.protocol, &[7; 32], 430)
                .into_iter()
                .skip(400)
                .enumerate()
                .map(|(i, mut r)| {
                    r.participant = format!("A{:03}", 99 - i);
                    (format!("line {i}"), r)
                })
                .collect();
        let now = crate::clock::Timestamp(trial.store.head().unwrap().ts.unwrap().parse().unwrap());
        trial.randomise(&key, &extra, "test", now).unwrap();
        let rows = trial.store.referrals().unwrap();
        assert!(rows.last().unwrap().participant < rows[0].participant);
        let days: Vec<NaiveDate> = rows.iter().map(|r| date_of(&r.screened_at)).collect();
        for as_of in [NaiveDate::MAX, days[days.len() / 2], days[0], NaiveDate::MIN] {
            let want: Vec<ReferralRecord> = rows
                .iter()
                .filter(|r| date_of(&r.screened_at) <= as_of)
                .map(|r| ReferralRecord {
                    participant: r.participant.clone(),
                    site: r.site.clone(),
                    status: r.status.clone(),
                    reasons: r.reasons.split(',').filter(|x| !x.is_empty()).map(str::to_string).collect(),
                })
                .collect();
            assert_eq!(trial.referral_records(as_of).unwrap(), want, "as of {as_of}");
        }
        assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq) && rows.len() > 300);
        assert!(rows.iter().any(|r| !r.reasons.is_empty()));
    }
}
