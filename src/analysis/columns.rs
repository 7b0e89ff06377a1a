//! The analysed participants' values as columns: each participant's
//! baseline values, strata and outcomes put into one column per name in a
//! single pass, the numeric ones parsed on the way ([`parse_f64`]: integers
//! read directly, anything else as the standard parse reads it).

use std::collections::BTreeMap;

use chrono::NaiveDate;

use crate::dataset::{NamedValues, Names, OutcomeKeys, OutcomeValue, ParticipantRecord};

/// The analysed participants' values as columns, read from each
/// participant's values in one pass through their name indices rather than
/// one look-up per value: with 100,000 participants the look-ups' cache
/// misses and key comparisons were a third of the analysis.
pub(super) struct Columns<'a> {
    pub(super) people: &'a [&'a ParticipantRecord],
    baseline_index: BTreeMap<&'a str, usize>,
    baseline: Vec<Vec<Option<&'a str>>>,
    /// The baseline columns parsed as numbers, when first asked for.
    numbers: Vec<std::sync::OnceLock<Vec<Option<f64>>>>,
    strata_index: BTreeMap<&'a str, usize>,
    strata: Vec<Vec<Option<&'a str>>>,
    outcome_index: BTreeMap<(&'a str, &'a str), usize>,
    outcome: Vec<Vec<Option<&'a OutcomeValue>>>,
    /// The numeric outcomes' columns parsed as numbers (as [`parse_f64`]),
    /// while the walk over the participants has each value at hand: read
    /// later, each value is a pointer to chase into its participant's memory.
    outcome_numbers: Vec<NumberColumn>,
    /// Whether each participant received the intervention, when the
    /// protocol names a take-up measure: a value of it above zero at any
    /// timepoint (`None` without a value that reads as a number).
    pub(super) take_up: Option<Vec<Option<bool>>>,
}

/// A column parsed as numbers, when it was.
type NumberColumn = Option<Vec<Option<f64>>>;

