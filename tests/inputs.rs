//! Inputs as people make them: CSV files saved from a spreadsheet (byte-order
//! mark, CRLF, empty columns and rows of commas after the data, headers in
//! another case, semicolons), values typed in the ways people type them, ids
//! that differ only in case, placeholder NHS numbers, negative option values,
//! and errors and exports that scripts read as JSON.
//!
//! Each test regresses an observation of issue 18, "Inputs as people make them".

use std::path::{Path, PathBuf};

use crate::util::*;

const LATER: &str = "2026-07-10T10:00:00Z";

/// A referral batch as a spreadsheet saves it: `header` then one row per
/// (participant, NHS number, phq9), each line ended by `eol`.
fn batch(header: &str, rows: &[(&str, String, &str)], eol: &str, trailing: &str) -> String {
    let mut out = format!("{header}{trailing}{eol}");
    for (p, nhs, phq9) in rows {
        let values: Vec<&str> = REFERRAL_FIELDS.iter().map(|(k, v)| if *k == "phq9" { *phq9 } else { *v }).collect();
        out.push_str(&format!("{p},sheffield,{nhs},{}{trailing}{eol}", values.join(",")));
    }
    out
}

fn header() -> String {
    let mut h = vec!["participant", "site", "nhs_number"];
    h.extend(REFERRAL_FIELDS.iter().map(|(k, _)| *k));
    h.join(",")
}

fn randomise_batch(db: &Path, csv: &Path, extra: &[&str]) -> std::process::Output {
    chancery().args(["randomise", "--db"]).arg(db).arg("--batch").arg(csv).args(extra).output().unwrap()
}

fn randomise_one(db: &Path, participant: &str, nhs: &str, overrides: &[(&str, &str)]) -> std::process::Output {
    chancery().args(randomise_args(db, participant, nhs, overrides)).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn export(db: &Path, what: &str, format: &str) -> String {
    let out = chancery().args(["export", "--what", what, "--format", format, "--db"]).arg(db).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// A trial with P1 randomised on 2026-03-02.
fn trial(dir: &Path) -> PathBuf {
    let db = init(dir, "work-health-ips.toml");
    let out = randomise_one(&db, "P1", &nhs(1), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    db
}

// See: a batch saved from Excel was refused, once per row, for `unknown field ""`
// (a trailing empty column), for its trailing rows of commas, and for a header
// in another case.
#[test]
fn an_excel_batch_with_a_bom_crlf_trailing_empty_columns_and_rows_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = init(dir.path(), "work-health-ips.toml");
    let header = header().replace("participant,site", "Participant,SITE").replace("phq9", "PHQ9");
    let mut csv = String::from("\u{feff}");
    csv.push_str(&batch(&header, &[("P1", nhs(1), "12"), ("P2", nhs(2), "7")], "\r\n", ",,"));
    csv.push_str(&format!("{}\r\n", ",".repeat(18)));
    csv.push_str(&format!("{}\r\n", ",".repeat(18)));
    let path = dir.path().join("excel.csv");
    std::fs::write(&path, csv).unwrap();
    let out = randomise_batch(&db, &path, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("2 referrals: 2 randomised, 0 ineligible, 0 declined"), "{}", text(&out.stdout));
    let participants = export(&db, "participants", "csv");
    assert!(participants.lines().nth(2).is_some_and(|l| l.starts_with("P2,sheffield")), "{participants}");
}

// See: with CRLF line ends every error's line number was one too low.
#[test]
fn rows_of_a_crlf_file_are_numbered_by_their_physical_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    let path = dir.path().join("b.csv");
    std::fs::write(&path, batch(&header(), &[("P2", nhs(2), "12"), ("P3", nhs(3), "99")], "\r\n", "")).unwrap();
    let mut args = s(&["randomise", "--db", &db.display().to_string(), "--batch"]);
    args.push(path.display().to_string());
    refused(&db, &args, "b.csv:3: participant P3: field phq9: 99 is out of range");

    let csv = dir.path().join("o.csv");
    std::fs::write(
        &csv,
        "participant,timepoint,collected_on,phq9,gad7\r\nP1,m4,2026-07-01,5,\r\nP1,m4,2026-07-01,,lots\r\n",
    )
    .unwrap();
    let mut args = s(&["outcome", "import", "--now", LATER, "--db", &db.display().to_string(), "--csv"]);
    args.push(csv.display().to_string());
    refused(&db, &args, "o.csv:3: ");
    let out = chancery().args(&args).output().unwrap();
    assert!(
        text(&out.stderr).contains("o.csv:3: participant P1, m4: gad7: \"lots\" is not a whole number"),
        "{}",
        text(&out.stderr)
    );
}

// See: one unreadable row was counted as "1 rows of ... cannot be read".
#[test]
fn unreadable_rows_are_counted_in_words_that_agree() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    let path = dir.path().join("b.csv");
    let mut args = s(&["randomise", "--db", &db.display().to_string(), "--batch"]);
    args.push(path.display().to_string());
    let good = batch(&header(), &[("P2", nhs(2), "12")], "\n", "");
    std::fs::write(&path, format!("{good}P3,sheffield\n")).unwrap();
    refused(&db, &args, "1 row of ");
    std::fs::write(&path, format!("{good}P3,sheffield\nP4,sheffield\n")).unwrap();
    refused(&db, &args, "2 rows of ");
}

