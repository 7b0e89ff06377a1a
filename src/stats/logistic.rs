//! Logistic regression for a binary outcome, adjusted for baseline factors
//! and covariates, and the standardised (marginal) risk difference.
//!
//! - Fitting: iteratively reweighted least squares exactly as R's
//!   `glm.fit(family = binomial())` (same start `mustart = (w y + 0.5) / (w + 1)`,
//!   same clamping of the inverse link at |η| > 30, each step a Householder
//!   QR least-squares solve), iterated to a relative deviance change below
//!   1e-10. Standard errors from the inverse Fisher information at the
//!   estimate; CIs are Wald intervals as R's `confint.default`.
//! - Separation (Albert & Anderson 1984: the MLE does not exist): flagged
//!   when any fitted probability is within 10 × machine epsilon of 0 or 1 —
//!   the condition under which R warns "fitted probabilities numerically 0
//!   or 1 occurred" — or when, after the deviance has converged, further
//!   Newton steps do not shrink (a coefficient drifting to infinity, the
//!   quasi-complete case R fits silently with a huge SE). Either way the fit
//!   is reported as not estimable, as is a fit that does not converge.
//! - Standardised risk difference by g-computation (Robins 1986; for trials
//!   see Williamson et al. 2014 and the FDA 2023 covariate-adjustment
//!   guidance): the mean predicted risk with everyone set to the intervention
//!   minus the mean with everyone set to control, over the analysed
//!   participants. Its SE is by the delta method, `sqrt(gᵀ V g)` with
//!   `g = mean(p1 (1 − p1) x1) − mean(p0 (1 − p0) x0)` and `V` the model
//!   covariance (as `marginaleffects::avg_comparisons(vcov = TRUE)`); the
//!   interval is Wald, in percentage points. The estimated population is the
//!   analysed sample (not a super-population), as in the R reference.

use super::design::{Adjustment, Design, Factor, build};
use super::dist::{normal_quantile, normal_two_sided_p};
use super::gram::{MIN_COPIES, Patterns, Rows, inverse_spd, solve_spd};
use super::{ArmCounts, Coefficient, Estimable, Estimate, Result, Settling, all_finite, check_len, check_level};
use nalgebra::{DMatrix, DVector};

/// A fitted logistic regression.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogisticFit {
    /// "logistic regression (IRLS), Wald confidence intervals".
    pub method: String,
    /// Participants analysed per arm (complete cases).
    pub n: ArmCounts,
    /// Participants with the event among those analysed.
    pub events: usize,
    /// Coefficients (log odds and log odds ratios).
    pub coefficients: Vec<Coefficient>,
    /// Columns left out as linear combinations of others (R prints `NA`).
    pub aliased: Vec<String>,
    /// Whether IRLS converged (always true for an estimable fit).
    pub converged: bool,
    /// IRLS iterations used.
    pub iterations: usize,
    /// Residual deviance.
    pub deviance: f64,
    /// Null (intercept-only) deviance.
    pub null_deviance: f64,
    /// Akaike information criterion, deviance + 2 × rank for 0/1 outcomes.
    pub aic: f64,
    /// Confidence level of the coefficient intervals.
    pub level: f64,
    /// Covariance matrix of the coefficients (same order).
    pub covariance: Vec<Vec<f64>>,
}

impl LogisticFit {
    /// The coefficient with this R name.
    pub fn coefficient(&self, term: &str) -> Option<&Coefficient> {
        self.coefficients.iter().find(|c| c.term == term)
    }
}

/// The adjusted analysis of a binary outcome.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AdjustedBinary {
    /// The logistic model.
    pub fit: Estimable<LogisticFit>,
    /// Adjusted (conditional) odds ratio for the intervention.
    pub odds_ratio: Estimable<Estimate>,
    /// Standardised (marginal) risk difference in percentage points.
    pub risk_difference: Estimable<Estimate>,
    /// Standardised risk with everyone allocated to the intervention.
    pub standardised_risk_treated: Option<f64>,
    /// Standardised risk with everyone allocated to control.
    pub standardised_risk_control: Option<f64>,
}

/// The result of IRLS on a matrix.
#[derive(Debug, Clone)]
pub(crate) struct IrlsFit {
    pub beta: DVector<f64>,
    pub cov: DMatrix<f64>,
    pub deviance: f64,
    pub iterations: usize,
    pub converged: bool,
    pub separated: bool,
}

