//! Multiple imputation of missing outcomes under missing at random, and
//! pooling by Rubin's rules (White, Royston & Wood 2011; White et al., BMJ
//! 2011: keep every randomised participant in the analysis under a stated
//! assumption).
//!
//! Pooling ([`pool`]) reproduces `mice::pool` (rule "rubin1987") and
//! `summary(pool(fit), conf.int = TRUE)`: `Q̄` the mean estimate, `Ū` the
//! mean within-imputation variance, `B` the between-imputation variance,
//! `T = Ū + (1 + 1/m) B`; `λ = (1 + 1/m) B / T` (floored at 1e-4 as mice
//! does), `r = (1 + 1/m) B / Ū`; degrees of freedom by Barnard & Rubin
//! (1999), `ν = ν_old ν_obs / (ν_old + ν_obs)` with `ν_old = (m − 1)/λ²`,
//! `ν_obs = (ν_com + 1)/(ν_com + 3) ν_com (1 − λ)`, or `ν_old` when the
//! complete-data df `ν_com` is infinite; fraction of missing information
//! `γ = (r + 2/(ν + 3)) / (r + 1)`; t-based CI and p.
//!
//! The imputation engine draws outcomes from their posterior predictive
//! distribution given allocation, stratification factors and baseline
//! covariates (which must be complete; they are measured before
//! randomisation), as mice's univariate methods:
//!
//! - binary ([`impute_binary`]), mice `"logreg"` (Rubin 1987, p. 169–170):
//!   fit a logistic regression to the observed cases, augmented with 4 p
//!   weighted pseudo-observations to prevent separation (White, Daniel &
//!   Royston 2010; mice's `augment()`), draw `β* ~ N(β̂, V̂)` through the
//!   Cholesky factor of `V̂`, then `y = 1` when `U ≤ expit(x β*)`;
//! - continuous ([`impute_continuous`]), mice `"norm"` (Rubin 1987, p. 167):
//!   OLS on the observed cases, `σ*² = RSS / χ²(n_obs − p)`,
//!   `β* = β̂ + σ* L z` with `L Lᵀ = (XᵀX)⁻¹` (ridge 1e-5 if singular, as
//!   mice), `y = x β* + σ* z`.
//!
//! Randomness comes only from the caller's word source through
//! [`super::rng`]; per imputation the draws are taken in a fixed order
//! (parameters first, then missing participants in index order), so the same
//! words give the same imputations.

use super::design::{Adjustment, Design, build, independent_columns};
use super::dist::{t_quantile, t_two_sided_p};
use super::gram::Rows;
use super::linear::linear_regression;
use super::logistic::{adjusted_binary_on, arm_counts, irls};
use super::rng::{WordSource, chi_square, normal, uniform};
use super::{ArmCounts, Estimable, Result, StatsError, all_finite, check_len, check_level, parallel_map};
use nalgebra::{DMatrix, DVector};

/// The number of imputations we recommend (at least the percentage of
/// incomplete cases, White et al. 2011; never fewer than 20).
pub const RECOMMENDED_IMPUTATIONS: usize = 20;

/// An estimate pooled over imputations by Rubin's rules.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PooledEstimate {
    /// "Rubin's rules, Barnard-Rubin degrees of freedom".
    pub method: String,
    /// Number of imputations.
    pub m: usize,
    /// Pooled estimate Q̄.
    pub estimate: f64,
    /// Within-imputation variance Ū.
    pub within: f64,
    /// Between-imputation variance B.
    pub between: f64,
    /// Total variance T.
    pub total: f64,
    /// √T.
    pub se: f64,
    /// Barnard–Rubin degrees of freedom.
    pub df: f64,
    /// Complete-data degrees of freedom; `None` means infinite.
    pub dfcom: Option<f64>,
    /// Relative increase in variance due to nonresponse r.
    pub riv: f64,
    /// Proportion of total variance due to missingness λ.
    pub lambda: f64,
    /// Fraction of missing information γ.
    pub fmi: f64,
    /// Lower confidence limit (t with `df`).
    pub ci_low: f64,
    /// Upper confidence limit.
    pub ci_high: f64,
    /// Confidence level.
    pub level: f64,
    /// Two-sided p-value for estimate = 0.
    pub p_value: f64,
}

