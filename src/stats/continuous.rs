//! Continuous outcomes (PHQ-9, GAD-7, SWEMWBS, EQ-5D): descriptive summaries
//! by arm and the unadjusted Welch comparison.
//!
//! - Mean and SD (denominator n − 1); median and quartiles by R's default
//!   `quantile(type = 7)` (Hyndman & Fan 1996, definition 7).
//! - Welch (1947) two-sample t-test with Satterthwaite degrees of freedom, as
//!   R's `t.test(var.equal = FALSE)`.
//!
//! The adjusted analysis (ANCOVA) is in [`super::linear`].

use super::dist::{t_quantile, t_two_sided_p};
use super::{ArmCounts, Estimable, Estimate, Result, check_len, check_level};

/// Descriptive statistics for one arm.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ArmSummary {
    /// Participants with a value.
    pub n: usize,
    /// Participants in the arm without a value.
    pub missing: usize,
    /// Mean.
    pub mean: f64,
    /// Standard deviation (n − 1); `None` with fewer than two values.
    pub sd: Option<f64>,
    /// Median (type 7).
    pub median: f64,
    /// First quartile (type 7).
    pub q1: f64,
    /// Third quartile (type 7).
    pub q3: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
}

/// Summaries of both arms.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ContinuousSummary {
    /// Intervention arm.
    pub treated: Estimable<ArmSummary>,
    /// Control arm.
    pub control: Estimable<ArmSummary>,
}

/// Sample quantile by R's `quantile(type = 7)` of sorted data:
/// `h = (n − 1) p`, `x[⌊h⌋] + (h − ⌊h⌋)(x[⌊h⌋ + 1] − x[⌊h⌋])`.
/// Returns `None` for empty data or `p` outside [0, 1].
pub fn quantile_type7(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=1.0).contains(&p) {
        return None;
    }
    let h = (sorted.len() - 1) as f64 * p;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

fn summarise(values: &[f64], missing: usize) -> Estimable<ArmSummary> {
    if values.is_empty() {
        return Estimable::not_estimable("not estimable: no values in this arm");
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = (values.len() >= 2).then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    let q = |p| quantile_type7(&sorted, p).unwrap_or(f64::NAN);
    Estimable::Value(ArmSummary {
        n: values.len(),
        missing,
        mean,
        sd,
        median: q(0.5),
        q1: q(0.25),
        q3: q(0.75),
        min: sorted[0],
        max: sorted[sorted.len() - 1],
    })
}

fn split(outcome: &[Option<f64>], treated: &[bool]) -> (Vec<f64>, Vec<f64>, usize, usize) {
    let (mut t, mut c, mut mt, mut mc) = (Vec::new(), Vec::new(), 0, 0);
    for (v, &arm) in outcome.iter().zip(treated) {
        match (v.filter(|x| x.is_finite()), arm) {
            (Some(x), true) => t.push(x),
            (Some(x), false) => c.push(x),
            (None, true) => mt += 1,
            (None, false) => mc += 1,
        }
    }
    (t, c, mt, mc)
}

/// Mean (SD), median and IQR by arm; missing values (`None`, NaN) counted.
pub fn describe(outcome: &[Option<f64>], treated: &[bool]) -> Result<ContinuousSummary> {
    check_len("outcome", treated.len(), outcome.len())?;
    let (t, c, mt, mc) = split(outcome, treated);
    Ok(ContinuousSummary { treated: summarise(&t, mt), control: summarise(&c, mc) })
}

/// Welch's unequal-variance t-test of the difference in means
/// (intervention − control), as R's `t.test(x, y, var.equal = FALSE)`.
pub fn welch_t_test(outcome: &[Option<f64>], treated: &[bool], level: f64) -> Result<Estimable<Estimate>> {
    let level = check_level(level)?;
    check_len("outcome", treated.len(), outcome.len())?;
    let (t, c, _, _) = split(outcome, treated);
    let n = ArmCounts { treated: t.len(), control: c.len() };
    if t.len() < 2 || c.len() < 2 {
        return Ok(Estimable::not_estimable("not estimable: fewer than two values in an arm"));
    }
    let moments = |v: &[f64]| {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
        (m, var / v.len() as f64)
    };
    let (m1, s1) = moments(&t);
    let (m0, s0) = moments(&c);
    let se = (s1 + s0).sqrt();
    // R: stop("data are essentially constant") below this threshold.
    if se < 10.0 * f64::EPSILON * m1.abs().max(m0.abs()) || se == 0.0 {
        return Ok(Estimable::not_estimable("not estimable: the outcome has zero variance"));
    }
    // Welch–Satterthwaite degrees of freedom.
    let df = (s1 + s0).powi(2) / (s1 * s1 / (t.len() - 1) as f64 + s0 * s0 / (c.len() - 1) as f64);
    let d = m1 - m0;
    let stat = d / se;
    let q = t_quantile(0.5 + level / 2.0, df);
    Ok(Estimable::Value(Estimate {
        measure: "mean difference".into(),
        method: "Welch two-sample t-test".into(),
        estimate: d,
        se: Some(se),
        ci_low: d - q * se,
        ci_high: d + q * se,
        level,
        p_value: Some(t_two_sided_p(stat, df)),
        df: Some(df),
        n,
        note: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degenerate_welch() {
        let y = [Some(1.0), Some(2.0), Some(3.0)];
        let r = welch_t_test(&y, &[true, false, false], 0.95).unwrap();
        assert!(r.reason().unwrap().contains("fewer than two"));
        let y = [Some(1.0), Some(1.0), Some(1.0), Some(1.0)];
        let r = welch_t_test(&y, &[true, true, false, false], 0.95).unwrap();
        assert!(r.reason().unwrap().contains("zero variance"));
    }

    #[test]
    fn all_missing_arm() {
        let s = describe(&[None, Some(2.0)], &[true, false]).unwrap();
        assert!(!s.treated.is_value());
        assert_eq!(s.control.value().unwrap().sd, None);
    }
}
