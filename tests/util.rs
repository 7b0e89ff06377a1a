//! Shared helpers for the integration tests.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

pub const SEED: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
pub const NOW: &str = "2026-03-02T09:00:00Z";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn protocol(name: &str) -> PathBuf {
    root().join("protocol").join(name)
}

/// The chancery binary with a fixed clock and user. The tests' fixed times
/// run on into dates after the day they run, so they may be ahead of the
/// system clock (tests/clock.rs checks the refusal without it).
pub fn chancery() -> Command {
    let mut c = Command::cargo_bin("chancery").unwrap();
    c.env("CHANCERY_NOW", NOW).env("CHANCERY_ALLOW_FUTURE_TIME", "1").env("USER", "tester");
    c
}

/// `cmd` (a chancery command) made to create a trial from `protocol` in
/// `db` with the test seed.
pub fn init_command(mut cmd: Command, protocol: &Path, db: &Path) -> Command {
    cmd.args(["init", "--protocol"]).arg(protocol).arg("--db").arg(db).args(["--seed", SEED]);
    cmd
}

/// Creates a trial from `protocol_name` with the test seed in `dir`; returns the db path.
pub fn init(dir: &Path, protocol_name: &str) -> PathBuf {
    let db = dir.join("trial.db");
    init_command(chancery(), &protocol(protocol_name), &db).assert().success();
    db
}

/// A trial of the default protocol in `dir` with `participants` randomised
/// in order, the i-th with NHS number `nhs(first_nhs + i)`; returns the db path.
pub fn randomised_trial(dir: &Path, participants: &[&str], first_nhs: u32) -> PathBuf {
    let db = init(dir, "work-health-ips.toml");
    for (i, p) in participants.iter().enumerate() {
        chancery().args(randomise_args(&db, p, &nhs(first_nhs + i as u32), &[])).assert().success();
    }
    db
}

/// The fields of a complete eligible, consenting referral for the default
/// protocol, in protocol order, but for the NHS number.
pub const REFERRAL_FIELDS: [(&str, &str); 14] = [
    ("age", "34"),
    ("sex", "female"),
    ("employment_status", "out_of_work"),
    ("condition", "mental_health"),
    ("referral_source", "gp"),
    ("weeks_out_of_work", "10"),
    ("gp_in_area", "yes"),
    ("wants_work", "yes"),
    ("receiving_ips", "no"),
    ("consent", "yes"),
    ("phq9", "12"),
    ("gad7", "9"),
    ("swemwbs", "21"),
    ("eq5d", "0.731"),
];

/// A complete eligible, consenting referral for the default protocol.
pub fn referral_args(participant: &str, site: &str, nhs: &str, overrides: &[(&str, &str)]) -> Vec<String> {
    let mut fields = vec![("nhs_number".to_string(), nhs.to_string())];
    fields.extend(REFERRAL_FIELDS.iter().map(|(a, b)| (a.to_string(), b.to_string())));
    for (k, v) in overrides {
        match fields.iter_mut().find(|(n, _)| n == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => fields.push((k.to_string(), v.to_string())),
        }
    }
    let mut args = vec!["--participant".to_string(), participant.to_string(), "--site".to_string(), site.to_string()];
    for (k, v) in fields {
        args.push("--set".into());
        args.push(format!("{k}={v}"));
    }
    args
}

/// `randomise` arguments for [`referral_args`] at site sheffield.
pub fn randomise_args(db: &Path, participant: &str, nhs: &str, overrides: &[(&str, &str)]) -> Vec<String> {
    let mut args = vec!["randomise".to_string(), "--db".into(), db.display().to_string()];
    args.extend(referral_args(participant, "sheffield", nhs, overrides));
    args
}

/// `outcome record` arguments at `now`, one `--set` per entry of `sets`.
pub fn outcome_record_args(
    db: &Path,
    now: &str,
    participant: &str,
    timepoint: &str,
    on: &str,
    sets: &[&str],
) -> Vec<String> {
    let mut a = s(&["outcome", "record", "--db"]);
    a.push(db.display().to_string());
    a.extend(s(&["--now", now, "--participant", participant, "--timepoint", timepoint, "--on", on]));
    for x in sets {
        a.push("--set".into());
        a.push(x.to_string());
    }
    a
}

/// Owned strings, for argument lists.
pub fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Valid NHS numbers, distinct for distinct `i`.
pub fn nhs(i: u32) -> String {
    let mut stem = 500_000_000 + i * 2;
    loop {
        if let Some(n) = chancery::identity::nhs_number_from_stem(stem) {
            return n;
        }
        stem += 1;
    }
}

/// The log as exported (CSV), to compare before and after a refused command.
pub fn log_snapshot(db: &Path) -> String {
    let out = chancery().args(["export", "--what", "log", "--db"]).arg(db).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// Everything the database holds, for "unchanged": its schema (every table,
/// view, index and trigger) and every row of every table, in a fixed order.
/// Falls back to the file's bytes when it is not a readable database.
pub fn db_snapshot(db: &Path) -> Vec<String> {
    let read = || -> rusqlite::Result<Vec<String>> {
        let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let mut out = Vec::new();
        let objects: Vec<(String, String, Option<String>)> = c
            .prepare("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (kind, name, sql) in &objects {
            out.push(format!("{kind} {name}: {}", sql.as_deref().unwrap_or("")));
        }
        for pragma in ["user_version", "application_id"] {
            let v: i64 = c.pragma_query_value(None, pragma, |r| r.get(0))?;
            out.push(format!("{pragma} = {v}"));
        }
        for (_, name, _) in objects.iter().filter(|(kind, _, _)| kind == "table") {
            let mut s = c.prepare(&format!("SELECT * FROM \"{name}\""))?;
            let n = s.column_count();
            let mut rows: Vec<String> = s
                .query_map([], |r| {
                    Ok((0..n)
                        .map(|i| format!("{:?}", r.get_ref(i).map(|v| format!("{v:?}"))))
                        .collect::<Vec<_>>()
                        .join("|"))
                })?
                .collect::<rusqlite::Result<_>>()?;
            rows.sort();
            out.push(format!("table {name}: {} rows", rows.len()));
            out.extend(rows);
        }
        Ok(out)
    };
    read().unwrap_or_else(|e| vec![format!("unreadable ({e})"), format!("{:?}", std::fs::read(db).ok())])
}

/// Runs a chancery command expected to be refused; checks exit 1, a one-line
/// error containing `needle`, and an unchanged database (every table).
pub fn refused(db: &Path, args: &[String], needle: &str) {
    let before = db_snapshot(db);
    let out = chancery().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "args {args:?}: stderr {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(before == db_snapshot(db), "the database changed after a refused command: {args:?}");
}
