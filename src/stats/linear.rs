//! Linear regression for a continuous outcome and ANCOVA.
//!
//! Ordinary least squares by Householder QR, as R's `lm`: coefficients,
//! standard errors `sqrt(σ² (XᵀX)⁻¹)` with `σ² = RSS / (n − rank)`, t
//! statistics, p-values and `confint` intervals from Student's t with
//! `n − rank` degrees of freedom. ANCOVA (outcome ~ arm + baseline value +
//! stratification factors) is the recommended primary analysis of a
//! continuous outcome measured at baseline (EMA 2015; Vickers & Altman 2001).

use super::design::{Adjustment, Covariate, build};
use super::dist::{t_quantile, t_two_sided_p};
use super::gram::{inverse_spd, solve_spd, weighted_gram};
use super::logistic::{arm_counts, complete_rows, qr_inverse_crossprod, qr_least_squares};
use super::{Coefficient, Estimable, Estimate, Result, all_finite, check_len, check_level};
use nalgebra::DVector;

/// A fitted linear model.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LinearFit {
    /// "ordinary least squares (QR), t confidence intervals".
    pub method: String,
    /// Participants analysed per arm.
    pub n: super::ArmCounts,
    /// Coefficients with t statistics and intervals.
    pub coefficients: Vec<Coefficient>,
    /// Columns left out as linear combinations of others (R prints `NA`).
    pub aliased: Vec<String>,
    /// Residual degrees of freedom, n − rank.
    pub df_residual: usize,
    /// Residual standard error σ̂.
    pub sigma: f64,
    /// Confidence level.
    pub level: f64,
}

impl LinearFit {
    /// The coefficient with this R name.
    pub fn coefficient(&self, term: &str) -> Option<&Coefficient> {
        self.coefficients.iter().find(|c| c.term == term)
    }
}

/// A linear-model analysis: the fit and the adjusted mean difference.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AdjustedContinuous {
    /// The linear model.
    pub fit: Estimable<LinearFit>,
    /// Adjusted mean difference (intervention − control).
    pub mean_difference: Estimable<Estimate>,
}

/// Fits `outcome ~ treated + factors + covariates` by OLS on complete cases
/// (R `lm` + `confint`).
pub fn linear_regression(
    outcome: &[Option<f64>],
    treated: &[bool],
    adj: &Adjustment,
    level: f64,
) -> Result<AdjustedContinuous> {
    let level = check_level(level)?;
    check_len("outcome", treated.len(), outcome.len())?;
    adj.check(treated.len())?;
    let finite: Vec<Option<f64>> = outcome.iter().map(|v| v.filter(|x| x.is_finite())).collect();
    let rows = complete_rows(&finite, adj);
    let n = arm_counts(treated, &rows);
    let bail = |reason: &str| AdjustedContinuous {
        fit: Estimable::not_estimable(reason),
        mean_difference: Estimable::not_estimable(reason),
    };
    let design = build(treated, adj, None, &rows);
    let p = design.x.ncols();
    if rows.len() <= p {
        return Ok(bail("not estimable: no more participants than model parameters"));
    }
    let y = DVector::from_iterator(rows.len(), rows.iter().map(|&i| finite[i].unwrap_or(0.0)));
    // Normal equations by Cholesky in one pass over the rows; Householder QR
    // (as R's `lm.fit`) when they are too ill-conditioned.
    let (xtx, xty) = weighted_gram(&design.x, None, Some(y.as_slice()));
    let normal = solve_spd(&xtx, &xty).zip(inverse_spd(&xtx));
    let (Some(beta), Some(xtx_inv)) = (match normal {
        Some((b, v)) => (Some(b), Some(v)),
        None => (qr_least_squares(design.x.clone(), y.clone()), qr_inverse_crossprod(design.x.clone())),
    }) else {
        return Ok(bail("not estimable: design matrix is singular"));
    };
    let resid = &y - &design.x * &beta;
    let df = rows.len() - p;
    let rss = resid.norm_squared();
    let sigma2 = rss / df as f64;
    // A residual variance indistinguishable from zero (R's `summary.lm`
    // warns "essentially perfect fit") leaves no basis for inference.
    let scale = y.iter().map(|v| v * v).sum::<f64>() / rows.len() as f64;
    if sigma2.is_nan() || sigma2 <= 1e-20 * scale.max(f64::MIN_POSITIVE) {
        return Ok(bail("not estimable: residual variance is zero (perfect fit)"));
    }
    let tq = t_quantile(0.5 + level / 2.0, df as f64);
    let coefficients: Vec<Coefficient> = design
        .names
        .iter()
        .enumerate()
        .map(|(j, name)| {
            let se = (sigma2 * xtx_inv[(j, j)]).sqrt();
            let t = beta[j] / se;
            Coefficient {
                term: name.clone(),
                estimate: beta[j],
                se,
                statistic: t,
                p_value: t_two_sided_p(t, df as f64),
                ci_low: beta[j] - tq * se,
                ci_high: beta[j] + tq * se,
            }
        })
        .collect();
    if !coefficients.iter().all(|c| all_finite(&[c.estimate, c.se, c.ci_low, c.ci_high])) {
        return Ok(bail("not estimable: non-finite estimates"));
    }
    let mean_difference = match design.treatment {
        None => {
            Estimable::not_estimable("not estimable: allocation is collinear with the covariates (an arm is empty)")
        }
        Some(t) => {
            let c = &coefficients[t];
            Estimable::Value(Estimate {
                measure: "mean difference (adjusted)".into(),
                method: "linear regression (ANCOVA), t interval".into(),
                estimate: c.estimate,
                se: Some(c.se),
                ci_low: c.ci_low,
                ci_high: c.ci_high,
                level,
                p_value: Some(c.p_value),
                df: Some(df as f64),
                n,
                note: None,
            })
        }
    };
    Ok(AdjustedContinuous {
        fit: Estimable::Value(LinearFit {
            method: "ordinary least squares (QR), t confidence intervals".into(),
            n,
            coefficients,
            aliased: design.aliased,
            df_residual: df,
            sigma: sigma2.sqrt(),
            level,
        }),
        mean_difference,
    })
}

/// ANCOVA: `outcome ~ treated + baseline + factors + covariates`, the
/// baseline value of the outcome entering as a numeric covariate named
/// `baseline_name`.
pub fn ancova(
    outcome: &[Option<f64>],
    baseline_name: &str,
    baseline: &[Option<f64>],
    treated: &[bool],
    adj: &Adjustment,
    level: f64,
) -> Result<AdjustedContinuous> {
    check_len("baseline", treated.len(), baseline.len())?;
    let mut adj = adj.clone();
    adj.covariates.insert(0, Covariate::new(baseline_name, baseline.to_vec()));
    linear_regression(outcome, treated, &adj, level)
}