/// Pools per-imputation estimates and their variances (squared SEs) by
/// Rubin's rules, as `mice::pool`. `dfcom` is the complete-data residual df
/// (`None` for infinite, e.g. large-sample z statistics).
pub fn pool(estimates: &[f64], variances: &[f64], dfcom: Option<f64>, level: f64) -> Result<Estimable<PooledEstimate>> {
    let level = check_level(level)?;
    check_len("variances", estimates.len(), variances.len())?;
    let m = estimates.len();
    if m < 2 {
        return Ok(Estimable::not_estimable("not estimable: need at least two imputations"));
    }
    if !all_finite(estimates) || !all_finite(variances) || variances.iter().any(|v| *v < 0.0) {
        return Ok(Estimable::not_estimable("not estimable: an imputation gave a non-finite estimate or variance"));
    }
    if let Some(d) = dfcom {
        if d.is_nan() || d <= 0.0 {
            return Err(StatsError::InvalidArgument(format!("dfcom must be positive, got {d}")));
        }
    }
    let mf = m as f64;
    let qbar = estimates.iter().sum::<f64>() / mf;
    let ubar = variances.iter().sum::<f64>() / mf;
    let b = estimates.iter().map(|q| (q - qbar).powi(2)).sum::<f64>() / (mf - 1.0);
    let t = ubar + (1.0 + 1.0 / mf) * b;
    if t.is_nan() || t <= 0.0 {
        return Ok(Estimable::not_estimable("not estimable: total variance is zero"));
    }
    // mice:::barnard.rubin
    let lambda_raw = (1.0 + 1.0 / mf) * b / t;
    let lambda = lambda_raw.max(1e-4);
    let dfold = (mf - 1.0) / (lambda * lambda);
    let df = match dfcom {
        None => dfold,
        Some(dc) => {
            let dfobs = (dc + 1.0) / (dc + 3.0) * dc * (1.0 - lambda);
            dfold * dfobs / (dfold + dfobs)
        }
    };
    let riv = (1.0 + 1.0 / mf) * b / ubar;
    let fmi = (riv + 2.0 / (df + 3.0)) / (riv + 1.0);
    let se = t.sqrt();
    let q = t_quantile(0.5 + level / 2.0, df);
    let p_value = t_two_sided_p(qbar / se, df.max(0.001));
    // With no between-imputation variance and no within variance r is 0/0.
    let riv = if riv.is_finite() { riv } else { 0.0 };
    let fmi = if fmi.is_finite() { fmi } else { 0.0 };
    let out = PooledEstimate {
        method: "Rubin's rules, Barnard-Rubin degrees of freedom".into(),
        m,
        estimate: qbar,
        within: ubar,
        between: b,
        total: t,
        se,
        df,
        dfcom,
        riv,
        lambda: lambda_raw,
        fmi,
        ci_low: qbar - q * se,
        ci_high: qbar + q * se,
        level,
        p_value,
    };
    if !all_finite(&[out.estimate, out.se, out.df, out.ci_low, out.ci_high, out.p_value]) {
        return Ok(Estimable::not_estimable("not estimable: non-finite pooled quantities"));
    }
    Ok(Estimable::Value(out))
}

/// Predictor matrix (intercept first) over all participants, or a reason.
fn predictors(treated: &[bool], adj: &Adjustment) -> std::result::Result<DMatrix<f64>, String> {
    predictor_design(treated, adj).map(|d| d.x)
}

