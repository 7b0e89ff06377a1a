//! The operations a front end calls (`chancery::operations`), called as a
//! second front end would: in process, with uploaded bytes, one trial handle
//! kept open across requests. What they give must be what the command gives.

use std::path::{Path, PathBuf};

use chancery::clock::{Clock, Timestamp};
use chancery::error::Error;
use chancery::operations::{self as op, CorrectTo, ExportTable, Referrals, StatusChange};

use crate::util::*;

fn clock(at: &str) -> Clock {
    Clock::Fixed(Timestamp::parse(at).unwrap())
}

/// A trial made by the operation, as `util::init` makes one with the command.
fn init(dir: &Path) -> PathBuf {
    let db = dir.join("trial.db");
    let report = op::init(&op::InitRequest {
        protocol: protocol("work-health-ips.toml"),
        db: db.clone(),
        key: None,
        seed: Some(chancery::keys::parse_seed(SEED).unwrap()),
        user: "tester".into(),
        clock: clock(NOW),
    })
    .unwrap();
    assert_eq!(report.key_file, dir.join("trial.db.key").display().to_string());
    db
}

/// Twenty referrals: every fifth under age (ineligible), every seventh declining.
fn referrals_csv() -> String {
    let mut csv = String::from(
        "participant,site,nhs_number,age,sex,employment_status,condition,referral_source,weeks_out_of_work,gp_in_area,wants_work,receiving_ips,consent,phq9,gad7,swemwbs,eq5d\n",
    );
    for i in 0..20u32 {
        let site = ["sheffield", "rotherham", "barnsley"][i as usize % 3];
        let age = if i % 5 == 4 { 17 } else { 30 + i };
        let consent = if i % 7 == 6 { "no" } else { "yes" };
        let condition = ["mental_health", "msk", "both"][i as usize % 3];
        csv += &format!(
            "R{i},{site},{},{age},female,out_of_work,{condition},gp,10,yes,yes,no,{consent},12,9,21,0.731\n",
            nhs(i)
        );
    }
    csv
}

fn randomise(trial: &mut op::Trial, db: &Path, referrals: Referrals, at: &str) -> chancery::Result<op::Randomisation> {
    let key = op::read_trial_key(&op::key_path(db, None)).unwrap();
    op::randomise(trial, &key, &op::RandomiseRequest { referrals, user: "tester".into(), clock: clock(at) })
}

/// The batch an HTTP client uploads as bytes is the batch the command reads
/// from a file: the same confirmations, and a log identical entry for entry
/// (so the same hashes and head).
#[test]
fn a_batch_from_csv_bytes_is_the_commands_batch() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let csv = referrals_csv();
    let file = a.path().join("referrals.csv");
    std::fs::write(&file, &csv).unwrap();
    let db_a = crate::util::init(a.path(), "work-health-ips.toml");
    let out = chancery().args(["randomise", "--json", "--batch"]).arg(&file).arg("--db").arg(&db_a).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let by_command: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let db_b = init(b.path());
    let mut trial = op::open(&db_b).unwrap();
    let referrals = Referrals::from_csv("upload.csv", csv.as_bytes(), None).unwrap();
    assert!(referrals.is_batch());
    let r = randomise(&mut trial, &db_b, referrals, NOW).unwrap();

    assert_eq!(serde_json::to_value(&r.confirmations).unwrap(), by_command);
    assert_eq!((r.randomised, r.ineligible, r.declined), (14, 4, 2));
    assert_eq!(log_snapshot(&db_a), log_snapshot(&db_b));
    let status = op::status(&trial).unwrap();
    assert_eq!(status.status.head, r.confirmations.last().unwrap().head);
    assert_eq!(status.status.randomised, 14);
    assert_eq!(status.title, trial.protocol().title);
}

