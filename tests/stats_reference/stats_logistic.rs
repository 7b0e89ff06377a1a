use super::*;
use chancery::stats::logistic::adjusted_binary;

fn check(e: &Expected, key: &str, y: &[Option<bool>], treated: &[bool], adj: &Adjustment) {
    let r = adjusted_binary(y, treated, adj, 0.95).unwrap();
    let fit = r.fit.value().unwrap_or_else(|| panic!("{key}: {:?}", r.fit.reason()));
    let k = |s: &str| format!("{key}.{s}");
    assert_eq!(fit.n.total() as f64, e.get(&k("n")));
    close(&k("deviance"), fit.deviance, e.get(&k("deviance")), ITERATIVE);
    close(&k("null_deviance"), fit.null_deviance, e.get(&k("null_deviance")), ITERATIVE);
    close(&k("aic"), fit.aic, e.get(&k("aic")), ITERATIVE);
    let mut seen = 0;
    for c in &fit.coefficients {
        let ck = |s: &str| format!("{key}.coef.{}.{s}", c.term);
        close(&ck("est"), c.estimate, e.get(&ck("est")), ITERATIVE);
        close(&ck("se"), c.se, e.get(&ck("se")), ITERATIVE);
        close(&ck("z"), c.statistic, e.get(&ck("z")), ITERATIVE);
        close(&ck("p"), c.p_value, e.get(&ck("p")), ITERATIVE);
        close(&ck("low"), c.ci_low, e.get(&ck("low")), ITERATIVE);
        close(&ck("high"), c.ci_high, e.get(&ck("high")), ITERATIVE);
        seen += 1;
    }
    let n_terms = e.0.keys().filter(|s| s.starts_with(&format!("{key}.coef.")) && s.ends_with(".est")).count();
    assert_eq!(seen, n_terms, "{key}: number of coefficients");
    let or = r.odds_ratio.value().unwrap();
    close(&k("or"), or.estimate.ln(), e.get(&k("coef.treated.est")), ITERATIVE);
    let rd = r.risk_difference.value().unwrap();
    close(&k("g.rd"), rd.estimate, e.get(&k("g.rd")), ITERATIVE);
    close(&k("g.se"), rd.se.unwrap(), e.get(&k("g.se")), ITERATIVE);
    close(&k("g.low"), rd.ci_low, e.get(&k("g.low")), ITERATIVE);
    close(&k("g.high"), rd.ci_high, e.get(&k("g.high")), ITERATIVE);
    close(&k("g.p"), rd.p_value.unwrap(), e.get(&k("g.p")), ITERATIVE);
    close(&k("g.risk1"), r.standardised_risk_treated.unwrap(), e.get(&k("g.risk1")), ITERATIVE);
    close(&k("g.risk0"), r.standardised_risk_control.unwrap(), e.get(&k("g.risk0")), ITERATIVE);
}

#[test]
fn logistic_regression_matches_glm() {
    let e = Expected::load();
    let d = Data::load("trial.csv");
    check(&e, "logit.trial.unadj", &d.work13, &d.treated, &Adjustment::none());
    check(&e, "logit.trial.adj", &d.work13, &d.treated, &d.strata());
    let mut cov = d.strata();
    cov.covariates = vec![d.covariate("age"), d.covariate("phq9_0")];
    check(&e, "logit.trial.cov", &d.work13, &d.treated, &cov);
    check(&e, "logit.trial.cc", &d.work13_obs, &d.treated, &d.strata());
    let s = Data::load("strong.csv");
    check(&e, "logit.strong.unadj", &s.work13, &s.treated, &Adjustment::none());
    check(&e, "logit.strong.adj", &s.work13, &s.treated, &s.strata());
    let o = Data::load("onearm.csv");
    let adj = Adjustment { factors: vec![o.factor("site"), o.factor("employment")], covariates: vec![] };
    check(&e, "logit.onearm.adj", &o.work13, &o.treated, &adj);
}

#[test]
fn stratum_adjustment_narrows_the_marginal_interval() {
    let s = Data::load("strong.csv");
    let un = adjusted_binary(&s.work13, &s.treated, &Adjustment::none(), 0.95).unwrap();
    let adj = adjusted_binary(&s.work13, &s.treated, &s.strata(), 0.95).unwrap();
    let w = |r: &chancery::stats::logistic::AdjustedBinary| {
        let v = r.risk_difference.value().unwrap();
        v.ci_high - v.ci_low
    };
    assert!(w(&adj) < 0.8 * w(&un));
}

#[test]
fn aliased_factor_is_reported_and_ignored() {
    let d = Data::load("trial.csv");
    let mut adj = d.strata();
    let copy = Factor { name: "employment_copy".into(), ..d.factor("employment") };
    adj.factors.push(copy);
    let r = adjusted_binary(&d.work13, &d.treated, &adj, 0.95).unwrap();
    let base = adjusted_binary(&d.work13, &d.treated, &d.strata(), 0.95).unwrap();
    let fit = r.fit.value().unwrap();
    assert_eq!(fit.aliased, ["employment_copyout_of_work"]);
    let a = r.odds_ratio.value().unwrap().estimate;
    let b = base.odds_ratio.value().unwrap().estimate;
    assert!((a - b).abs() < 1e-9 * b);
}

#[test]
fn separation_is_not_estimable() {
    let e = Expected::load();
    // R: glm warns "fitted probabilities numerically 0 or 1 occurred".
    assert!(e.get("logit.sep.fitted_min") < 1e-8);
    let (h, rows) = read_table("separation.csv");
    let j = |n: &str| h.iter().position(|x| x == n).unwrap();
    let treated: Vec<bool> = rows.iter().map(|r| &r[j("treated")] == "1").collect();
    let y: Vec<Option<bool>> = rows.iter().map(|r| Some(&r[j("work13")] == "1")).collect();
    let x: Vec<Option<f64>> = rows.iter().map(|r| Some(r[j("x")].parse().unwrap())).collect();
    let adj = Adjustment { factors: vec![], covariates: vec![Covariate::new("x", x)] };
    let r = adjusted_binary(&y, &treated, &adj, 0.95).unwrap();
    assert!(r.fit.reason().unwrap().contains("separation"), "{:?}", r.fit);
    assert!(!r.risk_difference.is_value());
    // Zero events in the control arm: quasi-complete separation on `treated`.
    let (h, rows) = read_table("zero.csv");
    let j = |n: &str| h.iter().position(|x| x == n).unwrap();
    let treated: Vec<bool> = rows.iter().map(|r| &r[j("treated")] == "1").collect();
    let y: Vec<Option<bool>> = rows.iter().map(|r| Some(&r[j("work13")] == "1")).collect();
    let r = adjusted_binary(&y, &treated, &Adjustment::none(), 0.95).unwrap();
    assert!(r.odds_ratio.reason().unwrap().contains("separation"));
    // All outcomes missing.
    let r = adjusted_binary(&[None; 4], &[true, false, true, false], &Adjustment::none(), 0.95).unwrap();
    assert!(!r.fit.is_value());
}
