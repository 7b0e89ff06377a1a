//! The clock: a given time far ahead of the system clock refused, the system
//! clock never refused for an entry slightly ahead, one clock for every
//! command with a notion of "today", and the trial's calendar dates in its
//! time zone (around midnight and both daylight-saving changes). The system
//! clock under concurrent writers is tested in tests/hardening.rs.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

use crate::util::*;

/// The binary on the system clock: no fixed time, no allowance for the future.
fn real_clock() -> Command {
    let mut c = chancery();
    c.env_remove("CHANCERY_NOW").env_remove("CHANCERY_ALLOW_FUTURE_TIME");
    c
}

fn randomise(db: &Path, participant: &str, i: u32) -> Vec<String> {
    randomise_args(db, participant, &nhs(i), &[])
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// See: issue 18 — `--now 2062-…` (a mistyped 2026) was accepted, after which
/// every write on the real clock was refused as back-dated, for ever.
#[test]
fn a_given_time_far_ahead_of_the_system_clock_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trial.db");
    init_command(real_clock(), &protocol("work-health-ips.toml"), &db).assert().success();
    for mistyped in ["2062-12-07T10:00:00Z", "9999-12-31T00:00:00Z"] {
        let before = log_snapshot(&db);
        let mut args = randomise(&db, "P1", 1);
        args.extend(s(&["--now", mistyped]));
        let out = real_clock().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("more than 5 minutes ahead of the system clock"), "{err}");
        assert!(err.contains("--allow-future-time"), "the message names the flag: {err}");
        assert_eq!(before, log_snapshot(&db), "nothing written");
        // The same through the environment.
        let out = real_clock().env("CHANCERY_NOW", mistyped).args(randomise(&db, "P1", 1)).output().unwrap();
        assert!(stderr(&out).contains("more than 5 minutes ahead"), "{}", stderr(&out));
    }
    // The real clock still writes.
    real_clock().args(randomise(&db, "P1", 1)).assert().success();
    // A simulation may date ahead when it says so, by flag or environment.
    let mut args = randomise(&db, "P2", 2);
    args.extend(s(&["--now", "2062-12-07T10:00:00Z", "--allow-future-time"]));
    real_clock().args(&args).assert().success();
    real_clock()
        .env("CHANCERY_NOW", "2062-12-08T10:00:00Z")
        .env("CHANCERY_ALLOW_FUTURE_TIME", "1")
        .args(randomise(&db, "P3", 3))
        .assert()
        .success();
    // After it, the real clock is refused with a message that says why.
    let out = real_clock().args(randomise(&db, "P4", 4)).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the system clock") && err.contains("behind the log's last entry"), "{err}");
}

/// See: issue 18 — only a given time earlier than the log's last entry is
/// refused; the system clock is never refused for an entry a moment ahead
/// of it (a time given up to the tolerance ahead): it records at that entry's time.
#[test]
fn the_system_clock_is_not_refused_after_an_entry_a_little_ahead_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trial.db");
    init_command(real_clock(), &protocol("work-health-ips.toml"), &db).assert().success();
    let ahead = chancery::clock::Timestamp(chrono::Utc::now() + chrono::Duration::minutes(3)).to_log_text();
    let mut args = randomise(&db, "P1", 1);
    args.extend(s(&["--now", &ahead]));
    real_clock().args(&args).assert().success();
    let out = real_clock().args(randomise(&db, "P2", 2)).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let log = log_snapshot(&db);
    let last = log.lines().last().unwrap();
    assert!(last.contains(&ahead), "recorded at the entry ahead's time, not before it: {last}");
    // A given time before the last entry is still refused.
    let mut early = randomise(&db, "P3", 3);
    early.extend(s(&["--now", "2026-01-01T00:00:00Z"]));
    refused(&db, &early, "cannot be back-dated");
}

