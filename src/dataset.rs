//! The analysis dataset: everything the evaluators' analysis reads, as plain
//! values, built from the store by [`crate::ledger::Trial::dataset`].
//!
//! Keeping the analysis on this value (not on SQLite) keeps the statistics
//! pure: values in, estimates out.

use std::sync::Arc;

use chrono::NaiveDate;
use compact_str::CompactString;

use crate::protocol::Protocol;

/// One screened referral (randomised or not), for the CONSORT flow.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferralRecord {
    /// Participant (referral) id.
    pub participant: String,
    /// Site id.
    pub site: String,
    /// `randomised`, `ineligible` or `declined`.
    pub status: String,
    /// Failed eligibility rule ids (ineligible only).
    pub reasons: Vec<String>,
}

/// Where a randomised participant stands in follow-up.
#[derive(Debug, Clone, PartialEq)]
pub enum ParticipantStatus {
    /// In follow-up.
    Active,
    /// Withdrew; `no_further_contact` if they asked for no further data collection.
    Withdrawn {
        /// Why.
        reason: String,
        /// Whether further contact is refused.
        no_further_contact: bool,
        /// When.
        on: NaiveDate,
    },
    /// Lost to follow-up.
    Lost {
        /// Why.
        reason: String,
        /// When.
        on: NaiveDate,
    },
    /// Died.
    Died {
        /// Recorded note.
        reason: String,
        /// When.
        on: NaiveDate,
    },
}

impl ParticipantStatus {
    /// `active`, `withdrawn`, `lost` or `died`.
    pub fn name(&self) -> &'static str {
        match self {
            ParticipantStatus::Active => "active",
            ParticipantStatus::Withdrawn { .. } => "withdrawn",
            ParticipantStatus::Lost { .. } => "lost",
            ParticipantStatus::Died { .. } => "died",
        }
    }
}

/// A current outcome value.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeValue {
    /// Canonical text of the value (as the protocol's type: integer, decimal, level, date).
    /// Held inline (outcome values are short), so a dataset of a million
    /// values makes no allocation per value.
    pub value: CompactString,
    /// The follow-up date it was collected on.
    pub collected_on: NaiveDate,
}

/// The (timepoint id, outcome name) keys of a dataset's outcome values,
/// sorted and distinct, shared by every participant's [`Outcomes`]: each value
/// names its key by its index here instead of owning two strings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutcomeKeys {
    keys: Vec<(String, String)>,
}

impl OutcomeKeys {
    /// The keys, from any list (sorted and deduplicated here).
    pub fn new(mut keys: Vec<(String, String)>) -> OutcomeKeys {
        keys.sort_unstable();
        keys.dedup();
        OutcomeKeys { keys }
    }

    /// The index of a key.
    pub fn index(&self, timepoint: &str, outcome: &str) -> Option<u32> {
        self.keys.binary_search_by(|(t, o)| (t.as_str(), o.as_str()).cmp(&(timepoint, outcome))).ok().map(|k| k as u32)
    }

    /// The key of an index.
    pub fn key(&self, index: u32) -> (&str, &str) {
        let (t, o) = &self.keys[index as usize];
        (t, o)
    }

    /// Every key, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.keys.iter().map(|(t, o)| (t.as_str(), o.as_str()))
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// `values` without indices at or past `len`, sorted by index; of repeated
/// indices the last is kept, as inserting into a map would.
fn by_index_last_kept<V>(mut values: Vec<(u32, V)>, len: usize) -> Vec<(u32, V)> {
    values.retain(|(k, _)| (*k as usize) < len);
    if values.is_sorted_by(|a, b| a.0 < b.0) {
        return values;
    }
    // Stable, so that of equal indices the last stays last.
    values.sort_by_key(|(k, _)| *k);
    let mut kept: Vec<(u32, V)> = Vec::with_capacity(values.len());
    for v in values {
        match kept.last_mut() {
            Some(last) if last.0 == v.0 => *last = v,
            _ => kept.push(v),
        }
    }
    kept
}

/// A participant's current outcome values by (timepoint id, outcome name), in
/// key order.
///
/// A map of owned strings made three allocations and a map entry per value
/// (about 4.4 million small allocations, and as many frees on drop, for the
/// 1.5 million values of a 100,000-participant trial); here the keys are
/// indices into one shared [`OutcomeKeys`] and the values are held inline, so a
/// participant's values are one allocation.
#[derive(Debug, Clone, Default)]
pub struct Outcomes {
    keys: Arc<OutcomeKeys>,
    /// (key index, value), sorted by key index (so by key).
    values: Vec<(u32, OutcomeValue)>,
}

impl Outcomes {
    /// No values.
    pub fn new() -> Outcomes {
        Outcomes::default()
    }