const THRESH: f64 = 30.0;

/// R's `binomial()$linkinv` with its clamping (family.c).
fn inv_logit(eta: f64) -> f64 {
    let t = if eta < -THRESH {
        f64::EPSILON
    } else if eta > THRESH {
        1.0 / f64::EPSILON
    } else {
        eta.exp()
    };
    t / (1.0 + t)
}

/// One row's term of the binomial deviance (before the factor 2):
/// `w [y log(y/μ) + (1 − y) log((1 − y)/(1 − μ))]`, with 0 log 0 = 0.
fn deviance_term(y: f64, mu: f64, w: f64) -> f64 {
    let ylogy = |a: f64, b: f64| if a > 0.0 { a * (a / b).ln() } else { 0.0 };
    w * (ylogy(y, mu) + ylogy(1.0 - y, 1.0 - mu))
}

fn binomial_deviance(y: &[f64], mu: &[f64], w: &[f64]) -> f64 {
    2.0 * y.iter().zip(mu).zip(w).map(|((&y, &m), &w)| deviance_term(y, m, w)).sum::<f64>()
}

/// [`binomial_deviance`] of 0/1 outcomes against one mean with unit weights
/// (the null deviance): each row's term is one of two values, so each is
/// computed once (a logarithm per row saved); they are summed in row order
/// as `binomial_deviance` sums them, so the result is its result bit for bit.
fn null_deviance(events: impl Iterator<Item = bool>, mean: f64) -> f64 {
    let (t0, t1) = (deviance_term(0.0, mean, 1.0), deviance_term(1.0, mean, 1.0));
    2.0 * events.map(|e| if e { t1 } else { t0 }).sum::<f64>()
}

/// Weighted logistic IRLS on a full-rank matrix (R `glm.fit`).
pub(crate) fn irls(x: &DMatrix<f64>, y: &[f64], w: &[f64]) -> IrlsFit {
    irls_on(x, &Rows::new(x), y, w, None)
}

/// [`irls`] with the matrix's rows already prepared for cross-products.
///
/// When the rows fall into few distinct patterns (a design of factor dummies
/// only), the rows with equal pattern, outcome and prior weight have equal
/// fitted values at every step, so the fit is run once per such group with
/// the group's size multiplying its weight: every sum of the fit (the
/// cross-products, the deviance, the information) is the same sum, grouped.
///
/// `start`, if given, is where the iterations begin instead of R's starting
/// values (see [`irls_weighted`]).
pub(crate) fn irls_on(
    x: &DMatrix<f64>,
    rows: &Rows<'_>,
    y: &[f64],
    w: &[f64],
    start: Option<&DVector<f64>>,
) -> IrlsFit {
    if let Some(g) = rows.patterns().and_then(|pat| Grouped::new(x, pat, y, w)) {
        return irls_weighted(&g.x, &Rows::new(&g.x), &g.y, &g.w, &g.w_start, start);
    }
    irls_weighted(x, rows, y, w, w, start)
}

/// Rows grouped by (pattern, outcome, prior weight), in order of each group's
/// first row: one row of the design per group, its outcome, its prior weight
/// times its size, and its members' own prior weight (R's starting values use
/// the per-row weight).
struct Grouped {
    x: DMatrix<f64>,
    y: Vec<f64>,
    w: Vec<f64>,
    w_start: Vec<f64>,
}

impl Grouped {
    /// `None` when grouping would leave more than one group per
    /// [`MIN_COPIES`] rows.
    fn new(x: &DMatrix<f64>, pat: &Patterns, y: &[f64], w: &[f64]) -> Option<Grouped> {
        let n = x.nrows();
        let mut index: rustc_hash::FxHashMap<(u32, u64, u64), usize> = rustc_hash::FxHashMap::default();
        let (mut first, mut count): (Vec<usize>, Vec<f64>) = (Vec::new(), Vec::new());
        for i in 0..n {
            let next = first.len();
            let g = *index.entry((pat.of[i], y[i].to_bits(), w[i].to_bits())).or_insert(next);
            if g == next {
                if first.len() >= n / MIN_COPIES {
                    return None;
                }
                first.push(i);
                count.push(0.0);
            }
            count[g] += 1.0;
        }
        Some(Grouped {
            x: x.select_rows(&first),
            y: first.iter().map(|&i| y[i]).collect(),
            w: first.iter().zip(&count).map(|(&i, &c)| w[i] * c).collect(),
            w_start: first.iter().map(|&i| w[i]).collect(),
        })
    }
}

