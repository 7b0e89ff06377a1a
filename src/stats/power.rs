//! Sample size and power for two-arm trials, two-sided tests.
//!
//! - Two proportions: R's `power.prop.test` (default `strict = FALSE`: only
//!   the tail in the direction of the effect counts). With allocation ratio
//!   k (n₂ = k n₁) the normal-approximation formula generalises as
//!   `power = Φ((|p₁ − p₂| √n₁ − z_{α/2} √(p̄ q̄ (1 + 1/k))) / √(p₁ q₁ + p₂ q₂ / k))`
//!   with `p̄ = (p₁ + k p₂)/(1 + k)` (Fleiss, Levin & Paik 2003, §4.4); for
//!   k = 1 it is exactly R's formula, and the sample size is its closed-form
//!   solution (R solves the same equation numerically with `uniroot`).
//! - Two means: R's `power.t.test(type = "two.sample", strict = TRUE)`:
//!   `power = P(T′ > q) + P(T′ < −q)` with `q = qt(1 − α/2, ν)`,
//!   ν = n₁ + n₂ − 2 and T′ noncentral t with ncp `δ / (σ √(1/n₁ + 1/n₂))`,
//!   the noncentral t CDF by AS 243 ([`super::noncentral_t_cdf`]); the
//!   sample size by bisection to 1e-10 relative, as R's `uniroot` search on
//!   [2, 1e7].
//! - Attrition: sample sizes are divided by (1 − expected attrition) and
//!   rounded up per arm, so the number *analysed* meets the target.

use super::dist::{noncentral_t_cdf, normal_cdf, normal_quantile, t_quantile};
use super::{Result, StatsError};

/// What to solve for.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum Solve {
    /// The sample size giving this power.
    SampleSize {
        /// Target power, e.g. 0.9.
        power: f64,
    },
    /// The power with this many participants analysed in arm 1.
    Power {
        /// Participants analysed in arm 1 (arm 2 has k times as many).
        n1: f64,
    },
}

/// A two-proportion design (e.g. 30% vs 36% in paid work 13+ weeks).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TwoProportions {
    /// Proportion in arm 1.
    pub p1: f64,
    /// Proportion in arm 2.
    pub p2: f64,
    /// Two-sided significance level, e.g. 0.05.
    pub sig_level: f64,
    /// Allocation ratio k = n₂ / n₁ (1 for 1:1).
    pub allocation_ratio: f64,
    /// Expected proportion lost to follow-up, in [0, 1).
    pub attrition: f64,
}

/// A two-mean design (e.g. a 1.5-point PHQ-9 difference, SD 6).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TwoMeans {
    /// Difference in means to detect.
    pub delta: f64,
    /// Common standard deviation.
    pub sd: f64,
    /// Two-sided significance level.
    pub sig_level: f64,
    /// Allocation ratio k = n₂ / n₁.
    pub allocation_ratio: f64,
    /// Expected proportion lost to follow-up, in [0, 1).
    pub attrition: f64,
}

/// The result of a power or sample-size calculation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PowerCalculation {
    /// The method and the R function it matches.
    pub method: String,
    /// Participants analysed in arm 1 (fractional, as R reports it).
    pub n1: f64,
    /// Participants analysed in arm 2 (k n₁).
    pub n2: f64,
    /// Power.
    pub power: f64,
    /// Two-sided significance level.
    pub sig_level: f64,
    /// Arm 1 to recruit: ⌈n₁ / (1 − attrition)⌉.
    pub recruit1: u64,
    /// Arm 2 to recruit: ⌈n₂ / (1 − attrition)⌉.
    pub recruit2: u64,
}

fn invalid(msg: impl Into<String>) -> StatsError {
    StatsError::InvalidArgument(msg.into())
}

