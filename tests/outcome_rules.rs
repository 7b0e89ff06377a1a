//! Outcomes that make sense: each timepoint's window (a collection outside
//! it needs a recorded reason, flagged in exports), nothing collected after a
//! recorded death, weeks in work against the first job date, one first job
//! date at every timepoint, and a value corrected back to missing.
//!
//! Each was accepted before and reached the analysis. See: issue 18,
//! "Outcomes that make sense".

use std::path::{Path, PathBuf};

use crate::util::*;

/// P1–P3 randomised on 2026-03-02 (util::NOW). m4: target 2026-07-02, window
/// 2026-06-02 to 2026-08-01; m12: target 2027-03-02, window 2027-01-16 to 2027-04-16.
const M4_NOW: &str = "2026-07-10T10:00:00Z";
const M12_NOW: &str = "2027-03-10T10:00:00Z";

fn trial(dir: &Path) -> PathBuf {
    randomised_trial(dir, &["P1", "P2", "P3"], 300)
}

/// `args` with `extra` after them (e.g. a window reason after the values).
fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(s(extra));
    args
}

fn ok(args: &[String]) -> String {
    let out = chancery().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn export(db: &Path, what: &str) -> Vec<csv::StringRecord> {
    let text = ok(&[s(&["export", "--what", what, "--db"]), vec![db.display().to_string()]].concat());
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let mut rows = vec![header];
    rows.extend(reader.records().map(|r| r.unwrap()));
    rows
}

/// The cell of `column` in the export row of (participant, timepoint, field).
fn cell(rows: &[csv::StringRecord], key: (&str, &str, &str), column: &str) -> String {
    let at = |name: &str| rows[0].iter().position(|c| c == name).unwrap_or_else(|| panic!("no column {name}"));
    let row = rows[1..]
        .iter()
        .find(|r| r[at("participant")] == *key.0 && r[at("timepoint")] == *key.1 && r[at("field")] == *key.2)
        .unwrap_or_else(|| panic!("no row {key:?}"));
    row[at(column)].to_string()
}

/// The log's data members as written, entry by entry.
fn log_data(db: &Path) -> Vec<String> {
    let rows = export(db, "log");
    let at = rows[0].iter().position(|c| c == "data").unwrap();
    rows[1..].iter().map(|r| r[at].to_string()).collect()
}

/// Both verifiers (chancery's and the reference written from the
/// specification) find the trial intact.
fn verifies(db: &Path) {
    let out = chancery().args(["verify", "--json", "--db"]).arg(db).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v:#}");
    let py = std::process::Command::new("python3")
        .arg(root().join("tests/vectors/verify.py"))
        .arg(db)
        .output()
        .expect("python3 runs the reference verifier");
    let r: serde_json::Value =
        serde_json::from_slice(&py.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&py.stderr)));
    assert_eq!(r["ok"], true, "reference verifier: {r:#}");
    assert_eq!(r["head"], v["head"]);
}

