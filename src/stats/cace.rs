//! Complier average causal effect (CACE) of receiving IPS, with allocation
//! as the instrument (Angrist, Imbens & Rubin 1996; Dunn, Maracy & Tomenson
//! 2005 for trials).
//!
//! CACE = ITT risk difference / (take-up in the IPS arm − take-up in usual
//! care), the Wald (instrumental-variable) estimator. Assumptions: allocation
//! affects the outcome only through receipt (exclusion restriction), no
//! defiers (monotonicity), and allocation shifts take-up.
//!
//! The standard error is the heteroscedasticity-robust (HC0) sandwich of the
//! just-identified two-stage least squares fit `outcome ~ received` with
//! instrument `treated`: `V = (ZᵀX)⁻¹ Zᵀ diag(e²) Z (XᵀZ)⁻¹`, Z = (1, z),
//! X = (1, d), e the structural residuals (as `AER::ivreg` with
//! `sandwich::vcovHC(type = "HC0")`; the R reference computes the same
//! matrices in base R). The interval is Wald, in percentage points.

use super::dist::{normal_quantile, normal_two_sided_p};
use super::{ArmCounts, Estimable, Estimate, Result, all_finite, check_len, check_level};

/// The CACE with its ingredients.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ComplierEffect {
    /// ITT risk difference (percentage points) among those analysed.
    pub itt_risk_difference: f64,
    /// Proportion receiving the intervention in the intervention arm.
    pub take_up_treated: f64,
    /// Proportion receiving the intervention in the control arm.
    pub take_up_control: f64,
    /// The complier average causal effect (percentage points).
    pub cace: Estimate,
}

/// CACE for a binary outcome; `received[i]` says whether participant `i`
/// received the intervention (e.g. attended an IPS meeting). Participants
/// missing either the outcome or receipt are left out.
pub fn complier_average_effect(
    outcome: &[Option<bool>],
    received: &[Option<bool>],
    treated: &[bool],
    level: f64,
) -> Result<Estimable<ComplierEffect>> {
    let level = check_level(level)?;
    check_len("outcome", treated.len(), outcome.len())?;
    check_len("received", treated.len(), received.len())?;
    let rows: Vec<(f64, f64, f64)> = (0..treated.len())
        .filter_map(|i| {
            let (y, d) = (outcome[i]?, received[i]?);
            Some((f64::from(u8::from(y)), f64::from(u8::from(d)), f64::from(u8::from(treated[i]))))
        })
        .collect();
    let n1 = rows.iter().filter(|r| r.2 == 1.0).count();
    let n = ArmCounts { treated: n1, control: rows.len() - n1 };
    if n.treated == 0 || n.control == 0 {
        return Ok(Estimable::not_estimable("not estimable: an arm has no participants analysed"));
    }
    let mean = |arm: f64, f: &dyn Fn(&(f64, f64, f64)) -> f64| {
        let v: Vec<f64> = rows.iter().filter(|r| r.2 == arm).map(f).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let itt = mean(1.0, &|r| r.0) - mean(0.0, &|r| r.0);
    let (tu1, tu0) = (mean(1.0, &|r| r.1), mean(0.0, &|r| r.1));
    if (tu1 - tu0).abs() < 1e-12 {
        return Ok(Estimable::not_estimable(
            "not estimable: take-up is the same in both arms (allocation is not an instrument)",
        ));
    }
    // A = ZᵀX, b = Zᵀy for Z = (1, z), X = (1, d).
    let s = |f: &dyn Fn(&(f64, f64, f64)) -> f64| rows.iter().map(f).sum::<f64>();
    let a = [[rows.len() as f64, s(&|r| r.1)], [s(&|r| r.2), s(&|r| r.2 * r.1)]];
    let det = a[0][0] * a[1][1] - a[0][1] * a[1][0];
    let ainv = [[a[1][1] / det, -a[0][1] / det], [-a[1][0] / det, a[0][0] / det]];
    let zy = [s(&|r| r.0), s(&|r| r.2 * r.0)];
    let b0 = ainv[0][0] * zy[0] + ainv[0][1] * zy[1];
    let b1 = ainv[1][0] * zy[0] + ainv[1][1] * zy[1];
    let e2 = |r: &(f64, f64, f64)| (r.0 - b0 - b1 * r.1).powi(2);
    let m = [[s(&e2), s(&|r| r.2 * e2(r))], [s(&|r| r.2 * e2(r)), s(&|r| r.2 * e2(r))]];
    // V[1][1] = Σ_jk ainv[1][j] m[j][k] ainv[1][k].
    let mut v11 = 0.0;
    for j in 0..2 {
        for k in 0..2 {
            v11 += ainv[1][j] * m[j][k] * ainv[1][k];
        }
    }
    let se = v11.max(0.0).sqrt();
    if se.is_nan() || se <= 0.0 || !all_finite(&[b1, se]) {
        return Ok(Estimable::not_estimable("not estimable: the sandwich variance is zero"));
    }
    let z = normal_quantile(0.5 + level / 2.0);
    Ok(Estimable::Value(ComplierEffect {
        itt_risk_difference: 100.0 * itt,
        take_up_treated: tu1,
        take_up_control: tu0,
        cace: Estimate {
            measure: "complier average causal effect (percentage points)".into(),
            method: "instrumental variable (Wald) estimator, HC0 sandwich SE".into(),
            estimate: 100.0 * b1,
            se: Some(100.0 * se),
            ci_low: 100.0 * (b1 - z * se),
            ci_high: 100.0 * (b1 + z * se),
            level,
            p_value: Some(normal_two_sided_p(b1 / se)),
            df: None,
            n,
            note: None,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_take_up_is_not_estimable() {
        let y = [Some(true), Some(false), Some(true), Some(false)];
        let d = [Some(true), Some(false), Some(true), Some(false)];
        let r = complier_average_effect(&y, &d, &[true, true, false, false], 0.95).unwrap();
        assert!(r.reason().unwrap().contains("take-up"));
    }

    #[test]
    fn full_compliance_equals_itt() {
        let y = [Some(true), Some(false), Some(true), Some(false), Some(false), Some(true)];
        let t = [true, true, true, false, false, false];
        let d: Vec<Option<bool>> = t.iter().map(|&x| Some(x)).collect();
        let r = complier_average_effect(&y, &d, &t, 0.95).unwrap();
        let r = r.value().unwrap();
        assert!((r.cace.estimate - r.itt_risk_difference).abs() < 1e-12);
    }
}
