//! Binary outcomes in two arms: proportions, absolute and relative effects,
//! and tests of no difference (CONSORT 17b: both absolute and relative
//! effects for binary outcomes).
//!
//! | Quantity | Method | R reference |
//! |---|---|---|
//! | per-arm proportion | Wilson score interval | `prop.test(x, n, correct = FALSE)$conf.int` |
//! | risk difference | Newcombe (1998) hybrid score, method 10 | formula from the two Wilson intervals |
//! | risk difference | Wald | `p1 - p0 ± z sqrt(p1 q1 / n1 + p0 q0 / n0)` |
//! | risk ratio | log-scale Wald (Katz et al. 1978) | formula |
//! | odds ratio | Woolf (1955) logit interval | formula |
//! | association | Pearson chi-square, with and without Yates | `chisq.test(correct = FALSE / TRUE)` |
//! | association | Fisher's exact test, two-sided | `fisher.test()$p.value` |
//!
//! Zero cells: when any cell of the 2×2 table is zero the risk ratio and odds
//! ratio use the Haldane–Anscombe correction (0.5 added to all four cells),
//! labelled in `method` and `note`. When neither arm has an event, or every
//! participant in both arms has one, the relative effects are not estimable.

use super::dist::{chisq_upper, normal_quantile, normal_two_sided_p};
use super::{ArmCounts, Estimable, Estimate, Result, TestResult, all_finite, check_len, check_level};
use statrs::function::gamma::ln_gamma;

/// Counts of a binary outcome in the two arms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TwoByTwo {
    /// Events in the intervention arm.
    pub treated_events: usize,
    /// Participants analysed in the intervention arm.
    pub treated_n: usize,
    /// Events in the control arm.
    pub control_events: usize,
    /// Participants analysed in the control arm.
    pub control_n: usize,
}

impl TwoByTwo {
    /// Counts from per-participant outcomes; missing outcomes are left out.
    pub fn from_outcomes(outcome: &[Option<bool>], treated: &[bool]) -> Result<TwoByTwo> {
        check_len("outcome", treated.len(), outcome.len())?;
        let mut t = TwoByTwo { treated_events: 0, treated_n: 0, control_events: 0, control_n: 0 };
        for (y, &arm) in outcome.iter().zip(treated) {
            if let Some(y) = *y {
                if arm {
                    t.treated_n += 1;
                    t.treated_events += usize::from(y);
                } else {
                    t.control_n += 1;
                    t.control_events += usize::from(y);
                }
            }
        }
        Ok(t)
    }

    /// The same table with the arms swapped.
    pub fn swapped(&self) -> TwoByTwo {
        TwoByTwo {
            treated_events: self.control_events,
            treated_n: self.control_n,
            control_events: self.treated_events,
            control_n: self.treated_n,
        }
    }

    /// Numbers analysed per arm.
    pub fn counts(&self) -> ArmCounts {
        ArmCounts { treated: self.treated_n, control: self.control_n }
    }

    fn check(&self) -> Result<()> {
        if self.treated_events > self.treated_n || self.control_events > self.control_n {
            return Err(super::StatsError::InvalidArgument("more events than participants in an arm".into()));
        }
        Ok(())
    }
}

/// One arm's proportion with its Wilson score interval.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ArmProportion {
    /// Participants analysed.
    pub n: usize,
    /// Participants with the event.
    pub events: usize,
    /// events / n.
    pub proportion: f64,
    /// 100 × proportion.
    pub percent: f64,
    /// Lower Wilson limit (proportion scale).
    pub ci_low: f64,
    /// Upper Wilson limit (proportion scale).
    pub ci_high: f64,
    /// Confidence level.
    pub level: f64,
    /// "Wilson score interval".
    pub method: String,
}

/// Wilson (1927) score interval without continuity correction, as R's
/// `prop.test(x, n, correct = FALSE)`.
pub fn wilson(events: usize, n: usize, level: f64) -> Result<Estimable<ArmProportion>> {
    let level = check_level(level)?;
    if events > n {
        return Err(super::StatsError::InvalidArgument("more events than participants".into()));
    }
    if n == 0 {
        return Ok(Estimable::not_estimable("not estimable: no participants analysed"));
    }
    let z = normal_quantile(0.5 + level / 2.0);
    let (lo, hi) = wilson_limits(events, n, z);
    let p = events as f64 / n as f64;
    Ok(Estimable::Value(ArmProportion {
        n,
        events,
        proportion: p,
        percent: 100.0 * p,
        ci_low: lo,
        ci_high: hi,
        level,
        method: "Wilson score interval".into(),
    }))
}