    /// Values under `keys` by key index: sorted here by index; of repeated
    /// indices the last is kept, as inserting into a map would. An index
    /// outside `keys` is left out.
    pub fn from_indexed(keys: Arc<OutcomeKeys>, values: Vec<(u32, OutcomeValue)>) -> Outcomes {
        let values = by_index_last_kept(values, keys.len());
        Outcomes { keys, values }
    }

    /// The shared key table.
    pub fn keys(&self) -> &Arc<OutcomeKeys> {
        &self.keys
    }

    /// The values with their key indices into [`Outcomes::keys`], in key order.
    pub fn indexed(&self) -> &[(u32, OutcomeValue)] {
        &self.values
    }

    /// The value of one outcome at one timepoint.
    pub fn get(&self, timepoint: &str, outcome: &str) -> Option<&OutcomeValue> {
        let k = self.keys.index(timepoint, outcome)?;
        self.values.binary_search_by_key(&k, |(i, _)| *i).ok().map(|i| &self.values[i].1)
    }

    /// Sets one outcome at one timepoint (replacing any value there). Each
    /// new key copies the key table if other participants share it: meant for
    /// building small datasets by hand; [`crate::ledger::Trial::dataset`]
    /// builds them in bulk with [`Outcomes::from_indexed`].
    pub fn insert(&mut self, timepoint: &str, outcome: &str, value: OutcomeValue) {
        if self.keys.index(timepoint, outcome).is_none() {
            let mut keys: Vec<(String, String)> = self.keys.keys.clone();
            keys.push((timepoint.to_string(), outcome.to_string()));
            let keys = Arc::new(OutcomeKeys::new(keys));
            let old = std::mem::replace(&mut self.keys, keys);
            for (k, _) in &mut self.values {
                let (t, o) = old.key(*k);
                *k = self.keys.index(t, o).expect("kept key");
            }
        }
        let k = self.keys.index(timepoint, outcome).expect("inserted key");
        match self.values.binary_search_by_key(&k, |(i, _)| *i) {
            Ok(i) => self.values[i].1 = value,
            Err(i) => self.values.insert(i, (k, value)),
        }
    }

    /// Every ((timepoint, outcome), value), in key order.
    pub fn iter(&self) -> impl Iterator<Item = ((&str, &str), &OutcomeValue)> {
        self.values.iter().map(|(k, v)| (self.keys.key(*k), v))
    }

    /// How many values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Equal when they hold the same values under the same keys (whatever their key tables).
impl PartialEq for Outcomes {
    fn eq(&self, other: &Outcomes) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl FromIterator<((String, String), OutcomeValue)> for Outcomes {
    fn from_iter<I: IntoIterator<Item = ((String, String), OutcomeValue)>>(iter: I) -> Outcomes {
        let values: Vec<((String, String), OutcomeValue)> = iter.into_iter().collect();
        let keys = Arc::new(OutcomeKeys::new(values.iter().map(|(k, _)| k.clone()).collect()));
        let indexed =
            values.into_iter().map(|((t, o), v)| (keys.index(&t, &o).expect("key of the table"), v)).collect();
        Outcomes::from_indexed(keys, indexed)
    }
}

/// The names of a dataset's named values (baseline fields, or stratification
/// factors), sorted and distinct, shared by every participant's
/// [`NamedValues`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Names {
    names: Vec<String>,
}

impl Names {
    /// The names, from any list (sorted and deduplicated here).
    pub fn new(mut names: Vec<String>) -> Names {
        names.sort_unstable();
        names.dedup();
        Names { names }
    }

    /// The index of a name.
    pub fn index(&self, name: &str) -> Option<u32> {
        self.names.binary_search_by(|n| n.as_str().cmp(name)).ok().map(|k| k as u32)
    }

    /// The name of an index.
    pub fn name(&self, index: u32) -> &str {
        &self.names[index as usize]
    }

    /// How many names.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// A participant's text values by name (baseline fields, or strata), in name
/// order: like [`Outcomes`], indices into one shared [`Names`] table and
/// values held inline, so a participant's values are one allocation instead
/// of two strings and a map entry each.
#[derive(Debug, Clone, Default)]
pub struct NamedValues {
    names: Arc<Names>,
    /// (name index, value), sorted by name index.
    values: Vec<(u32, CompactString)>,
}

impl NamedValues {
    /// No values.
    pub fn new() -> NamedValues {
        NamedValues::default()
    }

    /// Values under `names` by name index: sorted here by index; of repeated
    /// indices the last is kept, as inserting into a map would. An index
    /// outside `names` is left out.
    pub fn from_indexed(names: Arc<Names>, values: Vec<(u32, CompactString)>) -> NamedValues {
        let values = by_index_last_kept(values, names.len());
        NamedValues { names, values }
    }

