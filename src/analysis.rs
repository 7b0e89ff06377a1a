//! The intention-to-treat analysis: the evaluators' tables, from a
//! [`Dataset`] to an [`Analysis`], with no I/O and no SQL.
//!
//! Everyone randomised is analysed in the arm they were allocated to (ICH E9).
//! The intervention is the protocol's first arm and the control its last;
//! differences are intervention minus control. Adjusted models include the
//! stratification factors as main effects (Kahan & Morris; EMA covariate
//! guideline) and any baseline covariates the analysis plan names; ANCOVA adds
//! the outcome's own baseline value. Every number comes from [`crate::stats`],
//! whose estimators are checked against R.
//!
//! Outputs ([`write_tables`], [`markdown`]) are deterministic: the same
//! dataset gives byte-identical files.
//!
//! # Shape of an [`Analysis`] (for renderers)
//!
//! Plain public fields, serialisable with serde, no tuples: the header (trial,
//! `as_of`, confidence `level`, [`Arms`], `adjusted_for`) and one field per
//! section, in report order:
//!
//! 1. `consort`: [`Consort`] (screened, ineligible by reason, declined,
//!    randomised) with one [`ConsortArm`] per arm (allocated, received the
//!    intervention, withdrawn/lost/died with reasons, [`TimepointCount`]s
//!    followed up, [`OutcomeCount`]s analysed);
//! 2. `baseline`: [`BaselineRow`]s, each with one [`BaselineArm`] per arm
//!    holding a [`BaselineCell`] (continuous or categorical);
//! 3. `primary`: [`PrimaryOutcome`] (unadjusted comparison, adjusted
//!    analysis, the headline sentence);
//! 4. `continuous`: [`ContinuousOutcome`]s (summaries, Welch, ANCOVA);
//! 5. `time_to_event`: [`TimeToEvent`] (Kaplan–Meier per arm,
//!    [`SurvivalAtTimepoint`]s, log-rank unstratified and stratified, Cox
//!    unstratified and stratified);
//! 6. `subgroups`: secondary, one [`SubgroupAnalysis`] per pre-specified factor;
//! 7. `missing_data`: [`MissingData`] (assumption, numbers observed and
//!    missing per arm, the pooled multiple-imputation analysis);
//! 8. `cace`: [`Cace`].
//!
//! A section the protocol does not call for is `None` (or empty). Every
//! estimate is an [`Estimable`]: a value carrying its n per arm, method and
//! confidence level, or "not estimable: why". In JSON an `Estimable` is
//! `{"status": "estimated", "value": …}` or `{"status": "not_estimable",
//! "reason": …}`.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::dataset::{Dataset, NamedValues, Names, OutcomeKeys, OutcomeValue, ParticipantRecord, ParticipantStatus};
use crate::error::{Error, Result};
use crate::protocol::{Kind, Protocol, Stage};
use crate::random::Stream;
use crate::stats::binary::{BinaryComparison, compare_outcomes};
use crate::stats::cace::{ComplierEffect, complier_average_effect};
use crate::stats::continuous::{ContinuousSummary, describe, welch_t_test};
use crate::stats::design::{Adjustment, Covariate, Factor};
use crate::stats::imputation::RECOMMENDED_IMPUTATIONS;
use crate::stats::imputation::{ImputedBinary, impute_and_analyse_binary};
use crate::stats::linear::{AdjustedContinuous, ancova, linear_regression};
use crate::stats::logistic::{AdjustedBinary, adjusted_binary};
use crate::stats::subgroup::{SubgroupAnalysis, subgroup_analysis};
use crate::stats::survival::{
    CoxFit, KaplanMeierByArm, LogRank, SurvivalAt, cox_regression, kaplan_meier_by_arm, log_rank,
};
use crate::stats::{ArmCounts, Estimable, Estimate};

/// Days after randomisation at which time to first job is censored.
pub const FOLLOW_UP_DAYS: i64 = 365;

/// The whole analysis.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    /// Trial id.
    pub trial: String,
    /// Trial title.
    pub title: String,
    /// Data as of this date (values collected later are left out).
    pub as_of: NaiveDate,
    /// Confidence level of every interval.
    pub level: f64,
    /// The intervention arm (first declared) and the control arm (last declared).
    pub arms: Arms,
    /// Stratification factors every adjusted model includes.
    pub adjusted_for: Vec<String>,
    /// 1. CONSORT flow.
    pub consort: Consort,
    /// 2. Baseline characteristics by arm.
    pub baseline: Vec<BaselineRow>,
    /// 3. The primary outcome.
    pub primary: Option<PrimaryOutcome>,
    /// 4. Continuous secondary outcomes.
    pub continuous: Vec<ContinuousOutcome>,
    /// 5. Time to first job.
    pub time_to_event: Option<TimeToEvent>,
    /// 6. Pre-specified subgroups (secondary).
    pub subgroups: Vec<SubgroupAnalysis>,
    /// 7. Missing outcome data.
    pub missing_data: Option<MissingData>,
    /// 8. Complier average causal effect.
    pub cace: Option<Cace>,
}

/// Which arm is which.
#[derive(Debug, Clone, Serialize)]
pub struct Arms {
    /// Intervention arm id.
    pub intervention: String,
    /// Its label.
    pub intervention_label: String,
    /// Control arm id.
    pub control: String,
    /// Its label.
    pub control_label: String,
}

/// The CONSORT flow.
#[derive(Debug, Clone, Serialize)]
pub struct Consort {
    /// Referrals screened.
    pub screened: usize,
    /// Screened out.
    pub ineligible: usize,
    /// Screened out, per failed rule (a referral may fail several).
    pub ineligible_by_reason: BTreeMap<String, usize>,
    /// Declined consent.
    pub declined: usize,
    /// Randomised.
    pub randomised: usize,
    /// Per arm, in protocol order.
    pub arms: Vec<ConsortArm>,
}

/// One arm's column of the CONSORT flow.
#[derive(Debug, Clone, Serialize)]
pub struct ConsortArm {
    /// Arm id.
    pub arm: String,
    /// Allocated.
    pub allocated: usize,
    /// Received the intervention (take-up measure > 0), if the protocol has one.
    pub received_intervention: Option<usize>,
    /// Withdrew, with reasons.
    pub withdrawn: usize,
    /// Lost to follow-up.
    pub lost: usize,
    /// Died.
    pub died: usize,
    /// Reasons given for withdrawal, loss and death, with counts.
    pub reasons: BTreeMap<String, usize>,
    /// Participants with any data at each timepoint, in protocol order.
    pub followed_up: Vec<TimepointCount>,
    /// Participants analysed (outcome present) for each analysed outcome, in
    /// report order (the primary outcome first).
    pub analysed: Vec<OutcomeCount>,
}

/// Participants followed up at one timepoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimepointCount {
    /// Timepoint id, e.g. `m12`.
    pub timepoint: String,
    /// Participants with any value recorded at it.
    pub n: usize,
}

