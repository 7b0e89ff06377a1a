//! The pre-specified analysis plan ([`AnalysisPlan`]): covariates,
//! subgroups, the missing-data assumption and imputations, the confidence
//! level, the time-to-event and take-up outcomes; read from `[analysis]`,
//! with the defaults a protocol without it gets.

use serde::Deserialize;

use super::fields::{Declared, Kind, Stage};
use super::outcomes::Outcome;
use super::parse::{Raw, Where};
use crate::error::Result;

/// The pre-specified analysis plan.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AnalysisPlan {
    /// Baseline covariates added to the stratification factors in adjusted models.
    pub covariates: Vec<String>,
    /// Pre-specified subgroup factors (`site`, `region` or category fields).
    pub subgroups: Vec<String>,
    /// Stated assumption about missing outcomes for the primary analysis.
    pub missing_data: String,
    /// Number of imputations for the sensitivity analysis.
    pub imputations: u32,
    /// Confidence level, e.g. 0.95.
    pub confidence: f64,
    /// Outcome used as time to first job, if any (a date outcome).
    pub time_to_event: Option<String>,
    /// Outcome counting take-up of the intervention, for the complier analysis.
    pub take_up: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnalysis {
    #[serde(default)]
    covariates: Vec<String>,
    #[serde(default)]
    subgroups: Vec<String>,
    missing_data: Option<String>,
    imputations: Option<i64>,
    confidence: Option<f64>,
    time_to_event: Option<String>,
    take_up: Option<String>,
}

/// The `[analysis]` table, or the defaults without one.
pub(super) fn analysis_plan(
    raw: &Raw,
    d: &Declared,
    identity: usize,
    outcomes: &[Outcome],
    w: &Where,
) -> Result<AnalysisPlan> {
    let fields = d.fields;
    let analysis = match &raw.analysis {
        None => AnalysisPlan {
            missing_data: "missing at random given arm, stratification factors and baseline".into(),
            imputations: 20,
            confidence: 0.95,
            ..AnalysisPlan::default()
        },
        Some(a) => {
            let r = a.get_ref();
            for c in &r.covariates {
                let i = d.field_index(c).ok_or_else(|| w.at(a, format!("covariate {c:?} is not a declared field")))?;
                if fields[i].stage == Stage::Consent || i == identity || matches!(fields[i].kind, Kind::Date) {
                    return Err(w.at(a, format!("covariate {c:?} cannot be used as a covariate")));
                }
            }
            for s in &r.subgroups {
                let src = d
                    .resolve(s)
                    .ok_or_else(|| w.at(a, format!("subgroup {s:?} names no declared field (nor site/region)")))?;
                if d.levels_of(src).is_none() {
                    return Err(w.at(a, format!("subgroup {s:?} is not a category")));
                }
            }
            let imputations = r.imputations.unwrap_or(20);
            if !(2..=1000).contains(&imputations) {
                return Err(w.at(a, format!("imputations = {imputations}; give a number from 2 to 1000")));
            }
            let confidence = r.confidence.unwrap_or(0.95);
            if !(confidence > 0.5 && confidence < 1.0) {
                return Err(w.at(a, format!("confidence = {confidence}; give a level between 0.5 and 1, e.g. 0.95")));
            }
            let outcome_named = |o: &Option<String>, what: &str| -> Result<()> {
                if let Some(n) = o
                    && !outcomes.iter().any(|x| &x.name == n)
                {
                    return Err(w.at(a, format!("{what} {n:?} is not a declared outcome")));
                }
                Ok(())
            };
            outcome_named(&r.time_to_event, "time_to_event")?;
            outcome_named(&r.take_up, "take_up")?;
            AnalysisPlan {
                covariates: r.covariates.clone(),
                subgroups: r.subgroups.clone(),
                missing_data: r
                    .missing_data
                    .clone()
                    .unwrap_or_else(|| "missing at random given arm, stratification factors and baseline".into()),
                imputations: imputations as u32,
                confidence,
                time_to_event: r.time_to_event.clone(),
                take_up: r.take_up.clone(),
            }
        }
    };
    Ok(analysis)
}