fn check_common(sig: f64, k: f64, attrition: f64, solve: Solve) -> Result<()> {
    if !(sig > 0.0 && sig < 1.0) {
        return Err(invalid(format!("significance level must be in (0, 1), got {sig}")));
    }
    if !(k > 0.0 && k.is_finite()) {
        return Err(invalid(format!("allocation ratio must be positive, got {k}")));
    }
    if !(0.0..1.0).contains(&attrition) {
        return Err(invalid(format!("attrition must be in [0, 1), got {attrition}")));
    }
    match solve {
        Solve::SampleSize { power } if !(power > sig / 2.0 && power < 1.0) => {
            Err(invalid(format!("target power must be in (α/2, 1), got {power}")))
        }
        Solve::Power { n1 } if !(n1 > 0.0 && n1.is_finite()) => Err(invalid(format!("n1 must be positive, got {n1}"))),
        _ => Ok(()),
    }
}

/// The most participants to recruit in one arm: beyond any trial, and far
/// below where the counts would overflow.
pub const MAX_PER_ARM: f64 = 1e7;

fn finish(method: &str, n1: f64, k: f64, power: f64, sig: f64, attrition: f64) -> Result<PowerCalculation> {
    let n2 = k * n1;
    let inflate = |n: f64| -> Result<u64> {
        let r = n / (1.0 - attrition);
        if r.is_nan() || r > MAX_PER_ARM {
            return Err(invalid(format!(
                "the design is not achievable: it needs {r:.3e} participants in an arm, more than the 10 million \
                 any trial could recruit; the difference to detect is too small for this power"
            )));
        }
        // Guard against 100.00000000001 rounding up to 101.
        let nearest = r.round();
        Ok(if (r - nearest).abs() < 1e-9 * r.max(1.0) { nearest as u64 } else { r.ceil() as u64 })
    };
    Ok(PowerCalculation {
        method: method.into(),
        n1,
        n2,
        power,
        sig_level: sig,
        recruit1: inflate(n1)?,
        recruit2: inflate(n2)?,
    })
}

/// Power or sample size for comparing two proportions (`power.prop.test`).
pub fn two_proportions(design: &TwoProportions, solve: Solve) -> Result<PowerCalculation> {
    let TwoProportions { p1, p2, sig_level, allocation_ratio: k, attrition } = *design;
    check_common(sig_level, k, attrition, solve)?;
    if !(p1 > 0.0 && p1 < 1.0 && p2 > 0.0 && p2 < 1.0) {
        return Err(invalid("proportions must be strictly between 0 and 1"));
    }
    if p1 == p2 {
        return Err(invalid("p1 and p2 are equal: there is no effect to detect"));
    }
    let za = normal_quantile(1.0 - sig_level / 2.0);
    let pbar = (p1 + k * p2) / (1.0 + k);
    let h0 = (pbar * (1.0 - pbar) * (1.0 + 1.0 / k)).sqrt();
    let h1 = (p1 * (1.0 - p1) + p2 * (1.0 - p2) / k).sqrt();
    let d = (p1 - p2).abs();
    let method = "two proportions, normal approximation (power.prop.test)";
    Ok(match solve {
        Solve::Power { n1 } => {
            let power = normal_cdf((d * n1.sqrt() - za * h0) / h1);
            finish(method, n1, k, power, sig_level, attrition)?
        }
        Solve::SampleSize { power } => {
            let zb = normal_quantile(power);
            let n1 = ((za * h0 + zb * h1) / d).powi(2);
            finish(method, n1, k, power, sig_level, attrition)?
        }
    })
}

fn t_power(n1: f64, k: f64, delta: f64, sd: f64, sig: f64) -> f64 {
    let n2 = k * n1;
    let df = n1 + n2 - 2.0;
    let ncp = delta.abs() / (sd * (1.0 / n1 + 1.0 / n2).sqrt());
    let q = t_quantile(1.0 - sig / 2.0, df);
    // strict = TRUE: both rejection regions.
    (1.0 - noncentral_t_cdf(q, df, ncp)) + noncentral_t_cdf(-q, df, ncp)
}