#[test]
fn an_m4_value_on_day_0_needs_a_reason_which_is_recorded_and_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    // Day 0: 122 days before the m4 target, outside its ±30-day window.
    let day0 = outcome_record_args(&db, NOW, "P1", "m4", "2026-03-02", &["phq9=10"]);
    refused(
        &db,
        &day0,
        "participant P1, m4: collected on 2026-03-02, day 0 after randomisation, outside the m4 window (days 92–152: 2026-06-02 to 2026-08-01)",
    );
    refused(&db, &day0, "give the reason with --window-reason TEXT");
    // A blank reason is no reason.
    refused(&db, &with(day0.clone(), &["--window-reason", "  "]), "outside the m4 window");
    ok(&with(day0, &["--window-reason", "emigrating in March; assessed before leaving"]));
    // In the window, a reason would flag the value for nothing.
    refused(
        &db,
        &with(outcome_record_args(&db, M4_NOW, "P2", "m4", "2026-07-02", &["phq9=9"]), &["--window-reason", "late"]),
        "within the m4 window (2026-06-02 to 2026-08-01), but a window reason is given",
    );
    ok(&outcome_record_args(&db, M4_NOW, "P2", "m4", "2026-07-02", &["phq9=9"]));

    // Recorded in the event, only where given: entries in the window are
    // encoded as before.
    let data = log_data(&db);
    let p1 = data.iter().find(|d| d.contains("\"participant\":\"P1\"") && d.contains("\"collected_on\"")).unwrap();
    assert!(p1.ends_with(",\"window_reason\":\"emigrating in March; assessed before leaving\"}"), "{p1}");
    let p2 = data.iter().find(|d| d.contains("\"participant\":\"P2\"") && d.contains("\"collected_on\"")).unwrap();
    assert_eq!(
        p2,
        "{\"collected_on\":\"2026-07-02\",\"participant\":\"P2\",\"timepoint\":\"m4\",\"values\":{\"phq9\":\"9\"}}"
    );

    // Flagged in the outcomes export, with the reason; in the window, not.
    let rows = export(&db, "outcomes");
    assert_eq!(cell(&rows, ("P1", "m4", "phq9"), "out_of_window"), "yes");
    assert_eq!(cell(&rows, ("P1", "m4", "phq9"), "window_reason"), "emigrating in March; assessed before leaving");
    assert_eq!(cell(&rows, ("P2", "m4", "phq9"), "out_of_window"), "no");
    assert_eq!(cell(&rows, ("P2", "m4", "phq9"), "window_reason"), "");
    let history = export(&db, "history");
    assert_eq!(
        cell(&history, ("P1", "m4", "phq9"), "reason"),
        "collected outside the window: emigrating in March; assessed before leaving"
    );
    // The codebook documents the new columns.
    let codebook = export(&db, "codebook");
    for column in ["out_of_window", "window_reason"] {
        assert!(codebook[1..].iter().any(|r| &r[0] == "outcomes" && &r[1] == column), "{column}");
    }
    verifies(&db);
}

#[test]
fn the_m12_primary_outcome_on_the_day_of_randomisation_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    let day0 = outcome_record_args(&db, NOW, "P1", "m12", "2026-03-02", &["paid_work_13_weeks=no"]);
    refused(&db, &day0, "outside the m12 window (days 320–410: 2027-01-16 to 2027-04-16)");
    // 13 weeks in work cannot have passed on day 0, whatever the reason given.
    let yes = outcome_record_args(
        &db,
        NOW,
        "P1",
        "m12",
        "2026-03-02",
        &["paid_work_13_weeks=yes", "first_job_date=2026-03-02"],
    );
    refused(
        &db,
        &with(yes, &["--window-reason", "entered early by mistake"]),
        "paid_work_13_weeks is yes at m12 but only 0 days passed between randomisation and that collection",
    );
}

#[test]
fn an_import_needs_a_window_reason_for_each_row_outside_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    let csv = dir.path().join("o.csv");
    let import = s(&[
        "outcome",
        "import",
        "--db",
        &db.display().to_string(),
        "--csv",
        &csv.display().to_string(),
        "--now",
        M4_NOW,
    ]);
    std::fs::write(&csv, "participant,timepoint,collected_on,window_reason,phq9\nP1,m4,2026-03-02,,10\nP2,m4,2026-07-01,,9\nP3,m4,2026-05-20,,8\n").unwrap();
    refused(&db, &import, "2 of 3 records are invalid, so none was written");
    refused(
        &db,
        &import,
        "o.csv:2: participant P1, m4: collected on 2026-03-02, day 0 after randomisation, outside the m4 window",
    );
    refused(
        &db,
        &import,
        "o.csv:4: participant P3, m4: collected on 2026-05-20, day 79 after randomisation, outside the m4 window",
    );
    std::fs::write(&csv, "participant,timepoint,collected_on,window_reason,phq9\nP1,m4,2026-03-02,moving abroad,10\nP2,m4,2026-07-01,,9\nP3,m4,2026-05-20,participant asked to be seen early,8\n").unwrap();
    ok(&import);
    let rows = export(&db, "outcomes");
    assert_eq!(cell(&rows, ("P1", "m4", "phq9"), "window_reason"), "moving abroad");
    assert_eq!(cell(&rows, ("P2", "m4", "phq9"), "out_of_window"), "no");
    assert_eq!(cell(&rows, ("P3", "m4", "phq9"), "out_of_window"), "yes");
    // The reason column is not read as an outcome.
    assert!(!rows[1..].iter().any(|r| &r[2] == "window_reason"));
}

