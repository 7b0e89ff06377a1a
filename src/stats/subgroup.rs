//! Subgroup analysis: the treatment effect within each level of a baseline
//! factor and a test of treatment-by-subgroup interaction.
//!
//! Within-level effects are the risk difference (Newcombe) and odds ratio
//! (Woolf) of [`super::binary`]. The interaction is tested in logistic
//! regression by comparing `outcome ~ treated + subgroup` with
//! `outcome ~ treated * subgroup`: the likelihood-ratio (deviance) test as
//! R's `anova(fit0, fit1, test = "Chisq")`, and the Wald chi-square
//! `bᵀ V⁻¹ b` of the interaction coefficients. Subgroup findings are
//! exploratory: interpret the interaction test, not within-level p-values
//! (Wang et al., NEJM 2007).

use super::binary::{TwoByTwo, compare_proportions};
use super::design::{Adjustment, Factor, observed_levels};
use super::dist::chisq_upper;
use super::logistic::{arm_counts, complete_rows, fit_design, fit_problem};
use super::{Estimable, Estimate, Result, TestResult, check_len, check_level, parallel_map};

/// The effect within one level of the subgroup factor.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SubgroupLevel {
    /// The level label.
    pub level: String,
    /// Risk difference (percentage points), Newcombe interval.
    pub risk_difference: Estimable<Estimate>,
    /// Odds ratio, Woolf interval.
    pub odds_ratio: Estimable<Estimate>,
}

/// Effects by subgroup and the interaction tests.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SubgroupAnalysis {
    /// The subgroup factor's name.
    pub factor: String,
    /// One entry per observed level, in level order.
    pub levels: Vec<SubgroupLevel>,
    /// Likelihood-ratio test of treatment × subgroup.
    pub interaction_lr: Estimable<TestResult>,
    /// Wald chi-square test of treatment × subgroup.
    pub interaction_wald: Estimable<TestResult>,
}

/// Treatment effects within each level of `subgroup`, and interaction tests.
pub fn subgroup_analysis(
    outcome: &[Option<bool>],
    treated: &[bool],
    subgroup: &Factor,
    level: f64,
) -> Result<SubgroupAnalysis> {
    let level = check_level(level)?;
    check_len("outcome", treated.len(), outcome.len())?;
    check_len(&format!("factor {}", subgroup.name), treated.len(), subgroup.len())?;
    let adj = Adjustment { factors: vec![subgroup.clone()], covariates: vec![] };
    let rows = complete_rows(outcome, &adj);
    let mut levels = Vec::new();
    for lev in observed_levels(subgroup, &rows) {
        let in_level: Vec<Option<bool>> =
            (0..outcome.len()).map(|i| if subgroup.codes[i] == Some(lev) { outcome[i] } else { None }).collect();
        let c = compare_proportions(TwoByTwo::from_outcomes(&in_level, treated)?, level)?;
        levels.push(SubgroupLevel {
            level: subgroup.levels[lev].clone(),
            risk_difference: c.risk_difference,
            odds_ratio: c.odds_ratio,
        });
    }
    let n = arm_counts(treated, &rows);
    // The two nested models are independent fits: one per core.
    let mut fits = parallel_map(&[None, Some(subgroup)], |f| fit_design(outcome, treated, &adj, *f, &rows));
    let (d1, f1) = fits.pop().expect("two fits");
    let (d0, f0) = fits.pop().expect("two fits");
    let problem = if rows.is_empty() {
        Some("not estimable: no participant has the outcome and the subgroup".to_string())
    } else if d1.interactions.is_empty() {
        Some("not estimable: no subgroup level besides the reference has both arms".to_string())
    } else {
        fit_problem(&f0, &d0).or_else(|| fit_problem(&f1, &d1))
    };
    let (interaction_lr, interaction_wald) = match problem {
        Some(reason) => (Estimable::NotEstimable(reason.clone()), Estimable::NotEstimable(reason)),
        None => {
            let df = (d1.x.ncols() - d0.x.ncols()) as f64;
            let lr = (f0.deviance - f1.deviance).max(0.0);
            let idx = &d1.interactions;
            let b = nalgebra::DVector::from_iterator(idx.len(), idx.iter().map(|&j| f1.beta[j]));
            let v = nalgebra::DMatrix::from_fn(idx.len(), idx.len(), |r, c| f1.cov[(idx[r], idx[c])]);
            let wald = v.try_inverse().map(|vi| (b.transpose() * vi * &b)[(0, 0)]);
            let wald_df = idx.len() as f64;
            (
                Estimable::Value(TestResult {
                    method: "likelihood-ratio test of treatment x subgroup interaction".into(),
                    statistic: Some(lr),
                    df: Some(df),
                    p_value: chisq_upper(lr, df),
                    n,
                }),
                match wald {
                    Some(w) if w.is_finite() => Estimable::Value(TestResult {
                        method: "Wald chi-square test of treatment x subgroup interaction".into(),
                        statistic: Some(w),
                        df: Some(wald_df),
                        p_value: chisq_upper(w, wald_df),
                        n,
                    }),
                    _ => Estimable::not_estimable("not estimable: interaction covariance is singular"),
                },
            )
        }
    };
    Ok(SubgroupAnalysis { factor: subgroup.name.clone(), levels, interaction_lr, interaction_wald })
}