/// Each participant's named values put into columns: the indices of each
/// name table (all participants of a read dataset share one) are mapped to
/// columns once.
fn named_columns<'a>(
    people: &'a [&'a ParticipantRecord],
    values: impl Fn(&'a ParticipantRecord) -> &'a NamedValues,
    index: &BTreeMap<&'a str, usize>,
    numeric: &[bool],
) -> (Vec<Vec<Option<&'a str>>>, Vec<NumberColumn>) {
    let mut out = vec![vec![None; people.len()]; index.len()];
    // The numeric columns parsed (as [`parse_number`]) while each value is at hand.
    let mut numbers: Vec<NumberColumn> =
        (0..index.len()).map(|c| numeric.get(c).is_some_and(|n| *n).then(|| vec![None; people.len()])).collect();
    let mut by_table: Vec<(&'a std::sync::Arc<Names>, Vec<Option<usize>>)> = Vec::new();
    for (i, r) in people.iter().enumerate() {
        let v = values(r);
        let table = v.names();
        let t = match by_table.iter().position(|(t, _)| std::sync::Arc::ptr_eq(t, table)) {
            Some(t) => t,
            None => {
                by_table.push((table, (0..table.len() as u32).map(|k| index.get(table.name(k)).copied()).collect()));
                by_table.len() - 1
            }
        };
        let columns = &by_table[t].1;
        for (k, x) in v.indexed() {
            if let Some(c) = columns[*k as usize] {
                out[c][i] = Some(x.as_str());
                if let Some(col) = &mut numbers[c] {
                    col[i] = parse_number(x);
                }
            }
        }
    }
    (out, numbers)
}

impl<'a> Columns<'a> {
    /// `numeric` says which baseline names and outcomes hold numbers (their
    /// columns are parsed as they are put together).
    pub(super) fn new(
        people: &'a [&'a ParticipantRecord],
        baseline_names: &[&'a str],
        strata_names: &[&'a str],
        outcome_keys: &[(&'a str, &'a str)],
        numeric: impl Fn(&str) -> bool,
        take_up: Option<&str>,
    ) -> Columns<'a> {
        let index = |names: &[&'a str]| -> BTreeMap<&'a str, usize> {
            let mut m = BTreeMap::new();
            for &n in names {
                let k = m.len();
                m.entry(n).or_insert(k);
            }
            m
        };
        let baseline_index = index(baseline_names);
        let strata_index = index(strata_names);
        let mut outcome_index = BTreeMap::new();
        for &k in outcome_keys {
            let next = outcome_index.len();
            outcome_index.entry(k).or_insert(next);
        }
        let n = people.len();
        let numeric_columns = |index: &BTreeMap<&'a str, usize>| {
            let mut by_column = vec![false; index.len()];
            for (name, &c) in index {
                by_column[c] = numeric(name);
            }
            by_column
        };
        let (baseline, baseline_numbers) =
            named_columns(people, |r| &r.baseline, &baseline_index, &numeric_columns(&baseline_index));
        let (strata, _) = named_columns(people, |r| &r.strata, &strata_index, &[]);
        let mut outcome = vec![vec![None; n]; outcome_index.len()];
        let mut outcome_numbers: Vec<NumberColumn> = vec![None; outcome_index.len()];
        for (&(_, name), &c) in &outcome_index {
            if numeric(name) {
                outcome_numbers[c] = Some(vec![None; n]);
            }
        }
        // Outcome values name their keys by index into a key table that all
        // participants of a read dataset share: each table's indices are
        // mapped to columns once.
        // Each table's keys: their columns, and whether they are of the take-up measure.
        type KeyColumns<'t> = (&'t std::sync::Arc<OutcomeKeys>, Vec<Option<usize>>, Vec<bool>);
        let mut by_table: Vec<KeyColumns<'a>> = Vec::new();
        let mut received: Option<Vec<Option<bool>>> = take_up.map(|_| vec![None; n]);
        for (i, r) in people.iter().enumerate() {
            let table = r.outcomes.keys();
            let t = match by_table.iter().position(|(t, _, _)| std::sync::Arc::ptr_eq(t, table)) {
                Some(t) => t,
                None => {
                    by_table.push((
                        table,
                        table.iter().map(|k| outcome_index.get(&k).copied()).collect(),
                        table.iter().map(|(_, o)| Some(o) == take_up).collect(),
                    ));
                    by_table.len() - 1
                }
            };
            let (_, columns, of_take_up) = &by_table[t];
            let (mut measured, mut positive) = (false, false);
            for (k, v) in r.outcomes.indexed() {
                if let Some(c) = columns[*k as usize] {
                    outcome[c][i] = Some(v);
                    if let Some(col) = &mut outcome_numbers[c] {
                        col[i] = parse_f64(&v.value);
                    }
                }
                if of_take_up[*k as usize]
                    && let Some(x) = parse_f64(&v.value)
                {
                    measured = true;
                    positive |= x > 0.0;
                }
            }
            if let Some(col) = &mut received {
                col[i] = measured.then_some(positive);
            }
        }
        let numbers = baseline_numbers
            .into_iter()
            .map(|col| {
                let cell = std::sync::OnceLock::new();
                if let Some(col) = col {
                    let _ = cell.set(col);
                }
                cell
            })
            .collect();
        Columns {
            people,
            baseline_index,
            baseline,
            numbers,
            strata_index,
            strata,
            outcome_index,
            outcome,
            outcome_numbers,
            take_up: received,
        }
    }

    /// Each participant's value of one outcome at one timepoint as a number
    /// (as [`parse_f64`] reads it; `None` when absent or not a number).
    pub(super) fn outcome_number(&self, tp: &str, name: &str) -> Vec<Option<f64>> {
        match self.outcome_index.get(&(tp, name)).and_then(|&c| self.outcome_numbers[c].as_ref()) {
            Some(col) => col.clone(),
            None => self.outcome(tp, name).into_iter().map(|v| v.and_then(|v| parse_f64(&v.value))).collect(),
        }
    }

    /// A baseline field's text per participant.
    pub(super) fn baseline(&self, name: &str) -> Vec<Option<&'a str>> {
        match self.baseline_index.get(name) {
            Some(&c) => self.baseline[c].clone(),
            None => self.people.iter().map(|r| r.baseline.get(name)).collect(),
        }
    }

    /// A baseline field as a finite number per participant.
    pub(super) fn number(&self, name: &str) -> Vec<Option<f64>> {
        let parse = |col: &[Option<&str>]| col.iter().map(|v| v.and_then(parse_number)).collect();
        match self.baseline_index.get(name) {
            Some(&c) => self.numbers[c].get_or_init(|| parse(&self.baseline[c])).clone(),
            None => parse(&self.baseline(name)),
        }
    }

    /// A stratification factor's level per participant.
    pub(super) fn stratum(&self, name: &str) -> Vec<Option<&'a str>> {
        match self.strata_index.get(name) {
            Some(&c) => self.strata[c].clone(),
            None => self.people.iter().map(|r| r.strata.get(name)).collect(),
        }
    }

    /// Each participant's current value of one outcome at one timepoint.
    pub(super) fn outcome(&self, tp: &str, name: &str) -> Vec<Option<&'a OutcomeValue>> {
        match self.outcome_index.get(&(tp, name)) {
            Some(&c) => self.outcome[c].clone(),
            None => self.people.iter().map(|r| r.outcomes.get(tp, name)).collect(),
        }
    }

    /// A subgroup variable: site, region, a stratification factor or a baseline field.
    pub(super) fn subgroup(&self, name: &str) -> Vec<Option<&'a str>> {
        match name {
            "site" => self.people.iter().map(|r| Some(r.site.as_str())).collect(),
            "region" => self.people.iter().map(|r| r.region.as_deref()).collect(),
            _ => self.stratum(name).into_iter().zip(self.baseline(name)).map(|(s, b)| s.or(b)).collect(),
        }
    }
}