#[test]
fn nothing_is_collected_after_a_recorded_death() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    ok(&outcome_record_args(&db, M4_NOW, "P1", "m4", "2026-07-01", &["phq9=10"]));
    ok(&s(&[
        "died",
        "--db",
        &db.display().to_string(),
        "--participant",
        "P1",
        "--reason",
        "reported by GP",
        "--on",
        "2026-07-05",
        "--now",
        M4_NOW,
    ]));
    // A PHQ-9 at m12, eight months after the recorded death.
    refused(
        &db,
        &outcome_record_args(&db, M12_NOW, "P1", "m12", "2027-03-02", &["phq9=7"]),
        "participant P1, m12: the participant is recorded as died on 2026-07-05, so nothing can be collected on 2027-03-02",
    );
    // Even with a window reason, and whatever the timepoint.
    refused(
        &db,
        &with(outcome_record_args(&db, M4_NOW, "P1", "m12", "2026-07-06", &["phq9=7"]), &["--window-reason", "early"]),
        "recorded as died on 2026-07-05",
    );
    // A death dated before a collection already recorded is refused too.
    ok(&outcome_record_args(&db, M4_NOW, "P2", "m4", "2026-07-05", &["phq9=10"]));
    refused(
        &db,
        &s(&[
            "died",
            "--db",
            &db.display().to_string(),
            "--participant",
            "P2",
            "--reason",
            "reported by GP",
            "--on",
            "2026-07-01",
            "--now",
            M4_NOW,
        ]),
        "participant P2: follow-up at m4 was collected on 2026-07-05, after the date of death 2026-07-01",
    );
    ok(&s(&[
        "died",
        "--db",
        &db.display().to_string(),
        "--participant",
        "P2",
        "--reason",
        "reported by GP",
        "--on",
        "2026-07-05",
        "--now",
        M4_NOW,
    ]));
}

#[test]
fn weeks_in_work_cannot_exceed_the_weeks_since_the_first_job() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    // 10 weeks in work, but the first job began 12 days before collection.
    refused(
        &db,
        &outcome_record_args(
            &db,
            M4_NOW,
            "P1",
            "m4",
            "2026-07-02",
            &["in_paid_work=yes", "weeks_in_paid_work=10", "first_job_date=2026-06-20"],
        ),
        "participant P1, m4: weeks_in_paid_work is 10 but the first job began on 2026-06-20, 12 days before the collection on 2026-07-02",
    );
    // Two weeks begun in 12 days is possible.
    ok(&outcome_record_args(
        &db,
        M4_NOW,
        "P1",
        "m4",
        "2026-07-02",
        &["in_paid_work=yes", "weeks_in_paid_work=2", "first_job_date=2026-06-20"],
    ));
    // "13+ weeks in work = yes" with a first job 19 days before collection.
    refused(
        &db,
        &outcome_record_args(
            &db,
            M12_NOW,
            "P2",
            "m12",
            "2027-03-02",
            &["paid_work_13_weeks=yes", "first_job_date=2027-02-11", "in_paid_work=yes", "weeks_in_paid_work=3"],
        ),
        "participant P2, m12: paid_work_13_weeks is yes at m12 but the first job began on 2027-02-11, only 19 days before that collection (2027-03-02)",
    );
    // The first job date recorded at m4 counts at m12: P1's began 2026-06-20.
    refused(
        &db,
        &outcome_record_args(&db, M12_NOW, "P1", "m12", "2026-08-01", &["weeks_in_paid_work=8"])
            .into_iter()
            .chain(s(&["--window-reason", "seen early"]))
            .collect::<Vec<_>>(),
        "weeks_in_paid_work is 8 but the first job began on 2026-06-20, 42 days before the collection on 2026-08-01",
    );
    ok(&outcome_record_args(
        &db,
        M12_NOW,
        "P2",
        "m12",
        "2027-03-02",
        &["paid_work_13_weeks=yes", "first_job_date=2026-12-01", "in_paid_work=yes", "weeks_in_paid_work=13"],
    ));
}