fn wilson_limits(events: usize, n: usize, z: f64) -> (f64, f64) {
    // prop.test (k = 1, YATES = 0): limits are 0 or 1 exactly at the boundary.
    let nf = n as f64;
    let p = events as f64 / nf;
    let z22n = z * z / (2.0 * nf);
    let half = z * (p * (1.0 - p) / nf + z22n / (2.0 * nf)).sqrt();
    let hi = if p >= 1.0 { 1.0 } else { (p + z22n + half) / (1.0 + 2.0 * z22n) };
    let lo = if p <= 0.0 { 0.0 } else { (p + z22n - half) / (1.0 + 2.0 * z22n) };
    (lo, hi)
}

/// Everything reported for a binary outcome in a two-arm trial.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BinaryComparison {
    /// The counts analysed.
    pub table: TwoByTwo,
    /// Intervention arm proportion.
    pub treated: Estimable<ArmProportion>,
    /// Control arm proportion.
    pub control: Estimable<ArmProportion>,
    /// Risk difference (percentage points), Newcombe hybrid score interval.
    pub risk_difference: Estimable<Estimate>,
    /// Risk difference (percentage points), Wald interval.
    pub risk_difference_wald: Estimable<Estimate>,
    /// Risk ratio, log-scale Wald interval.
    pub risk_ratio: Estimable<Estimate>,
    /// Odds ratio, Woolf interval.
    pub odds_ratio: Estimable<Estimate>,
    /// Pearson chi-square without continuity correction.
    pub chi_square: Estimable<TestResult>,
    /// Pearson chi-square with Yates' continuity correction (R's default).
    pub chi_square_yates: Estimable<TestResult>,
    /// Fisher's exact test, two-sided.
    pub fisher_exact: Estimable<TestResult>,
}

/// All binary-outcome estimates and tests for a 2×2 table.
pub fn compare_proportions(table: TwoByTwo, level: f64) -> Result<BinaryComparison> {
    let level = check_level(level)?;
    table.check()?;
    Ok(BinaryComparison {
        table,
        treated: wilson(table.treated_events, table.treated_n, level)?,
        control: wilson(table.control_events, table.control_n, level)?,
        risk_difference: risk_difference_newcombe(table, level),
        risk_difference_wald: risk_difference_wald(table, level),
        risk_ratio: relative_effect(table, level, Relative::Risk),
        odds_ratio: relative_effect(table, level, Relative::Odds),
        chi_square: chi_square(table, false),
        chi_square_yates: chi_square(table, true),
        fisher_exact: fisher_exact(table),
    })
}

/// [`compare_proportions`] from per-participant outcomes.
pub fn compare_outcomes(outcome: &[Option<bool>], treated: &[bool], level: f64) -> Result<BinaryComparison> {
    compare_proportions(TwoByTwo::from_outcomes(outcome, treated)?, level)
}

fn empty_arm(t: &TwoByTwo) -> Option<Estimable<Estimate>> {
    if t.treated_n == 0 || t.control_n == 0 {
        Some(Estimable::not_estimable("not estimable: an arm has no participants analysed"))
    } else {
        None
    }
}

/// Newcombe (1998) method 10: the hybrid score interval for p1 − p0 from the
/// two Wilson intervals (l1, u1), (l0, u0):
/// `[d − sqrt((p1 − l1)² + (u0 − p0)²), d + sqrt((u1 − p1)² + (p0 − l0)²)]`.
pub fn risk_difference_newcombe(t: TwoByTwo, level: f64) -> Estimable<Estimate> {
    if let Some(e) = empty_arm(&t) {
        return e;
    }
    let z = normal_quantile(0.5 + level / 2.0);
    let p1 = t.treated_events as f64 / t.treated_n as f64;
    let p0 = t.control_events as f64 / t.control_n as f64;
    let (l1, u1) = wilson_limits(t.treated_events, t.treated_n, z);
    let (l0, u0) = wilson_limits(t.control_events, t.control_n, z);
    let d = p1 - p0;
    let lo = d - ((p1 - l1).powi(2) + (u0 - p0).powi(2)).sqrt();
    let hi = d + ((u1 - p1).powi(2) + (p0 - l0).powi(2)).sqrt();
    Estimable::Value(Estimate {
        measure: "risk difference (percentage points)".into(),
        method: "Newcombe hybrid score interval (Newcombe 1998, method 10)".into(),
        estimate: 100.0 * d,
        se: None,
        ci_low: 100.0 * lo,
        ci_high: 100.0 * hi,
        level,
        p_value: None,
        df: None,
        n: t.counts(),
        note: None,
    })
}