fn parse_number(v: &str) -> Option<f64> {
    parse_f64(v).filter(|v| v.is_finite())
}

/// `v.parse::<f64>().ok()`, with the common case, an integer of at most 15
/// digits (most outcome and baseline values), read directly: such an integer
/// is exactly an `f64`, so it is the value the correctly rounded parse gives.
fn parse_f64(v: &str) -> Option<f64> {
    let b = v.as_bytes();
    let (negative, digits) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    if (1..=15).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit) {
        let n = digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')) as f64;
        return Some(if negative { -n } else { n });
    }
    v.parse().ok()
}

/// A `YYYY-MM-DD` date; the common fixed-width form is read directly, anything
/// else as chrono's `%Y-%m-%d` reads it.
pub(super) fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))
    };
    if b.len() == 10 && b[4] == b'-' && b[7] == b'-' {
        if let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10)) {
            return NaiveDate::from_ymd_opt(y as i32, m, d);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Numbers read directly are those the standard parse reads, to the
        /// bit (sign of zero included), and what it refuses is refused.
        #[test]
        fn numbers_read_directly_are_those_the_standard_parse_reads(
            v in prop_oneof![
                "-?[0-9]{1,18}",
                "[-+]?[0-9]{0,4}(\\.[0-9]{0,4})?(e-?[0-9]{1,2})?",
                "[0-9a-z.+-]{0,6}",
            ],
        ) {
            let want = v.parse::<f64>().ok();
            prop_assert_eq!(parse_f64(&v).map(f64::to_bits), want.map(f64::to_bits), "{:?}", v);
        }
    }

    #[test]
    fn the_integers_read_directly_include_their_edges() {
        for v in ["0", "-0", "007", "999999999999999", "-999999999999999", "1000000000000000", "-", "", "1-"] {
            assert_eq!(parse_f64(v).map(f64::to_bits), v.parse::<f64>().ok().map(f64::to_bits), "{v:?}");
        }
        assert_eq!(parse_number("inf"), None);
        assert_eq!(parse_f64("inf"), Some(f64::INFINITY));
    }
}