#[test]
fn a_first_job_date_is_one_date_at_every_timepoint_unless_corrected() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    ok(&outcome_record_args(
        &db,
        M4_NOW,
        "P1",
        "m4",
        "2026-07-02",
        &["weeks_in_paid_work=5", "first_job_date=2026-05-01"],
    ));
    refused(
        &db,
        &outcome_record_args(&db, M12_NOW, "P1", "m12", "2027-03-02", &["first_job_date=2026-06-01"]),
        "participant P1, m12: first_job_date 2026-06-01 differs from the one recorded at m4 (2026-05-01)",
    );
    // The same within one import: m4 and m12 rows that disagree.
    let csv = dir.path().join("o.csv");
    std::fs::write(
        &csv,
        "participant,timepoint,collected_on,first_job_date\nP2,m4,2026-07-02,2026-05-01\nP2,m12,2027-03-02,2026-05-02\n",
    )
    .unwrap();
    refused(
        &db,
        &s(&[
            "outcome",
            "import",
            "--db",
            &db.display().to_string(),
            "--csv",
            &csv.display().to_string(),
            "--now",
            M12_NOW,
        ]),
        "o.csv:3: participant P2, m12: first_job_date 2026-05-02 differs from the one recorded at m4 (2026-05-01)",
    );
    // Corrected at m4, the m12 value that agrees with the correction is accepted.
    let correct = |value: &str| {
        s(&[
            "outcome",
            "correct",
            "--db",
            &db.display().to_string(),
            "--participant",
            "P1",
            "--timepoint",
            "m4",
            "--set",
            &format!("first_job_date={value}"),
            "--reason",
            "date checked with the employer",
            "--now",
            M12_NOW,
        ])
    };
    ok(&correct("2026-06-01"));
    ok(&outcome_record_args(&db, M12_NOW, "P1", "m12", "2027-03-02", &["first_job_date=2026-06-01"]));
    let rows = export(&db, "outcomes");
    assert_eq!(cell(&rows, ("P1", "m4", "first_job_date"), "value"), "2026-06-01");
    assert_eq!(cell(&rows, ("P1", "m12", "first_job_date"), "value"), "2026-06-01");
}

