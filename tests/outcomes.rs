//! The outcome store: follow-up due lists, recording, importing, correcting,
//! status changes, validation (each refusal leaves the log unchanged), exports.

use std::path::{Path, PathBuf};

use crate::util::*;

const LATER: &str = "2026-07-10T10:00:00Z";
const YEAR: &str = "2027-03-10T10:00:00Z";

/// A trial with three randomised participants (P1–P3) and one screened out (X1).
fn trial(dir: &Path) -> PathBuf {
    let db = randomised_trial(dir, &["P1", "P2", "P3"], 100);
    chancery().args(randomise_args(&db, "X1", &nhs(200), &[("age", "17")])).assert().success();
    db
}

fn export(db: &Path, what: &str) -> String {
    let out = chancery().args(["export", "--what", what, "--db"]).arg(db).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_due_list_follows_the_windows_and_hides_the_arm() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    let due = |on: &str| -> serde_json::Value {
        let out = chancery().args(["followup", "due", "--json", "--on", on, "--db"]).arg(&db).output().unwrap();
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // Randomised 2026-03-02: m4 target 2026-07-02, window 2026-06-02 to 2026-08-01.
    assert_eq!(due("2026-04-01").as_array().unwrap().len(), 0);
    let soon = due("2026-05-25");
    assert_eq!(soon.as_array().unwrap().len(), 3);
    assert_eq!(soon[0]["state"], "due soon");
    let open = due("2026-07-02");
    assert_eq!(open[0]["state"], "in window");
    assert_eq!(open[0]["timepoint"], "m4");
    assert_eq!(open[0]["window_opens"], "2026-06-02");
    assert!(open[0].get("arm").is_none(), "outcome assessors are not shown the arm");
    let late = due("2026-08-11");
    assert_eq!(late[0]["state"], "overdue");
    assert_eq!(late[0]["days_overdue"], 10);
    // The text lists say each state once (they said "in window window ...").
    let text = |on: &str| -> String {
        let out = chancery().args(["followup", "due", "--on", on, "--db"]).arg(&db).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let lines = text("2026-07-02");
    assert!(lines.contains(" m4   in window (2026-06-02 to 2026-08-01)\n"), "{lines}");
    assert!(!lines.contains("window window"), "{lines}");
    let lines = text("2026-08-11");
    assert!(lines.contains(" m4   overdue   (2026-06-02 to 2026-08-01, 10 days overdue)\n"), "{lines}");
    // Recording m4 for P1 removes it; losing P2 removes P2.
    chancery()
        .args(outcome_record_args(&db, LATER, "P1", "m4", "2026-07-05", &["in_paid_work=no", "weeks_in_paid_work=0"]))
        .assert()
        .success();
    chancery()
        .args(["lost", "--db"])
        .arg(&db)
        .args(["--now", LATER, "--participant", "P2", "--reason", "moved away, no contact details"])
        .assert()
        .success();
    let after = due("2026-07-20");
    let ps: Vec<&str> = after.as_array().unwrap().iter().map(|d| d["participant"].as_str().unwrap()).collect();
    assert_eq!(ps, ["P3"]);
}

#[test]
fn record_import_correct_and_history_keep_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    chancery()
        .args(outcome_record_args(
            &db,
            LATER,
            "P1",
            "m4",
            "2026-07-05",
            &["in_paid_work=yes", "weeks_in_paid_work=6", "first_job_date=2026-05-20", "phq9=9", "eq5d=-0.1"],
        ))
        .assert()
        .success();
    let csv = dir.path().join("m12.csv");
    std::fs::write(
        &csv,
        "participant,timepoint,collected_on,in_paid_work,weeks_in_paid_work,paid_work_13_weeks,phq9\nP1,m12,2027-03-01,yes,30,yes,7\nP2,m12,2027-03-02,no,0,no,15\n",
    )
    .unwrap();
    chancery().args(["outcome", "import", "--db"]).arg(&db).args(["--now", YEAR, "--csv"]).arg(&csv).assert().success();
    chancery()
        .args(["outcome", "correct", "--db"])
        .arg(&db)
        .args([
            "--now",
            YEAR,
            "--participant",
            "P2",
            "--timepoint",
            "m12",
            "--set",
            "phq9=14",
            "--reason",
            "transcription error on the paper form",
        ])
        .assert()
        .success();
    let history = export(&db, "history");
    assert!(history.contains(",P2,m12,phq9,corrected,15,14,2027-03-02,tester,"), "{history}");
    assert!(history.contains("transcription error on the paper form"));
    assert!(history.contains(",P2,m12,phq9,recorded,,15,"), "the original stays: {history}");
    let outcomes = export(&db, "outcomes");
    assert!(outcomes.contains("P2,m12,phq9,14,2027-03-02,"), "{outcomes}");
    assert!(outcomes.lines().any(|l| l.starts_with("P2,m12,phq9,14") && l.ends_with(",2,no")), "version 2: {outcomes}");
    assert!(outcomes.contains("P1,m4,eq5d,-0.1,"), "a negative number is not escaped: {outcomes}");
    let log = export(&db, "log");
    assert!(log.contains("outcome_corrected"));
}

#[test]
fn status_changes_keep_participants_in_their_arm() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    chancery()
        .args(["withdraw", "--db"])
        .arg(&db)
        .args([
            "--now",
            LATER,
            "--participant",
            "P1",
            "--reason",
            "no longer wishes to take part",
            "--no-further-contact",
        ])
        .assert()
        .success();
    chancery()
        .args(["died", "--db"])
        .arg(&db)
        .args(["--now", LATER, "--participant", "P3", "--reason", "notified by GP", "--on", "2026-06-30"])
        .assert()
        .success();
    let participants = export(&db, "participants");
    let header: Vec<&str> = participants.lines().next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = participants.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3, "everyone randomised stays in the analysis set");
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    assert_eq!(rows[0][col("status")], "withdrawn");
    assert_eq!(rows[2][col("status")], "died");
    assert_eq!(rows[2][col("status_on")], "2026-06-30");
    assert!(["ips", "usual_care"].contains(&rows[0][col("arm")]));
    // Died is final.
    refused(
        &db,
        &s(&["lost", "--db", &db.display().to_string(), "--now", LATER, "--participant", "P3", "--reason", "x"]),
        "recorded as died",
    );
    // No further contact: no more data.
    refused(
        &db,
        &outcome_record_args(&db, LATER, "P1", "m4", "2026-07-05", &["phq9=3"]),
        "asked for no further contact",
    );
}

