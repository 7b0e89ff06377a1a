//! `chancery power` and `chancery simulate`: the numbers a trial statistician
//! puts in the protocol, from the command line.

use crate::util::*;

fn json(args: &[&str]) -> serde_json::Value {
    let out = chancery().args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A value from tests/reference/power/expected.csv (made by make_power.R).
fn r_value(key: &str) -> f64 {
    let text = std::fs::read_to_string(root().join("tests/reference/power/expected.csv")).unwrap();
    text.lines().find_map(|l| l.strip_prefix(&format!("{key},"))).unwrap().parse().unwrap()
}

fn one_line_error(args: &[&str], needle: &str) {
    let out = chancery().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{args:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(needle), "{err}");
}

#[test]
fn power_prints_the_number_to_recruit_for_the_default_protocol() {
    let out = chancery().arg("power").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("number to recruit: 6468 (ips 3234, usual_care 3234; expected attrition 20%)"), "{text}");
    let given = json(&["power", "--protocol", protocol("work-health-ips.toml").to_str().unwrap(), "--json"]);
    assert_eq!(given["recruit_total"], 6468);
    let n1 = given["calculation"]["n1"].as_f64().unwrap();
    assert!((n1 - r_value("protocol.n")).abs() < 1e-6 * n1, "{n1}");
    // Power for a given size, overriding the protocol's attrition.
    let p = json(&["power", "--n", "2000", "--attrition", "0", "--json"]);
    let power = p["calculation"]["power"].as_f64().unwrap();
    assert!((power - r_value("protocol.power.n2000")).abs() < 1e-6, "{power}");
    assert_eq!(p["recruit_total"], 4000);
}

#[test]
fn power_for_two_proportions_and_two_means_matches_r() {
    let p = json(&["power", "--p1", "0.29", "--p2", "0.25", "--power", "0.9", "--ratio", "2", "--json"]);
    let n1 = p["n1"].as_f64().unwrap();
    assert!((n1 - r_value("prop.k2.n")).abs() < 1e-6 * n1, "{n1}");
    assert_eq!(p["recruit2"].as_u64().unwrap(), (2.0 * n1).ceil() as u64);
    let m = json(&["power", "--delta", "1.5", "--sd", "6", "--n", "50", "--ratio", "2", "--json"]);
    let power = m["power"].as_f64().unwrap();
    assert!((power - r_value("t.k2.power.n50")).abs() < 1e-6, "{power}");
    let m = json(&["power", "--delta", "-0.5", "--sd", "1", "--power", "0.8", "--attrition", "0.1", "--json"]);
    let n1 = m["n1"].as_f64().unwrap();
    assert!((n1 - r_value("t.n.d05")).abs() < 1e-6 * n1, "{n1}");
    assert_eq!(m["recruit1"].as_u64().unwrap(), (n1 / 0.9).ceil() as u64);
}

#[test]
fn power_refuses_bad_input_with_one_line() {
    one_line_error(&["power", "--p1", "1.2", "--p2", "0.3", "--power", "0.9"], "between 0 and 1");
    one_line_error(&["power", "--p1", "0.3", "--p2", "0.3", "--power", "0.9"], "no effect");
    one_line_error(&["power", "--p1", "0.3", "--p2", "0.4"], "give --power");
    one_line_error(&["power", "--p1", "0.3", "--p2", "0.4", "--power", "0.9", "--attrition", "1"], "attrition");
    one_line_error(
        &["power", "--protocol", protocol("example-minimisation.toml").to_str().unwrap()],
        "no [design] table",
    );
}

#[test]
fn simulate_is_reproducible_for_its_seed() {
    let args = ["simulate", "--trials", "3", "--participants", "200", "--json"];
    let a = chancery().args(args).output().unwrap();
    let b = chancery().args(args).output().unwrap();
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert_eq!(a.stdout, b.stdout);
    let seed = ["--seed", "0101010101010101010101010101010101010101010101010101010101010101"];
    let c = chancery().args(args).args(seed).output().unwrap();
    assert_ne!(a.stdout, c.stdout);
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    let names: Vec<&str> = v["methods"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["protocol", "simple", "fixed blocks of 4", "minimisation"]);
    assert_eq!(v["participants"], 200);
    assert!(!v["strata"].as_array().unwrap().is_empty());
}

#[test]
fn simulate_reports_each_method_and_stratum_for_a_given_protocol() {
    let out = chancery()
        .args(["simulate", "--trials", "2", "--participants", "300", "--protocol"])
        .arg(protocol("example-simple-2to1.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    // 2:1 allocation: the fixed comparator uses the smallest block of whole ratios ≥ 4.
    for needle in ["2 simulated trials of 300 participants", "fixed blocks of 6", "minimisation", "predictability"] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    for stratum in ["site=cardiff", "site=north", "site=south"] {
        assert!(text.lines().any(|l| l.starts_with(stratum)), "{stratum}: {text}");
    }
    one_line_error(&["simulate", "--seed", "xyz"], "seed");
}