#[test]
fn a_recorded_value_can_be_corrected_back_to_missing() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    ok(&outcome_record_args(&db, M4_NOW, "P1", "m4", "2026-07-02", &["phq9=10", "gad7=8"]));
    let dbs = db.display().to_string();
    let correct = |how: &[&str], reason: &str| {
        let mut a = s(&["outcome", "correct", "--db", &dbs, "--participant", "P1", "--timepoint", "m4"]);
        a.extend(s(how));
        a.extend(s(&["--reason", reason, "--now", M4_NOW]));
        a
    };
    // An empty --set is a slip, not a way to clear.
    refused(
        &db,
        &correct(&["--set", "phq9="], "x"),
        "--set \"phq9=\" gives no value; to correct phq9 to missing use --clear phq9",
    );
    refused(&db, &correct(&["--clear", "phq9"], " "), "every change needs a reason");
    ok(&correct(&["--clear", "phq9"], "the questionnaire was the wrong participant's"));
    refused(
        &db,
        &correct(&["--clear", "phq9"], "again"),
        "participant P1, m4: phq9 is already missing; nothing to correct",
    );

    // The event: old value kept, new value empty.
    let data = log_data(&db);
    assert_eq!(
        data.last().unwrap(),
        "{\"field\":\"phq9\",\"new_value\":\"\",\"old_value\":\"10\",\"participant\":\"P1\",\"reason\":\"the questionnaire was the wrong participant's\",\"timepoint\":\"m4\"}"
    );
    // Exports: no current value; the history keeps the original.
    let rows = export(&db, "outcomes");
    assert_eq!(cell(&rows, ("P1", "m4", "phq9"), "value"), "");
    assert_eq!(cell(&rows, ("P1", "m4", "phq9"), "version"), "2");
    let history = export(&db, "history");
    let changes: Vec<(String, String, String)> = history[1..]
        .iter()
        .filter(|r| &r[3] == "phq9")
        .map(|r| (r[4].to_string(), r[5].to_string(), r[6].to_string()))
        .collect();
    assert_eq!(changes, [("recorded".into(), "".into(), "10".into()), ("corrected".into(), "10".into(), "".into())]);
    let wide = export(&db, "participants");
    let at = wide[0].iter().position(|c| c == "phq9_m4").expect("phq9_m4 column");
    let p1 = wide[1..].iter().find(|r| &r[0] == "P1").unwrap();
    assert_eq!(&p1[at], "");
    // The analysis sees it missing, not as a value.
    let trial = chancery::ledger::Trial::open(&db).unwrap();
    let dataset = trial.dataset(chrono::NaiveDate::MAX).unwrap();
    let p = dataset.participants.iter().find(|p| p.participant == "P1").unwrap();
    assert!(p.outcomes.get("m4", "phq9").is_none());
    assert_eq!(p.outcomes.get("m4", "gad7").unwrap().value, "8");
    drop(trial);

    // Recording it afresh goes through a correction, with a reason.
    refused(
        &db,
        &outcome_record_args(&db, M4_NOW, "P1", "m4", "2026-07-02", &["phq9=11"]),
        "participant P1, m4: phq9 was corrected to missing; to give it a value use `chancery outcome correct` with a reason",
    );
    ok(&correct(&["--set", "phq9=11"], "the participant's own questionnaire found"));
    assert_eq!(cell(&export(&db, "outcomes"), ("P1", "m4", "phq9"), "value"), "11");
    verifies(&db);
}

#[test]
fn a_timepoint_whose_values_are_all_corrected_to_missing_is_due_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    ok(&outcome_record_args(&db, M4_NOW, "P1", "m4", "2026-07-02", &["phq9=10"]));
    let due = || -> Vec<(String, String)> {
        let out = ok(&s(&["followup", "due", "--json", "--on", "2026-07-10", "--db", &db.display().to_string()]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| (d["participant"].as_str().unwrap().into(), d["timepoint"].as_str().unwrap().into()))
            .collect()
    };
    assert!(!due().contains(&("P1".into(), "m4".into())));
    ok(&s(&[
        "outcome",
        "correct",
        "--db",
        &db.display().to_string(),
        "--participant",
        "P1",
        "--timepoint",
        "m4",
        "--clear",
        "phq9",
        "--reason",
        "recorded for the wrong participant",
        "--now",
        M4_NOW,
    ]));
    assert!(due().contains(&("P1".into(), "m4".into())));
}

