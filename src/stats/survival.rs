//! Time to first job: Kaplan–Meier curves, the log-rank test and the Cox
//! proportional hazards model.
//!
//! | Quantity | Method | R reference |
//! |---|---|---|
//! | S(t) per arm | Kaplan & Meier (1958), Greenwood (1926) variance | `survfit(Surv(time, event) ~ 1)` |
//! | pointwise CI | log transform, `exp(log S ± z σ)`, σ² = Σ d / (n (n − d)), upper capped at 1 | `conf.type = "log"` (the default) |
//! | median and quantiles with CI | first time the curve (or its CI limit) reaches 1 − p, averaging over a flat stretch | `quantile.survfit`, `summary(fit)$table` |
//! | S(t) at given days | last step at or before t | `summary(fit, times = t, extend = TRUE)` |
//! | log-rank test | Mantel–Haenszel, hypergeometric variance, summed over strata | `survdiff(Surv ~ arm + strata(...))` |
//! | hazard ratio | Cox partial likelihood, Efron (1977) ties, Newton–Raphson, Wald CI | `coxph(ties = "efron")` |
//!
//! Times are days from randomisation; `event = true` means a job was found,
//! `false` censoring (at 365 days or at the last follow-up). All routines sort
//! once and sweep with running sums, so they are O(n log n).

use super::design::{Adjustment, Factor, build};
use super::dist::{chisq_upper, normal_quantile};
use super::logistic::{arm_counts, coefficients_z};
use super::{
    ArmCounts, Coefficient, Estimable, Estimate, Result, Settling, StatsError, TestResult, all_finite, check_len,
    check_level,
};
use nalgebra::{DMatrix, DVector};

/// One step of a Kaplan–Meier curve (one distinct observed time).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KmStep {
    /// Time (days).
    pub time: f64,
    /// Number at risk just before `time`.
    pub n_risk: usize,
    /// Events at `time`.
    pub n_event: usize,
    /// Censored at `time`.
    pub n_censor: usize,
    /// Survival S(time) (here: probability of no job yet).
    pub survival: f64,
    /// Greenwood standard error of S(time).
    pub se: f64,
    /// Lower pointwise limit (log transform); `None` where S = 0.
    pub ci_low: Option<f64>,
    /// Upper pointwise limit (log transform, at most 1); `None` where S = 0.
    pub ci_high: Option<f64>,
    /// Greenwood sum Σ d / (n (n − d)) so far (the variance of log S).
    #[serde(skip)]
    greenwood: f64,
}

/// A quantile of the survival distribution. `None` means the curve (or its
/// confidence limit) never fell far enough: "not reached".
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SurvivalQuantile {
    /// The probability p: the time by which a fraction p had the event
    /// (p = 0.5 is the median).
    pub probability: f64,
    /// The quantile, if reached.
    pub time: Option<f64>,
    /// Lower confidence limit, if reached.
    pub ci_low: Option<f64>,
    /// Upper confidence limit, if reached.
    pub ci_high: Option<f64>,
}

/// Survival at a chosen time.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SurvivalAt {
    /// The time asked for.
    pub time: f64,
    /// Number still at risk at `time`.
    pub n_risk: usize,
    /// S(time).
    pub survival: f64,
    /// Greenwood standard error.
    pub se: f64,
    /// Lower limit; `None` where S = 0.
    pub ci_low: Option<f64>,
    /// Upper limit; `None` where S = 0.
    pub ci_high: Option<f64>,
}

/// A Kaplan–Meier curve for one group.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KaplanMeier {
    /// "Kaplan-Meier, Greenwood variance, log-transformed CI".
    pub method: String,
    /// Participants.
    pub n: usize,
    /// Events.
    pub events: usize,
    /// Confidence level of the pointwise and quantile intervals.
    pub level: f64,
    /// The curve, one step per distinct time (events and censorings).
    pub steps: Vec<KmStep>,
    /// Median time to event with CI.
    pub median: SurvivalQuantile,
}

/// Curves for both arms.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KaplanMeierByArm {
    /// Intervention arm.
    pub treated: Estimable<KaplanMeier>,
    /// Control arm.
    pub control: Estimable<KaplanMeier>,
}

