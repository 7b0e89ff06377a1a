//! Consent and data protection: a request for no further contact that sticks
//! until consent is renewed, files made owner-only, one rule for reasons and
//! users, and writers that use only the protocol log entry 0 commits to.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::util::*;

const LATER: &str = "2026-07-10T10:00:00Z";

/// A trial with three randomised participants, P1 to P3.
fn trial(dir: &Path) -> PathBuf {
    randomised_trial(dir, &["P1", "P2", "P3"], 300)
}

/// A writing command's [`db_args`], at [`LATER`].
fn write_args(cmd: &str, db: &Path, rest: &[&str]) -> Vec<String> {
    let mut a = db_args(cmd, db, rest);
    a.extend(s(&["--now", LATER]));
    a
}

/// `cmd` (its words), `--db DB`, then `rest`.
fn db_args(cmd: &str, db: &Path, rest: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
    a.push("--db".into());
    a.push(db.display().to_string());
    a.extend(s(rest));
    a
}

fn ok(args: &[String]) -> String {
    let out = chancery().env("CHANCERY_NOW", LATER).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn record_m4(db: &Path, participant: &str) -> Vec<String> {
    let rest = ["--now", LATER, "--participant", participant, "--timepoint", "m4", "--on", "2026-07-05"];
    let values = ["--set", "phq9=10", "--set", "in_paid_work=no", "--set", "weeks_in_paid_work=0"];
    db_args("outcome record", db, &[&rest[..], &values[..]].concat())
}

/// The participants `followup due` lists on a day inside P1's and P2's m4 window.
fn due(db: &Path) -> Vec<String> {
    let out = ok(&db_args("followup due", db, &["--json", "--on", "2026-07-10"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array().unwrap().iter().map(|d| d["participant"].as_str().unwrap().to_string()).collect()
}

/// Each row's `no_further_contact` cell in an export, by its participant column.
fn flags(db: &Path, what: &str) -> Vec<(String, String)> {
    let text = ok(&db_args("export", db, &["--what", what]));
    let mut rows = csv::Reader::from_reader(text.as_bytes());
    let header = rows.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("{what}: no {name} column"));
    let (p, f) = (col("participant"), col("no_further_contact"));
    rows.records().map(|r| r.unwrap()).map(|r| (r[p].to_string(), r[f].to_string())).collect()
}

fn reference_verifier_passes(db: &Path) {
    let out = std::process::Command::new("python3")
        .arg(root().join("tests/vectors/verify.py"))
        .arg(db)
        .output()
        .expect("python3 runs the reference verifier");
    assert!(out.status.success(), "reference verifier: {}", String::from_utf8_lossy(&out.stdout));
}

// See: a `withdraw --no-further-contact` followed by a `withdraw` without the
// flag, or by `lost`, lost the request; outcomes could then be recorded and the
// participant was back on the due list.
#[test]
fn no_further_contact_stands_through_later_status_changes_until_consent_is_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    for p in ["P1", "P2"] {
        ok(&write_args("withdraw", &db, &["--participant", p, "--reason", "asked by phone", "--no-further-contact"]));
    }
    ok(&write_args("withdraw", &db, &["--participant", "P1", "--reason", "stopped the intervention"]));
    ok(&write_args("lost", &db, &["--participant", "P2", "--reason", "no reply to letters"]));
    for p in ["P1", "P2"] {
        refused(&db, &record_m4(&db, p), "asked for no further contact; no further data may be recorded");
    }
    assert_eq!(due(&db), ["P3"], "P1 and P2 must not be on the due list");
    let status = ok(&db_args("status", &db, &[]));
    assert!(status.contains("lost 1, withdrawn 1; no further contact 2"), "{status}");
    let asked = |p1: &str, p2: &str| -> Vec<(String, String)> {
        [("P1", p1), ("P2", p2), ("P3", "no")].iter().map(|(p, f)| (p.to_string(), f.to_string())).collect()
    };
    for what in ["allocations", "participants"] {
        assert_eq!(flags(&db, what), asked("yes", "yes"), "{what}");
    }
    ok(&record_m4(&db, "P3"));
    assert_eq!(flags(&db, "outcomes").iter().filter(|(p, f)| p == "P3" && f == "no").count(), 3);
    chancery().args(["verify", "--db"]).arg(&db).assert().success();
    reference_verifier_passes(&db);

    // Only renewed consent, with a reason, lifts it.
    refused(&db, &write_args("reconsent", &db, &["--participant", "P1", "--reason", " "]), "needs a reason");
    let out =
        ok(&write_args("reconsent", &db, &["--participant", "P1", "--reason", "asked to take part again, in writing"]));
    assert!(out.contains("P1: consent renewed"), "{out}");
    assert_eq!(due(&db), ["P1"], "P1 is due again; P2 stays lost");
    assert_eq!(flags(&db, "participants"), asked("no", "yes"));
    ok(&record_m4(&db, "P1"));
    refused(&db, &record_m4(&db, "P2"), "asked for no further contact");
    assert!(flags(&db, "history").iter().all(|(_, f)| f == "no"));
    let log = log_snapshot(&db);
    assert!(log.contains("consent_renewed") && log.contains("asked to take part again, in writing"), "{log}");
    chancery().args(["verify", "--db"]).arg(&db).assert().success();
    reference_verifier_passes(&db);

    // There is nothing to renew for a participant who never asked, nor twice.
    refused(
        &db,
        &write_args("reconsent", &db, &["--participant", "P3", "--reason", "phoned"]),
        "participant P3 has not asked for no further contact",
    );
    refused(
        &db,
        &write_args("reconsent", &db, &["--participant", "P1", "--reason", "phoned"]),
        "participant P1 has not asked for no further contact",
    );
    ok(&write_args("died", &db, &["--participant", "P2", "--reason", "reported by GP"]));
    refused(
        &db,
        &write_args("reconsent", &db, &["--participant", "P2", "--reason", "phoned"]),
        "participant P2 is recorded as died",
    );
    assert_eq!(flags(&db, "participants"), asked("no", "yes"), "a death keeps the request");

    // The flag is derived from the log: clearing it behind the log's back is
    // found by both verifiers.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("UPDATE participant_status SET no_further_contact = 0 WHERE participant = 'P2'", [])
        .unwrap();
    let audit = chancery().args(["verify", "--db"]).arg(&db).output().unwrap();
    let err = String::from_utf8_lossy(&audit.stderr);
    assert!(err.contains("table participant_status row \"P2\"") && err.contains("no_further_contact=0"), "{err}");
    let reference =
        std::process::Command::new("python3").arg(root().join("tests/vectors/verify.py")).arg(&db).output().unwrap();
    assert_eq!(reference.status.code(), Some(1), "{}", String::from_utf8_lossy(&reference.stdout));
}

#[test]
fn a_schema_3_file_migrates_to_the_request_that_stands() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    ok(&write_args("withdraw", &db, &["--participant", "P1", "--reason", "asked by phone", "--no-further-contact"]));
    ok(&write_args("lost", &db, &["--participant", "P1", "--reason", "moved away"]));
    // As schema 3 left it: the latest change's flag only.
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(&format!(
        "UPDATE participant_status SET no_further_contact = 0; {} PRAGMA user_version = 3;",
        crate::outcomes::DROP_ACCOUNT_TABLES
    ))
    .unwrap();
    drop(c);
    // An auditor's verify reads the older file as it is and leaves the tables to migrate.
    let audit = chancery().args(["verify", "--db"]).arg(&db).output().unwrap();
    let said = String::from_utf8_lossy(&audit.stdout);
    assert!(said.contains("schema 3") && said.contains("chancery migrate"), "{said}");
    let out = ok(&db_args("migrate", &db, &[]));
    assert!(out.contains(&format!("from schema 3 to {}", chancery::store::SCHEMA_VERSION)), "{out}");
    assert_eq!(flags(&db, "participants")[0], ("P1".into(), "yes".into()));
    refused(&db, &record_m4(&db, "P1"), "asked for no further contact");
    chancery().args(["verify", "--db"]).arg(&db).assert().success();
    reference_verifier_passes(&db);
}

/// The chancery binary under umask 022 (the usual one), as `sh` runs it.
fn under_umask_022(args: &[String]) -> std::process::Output {
    let bin = assert_cmd::cargo::cargo_bin("chancery");
    std::process::Command::new("sh")
        .args(["-c", "umask 022 && exec \"$0\" \"$@\""])
        .arg(bin)
        .args(args)
        .env("CHANCERY_NOW", LATER)
        .env("USER", "tester")
        .output()
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn side(db: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", db.display()))
}

// See: under umask 022 the database, its -wal and -shm, and every export were
// created 0644, readable by every user of the machine.
#[test]
fn the_database_its_side_files_backups_and_outputs_are_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trial.db");
    let init = s(&["init", "--protocol", &protocol("work-health-ips.toml").display().to_string(), "--seed", SEED]);
    let out = under_umask_022(&[init, s(&["--db", &db.display().to_string()])].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mode(&db), 0o600);
    // SQLite makes the -wal and -shm while a connection is open.
    let c = rusqlite::Connection::open(&db).unwrap();
    c.query_row("SELECT count(*) FROM log", [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!((mode(&side(&db, "-wal")), mode(&side(&db, "-shm"))), (0o600, 0o600));
    drop(c);

    let run = |args: &[&str]| {
        let out = under_umask_022(&db_args(args[0], &db, &args[1..]));
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let path = |name: &str| dir.path().join(name).display().to_string();
    run(&["export", "--what", "log", "--out", &path("log.csv")]);
    run(&["export", "--what", "log", "--out", &path("shared.csv"), "--mode", "0640"]);
    run(&["analyse", "--out", &path("analysis")]);
    run(&["report", "--out", &path("report")]);
    assert_eq!(mode(&dir.path().join("log.csv")), 0o600);
    assert_eq!(mode(&dir.path().join("shared.csv")), 0o640, "--mode gives the permissions asked for");
    assert_eq!(mode(&dir.path().join("report/report.html")), 0o600);
    for f in std::fs::read_dir(dir.path().join("analysis")).unwrap() {
        assert_eq!(mode(&f.as_ref().unwrap().path()), 0o600, "{:?}", f.unwrap().path());
    }
    let bad = chancery().args(db_args("export", &db, &["--what", "log", "--mode", "0755"])).output().unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a file mode"));

    // See: backup left the copy's .partial-wal and .partial-shm beside it, 0644.
    run(&["backup", "--to", &path("copy.db")]);
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert!(!names.iter().any(|n| n.contains("partial")), "{names:?}");
    assert_eq!(mode(&dir.path().join("copy.db")), 0o600);
    chancery().args(["verify", "--db"]).arg(dir.path().join("copy.db")).assert().success();
}

// See: status-change reasons accepted terminal escape sequences and 100,000
// characters; an empty --user, or none with $USER unset, was recorded as "unknown".
#[test]
fn reasons_and_users_are_printable_bounded_and_never_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    ok(&record_m4(&db, "P2"));
    let escape = "moved\u{1b}[2J away";
    let long = "x".repeat(501);
    for args in [
        write_args("withdraw", &db, &["--participant", "P1", "--reason", escape]),
        write_args("lost", &db, &["--participant", "P1", "--reason", escape]),
        write_args("died", &db, &["--participant", "P1", "--reason", escape]),
        write_args("reveal", &db, &["--reason", escape]),
        db_args(
            "outcome correct",
            &db,
            &["--participant", "P2", "--timepoint", "m4", "--set", "phq9=11", "--reason", escape],
        ),
    ] {
        refused(&db, &args, "contains a control character (U+001B) at character 6");
    }
    refused(
        &db,
        &write_args("withdraw", &db, &["--participant", "P1", "--reason", &long]),
        "is 501 characters long; give at most 500",
    );
    refused(
        &db,
        &write_args("withdraw", &db, &["--participant", "P1", "--reason", "moved", "--user", ""]),
        "--user is empty",
    );
    refused(
        &db,
        &write_args("withdraw", &db, &["--participant", "P1", "--reason", "moved", "--user", "a\u{7}b"]),
        "U+0007",
    );

    let before = log_snapshot(&db);
    let out = chancery()
        .env_remove("USER")
        .env("CHANCERY_NOW", LATER)
        .args(write_args("withdraw", &db, &["--participant", "P1", "--reason", "moved"]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("$USER is unset; give --user NAME"));
    assert_eq!(log_snapshot(&db), before);
    assert!(!before.contains("unknown"));
}

// See: after the trial table's protocol was edited (age rule ≥ 16), a
// 17-year-old was randomised; verify then printed both protocols in full.
#[test]
fn writers_use_only_the_protocol_log_entry_0_commits_to() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    let c = rusqlite::Connection::open(&db).unwrap();
    let text: String = c.query_row("SELECT protocol FROM trial", [], |r| r.get(0)).unwrap();
    let edited = text.replace("op = \"ge\", value = 18", "op = \"ge\", value = 16");
    assert_ne!(edited, text);
    c.execute("UPDATE trial SET protocol = ?1", [&edited]).unwrap();
    drop(c);
    // Exports open the trial as writers do, so the log is compared in SQLite.
    let log = || -> Vec<String> {
        let c = rusqlite::Connection::open(&db).unwrap();
        let mut q = c.prepare("SELECT body FROM log ORDER BY seq").unwrap();
        q.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
    };
    let before = log();
    let mut randomise = db_args("randomise", &db, &[]);
    randomise.extend(referral_args("Y1", "sheffield", &nhs(400), &[("age", "17")]));
    for (args, needle) in [
        (randomise, "the database's trial table was altered: its protocol (sha256 "),
        (write_args("withdraw", &db, &["--participant", "P1", "--reason", "moved"]), "run `chancery verify --db"),
    ] {
        let out = chancery().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(needle) && err.lines().count() == 1, "{err}");
    }
    assert_eq!(log(), before, "nothing was written");

    let out = chancery().args(["verify", "--db"]).arg(&db).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.len() < 600, "one readable line, not both protocols: {err}");
    assert!(err.contains("table trial") && err.contains("protocol=") && err.contains("characters, sha256"), "{err}");
    assert!(!err.contains("[[eligibility]]"), "{err}");
}