#[test]
fn every_validation_case_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    chancery().args(outcome_record_args(&db, LATER, "P1", "m4", "2026-07-05", &["phq9=9"])).assert().success();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (outcome_record_args(&db, LATER, "P2", "m4", "2026-07-05", &["phq9=28"]), "phq9: 28 is out of range"),
        (outcome_record_args(&db, LATER, "P2", "m4", "2026-07-05", &["phq9=lots"]), "is not a whole number"),
        (outcome_record_args(&db, LATER, "P2", "m4", "2026-07-05", &["earnings_monthly=-5"]), "out of range"),
        (outcome_record_args(&db, LATER, "P2", "m4", "2026-07-05", &["mood=good"]), "unknown outcome \"mood\""),
        (outcome_record_args(&db, LATER, "P2", "m6", "2026-07-05", &["phq9=3"]), "unknown timepoint \"m6\""),
        (outcome_record_args(&db, LATER, "P9", "m4", "2026-07-05", &["phq9=3"]), "unknown participant \"P9\""),
        (outcome_record_args(&db, LATER, "X1", "m4", "2026-07-05", &["phq9=3"]), "never randomised"),
        (outcome_record_args(&db, LATER, "P2", "m4", "2026-02-01", &["phq9=3"]), "before randomisation"),
        (outcome_record_args(&db, LATER, "P2", "m4", "2026-12-01", &["phq9=3"]), "in the future"),
        (outcome_record_args(&db, LATER, "P1", "m4", "2026-07-05", &["phq9=3"]), "already recorded (9)"),
        (
            outcome_record_args(&db, LATER, "P2", "m4", "2026-07-05", &["paid_work_13_weeks=yes"]),
            "paid_work_13_weeks is not collected at m4",
        ),
        (
            outcome_record_args(&db, LATER, "P2", "m4", "2026-07-05", &["in_paid_work=yes", "weeks_in_paid_work=0"]),
            "in_paid_work is yes but weeks_in_paid_work is 0",
        ),
        (
            outcome_record_args(&db, LATER, "P2", "m4", "2026-07-05", &["first_job_date=2026-07-08"]),
            "is after the follow-up date",
        ),
        (
            outcome_record_args(&db, LATER, "P2", "m4", "2026-07-05", &["weeks_in_paid_work=40"]),
            "only 125 days have passed",
        ),
        (
            outcome_record_args(&db, YEAR, "P2", "m12", "2027-03-01", &["paid_work_13_weeks=yes"]),
            "no first_job_date is recorded",
        ),
        (
            outcome_record_args(
                &db,
                YEAR,
                "P2",
                "m12",
                "2027-03-01",
                &["paid_work_13_weeks=no", "weeks_in_paid_work=20"],
            ),
            "13 or more but paid_work_13_weeks is no",
        ),
        (
            s(&[
                "outcome",
                "correct",
                "--db",
                &db.display().to_string(),
                "--now",
                LATER,
                "--participant",
                "P1",
                "--timepoint",
                "m4",
                "--set",
                "phq9=8",
                "--reason",
                " ",
            ]),
            "needs a reason",
        ),
        (
            s(&[
                "outcome",
                "correct",
                "--db",
                &db.display().to_string(),
                "--now",
                LATER,
                "--participant",
                "P2",
                "--timepoint",
                "m4",
                "--set",
                "phq9=8",
                "--reason",
                "typo",
            ]),
            "no recorded value to correct",
        ),
        (
            s(&["withdraw", "--db", &db.display().to_string(), "--now", LATER, "--participant", "X1", "--reason", "x"]),
            "never randomised",
        ),
    ];
    for (args, needle) in cases {
        refused(&db, &args, needle);
    }
}

