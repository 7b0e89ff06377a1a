//! Power and sample size against tests/reference/power/make_power.R: the
//! default protocol's assumptions, other significance levels, and unequal
//! allocation (which R's power functions do not take; see the script).

use super::*;
use chancery::stats::power::{Solve, TwoMeans, TwoProportions, two_means, two_proportions};

fn expected() -> Expected {
    Expected::load_file("tests/reference/power/expected.csv")
}

fn prop(p1: f64, p2: f64, sig_level: f64, allocation_ratio: f64) -> TwoProportions {
    TwoProportions { p1, p2, sig_level, allocation_ratio, attrition: 0.0 }
}

fn means(delta: f64, sd: f64, sig_level: f64, allocation_ratio: f64) -> TwoMeans {
    TwoMeans { delta, sd, sig_level, allocation_ratio, attrition: 0.0 }
}

#[test]
fn the_default_protocols_sample_size_matches_power_prop_test() {
    let e = expected();
    let r = two_proportions(&prop(0.29, 0.25, 0.05, 1.0), Solve::SampleSize { power: 0.9 }).unwrap();
    close("protocol.n", r.n1, e.get("protocol.n"), ITERATIVE);
    let r = two_proportions(&prop(0.29, 0.25, 0.05, 1.0), Solve::Power { n1: 2000.0 }).unwrap();
    close("protocol.power.n2000", r.power, e.get("protocol.power.n2000"), CLOSED);
    let r = two_proportions(&prop(0.5, 0.4, 0.1, 1.0), Solve::SampleSize { power: 0.8 }).unwrap();
    close("prop.n.p80.a10", r.n1, e.get("prop.n.p80.a10"), ITERATIVE);
}

#[test]
fn two_means_match_power_t_test_strict() {
    let e = expected();
    let r = two_means(&means(0.5, 1.0, 0.05, 1.0), Solve::SampleSize { power: 0.8 }).unwrap();
    close("t.n.d05", r.n1, e.get("t.n.d05"), ITERATIVE);
    let r = two_means(&means(3.0, 6.0, 0.01, 1.0), Solve::Power { n1: 30.0 }).unwrap();
    close("t.power.n30", r.power, e.get("t.power.n30"), CLOSED);
}

#[test]
fn unequal_allocation_matches_r() {
    let e = expected();
    let r = two_proportions(&prop(0.29, 0.25, 0.05, 2.0), Solve::Power { n1: 400.0 }).unwrap();
    close("prop.k2.power.n400", r.power, e.get("prop.k2.power.n400"), CLOSED);
    let r = two_proportions(&prop(0.29, 0.25, 0.05, 2.0), Solve::SampleSize { power: 0.9 }).unwrap();
    close("prop.k2.n", r.n1, e.get("prop.k2.n"), ITERATIVE);
    let r = two_proportions(&prop(0.29, 0.25, 0.05, 0.5), Solve::SampleSize { power: 0.9 }).unwrap();
    close("prop.k05.n", r.n1, e.get("prop.k05.n"), ITERATIVE);
    let r = two_means(&means(1.5, 6.0, 0.05, 2.0), Solve::Power { n1: 50.0 }).unwrap();
    close("t.k2.power.n50", r.power, e.get("t.k2.power.n50"), 1e-9);
    let r = two_means(&means(1.5, 6.0, 0.05, 2.0), Solve::SampleSize { power: 0.9 }).unwrap();
    close("t.k2.n", r.n1, e.get("t.k2.n"), ITERATIVE);
    let r = two_means(&means(1.5, 6.0, 0.05, 1.5), Solve::SampleSize { power: 0.8 }).unwrap();
    close("t.k15.n", r.n1, e.get("t.k15.n"), ITERATIVE);
}
