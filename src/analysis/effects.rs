//! Sections 3, 4, 7 and 8, the treatment effects, each a call into
//! [`crate::stats`]: the primary outcome (unadjusted and adjusted, with the
//! headline), the continuous outcomes (Welch and ANCOVA), missing data
//! (multiple imputation from the trial's own stream) and the complier
//! average causal effect.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::columns::Columns;
use crate::error::{Error, Result};
use crate::protocol::{Kind, Protocol, Stage};
use crate::random::Stream;
use crate::stats::binary::{BinaryComparison, compare_outcomes};
use crate::stats::cace::ComplierEffect;
use crate::stats::continuous::{ContinuousSummary, describe, welch_t_test};
use crate::stats::design::{Adjustment, Covariate};
use crate::stats::imputation::RECOMMENDED_IMPUTATIONS;
use crate::stats::imputation::{ImputedBinary, impute_and_analyse_binary};
use crate::stats::linear::{AdjustedContinuous, ancova, linear_regression};
use crate::stats::logistic::{AdjustedBinary, adjusted_binary};
use crate::stats::{ArmCounts, Estimable, Estimate};

/// The primary outcome's analysis.
#[derive(Debug, Clone, Serialize)]
pub struct PrimaryOutcome {
    /// Outcome name.
    pub outcome: String,
    /// Label.
    pub label: String,
    /// Timepoint analysed.
    pub timepoint: String,
    /// Unadjusted: per-arm proportions, risk difference (Newcombe and Wald),
    /// risk ratio, odds ratio, chi-square and Fisher's exact test.
    pub unadjusted: BinaryComparison,
    /// Adjusted for the stratification factors (the headline): adjusted odds
    /// ratio and the standardised risk difference in percentage points.
    pub adjusted: AdjustedBinary,
    /// The headline in words, e.g. "+4.0 pp (95% CI 1.1 to 6.9)".
    pub headline: String,
}

/// One continuous outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ContinuousOutcome {
    /// Outcome name.
    pub outcome: String,
    /// Label.
    pub label: String,
    /// Unit.
    pub unit: Option<String>,
    /// Timepoint analysed.
    pub timepoint: String,
    /// Mean (SD) and more per arm.
    pub summary: ContinuousSummary,
    /// Welch mean difference.
    pub welch: Estimable<Estimate>,
    /// Adjusted mean difference: ANCOVA on the baseline value (when the outcome has
    /// one) and the stratification factors.
    pub adjusted: AdjustedContinuous,
}

/// Missing outcome data for the primary outcome.
#[derive(Debug, Clone, Serialize)]
pub struct MissingData {
    /// The protocol's stated assumption for the primary analysis.
    pub assumption: String,
    /// Outcome present, per arm: the numbers analysed in the primary analysis
    /// (complete cases, valid under the stated assumption given the strata).
    pub observed: ArmCounts,
    /// Outcome missing, per arm.
    pub missing: ArmCounts,
    /// Sensitivity analysis: multiple imputation (logistic imputation model with
    /// arm, stratification factors and baseline measures; Rubin's rules).
    pub imputation: ImputedBinary,
    /// Number of imputations: the protocol's, and never fewer than 20
    /// ([`RECOMMENDED_IMPUTATIONS`]).
    pub imputations: usize,
    /// How the imputation's random stream is keyed (so anyone can reproduce it).
    pub stream: String,
}

/// The complier average causal effect.
#[derive(Debug, Clone, Serialize)]
pub struct Cace {
    /// Outcome analysed.
    pub outcome: String,
    /// The take-up measure: received the intervention when its value is > 0 at any timepoint.
    pub take_up: String,
    /// Allocation as the instrument for receipt (Wald / two-stage least squares estimator).
    pub effect: Estimable<ComplierEffect>,
}

/// The primary outcome, its timepoint (the last of its timepoints) and its
/// values there (`yes` true, `no` false, anything else missing).
#[allow(clippy::type_complexity)]
pub(super) fn primary_values<'p>(
    p: &'p Protocol,
    cols: &Columns<'_>,
) -> Option<(&'p crate::protocol::Outcome, &'p String, Vec<Option<bool>>)> {
    let o = p.outcomes.iter().find(|o| o.primary)?;
    let tp = o.timepoints.last()?;
    let y = cols
        .outcome(tp, &o.name)
        .into_iter()
        .map(|v| match v?.value.as_str() {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        })
        .collect();
    Some((o, tp, y))
}