fn check_times(time: &[f64], event: &[bool]) -> Result<()> {
    check_len("event", time.len(), event.len())?;
    if let Some(t) = time.iter().find(|t| !t.is_finite() || **t < 0.0) {
        return Err(StatsError::InvalidArgument(format!("survival times must be finite and non-negative, got {t}")));
    }
    Ok(())
}

/// The Kaplan–Meier estimate for one group.
pub fn kaplan_meier(time: &[f64], event: &[bool], level: f64) -> Result<Estimable<KaplanMeier>> {
    let level = check_level(level)?;
    check_times(time, event)?;
    if time.is_empty() {
        return Ok(Estimable::not_estimable("not estimable: no participants"));
    }
    let mut order: Vec<usize> = (0..time.len()).collect();
    order.sort_by(|&a, &b| time[a].total_cmp(&time[b]));
    let z = normal_quantile(0.5 + level / 2.0);
    let mut steps = Vec::new();
    let mut at_risk = time.len();
    let (mut s, mut gw) = (1.0_f64, 0.0_f64);
    let mut i = 0;
    while i < order.len() {
        let t = time[order[i]];
        let (mut d, mut c) = (0, 0);
        while i < order.len() && time[order[i]] == t {
            if event[order[i]] {
                d += 1
            } else {
                c += 1
            }
            i += 1;
        }
        if d > 0 {
            s *= 1.0 - d as f64 / at_risk as f64;
            gw += if at_risk > d { d as f64 / (at_risk as f64 * (at_risk - d) as f64) } else { f64::INFINITY };
        }
        steps.push(km_step(t, at_risk, d, c, s, gw, z));
        at_risk -= d + c;
    }
    let events = event.iter().filter(|&&e| e).count();
    let mut km = KaplanMeier {
        method: "Kaplan-Meier, Greenwood variance, log-transformed CI".into(),
        n: time.len(),
        events,
        level,
        steps,
        median: SurvivalQuantile { probability: 0.5, time: None, ci_low: None, ci_high: None },
    };
    km.median = km.quantile(0.5);
    Ok(Estimable::Value(km))
}

fn km_step(t: f64, n: usize, d: usize, c: usize, s: f64, gw: f64, z: f64) -> KmStep {
    let (lo, hi, se) = log_ci(s, gw, z);
    KmStep { time: t, n_risk: n, n_event: d, n_censor: c, survival: s, se, ci_low: lo, ci_high: hi, greenwood: gw }
}

/// `survfit`'s log-transformed interval and the SE of S.
fn log_ci(s: f64, gw: f64, z: f64) -> (Option<f64>, Option<f64>, f64) {
    if s <= 0.0 || !gw.is_finite() {
        return (None, None, 0.0);
    }
    let sd = gw.sqrt();
    let lo = (s.ln() - z * sd).exp();
    let hi = (s.ln() + z * sd).exp().min(1.0);
    (Some(lo), Some(hi), s * sd)
}

impl KaplanMeier {
    /// S(t) with its Greenwood SE and log CI, as `summary(fit, times = t,
    /// extend = TRUE)`.
    pub fn at(&self, t: f64) -> SurvivalAt {
        let last = self.steps.iter().rposition(|s| s.time <= t);
        let n_risk = self.steps.iter().find(|s| s.time >= t).map_or(0, |s| s.n_risk);
        match last {
            None => SurvivalAt { time: t, n_risk, survival: 1.0, se: 0.0, ci_low: Some(1.0), ci_high: Some(1.0) },
            Some(k) => {
                let s = &self.steps[k];
                SurvivalAt { time: t, n_risk, survival: s.survival, se: s.se, ci_low: s.ci_low, ci_high: s.ci_high }
            }
        }
    }

    /// The time by which a fraction `p` had the event, with CI, by the
    /// algorithm of `survival:::quantile.survfit` (tolerance √ε: where the
    /// curve is flat at exactly 1 − p the midpoint of the flat stretch).
    pub fn quantile(&self, p: f64) -> SurvivalQuantile {
        let mut x = vec![0.0];
        x.extend(self.steps.iter().map(|s| s.time));
        let curve = |f: &dyn Fn(&KmStep) -> Option<f64>| {
            let mut y = vec![Some(0.0)];
            y.extend(self.steps.iter().map(|s| f(s).map(|v| 1.0 - v)));
            y
        };
        let tol = f64::EPSILON.sqrt();
        SurvivalQuantile {
            probability: p,
            time: findq(&x, &curve(&|s| Some(s.survival)), p, tol),
            ci_low: findq(&x, &curve(&|s| s.ci_low), p, tol),
            ci_high: findq(&x, &curve(&|s| s.ci_high), p, tol),
        }
    }
}