/// The design of the predictors over all participants (the analysis model's
/// design too, when every participant is analysed), or a reason.
fn predictor_design(treated: &[bool], adj: &Adjustment) -> std::result::Result<Design, String> {
    let n = treated.len();
    if let Some(i) = (0..n).find(|&i| !adj.complete(i)) {
        return Err(format!(
            "not estimable: participant {i} lacks a baseline covariate; imputation models need \
             complete baseline data"
        ));
    }
    let rows: Vec<usize> = (0..n).collect();
    Ok(build(treated, adj, None, &rows))
}

fn check_inputs(n: usize, len: usize, adj: &Adjustment, m: usize) -> Result<()> {
    check_len("outcome", n, len)?;
    adj.check(n)?;
    if m < 2 {
        return Err(StatsError::InvalidArgument(format!(
            "multiple imputation needs at least two imputations (we recommend {RECOMMENDED_IMPUTATIONS}), got {m}"
        )));
    }
    Ok(())
}

/// Lower Cholesky factor of a covariance matrix.
fn cholesky_lower(v: &DMatrix<f64>) -> Option<DMatrix<f64>> {
    let sym = (v + v.transpose()) / 2.0;
    sym.cholesky().map(|c| c.l())
}

fn draw_normals(p: usize, words: &mut WordSource<'_>) -> DVector<f64> {
    DVector::from_iterator(p, (0..p).map(|_| normal(words)))
}

/// Imputes a missing binary outcome `m` times (mice `"logreg"` with
/// augmentation). Returns `m` completed outcome vectors; observed values are
/// kept.
pub fn impute_binary(
    outcome: &[Option<bool>],
    treated: &[bool],
    adj: &Adjustment,
    m: usize,
    words: &mut WordSource<'_>,
) -> Result<Estimable<Vec<Vec<bool>>>> {
    check_inputs(treated.len(), outcome.len(), adj, m)?;
    let x = match predictors(treated, adj) {
        Ok(x) => x,
        Err(reason) => return Ok(Estimable::NotEstimable(reason)),
    };
    Ok(draw_binary(outcome, &x, m, words).map(|(datasets, _)| datasets))
}

/// Completed outcome vectors, and the coefficients of the model they were drawn from.
type Drawn = (Vec<Vec<bool>>, Option<DVector<f64>>);