/// Participants analysed for one outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutcomeCount {
    /// Outcome and timepoint, e.g. `paid_work_13_weeks_m12`.
    pub outcome: String,
    /// Participants with the outcome present.
    pub n: usize,
}

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

/// Time to first job.
#[derive(Debug, Clone, Serialize)]
pub struct TimeToEvent {
    /// The date outcome used.
    pub outcome: String,
    /// Label.
    pub label: String,
    /// How times were formed.
    pub definition: String,
    /// Participants with any follow-up (the rest contribute nothing).
    pub n: usize,
    /// Kaplan–Meier per arm, with medians.
    pub kaplan_meier: KaplanMeierByArm,
    /// S(t), the probability of no job yet, per arm at each timepoint's target
    /// day (4 and 12 months), with Greenwood standard errors.
    pub survival_at: Vec<SurvivalAtTimepoint>,
    /// Log-rank test, unstratified.
    pub log_rank: Estimable<LogRank>,
    /// Log-rank test stratified by the stratification factors.
    pub log_rank_stratified: Estimable<LogRank>,
    /// Cox model (Efron ties): hazard ratio of a first job, intervention vs control.
    pub cox: Estimable<CoxFit>,
    /// Cox model stratified by the randomisation strata (a baseline hazard per
    /// stratum), the adjusted counterpart of the stratified log-rank test.
    pub cox_stratified: Estimable<CoxFit>,
}

/// Kaplan–Meier S(t) in both arms at one timepoint's target day.
#[derive(Debug, Clone, Serialize)]
pub struct SurvivalAtTimepoint {
    /// Timepoint id, e.g. `m4`.
    pub timepoint: String,
    /// Days after randomisation.
    pub day: u32,
    /// Intervention arm (absent when its curve is not estimable).
    pub intervention: Option<SurvivalAt>,
    /// Control arm (absent when its curve is not estimable).
    pub control: Option<SurvivalAt>,
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

/// Analyses a dataset. `Err` only for a dataset the analysis cannot describe
/// (fewer than two arms); thin or degenerate data give labelled results.
pub fn analyse(d: &Dataset) -> Result<Analysis> {
    let p = &d.protocol;
    let arms = compared_arms(p)?;
    let level = p.analysis.confidence;
    let (people, treated) = compared_people(d, &arms);
    let baseline_names: Vec<&str> = p
        .fields
        .iter()
        .map(|f| f.name.as_str())
        .chain(p.analysis.covariates.iter().map(String::as_str))
        .chain(p.outcomes.iter().filter_map(|o| o.baseline.as_deref()))
        .chain(p.analysis.subgroups.iter().map(String::as_str))
        .collect();
    let strata_names: Vec<&str> =
        p.factors.iter().map(|f| f.name.as_str()).chain(p.analysis.subgroups.iter().map(String::as_str)).collect();
    let outcome_keys: Vec<(&str, &str)> =
        p.outcomes.iter().flat_map(|o| o.timepoints.iter().map(move |t| (t.as_str(), o.name.as_str()))).collect();
    let numeric = |name: &str| {
        let kind = p.field(name).map(|f| &f.kind).or_else(|| p.outcome(name).map(|o| &o.kind));
        matches!(kind, Some(Kind::Integer { .. } | Kind::Number { .. }))
    };
    let cols =
        Columns::new(&people, &baseline_names, &strata_names, &outcome_keys, numeric, p.analysis.take_up.as_deref());
    let adj = adjustment(p, &cols);
    let stats_err = |e: crate::stats::StatsError| Error::Integrity(format!("analysis: {e}"));

    let take_up: Option<&[Option<bool>]> = cols.take_up.as_deref();

    // 3. Primary outcome: its values first, which the subgroups, the missing
    // data and the CACE sections analyse too.
    let primary_outcome = p.outcomes.iter().find(|o| o.primary);
    let primary_values = primary_values(p, &cols);
    let y = primary_values.as_ref().map(|(_, _, y)| y.as_slice());
    let mi_adj = y.map(|_| imputation_adjustment(p, &adj, &cols));

    // The sections are independent tasks for the thread pool (the longest,
    // missing data, split further into its imputations' fits): each result
    // lands in a slot of its own and the analysis is put together from them
    // in section order, so it is the same however the tasks ran. The
    // imputation draws from its own random stream, so its result does not
    // depend on what runs beside it.
    let (treated, adj, cols, people) = (&treated, &adj, &cols, &people);
    let mut primary = None;
    let mut continuous = Vec::new();
    let mut time_to_event_result = None;
    let mut subgroups = Vec::new();
    let mut missing = None;
    let mut cace_effect = None;
    let mut baseline = Vec::new();
    rayon::scope(|s| {
        if let Some((o, tp, y)) = &primary_values {
            let primary = &mut primary;
            s.spawn(move |_| {
                *primary = Some(primary_analysis(o, tp, y, treated, adj, level));
            });
        }
        let continuous = &mut continuous;
        s.spawn(move |_| {
            // 4. Continuous outcomes at their last timepoint (the take-up
            // count is not an outcome), one task each.
            let outcomes: Vec<(&crate::protocol::Outcome, &String)> = p
                .outcomes
                .iter()
                .filter(|o| {
                    matches!(o.kind, Kind::Integer { .. } | Kind::Number { .. })
                        && Some(&o.name) != p.analysis.take_up.as_ref()
                })
                .filter_map(|o| o.timepoints.last().map(|tp| (o, tp)))
                .collect();
            *continuous =
                outcomes.par_iter().map(|&(o, tp)| continuous_analysis(o, tp, cols, treated, adj, level)).collect();
        });
        // 5. Time to first job.
        if let Some(name) = &p.analysis.time_to_event {
            let slot = &mut time_to_event_result;
            s.spawn(move |_| *slot = Some(time_to_event(d, name, people, treated, &adj.factors, level)));
        }
        if let Some(y) = y {
            // 6. Subgroups, one task each.
            let subgroups = &mut subgroups;
            s.spawn(move |_| {
                *subgroups = p
                    .analysis
                    .subgroups
                    .par_iter()
                    .map(|name| {
                        let f = Factor::from_labels(name, &cols.subgroup(name));
                        subgroup_analysis(y, treated, &f, level)
                    })
                    .collect();
            });
            // 7. Missing data.
            if let Some(mi_adj) = &mi_adj {
                let missing = &mut missing;
                s.spawn(move |_| *missing = Some(missing_data(p, y, treated, mi_adj, level)));
            }
            // 8. CACE.
            if let (Some(received), Some(_)) = (take_up, &p.analysis.take_up) {
                let slot = &mut cace_effect;
                s.spawn(move |_| *slot = Some(complier_average_effect(y, received, treated, level)));
            }
        }
        // 2. Baseline table.
        let baseline = &mut baseline;
        s.spawn(move |_| *baseline = baseline_table(d, cols));
    });

    let primary = primary.transpose().map_err(stats_err)?;
    let (continuous, continuous_analysed): (Vec<ContinuousOutcome>, Vec<Vec<bool>>) =
        continuous.into_iter().collect::<crate::stats::Result<Vec<_>>>().map_err(stats_err)?.into_iter().unzip();
    let time_to_event = time_to_event_result.transpose().map_err(stats_err)?;
    let subgroups: Vec<SubgroupAnalysis> =
        subgroups.into_iter().collect::<crate::stats::Result<_>>().map_err(stats_err)?;
    let missing_data = missing.transpose()?;
    let cace = match (cace_effect.transpose().map_err(stats_err)?, &p.analysis.take_up) {
        (Some(effect), Some(name)) => Some(Cace {
            outcome: primary_outcome.map(|o| o.name.clone()).unwrap_or_default(),
            take_up: name.clone(),
            effect,
        }),
        _ => None,
    };
    // 1. CONSORT flow, with the numbers analysed for each outcome.
    let analysed: Vec<(String, Vec<bool>)> = primary_values
        .iter()
        .map(|(o, tp, y)| (format!("{}_{tp}", o.name), y.iter().map(Option::is_some).collect()))
        .chain(continuous.iter().zip(continuous_analysed).map(|(c, a)| (format!("{}_{}", c.outcome, c.timepoint), a)))
        .collect();
    let consort = consort(d, &arms, take_up, people, &analysed);
    Ok(Analysis {
        trial: p.id.clone(),
        title: p.title.clone(),
        as_of: d.as_of,
        level,
        adjusted_for: p.factors.iter().map(|f| f.name.clone()).chain(p.analysis.covariates.iter().cloned()).collect(),
        arms,
        consort,
        baseline,
        primary,
        continuous,
        time_to_event,
        subgroups,
        missing_data,
        cace,
    })
}

/// Section 3 alone, the primary outcome's analysis with the headline, as
/// [`analyse`] computes it (the same columns, adjustment and estimators) but
/// without the other sections: for running the analysis over many simulated
/// trials ([`crate::operating`]). `None` when the protocol has no primary
/// outcome.
pub fn analyse_primary(d: &Dataset) -> Result<Option<PrimaryOutcome>> {
    let p = &d.protocol;
    let arms = compared_arms(p)?;
    let (people, treated) = compared_people(d, &arms);
    let Some((o, tp)) = p.outcomes.iter().find(|o| o.primary).and_then(|o| o.timepoints.last().map(|tp| (o, tp)))
    else {
        return Ok(None);
    };
    let covariates: Vec<&str> = p.analysis.covariates.iter().map(String::as_str).collect();
    let factors: Vec<&str> = p.factors.iter().map(|f| f.name.as_str()).collect();
    let numeric =
        |name: &str| matches!(p.field(name).map(|f| &f.kind), Some(Kind::Integer { .. } | Kind::Number { .. }));
    let cols = Columns::new(&people, &covariates, &factors, &[(tp.as_str(), o.name.as_str())], numeric, None);
    let adj = adjustment(p, &cols);
    let Some((o, tp, y)) = primary_values(p, &cols) else { return Ok(None) };
    primary_analysis(o, tp, &y, &treated, &adj, p.analysis.confidence)
        .map(Some)
        .map_err(|e| Error::Integrity(format!("analysis: {e}")))
}

/// The two arms compared: the protocol's first (the intervention) and its
/// last (the control).
fn compared_arms(p: &Protocol) -> Result<Arms> {
    if p.arms.len() < 2 {
        return Err(Error::Input("the analysis compares two arms; this protocol has one".into()));
    }
    let (first, last) = (&p.arms[0], &p.arms[p.arms.len() - 1]);
    Ok(Arms {
        intervention: first.id.clone(),
        intervention_label: first.label.clone(),
        control: last.id.clone(),
        control_label: last.label.clone(),
    })
}

/// The participants of the two arms compared (with more arms, the others are
/// left out of comparisons), and whether each is in the intervention arm.
fn compared_people<'d>(d: &'d Dataset, arms: &Arms) -> (Vec<&'d ParticipantRecord>, Vec<bool>) {
    let people: Vec<&ParticipantRecord> =
        d.participants.iter().filter(|r| r.arm == arms.intervention || r.arm == arms.control).collect();
    let treated = people.iter().map(|r| r.arm == arms.intervention).collect();
    (people, treated)
}