/// The IRLS iterations, with `w_start` the prior weights R's starting values
/// use; or from `start`, coefficients of the same columns near the estimate.
///
/// The iterations stop only once the deviance has settled and a Newton step
/// has shrunk to nothing (or six steps after the deviance settled), so where
/// they begin changes the estimate only in its last digits, and a start near
/// it (the imputation model's coefficients, for the fits to its imputed
/// datasets) saves the first steps. A `start` of another length is ignored.
fn irls_weighted(
    x: &DMatrix<f64>,
    rows: &Rows<'_>,
    y: &[f64],
    w: &[f64],
    w_start: &[f64],
    start: Option<&DVector<f64>>,
) -> IrlsFit {
    let (n, p) = x.shape();
    let start = start.filter(|b| b.len() == p && all_finite(b.as_slice()));
    let mut eta: Vec<f64> = match start {
        Some(b) => rows.mul(b),
        None => y
            .iter()
            .zip(w_start)
            .map(|(&y, &w)| {
                let m = (w * y + 0.5) / (w + 1.0);
                (m / (1.0 - m)).ln()
            })
            .collect(),
    };
    // μ and dμ/dη (R's `binomial()$linkinv` and `$mu.eta`, with their
    // clamping at |η| > 30) from one exp per row.
    let link = |eta: &[f64], mu: &mut Vec<f64>, me: &mut Vec<f64>| {
        mu.clear();
        me.clear();
        for &e in eta {
            if (-THRESH..=THRESH).contains(&e) {
                let t = e.exp();
                mu.push(t / (1.0 + t));
                me.push(t / ((1.0 + t) * (1.0 + t)));
            } else {
                mu.push(inv_logit(e));
                me.push(f64::EPSILON);
            }
        }
    };
    let (mut mu, mut me) = (Vec::with_capacity(n), Vec::with_capacity(n));
    link(&eta, &mut mu, &mut me);
    let mut dev_old = binomial_deviance(y, &mu, w);
    let mut beta = start.cloned().unwrap_or_else(|| DVector::zeros(p));
    let mut settling = Settling::new();
    let mut iterations = 0;
    let (mut wt, mut z) = (vec![0.0; n], vec![0.0; n]);
    for iter in 1..=80 {
        iterations = iter;
        for i in 0..n {
            let var = mu[i] * (1.0 - mu[i]);
            wt[i] = w[i] * me[i] * me[i] / var;
            z[i] = eta[i] + (y[i] - mu[i]) / me[i];
        }
        // The weighted least-squares step by the normal equations (one pass
        // over the rows); Householder QR of W^½X when they are ill-conditioned.
        let (a, xtz) = rows.gram(Some(&wt), Some(&z));
        let b = match solve_spd(&a, &xtz) {
            Some(b) => b,
            None => {
                let mut xw = x.clone();
                let mut zw = DVector::zeros(n);
                for i in 0..n {
                    let wi = wt[i].sqrt();
                    zw[i] = z[i] * wi;
                    for j in 0..p {
                        xw[(i, j)] *= wi;
                    }
                }
                let Some(b) = qr_least_squares(xw, zw) else {
                    break;
                };
                b
            }
        };
        let step = (&b - &beta).amax();
        beta = b;
        eta = rows.mul(&beta);
        link(&eta, &mut mu, &mut me);
        let dev = binomial_deviance(y, &mu, w);
        let rel = (dev - dev_old).abs() / (dev.abs() + 0.1);
        dev_old = dev;
        if settling.stop(step, rel < 1e-10, &beta) {
            break;
        }
    }
    let converged = settling.converged();
    let eps = 10.0 * f64::EPSILON;
    let separated = mu.iter().any(|&m| m > 1.0 - eps || m < eps) || settling.still_moving(&beta);
    // Inverse Fisher information at the estimate: (Xᵀ W X)⁻¹, by Cholesky,
    // or by QR of W^½X when ill-conditioned.
    let info: Vec<f64> = (0..n).map(|i| w[i] * mu[i] * (1.0 - mu[i])).collect();
    let cov = inverse_spd(&rows.gram(Some(&info), None).0)
        .or_else(|| {
            let mut xw = x.clone();
            for i in 0..n {
                let wi = info[i].sqrt();
                for j in 0..p {
                    xw[(i, j)] *= wi;
                }
            }
            qr_inverse_crossprod(xw)
        })
        .unwrap_or_else(|| DMatrix::from_element(p, p, f64::NAN));
    IrlsFit { beta, cov, deviance: dev_old, iterations, converged, separated }
}

