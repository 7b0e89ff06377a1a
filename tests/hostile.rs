//! The hostile-input catalogue: careless or malicious input, each case run
//! against a fresh copy of a small trial. Every case must end with exit code
//! 1, one error line (a batch may list its bad rows beneath, indented), no
//! panic, and the database exactly as it was.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::util::*;

/// A time after everything in the fixture.
const LATER: &str = "2026-07-20T10:00:00Z";

/// A trial with P1–P3 randomised and P1 followed up at m4, built once.
fn fixture() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("chancery-hostile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = init(&dir, "work-health-ips.toml");
        for (i, p) in ["P1", "P2", "P3"].iter().enumerate() {
            let mut args = vec!["randomise".to_string(), "--db".into(), db.display().to_string()];
            args.extend(referral_args(p, "sheffield", &nhs(700 + i as u32), &[]));
            chancery().args(&args).assert().success();
        }
        chancery()
            .env("CHANCERY_NOW", "2026-07-10T10:00:00Z")
            .args(["outcome", "record", "--db"])
            .arg(&db)
            .args(["--participant", "P1", "--timepoint", "m4", "--on", "2026-07-01", "--set", "phq9=10"])
            .assert()
            .success();
        dir
    })
}

/// What the database holds, for "unchanged": its schema and every table's rows.
fn snapshot(db: &Path) -> Vec<String> {
    db_snapshot(db)
}

struct Case {
    name: &'static str,
    /// Arguments; `{db}` and `{dir}` are replaced.
    args: Vec<&'static str>,
    /// Files written into the case's folder first.
    files: Vec<(&'static str, Vec<u8>)>,
    /// A change to the database file made first (an insider or a disk).
    damage: Option<fn(&Path)>,
    /// What the error line must say: the reason this input is refused, so a
    /// case refused for another reason (a clock, a missing field) fails.
    expect: &'static str,
}

fn case(name: &'static str, args: &[&'static str]) -> Case {
    Case { name, args: args.to_vec(), files: vec![], damage: None, expect: "" }
}

fn with_file(name: &'static str, args: &[&'static str], file: &'static str, bytes: impl Into<Vec<u8>>) -> Case {
    Case { name, args: args.to_vec(), files: vec![(file, bytes.into())], damage: None, expect: "" }
}

/// A case that randomises a complete, eligible referral, so that only what
/// `name` says is wrong with it.
fn complete_referral(name: &'static str, participant: &str, nhs: &str) -> Case {
    let mut args = vec!["randomise".to_string(), "--db".into(), "{db}".into()];
    args.extend(referral_args(participant, "sheffield", nhs, &[]));
    let args = args.into_iter().map(|s| &*Box::leak(s.into_boxed_str())).collect();
    Case { name, args, files: vec![], damage: None, expect: "" }
}

const GOOD_PROTOCOL: &str = include_str!("../protocol/work-health-ips.toml");

fn protocol_with(from: &str, to: &str) -> Vec<u8> {
    assert!(GOOD_PROTOCOL.contains(from), "{from}");
    GOOD_PROTOCOL.replacen(from, to, 1).into_bytes()
}

const REFERRAL_HEADER: &str = "participant,site,nhs_number,age,sex,employment_status,condition,referral_source,weeks_out_of_work,gp_in_area,wants_work,receiving_ips,consent,phq9,gad7,swemwbs,eq5d\n";

fn referral_row(id: &str, nhs_number: &str) -> String {
    format!("{id},sheffield,{nhs_number},34,female,out_of_work,mental_health,gp,10,yes,yes,no,yes,12,9,21,0.731\n")
}

