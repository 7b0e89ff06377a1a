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
//! Outputs ([`write_tables`], [`markdown()`]) are deterministic: the same
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
//! estimate is an [`Estimable`](crate::stats::Estimable): a value carrying
//! its n per arm, method and confidence level, or "not estimable: why". In
//! JSON an `Estimable` is `{"status": "estimated", "value": …}` or
//! `{"status": "not_estimable", "reason": …}`.
//!
//! # Where each part is
//!
//! - `mod.rs`: [`analyse`] (the sections as tasks on the thread pool, put
//!   together in section order; section 6, the subgroups, is one call into
//!   [`crate::stats::subgroup`]) and [`analyse_primary`]; the header
//!   ([`Analysis`], [`Arms`]) and the adjustment the adjusted models share.
//! - `columns.rs`: the analysed participants' values read into columns once,
//!   numeric ones parsed on the way.
//! - `consort.rs`: section 1, the CONSORT flow.
//! - `baseline.rs`: section 2, the baseline table.
//! - `effects.rs`: sections 3, 4, 7 and 8, the treatment effects: the primary
//!   outcome, the continuous outcomes, missing data (multiple imputation) and
//!   the complier average causal effect.
//! - `time_to_event.rs`: section 5, time to first job.
//! - `estimates.rs`: every estimate and test in one flat table ([`estimates()`]).
//! - `tables.rs`: the files [`write_tables`] writes (analysis.json and the CSVs).
//! - `markdown.rs`: the Markdown summary ([`markdown()`]) and the number
//!   formats the HTML report shares with it.

mod baseline;
mod columns;
mod consort;
mod effects;
mod estimates;
mod markdown;
mod tables;
mod time_to_event;

use chrono::NaiveDate;
use rayon::prelude::*;
use serde::Serialize;

use crate::dataset::{Dataset, ParticipantRecord};
use crate::error::{Error, Result};
use crate::protocol::{Kind, Protocol};
use crate::stats::cace::complier_average_effect;
use crate::stats::design::{Adjustment, Covariate, Factor};
use crate::stats::subgroup::{SubgroupAnalysis, subgroup_analysis};

use baseline::baseline_table;
pub use baseline::{BaselineArm, BaselineCell, BaselineRow};
use columns::Columns;
use consort::consort;
pub use consort::{Consort, ConsortArm, OutcomeCount, TimepointCount};
pub use effects::{Cace, ContinuousOutcome, MissingData, PrimaryOutcome};
use effects::{continuous_analysis, imputation_adjustment, missing_data, primary_analysis, primary_values};
pub use estimates::{EstimateRow, estimates};
pub use markdown::markdown;
pub(crate) use markdown::{digits_for, fmt_ci, fmt_p, opt};
pub use tables::{tables, write_tables};
use time_to_event::time_to_event;
pub use time_to_event::{FOLLOW_UP_DAYS, SurvivalAtTimepoint, TimeToEvent};

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