// See: an outcome file with a row that could not be read (a bad date) and a
// row with an invalid value reported the first alone; the second was found
// only when the corrected file was submitted again.
#[test]
fn an_import_lists_unreadable_rows_and_invalid_values_in_one_report() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    let csv = dir.path().join("o.csv");
    std::fs::write(
        &csv,
        "participant,timepoint,collected_on,phq9\nP1,m4,2026-07-01,5\nP1,m12,2026-7-40,6\nP1,m4,2026-07-01,99\nP1,m4,2026-07-01,5,extra\n",
    )
    .unwrap();
    let mut args = s(&["outcome", "import", "--now", LATER, "--db", &db.display().to_string(), "--csv"]);
    args.push(csv.display().to_string());
    refused(&db, &args, "3 of 4 records are invalid, so none was written");
    let out = chancery().args(&args).output().unwrap();
    let e = text(&out.stderr);
    let lines: Vec<&str> = e.lines().skip(1).map(str::trim).collect();
    assert_eq!(lines.len(), 3, "{e}");
    assert!(lines[0].contains("o.csv:3: collected_on \"2026-7-40\" is not a date"), "{e}");
    assert!(lines[1].contains("o.csv:4: participant P1, m4: phq9: 99 is out of range"), "{e}");
    assert!(lines[2].contains("o.csv:5: column 5 holds a value but has no name"), "{e}");
}

// See: a semicolon-separated file (Excel's CSV in many locales) got a confusing message.
#[test]
fn a_semicolon_separated_file_says_how_to_save_it_and_reads_with_delimiter() {
    let dir = tempfile::tempdir().unwrap();
    let db = init(dir.path(), "work-health-ips.toml");
    let path = dir.path().join("semi.csv");
    std::fs::write(&path, batch(&header(), &[("P1", nhs(1), "12")], "\r\n", "").replace(',', ";")).unwrap();
    let mut args = s(&["randomise", "--db", &db.display().to_string(), "--batch"]);
    args.push(path.display().to_string());
    refused(
        &db,
        &args,
        "semi.csv:1: the file is separated by semicolons, not commas; save it as CSV (comma delimited) or pass --delimiter ';'",
    );
    let out = randomise_batch(&db, &path, &["--delimiter", ";"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("1 referrals: 1 randomised"), "{}", text(&out.stdout));

    let csv = dir.path().join("o.csv");
    std::fs::write(&csv, "participant;timepoint;collected_on;phq9\nP1;m4;2026-07-01;5\n").unwrap();
    let mut args = s(&["outcome", "import", "--now", LATER, "--db", &db.display().to_string(), "--csv"]);
    args.push(csv.display().to_string());
    refused(&db, &args, "o.csv:1: the file is separated by semicolons");
    args.extend(s(&["--delimiter", ";"]));
    chancery().args(&args).assert().success();
}

// See: an outcome file from a spreadsheet: header and timepoint in another
// case, a date without leading zeros, CRLF, trailing empty columns and rows.
#[test]
fn an_excel_outcome_file_is_read_in_the_protocols_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    let csv = dir.path().join("o.csv");
    std::fs::write(
        &csv,
        "\u{feff}Participant,Timepoint,Collected_On,PHQ9,GAD7,,\r\nP1,M4,2026-7-1,5,4,,\r\n,,,,,,\r\n,,,,,,\r\n",
    )
    .unwrap();
    chancery().args(["outcome", "import", "--now", LATER, "--db"]).arg(&db).arg("--csv").arg(&csv).assert().success();
    let outcomes = export(&db, "outcomes", "csv");
    assert!(outcomes.contains("P1,m4,gad7,4,2026-07-01,"), "{outcomes}");
    assert!(outcomes.contains("P1,m4,phq9,5,2026-07-01,"), "{outcomes}");
}

