//! Section 2, the baseline table: per arm, each baseline field summarised
//! (continuous: n, mean (SD), median (IQR), missing; categorical: n per level
//! and missing), with site and region first.

use serde::Serialize;

use super::columns::Columns;
use crate::dataset::Dataset;
use crate::protocol::{Kind, Stage};

/// One row of the baseline table.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineRow {
    /// Field (or `site`, `region`).
    pub field: String,
    /// Label.
    pub label: String,
    /// Unit, if any.
    pub unit: Option<String>,
    /// The summary per arm, in protocol order.
    pub arms: Vec<BaselineArm>,
}

/// One arm's column of a baseline row.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineArm {
    /// Arm id.
    pub arm: String,
    /// The summary.
    pub cell: BaselineCell,
}

/// One arm's summary of one baseline field.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BaselineCell {
    /// A number: n, mean (SD), median (IQR), missing.
    Continuous {
        /// Non-missing values.
        n: usize,
        /// Missing values.
        missing: usize,
        /// Mean (absent when n = 0).
        mean: Option<f64>,
        /// Standard deviation (absent when n < 2).
        sd: Option<f64>,
        /// Median.
        median: Option<f64>,
        /// First quartile (type 7).
        q1: Option<f64>,
        /// Third quartile (type 7).
        q3: Option<f64>,
    },
    /// Levels: n (%) of those with a value, and missing.
    Categorical {
        /// Count per level, in declaration order.
        levels: Vec<(String, usize)>,
        /// Participants with a value.
        n: usize,
        /// Missing values.
        missing: usize,
    },
}

pub(super) fn baseline_table(d: &Dataset, cols: &Columns<'_>) -> Vec<BaselineRow> {
    let people = cols.people;
    let p = &d.protocol;
    let mut rows = Vec::new();
    let arms: Vec<&str> = p.arms.iter().map(|a| a.id.as_str()).collect();
    // Each arm's participants, once.
    let by_arm: Vec<Vec<usize>> =
        arms.iter().map(|arm| (0..people.len()).filter(|&i| people[i].arm == *arm).collect()).collect();
    let categorical = |field: &str, label: &str, levels: Vec<String>, values: &[Option<&str>]| {
        BaselineRow {
            field: field.to_string(),
            label: label.to_string(),
            unit: None,
            arms: arms
                .iter()
                .zip(&by_arm)
                .map(|(arm, members)| {
                    // Tally the distinct values present, then read each level's count.
                    let mut tally: Vec<(&str, usize)> = Vec::new();
                    let mut n = 0;
                    for v in members.iter().filter_map(|&i| values[i]) {
                        n += 1;
                        match tally.iter_mut().find(|(t, _)| *t == v) {
                            Some((_, k)) => *k += 1,
                            None => tally.push((v, 1)),
                        }
                    }
                    let count = |l: &str| tally.iter().find(|(t, _)| *t == l).map_or(0, |(_, k)| *k);
                    let cell = BaselineCell::Categorical {
                        levels: levels.iter().map(|l| (l.clone(), count(l))).collect(),
                        n,
                        missing: members.len() - n,
                    };
                    BaselineArm { arm: arm.to_string(), cell }
                })
                .collect(),
        }
    };
    rows.push(categorical("site", "Site", p.sites.iter().map(|s| s.id.clone()).collect(), &cols.subgroup("site")));
    let mut regions: Vec<String> = p.sites.iter().filter_map(|s| s.region.clone()).collect();
    regions.dedup();
    if !regions.is_empty() {
        regions.sort();
        regions.dedup();
        rows.push(categorical("region", "Region", regions, &cols.subgroup("region")));
    }
    for (i, f) in p.fields.iter().enumerate() {
        if i == p.identity || f.stage == Stage::Consent {
            continue;
        }
        match &f.kind {
            Kind::Integer { .. } | Kind::Number { .. } => rows.push(BaselineRow {
                arms: {
                    let values = cols.number(&f.name);
                    arms.iter()
                        .zip(&by_arm)
                        .map(|(arm, members)| {
                            let vals: Vec<Option<f64>> = members.iter().map(|&i| values[i]).collect();
                            BaselineArm { arm: arm.to_string(), cell: continuous_cell(&vals) }
                        })
                        .collect()
                },
                field: f.name.clone(),
                label: f.label.clone(),
                unit: f.unit.clone(),
            }),
            Kind::Category { levels } => {
                // A screening criterion every randomised participant shares says nothing.
                let values = cols.baseline(&f.name);
                if f.stage == Stage::Screening {
                    let mut present = values.iter().flatten();
                    let first = present.next();
                    if !present.any(|v| Some(v) != first) {
                        continue;
                    }
                }
                rows.push(BaselineRow {
                    unit: f.unit.clone(),
                    ..categorical(&f.name, &f.label, levels.clone(), &values)
                });
            }
            _ => {}
        }
    }
    rows
}

fn continuous_cell(vals: &[Option<f64>]) -> BaselineCell {
    let mut xs: Vec<f64> = vals.iter().flatten().copied().collect();
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    let mean = (n > 0).then(|| xs.iter().sum::<f64>() / n as f64);
    let sd = match (n, mean) {
        (2.., Some(m)) => Some((xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()),
        _ => None,
    };
    let q = |p: f64| crate::stats::continuous::quantile_type7(&xs, p);
    BaselineCell::Continuous { n, missing: vals.len() - n, mean, sd, median: q(0.5), q1: q(0.25), q3: q(0.75) }
}