/// Power or sample size for comparing two means with a t-test
/// (`power.t.test(strict = TRUE)`).
pub fn two_means(design: &TwoMeans, solve: Solve) -> Result<PowerCalculation> {
    let TwoMeans { delta, sd, sig_level, allocation_ratio: k, attrition } = *design;
    check_common(sig_level, k, attrition, solve)?;
    if !(sd > 0.0 && sd.is_finite() && delta.is_finite()) || delta == 0.0 {
        return Err(invalid("delta must be non-zero and sd positive"));
    }
    let method = "two means, t-test (power.t.test, strict = TRUE)";
    let lo = 2.0 / (1.0 + k) + 1e-6;
    Ok(match solve {
        Solve::Power { n1 } => {
            if n1 * (1.0 + k) <= 2.0 {
                return Err(invalid("need more than two participants in total"));
            }
            finish(method, n1, k, t_power(n1, k, delta, sd, sig_level), sig_level, attrition)?
        }
        Solve::SampleSize { power } => {
            let lo = if (k - 1.0).abs() < 1e-12 { 2.0 } else { lo.max(1.0) };
            let f = |n: f64| t_power(n, k, delta, sd, sig_level) - power;
            if f(lo) >= 0.0 {
                return finish(method, lo, k, t_power(lo, k, delta, sd, sig_level), sig_level, attrition);
            }
            let mut hi = 1e7;
            if f(hi) < 0.0 {
                return Err(invalid("the target power needs more than 10 million per arm"));
            }
            let mut a = lo;
            for _ in 0..200 {
                let mid = 0.5 * (a + hi);
                if f(mid) < 0.0 {
                    a = mid
                } else {
                    hi = mid
                }
                if hi - a <= 1e-12 * hi {
                    break;
                }
            }
            let n1 = 0.5 * (a + hi);
            finish(method, n1, k, t_power(n1, k, delta, sd, sig_level), sig_level, attrition)?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrition_and_allocation() {
        let d = TwoProportions { p1: 0.3, p2: 0.36, sig_level: 0.05, allocation_ratio: 1.0, attrition: 0.2 };
        let r = two_proportions(&d, Solve::SampleSize { power: 0.9 }).unwrap();
        assert_eq!(r.recruit1, (r.n1 / 0.8).ceil() as u64);
        // Unequal allocation needs more participants in total.
        let d2 = TwoProportions { allocation_ratio: 2.0, ..d };
        let r2 = two_proportions(&d2, Solve::SampleSize { power: 0.9 }).unwrap();
        assert!(r2.n1 + r2.n2 > r.n1 + r.n2);
        // The solved n gives the target power back.
        let back = two_proportions(&d2, Solve::Power { n1: r2.n1 }).unwrap();
        assert!((back.power - 0.9).abs() < 1e-12);
        let m = TwoMeans { delta: 1.5, sd: 6.0, sig_level: 0.05, allocation_ratio: 1.5, attrition: 0.0 };
        let r = two_means(&m, Solve::SampleSize { power: 0.8 }).unwrap();
        let back = two_means(&m, Solve::Power { n1: r.n1 }).unwrap();
        assert!((back.power - 0.8).abs() < 1e-9);
        assert!(two_proportions(&TwoProportions { p2: 0.3, ..d }, Solve::Power { n1: 10.0 }).is_err());
    }

    // See: p1 = 0.5, p2 = 0.50000000001 printed "18446744073709551615 +
    // 18446744073709551615 = 18446744073709551614 in total" (saturating casts).
    #[test]
    fn a_design_no_trial_could_recruit_is_not_achievable() {
        let d = TwoProportions { p1: 0.5, p2: 0.50000000001, sig_level: 0.05, allocation_ratio: 1.0, attrition: 0.0 };
        let e = two_proportions(&d, Solve::SampleSize { power: 0.9 }).unwrap_err().to_string();
        assert!(e.contains("the design is not achievable") && e.contains("10 million"), "{e}");
        let m = TwoMeans { delta: 1e-9, sd: 1.0, sig_level: 0.05, allocation_ratio: 1.0, attrition: 0.0 };
        assert!(two_means(&m, Solve::Power { n1: 1e30 }).unwrap_err().to_string().contains("not achievable"));
        // Just under the limit is still answered.
        let d = TwoProportions { p1: 0.5, p2: 0.501, ..d };
        assert!(two_proportions(&d, Solve::SampleSize { power: 0.9 }).unwrap().recruit1 < 10_000_000);
    }
}
