//! Properties of chancery's statistics that hold for any data: symmetry
//! under swapping arms, intervals containing their estimates, reproducible
//! imputation, sensible coverage, and speed on 100,000 participants.

use chancery::stats::Estimable;
use chancery::stats::binary::{TwoByTwo, compare_proportions};
use chancery::stats::continuous::welch_t_test;
use chancery::stats::design::{Adjustment, Covariate, Factor};
use chancery::stats::imputation::{impute_and_analyse_binary, impute_and_analyse_continuous, impute_binary, pool};
use chancery::stats::logistic::adjusted_binary;
use chancery::stats::survival::{cox_regression, kaplan_meier_by_arm, log_rank};
use proptest::prelude::*;

/// splitmix32-style word source for tests (the crate takes any words).
fn words(seed: u64) -> impl FnMut() -> u32 {
    let mut s = seed;
    move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 32) as u32
    }
}

fn unif(w: &mut impl FnMut() -> u32) -> f64 {
    f64::from(w()) / 4_294_967_296.0
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn swapping_arms_negates_rd_and_inverts_ratios(n1 in 1usize..60, n0 in 1usize..60, a in 0usize..60, c in 0usize..60) {
        let t = TwoByTwo { treated_events: a.min(n1), treated_n: n1, control_events: c.min(n0), control_n: n0 };
        let r = compare_proportions(t, 0.95).unwrap();
        let s = compare_proportions(t.swapped(), 0.95).unwrap();
        let (rd, sd) = (r.risk_difference.value().unwrap(), s.risk_difference.value().unwrap());
        prop_assert!((rd.estimate + sd.estimate).abs() < 1e-9);
        prop_assert!((rd.ci_low + sd.ci_high).abs() < 1e-9 && (rd.ci_high + sd.ci_low).abs() < 1e-9);
        for (x, y) in [(&r.risk_ratio, &s.risk_ratio), (&r.odds_ratio, &s.odds_ratio)] {
            match (x, y) {
                (Estimable::Value(x), Estimable::Value(y)) => {
                    prop_assert!((x.estimate * y.estimate - 1.0).abs() < 1e-9);
                    prop_assert!((x.ci_low * y.ci_high - 1.0).abs() < 1e-9);
                }
                (Estimable::NotEstimable(_), Estimable::NotEstimable(_)) => {}
                _ => prop_assert!(false, "asymmetric estimability"),
            }
        }
        if let (Some(p), Some(q)) = (r.fisher_exact.value(), s.fisher_exact.value()) {
            prop_assert!((p.p_value - q.p_value).abs() < 1e-9);
        }
    }

    #[test]
    fn intervals_contain_estimates_and_everything_is_finite(n1 in 0usize..80, n0 in 0usize..80, a in 0usize..80, c in 0usize..80) {
        let t = TwoByTwo { treated_events: a.min(n1), treated_n: n1, control_events: c.min(n0), control_n: n0 };
        let r = compare_proportions(t, 0.9).unwrap();
        for e in [&r.risk_difference, &r.risk_difference_wald, &r.risk_ratio, &r.odds_ratio].into_iter().filter_map(|e| e.value()) {
            prop_assert!(e.ci_low <= e.estimate + 1e-12 && e.estimate <= e.ci_high + 1e-12);
            prop_assert!(e.estimate.is_finite() && e.ci_low.is_finite() && e.ci_high.is_finite());
        }
        for p in [&r.treated, &r.control].into_iter().filter_map(|e| e.value()) {
            prop_assert!(p.ci_low <= p.proportion && p.proportion <= p.ci_high);
            prop_assert!(p.ci_low >= 0.0 && p.ci_high <= 1.0);
        }
        for test in [&r.chi_square, &r.chi_square_yates, &r.fisher_exact].into_iter().filter_map(|e| e.value()) {
            prop_assert!((0.0..=1.0).contains(&test.p_value));
        }
    }

    #[test]
    fn welch_is_antisymmetric(values in proptest::collection::vec(-50.0f64..50.0, 4..40)) {
        let treated: Vec<bool> = (0..values.len()).map(|i| i % 2 == 0).collect();
        let swapped: Vec<bool> = treated.iter().map(|t| !t).collect();
        let y: Vec<Option<f64>> = values.iter().map(|&v| Some(v)).collect();
        let a = welch_t_test(&y, &treated, 0.95).unwrap();
        let b = welch_t_test(&y, &swapped, 0.95).unwrap();
        if let (Some(a), Some(b)) = (a.value(), b.value()) {
            prop_assert!((a.estimate + b.estimate).abs() < 1e-9);
            prop_assert!((a.p_value.unwrap() - b.p_value.unwrap()).abs() < 1e-9);
            prop_assert!(a.ci_low <= a.estimate && a.estimate <= a.ci_high);
        }
    }

    #[test]
    fn pooling_without_between_variance_keeps_the_estimate(q in -5.0f64..5.0, u in 0.001f64..2.0, m in 2usize..30) {
        let p = pool(&vec![q; m], &vec![u; m], Some(100.0), 0.95).unwrap();
        let p = p.value().unwrap();
        prop_assert!((p.estimate - q).abs() < 1e-12 && (p.total - u).abs() < 1e-12);
        prop_assert!(p.ci_low < q && q < p.ci_high);
    }
}

