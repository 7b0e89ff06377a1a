//! The analysis's operating characteristics by simulation (`chancery
//! simulate --analysis`): a simulated trial is the demonstration in memory,
//! and over many of them the headline is unbiased for the stated effect, its
//! intervals cover at their level and its test keeps its size.

use chancery::dataset::Dataset;
use chancery::operating::{OperatingCharacteristics, OperatingOptions, simulate_analysis, simulated_trial};
use chancery::protocol::Protocol;
use serde_json::Value;

use crate::util::*;

fn default_protocol() -> Protocol {
    Protocol::load(&protocol("work-health-ips.toml")).unwrap()
}

fn seed(byte: u8) -> [u8; 32] {
    [byte; 32]
}

/// The demonstration for `seed` with `referrals` referrals, read back from its database.
fn demonstration(dir: &std::path::Path, seed: [u8; 32], referrals: u32, effect_pp: f64) -> Dataset {
    let report = chancery::demo::run(
        &chancery::demo::DemoOptions {
            dir: dir.to_path_buf(),
            protocol: protocol("work-health-ips.toml"),
            referrals,
            seed,
            effect_pp,
        },
        |_, _, _| {},
    )
    .unwrap();
    chancery::ledger::Trial::open(&report.db).unwrap().dataset(report.last_day).unwrap()
}

/// The simulation of the analysis shares the demonstration's generator (one
/// outcome model, not a copy) and allocates with the allocation code itself:
/// a simulated trial is, participant for participant, the demonstration run
/// through the database with the same seed, and its headline the same.
#[test]
fn a_simulated_trial_is_the_demonstration_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demonstration(&dir.path().join("d"), seed(0x3c), 500, 6.0);
    let p = default_protocol();
    let sim = simulated_trial(&p, &seed(0x3c), demo.participants.len() as u32, 6.0).unwrap();
    assert!(demo.participants.len() > 350, "{}", demo.participants.len());
    assert_eq!(sim.participants.len(), demo.participants.len());
    for (s, d) in sim.participants.iter().zip(&demo.participants) {
        assert_eq!(s, d);
    }
    let headline = |d: &Dataset| chancery::analysis::analyse_primary(d).unwrap().unwrap().adjusted;
    assert_eq!(format!("{:?}", headline(&sim)), format!("{:?}", headline(&demo)));
    // And the primary analysis alone is the full analysis's primary section.
    let full = chancery::analysis::analyse(&demo).unwrap().primary.unwrap();
    let alone = chancery::analysis::analyse_primary(&demo).unwrap().unwrap();
    assert_eq!(format!("{full:?}"), format!("{alone:?}"));
}

fn run(trials: u32, participants: u32, effect_pp: f64, byte: u8) -> OperatingCharacteristics {
    let options = OperatingOptions { trials, participants, effect_pp, seed: seed(byte) };
    simulate_analysis(&default_protocol(), &options, |_, _| {}).unwrap()
}

/// The stated effect is what the headline estimates: over 400 simulated
/// trials the mean estimate is within three Monte Carlo standard errors of the
/// truth, the standard errors the analysis reports match the estimates'
/// spread, and its 95% intervals cover the truth 93–97% of the time.
/// See: issue 19 (the demonstration's estimates seemed to sit above +4 pp).
#[test]
fn the_headline_is_unbiased_for_the_stated_effect_and_its_intervals_cover() {
    let o = run(400, 1500, 4.0, 0x19);
    assert_eq!(o.true_effect, 4.0, "the bounds of a risk do not clip +4 pp: {o:?}");
    assert_eq!(o.estimated, 400, "{o:?}");
    assert!(o.bias.abs() <= 3.0 * o.mc_se, "mean {} vs truth {} (MC SE {})", o.mean_estimate, o.true_effect, o.mc_se);
    assert!(o.mc_se > 0.0 && o.mc_se < 0.2, "{o:?}");
    assert!((0.93..=0.97).contains(&o.coverage), "coverage {}: {o:?}", o.coverage);
    assert!((o.mean_reported_se / o.empirical_se - 1.0).abs() < 0.1, "{o:?}");
    // About four in five are followed up to the primary outcome.
    assert!(o.mean_analysed > 0.75 * 1500.0 && o.mean_analysed < 0.85 * 1500.0, "{o:?}");
}