/// Wald interval for p1 − p0 with a z-test p-value; not estimable when the
/// standard error is zero (every arm all or no events).
pub fn risk_difference_wald(t: TwoByTwo, level: f64) -> Estimable<Estimate> {
    if let Some(e) = empty_arm(&t) {
        return e;
    }
    let z = normal_quantile(0.5 + level / 2.0);
    let (n1, n0) = (t.treated_n as f64, t.control_n as f64);
    let p1 = t.treated_events as f64 / n1;
    let p0 = t.control_events as f64 / n0;
    let se = (p1 * (1.0 - p1) / n1 + p0 * (1.0 - p0) / n0).sqrt();
    if se <= 0.0 {
        return Estimable::not_estimable("not estimable: Wald standard error is zero (each arm has all or no events)");
    }
    let d = p1 - p0;
    Estimable::Value(Estimate {
        measure: "risk difference (percentage points)".into(),
        method: "Wald".into(),
        estimate: 100.0 * d,
        se: Some(100.0 * se),
        ci_low: 100.0 * (d - z * se),
        ci_high: 100.0 * (d + z * se),
        level,
        p_value: Some(normal_two_sided_p(d / se)),
        df: None,
        n: t.counts(),
        note: None,
    })
}

#[derive(Clone, Copy)]
enum Relative {
    Risk,
    Odds,
}

fn relative_effect(t: TwoByTwo, level: f64, which: Relative) -> Estimable<Estimate> {
    if let Some(e) = empty_arm(&t) {
        return e;
    }
    if t.treated_events == 0 && t.control_events == 0 {
        return Estimable::not_estimable("not estimable: no events in either arm");
    }
    if t.treated_events == t.treated_n && t.control_events == t.control_n {
        return Estimable::not_estimable("not estimable: every participant had the event");
    }
    let cells = [t.treated_events, t.treated_n - t.treated_events, t.control_events, t.control_n - t.control_events];
    let corrected = cells.contains(&0);
    let cc = if corrected { 0.5 } else { 0.0 };
    let [a, b, c, d] = cells.map(|x| x as f64 + cc);
    let z = normal_quantile(0.5 + level / 2.0);
    let (measure, method, est, se) = match which {
        // Katz et al. (1978): var(log RR) = 1/a − 1/(a+b) + 1/c − 1/(c+d).
        Relative::Risk => (
            "risk ratio",
            "log-scale Wald (Katz 1978)",
            (a / (a + b)) / (c / (c + d)),
            (1.0 / a - 1.0 / (a + b) + 1.0 / c - 1.0 / (c + d)).sqrt(),
        ),
        // Woolf (1955): var(log OR) = 1/a + 1/b + 1/c + 1/d.
        Relative::Odds => {
            ("odds ratio", "Woolf logit interval", a * d / (b * c), (1.0 / a + 1.0 / b + 1.0 / c + 1.0 / d).sqrt())
        }
    };
    let log = est.ln();
    let (lo, hi) = ((log - z * se).exp(), (log + z * se).exp());
    if se <= 0.0 || !all_finite(&[est, lo, hi]) {
        return Estimable::not_estimable(format!("not estimable: {measure} has no finite interval"));
    }
    Estimable::Value(Estimate {
        measure: measure.into(),
        method: if corrected { format!("{method}, Haldane-Anscombe 0.5 correction") } else { method.into() },
        estimate: est,
        se: Some(se),
        ci_low: lo,
        ci_high: hi,
        level,
        p_value: Some(normal_two_sided_p(log / se)),
        df: None,
        n: t.counts(),
        note: corrected.then(|| "a cell was zero: 0.5 added to every cell".to_string()),
    })
}

