use super::*;
use chancery::stats::survival::{cox_regression, kaplan_meier_by_arm, log_rank};

fn opt_close(what: &str, got: Option<f64>, want: Option<f64>, tol: f64) {
    match (got, want) {
        (Some(g), Some(w)) => close(what, g, w, tol),
        (None, None) => {}
        _ => panic!("{what}: got {got:?}, want {want:?}"),
    }
}

fn check(e: &Expected, key: &str, d: &Data) {
    let k = |s: &str| format!("{key}.{s}");
    let km = kaplan_meier_by_arm(&d.days, &d.job, &d.treated, 0.95).unwrap();
    for (a, curve) in [(1, &km.treated), (0, &km.control)] {
        let c = curve.value().unwrap();
        for t in [30, 122, 365] {
            let tk = |s: &str| format!("{key}.km{a}.t{t}.{s}");
            let s = c.at(f64::from(t));
            close(&tk("surv"), s.survival, e.get(&tk("surv")), CLOSED);
            close(&tk("se"), s.se, e.get(&tk("se")), CLOSED);
            close(&tk("low"), s.ci_low.unwrap(), e.get(&tk("low")), CLOSED);
            close(&tk("high"), s.ci_high.unwrap(), e.get(&tk("high")), CLOSED);
            assert_eq!(s.n_risk as f64, e.get(&tk("nrisk")), "{}", tk("nrisk"));
        }
        let ak = |s: &str| format!("{key}.km{a}.{s}");
        assert_eq!(c.events as f64, e.get(&ak("events")));
        opt_close(&ak("median"), c.median.time, e.opt(&ak("median")), CLOSED);
        opt_close(&ak("median.low"), c.median.ci_low, e.opt(&ak("median.low")), CLOSED);
        opt_close(&ak("median.high"), c.median.ci_high, e.opt(&ak("median.high")), CLOSED);
        let q = c.quantile(0.25);
        opt_close(&ak("q25"), q.time, e.opt(&ak("q25")), CLOSED);
        opt_close(&ak("q25.low"), q.ci_low, e.opt(&ak("q25.low")), CLOSED);
        opt_close(&ak("q25.high"), q.ci_high, e.opt(&ak("q25.high")), CLOSED);
    }
    let lr = log_rank(&d.days, &d.job, &d.treated, None).unwrap();
    let lr = lr.value().unwrap();
    close(&k("logrank.chisq"), lr.test.statistic.unwrap(), e.get(&k("logrank.chisq")), CLOSED);
    close(&k("logrank.p"), lr.test.p_value, e.get(&k("logrank.p")), CLOSED);
    close(&k("logrank.obs1"), lr.observed_treated, e.get(&k("logrank.obs1")), CLOSED);
    close(&k("logrank.exp1"), lr.expected_treated, e.get(&k("logrank.exp1")), CLOSED);
    let strata = Factor::interaction("strata", &[&d.factor("site"), &d.factor("employment")]).unwrap();
    let lrs = log_rank(&d.days, &d.job, &d.treated, Some(&strata)).unwrap();
    let lrs = lrs.value().unwrap();
    close(&k("logrank_strat.chisq"), lrs.test.statistic.unwrap(), e.get(&k("logrank_strat.chisq")), CLOSED);
    close(&k("logrank_strat.p"), lrs.test.p_value, e.get(&k("logrank_strat.p")), CLOSED);

    let cox_check = |ck: &str, adj: &Adjustment, strata: Option<&Factor>| {
        let ck = |s: &str| format!("{key}.{ck}.{s}");
        let fit = cox_regression(&d.days, &d.job, &d.treated, adj, strata, 0.95).unwrap();
        let fit = fit.value().unwrap_or_else(|| panic!("{}: {:?}", ck(""), fit.reason()));
        let c = fit.coefficient("treated").unwrap();
        close(&ck("coef"), c.estimate, e.get(&ck("coef")), ITERATIVE);
        close(&ck("se"), c.se, e.get(&ck("se")), ITERATIVE);
        close(&ck("p"), c.p_value, e.get(&ck("p")), ITERATIVE);
        let hr = fit.hazard_ratio.value().unwrap();
        close(&ck("hr"), hr.estimate, e.get(&ck("hr")), ITERATIVE);
        close(&ck("low"), hr.ci_low, e.get(&ck("low")), ITERATIVE);
        close(&ck("high"), hr.ci_high, e.get(&ck("high")), ITERATIVE);
        close(&ck("loglik0"), fit.loglik_null, e.get(&ck("loglik0")), ITERATIVE);
        close(&ck("loglik"), fit.loglik, e.get(&ck("loglik")), ITERATIVE);
        assert_eq!(fit.n.total() as f64, e.get(&ck("n")));
        assert_eq!(fit.events as f64, e.get(&ck("events")));
    };
    cox_check("cox", &Adjustment::none(), None);
    cox_check("cox_strat", &Adjustment::none(), Some(&strata));
    let adj = Adjustment { factors: vec![d.factor("condition")], covariates: vec![d.covariate("age")] };
    cox_check("cox_cov", &adj, Some(&d.factor("site")));
}

#[test]
fn survival_matches_survfit_survdiff_coxph() {
    let e = Expected::load();
    check(&e, "surv.trial", &Data::load("trial.csv"));
    check(&e, "surv.strong", &Data::load("strong.csv"));
    check(&e, "surv.onearm", &Data::load("onearm.csv"));
}