#[test]
fn a_bad_import_is_refused_whole_listing_every_bad_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    let csv = dir.path().join("bad.csv");
    std::fs::write(&csv, "participant,timepoint,collected_on,phq9\nP1,m4,2026-07-01,5\nP2,m4,2026-07-01,99\nP7,m4,2026-07-01,3\nP3,m4,01/07/2026,3\n").unwrap();
    let before = db_snapshot(&db);
    let out = chancery()
        .args(["outcome", "import", "--db"])
        .arg(&db)
        .args(["--now", LATER, "--csv"])
        .arg(&csv)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.csv:5: collected_on \"01/07/2026\" is not a date"), "{err}");
    std::fs::write(
        &csv,
        "participant,timepoint,collected_on,phq9\nP1,m4,2026-07-01,5\nP2,m4,2026-07-01,99\nP7,m4,2026-07-01,3\n",
    )
    .unwrap();
    let out = chancery()
        .args(["outcome", "import", "--db"])
        .arg(&db)
        .args(["--now", LATER, "--csv"])
        .arg(&csv)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.csv:3: participant P2, m4: phq9: 99 is out of range"), "{err}");
    assert!(err.contains("bad.csv:4: unknown participant \"P7\""), "{err}");
    assert!(!err.contains("bad.csv:2"), "{err}");
    assert!(before == db_snapshot(&db), "the database changed");
}

