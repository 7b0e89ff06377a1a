//! The demonstration: a whole simulated trial through the coordinators'
//! library calls — reproducible, consistent, honest about being simulated.

use crate::util::*;

fn demo(dir: &std::path::Path, extra: &[&str]) -> String {
    let out = chancery()
        .args(["demo", "--dir"])
        .arg(dir)
        .args(["--participants", "400"])
        .args(extra)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8(out).unwrap()
}

fn head_of(summary: &str) -> String {
    summary.lines().find_map(|l| l.strip_prefix("log: ")).unwrap().split("head ").nth(1).unwrap().to_string()
}

#[test]
fn the_demo_says_it_is_simulated_and_follows_everyone_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = demo(&dir.path().join("d"), &[]);
    assert!(out.contains("SIMULATED"), "{out}");
    let follow = out.lines().find(|l| l.starts_with("follow-up: m4 ")).unwrap_or_else(|| panic!("{out}"));
    let n =
        |tp: &str| -> u64 { follow.split([',', ';', ' ']).skip_while(|w| *w != tp).nth(1).unwrap().parse().unwrap() };
    let randomised: u64 = out.split("randomised ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    // Realistic attrition: most, not all, are followed up; fewer at 12 months than at 4.
    assert!(n("m4") > randomised * 7 / 10 && n("m4") < randomised, "{follow} of {randomised}");
    assert!(n("m12") > randomised / 2 && n("m12") < n("m4"), "{follow}");
    assert!(follow.contains("lost "), "{follow}");
    // What was written is a trial like any other: the coordinators' exports read it.
    let db = dir.path().join("d/trial.db");
    let outcomes = chancery().args(["export", "--db"]).arg(&db).args(["--what", "outcomes"]).assert().success();
    let text = String::from_utf8(outcomes.get_output().stdout.clone()).unwrap();
    assert!(text.lines().filter(|l| l.contains(",m12,paid_work_13_weeks,")).count() as u64 == n("m12"));
    // Its outputs are owner-only like any trial's. See: the demonstration
    // wrote report.html and checkpoint.txt 0644.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["trial.db", "report.html", "checkpoint.txt", "analysis/estimates.csv"] {
            let mode = std::fs::metadata(dir.path().join("d").join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
    }
}

#[test]
fn the_demo_is_reproducible_and_its_seed_and_effect_matter() {
    let dir = tempfile::tempdir().unwrap();
    let a = head_of(&demo(&dir.path().join("a"), &[]));
    let b = head_of(&demo(&dir.path().join("b"), &[]));
    assert_eq!(a, b, "same seed, same log");
    let c = head_of(&demo(&dir.path().join("c"), &["--effect", "10"]));
    assert_ne!(a, c, "a different true effect changes the simulated outcomes");
}

#[test]
fn the_demo_never_overwrites_an_existing_trial() {
    let dir = tempfile::tempdir().unwrap();
    demo(&dir.path().join("d"), &[]);
    let folder = |d: &std::path::Path| {
        let mut files: Vec<(std::path::PathBuf, Vec<u8>)> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file() && !p.to_string_lossy().ends_with("-shm"))
            .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
            .collect();
        files.sort();
        files
    };
    let before = folder(&dir.path().join("d"));
    let out = chancery().args(["demo", "--dir"]).arg(dir.path().join("d")).assert().code(1);
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(before == folder(&dir.path().join("d")), "the refused demo changed the existing trial's files");
}
