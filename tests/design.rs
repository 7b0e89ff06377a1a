//! Trial design: `chancery power` against R's power.prop.test and
//! power.t.test(strict = TRUE) (values from R 4.2.2, quoted below or in
//! tests/reference/power/), and `chancery simulate`.

use serde_json::Value;

use crate::util::*;

fn power_json(args: &[&str]) -> Value {
    let out = chancery().arg("power").arg("--json").args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn close(got: &Value, want: f64) {
    let got = got.as_f64().unwrap();
    assert!((got - want).abs() <= 1e-6 * want.abs(), "got {got}, R says {want}");
}

#[test]
fn the_default_protocol_states_the_number_to_recruit() {
    // power.prop.test(p1 = 0.25, p2 = 0.29, power = 0.9)$n = 2586.6886342629;
    // divided by 1 − 0.2 attrition and rounded up: 3234 per arm.
    let v = power_json(&[]);
    close(&v["n1"], 2586.6886342629);
    assert_eq!(v["recruit1"], 3234);
    assert_eq!(v["recruit2"], 3234);
    let text = chancery().arg("power").output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("recruit: 3234 intervention + 3234 control = 6468 in total"), "{text}");
}

#[test]
fn power_and_sample_size_match_r() {
    let v = power_json(&["proportions", "--p1", "0.29", "--p2", "0.25", "--power", "0.9"]);
    close(&v["n1"], 2586.6886342629);
    // power.t.test(n = 200, delta = 1.5, sd = 6, strict = TRUE)$power
    let v = power_json(&["means", "--delta", "1.5", "--sd", "6", "--n", "200"]);
    close(&v["power"], 0.7033333029);
    // power.t.test(delta = 1.5, sd = 6, power = 0.8, strict = TRUE)$n
    let v = power_json(&["means", "--delta", "1.5", "--sd", "6", "--power", "0.8"]);
    close(&v["n1"], 252.1275017564);
    assert_eq!(v["recruit1"], 253);
}

#[test]
fn impossible_designs_get_one_clear_error() {
    for args in [
        &["power", "proportions", "--p1", "0.3", "--p2", "0.3"][..],
        &["power", "proportions", "--p1", "1.3", "--p2", "0.3"],
        &["power", "means", "--delta", "1", "--sd", "0"],
        &["power", "means", "--delta", "1", "--sd", "2", "--attrition", "1"],
    ] {
        let out = chancery().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    let out = chancery().args(["power", "--protocol"]).arg(protocol("example-minimisation.toml")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [design] table"));
}

/// A value from tests/reference/power/expected.csv (made by make_power.R).
fn r_value(key: &str) -> f64 {
    let text = std::fs::read_to_string(root().join("tests/reference/power/expected.csv")).unwrap();
    text.lines().find_map(|l| l.strip_prefix(&format!("{key},"))).unwrap().parse().unwrap()
}

#[test]
fn unequal_allocation_and_attrition_match_r() {
    let v = power_json(&["--protocol", protocol("work-health-ips.toml").to_str().unwrap()]);
    close(&v["n1"], r_value("protocol.n"));
    assert_eq!(v["recruit1"].as_u64().unwrap() + v["recruit2"].as_u64().unwrap(), 6468);
    // The protocol's assumptions at a given size: power.prop.test(n = 2000, p1 = 0.29, p2 = 0.25)$power.
    let v = power_json(&["--n", "2000", "--attrition", "0"]);
    close(&v["power"], r_value("protocol.power.n2000"));
    assert_eq!((v["recruit1"].as_u64(), v["recruit2"].as_u64()), (Some(2000), Some(2000)));
    one_line_error(&["power", "--n", "2000", "proportions", "--p1", "0.3", "--p2", "0.4"], "protocol's [design]");
    let v = power_json(&["proportions", "--p1", "0.29", "--p2", "0.25", "--power", "0.9", "--ratio", "2"]);
    close(&v["n1"], r_value("prop.k2.n"));
    assert_eq!(v["recruit2"].as_u64().unwrap(), (2.0 * v["n1"].as_f64().unwrap()).ceil() as u64);
    let v = power_json(&["means", "--delta", "1.5", "--sd", "6", "--n", "50", "--ratio", "2"]);
    close(&v["power"], r_value("t.k2.power.n50"));
    let v = power_json(&["means", "--delta", "0.5", "--sd", "1", "--power", "0.8", "--attrition", "0.1"]);
    close(&v["n1"], r_value("t.n.d05"));
    assert_eq!(v["recruit1"].as_u64().unwrap(), (v["n1"].as_f64().unwrap() / 0.9).ceil() as u64);
}

fn one_line_error(args: &[&str], needle: &str) {
    let out = chancery().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{args:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(needle), "{err}");
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
