use super::*;
use chancery::stats::continuous::{describe, quantile_type7, welch_t_test};
use chancery::stats::linear::ancova;

fn check(e: &Expected, key: &str, d: &Data, y: &[Option<f64>]) {
    let k = |s: &str| format!("{key}.{s}");
    let s = describe(y, &d.treated).unwrap();
    for (a, arm) in [(1, &s.treated), (0, &s.control)] {
        let v = arm.value().unwrap();
        let ak = |s: &str| format!("{key}.arm{a}.{s}");
        assert_eq!(v.n as f64, e.get(&ak("n")));
        close(&ak("mean"), v.mean, e.get(&ak("mean")), CLOSED);
        close(&ak("sd"), v.sd.unwrap(), e.get(&ak("sd")), CLOSED);
        close(&ak("q1"), v.q1, e.get(&ak("q1")), CLOSED);
        close(&ak("median"), v.median, e.get(&ak("median")), CLOSED);
        close(&ak("q3"), v.q3, e.get(&ak("q3")), CLOSED);
    }
    let w = welch_t_test(y, &d.treated, 0.95).unwrap();
    let w = w.value().unwrap();
    close(&k("welch.diff"), w.estimate, e.get(&k("welch.diff")), CLOSED);
    close(&k("welch.low"), w.ci_low, e.get(&k("welch.low")), CLOSED);
    close(&k("welch.high"), w.ci_high, e.get(&k("welch.high")), CLOSED);
    close(&k("welch.p"), w.p_value.unwrap(), e.get(&k("welch.p")), CLOSED);
    close(&k("welch.df"), w.df.unwrap(), e.get(&k("welch.df")), CLOSED);
    let base: Vec<Option<f64>> = d.phq9_0.iter().map(|&x| Some(x)).collect();
    let a = ancova(y, "phq9_0", &base, &d.treated, &d.strata(), 0.95).unwrap();
    let m = a.mean_difference.value().unwrap();
    close(&k("ancova.est"), m.estimate, e.get(&k("ancova.est")), CLOSED);
    close(&k("ancova.se"), m.se.unwrap(), e.get(&k("ancova.se")), CLOSED);
    close(&k("ancova.p"), m.p_value.unwrap(), e.get(&k("ancova.p")), CLOSED);
    close(&k("ancova.low"), m.ci_low, e.get(&k("ancova.low")), CLOSED);
    close(&k("ancova.high"), m.ci_high, e.get(&k("ancova.high")), CLOSED);
    assert_eq!(m.df.unwrap(), e.get(&k("ancova.df")));
    close(&k("ancova.sigma"), a.fit.value().unwrap().sigma, e.get(&k("ancova.sigma")), CLOSED);
}

#[test]
fn continuous_matches_t_test_and_lm() {
    let e = Expected::load();
    let d = Data::load("trial.csv");
    check(&e, "cont.trial", &d, &d.phq9_12);
    check(&e, "cont.trialcc", &d, &d.phq9_12_obs);
    let s = Data::load("strong.csv");
    check(&e, "cont.strong", &s, &s.phq9_12);
}

#[test]
fn quantile_type7_matches_r() {
    let e = Expected::load();
    let mut v = vec![3.5, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0];
    v.sort_by(f64::total_cmp);
    for (i, p) in [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0].iter().enumerate() {
        let key = format!("quantile.v{}", i + 1);
        close(&key, quantile_type7(&v, *p).unwrap(), e.get(&key), 1e-14);
    }
}