/// Section 3, the primary outcome `y`: the unadjusted comparison and the
/// adjusted (headline) analysis.
pub(super) fn primary_analysis(
    o: &crate::protocol::Outcome,
    tp: &str,
    y: &[Option<bool>],
    treated: &[bool],
    adj: &Adjustment,
    level: f64,
) -> crate::stats::Result<PrimaryOutcome> {
    let unadjusted = compare_outcomes(y, treated, level)?;
    let adjusted = adjusted_binary(y, treated, adj, level)?;
    let headline = match &adjusted.risk_difference {
        Estimable::Value(e) => {
            format!("{:+.1} pp ({:.0}% CI {:.1} to {:.1})", e.estimate, level * 100.0, e.ci_low, e.ci_high)
        }
        Estimable::NotEstimable(r) => r.clone(),
    };
    Ok(PrimaryOutcome {
        outcome: o.name.clone(),
        label: o.label.clone(),
        timepoint: tp.to_string(),
        unadjusted,
        adjusted,
        headline,
    })
}

/// Section 4, one continuous outcome at timepoint `tp`: summaries, Welch's
/// difference and the ANCOVA on its baseline value (or the adjusted
/// regression when it has none); and who was analysed (has a value).
pub(super) fn continuous_analysis(
    o: &crate::protocol::Outcome,
    tp: &str,
    cols: &Columns<'_>,
    treated: &[bool],
    adj: &Adjustment,
    level: f64,
) -> crate::stats::Result<(ContinuousOutcome, Vec<bool>)> {
    let y: Vec<Option<f64>> = cols.outcome_number(tp, &o.name);
    let summary = describe(&y, treated)?;
    let welch = welch_t_test(&y, treated, level)?;
    let adjusted = match &o.baseline {
        Some(b) => ancova(&y, &format!("baseline_{b}"), &cols.number(b), treated, adj, level)?,
        None => linear_regression(&y, treated, adj, level)?,
    };
    let analysed = y.iter().map(Option::is_some).collect();
    Ok((
        ContinuousOutcome {
            outcome: o.name.clone(),
            label: o.label.clone(),
            unit: o.unit.clone(),
            timepoint: tp.to_string(),
            summary,
            welch,
            adjusted,
        },
        analysed,
    ))
}

/// The adjustment of the imputation model: the analysis's, with every
/// numeric baseline field as a covariate.
pub(super) fn imputation_adjustment(p: &Protocol, adj: &Adjustment, cols: &Columns<'_>) -> Adjustment {
    let mut mi_adj = adj.clone();
    for f in p.fields.iter().filter(|f| f.stage == Stage::Baseline) {
        if matches!(f.kind, Kind::Integer { .. } | Kind::Number { .. })
            && !mi_adj.covariates.iter().any(|c| c.name == f.name)
        {
            mi_adj.covariates.push(Covariate::new(&f.name, cols.number(&f.name)));
        }
    }
    mi_adj
}

/// Section 7, missing data: multiple imputation of the primary outcome `y`,
/// from the trial's own imputation stream.
pub(super) fn missing_data(
    p: &Protocol,
    y: &[Option<bool>],
    treated: &[bool],
    mi_adj: &Adjustment,
    level: f64,
) -> Result<MissingData> {
    let stats_err = |e: crate::stats::StatsError| Error::Integrity(format!("analysis: {e}"));
    let key: [u8; 32] =
        Sha256::new().chain_update(b"chancery/v1/analysis/imputation/").chain_update(p.id.as_bytes()).finalize().into();
    let mut stream = Stream::open(&key, "imputation", 0);
    let mut words = || stream.next_word();
    // White, Royston & Wood (2011): at least as many imputations as the
    // percentage of incomplete cases; the floor is 20.
    let m = (p.analysis.imputations as usize).max(RECOMMENDED_IMPUTATIONS);
    let imputation = impute_and_analyse_binary(y, treated, mi_adj, m, level, &mut words).map_err(stats_err)?;
    let count = |present: bool| {
        let n = |arm: bool| y.iter().zip(treated).filter(|(v, t)| **t == arm && v.is_some() == present).count();
        ArmCounts { treated: n(true), control: n(false) }
    };
    Ok(MissingData {
        assumption: p.analysis.missing_data.clone(),
        observed: count(true),
        missing: count(false),
        imputation,
        imputations: m,
        stream: format!(
            "ChaCha20 keyed by SHA-256(\"chancery/v1/analysis/imputation/\" + trial id {:?}), stream \"imputation\"",
            p.id
        ),
    })
}
