//! Section 5, time to first job: days from randomisation to the first job
//! date recorded, censored at the last follow-up or at [`FOLLOW_UP_DAYS`];
//! Kaplan–Meier per arm, S(t) at each timepoint, log-rank and Cox,
//! unstratified and stratified by the randomisation strata.

use serde::Serialize;

use super::columns::parse_date;
use crate::dataset::{Dataset, ParticipantRecord};
use crate::stats::Estimable;
use crate::stats::design::{Adjustment, Factor};
use crate::stats::survival::{
    CoxFit, KaplanMeierByArm, LogRank, SurvivalAt, cox_regression, kaplan_meier_by_arm, log_rank,
};

/// Days after randomisation at which time to first job is censored.
pub const FOLLOW_UP_DAYS: i64 = 365;

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

pub(super) fn time_to_event(
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
