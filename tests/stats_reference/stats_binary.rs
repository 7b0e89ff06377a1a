use super::*;
use chancery::stats::Estimable;
use chancery::stats::binary::{TwoByTwo, compare_outcomes, compare_proportions};

fn check_block(e: &Expected, key: &str, t: TwoByTwo) {
    let r = compare_proportions(t, 0.95).unwrap();
    let k = |s: &str| format!("{key}.{s}");
    let tr = r.treated.value().unwrap();
    let co = r.control.value().unwrap();
    close(&k("p1"), tr.proportion, e.get(&k("p1")), CLOSED);
    close(&k("wilson1.low"), tr.ci_low, e.get(&k("wilson1.low")), CLOSED);
    close(&k("wilson1.high"), tr.ci_high, e.get(&k("wilson1.high")), CLOSED);
    close(&k("wilson0.low"), co.ci_low, e.get(&k("wilson0.low")), CLOSED);
    close(&k("wilson0.high"), co.ci_high, e.get(&k("wilson0.high")), CLOSED);
    let rd = r.risk_difference.value().unwrap();
    close(&k("rd"), rd.estimate / 100.0, e.get(&k("rd")), CLOSED);
    close(&k("newcombe.low"), rd.ci_low / 100.0, e.get(&k("newcombe.low")), CLOSED);
    close(&k("newcombe.high"), rd.ci_high / 100.0, e.get(&k("newcombe.high")), CLOSED);
    match &r.risk_difference_wald {
        Estimable::Value(w) => {
            close(&k("wald.low"), w.ci_low / 100.0, e.get(&k("wald.low")), CLOSED);
            close(&k("wald.high"), w.ci_high / 100.0, e.get(&k("wald.high")), CLOSED);
        }
        Estimable::NotEstimable(_) => assert_eq!(e.get(&k("wald.low")), e.get(&k("wald.high"))),
    }
    if e.has(&k("rr")) {
        let rr = r.risk_ratio.value().unwrap();
        let or = r.odds_ratio.value().unwrap();
        for (name, got) in [
            ("rr", rr.estimate),
            ("rr.low", rr.ci_low),
            ("rr.high", rr.ci_high),
            ("or", or.estimate),
            ("or.low", or.ci_low),
            ("or.high", or.ci_high),
        ] {
            close(&k(name), got, e.get(&k(name)), CLOSED);
        }
        let cells =
            [t.treated_events, t.treated_n - t.treated_events, t.control_events, t.control_n - t.control_events];
        assert_eq!(rr.note.is_some(), cells.contains(&0), "{key}: Haldane label");
    } else {
        assert!(!r.risk_ratio.is_value() && !r.odds_ratio.is_value(), "{key}");
    }
    if e.has(&k("chisq")) {
        let c = r.chi_square.value().unwrap();
        close(&k("chisq"), c.statistic.unwrap(), e.get(&k("chisq")), CLOSED);
        close(&k("chisq.p"), c.p_value, e.get(&k("chisq.p")), CLOSED);
        let y = r.chi_square_yates.value().unwrap();
        close(&k("yates"), y.statistic.unwrap(), e.get(&k("yates")), CLOSED);
        close(&k("yates.p"), y.p_value, e.get(&k("yates.p")), CLOSED);
    } else {
        assert!(!r.chi_square.is_value(), "{key}");
    }
    close(&k("fisher.p"), r.fisher_exact.value().unwrap().p_value, e.get(&k("fisher.p")), CLOSED);
}

#[test]
fn binary_two_by_two_matches_r() {
    let e = Expected::load();
    let tab = |a, n1, c, n0| TwoByTwo { treated_events: a, treated_n: n1, control_events: c, control_n: n0 };
    check_block(&e, "bin.zero", tab(8, 20, 0, 20));
    check_block(&e, "bin.all", tab(30, 30, 25, 31));
    check_block(&e, "bin.none", tab(0, 25, 0, 30));
    check_block(&e, "bin.tiny", tab(1, 1, 0, 1));
    check_block(&e, "bin.small", tab(3, 7, 6, 8));
    check_block(&e, "bin.large", tab(21034, 50000, 20011, 50000));
    let d = Data::load("trial.csv");
    let t = TwoByTwo::from_outcomes(&d.work13, &d.treated).unwrap();
    check_block(&e, "bin.trial", t);
    let r = compare_outcomes(&d.work13, &d.treated, 0.95).unwrap();
    assert_eq!(r.table, t);
}