/// The adjustment of the adjusted models: the stratification factors as main
/// effects and the analysis plan's baseline covariates.
fn adjustment(p: &Protocol, cols: &Columns<'_>) -> Adjustment {
    let factors = p.factors.iter().map(|f| Factor::from_labels(&f.name, &cols.stratum(&f.name))).collect();
    let covariates = p.analysis.covariates.iter().map(|c| Covariate::new(c, cols.number(c))).collect();
    Adjustment { factors, covariates }
}

/// The primary outcome, its timepoint (the last of its timepoints) and its
/// values there (`yes` true, `no` false, anything else missing).
#[allow(clippy::type_complexity)]
fn primary_values<'p>(
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
fn primary_analysis(
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
fn continuous_analysis(
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
fn imputation_adjustment(p: &Protocol, adj: &Adjustment, cols: &Columns<'_>) -> Adjustment {
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
fn missing_data(
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

/// The analysed participants' values as columns, read from each
/// participant's values in one pass through their name indices rather than
/// one look-up per value: with 100,000 participants the look-ups' cache
/// misses and key comparisons were a third of the analysis.
struct Columns<'a> {
    people: &'a [&'a ParticipantRecord],
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
    take_up: Option<Vec<Option<bool>>>,
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
    fn new(
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
    fn outcome_number(&self, tp: &str, name: &str) -> Vec<Option<f64>> {
        match self.outcome_index.get(&(tp, name)).and_then(|&c| self.outcome_numbers[c].as_ref()) {
            Some(col) => col.clone(),
            None => self.outcome(tp, name).into_iter().map(|v| v.and_then(|v| parse_f64(&v.value))).collect(),
        }
    }

    /// A baseline field's text per participant.
    fn baseline(&self, name: &str) -> Vec<Option<&'a str>> {
        match self.baseline_index.get(name) {
            Some(&c) => self.baseline[c].clone(),
            None => self.people.iter().map(|r| r.baseline.get(name)).collect(),
        }
    }

    /// A baseline field as a finite number per participant.
    fn number(&self, name: &str) -> Vec<Option<f64>> {
        let parse = |col: &[Option<&str>]| col.iter().map(|v| v.and_then(parse_number)).collect();
        match self.baseline_index.get(name) {
            Some(&c) => self.numbers[c].get_or_init(|| parse(&self.baseline[c])).clone(),
            None => parse(&self.baseline(name)),
        }
    }

    /// A stratification factor's level per participant.
    fn stratum(&self, name: &str) -> Vec<Option<&'a str>> {
        match self.strata_index.get(name) {
            Some(&c) => self.strata[c].clone(),
            None => self.people.iter().map(|r| r.strata.get(name)).collect(),
        }
    }

    /// Each participant's current value of one outcome at one timepoint.
    fn outcome(&self, tp: &str, name: &str) -> Vec<Option<&'a OutcomeValue>> {
        match self.outcome_index.get(&(tp, name)) {
            Some(&c) => self.outcome[c].clone(),
            None => self.people.iter().map(|r| r.outcomes.get(tp, name)).collect(),
        }
    }

    /// A subgroup variable: site, region, a stratification factor or a baseline field.
    fn subgroup(&self, name: &str) -> Vec<Option<&'a str>> {
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
fn parse_date(s: &str) -> Option<NaiveDate> {
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

fn time_to_event(
    d: &Dataset,
    name: &str,
    people: &[&ParticipantRecord],
    treated: &[bool],
    strata: &[Factor],
    level: f64,
) -> crate::stats::Result<TimeToEvent> {
    let label = d.protocol.outcome(name).map(|o| o.label.clone()).unwrap_or_else(|| name.to_string());
    let (mut time, mut event, mut arm, mut rows) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, r) in people.iter().enumerate() {
        let mut last_contact: Option<i64> = None;
        let mut first_job: Option<i64> = None;
        for ((_, field), v) in r.outcomes.iter() {
            let day = (v.collected_on - r.randomised_on).num_days();
            last_contact = Some(last_contact.map_or(day, |d| d.max(day)));
            if field == name
                && let Some(date) = parse_date(&v.value)
            {
                let job = (date - r.randomised_on).num_days().max(0);
                first_job = Some(first_job.map_or(job, |j| j.min(job)));
            }
        }
        let Some(last) = last_contact else { continue };
        let (t, e) = match first_job {
            Some(j) if j <= FOLLOW_UP_DAYS => (j, true),
            _ => (last.min(FOLLOW_UP_DAYS), false),
        };
        time.push(t as f64);
        event.push(e);
        arm.push(treated[i]);
        rows.push(i);
    }
    let km = kaplan_meier_by_arm(&time, &event, &arm, level)?;
    let survival_at = d
        .protocol
        .timepoints
        .iter()
        .map(|t| {
            let at = |k: &Estimable<crate::stats::survival::KaplanMeier>| k.value().map(|k| k.at(f64::from(t.day)));
            SurvivalAtTimepoint {
                timepoint: t.id.clone(),
                day: t.day,
                intervention: at(&km.treated),
                control: at(&km.control),
            }
        })
        .collect();
    let sub_strata: Option<Factor> = if strata.is_empty() {
        None
    } else {
        let picked: Vec<Factor> = strata
            .iter()
            .map(|f| Factor {
                name: f.name.clone(),
                levels: f.levels.clone(),
                codes: rows.iter().map(|&i| f.codes[i]).collect(),
            })
            .collect();
        let refs: Vec<&Factor> = picked.iter().collect();
        Some(Factor::interaction("stratum", &refs)?)
    };
    let log_rank_unstratified = log_rank(&time, &event, &arm, None)?;
    let log_rank_stratified = log_rank(&time, &event, &arm, sub_strata.as_ref())?;
    let cox = cox_regression(&time, &event, &arm, &Adjustment::default(), None, level)?;
    let cox_stratified = cox_regression(&time, &event, &arm, &Adjustment::default(), sub_strata.as_ref(), level)?;
    Ok(TimeToEvent {
        outcome: name.to_string(),
        label,
        definition: format!(
            "days from randomisation to the first job date recorded at any follow-up; censored at the last follow-up or at day {FOLLOW_UP_DAYS}, whichever is earlier; participants with no follow-up are left out"
        ),
        n: time.len(),
        kaplan_meier: km,
        survival_at,
        log_rank: log_rank_unstratified,
        log_rank_stratified,
        cox,
        cox_stratified,
    })
}

fn consort(
    d: &Dataset,
    arms: &Arms,
    take_up: Option<&[Option<bool>]>,
    people: &[&ParticipantRecord],
    analysed: &[(String, Vec<bool>)],
) -> Consort {
    let mut c = Consort {
        screened: d.referrals.len(),
        ineligible: 0,
        ineligible_by_reason: BTreeMap::new(),
        declined: 0,
        randomised: d.participants.len(),
        arms: Vec::new(),
    };
    for r in &d.referrals {
        match r.status.as_str() {
            "ineligible" => {
                c.ineligible += 1;
                for reason in &r.reasons {
                    *c.ineligible_by_reason.entry(reason.clone()).or_default() += 1;
                }
            }
            "declined" => c.declined += 1,
            _ => {}
        }
    }
    // Which timepoints each participant has any value at, from one pass over
    // their keys (sorted by timepoint).
    let timepoints = &d.protocol.timepoints;
    let seen: Vec<Vec<bool>> = d
        .participants
        .iter()
        .map(|r| {
            let mut seen = vec![false; timepoints.len()];
            let mut last: Option<&str> = None;
            for ((tp, _), _) in r.outcomes.iter() {
                if last != Some(tp) {
                    last = Some(tp);
                    for (k, t) in timepoints.iter().enumerate() {
                        seen[k] |= t.id == *tp;
                    }
                }
            }
            seen
        })
        .collect();
    for arm in &d.protocol.arms {
        let in_arm: Vec<usize> = (0..people.len()).filter(|&i| people[i].arm == arm.id).collect();
        let mut a = ConsortArm {
            arm: arm.id.clone(),
            allocated: d.participants.iter().filter(|r| r.arm == arm.id).count(),
            received_intervention: take_up
                .filter(|_| arm.id == arms.intervention || arm.id == arms.control)
                .map(|t| in_arm.iter().filter(|&&i| t[i] == Some(true)).count()),
            withdrawn: 0,
            lost: 0,
            died: 0,
            reasons: BTreeMap::new(),
            followed_up: Vec::new(),
            analysed: analysed
                .iter()
                .map(|(name, has)| OutcomeCount {
                    outcome: name.clone(),
                    n: in_arm.iter().filter(|&&i| has[i]).count(),
                })
                .collect(),
        };
        for r in d.participants.iter().filter(|r| r.arm == arm.id) {
            let reason = match &r.status {
                ParticipantStatus::Active => continue,
                ParticipantStatus::Withdrawn { reason, .. } => {
                    a.withdrawn += 1;
                    format!("withdrawn: {reason}")
                }
                ParticipantStatus::Lost { reason, .. } => {
                    a.lost += 1;
                    format!("lost: {reason}")
                }
                ParticipantStatus::Died { reason, .. } => {
                    a.died += 1;
                    format!("died: {reason}")
                }
            };
            *a.reasons.entry(reason).or_default() += 1;
        }
        a.followed_up = d
            .protocol
            .timepoints
            .iter()
            .enumerate()
            .map(|(k, t)| {
                let n = d.participants.iter().zip(&seen).filter(|(r, seen)| r.arm == arm.id && seen[k]).count();
                TimepointCount { timepoint: t.id.clone(), n }
            })
            .collect();
        c.arms.push(a);
    }
    c
}

fn baseline_table(d: &Dataset, cols: &Columns<'_>) -> Vec<BaselineRow> {
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

// ---------------------------------------------------------------------------
// Output: tables (CSV and JSON) and a Markdown summary.

/// A flat row of the estimates table: one effect estimate or test.
#[derive(Debug, Clone, Serialize)]
pub struct EstimateRow {
    /// Report section, e.g. `primary`, `continuous`, `subgroup`.
    pub section: String,
    /// Outcome (with timepoint) or subgroup.
    pub outcome: String,
    /// What is estimated.
    pub measure: String,
    /// How.
    pub method: String,
    /// Point estimate, if estimated.
    pub estimate: Option<f64>,
    /// Lower confidence limit.
    pub ci_low: Option<f64>,
    /// Upper confidence limit.
    pub ci_high: Option<f64>,
    /// Confidence level.
    pub level: f64,
    /// Two-sided p-value, if any.
    pub p_value: Option<f64>,
    /// Analysed in the intervention arm.
    pub n_intervention: Option<usize>,
    /// Analysed in the control arm.
    pub n_control: Option<usize>,
    /// `estimated`, or why not.
    pub status: String,
}

fn estimate_row(
    section: &str,
    outcome: &str,
    fallback_measure: &str,
    e: &Estimable<Estimate>,
    level: f64,
) -> EstimateRow {
    match e {
        Estimable::Value(e) => EstimateRow {
            section: section.into(),
            outcome: outcome.into(),
            measure: e.measure.clone(),
            method: e.method.clone(),
            estimate: Some(e.estimate),
            ci_low: Some(e.ci_low),
            ci_high: Some(e.ci_high),
            level: e.level,
            p_value: e.p_value,
            n_intervention: Some(e.n.treated),
            n_control: Some(e.n.control),
            status: match &e.note {
                Some(n) => format!("estimated; {n}"),
                None => "estimated".into(),
            },
        },
        Estimable::NotEstimable(r) => EstimateRow {
            section: section.into(),
            outcome: outcome.into(),
            measure: fallback_measure.into(),
            method: String::new(),
            estimate: None,
            ci_low: None,
            ci_high: None,
            level,
            p_value: None,
            n_intervention: None,
            n_control: None,
            status: r.clone(),
        },
    }
}

fn test_row(
    section: &str,
    outcome: &str,
    measure: &str,
    t: &Estimable<crate::stats::TestResult>,
    level: f64,
) -> EstimateRow {
    let mut row = estimate_row(section, outcome, measure, &Estimable::NotEstimable(String::new()), level);
    match t {
        Estimable::Value(t) => {
            row.method = t.method.clone();
            row.p_value = Some(t.p_value);
            row.estimate = t.statistic;
            row.n_intervention = Some(t.n.treated);
            row.n_control = Some(t.n.control);
            row.status = "estimated".into();
        }
        Estimable::NotEstimable(r) => row.status = r.clone(),
    }
    row
}

/// Every effect estimate and test, flat, in report order.
pub fn estimates(a: &Analysis) -> Vec<EstimateRow> {
    let l = a.level;
    let mut rows = Vec::new();
    if let Some(pr) = &a.primary {
        let o = format!("{}_{}", pr.outcome, pr.timepoint);
        let u = &pr.unadjusted;
        rows.push(estimate_row(
            "primary (adjusted)",
            &o,
            "standardised risk difference (percentage points)",
            &pr.adjusted.risk_difference,
            l,
        ));
        rows.push(estimate_row("primary (adjusted)", &o, "adjusted odds ratio", &pr.adjusted.odds_ratio, l));
        rows.push(estimate_row("primary", &o, "risk difference (percentage points)", &u.risk_difference, l));
        rows.push(estimate_row("primary", &o, "risk difference (percentage points)", &u.risk_difference_wald, l));
        rows.push(estimate_row("primary", &o, "risk ratio", &u.risk_ratio, l));
        rows.push(estimate_row("primary", &o, "odds ratio", &u.odds_ratio, l));
        rows.push(test_row("primary", &o, "chi-square", &u.chi_square, l));
        rows.push(test_row("primary", &o, "Fisher's exact test", &u.fisher_exact, l));
    }
    for c in &a.continuous {
        let o = format!("{}_{}", c.outcome, c.timepoint);
        rows.push(estimate_row("continuous", &o, "mean difference", &c.welch, l));
        rows.push(estimate_row(
            "continuous (adjusted)",
            &o,
            "adjusted mean difference",
            &c.adjusted.mean_difference,
            l,
        ));
    }
    if let Some(t) = &a.time_to_event {
        let hr = t.cox.as_ref().and_then(|c| c.hazard_ratio.clone());
        rows.push(estimate_row("time to event", &t.outcome, "hazard ratio", &hr, l));
        let hr = t.cox_stratified.as_ref().and_then(|c| c.hazard_ratio.clone());
        rows.push(estimate_row("time to event (stratified)", &t.outcome, "hazard ratio", &hr, l));
        let arms =
            [(&a.arms.intervention, &t.kaplan_meier.treated, true), (&a.arms.control, &t.kaplan_meier.control, false)];
        for (arm, km, intervention) in arms {
            let Estimable::Value(km) = km else { continue };
            let row = |measure: String, estimate: Option<f64>, ci: (Option<f64>, Option<f64>), se: &str| EstimateRow {
                section: "time to event".into(),
                outcome: t.outcome.clone(),
                measure,
                method: km.method.clone(),
                estimate,
                ci_low: ci.0,
                ci_high: ci.1,
                level: km.level,
                p_value: None,
                n_intervention: intervention.then_some(km.n),
                n_control: (!intervention).then_some(km.n),
                status: if estimate.is_some() { format!("estimated{se}") } else { "not reached".into() },
            };
            let m = &km.median;
            rows.push(row(format!("median days to first job ({arm})"), m.time, (m.ci_low, m.ci_high), ""));
            for at in &t.survival_at {
                let x = if intervention { &at.intervention } else { &at.control };
                if let Some(x) = x {
                    rows.push(row(
                        format!("S(day {}) without a job, {} ({arm})", at.day, at.timepoint),
                        Some(x.survival),
                        (x.ci_low, x.ci_high),
                        &format!("; Greenwood SE {}", num(x.se)),
                    ));
                }
            }
        }
        rows.push(test_row("time to event", &t.outcome, "log-rank", &t.log_rank.as_ref().map(|x| x.test.clone()), l));
        rows.push(test_row(
            "time to event",
            &t.outcome,
            "log-rank (stratified)",
            &t.log_rank_stratified.as_ref().map(|x| x.test.clone()),
            l,
        ));
    }
    for s in &a.subgroups {
        for lv in &s.levels {
            rows.push(estimate_row(
                "subgroup (secondary)",
                &format!("{}={}", s.factor, lv.level),
                "risk difference (percentage points)",
                &lv.risk_difference,
                l,
            ));
        }
        rows.push(test_row("subgroup (secondary)", &s.factor, "interaction (likelihood ratio)", &s.interaction_lr, l));
    }
    if let Some(m) = &a.missing_data {
        let pooled = |e: &Estimable<crate::stats::imputation::PooledEstimate>, measure: &str| match e {
            Estimable::Value(p) => Estimable::Value(Estimate {
                measure: measure.into(),
                method: p.method.clone(),
                estimate: p.estimate,
                se: Some(p.se),
                ci_low: p.ci_low,
                ci_high: p.ci_high,
                level: p.level,
                p_value: Some(p.p_value),
                df: Some(p.df),
                n: m.imputation.n,
                note: None,
            }),
            Estimable::NotEstimable(r) => Estimable::NotEstimable(r.clone()),
        };
        rows.push(estimate_row(
            "missing data (multiple imputation)",
            &a.primary.as_ref().map(|p| p.outcome.clone()).unwrap_or_default(),
            "standardised risk difference (percentage points)",
            &pooled(&m.imputation.risk_difference, "standardised risk difference (percentage points)"),
            l,
        ));
        // Rubin's rules pool the log odds ratio; report it on the odds-ratio scale.
        let or = pooled(&m.imputation.log_odds_ratio, "adjusted odds ratio").map(|mut e| {
            (e.estimate, e.ci_low, e.ci_high) = (e.estimate.exp(), e.ci_low.exp(), e.ci_high.exp());
            e
        });
        rows.push(estimate_row(
            "missing data (multiple imputation)",
            &a.primary.as_ref().map(|p| p.outcome.clone()).unwrap_or_default(),
            "adjusted odds ratio",
            &or,
            l,
        ));
    }
    if let Some(c) = &a.cace {
        rows.push(estimate_row(
            "CACE",
            &c.outcome,
            "complier average causal effect",
            &c.effect.as_ref().map(|e| e.cace.clone()),
            l,
        ));
    }
    rows
}

/// Writes into `dir`: `analysis.json` (the whole [`Analysis`]), `estimates.csv`
/// (every estimate and test, flat: [`estimates`]), `consort.csv` (the flow),
/// `baseline.csv` (one statistic per row) and `survival.csv` (the
/// Kaplan–Meier curves, one step per row). Numbers are written as the shortest
/// decimal that reads back to the same value, so the files are byte-identical
/// for the same dataset.
/// Existing files are replaced; each file appears whole, and the set at once
/// (see [`crate::outfile::write_set`], which the command line uses with the
/// user's `--force` or not).
pub fn write_tables(a: &Analysis, dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    crate::outfile::write_set(dir, &tables(a)?, crate::outfile::Overwrite::Force, crate::outfile::OUTPUT_MODE)
}

/// The files [`write_tables`] writes, by name, in order.
pub fn tables(a: &Analysis) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let mut written = Vec::new();
    let mut put = |name: &'static str, bytes: Vec<u8>| -> Result<()> {
        written.push((name, bytes));
        Ok(())
    };
    let mut json = serde_json::to_vec_pretty(a).map_err(|e| Error::Integrity(format!("encoding the analysis: {e}")))?;
    json.push(b'\n');
    put("analysis.json", json)?;

    let mut t = table(&[
        "section",
        "outcome",
        "measure",
        "method",
        "estimate",
        "ci_low",
        "ci_high",
        "level",
        "p_value",
        "n_intervention",
        "n_control",
        "status",
    ]);
    for r in estimates(a) {
        t.rows.push(vec![
            Some(r.section),
            Some(r.outcome),
            Some(r.measure),
            Some(r.method),
            r.estimate.map(num),
            r.ci_low.map(num),
            r.ci_high.map(num),
            Some(num(r.level)),
            r.p_value.map(num),
            r.n_intervention.map(|n| n.to_string()),
            r.n_control.map(|n| n.to_string()),
            Some(r.status),
        ]);
    }
    put("estimates.csv", csv_bytes(&t)?)?;

    let mut t = table(&["stage", "arm", "detail", "n"]);
    let row = |stage: &str, arm: &str, detail: &str, n: usize| {
        vec![Some(stage.to_string()), Some(arm.to_string()), Some(detail.to_string()), Some(n.to_string())]
    };
    t.rows.push(row("screened", "", "", a.consort.screened));
    t.rows.push(row("ineligible", "", "", a.consort.ineligible));
    for (reason, n) in &a.consort.ineligible_by_reason {
        t.rows.push(row("ineligible", "", reason, *n));
    }
    t.rows.push(row("declined", "", "", a.consort.declined));
    t.rows.push(row("randomised", "", "", a.consort.randomised));
    for arm in &a.consort.arms {
        t.rows.push(row("allocated", &arm.arm, "", arm.allocated));
        if let Some(n) = arm.received_intervention {
            t.rows.push(row("received intervention", &arm.arm, "", n));
        }
        t.rows.push(row("withdrawn", &arm.arm, "", arm.withdrawn));
        t.rows.push(row("lost to follow-up", &arm.arm, "", arm.lost));
        t.rows.push(row("died", &arm.arm, "", arm.died));
        for (reason, n) in &arm.reasons {
            t.rows.push(row("reason", &arm.arm, reason, *n));
        }
        for f in &arm.followed_up {
            t.rows.push(row("followed up", &arm.arm, &f.timepoint, f.n));
        }
        for o in &arm.analysed {
            t.rows.push(row("analysed", &arm.arm, &o.outcome, o.n));
        }
    }
    put("consort.csv", csv_bytes(&t)?)?;

    let mut t = table(&["field", "arm", "statistic", "value"]);
    for r in &a.baseline {
        for BaselineArm { arm, cell } in &r.arms {
            let mut push = |stat: &str, v: Option<String>| {
                t.rows.push(vec![Some(r.field.clone()), Some(arm.clone()), Some(stat.to_string()), v]);
            };
            match cell {
                BaselineCell::Continuous { n, missing, mean, sd, median, q1, q3 } => {
                    push("n", Some(n.to_string()));
                    push("mean", mean.map(num));
                    push("sd", sd.map(num));
                    push("median", median.map(num));
                    push("q1", q1.map(num));
                    push("q3", q3.map(num));
                    push("missing", Some(missing.to_string()));
                }
                BaselineCell::Categorical { levels, n, missing } => {
                    for (l, k) in levels {
                        push(&format!("n {l}"), Some(k.to_string()));
                        push(&format!("% {l}"), (*n > 0).then(|| format!("{:.1}", 100.0 * *k as f64 / *n as f64)));
                    }
                    push("missing", Some(missing.to_string()));
                }
            }
        }
    }
    put("baseline.csv", csv_bytes(&t)?)?;

    let mut t = table(&["arm", "day", "n_risk", "n_event", "n_censor", "survival", "se"]);
    if let Some(tte) = &a.time_to_event {
        for (arm, km) in
            [(&a.arms.intervention, &tte.kaplan_meier.treated), (&a.arms.control, &tte.kaplan_meier.control)]
        {
            for st in km.value().map(|k| k.steps.as_slice()).unwrap_or_default() {
                t.rows.push(vec![
                    Some(arm.clone()),
                    Some(num(st.time)),
                    Some(st.n_risk.to_string()),
                    Some(st.n_event.to_string()),
                    Some(st.n_censor.to_string()),
                    Some(num(st.survival)),
                    Some(num(st.se)),
                ]);
            }
        }
    }
    put("survival.csv", csv_bytes(&t)?)?;
    Ok(written)
}

