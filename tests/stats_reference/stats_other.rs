use super::*;
use chancery::stats::cace::complier_average_effect;
use chancery::stats::noncentral_t_cdf;
use chancery::stats::power::{Solve, TwoMeans, TwoProportions, two_means, two_proportions};
use chancery::stats::subgroup::subgroup_analysis;

#[test]
fn cace_matches_two_stage_least_squares_sandwich() {
    let e = Expected::load();
    for (key, file) in [("cace.trial", "trial.csv"), ("cace.strong", "strong.csv")] {
        let d = Data::load(file);
        let r = complier_average_effect(&d.work13, &d.takeup, &d.treated, 0.95).unwrap();
        let r = r.value().unwrap();
        let k = |s: &str| format!("{key}.{s}");
        close(&k("itt"), r.itt_risk_difference, e.get(&k("itt")), CLOSED);
        close(&k("takeup_diff"), r.take_up_treated - r.take_up_control, e.get(&k("takeup_diff")), CLOSED);
        close(&k("cace"), r.cace.estimate, e.get(&k("cace")), CLOSED);
        close(&k("se"), r.cace.se.unwrap(), e.get(&k("se")), CLOSED);
        close(&k("low"), r.cace.ci_low, e.get(&k("low")), CLOSED);
        close(&k("high"), r.cace.ci_high, e.get(&k("high")), CLOSED);
        close(&k("p"), r.cace.p_value.unwrap(), e.get(&k("p")), CLOSED);
    }
}

#[test]
fn subgroup_interaction_matches_anova_glm() {
    let e = Expected::load();
    for (key, file) in [("sub.trial", "trial.csv"), ("sub.strong", "strong.csv")] {
        let d = Data::load(file);
        let r = subgroup_analysis(&d.work13, &d.treated, &d.factor("condition"), 0.95).unwrap();
        let k = |s: &str| format!("{key}.{s}");
        assert_eq!(r.levels.len(), 3);
        let lr = r.interaction_lr.value().unwrap();
        close(&k("lr.chisq"), lr.statistic.unwrap(), e.get(&k("lr.chisq")), ITERATIVE);
        assert_eq!(lr.df.unwrap(), e.get(&k("lr.df")));
        close(&k("lr.p"), lr.p_value, e.get(&k("lr.p")), ITERATIVE);
        let w = r.interaction_wald.value().unwrap();
        close(&k("wald.chisq"), w.statistic.unwrap(), e.get(&k("wald.chisq")), ITERATIVE);
        close(&k("wald.p"), w.p_value, e.get(&k("wald.p")), ITERATIVE);
    }
}

#[test]
fn power_matches_power_prop_test_and_power_t_test() {
    let e = Expected::load();
    let prop = |p1, p2, sig| TwoProportions { p1, p2, sig_level: sig, allocation_ratio: 1.0, attrition: 0.0 };
    let r = two_proportions(&prop(0.3, 0.36, 0.05), Solve::SampleSize { power: 0.9 }).unwrap();
    close("power.prop.n", r.n1, e.get("power.prop.n"), ITERATIVE);
    let r = two_proportions(&prop(0.3, 0.36, 0.05), Solve::Power { n1: 500.0 }).unwrap();
    close("power.prop.power", r.power, e.get("power.prop.power"), CLOSED);
    let r = two_proportions(&prop(0.2, 0.4, 0.01), Solve::SampleSize { power: 0.8 }).unwrap();
    close("power.prop.n.a01", r.n1, e.get("power.prop.n.a01"), ITERATIVE);
    let means = |delta, sd| TwoMeans { delta, sd, sig_level: 0.05, allocation_ratio: 1.0, attrition: 0.0 };
    let r = two_means(&means(1.5, 6.0), Solve::SampleSize { power: 0.9 }).unwrap();
    close("power.t.n", r.n1, e.get("power.t.n"), ITERATIVE);
    let r = two_means(&means(1.5, 6.0), Solve::Power { n1: 100.0 }).unwrap();
    close("power.t.power", r.power, e.get("power.t.power"), CLOSED);
    let r = two_means(&means(1.0, 1.0), Solve::Power { n1: 4.0 }).unwrap();
    close("power.t.power.small", r.power, e.get("power.t.power.small"), CLOSED);
    let r = two_means(&means(0.1, 1.0), Solve::SampleSize { power: 0.8 }).unwrap();
    close("power.t.n.big", r.n1, e.get("power.t.n.big"), ITERATIVE);
}

#[test]
fn noncentral_t_matches_pt() {
    let e = Expected::load();
    for i in 1..=10 {
        let k = |s: &str| format!("nct.{i}.{s}");
        let got = noncentral_t_cdf(e.get(&k("q")), e.get(&k("df")), e.get(&k("ncp")));
        close(&k("cdf"), got, e.get(&k("cdf")), 1e-9);
    }
}