// See: `2026-7-1` was refused by `--on` but accepted by `outcome import`;
// `+34` was refused while `034` and ` 34` were accepted; timepoints were
// matched with regard to case though levels were not.
#[test]
fn dates_numbers_and_names_follow_one_set_of_rules() {
    let dir = tempfile::tempdir().unwrap();
    let db = init(dir.path(), "work-health-ips.toml");
    let out = randomise_one(&db, "P1", &nhs(1), &[("age", "+34"), ("phq9", " 012"), ("sex", "Female")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let participants = export(&db, "participants", "csv");
    let row = participants.lines().nth(1).unwrap();
    assert!(row.contains(",34,female,") && row.contains(",12,9,21,0.731,"), "{participants}");

    let record = |on: &str, timepoint: &str, set: &str| {
        chancery()
            .args(["outcome", "record", "--now", LATER, "--participant", "P1", "--db"])
            .arg(&db)
            .args(["--timepoint", timepoint, "--on", on, "--set", set])
            .output()
            .unwrap()
    };
    let out = record("2026-7-1", "M4", "PHQ9=+5");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let outcomes = export(&db, "outcomes", "csv");
    assert!(outcomes.contains("P1,m4,phq9,5,2026-07-01,"), "{outcomes}");

    let out = record("01/07/2026", "m4", "gad7=4");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("\"01/07/2026\" is not a date; write it as YYYY-MM-DD, for example 2026-07-01"),
        "{}",
        text(&out.stderr)
    );
    let due = chancery().args(["followup", "due", "--on", "2026-7-1", "--db"]).arg(&db).output().unwrap();
    assert!(text(&due.stdout).starts_with("follow-up due on 2026-07-01"), "{}", text(&due.stderr));
    // The same rules decide which forms are refused, wherever they are typed.
    for bad in ["2026-07-01T00:00", "1/7/2026", "2026-13-01"] {
        let out = record(bad, "m12", "phq9=4");
        assert!(text(&out.stderr).contains("is not a date; write it as YYYY-MM-DD"), "{bad}: {}", text(&out.stderr));
    }
}

// See: `P0001` and `p0001` were two participants.
#[test]
fn participant_ids_that_differ_only_in_case_are_refused_as_a_likely_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let db = init(dir.path(), "work-health-ips.toml");
    assert!(randomise_one(&db, "P0001", &nhs(1), &[]).status.success());
    let mut args = vec!["randomise".to_string(), "--db".into(), db.display().to_string()];
    args.extend(referral_args("p0001", "sheffield", &nhs(2), &[]));
    refused(&db, &args, "participant p0001 differs only in case from participant P0001, which is already recorded");
    // An ineligible referral is recorded under its id too.
    assert!(randomise_one(&db, "Ab-7", &nhs(3), &[("age", "17")]).status.success());
    let mut args = vec!["randomise".to_string(), "--db".into(), db.display().to_string()];
    args.extend(referral_args("aB-7", "sheffield", &nhs(4), &[]));
    refused(&db, &args, "participant aB-7 differs only in case from participant Ab-7");

    // In a batch, against the trial and within the batch itself.
    let path = dir.path().join("b.csv");
    std::fs::write(&path, batch(&header(), &[("P0002", nhs(5), "12"), ("p0002", nhs(6), "12")], "\n", "")).unwrap();
    let mut args = s(&["randomise", "--db", &db.display().to_string(), "--batch"]);
    args.push(path.display().to_string());
    refused(&db, &args, "b.csv:3: participant p0002 differs only in case from participant P0002, which is at ");
    refused(&db, &args, "b.csv:2: likely the same referral; use P0002 if it is");
    // A large batch checks the recorded ids in memory; the same refusal.
    let rows: Vec<(String, String)> =
        (0..600).map(|i| (format!("Q{i:04}"), nhs(100 + i))).chain([("P0001".to_lowercase(), nhs(99))]).collect();
    let rows: Vec<(&str, String, &str)> = rows.iter().map(|(p, n)| (p.as_str(), n.clone(), "12")).collect();
    std::fs::write(&path, batch(&header(), &rows, "\n", "")).unwrap();
    refused(
        &db,
        &args,
        "b.csv:602: participant p0001 differs only in case from participant P0001, which is already recorded",
    );
}