/// Pearson chi-square test of the 2×2 table (R `chisq.test`), with Yates'
/// correction `sum((|O − E| − min(0.5, |O − E|))² / E)` when `yates`.
pub fn chi_square(t: TwoByTwo, yates: bool) -> Estimable<TestResult> {
    let obs = [
        t.treated_events as f64,
        (t.treated_n - t.treated_events) as f64,
        t.control_events as f64,
        (t.control_n - t.control_events) as f64,
    ];
    let rows = [t.treated_n as f64, t.control_n as f64];
    let events = (t.treated_events + t.control_events) as f64;
    let total = rows[0] + rows[1];
    let cols = [events, total - events];
    if rows.contains(&0.0) || cols.contains(&0.0) {
        return Estimable::not_estimable("not estimable: an arm has no participants, or the outcome does not vary");
    }
    let expected =
        [rows[0] * cols[0] / total, rows[0] * cols[1] / total, rows[1] * cols[0] / total, rows[1] * cols[1] / total];
    let correction =
        if yates { obs.iter().zip(&expected).map(|(o, e)| (o - e).abs()).fold(0.5, f64::min) } else { 0.0 };
    let stat: f64 = obs.iter().zip(&expected).map(|(o, e)| ((o - e).abs() - correction).powi(2) / e).sum();
    Estimable::Value(TestResult {
        method: if yates {
            "Pearson chi-square with Yates' continuity correction".into()
        } else {
            "Pearson chi-square".into()
        },
        statistic: Some(stat),
        df: Some(1.0),
        p_value: chisq_upper(stat, 1.0),
        n: t.counts(),
    })
}

/// Fisher's exact test, two-sided, as R's `fisher.test`: the p-value sums the
/// hypergeometric probabilities of all tables no more likely than the one
/// observed, with R's relative tolerance `1 + 1e-7`.
pub fn fisher_exact(t: TwoByTwo) -> Estimable<TestResult> {
    if t.treated_n == 0 || t.control_n == 0 {
        return Estimable::not_estimable("not estimable: an arm has no participants analysed");
    }
    let m = t.treated_events + t.control_events; // column 1 total (events)
    let n = t.treated_n + t.control_n - m; // column 2 total
    let k = t.treated_n; // row 1 total
    let x = t.treated_events;
    let lo = k.saturating_sub(n);
    let hi = k.min(m);
    let lf = |i: usize| ln_gamma(i as f64 + 1.0);
    // log dhyper up to a constant: lchoose(m, i) + lchoose(n, k − i).
    let logd: Vec<f64> = (lo..=hi).map(|i| -lf(i) - lf(m - i) - lf(k - i) - lf(n + i - k)).collect();
    let max = logd.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let d: Vec<f64> = logd.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = d.iter().sum();
    let dx = d[x - lo];
    let p: f64 = d.iter().filter(|&&v| v <= dx * (1.0 + 1e-7)).sum::<f64>() / sum;
    Estimable::Value(TestResult {
        method: "Fisher's exact test (two-sided)".into(),
        statistic: None,
        df: None,
        p_value: p.min(1.0),
        n: t.counts(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(a: usize, n1: usize, c: usize, n0: usize) -> TwoByTwo {
        TwoByTwo { treated_events: a, treated_n: n1, control_events: c, control_n: n0 }
    }

    #[test]
    fn empty_arm_is_not_estimable() {
        let r = compare_proportions(table(0, 0, 3, 10), 0.95).unwrap();
        assert!(!r.treated.is_value());
        assert!(!r.risk_difference.is_value());
        assert!(!r.odds_ratio.is_value());
        assert!(!r.chi_square.is_value());
        assert!(!r.fisher_exact.is_value());
    }

    #[test]
    fn no_events_anywhere() {
        let r = compare_proportions(table(0, 25, 0, 30), 0.95).unwrap();
        assert_eq!(r.risk_difference.value().unwrap().estimate, 0.0);
        assert!(r.risk_ratio.reason().unwrap().contains("no events"));
        assert!(r.risk_difference_wald.reason().unwrap().contains("zero"));
        assert_eq!(r.fisher_exact.value().unwrap().p_value, 1.0);
    }

    #[test]
    fn invalid_inputs_are_errors() {
        assert!(compare_proportions(table(5, 4, 0, 3), 0.95).is_err());
        assert!(compare_proportions(table(1, 4, 0, 3), 1.0).is_err());
        assert!(TwoByTwo::from_outcomes(&[Some(true)], &[true, false]).is_err());
    }
}
