use super::*;
use chancery::stats::imputation::pool;
use std::collections::BTreeMap;

/// Per (model, term): estimates, variances and the complete-data df.
type Groups = BTreeMap<(String, String), (Vec<f64>, Vec<f64>, f64)>;

#[test]
fn pooling_matches_mice_pool() {
    let e = Expected::load();
    let (h, rows) = read_table("mi_estimates.csv");
    let j = |n: &str| h.iter().position(|x| x == n).unwrap();
    let mut groups = Groups::new();
    for r in &rows {
        let g = groups.entry((r[j("model")].clone(), r[j("term")].clone())).or_default();
        g.0.push(r[j("estimate")].parse().unwrap());
        g.1.push(r[j("variance")].parse().unwrap());
        g.2 = r[j("dfcom")].parse().unwrap();
    }
    assert_eq!(groups.len(), 18);
    for ((model, term), (q, u, dfcom)) in &groups {
        assert_eq!(q.len(), 20);
        let k = |s: &str| format!("{model}.{term}.{s}");
        assert_eq!(*dfcom, e.get(&k("dfcom")));
        let p = pool(q, u, Some(*dfcom), 0.95).unwrap();
        let p = p.value().unwrap();
        for (name, got) in [
            ("est", p.estimate),
            ("ubar", p.within),
            ("b", p.between),
            ("t", p.total),
            ("df", p.df),
            ("riv", p.riv),
            ("lambda", p.lambda),
            ("fmi", p.fmi),
            ("se", p.se),
            ("p", p.p_value),
            ("low", p.ci_low),
            ("high", p.ci_high),
        ] {
            close(&k(name), got, e.get(&k(name)), ITERATIVE);
        }
    }
    // pool.scalar(Q, U, n = 15, k = 3): the small-sample Barnard-Rubin case.
    let q = [0.61, 0.48, 0.72, 0.55, 0.66];
    let u = [0.040, 0.052, 0.047, 0.039, 0.044];
    let p = pool(&q, &u, Some(12.0), 0.95).unwrap();
    let p = p.value().unwrap();
    close("mi.scalar.est", p.estimate, e.get("mi.scalar.est"), CLOSED);
    close("mi.scalar.t", p.total, e.get("mi.scalar.t"), CLOSED);
    close("mi.scalar.df", p.df, e.get("mi.scalar.df"), CLOSED);
    close("mi.scalar.fmi", p.fmi, e.get("mi.scalar.fmi"), CLOSED);
    close("mi.scalar.b", p.between, e.get("mi.scalar.b"), CLOSED);
}