    /// The shared name table.
    pub fn names(&self) -> &Arc<Names> {
        &self.names
    }

    /// The values with their name indices into [`NamedValues::names`], in name order.
    pub fn indexed(&self) -> &[(u32, CompactString)] {
        &self.values
    }

    /// The value of a name.
    pub fn get(&self, name: &str) -> Option<&str> {
        let k = self.names.index(name)?;
        self.values.binary_search_by_key(&k, |(i, _)| *i).ok().map(|i| self.values[i].1.as_str())
    }

    /// Sets a value (replacing any under that name); a new name copies the
    /// name table if others share it: meant for building small datasets by hand.
    pub fn insert(&mut self, name: &str, value: &str) {
        if self.names.index(name).is_none() {
            let mut names = self.names.names.clone();
            names.push(name.to_string());
            let old = std::mem::replace(&mut self.names, Arc::new(Names::new(names)));
            for (k, _) in &mut self.values {
                *k = self.names.index(old.name(*k)).expect("kept name");
            }
        }
        let k = self.names.index(name).expect("inserted name");
        match self.values.binary_search_by_key(&k, |(i, _)| *i) {
            Ok(i) => self.values[i].1 = value.into(),
            Err(i) => self.values.insert(i, (k, value.into())),
        }
    }

    /// Removes a value, returning it.
    pub fn remove(&mut self, name: &str) -> Option<CompactString> {
        let k = self.names.index(name)?;
        let i = self.values.binary_search_by_key(&k, |(i, _)| *i).ok()?;
        Some(self.values.remove(i).1)
    }

    /// Every (name, value), in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (self.names.name(*k), v.as_str()))
    }

    /// How many values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Equal when they hold the same values under the same names (whatever their name tables).
impl PartialEq for NamedValues {
    fn eq(&self, other: &NamedValues) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for NamedValues {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> NamedValues {
        let pairs: Vec<(K, V)> = iter.into_iter().collect();
        let names = Arc::new(Names::new(pairs.iter().map(|(k, _)| k.as_ref().to_string()).collect()));
        let indexed = pairs
            .iter()
            .map(|(k, v)| (names.index(k.as_ref()).expect("a name of the table"), CompactString::from(v.as_ref())))
            .collect();
        NamedValues::from_indexed(names, indexed)
    }
}

/// One randomised participant.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantRecord {
    /// Participant id.
    pub participant: String,
    /// Site id.
    pub site: String,
    /// Region of the site, if the protocol has regions.
    pub region: Option<String>,
    /// Allocated arm id (intention to treat: always the allocated arm).
    pub arm: String,
    /// Level of each stratification factor as used at randomisation, by factor name.
    pub strata: NamedValues,
    /// Date of randomisation (UTC).
    pub randomised_on: NaiveDate,
    /// Screening and baseline values as recorded at randomisation (canonical text), by field name.
    pub baseline: NamedValues,
    /// Follow-up status.
    pub status: ParticipantStatus,
    /// Current outcome values by (timepoint id, outcome name), corrections applied.
    pub outcomes: Outcomes,
}

/// Everything the analysis reads.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The trial's protocol.
    pub protocol: Protocol,
    /// Every screened referral, in log order.
    pub referrals: Vec<ReferralRecord>,
    /// Every randomised participant, in randomisation order.
    pub participants: Vec<ParticipantRecord>,
    /// The date the data are analysed as of.
    pub as_of: NaiveDate,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn value(text: &str, day: u32) -> OutcomeValue {
        OutcomeValue { value: text.into(), collected_on: NaiveDate::from_ymd_opt(2026, 1, 1 + day % 28).unwrap() }
    }

    /// The map of owned strings `Outcomes` replaced, as the model.
    type Model = BTreeMap<(String, String), OutcomeValue>;

    fn same(got: &Outcomes, model: &Model) {
        let listed: Vec<((String, String), OutcomeValue)> =
            got.iter().map(|((t, o), v)| ((t.to_string(), o.to_string()), v.clone())).collect();
        let want: Vec<((String, String), OutcomeValue)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(listed, want);
        assert_eq!(got.len(), model.len());
        assert_eq!(got.is_empty(), model.is_empty());
    }