fn table(columns: &[&str]) -> crate::export::Table {
    crate::export::Table {
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows: Vec::new(),
        json: Vec::new(),
    }
}

fn csv_bytes(t: &crate::export::Table) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    t.write(crate::export::Format::Csv, &mut out)?;
    Ok(out)
}

/// A number as the tables print it: shortest round-trip decimal.
fn num(x: f64) -> String {
    if x.is_finite() { format!("{x}") } else { String::new() }
}

/// "6.8 pp (95% CI 3.9 to 9.7), p < 0.001"; `unit` follows the estimate.
pub(crate) fn fmt_ci(e: &Estimable<Estimate>, digits: usize, unit: &str) -> String {
    match e {
        Estimable::Value(e) => format!(
            "{:.d$}{unit} ({:.0}% CI {:.d$} to {:.d$}){}",
            e.estimate,
            e.level * 100.0,
            e.ci_low,
            e.ci_high,
            e.p_value.map(|p| format!(", {}", fmt_p(p))).unwrap_or_default(),
            d = digits
        ),
        Estimable::NotEstimable(r) => r.clone(),
    }
}

/// "p = 0.123" or "p < 0.001".
pub(crate) fn fmt_p(p: f64) -> String {
    if p < 0.001 { "p < 0.001".into() } else { format!("p = {p:.3}") }
}