// See: 0000000000 and 9999999999 pass the modulus-11 check but are never issued.
#[test]
fn nhs_numbers_of_one_repeated_digit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = init(dir.path(), "work-health-ips.toml");
    for (i, n) in ["0000000000", "999 999 9999", "4444444444"].iter().enumerate() {
        let mut args = vec!["randomise".to_string(), "--db".into(), db.display().to_string()];
        args.extend(referral_args(&format!("P{i}"), "sheffield", n, &[]));
        refused(&db, &args, "is not an NHS number that is ever issued");
        let out = chancery().args(&args).output().unwrap();
        assert!(!text(&out.stderr).contains(&n.replace(' ', "")), "the identifier is never echoed");
    }
}

// See: with --json an error was only a line on standard error.
#[test]
fn with_json_an_error_is_also_a_json_object_on_standard_output() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    let out = randomise_one(&db, "P1", &nhs(1), &[]);
    assert_eq!(out.status.code(), Some(1));
    let mut args = vec!["randomise".to_string(), "--json".into(), "--db".into(), db.display().to_string()];
    args.extend(referral_args("P1", "sheffield", &nhs(2), &[]));
    let out = chancery().args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "the exit code stays as it is");
    assert!(text(&out.stderr).starts_with("error: "), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object on standard output");
    assert!(v["error"].as_str().unwrap().contains("participant P1 is already recorded"), "{v}");
    assert_eq!(v["where"], "randomise");
    assert_eq!(v["command"], "randomise");
    assert_eq!(v["kind"], "input");

    // A file's report: every bad row with its file and line.
    let path = dir.path().join("b.csv");
    std::fs::write(&path, batch(&header(), &[("P2", nhs(2), "12"), ("P3", nhs(3), "99")], "\r\n", "")).unwrap();
    let out = randomise_batch(&db, &path, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["problems"][0]["where"], format!("{}:3", path.display()), "{v}");
    assert!(v["problems"][0]["error"].as_str().unwrap().starts_with("participant P3: field phq9"), "{v}");

    // A usage error too (exit code 2), and never without --json.
    let out = chancery().args(["status", "--json", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "usage");
    // Naming the argument, as the text does. See: it said only "unexpected argument found".
    assert!(v["error"].as_str().unwrap().contains("--bogus"), "{v}");
    let out = randomise_one(&db, "P1", &nhs(1), &[]);
    assert!(out.stdout.is_empty());
}

// See: the JSON log export held `seq` as a string and `data` as JSON inside a string.
#[test]
fn the_log_exports_as_json_with_seq_a_number_and_data_an_object() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    let log: serde_json::Value = serde_json::from_str(&export(&db, "log", "json")).unwrap();
    let csv = export(&db, "log", "csv");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(log.as_array().unwrap().len(), rows.len());
    for (entry, row) in log.as_array().unwrap().iter().zip(&rows) {
        assert_eq!(entry["seq"].as_u64().unwrap().to_string(), row[0]);
        let data: serde_json::Value = serde_json::from_str(&row[6]).unwrap();
        assert!(entry["data"].is_object(), "{entry}");
        assert_eq!(entry["data"], data);
    }
    assert_eq!(log[1]["data"]["participant"], "P1");
    let allocations: serde_json::Value = serde_json::from_str(&export(&db, "allocations", "json")).unwrap();
    assert_eq!(allocations[0]["seq"], 1);
}

