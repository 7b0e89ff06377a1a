//! The intention-to-treat analysis end to end: a trial built through the
//! coordinators' commands, `chancery analyse`, and R's answers for the same
//! data (tests/reference/analysis/, made by make_expected.R).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::util::*;

fn reference(file: &str) -> String {
    std::fs::read_to_string(root().join("tests/reference/analysis").join(file)).unwrap()
}

fn expected() -> BTreeMap<String, f64> {
    reference("expected.csv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("key,"))
        .map(|l| {
            let (k, v) = l.split_once(',').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

fn close(what: &str, got: &Value, want: f64, tol: f64) {
    let got = got.as_f64().unwrap_or_else(|| panic!("{what}: {got}"));
    let rel = (got - want).abs() / want.abs().max(1e-300);
    assert!(rel <= tol, "{what}: got {got}, R says {want} (relative error {rel:e})");
}

fn stdout(args: &[&str], db: &Path) -> String {
    let out = chancery().args(args).arg("--db").arg(db).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The deterministic demonstration trial the R reference was computed from.
fn demo_trial(dir: &Path) -> std::path::PathBuf {
    chancery().args(["demo", "--participants", "1200", "--dir"]).arg(dir).assert().success();
    dir.join("trial.db")
}

fn analyse_json(db: &Path) -> Value {
    serde_json::from_str(&stdout(&["analyse", "--json"], db)).unwrap()
}

#[test]
fn the_analysis_agrees_with_r_on_the_same_trial() {
    let dir = tempfile::tempdir().unwrap();
    let db = demo_trial(&dir.path().join("t"));
    // The data R analysed are exactly this trial's exports.
    assert_eq!(stdout(&["export", "--what", "participants"], &db), reference("participants.csv"));
    assert_eq!(stdout(&["export", "--what", "outcomes"], &db), reference("outcomes.csv"));
    let a = analyse_json(&db);
    let r = expected();
    let p = &a["primary"];
    let u = &p["unadjusted"];
    assert_eq!(u["treated"]["value"]["n"].as_f64(), Some(r["primary.ips.n"]));
    assert_eq!(u["treated"]["value"]["events"].as_f64(), Some(r["primary.ips.events"]));
    assert_eq!(u["control"]["value"]["n"].as_f64(), Some(r["primary.usual_care.n"]));
    assert_eq!(u["control"]["value"]["events"].as_f64(), Some(r["primary.usual_care.events"]));
    close("Fisher p", &u["fisher_exact"]["value"]["p_value"], r["primary.fisher.p"], 1e-8);
    close("chi-square p", &u["chi_square"]["value"]["p_value"], r["primary.chisq.p"], 1e-8);
    let adj = &p["adjusted"];
    close("adjusted OR", &adj["odds_ratio"]["value"]["estimate"], r["primary.adj.or"], 1e-6);
    close("adjusted OR low", &adj["odds_ratio"]["value"]["ci_low"], r["primary.adj.or.low"], 1e-6);
    close("adjusted OR high", &adj["odds_ratio"]["value"]["ci_high"], r["primary.adj.or.high"], 1e-6);
    close("standardised RD", &adj["risk_difference"]["value"]["estimate"], r["primary.adj.rd"], 1e-6);
    close("standardised RD low", &adj["risk_difference"]["value"]["ci_low"], r["primary.adj.rd.low"], 1e-6);
    close("standardised RD high", &adj["risk_difference"]["value"]["ci_high"], r["primary.adj.rd.high"], 1e-6);
    let headline = p["headline"].as_str().unwrap();
    assert_eq!(
        headline,
        format!(
            "{:+.1} pp (95% CI {:.1} to {:.1})",
            r["primary.adj.rd"], r["primary.adj.rd.low"], r["primary.adj.rd.high"]
        )
    );

    let phq = a["continuous"].as_array().unwrap().iter().find(|c| c["outcome"] == "phq9").unwrap();
    close("PHQ-9 Welch", &phq["welch"]["value"]["estimate"], r["phq9.welch"], 1e-8);
    close("PHQ-9 Welch low", &phq["welch"]["value"]["ci_low"], r["phq9.welch.low"], 1e-8);
    close("PHQ-9 Welch high", &phq["welch"]["value"]["ci_high"], r["phq9.welch.high"], 1e-8);
    let anc = &phq["adjusted"]["mean_difference"]["value"];
    close("PHQ-9 ANCOVA", &anc["estimate"], r["phq9.ancova"], 1e-8);
    close("PHQ-9 ANCOVA low", &anc["ci_low"], r["phq9.ancova.low"], 1e-8);
    close("PHQ-9 ANCOVA high", &anc["ci_high"], r["phq9.ancova.high"], 1e-8);

    let t = &a["time_to_event"];
    assert_eq!(t["n"].as_f64(), Some(r["tte.n"]));
    let hr = &t["cox"]["value"]["hazard_ratio"]["value"];
    close("hazard ratio", &hr["estimate"], r["tte.hr"], 1e-6);
    close("hazard ratio low", &hr["ci_low"], r["tte.hr.low"], 1e-6);
    close("hazard ratio high", &hr["ci_high"], r["tte.hr.high"], 1e-6);
    close("log-rank p", &t["log_rank"]["value"]["test"]["p_value"], r["tte.logrank.p"], 1e-6);
}

#[test]
fn every_section_is_present_and_the_output_is_byte_identical_run_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = demo_trial(&dir.path().join("t"));
    let a = analyse_json(&db);
    for section in
        ["consort", "baseline", "primary", "continuous", "time_to_event", "subgroups", "missing_data", "cace"]
    {
        assert!(!a[section].is_null(), "{section} missing");
    }
    let c = &a["consort"];
    assert_eq!(
        c["screened"].as_u64().unwrap(),
        c["ineligible"].as_u64().unwrap() + c["declined"].as_u64().unwrap() + c["randomised"].as_u64().unwrap()
    );
    assert_eq!(a["missing_data"]["imputations"], 20);
    assert_eq!(a["missing_data"]["imputation"]["risk_difference"]["status"], "estimated");
    assert_eq!(a["cace"]["effect"]["status"], "estimated");
    let subgroups: Vec<&str> =
        a["subgroups"].as_array().unwrap().iter().map(|s| s["factor"].as_str().unwrap()).collect();
    assert_eq!(subgroups, ["employment_status", "condition", "region"]);
    let md = stdout(&["analyse"], &db);
    for heading in [
        "1. CONSORT",
        "2. Baseline",
        "3. Primary",
        "4. Continuous",
        "5. Time to first job",
        "6. Subgroups",
        "7. Missing",
        "8. Complier",
    ] {
        assert!(md.contains(heading), "{heading}");
    }
    assert!(md.contains(a["primary"]["headline"].as_str().unwrap()));

    let out1 = dir.path().join("o1");
    let out2 = dir.path().join("o2");
    chancery().args(["analyse", "--db"]).arg(&db).arg("--out").arg(&out1).assert().success();
    chancery().args(["analyse", "--db"]).arg(&db).arg("--out").arg(&out2).assert().success();
    for f in ["analysis.json", "estimates.csv", "consort.csv", "baseline.csv"] {
        let a = std::fs::read(out1.join(f)).unwrap();
        assert!(!a.is_empty(), "{f}");
        assert_eq!(a, std::fs::read(out2.join(f)).unwrap(), "{f} differs between runs");
    }
    let est = std::fs::read_to_string(out1.join("estimates.csv")).unwrap();
    assert!(est.starts_with(
        "section,outcome,measure,method,estimate,ci_low,ci_high,level,p_value,n_intervention,n_control,status\n"
    ));
    assert!(!est.contains("NaN") && !est.contains("inf"));
}

#[test]
fn thin_and_degenerate_data_give_labelled_results_not_nan_or_panics() {
    let dir = tempfile::tempdir().unwrap();
    // Three randomised participants, one with a 12-month outcome: nothing is estimable.
    let db = init(dir.path(), "work-health-ips.toml");
    for (i, p) in ["P1", "P2", "P3"].iter().enumerate() {
        let mut args = vec!["randomise".to_string(), "--db".into(), db.display().to_string()];
        args.extend(referral_args(p, "sheffield", &nhs(300 + i as u32), &[]));
        chancery().args(&args).assert().success();
    }
    chancery()
        .env("CHANCERY_NOW", "2027-03-10T10:00:00Z")
        .args(["outcome", "record", "--db"])
        .arg(&db)
        .args(["--participant", "P1", "--timepoint", "m12", "--on", "2027-03-01"])
        .args(["--set", "paid_work_13_weeks=no", "--set", "in_paid_work=no", "--set", "weeks_in_paid_work=0"])
        .assert()
        .success();
    let text = stdout(&["analyse", "--json"], &db);
    assert!(!text.contains("NaN") && !text.contains("Infinity"), "{text}");
    let a: Value = serde_json::from_str(&text).unwrap();
    let adj = &a["primary"]["adjusted"]["risk_difference"];
    assert_eq!(adj["status"], "not_estimable", "{adj}");
    assert!(adj["reason"].as_str().unwrap().starts_with("not estimable"), "{adj}");
    assert!(a["primary"]["headline"].as_str().unwrap().starts_with("not estimable"));
    let md = stdout(&["analyse"], &db);
    assert!(md.contains("not estimable"), "{md}");
    assert!(!md.contains("NaN"));
}

#[test]
fn swapping_the_arms_negates_the_risk_difference_and_inverts_the_odds_ratio() {
    // The same trial under a protocol that lists usual care first makes it the
    // "intervention": every difference changes sign, every ratio inverts.
    let dir = tempfile::tempdir().unwrap();
    let db = demo_trial(&dir.path().join("t"));
    let a = analyse_json(&db);
    let rd = a["primary"]["unadjusted"]["risk_difference_wald"]["value"]["estimate"].as_f64().unwrap();
    let or = a["primary"]["unadjusted"]["odds_ratio"]["value"]["estimate"].as_f64().unwrap();
    let mut d = chancery::ledger::Trial::open(&db).unwrap().dataset(chrono::NaiveDate::MAX).unwrap();
    d.protocol.arms.reverse();
    let b = chancery::analysis::analyse(&d).unwrap();
    let b = serde_json::to_value(&b).unwrap();
    let rd2 = b["primary"]["unadjusted"]["risk_difference_wald"]["value"]["estimate"].as_f64().unwrap();
    let or2 = b["primary"]["unadjusted"]["odds_ratio"]["value"]["estimate"].as_f64().unwrap();
    assert!((rd + rd2).abs() < 1e-9, "{rd} vs {rd2}");
    assert!((or * or2 - 1.0).abs() < 1e-9, "{or} vs {or2}");
    let adj = a["primary"]["adjusted"]["risk_difference"]["value"]["estimate"].as_f64().unwrap();
    let adj2 = b["primary"]["adjusted"]["risk_difference"]["value"]["estimate"].as_f64().unwrap();
    assert!((adj + adj2).abs() < 1e-6, "{adj} vs {adj2}");
}