/// `survival:::findq`: first x at which the cumulative curve y reaches p.
fn findq(x: &[f64], y: &[Option<f64>], p: f64, tol: f64) -> Option<f64> {
    let max = y.iter().flatten().cloned().fold(f64::NEG_INFINITY, f64::max);
    if max < p {
        return None;
    }
    let xmax = *x.last()?;
    // Drop duplicated y values (first occurrence kept; NAs count as equal).
    let mut xs = Vec::new();
    let mut ys: Vec<Option<f64>> = Vec::new();
    for (xi, yi) in x.iter().zip(y) {
        if !ys.contains(yi) {
            xs.push(*xi);
            ys.push(*yi);
        }
    }
    // approx(y ± tol, 1:n, p, method = "constant", f = 1): the first index
    // whose (shifted) value is ≥ p, NA outside the range.
    let index = |shift: f64| -> Option<usize> {
        let vals: Vec<(usize, f64)> = ys.iter().enumerate().filter_map(|(j, v)| v.map(|v| (j, v + shift))).collect();
        let (first, last) = (vals.first()?.1, vals.last()?.1);
        if p < first || p > last {
            return None;
        }
        vals.iter().find(|(_, v)| *v >= p).map(|(j, _)| *j)
    };
    let i1 = index(tol);
    let i2 = index(-tol);
    let mut quant = match (i1, i2) {
        (Some(a), Some(b)) => Some((xs[a] + xs[b]) / 2.0),
        _ => None,
    };
    if let (Some(Some(last)), Some(a)) = (ys.last(), i1) {
        if (p - last).abs() < tol {
            quant = Some((xs[a] + xmax) / 2.0);
        }
    }
    quant
}

/// Kaplan–Meier curves for both arms.
pub fn kaplan_meier_by_arm(time: &[f64], event: &[bool], treated: &[bool], level: f64) -> Result<KaplanMeierByArm> {
    check_len("time", treated.len(), time.len())?;
    check_times(time, event)?;
    let pick = |arm: bool| -> (Vec<f64>, Vec<bool>) {
        (0..time.len()).filter(|&i| treated[i] == arm).map(|i| (time[i], event[i])).unzip()
    };
    let (t1, e1) = pick(true);
    let (t0, e0) = pick(false);
    Ok(KaplanMeierByArm { treated: kaplan_meier(&t1, &e1, level)?, control: kaplan_meier(&t0, &e0, level)? })
}

/// The log-rank test.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogRank {
    /// Chi-square statistic (1 df) and p-value.
    pub test: TestResult,
    /// Observed events in the intervention arm.
    pub observed_treated: f64,
    /// Expected events in the intervention arm under no difference.
    pub expected_treated: f64,
    /// Observed events in the control arm.
    pub observed_control: f64,
    /// Expected events in the control arm.
    pub expected_control: f64,
    /// Number of strata used (1 when unstratified).
    pub strata: usize,
}

/// Stratum index per participant (`None` = excluded for a missing stratum).
fn stratum_codes(n: usize, strata: Option<&Factor>) -> Result<Vec<Option<usize>>> {
    match strata {
        None => Ok(vec![Some(0); n]),
        Some(f) => {
            check_len(&format!("strata {}", f.name), n, f.codes.len())?;
            Ok(f.codes.clone())
        }
    }
}

/// Participants sorted by stratum, then time (ascending).
fn sorted_by_stratum(time: &[f64], codes: &[Option<usize>], rows: &[usize]) -> Vec<usize> {
    // Sorted as (stratum, time, row) keys held side by side rather than
    // through indices into three arrays: the row breaks ties, so the order is
    // the one a stable sort by stratum and time gives (a tie's rows in the
    // order of `rows`, which is ascending), and the time is keyed by the bits
    // `f64::total_cmp` compares, so times order as that comparison orders them.
    let total_order = |t: f64| {
        let bits = t.to_bits() as i64;
        bits ^ (((bits >> 63) as u64) >> 1) as i64
    };
    let mut keyed: Vec<(Option<usize>, i64, usize)> =
        rows.iter().map(|&i| (codes[i], total_order(time[i]), i)).collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, _, i)| i).collect()
}