// See: `power means --delta -1.5` was read as an unknown flag `-1`.
#[test]
fn a_negative_number_is_read_as_an_option_value() {
    let out = chancery().args(["power", "means", "--delta", "-1.5", "--sd", "5", "--power", "0.9"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("two means: difference -1.5, SD 5"), "{}", text(&out.stdout));
    let out = chancery().args(["power", "means", "--delta", "1.5", "--sd", "-5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a negative SD is refused by the calculation, not by the parser");
}

/// The hostile-input catalogue's cases for files and values as people make
/// them: each refused with its message, exit code 1 and the log unchanged.
#[test]
fn hostile_inputs_as_people_make_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial(dir.path());
    let d = db.display().to_string();
    let file = |name: &str, body: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    };
    let h = header();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            s(&[
                "randomise",
                "--db",
                &d,
                "--batch",
                &file("tabs.csv", batch(&h, &[("P2", nhs(2), "1")], "\n", "").replace(',', "\t")),
            ]),
            "the file is separated by tabs, not commas; save it as CSV (comma delimited) or pass --delimiter tab",
        ),
        (
            s(&[
                "randomise",
                "--db",
                &d,
                "--batch",
                &file("unnamed.csv", batch(&h, &[("P2", nhs(2), "1")], "\n", "").replacen("site,", "site,,", 1)),
            ]),
            "unnamed.csv:1: column 3 has no name in the header; name it or delete the column",
        ),
        (
            s(&[
                "randomise",
                "--db",
                &d,
                "--batch",
                &file("stray.csv", batch(&h, &[("P2", nhs(2), "1")], "\n", ",").replace("1,\n", "1,x\n")),
            ]),
            "stray.csv:2: column 18 holds a value but has no name in the header; name the column or delete the value",
        ),
        (
            s(&["randomise", "--db", &d, "--batch", &file("twice.csv", batch(&format!("{h},PHQ9"), &[], "\n", ""))]),
            "column \"phq9\" appears twice in the header (names are matched without regard to case)",
        ),
        (
            s(&[
                "randomise",
                "--db",
                &d,
                "--batch",
                &file("empty.csv", batch(&h, &[], "\r\n", ",,") + ",,,\r\n,,,\r\n"),
            ]),
            "the file has a header but no referrals",
        ),
        (
            s(&["randomise", "--db", &d, "--participant", "p1", "--site", "sheffield", "--set", "age=34"]),
            "participant p1 differs only in case from participant P1",
        ),
        (
            outcome_record_args(&db, LATER, "P1", "m4", "2026-07-1x", &["phq9=3"]),
            "\"2026-07-1x\" is not a date; write it as YYYY-MM-DD",
        ),
        (outcome_record_args(&db, LATER, "P1", "m4", "2026-07-01", &["phq9=+-3"]), "\"+-3\" is not a whole number"),
        (outcome_record_args(&db, LATER, "P1", "m4", "2026-07-01", &["phq9=1e1"]), "\"1e1\" is not a whole number"),
    ];
    for (args, needle) in cases {
        refused(&db, &args, needle);
    }
    // A delimiter that is not one is a usage error (exit code 2), before anything is read.
    let out = chancery().args(["randomise", "--db", &d, "--batch", "b.csv", "--delimiter", "ab"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("delimiter \"ab\" is not one punctuation character or `tab`"),
        "{}",
        text(&out.stderr)
    );
}

/// A file of one row names its file and line like a longer one.
/// See: a one-row batch's error lost its `file:line`.
#[test]
fn a_one_row_file_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = init(dir.path(), "work-health-ips.toml");
    let csv = dir.path().join("one.csv");
    std::fs::write(
        &csv,
        "participant,site,nhs_number,age,sex,employment_status,condition,referral_source,weeks_out_of_work,gp_in_area,wants_work,receiving_ips,consent,phq9,gad7,swemwbs,eq5d\n\
         N1,sheffield,9434765919,34,female,out_of_work,msk,gp,NA,yes,yes,no,yes,12,9,21,0.731\n",
    )
    .unwrap();
    let out = chancery().args(["randomise", "--db"]).arg(&db).arg("--batch").arg(&csv).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("one.csv:2: participant N1"), "{err}");
}