#[test]
fn exports_match_the_codebook_and_read_as_plain_csv() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    chancery()
        .args(outcome_record_args(&db, LATER, "P1", "m4", "2026-07-05", &["phq9=9", "eq5d=0.5"]))
        .assert()
        .success();
    let codebook = export(&db, "codebook");
    let mut reader = csv::Reader::from_reader(codebook.as_bytes());
    let documented: Vec<(String, String)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), r[1].to_string())
        })
        .collect();
    for what in ["participants", "outcomes", "history", "allocations"] {
        let text = export(&db, what);
        let header = text.lines().next().unwrap();
        for column in header.split(',') {
            assert!(documented.iter().any(|(e, c)| e == what && c == column), "{what}.{column} is not in the codebook");
        }
    }
    let participants = export(&db, "participants");
    assert!(participants.lines().next().unwrap().contains("phq9_m12"));
    assert!(participants.contains(",9,") && participants.contains("0.5"));
    assert!(!participants.contains(&nhs(100)), "no identifier in exports");
    // A formula-like text value is escaped.
    chancery()
        .args(["withdraw", "--db"])
        .arg(&db)
        .args(["--now", LATER, "--participant", "P2", "--reason", "=HYPERLINK(\"x\")"])
        .assert()
        .success();
    assert!(export(&db, "participants").contains("'=HYPERLINK"));
}

/// The derived tables as schema 1 laid them out (chancery 0.1 before the
/// `WITHOUT ROWID` tables): what `chancery migrate` starts from.
const SCHEMA_1_DERIVED: &str = "
CREATE TABLE referrals (participant TEXT PRIMARY KEY, seq INTEGER NOT NULL, site TEXT NOT NULL,
    status TEXT NOT NULL, reasons TEXT NOT NULL, screened_at TEXT NOT NULL);
CREATE TABLE participants (participant TEXT PRIMARY KEY, seq INTEGER NOT NULL, site TEXT NOT NULL,
    stratum TEXT NOT NULL, arm TEXT NOT NULL, identity TEXT NOT NULL UNIQUE, randomised_at TEXT NOT NULL);
CREATE TABLE outcomes (participant TEXT NOT NULL, timepoint TEXT NOT NULL, field TEXT NOT NULL,
    value TEXT NOT NULL, collected_on TEXT NOT NULL, recorded_at TEXT NOT NULL, user TEXT NOT NULL,
    version INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (participant, timepoint, field)) WITHOUT ROWID;