/// The (stratified) log-rank test of equal hazards, as R's `survdiff`.
pub fn log_rank(time: &[f64], event: &[bool], treated: &[bool], strata: Option<&Factor>) -> Result<Estimable<LogRank>> {
    check_len("time", treated.len(), time.len())?;
    check_times(time, event)?;
    let codes = stratum_codes(time.len(), strata)?;
    let rows: Vec<usize> = (0..time.len()).filter(|&i| codes[i].is_some()).collect();
    let n = arm_counts(treated, &rows);
    let order = sorted_by_stratum(time, &codes, &rows);
    let (mut o1, mut e1, mut v, mut events) = (0.0, 0.0, 0.0, 0.0);
    let mut n_strata = 0;
    let mut i = 0;
    while i < order.len() {
        // One stratum: order[i..end].
        let s = codes[order[i]];
        let end = i + order[i..].iter().take_while(|&&k| codes[k] == s).count();
        n_strata += 1;
        let mut risk = (end - i) as f64;
        let mut risk1 = order[i..end].iter().filter(|&&k| treated[k]).count() as f64;
        let mut j = i;
        while j < end {
            let t = time[order[j]];
            let (mut d, mut d1, mut leave, mut leave1) = (0.0, 0.0, 0.0, 0.0);
            while j < end && time[order[j]] == t {
                let k = order[j];
                if event[k] {
                    d += 1.0;
                    if treated[k] {
                        d1 += 1.0
                    }
                }
                leave += 1.0;
                if treated[k] {
                    leave1 += 1.0
                }
                j += 1;
            }
            if d > 0.0 {
                o1 += d1;
                e1 += d * risk1 / risk;
                events += d;
                if risk > 1.0 {
                    v += d * (risk1 / risk) * (1.0 - risk1 / risk) * (risk - d) / (risk - 1.0);
                }
            }
            risk -= leave;
            risk1 -= leave1;
        }
        i = end;
    }
    if events == 0.0 {
        return Ok(Estimable::not_estimable("not estimable: no events"));
    }
    if v.is_nan() || v <= 0.0 {
        return Ok(Estimable::not_estimable("not estimable: no stratum has both arms at risk at an event time"));
    }
    let chisq = (o1 - e1).powi(2) / v;
    let method = if strata.is_some() { "stratified log-rank test" } else { "log-rank test" };
    Ok(Estimable::Value(LogRank {
        test: TestResult {
            method: method.into(),
            statistic: Some(chisq),
            df: Some(1.0),
            p_value: chisq_upper(chisq, 1.0),
            n,
        },
        observed_treated: o1,
        expected_treated: e1,
        observed_control: events - o1,
        expected_control: events - e1,
        strata: n_strata,
    }))
}

/// A fitted Cox proportional hazards model.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CoxFit {
    /// "Cox proportional hazards, Efron ties, Wald CI" (+ stratified).
    pub method: String,
    /// Participants analysed per arm.
    pub n: ArmCounts,
    /// Events analysed.
    pub events: usize,
    /// Number of strata (1 when unstratified).
    pub strata: usize,
    /// Coefficients (log hazard ratios).
    pub coefficients: Vec<Coefficient>,
    /// Columns left out as linear combinations of others.
    pub aliased: Vec<String>,
    /// Hazard ratio for the intervention with Wald CI and p.
    pub hazard_ratio: Estimable<Estimate>,
    /// Log partial likelihood at β = 0.
    pub loglik_null: f64,
    /// Log partial likelihood at the estimate.
    pub loglik: f64,
    /// Newton–Raphson iterations.
    pub iterations: usize,
    /// Confidence level.
    pub level: f64,
}

impl CoxFit {
    /// The coefficient with this R name.
    pub fn coefficient(&self, term: &str) -> Option<&Coefficient> {
        self.coefficients.iter().find(|c| c.term == term)
    }
}

