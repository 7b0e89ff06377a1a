//! Every effect estimate and test of an [`Analysis`] as one flat table, in
//! report order ([`estimates`]): what `estimates.csv` holds.

use serde::Serialize;

use super::Analysis;
use super::tables::num;
use crate::stats::{Estimable, Estimate};

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