/// Least squares `min ‖A b − z‖` by Householder QR (nalgebra).
pub(crate) fn qr_least_squares(a: DMatrix<f64>, mut z: DVector<f64>) -> Option<DVector<f64>> {
    let p = a.ncols();
    if a.nrows() < p {
        return None;
    }
    let qr = a.qr();
    qr.q_tr_mul(&mut z);
    let r = qr.r();
    let rhs = z.rows(0, p).into_owned();
    r.solve_upper_triangular(&rhs)
}

/// `(AᵀA)⁻¹ = R⁻¹ R⁻ᵀ` from the QR decomposition of `A`.
pub(crate) fn qr_inverse_crossprod(a: DMatrix<f64>) -> Option<DMatrix<f64>> {
    let p = a.ncols();
    if a.nrows() < p {
        return None;
    }
    let r = a.qr().r();
    let rinv = r.solve_upper_triangular(&DMatrix::identity(p, p))?;
    let out = &rinv * rinv.transpose();
    all_finite(out.as_slice()).then_some(out)
}

/// Rows with an outcome and every adjustment variable.
pub(crate) fn complete_rows<T>(outcome: &[Option<T>], adj: &Adjustment) -> Vec<usize> {
    (0..outcome.len()).filter(|&i| outcome[i].is_some() && adj.complete(i)).collect()
}

pub(crate) fn arm_counts(treated: &[bool], rows: &[usize]) -> ArmCounts {
    let t = rows.iter().filter(|&&i| treated[i]).count();
    ArmCounts { treated: t, control: rows.len() - t }
}

/// Fits the model over `rows` (internal; used by subgroups and imputation).
pub(crate) fn fit_design(
    outcome: &[Option<bool>],
    treated: &[bool],
    adj: &Adjustment,
    interact: Option<&Factor>,
    rows: &[usize],
) -> (Design, IrlsFit) {
    let design = build(treated, adj, interact, rows);
    let fit = fit_on(outcome, &design, &Rows::new(&design.x), rows, None);
    (design, fit)
}

/// Fits the model of a built design (its rows prepared as `prepared`) over
/// `rows`, from `start` if given ([`irls_on`]).
pub(crate) fn fit_on(
    outcome: &[Option<bool>],
    design: &Design,
    prepared: &Rows<'_>,
    rows: &[usize],
    start: Option<&DVector<f64>>,
) -> IrlsFit {
    let y: Vec<f64> = rows.iter().map(|&i| f64::from(u8::from(outcome[i] == Some(true)))).collect();
    let w = vec![1.0; y.len()];
    irls_on(&design.x, prepared, &y, &w, start)
}

/// Why a fit is not estimable, if it is not.
pub(crate) fn fit_problem(fit: &IrlsFit, design: &Design) -> Option<String> {
    if fit.separated {
        Some(
            "not estimable: perfect or quasi-complete separation (fitted probabilities \
             numerically 0 or 1)"
                .into(),
        )
    } else if !fit.converged {
        Some("not estimable: logistic regression did not converge".into())
    } else if !all_finite(fit.cov.as_slice()) || !all_finite(fit.beta.as_slice()) {
        Some("not estimable: information matrix is singular".into())
    } else if design.x.nrows() <= design.x.ncols() {
        Some("not estimable: no more participants than model parameters".into())
    } else {
        None
    }
}

/// Fits `logit P(outcome) = intercept + treated + factors + covariates` by
/// IRLS on the complete cases, as R's `glm(family = binomial)` with
/// `confint.default`.
pub fn logistic_regression(
    outcome: &[Option<bool>],
    treated: &[bool],
    adj: &Adjustment,
    level: f64,
) -> Result<Estimable<LogisticFit>> {
    Ok(adjusted_binary(outcome, treated, adj, level)?.fit)
}