CREATE TABLE participant_status (participant TEXT PRIMARY KEY, status TEXT NOT NULL, reason TEXT NOT NULL,
    no_further_contact INTEGER NOT NULL, on_date TEXT NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE allocation_streams (stream TEXT PRIMARY KEY, block INTEGER NOT NULL, start_word INTEGER NOT NULL,
    used INTEGER NOT NULL, next_word INTEGER NOT NULL);
CREATE TABLE allocation_counts (factor INTEGER NOT NULL, level INTEGER NOT NULL, arm INTEGER NOT NULL,
    n INTEGER NOT NULL, PRIMARY KEY (factor, level, arm));
";

/// The derived tables as schema 2 laid them out (`WITHOUT ROWID`, before
/// `participants` became a view of the randomised referrals).
const SCHEMA_2_DERIVED: &str = "
CREATE TABLE referrals (participant TEXT PRIMARY KEY, seq INTEGER NOT NULL, site TEXT NOT NULL,
    status TEXT NOT NULL, reasons TEXT NOT NULL, screened_at TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE participants (participant TEXT PRIMARY KEY, seq INTEGER NOT NULL, site TEXT NOT NULL,
    stratum TEXT NOT NULL, arm TEXT NOT NULL, identity TEXT NOT NULL UNIQUE, randomised_at TEXT NOT NULL)
    WITHOUT ROWID;
CREATE TABLE outcomes (participant TEXT NOT NULL, timepoint TEXT NOT NULL, field TEXT NOT NULL,
    value TEXT NOT NULL, collected_on TEXT NOT NULL, version INTEGER NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (participant, timepoint, field)) WITHOUT ROWID;
CREATE TABLE participant_status (participant TEXT PRIMARY KEY, status TEXT NOT NULL, reason TEXT NOT NULL,
    no_further_contact INTEGER NOT NULL, on_date TEXT NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE allocation_streams (stream TEXT PRIMARY KEY, block INTEGER NOT NULL, start_word INTEGER NOT NULL,
    used INTEGER NOT NULL, next_word INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE allocation_counts (factor INTEGER NOT NULL, level INTEGER NOT NULL, arm INTEGER NOT NULL,
    n INTEGER NOT NULL, PRIMARY KEY (factor, level, arm)) WITHOUT ROWID;
";

/// The accounts' tables, which no schema before 5 had.
pub(crate) const DROP_ACCOUNT_TABLES: &str =
    "DROP TABLE accounts; DROP TABLE tokens; DROP TABLE credentials; DROP TABLE token_secrets; DROP TABLE access_log;";

/// Rewrites a current database's derived tables in the layout of an earlier
/// schema (1 or 2), as a file written by that release would hold them.
pub(crate) fn downgrade(db: &Path, schema: i32) {
    let mut c = rusqlite::Connection::open(db).unwrap();
    let tx = c.transaction().unwrap();
    tx.execute_batch(DROP_ACCOUNT_TABLES).unwrap();
    let tables = ["referrals", "outcomes", "participant_status", "allocation_streams", "allocation_counts"];
    tx.execute_batch("DROP VIEW participants; DROP TABLE identities;").unwrap();
    for t in tables {
        tx.execute_batch(&format!("ALTER TABLE {t} RENAME TO cur_{t};")).unwrap();
    }
    tx.execute_batch(if schema == 1 { SCHEMA_1_DERIVED } else { SCHEMA_2_DERIVED }).unwrap();
    tx.execute_batch(
        "INSERT INTO referrals SELECT participant, seq, site, status, reasons, screened_at FROM cur_referrals;
         INSERT INTO participants SELECT participant, seq, site, stratum, arm, identity, screened_at
             FROM cur_referrals WHERE status = 'randomised';",
    )
    .unwrap();
    for t in ["participant_status", "allocation_streams", "allocation_counts"] {
        tx.execute_batch(&format!("INSERT INTO {t} SELECT * FROM cur_{t};")).unwrap();
    }
    tx.execute_batch(if schema == 1 {
        "INSERT INTO outcomes SELECT o.participant, o.timepoint, o.field, o.value, o.collected_on,
                l.ts, json_extract(l.body, '$.user'), o.version, o.seq
         FROM cur_outcomes AS o JOIN log AS l ON l.seq = o.seq;"
    } else {
        "INSERT INTO outcomes SELECT * FROM cur_outcomes;"
    })
    .unwrap();
    for t in tables {
        tx.execute_batch(&format!("DROP TABLE cur_{t};")).unwrap();
    }
    tx.pragma_update(None, "user_version", schema).unwrap();
    tx.commit().unwrap();
}

#[test]
fn an_older_schema_is_refused_until_migrated_and_then_reads_and_verifies_as_before() {
    for schema in [1, 2] {
        older_schema_migrates(schema);
    }
}

fn older_schema_migrates(schema: i32) {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    chancery()
        .args(outcome_record_args(
            &db,
            LATER,
            "P1",
            "m4",
            "2026-07-05",
            &["in_paid_work=no", "weeks_in_paid_work=0", "phq9=9"],
        ))
        .assert()
        .success();
    chancery()
        .args(["outcome", "correct", "--db"])
        .arg(&db)
        .args(["--now", LATER, "--participant", "P1", "--timepoint", "m4", "--set", "phq9=8", "--reason", "typo"])
        .assert()
        .success();
    chancery()
        .args(["withdraw", "--db"])
        .arg(&db)
        .args(["--now", LATER, "--participant", "P2", "--reason", "moved away"])
        .assert()
        .success();
    let whats = ["allocations", "participants", "outcomes", "history"];
    let before: Vec<String> = whats.iter().map(|w| export(&db, w)).collect();
    let status = |db: &Path| chancery().args(["status", "--json", "--db"]).arg(db).output().unwrap();
    let status_before = status(&db).stdout;

    downgrade(&db, schema);
    let bytes_v1 = std::fs::read(&db).unwrap();
    let refused = status(&db);
    assert_eq!(refused.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&refused.stderr);
    assert!(msg.contains(&format!("schema {schema}")) && msg.contains("chancery migrate --db"), "{msg}");
    // Verification reads the older file as it is: the log checked, the tables
    // left for after `migrate` (tests/verify_schema.rs has the details).
    let audit = chancery().args(["verify", "--db"]).arg(&db).output().unwrap();
    assert_eq!(audit.status.code(), Some(0), "{}", String::from_utf8_lossy(&audit.stderr));
    assert!(String::from_utf8_lossy(&audit.stdout).contains("chancery migrate"));
    assert_eq!(std::fs::read(&db).unwrap(), bytes_v1, "refusing writes nothing");

    let out = chancery().args(["migrate", "--db"]).arg(&db).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("from schema {schema} to {}", chancery::store::SCHEMA_VERSION))
    );
    let after: Vec<String> = whats.iter().map(|w| export(&db, w)).collect();
    assert_eq!(after, before, "every export reads as it did before the downgrade");
    assert_eq!(status(&db).stdout, status_before);
    chancery().args(["verify", "--db"]).arg(&db).assert().success();

    let again = chancery().args(["migrate", "--db"]).arg(&db).output().unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing to migrate"));

    // Files that are not chancery databases are refused and left as they were.
    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other).unwrap().execute_batch("CREATE TABLE referrals (x);").unwrap();
    let bytes = std::fs::read(&other).unwrap();
    let out = chancery().args(["migrate", "--db"]).arg(&other).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a chancery database"));
    assert_eq!(std::fs::read(&other).unwrap(), bytes);
    let out = chancery().args(["migrate", "--db"]).arg(dir.path().join("missing.db")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    assert!(!dir.path().join("missing.db").exists());
}

#[test]
fn rows_of_one_import_see_the_values_recorded_by_earlier_rows() {
    // An import reads each participant once and carries the values its own
    // earlier rows recorded: a later row must be judged against them exactly
    // as if they had been committed first.
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    let csv = dir.path().join("f.csv");
    let import = |rows: &str| {
        std::fs::write(&csv, format!("participant,timepoint,collected_on,in_paid_work,weeks_in_paid_work,first_job_date,paid_work_13_weeks,phq9\n{rows}")).unwrap();
        chancery()
            .args(["outcome", "import", "--db"])
            .arg(&db)
            .args(["--now", YEAR, "--csv"])
            .arg(&csv)
            .output()
            .unwrap()
    };
    let before = db_snapshot(&db);
    // The same value twice, on two rows: the second is refused, and with it the file.
    let out = import("P1,m4,2026-07-01,,,,,5\nP2,m4,2026-07-01,,,,,6\nP1,m4,2026-07-02,,,,,7\n");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("f.csv:4: participant P1, m4: phq9 is already recorded (5)"), "{err}");
    assert!(before == db_snapshot(&db), "the database changed");
    // 13+ weeks at m12 needs a first job date at some timepoint: an earlier row's counts.
    let out = import("P1,m4,2026-07-01,yes,4,2026-06-01,,5\nP1,m12,2027-03-01,yes,30,,yes,4\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Without it, the m12 row contradicts itself and is refused.
    let out = import("P2,m4,2026-07-01,no,0,,,5\nP2,m12,2027-03-01,yes,30,,yes,4\n");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("f.csv:3: participant P2, m12: paid_work_13_weeks is yes but no first_job_date"), "{err}");
}