/// Decimals for a measure of this size: three for indices within ±2, else `default`.
pub(crate) fn digits_for(x: f64, default: usize) -> usize {
    if x.abs() < 2.0 { 3 } else { default }
}

/// The Markdown summary printed by `chancery analyse`.
pub fn markdown(a: &Analysis) -> String {
    let mut s = String::new();
    let arms = &a.arms;
    s += &format!("# Intention-to-treat analysis: {}\n\n", a.title);
    s += &format!(
        "Trial `{}`, data as of {}. {} vs {}; differences are {} minus {}. Adjusted models include {}. {:.0}% confidence intervals.\n\n",
        a.trial,
        a.as_of,
        arms.intervention_label,
        arms.control_label,
        arms.intervention,
        arms.control,
        if a.adjusted_for.is_empty() { "no covariates".to_string() } else { a.adjusted_for.join(", ") },
        a.level * 100.0
    );
    let c = &a.consort;
    s += "## 1. CONSORT flow\n\n";
    s += &format!(
        "Screened {}; ineligible {}; declined {}; randomised {}.\n\n",
        c.screened, c.ineligible, c.declined, c.randomised
    );
    s += "| | ";
    s += &c.arms.iter().map(|x| x.arm.as_str()).collect::<Vec<_>>().join(" | ");
    s += " |\n|---|";
    s += &"---|".repeat(c.arms.len());
    s += "\n";
    let line = |label: &str, f: &dyn Fn(&ConsortArm) -> String| {
        format!("| {label} | {} |\n", c.arms.iter().map(f).collect::<Vec<_>>().join(" | "))
    };
    s += &line("allocated", &|x| x.allocated.to_string());
    s += &line("received the intervention", &|x| x.received_intervention.map_or("—".into(), |n| n.to_string()));
    s += &line("withdrawn", &|x| x.withdrawn.to_string());
    s += &line("lost to follow-up", &|x| x.lost.to_string());
    s += &line("died", &|x| x.died.to_string());
    if let Some(first) = c.arms.first() {
        for (i, f) in first.followed_up.iter().enumerate() {
            s += &line(&format!("followed up at {}", f.timepoint), &|x| x.followed_up[i].n.to_string());
        }
        for (i, o) in first.analysed.iter().enumerate() {
            s += &line(&format!("analysed: {}", o.outcome), &|x| x.analysed[i].n.to_string());
        }
    }
    s += "\n## 2. Baseline characteristics\n\n";
    s += &format!(
        "| | {} |\n|---|{}\n",
        c.arms.iter().map(|x| x.arm.as_str()).collect::<Vec<_>>().join(" | "),
        "---|".repeat(c.arms.len())
    );
    for r in &a.baseline {
        match r.arms.first().map(|x| &x.cell) {
            Some(BaselineCell::Continuous { mean, .. }) => {
                let d = digits_for(mean.unwrap_or(0.0), 1);
                let cells: Vec<String> = r
                    .arms
                    .iter()
                    .map(|x| match &x.cell {
                        BaselineCell::Continuous { n, missing, mean, sd, median, q1, q3 } => format!(
                            "{} ({}); {} [{}–{}]; n {n}{}",
                            opt(*mean, d),
                            opt(*sd, d),
                            opt(*median, d),
                            opt(*q1, d),
                            opt(*q3, d),
                            if *missing > 0 { format!(", missing {missing}") } else { String::new() }
                        ),
                        _ => String::new(),
                    })
                    .collect();
                s += &format!("| {}, mean (SD); median [IQR] | {} |\n", r.label, cells.join(" | "));
            }
            Some(BaselineCell::Categorical { levels, .. }) => {
                s += &format!("| {} | {} |\n", r.label, vec![""; r.arms.len()].join(" | "));
                for (li, (l, _)) in levels.iter().enumerate() {
                    let cells: Vec<String> = r
                        .arms
                        .iter()
                        .map(|x| match &x.cell {
                            BaselineCell::Categorical { levels, n, .. } => {
                                let k = levels[li].1;
                                if *n > 0 { format!("{k} ({:.1}%)", 100.0 * k as f64 / *n as f64) } else { "0".into() }
                            }
                            _ => String::new(),
                        })
                        .collect();
                    s += &format!("| &nbsp;&nbsp;{l} | {} |\n", cells.join(" | "));
                }
            }
            None => {}
        }
    }
    s += "\n## 3. Primary outcome\n\n";
    match &a.primary {
        None => s += "The protocol names no primary outcome.\n",
        Some(p) => {
            s += &format!("**{}** at {}.\n\n", p.label, p.timepoint);
            let prop = |e: &Estimable<crate::stats::binary::ArmProportion>| match e {
                Estimable::Value(x) => format!("{}/{} ({:.1}%)", x.events, x.n, x.percent),
                Estimable::NotEstimable(r) => r.clone(),
            };
            s += &format!(
                "- {}: {}; {}: {}\n",
                arms.intervention,
                prop(&p.unadjusted.treated),
                arms.control,
                prop(&p.unadjusted.control)
            );
            s += &format!("- **Adjusted risk difference (headline): {}**\n", p.headline);
            s += &format!("- Adjusted odds ratio: {}\n", fmt_ci(&p.adjusted.odds_ratio, 2, ""));
            s += &format!(
                "- Unadjusted risk difference, Newcombe: {}\n",
                fmt_ci(&p.unadjusted.risk_difference, 1, " pp")
            );
            s += &format!(
                "- Unadjusted risk difference, Wald: {}\n",
                fmt_ci(&p.unadjusted.risk_difference_wald, 1, " pp")
            );
            s += &format!("- Risk ratio: {}\n", fmt_ci(&p.unadjusted.risk_ratio, 2, ""));
            s += &format!("- Odds ratio: {}\n", fmt_ci(&p.unadjusted.odds_ratio, 2, ""));
            let test = |t: &Estimable<crate::stats::TestResult>| match t {
                Estimable::Value(t) => fmt_p(t.p_value),
                Estimable::NotEstimable(r) => r.clone(),
            };
            s += &format!(
                "- Chi-square: {}; Fisher's exact: {}\n",
                test(&p.unadjusted.chi_square),
                test(&p.unadjusted.fisher_exact)
            );
        }
    }
    s += "\n## 4. Continuous outcomes\n\n| outcome | mean difference (Welch) | adjusted (ANCOVA) |\n|---|---|---|\n";
    for c in &a.continuous {
        let d = c.summary.control.value().map_or(2, |x| digits_for(x.mean, 2));
        let unit = c.unit.as_ref().map_or(String::new(), |u| format!(" {u}"));
        s += &format!(
            "| {} ({}) | {} | {} |\n",
            c.label,
            c.timepoint,
            fmt_ci(&c.welch, d, &unit),
            fmt_ci(&c.adjusted.mean_difference, d, &unit)
        );
    }
    s += "\n## 5. Time to first job\n\n";
    match &a.time_to_event {
        None => s += "The protocol names no time-to-event outcome.\n",
        Some(t) => {
            s += &format!("{} ({} participants with follow-up).\n\n", t.definition, t.n);
            let median = |k: &Estimable<crate::stats::survival::KaplanMeier>| match k {
                Estimable::Value(k) => match k.median.time {
                    Some(m) => format!(
                        "median {m} days (CI {} to {})",
                        k.median.ci_low.map_or("—".into(), |x| x.to_string()),
                        k.median.ci_high.map_or("not reached".into(), |x| x.to_string())
                    ),
                    None => "median not reached".into(),
                },
                Estimable::NotEstimable(r) => r.clone(),
            };
            s += &format!("- {}: {}\n", arms.intervention, median(&t.kaplan_meier.treated));
            s += &format!("- {}: {}\n", arms.control, median(&t.kaplan_meier.control));
            for at in &t.survival_at {
                let f = |x: &Option<SurvivalAt>| {
                    x.as_ref().map_or("—".into(), |x| format!("{:.3} (SE {:.3})", x.survival, x.se))
                };
                s += &format!(
                    "- S(t) without a job at {} (day {}): {} {}, {} {}\n",
                    at.timepoint,
                    at.day,
                    arms.intervention,
                    f(&at.intervention),
                    arms.control,
                    f(&at.control)
                );
            }
            let lr = |x: &Estimable<LogRank>| match x {
                Estimable::Value(x) => fmt_p(x.test.p_value),
                Estimable::NotEstimable(r) => r.clone(),
            };
            s += &format!("- Log-rank: {}; stratified: {}\n", lr(&t.log_rank), lr(&t.log_rank_stratified));
            let hr = t.cox.as_ref().and_then(|c| c.hazard_ratio.clone());
            s += &format!("- Hazard ratio (Cox, Efron ties): {}\n", fmt_ci(&hr, 2, ""));
            let hr = t.cox_stratified.as_ref().and_then(|c| c.hazard_ratio.clone());
            s += &format!("- Hazard ratio, stratified by the randomisation strata: {}\n", fmt_ci(&hr, 2, ""));
        }
    }
    s += "\n## 6. Subgroups (secondary)\n\n";
    for g in &a.subgroups {
        let p = match &g.interaction_lr {
            Estimable::Value(t) => format!("interaction {}", fmt_p(t.p_value)),
            Estimable::NotEstimable(r) => r.clone(),
        };
        s += &format!("- **{}** ({p})\n", g.factor);
        for lv in &g.levels {
            s += &format!("  - {}: {}\n", lv.level, fmt_ci(&lv.risk_difference, 1, " pp"));
        }
    }
    s += "\n## 7. Missing outcome data\n\n";
    if let Some(m) = &a.missing_data {
        s += &format!("Primary analysis assumption: {}.\n\n", m.assumption);
        s += &format!(
            "Primary outcome observed: {} {}, {} {}; missing: {} {}, {} {}.\n\n",
            arms.intervention,
            m.observed.treated,
            arms.control,
            m.observed.control,
            arms.intervention,
            m.missing.treated,
            arms.control,
            m.missing.control
        );
        let pooled = match &m.imputation.risk_difference {
            Estimable::Value(p) => {
                format!("{:+.1} pp ({:.0}% CI {:.1} to {:.1})", p.estimate, p.level * 100.0, p.ci_low, p.ci_high)
            }
            Estimable::NotEstimable(r) => r.clone(),
        };
        s += &format!(
            "Sensitivity (multiple imputation, m = {}, Rubin's rules; {} analysed per arm: {} and {}): standardised risk difference {pooled}.\n",
            m.imputations, "all randomised", m.imputation.n.treated, m.imputation.n.control
        );
    }
    s += "\n## 8. Complier average causal effect\n\n";
    match &a.cace {
        None => s += "The protocol names no take-up measure.\n",
        Some(c) => match &c.effect {
            Estimable::Value(e) => {
                s += &format!(
                    "Receipt ({} > 0): {:.1}% of {} and {:.1}% of {}. CACE on {}: {}.\n",
                    c.take_up,
                    e.take_up_treated * 100.0,
                    arms.intervention,
                    e.take_up_control * 100.0,
                    arms.control,
                    c.outcome,
                    fmt_ci(&Estimable::Value(e.cace.clone()), 1, " pp")
                );
            }
            Estimable::NotEstimable(r) => s += &format!("{r}\n"),
        },
    }
    s
}

pub(crate) fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or("—".into(), |v| format!("{v:.digits$}"))
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