/// The adjusted analysis of a binary outcome: the logistic model, the
/// adjusted odds ratio and the standardised risk difference.
pub fn adjusted_binary(
    outcome: &[Option<bool>],
    treated: &[bool],
    adj: &Adjustment,
    level: f64,
) -> Result<AdjustedBinary> {
    let level = check_level(level)?;
    check_len("outcome", treated.len(), outcome.len())?;
    adj.check(treated.len())?;
    let rows = complete_rows(outcome, adj);
    Ok(adjusted_binary_on(outcome, treated, adj, level, &rows, None, None))
}

/// [`adjusted_binary`] over `rows` (the complete cases), on `design` (with
/// its rows prepared) if it was already built for them (the imputed datasets
/// share one design), its fit begun from `start` if given ([`irls_on`]).
pub(crate) fn adjusted_binary_on(
    outcome: &[Option<bool>],
    treated: &[bool],
    adj: &Adjustment,
    level: f64,
    rows: &[usize],
    design: Option<(&Design, &Rows<'_>)>,
    start: Option<&DVector<f64>>,
) -> AdjustedBinary {
    let n = arm_counts(treated, rows);
    let bail = |reason: &str| AdjustedBinary {
        fit: Estimable::not_estimable(reason),
        odds_ratio: Estimable::not_estimable(reason),
        risk_difference: Estimable::not_estimable(reason),
        standardised_risk_treated: None,
        standardised_risk_control: None,
    };
    if rows.is_empty() {
        return bail("not estimable: no participant has the outcome and all covariates");
    }
    let events = rows.iter().filter(|&&i| outcome[i] == Some(true)).count();
    if events == 0 || events == rows.len() {
        return bail("not estimable: the outcome does not vary (perfect separation)");
    }
    let built;
    let built_rows;
    let (design, prepared) = match design {
        Some((d, prepared)) => (d, prepared),
        None => {
            built = build(treated, adj, None, rows);
            built_rows = Rows::new(&built.x);
            (&built, &built_rows)
        }
    };
    let fit = fit_on(outcome, design, prepared, rows, start);
    if let Some(reason) = fit_problem(&fit, design) {
        return bail(&reason);
    }
    let z = normal_quantile(0.5 + level / 2.0);
    let coefficients = coefficients_z(&design.names, &fit.beta, &fit.cov, z);
    let p = design.x.ncols();
    let y_mean = events as f64 / rows.len() as f64;
    let null_deviance = null_deviance(rows.iter().map(|&i| outcome[i] == Some(true)), y_mean);
    let logistic = LogisticFit {
        method: "logistic regression (IRLS), Wald confidence intervals".into(),
        n,
        events,
        coefficients,
        aliased: design.aliased.clone(),
        converged: fit.converged,
        iterations: fit.iterations,
        deviance: fit.deviance,
        null_deviance,
        aic: fit.deviance + 2.0 * p as f64,
        level,
        covariance: (0..p).map(|i| fit.cov.row(i).iter().copied().collect()).collect(),
    };
    let Some(t) = design.treatment else {
        let reason = "not estimable: allocation is collinear with the covariates (an arm is empty)";
        return AdjustedBinary {
            fit: Estimable::Value(logistic),
            odds_ratio: Estimable::not_estimable(reason),
            risk_difference: Estimable::not_estimable(reason),
            standardised_risk_treated: None,
            standardised_risk_control: None,
        };
    };
    let c = &logistic.coefficients[t];
    let odds_ratio = Estimable::Value(Estimate {
        measure: "odds ratio (adjusted)".into(),
        method: "logistic regression, Wald interval".into(),
        estimate: c.estimate.exp(),
        se: Some(c.se),
        ci_low: c.ci_low.exp(),
        ci_high: c.ci_high.exp(),
        level,
        p_value: Some(c.p_value),
        df: None,
        n,
        note: None,
    });
    let (risk_difference, r1, r0) = standardised_rd(design, prepared, &fit, t, z, level, n);
    AdjustedBinary {
        fit: Estimable::Value(logistic),
        odds_ratio,
        risk_difference,
        standardised_risk_treated: r1,
        standardised_risk_control: r0,
    }
}

/// Wald coefficients with normal reference (`summary.glm`, `confint.default`).
pub(crate) fn coefficients_z(names: &[String], beta: &DVector<f64>, cov: &DMatrix<f64>, z: f64) -> Vec<Coefficient> {
    names
        .iter()
        .enumerate()
        .map(|(j, name)| {
            let se = cov[(j, j)].sqrt();
            Coefficient {
                term: name.clone(),
                estimate: beta[j],
                se,
                statistic: beta[j] / se,
                p_value: normal_two_sided_p(beta[j] / se),
                ci_low: beta[j] - z * se,
                ci_high: beta[j] + z * se,
            }
        })
        .collect()
}

/// g-computation of the marginal risk difference with a delta-method SE.
///
/// On compressed rows each row's sums go over its non-zero entries only: a
/// zero entry adds ±0 to each (the coefficients are finite), which changes
/// no sum but one that is still zero, and then only its sign, which neither
/// risk nor any later sum sees; with few distinct rows each pattern's risks
/// are computed once (its rows are identical, so their risks are too). Both
/// are bit for bit the sums over every entry of every row.
#[allow(clippy::too_many_arguments)]
fn standardised_rd(
    design: &Design,
    prepared: &Rows<'_>,
    fit: &IrlsFit,
    t: usize,
    z: f64,
    level: f64,
    n: ArmCounts,
) -> (Estimable<Estimate>, Option<f64>, Option<f64>) {
    let (rows, p) = design.x.shape();
    let beta = &fit.beta;
    let (mut r1, mut r0) = (0.0, 0.0);
    let mut grad = DVector::<f64>::zeros(p);
    let risks = |base: f64| (inv_logit(base + beta[t]), inv_logit(base));
    match prepared {
        Rows::Sparse { start, col, val, patterns, .. } => {
            let base =
                |i: usize| (start[i]..start[i + 1]).filter(|&e| col[e] != t).map(|e| val[e] * beta[col[e]]).sum();
            // Each pattern's (p1, p0), from its first row.
            let cached = patterns
                .as_ref()
                .map(|pat| (&pat.of[..], pat.first.iter().map(|&i| risks(base(i))).collect::<Vec<(f64, f64)>>()));
            for i in 0..rows {
                let (p1, p0) = match &cached {
                    Some((of, risk)) => risk[of[i] as usize],
                    None => risks(base(i)),
                };
                r1 += p1;
                r0 += p0;
                let (g1, g0) = (p1 * (1.0 - p1), p0 * (1.0 - p0));
                grad[t] += g1;
                for e in start[i]..start[i + 1] {
                    if col[e] != t {
                        grad[col[e]] += (g1 - g0) * val[e];
                    }
                }
            }
        }
        Rows::Dense(x) => {
            for i in 0..rows {
                let xi = x.row(i);
                let base: f64 = (0..p).filter(|&j| j != t).map(|j| xi[j] * beta[j]).sum();
                let (p1, p0) = risks(base);
                r1 += p1;
                r0 += p0;
                let (g1, g0) = (p1 * (1.0 - p1), p0 * (1.0 - p0));
                for j in 0..p {
                    grad[j] += if j == t { g1 } else { (g1 - g0) * xi[j] };
                }
            }
        }
    }
    let nf = rows as f64;
    let (r1, r0) = (r1 / nf, r0 / nf);
    grad /= nf;
    let var = (grad.transpose() * &fit.cov * &grad)[(0, 0)];
    let rd = r1 - r0;
    let se = var.max(0.0).sqrt();
    if se.is_nan() || se <= 0.0 || !all_finite(&[rd, se]) {
        return (Estimable::not_estimable("not estimable: delta-method variance is zero"), Some(r1), Some(r0));
    }
    (
        Estimable::Value(Estimate {
            measure: "risk difference (percentage points), standardised".into(),
            method: "g-computation from logistic regression, delta-method Wald interval".into(),
            estimate: 100.0 * rd,
            se: Some(100.0 * se),
            ci_low: 100.0 * (rd - z * se),
            ci_high: 100.0 * (rd + z * se),
            level,
            p_value: Some(normal_two_sided_p(rd / se)),
            df: None,
            n,
            note: None,
        }),
        Some(r1),
        Some(r0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A design of treatment and factor dummies (few distinct rows) and a
    /// binary outcome that depends on them.
    fn factor_design(n: usize) -> (DMatrix<f64>, Vec<f64>) {
        let x = DMatrix::from_fn(n, 6, |i, j| match j {
            0 => 1.0,
            1 => f64::from(u8::from(i % 2 == 0)),
            2 | 3 => f64::from(u8::from(i % 3 == j - 1)),
            _ => f64::from(u8::from((i / 7) % 4 == j - 3)),
        });
        let y = (0..n).map(|i| f64::from(u8::from((i * 7919) % 13 < 4 + (i % 2) + (i % 3)))).collect();
        (x, y)
    }

    #[test]
    fn fits_grouped_by_equal_rows_match_the_row_by_row_fit() {
        let (x, y) = factor_design(2000);
        for w in [vec![1.0; 2000], (0..2000).map(|i| 0.5 + (i % 3) as f64).collect::<Vec<f64>>()] {
            let rows = Rows::new(&x);
            assert!(rows.patterns().is_some());
            let grouped = irls_on(&x, &rows, &y, &w, None);
            let by_row = irls_weighted(&x, &Rows::Dense(&x), &y, &w, &w, None);
            assert_eq!(
                (grouped.iterations, grouped.converged, grouped.separated),
                (by_row.iterations, by_row.converged, by_row.separated)
            );
            assert!(grouped.converged && !grouped.separated);
            let rel = |a: f64, b: f64| (a - b).abs() / a.abs().max(b.abs()).max(1e-300);
            assert!(rel(grouped.deviance, by_row.deviance) < 1e-12);
            for (a, b) in grouped.beta.iter().zip(by_row.beta.iter()) {
                assert!((a - b).abs() < 1e-10, "{a} vs {b}");
            }
            for (a, b) in grouped.cov.iter().zip(by_row.cov.iter()) {
                assert!((a - b).abs() < 1e-10 * grouped.cov.amax(), "{a} vs {b}");
            }
        }
    }

    /// A design with numeric covariates (no grouping) and an outcome that
    /// depends on them.
    fn covariate_design(n: usize) -> (DMatrix<f64>, Vec<f64>) {
        let x = DMatrix::from_fn(n, 4, |i, j| match j {
            0 => 1.0,
            1 => f64::from(u8::from(i % 2 == 0)),
            2 => ((i * 37) % 101) as f64 / 10.0,
            _ => ((i * 53) % 17) as f64 - 8.0,
        });
        let y = (0..n)
            .map(|i| {
                let eta = -0.5 + 0.4 * x[(i, 1)] + 0.1 * x[(i, 2)] - 0.05 * x[(i, 3)];
                f64::from(u8::from(((i * 7919) % 1000) as f64 / 1000.0 < 1.0 / (1.0 + (-eta).exp())))
            })
            .collect();
        (x, y)
    }

    #[test]
    fn a_fit_from_a_start_near_the_estimate_ends_where_the_fit_from_r_start_does() {
        let (x, y) = covariate_design(3000);
        let w = vec![1.0; 3000];
        let rows = Rows::new(&x);
        let from_r = irls_on(&x, &rows, &y, &w, None);
        assert!(from_r.converged && !from_r.separated);
        let near = DVector::from_iterator(4, from_r.beta.iter().map(|b| b * 1.05 + 0.01));
        let from_near = irls_on(&x, &rows, &y, &w, Some(&near));
        assert!(from_near.converged && !from_near.separated);
        assert!(from_near.iterations <= from_r.iterations);
        for (a, b) in from_near.beta.iter().zip(from_r.beta.iter()) {
            assert!((a - b).abs() < 1e-10 * (1.0 + b.abs()), "{a} vs {b}");
        }
        for (a, b) in from_near.cov.iter().zip(from_r.cov.iter()) {
            assert!((a - b).abs() < 1e-10 * from_r.cov.amax(), "{a} vs {b}");
        }
        assert!((from_near.deviance - from_r.deviance).abs() < 1e-10 * from_r.deviance);
        // A start of the wrong length, or not finite, is ignored.
        for bad in [DVector::zeros(3), DVector::from_element(4, f64::NAN)] {
            let fit = irls_on(&x, &rows, &y, &w, Some(&bad));
            assert_eq!((fit.beta.clone(), fit.iterations), (from_r.beta.clone(), from_r.iterations));
        }
        // Grouped fits take the start too.
        let (x, y) = factor_design(2000);
        let w = vec![1.0; 2000];
        let rows = Rows::new(&x);
        assert!(rows.patterns().is_some());
        let from_r = irls_on(&x, &rows, &y, &w, None);
        let from_near = irls_on(&x, &rows, &y, &w, Some(&from_r.beta.map(|b| b + 0.02)));
        for (a, b) in from_near.beta.iter().zip(from_r.beta.iter()) {
            assert!((a - b).abs() < 1e-10 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    /// The standardised risk difference from compressed rows, with or
    /// without their patterns, is bit for bit the one summed over every
    /// entry of the dense matrix.
    #[test]
    fn standardised_risks_from_compressed_rows_are_those_of_the_dense_matrix() {
        let (fx, fy) = factor_design(3000);
        let (cx, cy) = covariate_design(3000);
        // The covariate design made sparse: eight factor dummies beside it.
        let sx = DMatrix::from_fn(3000, 12, |i, j| match j {
            0..4 => cx[(i, j)],
            _ => f64::from(u8::from(i % 9 == j - 3)),
        });
        for (x, y, layout) in [(fx, fy, "patterns"), (sx, cy.clone(), "sparse"), (cx, cy, "dense")] {
            match (Rows::new(&x), layout) {
                (Rows::Sparse { patterns: Some(_), .. }, "patterns")
                | (Rows::Sparse { patterns: None, .. }, "sparse")
                | (Rows::Dense(_), "dense") => {}
                _ => panic!("{layout} rows expected"),
            }
            let w = vec![1.0; y.len()];
            let fit = irls(&x, &y, &w);
            assert!(fit.converged && !fit.separated);
            let names: Vec<String> = (0..x.ncols()).map(|j| format!("x{j}")).collect();
            let design = Design { x: x.clone(), names, aliased: vec![], treatment: Some(1), interactions: vec![] };
            let n = ArmCounts { treated: 1500, control: 1500 };
            let want = standardised_rd(&design, &Rows::Dense(&x), &fit, 1, 1.96, 0.95, n);
            for rows in [Rows::new(&x), Rows::once(&x)] {
                let got = standardised_rd(&design, &rows, &fit, 1, 1.96, 0.95, n);
                assert_eq!(got, want);
                let bits = |r: &(Estimable<Estimate>, Option<f64>, Option<f64>)| {
                    let e = r.0.value().expect("estimable");
                    (e.estimate.to_bits(), e.se.map(f64::to_bits), r.1.map(f64::to_bits), r.2.map(f64::to_bits))
                };
                assert_eq!(bits(&got), bits(&want));
            }
        }
    }

    #[test]
    fn the_null_deviance_is_the_binomial_deviance_bit_for_bit() {
        for n in [1usize, 2, 7, 1000, 4099] {
            for k in [1usize, 3, 17] {
                let y: Vec<f64> = (0..n).map(|i| f64::from(u8::from((i * 7919 + k) % (k + 4) == 0))).collect();
                let mean = y.iter().sum::<f64>() / n as f64;
                for mean in [mean, 0.5, 1e-9, 1.0 - 1e-9] {
                    let want = binomial_deviance(&y, &vec![mean; n], &vec![1.0; n]);
                    let got = null_deviance(y.iter().map(|&v| v == 1.0), mean);
                    assert_eq!(got.to_bits(), want.to_bits(), "n {n}, k {k}, mean {mean}");
                }
            }
        }
    }

    #[test]
    fn grouped_fits_still_report_separation() {
        let (x, _) = factor_design(400);
        // The outcome is the treatment indicator: complete separation.
        let y: Vec<f64> = (0..400).map(|i| x[(i, 1)]).collect();
        let w = vec![1.0; 400];
        let rows = Rows::new(&x);
        assert!(rows.patterns().is_some());
        let grouped = irls_on(&x, &rows, &y, &w, None);
        let by_row = irls_weighted(&x, &Rows::Dense(&x), &y, &w, &w, None);
        assert!(grouped.separated && by_row.separated);
        assert_eq!(grouped.converged, by_row.converged);
    }
}