/// See: issue 18 — `followup due` planned for the system's date even when
/// `CHANCERY_NOW` said otherwise.
#[test]
fn followup_due_uses_the_same_clock_as_the_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = init(dir.path(), "work-health-ips.toml");
    chancery().args(randomise(&db, "P1", 1)).assert().success();
    // Randomised 2026-03-02: m4 window 2026-06-02 to 2026-08-01.
    let out = chancery()
        .env("CHANCERY_NOW", "2026-07-02T10:00:00Z")
        .args(["followup", "due", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.starts_with("follow-up due on 2026-07-02: 1"), "{text}");
    let out =
        chancery().args(["followup", "due", "--db"]).arg(&db).args(["--now", "2026-04-01T10:00:00Z"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("follow-up due on 2026-04-01: 0"));
}

/// The default protocol declaring the time zone `zone`, or none if it is empty.
fn london_protocol(dir: &Path, zone: &str) -> PathBuf {
    let text = std::fs::read_to_string(protocol("work-health-ips.toml")).unwrap();
    let text: String = text.lines().filter(|l| !l.starts_with("timezone = ")).map(|l| format!("{l}\n")).collect();
    let title = text.lines().find(|l| l.starts_with("title = ")).unwrap();
    let text = if zone.is_empty() {
        text.clone()
    } else {
        text.replacen(title, &format!("{title}\ntimezone = \"{zone}\""), 1)
    };
    let path = dir.join("london.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn init_with(dir: &Path, protocol: &Path) -> PathBuf {
    let db = dir.join("trial.db");
    init_command(chancery(), protocol, &db).assert().success();
    db
}

fn at(now: &str, args: Vec<String>) -> Vec<String> {
    let mut a = args;
    a.extend(s(&["--now", now]));
    a
}

fn withdraw(db: &Path, participant: &str, on: Option<&str>) -> Vec<String> {
    let mut a = s(&["withdraw", "--db", &db.display().to_string(), "--participant", participant, "--reason", "moved"]);
    if let Some(on) = on {
        a.extend(s(&["--on", on]));
    }
    a
}

fn record(db: &Path, participant: &str, on: Option<&str>) -> Vec<String> {
    let mut a = s(&["outcome", "record", "--db", &db.display().to_string(), "--participant", participant]);
    a.extend(s(&["--timepoint", "m4", "--set", "phq9=8"]));
    if let Some(on) = on {
        a.extend(s(&["--on", on]));
    }
    a
}

fn ok(args: &[String]) {
    let out = chancery().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
}

/// See: issue 18 — "today" was the UTC date, so in British Summer Time a
/// follow-up recorded between midnight and 01:00 was refused as dated in the
/// future. Dates people enter are in the trial's time zone; log times stay UTC.
#[test]
fn dates_people_enter_are_in_the_trial_time_zone_around_midnight_and_both_clock_changes() {
    let dir = tempfile::tempdir().unwrap();
    let db = init_with(dir.path(), &london_protocol(dir.path(), "Europe/London"));
    let d = db.display().to_string();
    // Randomised 09:00 on 2 March 2026 (GMT).
    for (i, p) in ["P1", "P2", "P3"].iter().enumerate() {
        ok(&randomise(&db, p, 1 + i as u32));
    }
    // Spring: clocks go forward at 01:00 GMT on 29 March. 23:30 UTC on the
    // 28th is 23:30 GMT on the 28th: the 29th is still tomorrow.
    refused(&db, &at("2026-03-28T23:30:00Z", withdraw(&db, "P1", Some("2026-03-29"))), "today (2026-03-28)");
    // 23:30 UTC on the 29th is 00:30 BST on the 30th.
    ok(&at("2026-03-29T23:30:00Z", withdraw(&db, "P1", Some("2026-03-30"))));
    // Midsummer: 23:30 UTC on 30 June is 00:30 on 1 July in London; the
    // collection date given and the default are both 1 July.
    ok(&at("2026-06-30T23:30:00Z", record(&db, "P2", Some("2026-07-01"))));
    ok(&at("2026-06-30T23:40:00Z", record(&db, "P3", None)));
    let outcomes = {
        let out = chancery().args(["export", "--what", "outcomes", "--db", &d]).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let p3: Vec<&str> = outcomes.lines().filter(|l| l.starts_with("P3,")).collect();
    assert!(!p3.is_empty() && p3.iter().all(|l| l.contains("2026-07-01")), "{outcomes}");
    // The log's times stay UTC.
    assert!(log_snapshot(&db).contains("2026-06-30T23:40:00.000000Z"));
    let due = chancery().args(["followup", "due", "--db", &d, "--now", "2026-06-30T23:45:00Z"]).output().unwrap();
    assert!(String::from_utf8_lossy(&due.stdout).starts_with("follow-up due on 2026-07-01:"));
    // A randomisation at 00:30 BST on 1 July is dated 1 July: 30 June is before it.
    ok(&at("2026-06-30T23:50:00Z", randomise(&db, "P4", 4)));
    refused(
        &db,
        &at("2026-07-01T09:00:00Z", withdraw(&db, "P4", Some("2026-06-30"))),
        "between randomisation (2026-07-01)",
    );
    ok(&at("2026-07-01T09:00:00Z", withdraw(&db, "P4", Some("2026-07-01"))));
    // Autumn: clocks go back at 01:00 UTC on 25 October. 23:30 UTC on the 24th
    // is 00:30 BST on the 25th; 23:30 UTC on the 25th is 23:30 GMT on the 25th.
    ok(&at("2026-10-24T23:30:00Z", withdraw(&db, "P2", Some("2026-10-25"))));
    refused(&db, &at("2026-10-25T23:30:00Z", withdraw(&db, "P3", Some("2026-10-26"))), "today (2026-10-25)");
    ok(&at("2026-10-25T23:30:00Z", withdraw(&db, "P3", None)));
    let statuses = {
        let out = chancery().args(["export", "--what", "participants", "--db", &d]).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let column = |participant: &str, name: &str| -> String {
        let header: Vec<&str> = statuses.lines().next().unwrap().split(',').collect();
        let i = header.iter().position(|h| *h == name).unwrap();
        let row = statuses.lines().find(|l| l.starts_with(&format!("{participant},"))).unwrap();
        row.split(',').nth(i).unwrap().to_string()
    };
    assert_eq!(column("P3", "status_on"), "2026-10-25", "the default status date is the trial's today");
    assert_eq!(column("P4", "randomised_on"), "2026-07-01", "exported in the trial's zone, as validated");
    assert_eq!(column("P1", "randomised_on"), "2026-03-02");
    verify_clean(&db);
}

/// A protocol that names no time zone keeps UTC dates, as before.
#[test]
fn a_protocol_without_a_time_zone_keeps_utc_dates() {
    let dir = tempfile::tempdir().unwrap();
    let db = init_with(dir.path(), &london_protocol(dir.path(), ""));
    ok(&randomise(&db, "P1", 1));
    refused(
        &db,
        &at("2026-06-30T23:30:00Z", record(&db, "P1", Some("2026-07-01"))),
        "is in the future (today is 2026-06-30)",
    );
    ok(&at("2026-06-30T23:30:00Z", record(&db, "P1", Some("2026-06-30"))));
}

#[test]
fn an_unknown_time_zone_is_refused_at_init_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = london_protocol(dir.path(), "Europe/Lndon");
    let line = std::fs::read_to_string(&path).unwrap().lines().position(|l| l.starts_with("timezone")).unwrap() + 1;
    let db = dir.path().join("trial.db");
    let out = init_command(chancery(), &path, &db).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("london.toml:{line}: timezone \"Europe/Lndon\" is not an IANA time zone name")),
        "{err}"
    );
    assert!(!db.exists(), "nothing created");
}

fn verify_clean(db: &Path) {
    let out = chancery().args(["verify", "--json", "--db"]).arg(db).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v:#}");
}

/// The default protocol is the trial's, in England: its dates are London's.
#[test]
fn the_default_protocol_dates_in_london() {
    let dir = tempfile::tempdir().unwrap();
    let db = init(dir.path(), "work-health-ips.toml");
    ok(&randomise(&db, "P1", 1));
    // 23:30 UTC on 30 June is 00:30 on 1 July in British Summer Time.
    ok(&at("2026-06-30T23:30:00Z", record(&db, "P1", Some("2026-07-01"))));
}

/// An environment variable set but empty is as if unset, not an error.
/// See: `CHANCERY_ALLOW_FUTURE_TIME=` made every writing command a usage error.
#[test]
fn empty_clock_variables_are_as_if_unset() {
    let dir = tempfile::tempdir().unwrap();
    let db = init(dir.path(), "work-health-ips.toml");
    let out = chancery()
        .env("CHANCERY_NOW", "")
        .env("CHANCERY_ALLOW_FUTURE_TIME", "")
        .args(randomise(&db, "P1", 1))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // And empty is off: a far-future time is still refused.
    let out = chancery()
        .env("CHANCERY_NOW", "2062-01-01T00:00:00Z")
        .env("CHANCERY_ALLOW_FUTURE_TIME", "")
        .args(randomise(&db, "P2", 2))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("ahead of the system clock"), "{}", stderr(&out));
}