/// A refused request writes nothing, and the trial a service keeps open goes
/// on exactly as if it had never been made: the next randomisation gets the
/// allocation, and the log the entry, that a trial never asked would give.
#[test]
fn a_refused_operation_leaves_the_trial_as_it_was() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let csv = referrals_csv();
    let (db_a, db_b) = (init(a.path()), init(b.path()));
    let mut kept = op::open(&db_a).unwrap();
    randomise(&mut kept, &db_a, Referrals::from_csv("upload.csv", csv.as_bytes(), None).unwrap(), NOW).unwrap();
    let before = db_snapshot(&db_a);

    // Fine as a file, refused by the trial: its second row was randomised
    // already (the first row allocates before the refusal is found).
    let lines: Vec<&str> = csv.lines().collect();
    let again = format!(
        "{}\nN1,sheffield,{},40,male,out_of_work,msk,gp,10,yes,yes,no,yes,12,9,21,0.7\n{}\n",
        lines[0],
        nhs(100),
        lines[1].replace("R0,", "N2,")
    );
    let e = randomise(&mut kept, &db_a, Referrals::from_csv("again.csv", again.as_bytes(), None).unwrap(), NOW)
        .unwrap_err();
    assert!(
        e.to_string().contains("again.csv:3: participant N2: this NHS number was already randomised as participant R0"),
        "{e}"
    );
    assert!(before == db_snapshot(&db_a), "a refused batch changed the database");
    // A correction of an outcome never recorded is refused too.
    let request = op::CorrectRequest {
        participant: "R0".into(),
        timepoint: "m4".into(),
        to: CorrectTo::Value { field: "in_paid_work".into(), value: "yes".into() },
        reason: "typo".into(),
        user: "tester".into(),
        clock: clock(NOW),
    };
    assert!(op::correct_outcome(&mut kept, &request).is_err());
    assert!(before == db_snapshot(&db_a), "a refused correction changed the database");

    // The same trial never asked anything refused.
    let mut fresh = op::open(&db_b).unwrap();
    randomise(&mut fresh, &db_b, Referrals::from_csv("upload.csv", csv.as_bytes(), None).unwrap(), NOW).unwrap();
    let one = |id: &str| {
        let fields = std::iter::once(("nhs_number", nhs(200)))
            .chain(REFERRAL_FIELDS.map(|(k, v)| match k {
                "age" => (k, "44".to_string()),
                "sex" => (k, "male".to_string()),
                _ => (k, v.to_string()),
            }))
            .map(|(k, v)| (format!(" {k}"), v))
            .collect::<Vec<_>>();
        Referrals::single(id, "sheffield", &fields)
    };
    let later = "2026-03-03T09:00:00Z";
    let x = randomise(&mut kept, &db_a, one("S1"), later).unwrap();
    let y = randomise(&mut fresh, &db_b, one("S1"), later).unwrap();
    assert!(!x.batch);
    assert_eq!(x.confirmations[0].status, "randomised", "field names are trimmed: {:?}", x.confirmations[0]);
    assert_eq!(serde_json::to_value(&x.confirmations).unwrap(), serde_json::to_value(&y.confirmations).unwrap());
    assert_eq!(log_snapshot(&db_a), log_snapshot(&db_b));
}

/// `outcome correct` needs a value or a correction to missing, asked for
/// plainly: an empty `--set` value is a slip, not a correction to missing.
/// The command's messages are the operation's.
#[test]
fn a_correction_needs_a_value_or_an_explicit_clear() {
    let message = |e: Error| match e {
        Error::Input(m) => m,
        other => panic!("not an input error: {other}"),
    };
    assert_eq!(message(CorrectTo::new(None, None).unwrap_err()), "give --set FIELD=VALUE or --clear FIELD");
    assert_eq!(
        message(CorrectTo::new(Some((" In_Paid_Work ".into(), " ".into())), None).unwrap_err()),
        r#"--set " In_Paid_Work = " gives no value; to correct In_Paid_Work to missing use --clear In_Paid_Work"#
    );
    assert!(CorrectTo::new(Some(("a".into(), "1".into())), Some("a".into())).is_err());
    assert_eq!(CorrectTo::new(None, Some("a".into())).unwrap(), CorrectTo::Missing { field: "a".into() });

    let dir = tempfile::tempdir().unwrap();
    let db = crate::util::init(dir.path(), "work-health-ips.toml");
    let out = chancery()
        .args(["outcome", "correct", "--participant", "P1", "--timepoint", "m4", "--reason", "x", "--set"])
        .arg(" In_Paid_Work = ")
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: --set \" In_Paid_Work = \" gives no value; to correct In_Paid_Work to missing use --clear In_Paid_Work\n"
    );
}