/// A simulated trial: 2 sites, outcome MAR given site and baseline.
struct Sim {
    treated: Vec<bool>,
    adj: Adjustment,
    y: Vec<Option<bool>>,
    y_cont: Vec<Option<f64>>,
    true_rd: f64,
}

fn simulate(n: usize, seed: u64, missing: bool) -> Sim {
    let mut w = words(seed);
    let mut treated = Vec::new();
    let mut site = Vec::new();
    let mut base = Vec::new();
    let mut y = Vec::new();
    let mut yc = Vec::new();
    let expit = |x: f64| 1.0 / (1.0 + (-x).exp());
    for i in 0..n {
        let t = i % 2 == 0;
        let s = unif(&mut w) < 0.5;
        let b = if unif(&mut w) < 0.5 { 1.0 } else { 0.0 };
        let p = expit(-0.5 + 0.5 * f64::from(u8::from(t)) + 1.0 * f64::from(u8::from(s)) - 0.8 * b);
        let outcome = unif(&mut w) < p;
        let cont = 10.0 + 2.0 * f64::from(u8::from(t)) + 3.0 * b + 4.0 * (unif(&mut w) - 0.5) * 3.0;
        // MAR: missingness depends on site and baseline, not on the outcome.
        let pm = if missing { 0.1 + 0.3 * b + 0.1 * f64::from(u8::from(s)) } else { 0.0 };
        let miss = unif(&mut w) < pm;
        treated.push(t);
        site.push(Some(if s { "b" } else { "a" }));
        base.push(Some(b));
        y.push((!miss).then_some(outcome));
        yc.push((!miss).then_some(cont));
    }
    // True marginal RD: sites and baseline each 50/50 and independent.
    let mut true_rd = 0.0;
    for s in [0.0, 1.0] {
        for b in [0.0, 1.0] {
            true_rd += 0.25 * (expit(0.0 + s - 0.8 * b) - expit(-0.5 + s - 0.8 * b));
        }
    }
    let adj = Adjustment {
        factors: vec![Factor::from_labels("site", &site)],
        covariates: vec![Covariate::new("base", base)],
    };
    Sim { treated, adj, y, y_cont: yc, true_rd: 100.0 * true_rd }
}