/// [`impute_binary`] on the predictor matrix `x`: the `m` completed outcome
/// vectors, and the imputation model's coefficients over `x`'s columns (zero
/// for a column left out as not identified in the observed data), when it
/// was fitted.
fn draw_binary(outcome: &[Option<bool>], x: &DMatrix<f64>, m: usize, words: &mut WordSource<'_>) -> Estimable<Drawn> {
    let observed: Vec<usize> = (0..outcome.len()).filter(|&i| outcome[i].is_some()).collect();
    let missing: Vec<usize> = (0..outcome.len()).filter(|&i| outcome[i].is_none()).collect();
    let complete: Vec<bool> = outcome.iter().map(|y| y.unwrap_or(false)).collect();
    if missing.is_empty() {
        return Estimable::Value((vec![complete; m], None));
    }
    let events = observed.iter().filter(|&&i| outcome[i] == Some(true)).count();
    if events == 0 || events == observed.len() {
        return Estimable::not_estimable("not estimable: the observed outcome does not vary, so it cannot be imputed");
    }
    // Keep predictor columns identified in the observed data.
    let cols: Vec<Vec<f64>> = (0..x.ncols()).map(|j| observed.iter().map(|&i| x[(i, j)]).collect()).collect();
    let keep = independent_columns(&cols);
    let columns = x.ncols();
    let x = x.select_columns(&keep);
    let p = x.ncols() - 1; // predictors without the intercept
    // mice:::augment — 2 p k pseudo-rows (k = 2 categories), weight (p + 1) / nr.
    let nr = 4 * p;
    let (mut ya, mut wa): (Vec<f64>, Vec<f64>) =
        observed.iter().map(|&i| (f64::from(u8::from(complete[i])), 1.0)).unzip();
    let n = x.nrows() as f64;
    let stats: Vec<(f64, f64, f64, f64)> = (1..=p)
        .map(|j| {
            let c = x.column(j);
            let mean = c.mean();
            let sd = (c.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
            (mean, sd, c.min(), c.max())
        })
        .collect();
    let mut augmented: Vec<Vec<f64>> = Vec::with_capacity(nr);
    for j in 0..p {
        for (shift, y) in [(0.5, 0.0), (-0.5, 0.0), (0.5, 1.0), (-0.5, 1.0)] {
            let mut row = vec![1.0];
            for (l, &(mean, sd, lo, hi)) in stats.iter().enumerate() {
                let v = if l == j { mean + shift * sd } else { mean };
                row.push(v.max(lo).min(hi));
            }
            augmented.push(row);
            ya.push(y);
            wa.push((p as f64 + 1.0) / nr as f64);
        }
    }
    // The observed rows, then the pseudo-rows, filled column by column.
    let xa = DMatrix::from_fn(observed.len() + augmented.len(), p + 1, |r, c| match observed.get(r) {
        Some(&i) => x[(i, c)],
        None => augmented[r - observed.len()][c],
    });
    let fit = irls(&xa, &ya, &wa);
    if fit.separated || !fit.converged || !all_finite(fit.cov.as_slice()) {
        return Estimable::not_estimable("not estimable: the imputation model could not be fitted");
    }
    let Some(l) = cholesky_lower(&fit.cov) else {
        return Estimable::not_estimable("not estimable: imputation model covariance is not positive definite");
    };
    // The missing rows as columns, so that each draw's linear predictors are
    // the dot products of the same vectors as before, without a vector made
    // for each row and draw.
    let x_missing = x.select_rows(&missing).transpose();
    let mut out = Vec::with_capacity(m);
    for _ in 0..m {
        let beta = &fit.beta + &l * draw_normals(p + 1, words);
        let mut y = complete.clone();
        for (k, &i) in missing.iter().enumerate() {
            let eta = x_missing.column(k).dot(&beta);
            let prob = 1.0 / (1.0 + (-eta).exp());
            y[i] = uniform(words) <= prob;
        }
        out.push(y);
    }
    let mut coefficients = DVector::zeros(columns);
    for (k, &j) in keep.iter().enumerate() {
        coefficients[j] = fit.beta[k];
    }
    Estimable::Value((out, Some(coefficients)))
}

/// Imputes a missing continuous outcome `m` times (mice `"norm"`, Bayesian
/// linear regression). Returns `m` completed outcome vectors.
pub fn impute_continuous(
    outcome: &[Option<f64>],
    treated: &[bool],
    adj: &Adjustment,
    m: usize,
    words: &mut WordSource<'_>,
) -> Result<Estimable<Vec<Vec<f64>>>> {
    check_inputs(treated.len(), outcome.len(), adj, m)?;
    let x = match predictors(treated, adj) {
        Ok(x) => x,
        Err(reason) => return Ok(Estimable::NotEstimable(reason)),
    };
    let value = |i: usize| outcome[i].filter(|v| v.is_finite());
    let observed: Vec<usize> = (0..outcome.len()).filter(|&i| value(i).is_some()).collect();
    let missing: Vec<usize> = (0..outcome.len()).filter(|&i| value(i).is_none()).collect();
    let complete: Vec<f64> = (0..outcome.len()).map(|i| value(i).unwrap_or(0.0)).collect();
    if missing.is_empty() {
        return Ok(Estimable::Value(vec![complete; m]));
    }
    if observed.len() < 2 {
        return Ok(Estimable::not_estimable("not estimable: fewer than two observed outcomes"));
    }
    let xo = x.select_rows(&observed);
    let yo = DVector::from_iterator(observed.len(), observed.iter().map(|&i| complete[i]));
    let p = x.ncols();
    // mice:::estimice — solve(crossprod(R)), ridge 1e-5 × diag(XᵀX) if singular.
    let xtx = xo.transpose() * &xo;
    let v = xtx.clone().cholesky().map(|c| c.inverse()).or_else(|| {
        let mut pen = xtx.clone();
        for j in 0..p {
            pen[(j, j)] += 1e-5 * xtx[(j, j)];
        }
        pen.cholesky().map(|c| c.inverse())
    });
    let Some(v) = v else {
        return Ok(Estimable::not_estimable("not estimable: imputation model is singular"));
    };
    let coef = &v * (xo.transpose() * &yo);
    let rss = (&yo - &xo * &coef).norm_squared();
    let df = (observed.len() as f64 - p as f64).max(1.0);
    let Some(l) = cholesky_lower(&v) else {
        return Ok(Estimable::not_estimable("not estimable: imputation model covariance is not positive definite"));
    };
    let mut out = Vec::with_capacity(m);
    for _ in 0..m {
        let sigma = (rss / chi_square(df, words)).sqrt();
        let beta = &coef + &l * draw_normals(p, words) * sigma;
        let mut y = complete.clone();
        for &i in &missing {
            y[i] = x.row(i).transpose().dot(&beta) + normal(words) * sigma;
        }
        out.push(y);
    }
    Ok(Estimable::Value(out))
}

/// The primary binary analysis under multiple imputation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ImputedBinary {
    /// All randomised participants per arm (the full analysis set).
    pub n: ArmCounts,
    /// Participants whose outcome was imputed, per arm.
    pub n_imputed: ArmCounts,
    /// Standardised risk difference (percentage points), pooled.
    pub risk_difference: Estimable<PooledEstimate>,
    /// Adjusted log odds ratio, pooled (exponentiate the limits for the OR).
    pub log_odds_ratio: Estimable<PooledEstimate>,
}