/// Efron log partial likelihood, score and information at `beta`, summed
/// over strata. `order` is sorted by stratum then time ascending; sweeps
/// each stratum from the latest time with running sums (O(n p²)).
fn efron(sweep: &Sweep, beta: &DVector<f64>) -> (f64, DVector<f64>, DMatrix<f64>) {
    // The sums are kept in plain column-major buffers, and the participants
    // read in sweep order from arrays laid out in it: nalgebra's vector and
    // matrix operators made a new vector or matrix for every row and every
    // tied death, and the rows were reached through two index arrays, most of
    // a fit's time. Each element is computed as those operators computed it
    // (`x * beta`, `axpy`, `ger`, the outer product), so the sums are the
    // same to the bit.
    let p = sweep.p;
    let mut ll = 0.0;
    let mut u = vec![0.0; p];
    let mut info = vec![0.0; p * p];
    let (mut s1, mut s2) = (vec![0.0; p], vec![0.0; p * p]);
    let (mut d1, mut d2) = (vec![0.0; p], vec![0.0; p * p]);
    let (mut a1, mut a2) = (vec![0.0; p], vec![0.0; p * p]);
    // `y += w x` and `y += w x xᵀ` as nalgebra's `axpy` and `ger` compute them.
    let add = |s1: &mut [f64], s2: &mut [f64], w: f64, xi: &[f64]| {
        for (s, &x) in s1.iter_mut().zip(xi) {
            *s += w * x;
        }
        for (j, col) in s2.chunks_exact_mut(p).enumerate() {
            let wx = w * xi[j];
            for (s, &x) in col.iter_mut().zip(xi) {
                *s += wx * x;
            }
        }
    };
    // xᵀβ as nalgebra's `x * beta` computes it: column by column.
    let eta = |xi: &[f64]| xi[1..].iter().zip(&beta.as_slice()[1..]).fold(xi[0] * beta[0], |e, (x, b)| x * b + e);
    let (time, event, codes) = (&sweep.time, &sweep.event, &sweep.codes);
    let mut j = time.len();
    let mut s0 = 0.0;
    let mut stratum = None;
    while j > 0 {
        if codes[j - 1] != stratum {
            stratum = codes[j - 1];
            s0 = 0.0;
            s1.fill(0.0);
            s2.fill(0.0);
        }
        let t = time[j - 1];
        let (mut d0, mut nd) = (0.0, 0usize);
        d1.fill(0.0);
        d2.fill(0.0);
        while j > 0 && codes[j - 1] == stratum && time[j - 1] == t {
            let xi = &sweep.rows[(j - 1) * p..j * p];
            let e = eta(xi);
            let w = e.exp();
            s0 += w;
            add(&mut s1, &mut s2, w, xi);
            if event[j - 1] {
                d0 += w;
                add(&mut d1, &mut d2, w, xi);
                nd += 1;
                ll += e;
                for (u, &x) in u.iter_mut().zip(xi) {
                    *u += x;
                }
            }
            j -= 1;
        }
        // Efron (1977): the r-th of d tied deaths sees the risk set with a
        // fraction r/d of the tied deaths' weight removed.
        for r in 0..nd {
            let f = r as f64 / nd as f64;
            let a0 = s0 - f * d0;
            for ((a, &s), &d) in a1.iter_mut().zip(&s1).zip(&d1) {
                *a = s - d * f;
            }
            for ((a, &s), &d) in a2.iter_mut().zip(&s2).zip(&d2) {
                *a = s - d * f;
            }
            ll -= a0.ln();
            for (u, &a) in u.iter_mut().zip(&a1) {
                *u -= a / a0;
            }
            for (col, (info, a2)) in info.chunks_exact_mut(p).zip(a2.chunks_exact(p)).enumerate() {
                for (row, (v, &a)) in info.iter_mut().zip(a2).enumerate() {
                    *v += a / a0 - a1[row] * a1[col] / (a0 * a0);
                }
            }
        }
    }
    (ll, DVector::from_vec(u), DMatrix::from_vec(p, p, info))
}