/// The hostile-input catalogue's outcome cases for these rules: each refused
/// with its message, the log unchanged.
#[test]
fn hostile_outcomes_are_refused_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    ok(&outcome_record_args(
        &db,
        M4_NOW,
        "P1",
        "m4",
        "2026-07-02",
        &["weeks_in_paid_work=2", "first_job_date=2026-06-20"],
    ));
    ok(&s(&[
        "died",
        "--db",
        &db.display().to_string(),
        "--participant",
        "P3",
        "--reason",
        "reported by GP",
        "--on",
        "2026-07-05",
        "--now",
        M4_NOW,
    ]));
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "m4 on day 0",
            outcome_record_args(&db, M4_NOW, "P2", "m4", "2026-03-02", &["phq9=10"]),
            "outside the m4 window",
        ),
        (
            "m4 a day after the window",
            outcome_record_args(&db, "2026-08-03T10:00:00Z", "P2", "m4", "2026-08-02", &["phq9=10"]),
            "outside the m4 window (days 92–152: 2026-06-02 to 2026-08-01)",
        ),
        (
            "m4 a day before the window",
            outcome_record_args(&db, M4_NOW, "P2", "m4", "2026-06-01", &["phq9=10"]),
            "outside the m4 window",
        ),
        (
            "m12 primary on day 0",
            outcome_record_args(&db, M4_NOW, "P2", "m12", "2026-03-02", &["paid_work_13_weeks=no"]),
            "outside the m12 window",
        ),
        (
            "PHQ-9 after death",
            outcome_record_args(&db, M12_NOW, "P3", "m12", "2027-03-02", &["phq9=7"]),
            "recorded as died on 2026-07-05",
        ),
        (
            "13+ weeks with a first job 19 days before",
            outcome_record_args(
                &db,
                M12_NOW,
                "P2",
                "m12",
                "2027-03-02",
                &["paid_work_13_weeks=yes", "first_job_date=2027-02-11"],
            ),
            "only 19 days before that collection",
        ),
        (
            "more weeks in work than since the first job",
            outcome_record_args(&db, M12_NOW, "P1", "m12", "2027-03-02", &["weeks_in_paid_work=40"]),
            "weeks_in_paid_work is 40 but the first job began on 2026-06-20",
        ),
        (
            "a first job date unlike m4's",
            outcome_record_args(&db, M12_NOW, "P1", "m12", "2027-03-02", &["first_job_date=2026-06-21"]),
            "differs from the one recorded at m4 (2026-06-20)",
        ),
        (
            "a window reason in the window",
            with(outcome_record_args(&db, M4_NOW, "P2", "m4", "2026-07-02", &["phq9=10"]), &["--window-reason", "x"]),
            "but a window reason is given",
        ),
        (
            "--set FIELD= as a clear",
            s(&[
                "outcome",
                "correct",
                "--db",
                &db.display().to_string(),
                "--participant",
                "P1",
                "--timepoint",
                "m4",
                "--set",
                "weeks_in_paid_work=",
                "--reason",
                "r",
                "--now",
                M4_NOW,
            ]),
            "use --clear weeks_in_paid_work",
        ),
        (
            "--clear a value never recorded",
            s(&[
                "outcome",
                "correct",
                "--db",
                &db.display().to_string(),
                "--participant",
                "P1",
                "--timepoint",
                "m4",
                "--clear",
                "phq9",
                "--reason",
                "r",
                "--now",
                M4_NOW,
            ]),
            "phq9 has no recorded value to correct",
        ),
    ];
    let long = "x".repeat(501);
    let mut cases = cases;
    cases.push((
        "a window reason with a terminal escape",
        with(
            outcome_record_args(&db, M4_NOW, "P2", "m4", "2026-03-02", &["phq9=10"]),
            &["--window-reason", "early\u{1b}[2J"],
        ),
        "the window reason contains a control character",
    ));
    cases.push((
        "a window reason of 501 characters",
        with(outcome_record_args(&db, M4_NOW, "P2", "m4", "2026-03-02", &["phq9=10"]), &["--window-reason", &long]),
        "the window reason is longer than 500 characters",
    ));
    for (name, args, needle) in cases {
        let rows = export(&db, "outcomes");
        eprintln!("case: {name}");
        refused(&db, &args, needle);
        assert_eq!(rows, export(&db, "outcomes"), "{name}: the outcomes changed");
    }
}
