//! Statistics for the intention-to-treat analysis: values in, estimates out.
//!
//! This module is responsible for every number the analysis layer reports
//! about a trial's outcomes: proportions and their differences, regression
//! adjustment for the stratification factors, continuous outcomes, time to
//! first job, multiple imputation, the complier average causal effect,
//! subgroups and sample size. It does no I/O, keeps no state and never prints.
//!
//! Conventions shared by every estimator:
//!
//! - `treated[i] == true` means participant `i` was *allocated* to the
//!   intervention (IPS); differences are intervention minus control and
//!   ratios are intervention over control (ICH E9: analysed as allocated).
//! - Missing outcomes are `None`; estimators analyse the complete cases and
//!   report the numbers analysed per arm ([`ArmCounts`]).
//! - Risk differences are in percentage points.
//! - Degenerate data (an empty arm, no events, separation, zero variance...)
//!   give [`Estimable::NotEstimable`] with the reason, or an exact/corrected
//!   method labelled as such, never NaN, infinity or a panic. Caller mistakes
//!   (slices of different lengths, a confidence level outside (0, 1)) give a
//!   [`StatsError`].
//!
//! Every formula is checked against the R function named in its module docs;
//! the fixtures live in `tests/reference/` and are made by
//! `tests/reference/make_fixtures.R`.
//!
//! Code map: [`binary`] (2×2 tables), [`design`] (factors, covariates,
//! design matrices), [`logistic`] (adjusted odds ratio, standardised risk
//! difference), [`linear`] (ANCOVA), [`continuous`] (summaries, Welch),
//! [`survival`] (Kaplan–Meier, log-rank, Cox), [`imputation`] (Rubin's rules,
//! logreg/norm imputation), [`rng`] (variates from caller-supplied words),
//! [`cace`], [`subgroup`], [`power`]; `dist` holds distribution functions,
//! `gram` the regression cross-products and their Cholesky solve.

#![deny(missing_docs)]

pub mod binary;
pub mod cace;
pub mod continuous;
pub mod design;
mod dist;
mod gram;
pub mod imputation;
pub mod linear;
pub mod logistic;
pub mod power;
pub mod rng;
pub mod subgroup;
pub mod survival;

use serde::ser::{Serialize, SerializeMap, Serializer};

pub use dist::{noncentral_t_cdf, normal_quantile, t_quantile};

/// A caller mistake: the inputs cannot describe one trial.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StatsError {
    /// Two per-participant slices have different lengths.
    #[error("{what} has {got} values but there are {expected} participants")]
    LengthMismatch {
        /// Which input was the wrong length.
        what: String,
        /// The number of participants (length of `treated`).
        expected: usize,
        /// The length that was passed.
        got: usize,
    },
    /// A confidence level outside the open interval (0, 1).
    #[error("confidence level must be strictly between 0 and 1, got {0}")]
    InvalidLevel(f64),
    /// Any other invalid argument (for example a probability outside (0, 1)).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Result type of this module.
pub type Result<T, E = StatsError> = std::result::Result<T, E>;

/// An estimate, or the reason it cannot be estimated from these data.
///
/// Serialises as `{"status": "estimated", "value": ...}` or
/// `{"status": "not_estimable", "reason": "..."}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Estimable<T> {
    /// The estimate.
    Value(T),
    /// Why the data do not identify the estimate (for example
    /// "not estimable: no events in either arm").
    NotEstimable(String),
}

impl<T> Estimable<T> {
    /// A not-estimable value with a reason.
    pub fn not_estimable(reason: impl Into<String>) -> Self {
        Estimable::NotEstimable(reason.into())
    }

    /// The value, if estimated.
    pub fn value(&self) -> Option<&T> {
        match self {
            Estimable::Value(v) => Some(v),
            Estimable::NotEstimable(_) => None,
        }
    }

    /// The reason, if not estimable.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Estimable::Value(_) => None,
            Estimable::NotEstimable(r) => Some(r),
        }
    }

    /// True when a value was estimated.
    pub fn is_value(&self) -> bool {
        matches!(self, Estimable::Value(_))
    }

    /// Transforms the value, keeping the reason.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Estimable<U> {
        match self {
            Estimable::Value(v) => Estimable::Value(f(v)),
            Estimable::NotEstimable(r) => Estimable::NotEstimable(r),
        }
    }

    /// Chains another step that may itself be not estimable.
    pub fn and_then<U>(self, f: impl FnOnce(T) -> Estimable<U>) -> Estimable<U> {
        match self {
            Estimable::Value(v) => f(v),
            Estimable::NotEstimable(r) => Estimable::NotEstimable(r),
        }
    }

    /// Borrowing view.
    pub fn as_ref(&self) -> Estimable<&T> {
        match self {
            Estimable::Value(v) => Estimable::Value(v),
            Estimable::NotEstimable(r) => Estimable::NotEstimable(r.clone()),
        }
    }
}

impl<T: Serialize> Serialize for Estimable<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        match self {
            Estimable::Value(v) => {
                map.serialize_entry("status", "estimated")?;
                map.serialize_entry("value", v)?;
            }
            Estimable::NotEstimable(r) => {
                map.serialize_entry("status", "not_estimable")?;
                map.serialize_entry("reason", r)?;
            }
        }
        map.end()
    }
}

/// Numbers analysed in each arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ArmCounts {
    /// Participants analysed in the intervention arm.
    pub treated: usize,
    /// Participants analysed in the control arm.
    pub control: usize,
}