#[test]
fn imputation_is_reproducible() {
    let s = simulate(300, 1, true);
    let a = impute_binary(&s.y, &s.treated, &s.adj, 20, &mut words(42)).unwrap();
    let b = impute_binary(&s.y, &s.treated, &s.adj, 20, &mut words(42)).unwrap();
    let c = impute_binary(&s.y, &s.treated, &s.adj, 20, &mut words(43)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    let a = impute_and_analyse_continuous(&s.y_cont, &s.treated, &s.adj, 20, 0.95, &mut words(7)).unwrap();
    let b = impute_and_analyse_continuous(&s.y_cont, &s.treated, &s.adj, 20, 0.95, &mut words(7)).unwrap();
    assert_eq!(a, b);
    // Observed values are never changed.
    if let Estimable::Value(sets) = impute_binary(&s.y, &s.treated, &s.adj, 3, &mut words(1)).unwrap() {
        for set in sets {
            for (imp, obs) in set.iter().zip(&s.y) {
                if let Some(o) = obs {
                    assert_eq!(imp, o);
                }
            }
        }
    }
}

#[test]
fn no_missing_data_equals_the_complete_case_fit() {
    let s = simulate(400, 2, false);
    let mi = impute_and_analyse_binary(&s.y, &s.treated, &s.adj, 20, 0.95, &mut words(3)).unwrap();
    let cc = adjusted_binary(&s.y, &s.treated, &s.adj, 0.95).unwrap();
    let (p, c) = (mi.risk_difference.value().unwrap(), cc.risk_difference.value().unwrap());
    assert!((p.estimate - c.estimate).abs() < 1e-10);
    assert!((p.se - c.se.unwrap()).abs() < 1e-10);
    assert!(p.between < 1e-20);
    assert_eq!(mi.n_imputed.total(), 0);
}

#[test]
fn imputation_covers_the_true_effect_under_mar() {
    let (mut covered, mut covered_c, reps) = (0, 0, 60);
    for rep in 0..reps {
        let s = simulate(400, 100 + rep, true);
        let mi = impute_and_analyse_binary(&s.y, &s.treated, &s.adj, 20, 0.95, &mut words(rep)).unwrap();
        let p = mi.risk_difference.value().unwrap();
        assert!(p.fmi > 0.0 && p.fmi < 1.0);
        if p.ci_low <= s.true_rd && s.true_rd <= p.ci_high {
            covered += 1;
        }
        let mut adj = s.adj.clone();
        adj.covariates[0].name = "base".into();
        let mc = impute_and_analyse_continuous(&s.y_cont, &s.treated, &adj, 20, 0.95, &mut words(rep + 1000)).unwrap();
        let m = mc.mean_difference.value().unwrap();
        if m.ci_low <= 2.0 && 2.0 <= m.ci_high {
            covered_c += 1;
        }
    }
    // Nominal 95%: with 60 replicates, fewer than 51 covered would be
    // a sign of bias or too-narrow intervals (binomial P < 0.005).
    assert!(covered >= 51, "binary coverage {covered}/{reps}");
    assert!(covered_c >= 51, "continuous coverage {covered_c}/{reps}");
}

#[test]
fn all_outcomes_missing_is_not_estimable() {
    let s = simulate(50, 4, false);
    let none = vec![None; 50];
    let r = impute_and_analyse_binary(&none, &s.treated, &s.adj, 20, 0.95, &mut words(1)).unwrap();
    assert!(!r.risk_difference.is_value());
}

/// At 100,000 participants every estimator still gives an answer, and the
/// answer is the simulated truth (risk difference 4 percentage points, no effect on time to a
/// job). How long it takes is measured in benches/analyse.rs, not here.
#[test]
fn hundred_thousand_participants_are_estimated_near_the_truth() {
    let n = 100_000;
    let mut w = words(9);
    let treated: Vec<bool> = (0..n).map(|i| i % 2 == 0).collect();
    let site: Vec<Option<String>> = (0..n).map(|_| Some(format!("s{}", (unif(&mut w) * 8.0) as u32))).collect();
    let emp: Vec<Option<&str>> = (0..n).map(|_| Some(if unif(&mut w) < 0.3 { "in" } else { "out" })).collect();
    let y: Vec<Option<bool>> = (0..n).map(|i| Some(unif(&mut w) < if treated[i] { 0.34 } else { 0.3 })).collect();
    let days: Vec<f64> = (0..n).map(|_| (unif(&mut w) * 365.0).ceil()).collect();
    let job: Vec<bool> = (0..n).map(|_| unif(&mut w) < 0.6).collect();
    let adj = Adjustment {
        factors: vec![Factor::from_labels("site", &site), Factor::from_labels("employment", &emp)],
        covariates: vec![],
    };
    // Risk differences are in percentage points. The standard error of a
    // difference of two proportions near 0.3 with 50,000 a side is about 0.3
    // points; four of them is far beyond chance.
    let unadjusted = compare_proportions(TwoByTwo::from_outcomes(&y, &treated).unwrap(), 0.95).unwrap();
    let rd = unadjusted.risk_difference.value().expect("estimable").estimate;
    assert!((rd - 4.0).abs() < 1.2, "unadjusted risk difference {rd}");
    let a = adjusted_binary(&y, &treated, &adj, 0.95).unwrap();
    let adjusted = a.risk_difference.value().expect("estimable").estimate;
    assert!((adjusted - 4.0).abs() < 1.2, "adjusted risk difference {adjusted}");
    let _ = kaplan_meier_by_arm(&days, &job, &treated, 0.95).unwrap();
    let _ = log_rank(&days, &job, &treated, Some(&adj.factors[0])).unwrap();
    // Time to a job does not depend on the arm: the hazard ratio is near 1.
    let c = cox_regression(&days, &job, &treated, &Adjustment::none(), Some(&adj.factors[0]), 0.95).unwrap();
    let hr = c.value().expect("estimable").hazard_ratio.value().expect("estimable").estimate;
    assert!((hr - 1.0).abs() < 0.05, "hazard ratio {hr}");
}
