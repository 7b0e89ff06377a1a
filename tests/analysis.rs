//! The intention-to-treat analysis end to end: a trial built through the
//! coordinators' commands, `chancery analyse`, and R's answers for the same
//! data (tests/reference/analysis/, made by make_expected.R).

use std::collections::BTreeMap;
use std::path::Path;

use chancery::analysis::{Analysis, analyse, markdown, write_tables};
use chancery::dataset::{Dataset, OutcomeValue, Outcomes, ParticipantRecord, ParticipantStatus, ReferralRecord};
use chancery::stats::Estimable;
use chrono::{Duration, NaiveDate};
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

    // Unadjusted effects of the primary outcome (closed forms: 1e-8).
    for (json, key) in
        [("risk_difference", "primary.newcombe"), ("risk_ratio", "primary.rr"), ("odds_ratio", "primary.or")]
    {
        let e = &u[json]["value"];
        close(key, &e["estimate"], r[key], 1e-8);
        close(key, &e["ci_low"], r[&format!("{key}.low")], 1e-8);
        close(key, &e["ci_high"], r[&format!("{key}.high")], 1e-8);
    }
    close("Wald low", &u["risk_difference_wald"]["value"]["ci_low"], r["primary.wald.low"], 1e-8);
    close("Wald high", &u["risk_difference_wald"]["value"]["ci_high"], r["primary.wald.high"], 1e-8);

    // Every continuous outcome: Welch and the adjusted (ANCOVA) mean difference.
    let continuous = a["continuous"].as_array().unwrap();
    let names: Vec<&str> = continuous.iter().map(|c| c["outcome"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["weeks_in_paid_work", "earnings_monthly", "sickness_absence_days", "phq9", "gad7", "swemwbs", "eq5d"]
    );
    for c in continuous {
        let o = c["outcome"].as_str().unwrap();
        for (json, key) in [
            (&c["welch"]["value"], format!("{o}.welch")),
            (&c["adjusted"]["mean_difference"]["value"], format!("{o}.adjusted")),
        ] {
            close(&key, &json["estimate"], r[&key], 1e-8);
            close(&key, &json["ci_low"], r[&format!("{key}.low")], 1e-8);
            close(&key, &json["ci_high"], r[&format!("{key}.high")], 1e-8);
        }
    }

    // Time to first job: S(t) at 4 and 12 months with Greenwood SE; the
    // stratified log-rank test and Cox model.
    let at = t["survival_at"].as_array().unwrap();
    assert_eq!(at.len(), 2);
    for s in at {
        let day = s["day"].as_u64().unwrap();
        for (arm, key) in [("intervention", "ips"), ("control", "usual_care")] {
            let k = format!("tte.{key}.s{day}");
            close(&k, &s[arm]["survival"], r[&k], 1e-8);
            close(&k, &s[arm]["se"], r[&format!("{k}.se")], 1e-8);
        }
    }
    close(
        "stratified log-rank p",
        &t["log_rank_stratified"]["value"]["test"]["p_value"],
        r["tte.logrank_strat.p"],
        1e-8,
    );
    let hr = &t["cox_stratified"]["value"]["hazard_ratio"]["value"];
    close("stratified HR", &hr["estimate"], r["tte.strat.hr"], 1e-6);
    close("stratified HR low", &hr["ci_low"], r["tte.strat.hr.low"], 1e-6);
    close("stratified HR high", &hr["ci_high"], r["tte.strat.hr.high"], 1e-6);

    // Subgroups: the likelihood-ratio interaction test (logistic fits: 1e-6).
    for g in a["subgroups"].as_array().unwrap() {
        let f = g["factor"].as_str().unwrap();
        let key = format!("subgroup.{}.lr.p", f.replace("employment_status", "employment"));
        close(&key, &g["interaction_lr"]["value"]["p_value"], r[&key], 1e-6);
    }

    // CACE: allocation as the instrument for receiving IPS.
    let cace = &a["cace"]["effect"]["value"]["cace"];
    close("CACE", &cace["estimate"], r["cace"], 1e-8);
    close("CACE low", &cace["ci_low"], r["cace.low"], 1e-8);
    close("CACE high", &cace["ci_high"], r["cace.high"], 1e-8);
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
    // The sections and fits run as tasks on a pool of threads: however many
    // threads it has, the outputs are the same bytes.
    let (one, three) = (dir.path().join("one thread"), dir.path().join("three threads"));
    for (out, threads) in [(&one, "1"), (&three, "3")] {
        chancery()
            .env("RAYON_NUM_THREADS", threads)
            .args(["analyse", "--db"])
            .arg(&db)
            .arg("--out")
            .arg(out)
            .assert()
            .success();
    }
    for f in ["analysis.json", "estimates.csv", "consort.csv", "baseline.csv", "survival.csv"] {
        let a = std::fs::read(out1.join(f)).unwrap();
        assert!(!a.is_empty(), "{f}");
        assert_eq!(a, std::fs::read(out2.join(f)).unwrap(), "{f} differs between runs");
        assert_eq!(a, std::fs::read(one.join(f)).unwrap(), "{f} differs on one thread");
        assert_eq!(a, std::fs::read(three.join(f)).unwrap(), "{f} differs on three threads");
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

// ---------------------------------------------------------------------------
// Degenerate data, through the pure library: a dataset built value by value.

/// One simulated participant of a hand-built dataset.
#[derive(Clone)]
struct Person {
    arm: &'static str,
    site: &'static str,
    employment: &'static str,
    condition: &'static str,
    /// Primary outcome at 12 months; `None` is missing.
    work13: Option<bool>,
    /// 12-month follow-up day (no follow-up at all when `None`).
    follow_up: Option<i64>,
    /// Day of the first job, if any.
    job: Option<i64>,
    /// PHQ-9 at baseline and at 12 months.
    phq9: (f64, Option<f64>),
    /// IPS contacts recorded at 12 months.
    contacts: u32,
}

/// A uniform number in [0, 1) for participant `i`, draw `k` (SplitMix64: test data only).
fn u(i: usize, k: u64) -> f64 {
    let mut z = (i as u64).wrapping_mul(1_000).wrapping_add(k).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// `n` participants alternating between the arms, with a 10-point effect on
/// the primary outcome and realistic variation everywhere else.
fn people(n: usize) -> Vec<Person> {
    (0..n)
        .map(|i| {
            let ips = i % 2 == 0;
            let work13 = u(i, 1) < if ips { 0.35 } else { 0.25 };
            let job = if work13 {
                Some(10 + (u(i, 2) * 250.0) as i64)
            } else {
                (u(i, 3) < 0.15).then(|| 20 + (u(i, 4) * 300.0) as i64)
            };
            let phq0 = (4.0 + u(i, 6) * 18.0).round();
            let phq12 = (phq0 - 1.0 - f64::from(u8::from(ips)) + (u(i, 7) - 0.5) * 8.0).round().clamp(0.0, 27.0);
            Person {
                arm: if ips { "ips" } else { "usual_care" },
                site: ["sheffield", "birmingham", "doncaster"][(u(i, 9) * 3.0) as usize],
                employment: if u(i, 10) < 0.3 { "in_work" } else { "out_of_work" },
                condition: ["mental_health", "msk", "both"][(u(i, 11) * 3.0) as usize],
                work13: Some(work13),
                follow_up: Some(330 + (u(i, 5) * 40.0) as i64),
                job,
                phq9: (phq0, Some(phq12)),
                contacts: match (ips, u(i, 8)) {
                    (true, x) if x < 0.85 => 1 + (x * 20.0) as u32,
                    (false, x) if x < 0.05 => 1,
                    _ => 0,
                },
            }
        })
        .collect()
}

fn dataset(people: &[Person]) -> Dataset {
    let protocol = chancery::protocol::Protocol::load(&root().join("protocol/work-health-ips.toml")).unwrap();
    let start = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap();
    let mut referrals = Vec::new();
    let mut participants = Vec::new();
    for (i, p) in people.iter().enumerate() {
        let id = format!("P{i:04}");
        referrals.push(ReferralRecord {
            participant: id.clone(),
            site: p.site.into(),
            status: "randomised".into(),
            reasons: vec![],
        });
        let strata: BTreeMap<String, String> =
            [("site", p.site), ("employment_status", p.employment), ("condition", p.condition)]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let mut baseline = strata.clone();
        baseline.remove("site");
        for (k, v) in [("age", "40"), ("sex", "female"), ("gad7", "9"), ("swemwbs", "20"), ("eq5d", "0.6")] {
            baseline.insert(k.into(), v.into());
        }
        baseline.insert("phq9".into(), p.phq9.0.to_string());
        let mut outcomes = Outcomes::new();
        if let Some(day) = p.follow_up {
            let on = start + Duration::days(day);
            let mut put = |name: &str, value: String| {
                outcomes.insert("m12", name, OutcomeValue { value: value.into(), collected_on: on });
            };
            if let Some(y) = p.work13 {
                put("paid_work_13_weeks", if y { "yes" } else { "no" }.into());
            }
            if let Some(v) = p.phq9.1 {
                put("phq9", v.to_string());
            }
            if let Some(j) = p.job.filter(|j| *j <= day) {
                put("first_job_date", (start + Duration::days(j)).format("%Y-%m-%d").to_string());
            }
            put("ips_contacts", p.contacts.to_string());
        }
        participants.push(ParticipantRecord {
            participant: id,
            site: p.site.into(),
            region: protocol.site(p.site).and_then(|s| s.region.clone()),
            arm: p.arm.into(),
            strata: strata.iter().collect(),
            randomised_on: start,
            baseline: baseline.iter().collect(),
            status: ParticipantStatus::Active,
            outcomes,
        });
    }
    referrals.push(ReferralRecord {
        participant: "X0001".into(),
        site: "sheffield".into(),
        status: "ineligible".into(),
        reasons: vec!["adult".into()],
    });
    Dataset { protocol, referrals, participants, as_of: NaiveDate::from_ymd_opt(2027, 6, 1).unwrap() }
}

/// Every float anywhere in the analysis is finite (serde_json would write NaN
/// as `null`, so walk a TOML value, which keeps NaN and infinity as floats),
/// every not-estimable result says why, and every output renders.
fn assert_labelled(a: &Analysis) {
    fn walk(v: &toml::Value, path: &str) {
        match v {
            toml::Value::Float(x) => assert!(x.is_finite(), "{path} = {x}"),
            toml::Value::Array(xs) => xs.iter().enumerate().for_each(|(i, x)| walk(x, &format!("{path}[{i}]"))),
            toml::Value::Table(t) => {
                if t.get("status").and_then(|s| s.as_str()) == Some("not_estimable") {
                    let reason = t.get("reason").and_then(|r| r.as_str()).unwrap_or_default();
                    assert!(reason.starts_with("not estimable: "), "{path}: reason {reason:?}");
                }
                t.iter().for_each(|(k, x)| walk(x, &format!("{path}.{k}")));
            }
            _ => {}
        }
    }
    walk(&toml::Value::try_from(a).unwrap(), "analysis");
    // Rust prints non-finite floats as `NaN`, `inf` and `-inf`.
    let non_finite = |text: &str| text.split(|c: char| !c.is_alphanumeric()).any(|w| w == "NaN" || w == "inf");
    let md = markdown(a);
    assert!(!non_finite(&md), "a non-finite number in the summary:\n{md}");
    let dir = tempfile::tempdir().unwrap();
    for path in write_tables(a, dir.path()).unwrap() {
        assert!(!non_finite(&std::fs::read_to_string(&path).unwrap()), "{}", path.display());
    }
    for section in [a.primary.is_some(), a.time_to_event.is_some(), a.missing_data.is_some(), a.cace.is_some()] {
        assert!(section, "a section is missing");
    }
    assert_eq!(a.subgroups.len(), 3);
    assert!(!a.continuous.is_empty() && !a.baseline.is_empty());
}

fn reason<T>(e: &Estimable<T>) -> &str {
    e.reason().unwrap_or_else(|| panic!("expected not estimable"))
}

#[test]
fn a_balanced_hand_built_dataset_is_estimable_throughout() {
    let a = analyse(&dataset(&people(240))).unwrap();
    assert_labelled(&a);
    let p = a.primary.as_ref().unwrap();
    assert!(p.adjusted.risk_difference.is_value() && p.unadjusted.fisher_exact.is_value());
    let t = a.time_to_event.as_ref().unwrap();
    assert!(t.cox.is_value() && t.cox_stratified.is_value() && t.log_rank_stratified.is_value());
    assert_eq!(a.missing_data.as_ref().unwrap().imputations, 20, "m is at least 20 whatever the protocol says");
    assert_eq!(a.consort.screened, 241);
    assert_eq!(a.consort.ineligible_by_reason.get("adult"), Some(&1));
}

#[test]
fn zero_events_in_an_arm_gives_exact_and_corrected_methods_and_labels_the_rest() {
    let mut ps = people(200);
    for p in ps.iter_mut().filter(|p| p.arm == "usual_care") {
        p.work13 = Some(false);
        p.job = None;
    }
    let a = analyse(&dataset(&ps)).unwrap();
    assert_labelled(&a);
    let u = &a.primary.as_ref().unwrap().unadjusted;
    assert!(u.fisher_exact.is_value(), "Fisher's exact test is exact with a zero cell");
    assert!(u.risk_difference.is_value(), "Newcombe's interval is defined with a zero cell");
    let rr = u.risk_ratio.value().expect("Haldane-corrected risk ratio");
    assert!(rr.note.as_deref().unwrap_or_default().contains("0.5"), "{:?}", rr.note);
    let adjusted = &a.primary.as_ref().unwrap().adjusted;
    reason(&adjusted.odds_ratio);
    assert!(a.primary.as_ref().unwrap().headline.starts_with("not estimable"));
    reason(&a.time_to_event.as_ref().unwrap().cox);
}

#[test]
fn a_stratum_with_one_arm_only_still_gives_the_adjusted_and_stratified_analyses() {
    let mut ps = people(240);
    for p in ps.iter_mut().filter(|p| p.site == "doncaster") {
        p.arm = "ips";
    }
    let a = analyse(&dataset(&ps)).unwrap();
    assert_labelled(&a);
    assert!(a.primary.as_ref().unwrap().adjusted.risk_difference.is_value());
    let t = a.time_to_event.as_ref().unwrap();
    assert!(t.log_rank_stratified.is_value() && t.cox_stratified.is_value());
}

#[test]
fn all_outcomes_missing_gives_labelled_results_in_every_section() {
    let mut ps = people(60);
    for p in &mut ps {
        p.follow_up = None;
    }
    let a = analyse(&dataset(&ps)).unwrap();
    assert_labelled(&a);
    let p = a.primary.as_ref().unwrap();
    reason(&p.unadjusted.treated);
    reason(&p.unadjusted.risk_difference);
    reason(&p.adjusted.risk_difference);
    reason(&a.continuous[0].welch);
    let t = a.time_to_event.as_ref().unwrap();
    assert_eq!(t.n, 0);
    reason(&t.kaplan_meier.treated);
    reason(&t.log_rank);
    reason(&t.cox);
    let m = a.missing_data.as_ref().unwrap();
    assert_eq!((m.observed.treated, m.observed.control, m.missing.treated, m.missing.control), (0, 0, 30, 30));
    reason(&m.imputation.risk_difference);
    reason(&a.cace.as_ref().unwrap().effect);
    assert!(a.consort.arms.iter().all(|arm| arm.analysed.iter().all(|o| o.n == 0)));
}

#[test]
fn fewer_than_two_per_arm_and_an_empty_trial_give_labelled_results() {
    for n in [0, 1, 2, 3] {
        let a = analyse(&dataset(&people(n))).unwrap();
        assert_labelled(&a);
        reason(&a.continuous.iter().find(|c| c.outcome == "phq9").unwrap().welch);
        reason(&a.primary.as_ref().unwrap().adjusted.risk_difference);
    }
}

#[test]
fn a_single_level_factor_drops_out_of_the_models_and_its_subgroup_test_is_labelled() {
    let mut ps = people(240);
    for p in &mut ps {
        p.site = "sheffield";
        p.employment = "out_of_work";
    }
    let a = analyse(&dataset(&ps)).unwrap();
    assert_labelled(&a);
    assert!(a.primary.as_ref().unwrap().adjusted.risk_difference.is_value());
    let employment = a.subgroups.iter().find(|g| g.factor == "employment_status").unwrap();
    assert_eq!(employment.levels.len(), 1);
    reason(&employment.interaction_lr);
    let region = a.subgroups.iter().find(|g| g.factor == "region").unwrap();
    reason(&region.interaction_lr);
}

#[test]
fn the_library_outputs_are_byte_identical_for_the_same_dataset() {
    let d = dataset(&people(300));
    let (a, b) = (analyse(&d).unwrap(), analyse(&d).unwrap());
    assert_eq!(markdown(&a), markdown(&b));
    let (x, y) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (fx, fy) = (write_tables(&a, x.path()).unwrap(), write_tables(&b, y.path()).unwrap());
    assert_eq!(fx.len(), 5);
    for (p, q) in fx.iter().zip(&fy) {
        assert_eq!(std::fs::read(p).unwrap(), std::fs::read(q).unwrap(), "{}", p.display());
    }
}

#[test]
fn swapping_the_arm_labels_negates_differences_and_inverts_ratios() {
    let d = dataset(&people(400));
    let mut swapped = d.clone();
    swapped.protocol.arms.reverse();
    let (a, b) = (analyse(&d).unwrap(), analyse(&swapped).unwrap());
    let est = |e: &Estimable<chancery::stats::Estimate>| e.value().cloned().expect("estimated");
    let neg = |x: chancery::stats::Estimate, y: chancery::stats::Estimate, tol: f64| {
        assert!((x.estimate + y.estimate).abs() < tol, "{} vs {}", x.estimate, y.estimate);
        assert!((x.ci_low + y.ci_high).abs() < tol && (x.ci_high + y.ci_low).abs() < tol, "{x:?} vs {y:?}");
    };
    let inv = |x: chancery::stats::Estimate, y: chancery::stats::Estimate, tol: f64| {
        assert!((x.estimate * y.estimate - 1.0).abs() < tol, "{} vs {}", x.estimate, y.estimate);
        assert!((x.ci_low * y.ci_high - 1.0).abs() < tol, "{x:?} vs {y:?}");
    };
    let (pa, pb) = (a.primary.as_ref().unwrap(), b.primary.as_ref().unwrap());
    neg(est(&pa.unadjusted.risk_difference), est(&pb.unadjusted.risk_difference), 1e-9);
    neg(est(&pa.unadjusted.risk_difference_wald), est(&pb.unadjusted.risk_difference_wald), 1e-9);
    inv(est(&pa.unadjusted.risk_ratio), est(&pb.unadjusted.risk_ratio), 1e-9);
    inv(est(&pa.unadjusted.odds_ratio), est(&pb.unadjusted.odds_ratio), 1e-9);
    neg(est(&pa.adjusted.risk_difference), est(&pb.adjusted.risk_difference), 1e-6);
    inv(est(&pa.adjusted.odds_ratio), est(&pb.adjusted.odds_ratio), 1e-6);
    let phq = |a: &Analysis| a.continuous.iter().find(|c| c.outcome == "phq9").unwrap().clone();
    neg(est(&phq(&a).welch), est(&phq(&b).welch), 1e-9);
    neg(est(&phq(&a).adjusted.mean_difference), est(&phq(&b).adjusted.mean_difference), 1e-9);
    let hr = |a: &Analysis| est(&a.time_to_event.as_ref().unwrap().cox.as_ref().and_then(|c| c.hazard_ratio.clone()));
    inv(hr(&a), hr(&b), 1e-6);
    // The CACE is a ratio of two differences that both change sign: it is unchanged.
    let cace = |a: &Analysis| a.cace.as_ref().unwrap().effect.value().unwrap().cace.estimate;
    assert!((cace(&a) - cace(&b)).abs() < 1e-9, "{} vs {}", cace(&a), cace(&b));
}

#[test]
fn the_dataset_holds_exactly_the_stored_values_as_of_its_date() {
    let dir = tempfile::tempdir().unwrap();
    let db = demo_trial(dir.path());
    // Correct a few values first, so the dataset must show the current ones.
    let mut trial = chancery::ledger::Trial::open(&db).unwrap();
    let before = trial.store().outcomes().unwrap();
    let now = chancery::clock::Timestamp::parse(&format!(
        "{}T12:00:00Z",
        trial.last_entry_date().unwrap() + Duration::days(1)
    ))
    .unwrap();
    let mut corrected = Vec::new();
    for o in before.iter().filter(|o| o.field == "phq9").step_by(97).take(5) {
        let value = if o.value == "3" { "4" } else { "3" };
        let c = chancery::followup::Correction {
            participant: o.participant.clone(),
            timepoint: o.timepoint.clone(),
            field: o.field.clone(),
            value: value.into(),
            reason: "transcription error".into(),
        };
        trial.correct_outcome(&c, "tester", now).unwrap();
        corrected.push((o.participant.clone(), o.timepoint.clone(), value.to_string()));
    }
    assert_eq!(corrected.len(), 5);
    let last = trial.last_entry_date().unwrap();
    let stored = trial.store().outcomes().unwrap();
    let table = trial.store().participants().unwrap();
    for as_of in [last, last - Duration::days(90)] {
        let d = trial.dataset(as_of).unwrap();
        let on = |s: &str| NaiveDate::parse_from_str(&s[..10], "%Y-%m-%d").unwrap();
        // Every stored value collected by `as_of`, and nothing else, under its keys.
        let want: BTreeMap<(String, String, String), (String, NaiveDate)> = stored
            .iter()
            .filter(|o| on(&o.collected_on) <= as_of)
            .filter(|o| table.iter().any(|p| p.participant == o.participant && on(&p.randomised_at) <= as_of))
            .map(|o| {
                ((o.participant.clone(), o.timepoint.clone(), o.field.clone()), (o.value.clone(), on(&o.collected_on)))
            })
            .collect();
        let got: BTreeMap<(String, String, String), (String, NaiveDate)> = d
            .participants
            .iter()
            .flat_map(|r| {
                r.outcomes.iter().map(|((tp, f), v)| {
                    ((r.participant.clone(), tp.to_string(), f.to_string()), (v.value.to_string(), v.collected_on))
                })
            })
            .collect();
        assert_eq!(got.len(), d.participants.iter().map(|r| r.outcomes.len()).sum::<usize>());
        assert_eq!(got, want, "as of {as_of}");
        // Looked up one by one, every key of the protocol gives the same, missing values included.
        let p = &d.protocol;
        let (mut present, mut missing) = (0, 0);
        for r in &d.participants {
            for o in &p.outcomes {
                for t in &p.timepoints {
                    let key = (r.participant.clone(), t.id.clone(), o.name.clone());
                    let got = r.outcomes.get(&t.id, &o.name).map(|v| (v.value.to_string(), v.collected_on));
                    assert_eq!(got.as_ref(), want.get(&key), "{key:?} as of {as_of}");
                    if got.is_some() { present += 1 } else { missing += 1 }
                }
            }
            assert_eq!(r.outcomes.get("no such timepoint", "phq9"), None);
        }
        assert!(present > 0 && missing > 0, "{present} present, {missing} missing");
        if as_of == last {
            for (participant, tp, value) in &corrected {
                let r = d.participants.iter().find(|r| &r.participant == participant).unwrap();
                assert_eq!(r.outcomes.get(tp, "phq9").unwrap().value, value.as_str(), "{participant} {tp}");
            }
        }
        // Everyone randomised by `as_of`, in randomisation order, in their arm.
        let mut randomised: Vec<&chancery::store::ParticipantRow> =
            table.iter().filter(|p| on(&p.randomised_at) <= as_of).collect();
        randomised.sort_by_key(|p| p.seq);
        let ids: Vec<(&str, &str)> = randomised.iter().map(|p| (p.participant.as_str(), p.arm.as_str())).collect();
        let got: Vec<(&str, &str)> = d.participants.iter().map(|r| (r.participant.as_str(), r.arm.as_str())).collect();
        assert_eq!(got, ids, "as of {as_of}");
        assert!(d.participants.iter().all(|r| !r.baseline.is_empty() && !r.strata.is_empty()));
        // Baseline values and strata exactly as the full events record them.
        let events: BTreeMap<String, chancery::event::Randomised> =
            trial.randomisations().unwrap().into_iter().map(|(_, _, r)| (r.participant.clone(), r)).collect();
        for r in &d.participants {
            let e = &events[&r.participant];
            let baseline: Vec<(&str, &str)> = e.values.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            assert_eq!(r.baseline.iter().collect::<Vec<_>>(), baseline, "{}", r.participant);
            let strata: BTreeMap<&str, &str> = e.stratum.split('|').filter_map(|x| x.split_once('=')).collect();
            assert_eq!(r.strata.iter().collect::<Vec<_>>(), strata.into_iter().collect::<Vec<_>>());
            assert_eq!((r.site.as_str(), r.arm.as_str()), (e.site.as_str(), e.arm.as_str()));
            for (k, v) in &e.values {
                assert_eq!(r.baseline.get(k), Some(v.as_str()));
            }
            assert_eq!(r.baseline.get("no such field"), None);
        }
    }
}

#[test]
fn a_participant_row_naming_a_missing_or_wrong_log_entry_is_an_integrity_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = demo_trial(dir.path());
    let sql = |db: &Path, q: &str| rusqlite::Connection::open(db).unwrap().execute_batch(q).unwrap();
    let seq_of = |db: &Path, p: &str| -> i64 {
        rusqlite::Connection::open(db)
            .unwrap()
            .query_row("SELECT seq FROM participants WHERE participant = ?1", [p], |r| r.get(0))
            .unwrap()
    };
    let first: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT participant FROM participants ORDER BY seq LIMIT 1", [], |r| r.get(0))
        .unwrap();
    let second: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT participant FROM participants ORDER BY seq LIMIT 1 OFFSET 1", [], |r| r.get(0))
        .unwrap();
    let other_kind: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT seq FROM log WHERE type <> 'participant_randomised' ORDER BY seq LIMIT 1", [], |r| r.get(0))
        .unwrap();
    let (s1, s2) = (seq_of(&db, &first), seq_of(&db, &second));
    let cases = [
        ("missing", format!("UPDATE referrals SET seq = 999999999 WHERE participant = '{first}'"), "not in the log"),
        ("wrong type", format!("UPDATE referrals SET seq = {other_kind} WHERE participant = '{first}'"), "which is a "),
        (
            "swapped",
            format!(
                "UPDATE referrals SET seq = {s2} WHERE participant = '{first}';
                 UPDATE referrals SET seq = {s1} WHERE participant = '{second}'"
            ),
            "not the randomisation of participant",
        ),
        ("not a number", format!("UPDATE referrals SET seq = 'x' WHERE participant = '{first}'"), "seq"),
        // The entry itself edited: no longer canonical, or canonical but no
        // longer a randomisation event (a member renamed, so one is missing
        // and one unknown; the dataset skips the identity, but not unread).
        (
            "not canonical",
            format!(
                "DROP TRIGGER log_is_append_only_update; UPDATE log SET body = replace(body, '{{\"data\":', '{{ \"data\":') WHERE seq = {s1}"
            ),
            "not the canonical encoding",
        ),
        (
            "member renamed",
            format!(
                "DROP TRIGGER log_is_append_only_update; UPDATE log SET body = replace(body, '\"identity\":', '\"identitx\":') WHERE seq = {s1}"
            ),
            "does not decode",
        ),
        (
            "allocation renamed",
            format!(
                "DROP TRIGGER log_is_append_only_update; UPDATE log SET body = replace(body, '\"allocation\":', '\"allocatioo\":') WHERE seq = {s1}"
            ),
            "does not decode",
        ),
    ];
    let trial = chancery::ledger::Trial::open(&db).unwrap();
    let as_of = trial.last_entry_date().unwrap();
    let whole = trial.dataset(as_of).unwrap();
    drop(trial);
    for (what, edit, needle) in cases {
        let copy = dir.path().join(format!("{}.db", what.replace(' ', "-")));
        std::fs::copy(&db, &copy).unwrap();
        sql(&copy, &edit);
        let trial = chancery::ledger::Trial::open(&copy).unwrap();
        match trial.dataset(as_of) {
            Err(chancery::error::Error::Integrity(m)) => {
                assert!(m.contains(needle) && m.contains("chancery verify") && !m.contains('\n'), "{what}: {m}");
            }
            Err(e) => panic!("{what}: not an integrity error: {e}"),
            Ok(d) => panic!("{what}: read {} of {} participants", d.participants.len(), whole.participants.len()),
        }
        // The command says so in one line and fails.
        let out = chancery().args(["analyse", "--db"]).arg(&copy).output().unwrap();
        assert!(!out.status.success(), "{what}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("chancery verify") && err.trim().lines().count() == 1, "{what}: {err}");
    }
}
