//! Trial design: `chancery power` against R's power.prop.test and
//! power.t.test(strict = TRUE) (values from R 4.2.2, quoted below).

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

fn simulate(protocol_file: &str, seed: &str) -> Value {
    let out = chancery()
        .args(["simulate", "--json", "--trials", "20", "--participants", "300", "--seed", seed, "--protocol"])
        .arg(protocol(protocol_file))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn method<'a>(a: &'a Value, starts: &str) -> &'a Value {
    a["methods"].as_array().unwrap().iter().find(|m| m["method"].as_str().unwrap().starts_with(starts)).unwrap()
}

#[test]
fn simulation_is_reproducible_and_shows_the_known_properties_of_each_method() {
    let a = simulate("work-health-ips.toml", SEED);
    assert_eq!(a, simulate("work-health-ips.toml", SEED), "same seed, same assessment");
    assert_ne!(a, simulate("work-health-ips.toml", &"1".repeat(64)));
    let own = method(&a, "permuted blocks 2/4/6 (this protocol)");
    let simple = method(&a, "simple");
    let fixed = method(&a, "fixed blocks of 4");
    let minim = method(&a, "minimisation");
    let p = |m: &Value| m["predictability"].as_f64().unwrap();
    // Simple randomisation cannot be guessed better than a coin; blocks can.
    assert!((p(simple) - 0.5).abs() < 0.05, "{simple}");
    assert!(p(own) > 0.6 && p(fixed) > 0.6, "{own} {fixed}");
    // Within a stratum, a block never lets the arms drift apart by more than half its size.
    assert!(own["stratum_max_running_imbalance"].as_f64().unwrap() <= 3.0);
    assert_eq!(fixed["stratum_max_running_imbalance"].as_f64().unwrap(), 2.0);
    // Minimisation balances the margins best overall; simple randomisation worst.
    let fin = |m: &Value| m["final_imbalance_mean"].as_f64().unwrap();
    assert!(fin(minim) < fin(own) && fin(own) < fin(simple), "{a:#}");
}