/// With no effect, the headline's test rejects 3–7% of the time at 5%.
#[test]
fn with_no_effect_the_headline_keeps_its_type_i_error() {
    let o = run(400, 1500, 0.0, 0x20);
    assert_eq!(o.true_effect, 0.0);
    assert!((0.03..=0.07).contains(&o.rejection_rate), "rejection rate {}: {o:?}", o.rejection_rate);
    assert!((0.93..=0.97).contains(&o.coverage), "{o:?}");
    assert!(o.bias.abs() <= 3.0 * o.mc_se, "{o:?}");
}

/// A large harm is clipped by the bounds of a risk (the 18% of out-of-work
/// participants with both conditions cannot fall by 22 points): the truth is
/// the average effect over the randomised population, smaller than the
/// effect given, and the headline targets it.
#[test]
fn the_truth_is_the_population_average_when_risks_are_clipped() {
    let o = run(200, 600, -22.0, 0x21);
    assert!(o.true_effect > -21.5 && o.true_effect < -20.0, "{o:?}");
    assert!(o.bias.abs() <= 3.0 * o.mc_se, "{o:?}");
}

/// Each trial draws from its own streams: the results do not depend on the
/// number of threads.
#[test]
fn the_simulation_does_not_depend_on_the_number_of_threads() {
    let on = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| serde_json::to_string(&run(12, 300, 4.0, 0x22)).unwrap())
    };
    assert_eq!(on(1), on(3));
}

#[test]
fn simulate_analysis_prints_its_operating_characteristics_as_json() {
    let out = chancery()
        .args(["simulate", "--analysis", "--trials", "8", "--participants", "300", "--effect", "0", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "true_effect",
        "mean_estimate",
        "mc_se",
        "empirical_se",
        "mean_reported_se",
        "coverage",
        "rejection_rate",
        "bias",
        "estimated",
    ] {
        assert!(v[key].is_number(), "{key} missing: {v}");
    }
    assert_eq!(v["trials"], 8);
    assert_eq!(v["participants"], 300);
    assert_eq!(v["true_effect"], 0.0);
    assert_eq!(v["outcome"], "paid_work_13_weeks at m12");
    let text = chancery().args(["simulate", "--analysis", "--trials", "4", "--participants", "200"]).output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("true effect: +4.00 pp"), "{text}");
    assert!(text.contains("95% CI coverage: "), "{text}");
    assert!(text.contains("rejection rate (power, two-sided 0.05): "), "{text}");
}

#[test]
fn simulate_analysis_refuses_what_it_cannot_simulate_in_one_line() {
    let err = |args: &[&str]| {
        let out = chancery().args(["simulate", "--analysis"]).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let e = String::from_utf8(out.stderr).unwrap();
        assert_eq!(e.lines().count(), 1, "{e}");
        e
    };
    let e = err(&["--effect", "70"]);
    assert!(e.contains("--effect 70 must be between -50 and 50 percentage points"), "{e}");
    let p = protocol("example-minimisation.toml");
    let e = err(&["--protocol", p.to_str().unwrap()]);
    assert!(e.contains("protocol example-minimisation cannot be simulated"), "{e}");
    assert!(e.contains("paid_work_13_weeks"), "{e}");
    // Trials too small to estimate anything say so, instead of printing NaN.
    // See: `--trials 5 --participants 10` printed "mean estimate: NaN pp".
    let e = err(&["--trials", "5", "--participants", "10"]);
    assert!(e.contains("estimable in 0 of 5 simulated trials of 10 participants"), "{e}");
    // --effect is the analysis simulation's alone.
    let out = chancery().args(["simulate", "--effect", "3"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--analysis"));
}