fn catalogue() -> Vec<Case> {
    let n1 = nhs(800);
    let n2 = nhs(801);
    let good_row = referral_row("N1", &n1);
    let init = ["init", "--protocol", "{dir}/p.toml", "--db", "{dir}/new.db"];
    let batch = ["randomise", "--db", "{db}", "--batch", "{dir}/b.csv"];
    let import = ["outcome", "import", "--db", "{db}", "--csv", "{dir}/o.csv", "--now", "2026-07-11T10:00:00Z"];
    let single = |field: &'static str, value: &'static str| -> Vec<&'static str> {
        let owned: Vec<String> = {
            let mut a = vec!["randomise".to_string(), "--db".into(), "{db}".into()];
            a.extend(referral_args("N9", "sheffield", &nhs(900), &[(field, value)]));
            a
        };
        owned.into_iter().map(|s| &*Box::leak(s.into_boxed_str())).collect()
    };
    let mut c = vec![
        // Protocol files refused at init (nothing is created).
        with_file("malformed TOML", &init, "p.toml", "format = 1\n[trial\nid = \"x\""),
        with_file(
            "wrong type for arms",
            &init,
            "p.toml",
            protocol_with("[[arms]]\nid = \"ips\"", "arms_typo = 3\n[[arms]]\nid = \"ips\""),
        ),
        with_file(
            "unknown allocation method",
            &init,
            "p.toml",
            protocol_with("method = \"permuted_blocks\"", "method = \"coin_toss\""),
        ),
        with_file("a ratio of zero", &init, "p.toml", protocol_with("ratio = 1", "ratio = 0")),
        with_file("a huge ratio", &init, "p.toml", protocol_with("ratio = 1", "ratio = 99999999999999999999")),
        with_file("NaN as a bound", &init, "p.toml", protocol_with("min = 0\nmax = 27", "min = nan\nmax = 27")),
        with_file("infinity as a bound", &init, "p.toml", protocol_with("min = 0\nmax = 27", "min = 0\nmax = inf")),
        with_file(
            "a range with min above max",
            &init,
            "p.toml",
            protocol_with("min = 0\nmax = 27", "min = 27\nmax = 0"),
        ),
        with_file(
            "a stratum naming no field",
            &init,
            "p.toml",
            protocol_with("strata = [\"site\",", "strata = [\"postcode\","),
        ),
        with_file("non-UTF-8 protocol bytes", &init, "p.toml", {
            let mut b = GOOD_PROTOCOL.as_bytes().to_vec();
            b.splice(20..20, [0xff, 0xfe, 0x80]);
            b
        }),
        case("a protocol file that does not exist", &["init", "--protocol", "{dir}/nope.toml", "--db", "{dir}/new.db"]),
        // One referral.
        Case { name: "age NaN", args: single("age", "NaN"), files: vec![], damage: None, expect: "" },
        Case { name: "age infinity", args: single("age", "inf"), files: vec![], damage: None, expect: "" },
        Case { name: "age 1e400", args: single("age", "1e400"), files: vec![], damage: None, expect: "" },
        Case {
            name: "age beyond 64 bits",
            args: single("age", "99999999999999999999999"),
            files: vec![],
            damage: None,
            expect: "",
        },
        Case { name: "PHQ-9 out of range", args: single("phq9", "28"), files: vec![], damage: None, expect: "" },
        Case { name: "EQ-5D below its floor", args: single("eq5d", "-0.3"), files: vec![], damage: None, expect: "" },
        Case {
            name: "a level that does not exist",
            args: single("sex", "robot"),
            files: vec![],
            damage: None,
            expect: "",
        },
        Case {
            name: "SQL in a category value",
            args: single("sex", "female'; DROP TABLE log; --"),
            files: vec![],
            damage: None,
            expect: "",
        },
        Case {
            name: "a newline inside a value",
            args: single("sex", "female\nmale"),
            files: vec![],
            damage: None,
            expect: "",
        },
        Case {
            name: "an unknown field",
            args: single("favourite_colour", "blue"),
            files: vec![],
            damage: None,
            expect: "",
        },
        Case {
            name: "an invalid NHS number",
            args: single("nhs_number", "1234567890"),
            files: vec![],
            damage: None,
            expect: "",
        },
        case(
            "SQL in a participant id",
            &[
                "randomise",
                "--db",
                "{db}",
                "--participant",
                "x'); DROP TABLE log;--",
                "--site",
                "sheffield",
                "--set",
                "age=30",
            ],
        ),
        case(
            "a formula as participant id",
            &["randomise", "--db", "{db}", "--participant", "=HYPERLINK(\"http://x\")", "--site", "sheffield"],
        ),
        case("SQL in a site", &["randomise", "--db", "{db}", "--participant", "N8", "--site", "sheffield' OR '1'='1"]),
        // A complete referral, so that the duplicate id is what is refused.
        complete_referral("a participant id used before", "P1", &nhs(901)),
        case("control characters in the user", &["status", "--db", "{db}"]), // replaced below
        case(
            "a time before the log's last entry",
            &["withdraw", "--db", "{db}", "--participant", "P2", "--reason", "moved", "--now", "2026-05-01T00:00:00Z"],
        ),
        case(
            "a time that is not a time",
            &["withdraw", "--db", "{db}", "--participant", "P2", "--reason", "moved", "--now", "yesterday"],
        ),
        // Batch CSV files.
        with_file("ragged rows", &batch, "b.csv", format!("{REFERRAL_HEADER}{good_row}N2,sheffield\n")),
        with_file("duplicate headers", &batch, "b.csv", "participant,site,age,age\nN1,sheffield,30,31\n"),
        with_file(
            "a participant twice in one file",
            &batch,
            "b.csv",
            format!("{REFERRAL_HEADER}{good_row}{}", referral_row("N1", &n2)),
        ),
        with_file(
            "an NHS number twice in one file",
            &batch,
            "b.csv",
            format!("{REFERRAL_HEADER}{good_row}{}", referral_row("N2", &n1)),
        ),
        with_file(
            "embedded quotes and newlines",
            &batch,
            "b.csv",
            format!("{REFERRAL_HEADER}{}", good_row.replace(",female,", ",\"fe\"\"male\nx\",")),
        ),
        with_file(
            "a formula-injection cell",
            &batch,
            "b.csv",
            format!("{REFERRAL_HEADER}{}", good_row.replace("N1,", "=cmd|'/c calc'!A1,")),
        ),
        with_file("non-UTF-8 CSV", &batch, "b.csv", {
            let mut b = format!("{REFERRAL_HEADER}{good_row}").into_bytes();
            b.splice(REFERRAL_HEADER.len() + 1..REFERRAL_HEADER.len() + 1, [0xc3, 0x28]);
            b
        }),
        with_file("an empty file", &batch, "b.csv", ""),
        with_file(
            "a BOM and a bad row",
            &batch,
            "b.csv",
            format!("\u{feff}{REFERRAL_HEADER}{}", good_row.replace(",34,", ",17x,")),
        ),
        // Outcomes.
        with_file(
            "outcome CSV with NaN",
            &import,
            "o.csv",
            "participant,timepoint,collected_on,phq9\nP2,m4,2026-07-01,NaN\n",
        ),
        with_file(
            "outcome for an unknown participant with SQL",
            &import,
            "o.csv",
            "participant,timepoint,collected_on,phq9\n\"P2' OR 1=1 --\",m4,2026-07-01,5\n",
        ),
        with_file(
            "outcome dated in the future",
            &import,
            "o.csv",
            "participant,timepoint,collected_on,phq9\nP2,m4,2027-07-01,5\n",
        ),
        with_file(
            "outcome dated before the trial",
            &import,
            "o.csv",
            "participant,timepoint,collected_on,phq9\nP2,m4,2020-01-01,5\n",
        ),
        with_file(
            "the same outcome row twice",
            &import,
            "o.csv",
            "participant,timepoint,collected_on,phq9\nP2,m4,2026-07-01,5\nP2,m4,2026-07-01,6\n",
        ),
        case(
            "a correction without a reason",
            &[
                "outcome",
                "correct",
                "--db",
                "{db}",
                "--participant",
                "P1",
                "--timepoint",
                "m4",
                "--set",
                "phq9=11",
                "--reason",
                "  ",
                "--now",
                "2026-07-11T10:00:00Z",
            ],
        ),
        case(
            "a withdrawal with no reason",
            &["withdraw", "--db", "{db}", "--participant", "P2", "--reason", "", "--now", "2026-07-11T10:00:00Z"],
        ),
        case("a due list on no date", &["followup", "due", "--db", "{db}", "--on", "31/02/2026"]),
        // Paths.
        case(
            "an export into a folder that does not exist",
            &["export", "--db", "{db}", "--what", "log", "--out", "{dir}/../../no/such/dir/x.csv"],
        ),
        case("an export over an existing file", &["export", "--db", "{db}", "--what", "log", "--out", "{db}"]),
        case(
            "a missing key file",
            &["randomise", "--db", "{db}", "--key", "{dir}/none.key", "--participant", "N7", "--site", "sheffield"],
        ),
        // Damaged databases.
        Case {
            name: "a database from a newer chancery",
            args: vec!["status", "--db", "{db}"],
            files: vec![],
            damage: Some(|db| {
                rusqlite::Connection::open(db).unwrap().pragma_update(None, "user_version", 99).unwrap();
            }),
            expect: "",
        },
        Case {
            name: "a truncated database file",
            args: vec!["status", "--db", "{db}"],
            files: vec![],
            damage: Some(|db| {
                let b = std::fs::read(db).unwrap();
                std::fs::write(db, &b[..b.len() / 3]).unwrap();
            }),
            expect: "",
        },
        Case {
            name: "a database with corrupted pages",
            args: vec!["export", "--db", "{db}", "--what", "log"],
            files: vec![],
            damage: Some(|db| {
                let mut b = std::fs::read(db).unwrap();
                let len = b.len();
                for (i, x) in b[4096..len].iter_mut().enumerate() {
                    if i % 7 == 0 {
                        *x ^= 0x5a;
                    }
                }
                std::fs::write(db, b).unwrap();
            }),
            expect: "",
        },
        Case {
            name: "a file that is not a database",
            args: vec!["status", "--db", "{db}"],
            files: vec![],
            damage: Some(|db| std::fs::write(db, "just some text, not SQLite\n").unwrap()),
            expect: "",
        },
        // Seen in use (issue 18): times, text, outcomes and files as people make them.
        case(
            "a --now decades ahead",
            &["withdraw", "--db", "{db}", "--participant", "P2", "--reason", "moved", "--now", "2062-07-11T10:00:00Z"],
        ),
        case(
            "a terminal escape in a reason",
            &["withdraw", "--db", "{db}", "--participant", "P2", "--reason", "moved\u{1b}[2J"],
        ),
        Case {
            name: "a reason past the length limit",
            args: vec![
                "withdraw",
                "--db",
                "{db}",
                "--participant",
                "P2",
                "--reason",
                Box::leak("x".repeat(501).into_boxed_str()),
            ],
            files: vec![],
            damage: None,
            expect: "",
        },
        case("an empty user", &["withdraw", "--db", "{db}", "--participant", "P2", "--reason", "moved", "--user", ""]),
        Case {
            name: "an NHS number of one digit",
            args: single("nhs_number", "9999999999"),
            files: vec![],
            damage: None,
            expect: "",
        },
        complete_referral("an id differing only in case", "p1", &nhs(902)),
        with_file(
            "a semicolon-separated batch",
            &batch,
            "b.csv",
            format!("{}{}", REFERRAL_HEADER.replace(',', ";"), good_row.replace(',', ";")),
        ),
        case(
            "an m4 value collected on the day of randomisation",
            &[
                "outcome",
                "record",
                "--db",
                "{db}",
                "--participant",
                "P2",
                "--timepoint",
                "m4",
                "--on",
                "2026-03-02",
                "--set",
                "phq9=5",
            ],
        ),
        case(
            "a correction to nothing without --clear",
            &[
                "outcome",
                "correct",
                "--db",
                "{db}",
                "--participant",
                "P1",
                "--timepoint",
                "m4",
                "--set",
                "phq9=",
                "--reason",
                "typo",
            ],
        ),
        case("a checkpoint file of random bytes", &["verify", "--db", "{db}", "--checkpoint", "/dev/urandom"]),
        case("an outcome file that never ends", &["outcome", "import", "--db", "{db}", "--csv", "/dev/zero"]),
        with_file(
            "minimisation that always takes another arm",
            &init,
            "p.toml",
            include_str!("../protocol/example-minimisation.toml").replacen("p = 0.8\n", "p = 0\n", 1),
        ),
    ];
    // What each refusal must say: its reason, not some other problem met first.
    let expected: &[(&str, &str)] = &[
        ("malformed TOML", "unclosed table"),
        ("wrong type for arms", "unknown field `arms_typo`"),
        ("unknown allocation method", "unknown allocation method \"coin_toss\""),
        ("a ratio of zero", "has ratio 0"),
        ("a huge ratio", "99999999999999999999"),
        ("NaN as a bound", "not nan"),
        ("infinity as a bound", "not inf"),
        ("a range with min above max", "min 27 is greater than max 0"),
        ("a stratum naming no field", "\"postcode\" names no declared field"),
        ("non-UTF-8 protocol bytes", "not UTF-8"),
        ("a protocol file that does not exist", "nope.toml"),
        ("age NaN", "field age: \"NaN\" is not a whole number"),
        ("age infinity", "field age: \"inf\" is not a whole number"),
        ("age 1e400", "field age: \"1e400\" is not a whole number"),
        ("age beyond 64 bits", "field age: \"99999999999999999999999\" is too large"),
        ("PHQ-9 out of range", "field phq9: 28 is out of range"),
        ("EQ-5D below its floor", "field eq5d: -0.3 is out of range"),
        ("a level that does not exist", "field sex: \"robot\" is not a valid level"),
        ("SQL in a category value", "is not a valid level"),
        ("a newline inside a value", "is not a valid level"),
        ("an unknown field", "unknown field \"favourite_colour\""),
        ("an invalid NHS number", "not a valid NHS number"),
        ("SQL in a participant id", "participant id \"x'); DROP TABLE log;--\" is not valid"),
        ("a formula as participant id", "is not valid; use 1–64 letters"),
        ("SQL in a site", "unknown site"),
        ("a participant id used before", "P1 is already recorded"),
        ("control characters in the user", "user name"),
        ("a time before the log's last entry", "earlier than the log's last entry"),
        ("a time that is not a time", "\"yesterday\""),
        ("ragged rows", "b.csv"),
        ("duplicate headers", "column \"age\" appears twice"),
        ("a participant twice in one file", "N1 appears twice in this batch"),
        ("an NHS number twice in one file", "NHS number"),
        ("embedded quotes and newlines", "is not a valid level"),
        ("a formula-injection cell", "is not valid; use 1–64 letters"),
        ("non-UTF-8 CSV", "not UTF-8"),
        ("an empty file", "header"),
        ("a BOM and a bad row", "field age: \"17x\" is not a whole number"),
        ("outcome CSV with NaN", "phq9: \"NaN\" is not a whole number"),
        ("outcome for an unknown participant with SQL", "unknown participant"),
        ("outcome dated in the future", "2027-07-01 is in the future"),
        ("outcome dated before the trial", "2020-01-01 is before randomisation"),
        ("the same outcome row twice", "phq9 is already recorded"),
        ("a correction without a reason", "needs a reason"),
        ("a withdrawal with no reason", "needs a reason"),
        ("a due list on no date", "31/02/2026"),
        ("an export into a folder that does not exist", "no/such/dir/x.csv"),
        ("an export over an existing file", "already exists"),
        ("a missing key file", "none.key not found"),
        ("a database from a newer chancery", "newer chancery"),
        ("a truncated database file", "restore it from a backup"),
        ("a database with corrupted pages", "restore it from a backup"),
        ("a file that is not a database", "not a SQLite database"),
        ("a --now decades ahead", "ahead of the system clock"),
        ("a terminal escape in a reason", "control character (U+001B)"),
        ("a reason past the length limit", "501 characters long"),
        ("an empty user", "no user to record"),
        ("an NHS number of one digit", "not an NHS number that is ever issued"),
        ("an id differing only in case", "differs only in case from participant P1"),
        ("a semicolon-separated batch", "separated by semicolons"),
        ("an m4 value collected on the day of randomisation", "outside the m4 window"),
        ("a correction to nothing without --clear", "--clear phq9"),
        ("a checkpoint file of random bytes", "larger than a checkpoint can be"),
        ("an outcome file that never ends", "/dev/zero"),
        ("minimisation that always takes another arm", "0.5"),
    ];
    for (name, needle) in expected {
        match c.iter_mut().find(|x| x.name == *name) {
            Some(x) => x.expect = needle,
            None => panic!("no hostile case named {name:?}"),
        }
    }
    // Control characters in the acting user.
    if let Some(x) = c.iter_mut().find(|x| x.name == "control characters in the user") {
        x.args = vec![
            "withdraw",
            "--db",
            "{db}",
            "--participant",
            "P2",
            "--reason",
            "moved",
            "--user",
            "eve\u{1b}[2J",
            "--now",
            "2026-07-11T10:00:00Z",
        ];
    }
    c
}