    proptest! {
        /// Inserting, bulk building (with repeated and unsorted keys) and
        /// collecting all hold what a map would, and look every key up alike.
        #[test]
        fn outcomes_hold_what_a_map_would(
            ops in prop::collection::vec((0u8..4, 0u8..5, "[a-z0-9.-]{0,30}", 0u32..60), 0..40),
        ) {
            let tps = ["m12", "m4", "m6", ""];
            let names = ["phq9", "eq5d", "gad7", "first_job_date", "in_paid_work"];
            let mut model = Model::new();
            let mut inserted = Outcomes::new();
            for (t, o, text, day) in &ops {
                let (t, o) = (tps[*t as usize], names[*o as usize]);
                model.insert((t.to_string(), o.to_string()), value(text, *day));
                inserted.insert(t, o, value(text, *day));
            }
            same(&inserted, &model);
            let collected: Outcomes = ops
                .iter()
                .map(|(t, o, text, day)| {
                    ((tps[*t as usize].to_string(), names[*o as usize].to_string()), value(text, *day))
                })
                .collect();
            same(&collected, &model);
            // In bulk, under a table with more keys than are used.
            let all: Vec<(String, String)> =
                tps.iter().flat_map(|t| names.iter().map(move |o| (t.to_string(), o.to_string()))).collect();
            let keys = Arc::new(OutcomeKeys::new(all));
            let indexed: Vec<(u32, OutcomeValue)> = ops
                .iter()
                .map(|(t, o, text, day)| {
                    (keys.index(tps[*t as usize], names[*o as usize]).unwrap(), value(text, *day))
                })
                .chain(std::iter::once((999, value("outside the table", 0))))
                .collect();
            let bulk = Outcomes::from_indexed(keys, indexed);
            same(&bulk, &model);
            prop_assert_eq!(&bulk, &inserted);
            prop_assert_eq!(&collected, &inserted);
            for t in tps.iter().chain(&["m0"]) {
                for o in names.iter().chain(&["age"]) {
                    let want = model.get(&(t.to_string(), o.to_string()));
                    prop_assert_eq!(inserted.get(t, o), want);
                    prop_assert_eq!(collected.get(t, o), want);
                    prop_assert_eq!(bulk.get(t, o), want);
                }
            }
        }
    }

    proptest! {
        /// Named values hold what the map of owned strings they replaced
        /// would, built by inserting, removing, collecting or in bulk.
        #[test]
        fn named_values_hold_what_a_map_would(
            ops in prop::collection::vec((0u8..6, "[a-z0-9.=|-]{0,30}", any::<bool>()), 0..40),
        ) {
            let names = ["age", "sex", "phq9", "site", "condition", "weeks_out_of_work"];
            let mut model: BTreeMap<String, String> = BTreeMap::new();
            let mut built = NamedValues::new();
            for (k, v, remove) in &ops {
                let k = names[*k as usize];
                if *remove {
                    prop_assert_eq!(built.remove(k).map(|v| v.to_string()), model.remove(k));
                } else {
                    model.insert(k.to_string(), v.clone());
                    built.insert(k, v);
                }
            }
            let want: Vec<(&str, &str)> = model.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            prop_assert_eq!(built.iter().collect::<Vec<_>>(), want.clone());
            prop_assert_eq!(built.len(), model.len());
            let collected: NamedValues = model.iter().collect();
            prop_assert_eq!(&collected, &built);
            let table = Arc::new(Names::new(names.iter().map(|n| n.to_string()).collect()));
            let indexed: Vec<(u32, CompactString)> = ops
                .iter()
                .filter(|(_, _, remove)| !remove)
                .map(|(k, v, _)| (table.index(names[*k as usize]).unwrap(), CompactString::from(v.as_str())))
                .chain(std::iter::once((99, CompactString::from("outside the table"))))
                .collect();
            let bulk = NamedValues::from_indexed(table, indexed);
            let inserted_only: BTreeMap<&str, &str> = ops
                .iter()
                .filter(|(_, _, remove)| !remove)
                .map(|(k, v, _)| (names[*k as usize], v.as_str()))
                .collect();
            prop_assert_eq!(bulk.iter().collect::<Vec<_>>(), inserted_only.into_iter().collect::<Vec<_>>());
            for n in names.iter().chain(&["missing"]) {
                prop_assert_eq!(built.get(n), model.get(*n).map(String::as_str));
                prop_assert_eq!(collected.get(n), model.get(*n).map(String::as_str));
            }
        }
    }

    #[test]
    fn outcomes_differ_when_a_value_or_its_date_does() {
        let a: Outcomes = [(("m4".to_string(), "phq9".to_string()), value("3", 1))].into_iter().collect();
        let mut b = a.clone();
        assert_eq!(a, b);
        b.insert("m4", "phq9", value("3", 2));
        assert_ne!(a, b);
        b.insert("m4", "phq9", value("3", 1));
        assert_eq!(a, b);
        b.insert("m12", "phq9", value("3", 1));
        assert_ne!(a, b);
        assert_ne!(a, Outcomes::new());
    }
}