/// Imputes a binary outcome `m` times and pools the adjusted analysis
/// ([`adjusted_binary`](super::logistic::adjusted_binary): standardised risk difference and log odds ratio),
/// with `dfcom` the residual df of the complete-data model, as mice.
pub fn impute_and_analyse_binary(
    outcome: &[Option<bool>],
    treated: &[bool],
    adj: &Adjustment,
    m: usize,
    level: f64,
    words: &mut WordSource<'_>,
) -> Result<ImputedBinary> {
    let level = check_level(level)?;
    let all: Vec<usize> = (0..treated.len()).collect();
    let missing: Vec<usize> = all.iter().copied().filter(|&i| outcome.get(i).is_some_and(|y| y.is_none())).collect();
    check_inputs(treated.len(), outcome.len(), adj, m)?;
    let (n, n_imputed) = (arm_counts(treated, &all), arm_counts(treated, &missing));
    let not_estimable = |reason: String| ImputedBinary {
        n,
        n_imputed,
        risk_difference: Estimable::NotEstimable(reason.clone()),
        log_odds_ratio: Estimable::NotEstimable(reason),
    };
    // The imputation model's predictors are the analysis model's design:
    // built once, for both.
    let design = match predictor_design(treated, adj) {
        Ok(design) => design,
        Err(reason) => return Ok(not_estimable(reason)),
    };
    let (datasets, start) = match draw_binary(outcome, &design.x, m, words) {
        Estimable::Value(d) => d,
        Estimable::NotEstimable(r) => return Ok(not_estimable(r)),
    };
    // Every completed dataset has the same rows (all of them: the imputation
    // model needs complete baseline data), so one design serves all m fits,
    // which are independent and run on the available cores; the results are
    // taken in imputation order, so they do not depend on the thread count.
    // Each fit begins from the imputation model's coefficients: its datasets
    // are drawn from that model, so their estimates lie near them, and the
    // fit ends where it would from R's start but in fewer steps.
    let rows = all;
    let prepared = Rows::new(&design.x);
    let analyses = parallel_map(&datasets, |y| {
        let y: Vec<Option<bool>> = y.iter().map(|&v| Some(v)).collect();
        adjusted_binary_on(&y, treated, adj, level, &rows, Some((&design, &prepared)), start.as_ref())
    });
    let (mut rd, mut rd_var, mut lor, mut lor_var) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut dfcom = None;
    for a in analyses {
        let (Some(r), Some(o), Some(fit)) = (a.risk_difference.value(), a.odds_ratio.value(), a.fit.value()) else {
            let reason = format!(
                "not estimable: an imputed dataset could not be analysed ({})",
                a.fit.reason().or(a.risk_difference.reason()).unwrap_or("unknown")
            );
            return Ok(ImputedBinary {
                n,
                n_imputed,
                risk_difference: Estimable::NotEstimable(reason.clone()),
                log_odds_ratio: Estimable::NotEstimable(reason),
            });
        };
        rd.push(r.estimate);
        rd_var.push(r.se.unwrap_or(f64::NAN).powi(2));
        lor.push(o.estimate.ln());
        lor_var.push(o.se.unwrap_or(f64::NAN).powi(2));
        dfcom = Some((fit.n.total() - fit.coefficients.len()) as f64);
    }
    Ok(ImputedBinary {
        n,
        n_imputed,
        risk_difference: pool(&rd, &rd_var, dfcom, level)?,
        log_odds_ratio: pool(&lor, &lor_var, dfcom, level)?,
    })
}