impl ArmCounts {
    /// Both arms together.
    pub fn total(&self) -> usize {
        self.treated + self.control
    }
}

/// One effect estimate with its confidence interval.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// What is estimated, e.g. "risk difference (percentage points)".
    pub measure: String,
    /// How, e.g. "Newcombe hybrid score (method 10)".
    pub method: String,
    /// The point estimate, on the scale named by `measure`.
    pub estimate: f64,
    /// Standard error on the scale the interval was built on (log scale for
    /// ratios), when the method has one.
    pub se: Option<f64>,
    /// Lower confidence limit.
    pub ci_low: f64,
    /// Upper confidence limit.
    pub ci_high: f64,
    /// Confidence level, e.g. 0.95.
    pub level: f64,
    /// Two-sided p-value for no effect, when the method gives one.
    pub p_value: Option<f64>,
    /// Degrees of freedom of a t reference distribution, if one was used.
    pub df: Option<f64>,
    /// Numbers analysed per arm.
    pub n: ArmCounts,
    /// A caveat the reader must see (e.g. a continuity correction).
    pub note: Option<String>,
}

/// A hypothesis test without an effect size.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TestResult {
    /// The test, e.g. "Pearson chi-square (chisq.test, correct = FALSE)".
    pub method: String,
    /// The test statistic, if the test has one (Fisher's exact test has not).
    pub statistic: Option<f64>,
    /// Degrees of freedom of the statistic's reference distribution.
    pub df: Option<f64>,
    /// The p-value.
    pub p_value: f64,
    /// Numbers analysed per arm.
    pub n: ArmCounts,
}

/// A regression coefficient.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Coefficient {
    /// Term name as R would print it (e.g. `sitedoncaster`).
    pub term: String,
    /// Estimate on the linear-predictor scale.
    pub estimate: f64,
    /// Standard error.
    pub se: f64,
    /// Wald z or t statistic.
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Lower confidence limit.
    pub ci_low: f64,
    /// Upper confidence limit.
    pub ci_high: f64,
}

/// Checks a confidence level and returns it.
pub(crate) fn check_level(level: f64) -> Result<f64> {
    if level > 0.0 && level < 1.0 { Ok(level) } else { Err(StatsError::InvalidLevel(level)) }
}

/// Checks that a per-participant slice has one value per participant.
pub(crate) fn check_len(what: &str, expected: usize, got: usize) -> Result<()> {
    if expected == got { Ok(()) } else { Err(StatsError::LengthMismatch { what: what.to_string(), expected, got }) }
}

/// True when every value is finite (the last guard before returning).
pub(crate) fn all_finite(values: &[f64]) -> bool {
    values.iter().all(|v| v.is_finite())
}

/// When the Newton-type iterations of the logistic (IRLS) and Cox fits stop.
///
/// Once the objective (deviance, partial likelihood) has settled, a few more
/// steps: at a true optimum they shrink to nothing (quadratic convergence);
/// where the estimate does not exist (separation, monotone likelihood) some
/// coefficient keeps moving by about one unit per step while the objective
/// creeps towards its limit. So the iterations stop once a step has shrunk to
/// nothing, or six steps after the objective settled.
pub(crate) struct Settling {
    converged: bool,
    extra: u32,
    last_step: f64,
}

impl Settling {
    pub(crate) fn new() -> Settling {
        Settling { converged: false, extra: 0, last_step: f64::INFINITY }
    }

    /// Records a step whose largest coefficient change was `step`, to `beta`;
    /// `settled` is whether the objective's relative change met the fit's
    /// tolerance. Returns whether to stop.
    pub(crate) fn stop(&mut self, step: f64, settled: bool, beta: &nalgebra::DVector<f64>) -> bool {
        let shrunk = step <= 1e-8 * (1.0 + beta.amax());
        if self.converged {
            self.extra += 1;
            self.last_step = step;
            shrunk || self.extra >= 6
        } else if settled {
            self.converged = true;
            self.last_step = step;
            shrunk
        } else {
            false
        }
    }

    /// Whether the objective settled.
    pub(crate) fn converged(&self) -> bool {
        self.converged
    }

    /// Whether the objective settled but the last step at `beta` was still
    /// large: a coefficient is infinite.
    pub(crate) fn still_moving(&self, beta: &nalgebra::DVector<f64>) -> bool {
        self.converged && self.last_step > 1e-4 * (1.0 + beta.amax())
    }
}

/// `f` over `items` on the thread pool (as many threads as there are
/// cores), results in the order of `items`: items are taken by whichever
/// thread is free, so a call made from a pool task shares the cores with the
/// tasks beside it instead of starting threads of its own.
pub(crate) fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
    use rayon::prelude::*;
    items.par_iter().map(f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_map_keeps_the_order_of_its_items() {
        let items: Vec<u64> = (0..37).collect();
        let out = parallel_map(&items, |&i| i * i + 1);
        assert_eq!(out, items.iter().map(|&i| i * i + 1).collect::<Vec<_>>());
        assert!(parallel_map(&[] as &[u64], |&i| i).is_empty());
    }

    #[test]
    fn estimable_serialises_with_a_status() {
        let v: Estimable<f64> = Estimable::Value(1.5);
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"status":"estimated","value":1.5}"#);
        let n: Estimable<f64> = Estimable::not_estimable("not estimable: no events");
        assert_eq!(
            serde_json::to_string(&n).unwrap(),
            r#"{"status":"not_estimable","reason":"not estimable: no events"}"#
        );
    }
}