/// What the operations default is resolved in the trial's time zone (Europe/
/// London): at 23:30 UTC on 5 July it is already 6 July there, so an outcome
/// recorded without a date is dated 6 July and the due list is for 6 July.
#[test]
fn defaults_are_the_trials_today() {
    let dir = tempfile::tempdir().unwrap();
    let db = init(dir.path());
    let mut trial = op::open(&db).unwrap();
    let csv = referrals_csv();
    randomise(&mut trial, &db, Referrals::from_csv("upload.csv", csv.as_bytes(), None).unwrap(), NOW).unwrap();
    let late = clock("2026-07-05T23:30:00Z");
    let d = op::due(&trial, &op::DueRequest { on: None, clock: late }).unwrap();
    assert_eq!(d.on.to_string(), "2026-07-06");
    assert!(d.due.iter().any(|d| d.participant == "R0" && d.timepoint == "m4"), "{:?}", d.due);

    let request = op::RecordRequest {
        participant: "R0".into(),
        timepoint: "m4".into(),
        values: vec![(" In_Paid_Work".into(), "yes".into())],
        on: None,
        window_reason: None,
        user: "tester".into(),
        clock: late,
    };
    let written = op::record_outcome(&mut trial, &request).unwrap();
    assert_eq!(written.participant, "R0");
    let table = op::export(&trial, ExportTable::Outcomes).unwrap();
    let col = |name: &str| table.columns.iter().position(|c| c == name).unwrap();
    let row = &table.rows[0];
    assert_eq!(row[col("field")].as_deref(), Some("in_paid_work"));
    assert_eq!(row[col("collected_on")].as_deref(), Some("2026-07-06"));

    // An import's rows without a date are dated the same way.
    let upload = b"participant,timepoint,in_paid_work\nR1,m4,no\n";
    let imported = op::import_outcomes(
        &mut trial,
        &op::ImportRequest {
            name: "m4.csv".into(),
            csv: upload.to_vec(),
            delimiter: None,
            user: "tester".into(),
            clock: late,
        },
    )
    .unwrap();
    assert_eq!((imported.name.as_str(), imported.written.len()), ("m4.csv", 1));
    let table = op::export(&trial, ExportTable::Outcomes).unwrap();
    assert!(table.rows.iter().all(|r| r[col("collected_on")].as_deref() == Some("2026-07-06")), "{:?}", table.rows);

    // A status change without a date is dated the trial's today too, and the
    // analysis defaults to the date of the log's last entry, there too.
    op::change_status(
        &mut trial,
        &op::StatusChangeRequest {
            participant: "R2".into(),
            change: StatusChange::Lost,
            reason: "moved away".into(),
            on: None,
            user: "tester".into(),
            clock: late,
        },
    )
    .unwrap();
    let s = op::status(&trial).unwrap();
    assert_eq!(s.status.not_active.get("lost"), Some(&1));
    let a = op::analyse(&trial, &op::AnalyseRequest::default()).unwrap();
    assert_eq!(a.as_of.to_string(), "2026-07-06");
    assert!(a.tables.is_empty(), "tables only when asked for");
}

/// A verification that fails is a result the front end shows, with the
/// message the command exits with; an intact trial has none.
#[test]
fn verification_failure_is_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = init(dir.path());
    let v = op::verify(&db, &op::VerifyRequest::default()).unwrap();
    assert!(v.report.ok && v.failure.is_none(), "{:?}", v.failure);
    // A checkpoint of a longer log than the database holds: truncation.
    let trial = op::open_read_only(&db).unwrap();
    let signing = op::read_signing_key(&op::key_path(&db, None)).unwrap();
    let c = op::checkpoint(&trial, &signing, &op::CheckpointRequest { clock: clock(NOW) }).unwrap();
    assert_eq!(c.length, 1);
    let forged = c.to_text().replace("log-length: 1\n", "log-length: 2\n");
    let given = op::checkpoint_from_text("cp.txt", &forged).unwrap();
    let v = op::verify(&db, &op::VerifyRequest { seed: None, checkpoints: vec![given] }).unwrap();
    let failure = v.failure.expect("a checkpoint the log does not extend fails verification");
    assert!(failure.starts_with("verification failed"), "{failure}");
    assert!(!v.report.ok);
    let e = op::checkpoint_from_text("cp.txt", "not a checkpoint").unwrap_err();
    assert!(e.to_string().starts_with("checkpoint cp.txt: "), "{e}");
}

/// A front end that receives a file's bytes itself (an HTTP upload) gets the
/// bounds the command line applies when it reads a file: a line no referral
/// or outcome row could be is refused with its line number, before the trial
/// is touched.
#[test]
fn uploaded_bytes_are_held_to_the_csv_limits() {
    let dir = tempfile::tempdir().unwrap();
    let db = init(dir.path());
    let before = db_snapshot(&db);
    let mut upload = referrals_csv().into_bytes();
    upload.extend(std::iter::repeat_n(b'x', chancery::bounded::CSV_LINE_BYTES + 1));
    let lines = upload.iter().filter(|&&b| b == b'\n').count() + 1;
    let e = Referrals::from_csv("upload.csv", &upload, None).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "upload.csv line {lines}: longer than 65536 bytes, more than any row of a CSV file holds; check the file (is it a CSV file?)"
        )
    );

    let mut trial = op::open(&db).unwrap();
    let request = op::ImportRequest {
        name: "m4.csv".into(),
        csv: [&b"participant,timepoint,in_paid_work\nR1,m4,"[..], &vec![b'y'; 70_000]].concat(),
        delimiter: None,
        user: "tester".into(),
        clock: clock(NOW),
    };
    let e = op::import_outcomes(&mut trial, &request).unwrap_err().to_string();
    assert!(e.starts_with("m4.csv line 2: longer than 65536 bytes"), "{e}");
    drop(trial);
    assert_eq!(db_snapshot(&db), before);
}