/// A Cox fit's participants in sweep order (by stratum, then time
/// ascending; [`efron`] sweeps from the end): their times, events, strata and
/// design rows (`p` covariates each, one row after the other).
struct Sweep {
    p: usize,
    time: Vec<f64>,
    event: Vec<bool>,
    codes: Vec<Option<usize>>,
    rows: Vec<f64>,
}

impl Sweep {
    /// `order` indexes `time`, `event` and `codes`; `pos` maps such an index
    /// to its row of `x`.
    fn new(
        x: &DMatrix<f64>,
        time: &[f64],
        event: &[bool],
        codes: &[Option<usize>],
        order: &[usize],
        pos: &[usize],
    ) -> Sweep {
        let p = x.ncols();
        let mut rows = Vec::with_capacity(order.len() * p);
        for &k in order {
            rows.extend(x.row(pos[k]).iter());
        }
        Sweep {
            p,
            time: order.iter().map(|&k| time[k]).collect(),
            event: order.iter().map(|&k| event[k]).collect(),
            codes: order.iter().map(|&k| codes[k]).collect(),
            rows,
        }
    }
}

/// Cox proportional hazards with Efron ties, optionally stratified and
/// adjusted, as R's `coxph(Surv(time, event) ~ treated + ... + strata(s),
/// ties = "efron")`. Newton–Raphson from β = 0 with step halving, converged
/// when the log likelihood changes by less than 1e-11 relatively; a
/// coefficient still drifting after convergence (monotone likelihood, e.g. no
/// events in one arm) makes the fit not estimable.
pub fn cox_regression(
    time: &[f64],
    event: &[bool],
    treated: &[bool],
    adj: &Adjustment,
    strata: Option<&Factor>,
    level: f64,
) -> Result<Estimable<CoxFit>> {
    let level = check_level(level)?;
    check_len("time", treated.len(), time.len())?;
    check_times(time, event)?;
    adj.check(treated.len())?;
    let codes = stratum_codes(time.len(), strata)?;
    let rows: Vec<usize> = (0..time.len()).filter(|&i| codes[i].is_some() && adj.complete(i)).collect();
    let n = arm_counts(treated, &rows);
    let events = rows.iter().filter(|&&i| event[i]).count();
    if events == 0 {
        return Ok(Estimable::not_estimable("not estimable: no events"));
    }
    let design = build(treated, adj, None, &rows);
    // Drop the intercept: the baseline hazard absorbs it. Centre the
    // columns, as coxph does, for numerical stability.
    let mut x = design.x.clone().remove_column(0);
    let names: Vec<String> = design.names[1..].to_vec();
    for mut c in x.column_iter_mut() {
        let m = c.mean();
        c.add_scalar_mut(-m);
    }
    let p = x.ncols();
    if p == 0 {
        return Ok(Estimable::not_estimable("not estimable: no covariate varies"));
    }
    let mut pos = vec![0; time.len()];
    for (r, &i) in rows.iter().enumerate() {
        pos[i] = r;
    }
    let order = sorted_by_stratum(time, &codes, &rows);
    let n_strata = {
        let mut s: Vec<usize> = rows.iter().filter_map(|&i| codes[i]).collect();
        s.sort_unstable();
        s.dedup();
        s.len()
    };
    let mut beta = DVector::zeros(p);
    let sweep = Sweep::new(&x, time, event, &codes, &order, &pos);
    let (ll0, mut u, mut info) = efron(&sweep, &beta);
    let mut ll = ll0;
    let mut settling = Settling::new();
    let mut iterations = 0;
    for iter in 1..=60 {
        iterations = iter;
        let Some(chol) = info.clone().cholesky() else {
            break;
        };
        let mut step = chol.solve(&u);
        let mut accepted = None;
        for _ in 0..30 {
            let cand = &beta + &step;
            let (ll_new, u_new, i_new) = efron(&sweep, &cand);
            if ll_new.is_finite() && ll_new >= ll - 1e-12 * ll.abs() {
                accepted = Some((cand, ll_new, u_new, i_new));
                break;
            }
            step /= 2.0; // step halving, as coxph
        }
        let Some((cand, ll_new, u_new, i_new)) = accepted else {
            break;
        };
        let size = step.amax();
        let rel = (1.0 - ll / ll_new).abs();
        beta = cand;
        ll = ll_new;
        u = u_new;
        info = i_new;
        if settling.stop(size, rel < 1e-11, &beta) {
            break;
        }
    }
    let _ = u;
    if !settling.converged() {
        return Ok(Estimable::not_estimable("not estimable: Cox model did not converge"));
    }
    if settling.still_moving(&beta) {
        return Ok(Estimable::not_estimable(
            "not estimable: monotone likelihood (a coefficient is infinite, e.g. no events in an arm)",
        ));
    }
    let Some(cov) = info.clone().try_inverse().filter(|c| all_finite(c.as_slice())) else {
        return Ok(Estimable::not_estimable("not estimable: information matrix is singular"));
    };
    let z = normal_quantile(0.5 + level / 2.0);
    let coefficients = coefficients_z(&names, &beta, &cov, z);
    let method = if strata.is_some() {
        "stratified Cox proportional hazards, Efron ties, Wald CI"
    } else {
        "Cox proportional hazards, Efron ties, Wald CI"
    };
    let hazard_ratio = match design.treatment {
        None => Estimable::not_estimable("not estimable: allocation is collinear with the covariates"),
        Some(t) => {
            let c = &coefficients[t - 1];
            Estimable::Value(Estimate {
                measure: "hazard ratio".into(),
                method: method.into(),
                estimate: c.estimate.exp(),
                se: Some(c.se),
                ci_low: c.ci_low.exp(),
                ci_high: c.ci_high.exp(),
                level,
                p_value: Some(c.p_value),
                df: None,
                n,
                note: None,
            })
        }
    };
    Ok(Estimable::Value(CoxFit {
        method: method.into(),
        n,
        events,
        strata: n_strata,
        coefficients,
        aliased: design.aliased,
        hazard_ratio,
        loglik_null: ll0,
        loglik: ll,
        iterations,
        level,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `efron` as it was written with nalgebra's operators (a vector or
    /// matrix made for every row and tied death): the model of the
    /// allocation-free sweep.
    fn efron_by_operators(
        x: &DMatrix<f64>,
        time: &[f64],
        event: &[bool],
        codes: &[Option<usize>],
        order: &[usize],
        pos: &[usize],
        beta: &DVector<f64>,
    ) -> (f64, DVector<f64>, DMatrix<f64>) {
        let p = x.ncols();
        let eta = x * beta;
        let mut ll = 0.0;
        let mut u = DVector::zeros(p);
        let mut info = DMatrix::zeros(p, p);
        let mut s1 = DVector::zeros(p);
        let mut s2 = DMatrix::zeros(p, p);
        let mut d1 = DVector::zeros(p);
        let mut d2 = DMatrix::zeros(p, p);
        let mut j = order.len();
        let mut s0 = 0.0;
        let mut stratum = None;
        while j > 0 {
            let k = order[j - 1];
            if codes[k] != stratum {
                stratum = codes[k];
                s0 = 0.0;
                s1.fill(0.0);
                s2.fill(0.0);
            }
            let t = time[k];
            let (mut d0, mut nd) = (0.0, 0usize);
            d1.fill(0.0);
            d2.fill(0.0);
            while j > 0 && codes[order[j - 1]] == stratum && time[order[j - 1]] == t {
                let k = order[j - 1];
                let r = pos[k];
                let xi = x.row(r).transpose();
                let w = eta[r].exp();
                s0 += w;
                s1.axpy(w, &xi, 1.0);
                s2.ger(w, &xi, &xi, 1.0);
                if event[k] {
                    d0 += w;
                    d1.axpy(w, &xi, 1.0);
                    d2.ger(w, &xi, &xi, 1.0);
                    nd += 1;
                    ll += eta[r];
                    u += &xi;
                }
                j -= 1;
            }
            for r in 0..nd {
                let f = r as f64 / nd as f64;
                let a0 = s0 - f * d0;
                let a1 = &s1 - &d1 * f;
                let a2 = &s2 - &d2 * f;
                ll -= a0.ln();
                u -= &a1 / a0;
                info += &a2 / a0 - (&a1 * a1.transpose()) / (a0 * a0);
            }
        }
        (ll, u, info)
    }

    proptest! {
        /// The keyed sort orders as a stable sort by stratum, then
        /// `f64::total_cmp` of the times: ties (and -0 against 0, and
        /// missing strata) included.
        #[test]
        fn the_keyed_sort_is_the_stable_sort_by_stratum_and_time(
            rows in prop::collection::vec(
                (prop::option::of(0usize..3), prop_oneof![Just(-0.0f64), Just(0.0), -5.0f64..5.0, (0u8..4).prop_map(f64::from)]),
                0..80,
            ),
            skip in 0usize..5,
        ) {
            let codes: Vec<Option<usize>> = rows.iter().map(|r| r.0).collect();
            let time: Vec<f64> = rows.iter().map(|r| r.1).collect();
            let subset: Vec<usize> = (0..rows.len()).filter(|i| skip == 0 || i % (skip + 1) != 0).collect();
            let mut want = subset.clone();
            want.sort_by(|&a, &b| codes[a].cmp(&codes[b]).then(time[a].total_cmp(&time[b])));
            prop_assert_eq!(sorted_by_stratum(&time, &codes, &subset), want);
        }
    }

    proptest! {
        /// The sweep over plain buffers gives the likelihood, score and
        /// information the operators gave, to the bit: with ties (times
        /// drawn from a few values), strata, and one to three covariates.
        #[test]
        fn efron_sums_equal_the_operators_to_the_bit(
            rows in prop::collection::vec(
                (0u8..12, any::<bool>(), 0usize..3, prop::collection::vec(-3.0f64..3.0, 3)),
                1..60,
            ),
            p in 1usize..4,
            beta in prop::collection::vec(-1.5f64..1.5, 3),
        ) {
            let n = rows.len();
            let time: Vec<f64> = rows.iter().map(|r| f64::from(r.0)).collect();
            let event: Vec<bool> = rows.iter().map(|r| r.1).collect();
            let codes: Vec<Option<usize>> = rows.iter().map(|r| Some(r.2)).collect();
            let x = DMatrix::from_fn(n, p, |i, j| rows[i].3[j]);
            let beta = DVector::from_fn(p, |j, _| beta[j]);
            let all: Vec<usize> = (0..n).collect();
            let order = sorted_by_stratum(&time, &codes, &all);
            let got = efron(&Sweep::new(&x, &time, &event, &codes, &order, &all), &beta);
            let want = efron_by_operators(&x, &time, &event, &codes, &order, &all, &beta);
            prop_assert_eq!(got.0.to_bits(), want.0.to_bits());
            let bits = |m: &[f64]| m.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(got.1.as_slice()), bits(want.1.as_slice()));
            prop_assert_eq!(bits(got.2.as_slice()), bits(want.2.as_slice()));
        }
    }

    #[test]
    fn median_not_reached_and_flat_stretch() {
        // Few events: S never falls to 0.5.
        let t = [10.0, 20.0, 30.0, 40.0, 50.0];
        let e = [true, false, false, false, false];
        let km = kaplan_meier(&t, &e, 0.95).unwrap();
        let km = km.value().unwrap();
        assert_eq!(km.median.time, None);
        // S is exactly 0.5 from t = 2 to t = 4: median is the midpoint (R: 3).
        let t = [1.0, 2.0, 4.0, 5.0];
        let e = [true, true, true, true];
        let km = kaplan_meier(&t, &e, 0.95).unwrap();
        assert_eq!(km.value().unwrap().median.time, Some(3.0));
    }

    #[test]
    fn degenerate_survival() {
        let r = log_rank(&[1.0, 2.0], &[false, false], &[true, false], None).unwrap();
        assert!(r.reason().unwrap().contains("no events"));
        // No events in the control arm: the hazard ratio is not estimable.
        let t: Vec<f64> = (1..=20).map(f64::from).collect();
        let treated: Vec<bool> = (0..20).map(|i| i % 2 == 0).collect();
        let e = treated.clone();
        let c = cox_regression(&t, &e, &treated, &Adjustment::none(), None, 0.95).unwrap();
        assert!(c.reason().unwrap().contains("monotone"), "{c:?}");
        assert!(kaplan_meier(&[], &[], 0.95).unwrap().reason().is_some());
        assert!(kaplan_meier(&[-1.0], &[true], 0.95).is_err());
    }
}