#[test]
fn every_hostile_input_gets_one_clear_error_and_changes_nothing() {
    let cases = catalogue();
    assert!(cases.len() >= 40, "the catalogue has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let dir = tempfile::tempdir().unwrap();
        for f in ["trial.db", "trial.db.key", "trial.db.key.signing"] {
            std::fs::copy(fixture().join(f), dir.path().join(f)).unwrap();
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in ["trial.db.key", "trial.db.key.signing"] {
                std::fs::set_permissions(dir.path().join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
            }
        }
        let db = dir.path().join("trial.db");
        if let Some(damage) = case.damage {
            damage(&db);
        }
        for (name, bytes) in &case.files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let before = snapshot(&db);
        let args: Vec<String> = case
            .args
            .iter()
            .map(|a| a.replace("{db}", &db.display().to_string()).replace("{dir}", &dir.path().display().to_string()))
            .collect();
        // A time after the fixture's last entry, so that each case is refused
        // for what it is, not for back-dating the log.
        let out = chancery()
            .args(&args)
            .env("CHANCERY_NOW", LATER)
            .env_remove("CHANCERY_ALLOW_FUTURE_TIME")
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let lines: Vec<&str> = stderr.lines().collect();
        let problem = if out.status.code() != Some(1) {
            Some(format!("exit code {:?}", out.status.code()))
        } else if stderr.contains("panicked") || stderr.contains("RUST_BACKTRACE") {
            Some("panicked".into())
        } else if lines.is_empty()
            || !lines[0].starts_with("error: ")
            || lines[1..].iter().any(|l| !l.starts_with("  "))
        {
            Some("not one error line (with indented details)".into())
        } else if case.expect.is_empty() {
            Some("the case says nothing of what its error must say".into())
        } else if !stderr.contains(case.expect) {
            Some(format!("the error does not say {:?}", case.expect))
        } else if snapshot(&db) != before {
            Some("the database changed".into())
        } else if dir.path().join("new.db").exists() {
            Some("init created a database".into())
        } else {
            None
        };
        if let Some(p) = problem {
            failures.push(format!("{}: {p}\n{stderr}", case.name));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn a_csv_with_a_byte_order_mark_is_read_as_plain_csv() {
    let dir = tempfile::tempdir().unwrap();
    let db = init(dir.path(), "work-health-ips.toml");
    let csv = dir.path().join("b.csv");
    std::fs::write(&csv, format!("\u{feff}{REFERRAL_HEADER}{}", referral_row("B1", &nhs(850)))).unwrap();
    chancery().args(["randomise", "--db"]).arg(&db).arg("--batch").arg(&csv).assert().success();
}