/// The continuous (ANCOVA-type) analysis under multiple imputation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ImputedContinuous {
    /// All randomised participants per arm.
    pub n: ArmCounts,
    /// Participants whose outcome was imputed, per arm.
    pub n_imputed: ArmCounts,
    /// Adjusted mean difference, pooled.
    pub mean_difference: Estimable<PooledEstimate>,
}

/// Imputes a continuous outcome `m` times and pools the adjusted mean
/// difference from [`linear_regression`] (put the baseline value of the
/// outcome in `adj.covariates` for ANCOVA).
pub fn impute_and_analyse_continuous(
    outcome: &[Option<f64>],
    treated: &[bool],
    adj: &Adjustment,
    m: usize,
    level: f64,
    words: &mut WordSource<'_>,
) -> Result<ImputedContinuous> {
    let level = check_level(level)?;
    let all: Vec<usize> = (0..treated.len()).collect();
    let missing: Vec<usize> =
        all.iter().copied().filter(|&i| outcome.get(i).is_some_and(|y| !y.is_some_and(f64::is_finite))).collect();
    let (n, n_imputed) = (arm_counts(treated, &all), arm_counts(treated, &missing));
    let datasets = match impute_continuous(outcome, treated, adj, m, words)? {
        Estimable::Value(d) => d,
        Estimable::NotEstimable(r) => {
            return Ok(ImputedContinuous { n, n_imputed, mean_difference: Estimable::NotEstimable(r) });
        }
    };
    let (mut est, mut var) = (Vec::new(), Vec::new());
    let mut dfcom = None;
    for y in &datasets {
        let y: Vec<Option<f64>> = y.iter().map(|&v| Some(v)).collect();
        let a = linear_regression(&y, treated, adj, level)?;
        let (Some(d), Some(fit)) = (a.mean_difference.value(), a.fit.value()) else {
            let reason = format!(
                "not estimable: an imputed dataset could not be analysed ({})",
                a.mean_difference.reason().unwrap_or("unknown")
            );
            return Ok(ImputedContinuous { n, n_imputed, mean_difference: Estimable::NotEstimable(reason) });
        };
        est.push(d.estimate);
        var.push(d.se.unwrap_or(f64::NAN).powi(2));
        dfcom = Some(fit.df_residual as f64);
    }
    Ok(ImputedContinuous { n, n_imputed, mean_difference: pool(&est, &var, dfcom, level)? })
}
