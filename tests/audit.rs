//! The auditor's side: `verify`, checkpoints, the seed reveal, and one test per
//! kind of tampering, each made by editing the SQLite file directly as an
//! insider would (append-only triggers dropped first).

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde_json::Value;

use crate::util::*;

const OTHER_SEED: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

/// A trial with ten randomised participants (and one screened out), follow-up
/// for two of them, and a correction: every event type but the reveal.
fn build(dir: &Path, seed: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let db = dir.join("trial.db");
    chancery()
        .args(["init", "--protocol"])
        .arg(protocol("work-health-ips.toml"))
        .arg("--db")
        .arg(&db)
        .args(["--seed", seed])
        .assert()
        .success();
    for i in 0..11u32 {
        let site = ["sheffield", "rotherham", "dudley"][i as usize % 3];
        let over: &[(&str, &str)] = if i == 4 { &[("age", "17")] } else { &[] };
        let mut args = vec!["randomise".to_string(), "--db".into(), db.display().to_string()];
        args.extend(referral_args(&format!("P{i:02}"), site, &nhs(i), over));
        chancery().args(&args).assert().success();
    }
    for p in ["P00", "P01"] {
        chancery()
            .env("CHANCERY_NOW", "2026-07-10T10:00:00Z")
            .args(["outcome", "record", "--db"])
            .arg(&db)
            .args(["--participant", p, "--timepoint", "m4", "--on", "2026-07-01"])
            .args(["--set", "phq9=10", "--set", "in_paid_work=no", "--set", "weeks_in_paid_work=0"])
            .assert()
            .success();
    }
    chancery()
        .env("CHANCERY_NOW", "2026-07-11T10:00:00Z")
        .args(["outcome", "correct", "--db"])
        .arg(&db)
        .args(["--participant", "P01", "--timepoint", "m4", "--set", "phq9=11", "--reason", "typing error"])
        .assert()
        .success();
    db
}

struct Verdict {
    code: i32,
    json: Value,
    stderr: String,
}

/// Runs `chancery verify --json`, and the reference verifier written from
/// docs/SPEC.md alone (tests/vectors/verify.py), and checks they agree.
fn verify(db: &Path, extra: &[&str]) -> Verdict {
    let out = chancery().args(["verify", "--json", "--db"]).arg(db).args(extra).output().unwrap();
    let v = Verdict {
        code: out.status.code().unwrap(),
        json: serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout))),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    let mut py = std::process::Command::new("python3");
    py.arg(root().join("tests/vectors/verify.py")).arg(db);
    let mut args = extra.iter();
    while let Some(a) = args.next() {
        let value = args.next().unwrap();
        match *a {
            "--key" => {
                let text = std::fs::read_to_string(value).unwrap();
                let seed = text.lines().find_map(|l| l.strip_prefix("seed = ")).unwrap();
                py.args(["--seed", seed]);
            }
            other => {
                py.args([other, value]);
            }
        }
    }
    let out = py.output().expect("python3 runs the reference verifier");
    let reference: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("reference verifier: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(reference["ok"], v.json["ok"], "chancery {:#} vs reference {reference:#}", v.json);
    assert_eq!(reference["first_bad_seq"], v.json["first_bad_seq"], "chancery {:#} vs reference {reference:#}", v.json);
    assert_eq!(reference["head"], v.json["head"]);
    assert_eq!(out.status.code(), Some(v.code));
    v
}

fn key_arg(db: &Path) -> String {
    format!("{}.key", db.display())
}

fn check<'a>(v: &'a Verdict, name: &str) -> &'a Value {
    v.json["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
}

/// Asserts the verdict failed at `seq`, with `name` among the failing checks at that entry.
fn assert_fails(v: &Verdict, seq: u64, name: &str) {
    assert_eq!(v.code, 1, "{}", v.json);
    assert_eq!(v.json["ok"], false);
    assert_eq!(v.json["first_bad_seq"], seq, "{:#}", v.json);
    assert_eq!(check(v, name)["ok"], false, "{name}: {:#}", v.json);
    assert_eq!(check(v, name)["seq"], seq, "{name}: {:#}", v.json);
    assert_eq!(v.stderr.lines().count(), 1, "{}", v.stderr);
    assert!(v.stderr.contains(&format!("log entry {seq}")), "{}", v.stderr);
}

/// Opens the database as an insider with write access and no append-only triggers.
fn insider(db: &Path) -> Connection {
    let c = Connection::open(db).unwrap();
    c.execute_batch(
        "DROP TRIGGER IF EXISTS log_is_append_only_update; DROP TRIGGER IF EXISTS log_is_append_only_delete;",
    )
    .unwrap();
    c
}

fn seq_of(c: &Connection, kind: &str, participant: &str) -> i64 {
    c.query_row(
        "SELECT seq FROM log WHERE type = ?1 AND body LIKE ?2 ORDER BY seq LIMIT 1",
        [kind, &format!("%\"participant\":\"{participant}\"%")],
        |r| r.get(0),
    )
    .unwrap()
}

fn copy_trial(db: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    let new = to.join("trial.db");
    // Copy through SQLite so the WAL's contents come along.
    chancery::store::Store::open(db).unwrap().backup_to(&new).unwrap();
    std::fs::copy(key_arg(db), key_arg(&new)).unwrap();
    new
}

#[test]
fn an_intact_trial_passes_every_check_and_says_which_could_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(&dir.path().join("t"), SEED);
    let v = verify(&db, &[]);
    assert_eq!(v.code, 0, "{:#}", v.json);
    assert_eq!(v.json["ok"], true);
    assert_eq!(v.json["first_bad_seq"], Value::Null);
    assert_eq!(v.json["complete"], false, "no seed, no checkpoint: not everything could run");
    assert_eq!(check(&v, "allocations")["status"], "skipped");

    let cp = dir.path().join("cp.txt");
    chancery().args(["checkpoint", "--db"]).arg(&db).arg("--out").arg(&cp).assert().success();
    let v = verify(&db, &["--key", &key_arg(&db), "--checkpoint", cp.to_str().unwrap()]);
    assert_eq!(v.code, 0, "{:#}", v.json);
    assert_eq!(v.json["complete"], true);
    for c in v.json["checks"].as_array().unwrap() {
        assert_eq!(c["ok"], true, "{c}");
    }
    let names: Vec<&str> = v.json["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "chain",
            "replay",
            "unique_participants",
            "checkpoints",
            "seed_commitment",
            "allocations",
            "sqlite_integrity",
            "schema"
        ]
    );
    let status = String::from_utf8(chancery().args(["status", "--db"]).arg(&db).output().unwrap().stdout).unwrap();
    assert!(status.contains(v.json["head"].as_str().unwrap()));
}

#[test]
fn a_checkpoint_is_signed_text_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(&dir.path().join("t"), SEED);
    let out = chancery().args(["checkpoint", "--db"]).arg(&db).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let c = chancery::checkpoint::Checkpoint::parse(&text).unwrap();
    assert_eq!(c.trial, "work-health-ips");
    let head = verify(&db, &[]).json["head"].as_str().unwrap().to_string();
    assert_eq!(c.head, head);
    let cp = dir.path().join("cp.txt");
    std::fs::write(&cp, "keep me").unwrap();
    chancery().args(["checkpoint", "--db"]).arg(&db).arg("--out").arg(&cp).assert().code(1);
    assert_eq!(std::fs::read_to_string(&cp).unwrap(), "keep me");
    // A forged checkpoint (its signature no longer matches) is refused by verify.
    let forged = dir.path().join("forged.txt");
    std::fs::write(
        &forged,
        text.replace(&format!("log-length: {}", c.length), &format!("log-length: {}", c.length - 1)),
    )
    .unwrap();
    let v = verify(&db, &["--checkpoint", forged.to_str().unwrap()]);
    assert_fails(&v, 0, "checkpoints");
}

#[test]
fn after_the_reveal_anyone_rederives_every_allocation_and_randomisation_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(&dir.path().join("t"), SEED);
    let out = chancery()
        .env("CHANCERY_NOW", "2026-08-01T09:00:00Z")
        .args(["reveal", "--db"])
        .arg(&db)
        .args(["--reason", "recruitment closed", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = verify(&db, &[]);
    assert_eq!(v.code, 0, "{:#}", v.json);
    assert_eq!(v.json["seed"], "revealed");
    assert_eq!(check(&v, "allocations")["ok"], true, "{:#}", v.json);
    assert_eq!(check(&v, "seed_commitment")["ok"], true);
    let mut args = vec!["randomise".to_string(), "--db".into(), db.display().to_string()];
    args.extend(referral_args("LATE", "sheffield", &nhs(90), &[]));
    let out = chancery().env("CHANCERY_NOW", "2026-08-02T09:00:00Z").args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("revealed"));
}

#[test]
fn changing_an_arm_in_the_log_breaks_the_chain_at_that_entry() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(&dir.path().join("t"), SEED);
    let c = insider(&db);
    let seq = seq_of(&c, "participant_randomised", "P05");
    let body: String = c.query_row("SELECT body FROM log WHERE seq = ?1", [seq], |r| r.get(0)).unwrap();
    let flipped = if body.contains("\"arm\":\"ips\"") {
        body.replace("\"arm\":\"ips\"", "\"arm\":\"usual_care\"")
    } else {
        body.replace("\"arm\":\"usual_care\"", "\"arm\":\"ips\"")
    };
    assert_ne!(flipped, body);
    c.execute("UPDATE log SET body = ?1 WHERE seq = ?2", rusqlite::params![flipped, seq]).unwrap();
    drop(c);
    assert_fails(&verify(&db, &[]), seq as u64, "chain");
}

#[test]
fn changing_a_baseline_value_in_the_log_breaks_the_chain_at_that_entry() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(&dir.path().join("t"), SEED);
    let c = insider(&db);
    let seq = seq_of(&c, "participant_randomised", "P07");
    let body: String = c.query_row("SELECT body FROM log WHERE seq = ?1", [seq], |r| r.get(0)).unwrap();
    let edited = body.replace("\"phq9\":\"12\"", "\"phq9\":\"20\"");
    assert_ne!(edited, body);
    // Even recomputing this entry's own hash does not help: the next link breaks.
    let hash = chancery::log::Entry::hash_of(&edited);
    c.execute("UPDATE log SET body = ?1, hash = ?2 WHERE seq = ?3", rusqlite::params![edited, hash, seq]).unwrap();
    drop(c);
    assert_fails(&verify(&db, &[]), seq as u64 + 1, "chain");
}

#[test]
fn deleting_an_entry_is_found_where_the_gap_is() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(&dir.path().join("t"), SEED);
    let c = insider(&db);
    let seq = seq_of(&c, "participant_randomised", "P03");
    c.execute("DELETE FROM log WHERE seq = ?1", [seq]).unwrap();
    drop(c);
    let v = verify(&db, &[]);
    assert_fails(&v, seq as u64, "chain");
    assert!(check(&v, "chain")["message"].as_str().unwrap().contains("missing"));
}

#[test]
fn swapping_two_entries_is_found_at_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(&dir.path().join("t"), SEED);
    let c = insider(&db);
    let a = seq_of(&c, "participant_randomised", "P02");
    let b = seq_of(&c, "participant_randomised", "P03");
    c.execute_batch(&format!(
        "UPDATE log SET seq = -1 WHERE seq = {a}; UPDATE log SET seq = {a} WHERE seq = {b}; UPDATE log SET seq = {b} WHERE seq = -1;"
    ))
    .unwrap();
    drop(c);
    assert_fails(&verify(&db, &[]), a as u64, "chain");
}

#[test]
fn a_forged_entry_with_a_valid_hash_is_caught_by_replay_and_by_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(&dir.path().join("t"), SEED);
    // The insider appends a randomisation for a new participant, chaining it
    // correctly, but (not knowing how allocation is derived) cannot make the
    // tables or the seed agree with it.
    let forged = append_forged(&db, "participant_randomised", "P09", |d| {
        d["participant"] = Value::String("FORGED".into());
        d["identity"] = Value::String("ab".repeat(32));
    });
    let v = verify(&db, &["--key", &key_arg(&db)]);
    assert_fails(&v, forged, "replay");
    assert_eq!(check(&v, "chain")["ok"], true, "the forgery is chained correctly");
}

#[test]
fn truncating_the_tail_consistently_is_caught_by_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(&dir.path().join("t"), SEED);
    // The insider keeps an early copy, lets the trial run on, hands out a
    // checkpoint, then puts the early copy back: log and tables agree.
    let early = copy_trial(&db, &dir.path().join("early"));
    let early_len = verify(&early, &[]).json["entries"].as_u64().unwrap();
    let mut args = vec!["randomise".to_string(), "--db".into(), db.display().to_string()];
    args.extend(referral_args("P99", "sheffield", &nhs(99), &[]));
    chancery().env("CHANCERY_NOW", "2026-07-12T09:00:00Z").args(&args).assert().success();
    let cp = dir.path().join("cp.txt");
    chancery().args(["checkpoint", "--db"]).arg(&db).arg("--out").arg(&cp).assert().success();
    assert_eq!(verify(&early, &[]).code, 0, "without a checkpoint the truncated copy looks whole");
    let v = verify(&early, &["--checkpoint", cp.to_str().unwrap()]);
    assert_fails(&v, early_len, "checkpoints");
    assert!(check(&v, "checkpoints")["message"].as_str().unwrap().contains("truncation"));
}

#[test]
fn a_consistent_rewrite_under_another_seed_is_caught_by_the_commitment_and_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(&dir.path().join("t"), SEED);
    let cp = dir.path().join("cp.txt");
    chancery().args(["checkpoint", "--db"]).arg(&db).arg("--out").arg(&cp).assert().success();
    let key = dir.path().join("original.key");
    std::fs::copy(key_arg(&db), &key).unwrap();
    // The same trial rebuilt whole under another seed: internally consistent.
    let rebuilt = build(&dir.path().join("r"), OTHER_SEED);
    assert_eq!(verify(&rebuilt, &[]).code, 0);
    let v = verify(&rebuilt, &["--key", key.to_str().unwrap()]);
    assert_fails(&v, 0, "seed_commitment");
    let v = verify(&rebuilt, &["--checkpoint", cp.to_str().unwrap()]);
    assert_fails(&v, 0, "checkpoints");
}

#[test]
fn editing_a_derived_table_behind_the_log_is_caught_by_replay() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(&dir.path().join("t"), SEED);
    let c = Connection::open(&db).unwrap();
    let seq = seq_of(&c, "participant_randomised", "P06");
    c.execute(
        "UPDATE referrals SET arm = CASE arm WHEN 'ips' THEN 'usual_care' ELSE 'ips' END WHERE participant = 'P06'",
        [],
    )
    .unwrap();
    drop(c);
    assert_fails(&verify(&db, &[]), seq as u64, "replay");

    // An outcome value changed behind the log, too.
    let db = build(&dir.path().join("u"), SEED);
    let c = Connection::open(&db).unwrap();
    let seq = seq_of(&c, "outcome_recorded", "P00");
    c.execute("UPDATE outcomes SET value = '3' WHERE participant = 'P00' AND field = 'phq9'", []).unwrap();
    drop(c);
    assert_fails(&verify(&db, &[]), seq as u64, "replay");
}

/// Appends, as an insider, a copy of `participant`'s `kind` entry with its data
/// edited, chained correctly after the last entry; returns its seq.
fn append_forged(db: &Path, kind: &str, participant: &str, edit: impl FnOnce(&mut Value)) -> u64 {
    let template = seq_of(&insider(db), kind, participant);
    append_forged_from(db, template, |e| edit(&mut e.data))
}

#[test]
fn randomising_an_identity_twice_is_caught_at_the_second_entry() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(&dir.path().join("t"), SEED);
    let seq = append_forged(&db, "participant_randomised", "P09", |d| {
        d["participant"] = Value::String("AGAIN".into());
    });
    let v = verify(&db, &[]);
    assert_fails(&v, seq, "unique_participants");
    let msg = check(&v, "unique_participants")["message"].as_str().unwrap();
    assert!(msg.contains("AGAIN has the identity already randomised as participant P09"), "{msg}");
    assert_eq!(check(&v, "chain")["ok"], true, "the forgery is chained correctly");
    assert_eq!(check(&v, "replay")["status"], "skipped", "derivation stops at the duplicate");
}

#[test]
fn recording_a_participant_id_twice_is_caught_at_the_second_entry() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(&dir.path().join("t"), SEED);
    // Randomised twice under one id, with another identity.
    let seq = append_forged(&db, "participant_randomised", "P09", |d| {
        d["identity"] = Value::String("cd".repeat(32));
    });
    let v = verify(&db, &[]);
    assert_fails(&v, seq, "unique_participants");
    assert!(check(&v, "unique_participants")["message"].as_str().unwrap().contains("P09 is recorded twice"));

    // A screened-out referral reusing a randomised participant's id.
    let db = build(&dir.path().join("u"), SEED);
    let seq = append_forged(&db, "referral_screened", "P04", |d| {
        d["participant"] = Value::String("P00".into());
    });
    let v = verify(&db, &[]);
    assert_fails(&v, seq, "unique_participants");
    assert!(check(&v, "unique_participants")["message"].as_str().unwrap().contains("P00 is recorded twice"));
}

#[test]
fn a_trial_row_that_hides_or_misplaces_the_reveal_does_not_hide_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(&dir.path().join("t"), SEED);
    chancery()
        .env("CHANCERY_NOW", "2026-08-01T09:00:00Z")
        .args(["reveal", "--db"])
        .arg(&db)
        .args(["--reason", "recruitment closed"])
        .assert()
        .success();
    // Verification looks for the reveal where the trial row says it is, but
    // finds the seed in the log whatever that row says.
    for edit in [
        "UPDATE trial SET revealed_seq = NULL, revealed_at = NULL",
        "UPDATE trial SET revealed_seq = 1",
        "UPDATE trial SET revealed_seq = 'x'",
        "UPDATE trial SET revealed_seq = 1000000",
    ] {
        let copy = copy_trial(&db, &dir.path().join(format!("c{}", edit.len())));
        Connection::open(&copy).unwrap().execute(edit, []).unwrap();
        // (The reference verifier does not compare the trial row, so only chancery runs here.)
        let out = chancery().args(["verify", "--json", "--db"]).arg(&copy).output().unwrap();
        let v = Verdict {
            code: out.status.code().unwrap(),
            json: serde_json::from_slice(&out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        };
        assert_fails(&v, 0, "replay");
        assert!(check(&v, "replay")["message"].as_str().unwrap().contains("table trial"), "{:#}", v.json);
        assert_eq!(v.json["seed"], "revealed", "{edit}: {:#}", v.json);
        assert_eq!(check(&v, "allocations")["ok"], true, "{edit}: {:#}", v.json);
        assert_eq!(check(&v, "seed_commitment")["ok"], true, "{edit}: {:#}", v.json);
    }
}

#[test]
fn a_duplicate_before_a_broken_link_is_reported_first_and_each_check_names_its_own_entry() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(&dir.path().join("t"), SEED);
    let dup = append_forged(&db, "participant_randomised", "P09", |d| {
        d["participant"] = Value::String("AGAIN".into());
    });
    // (append_forged already dropped the append-only triggers.)
    let c = Connection::open(&db).unwrap();
    c.execute(
        "INSERT INTO log (seq, ts, type, hash, body) VALUES (?1, '2026-07-11T10:00:00.000000Z', 'status_changed', 'ab', 'not json')",
        [dup as i64 + 1],
    )
    .unwrap();
    drop(c);
    let v = verify(&db, &[]);
    assert_fails(&v, dup, "unique_participants");
    assert_eq!(check(&v, "chain")["ok"], false, "{:#}", v.json);
    assert_eq!(check(&v, "chain")["seq"], dup + 1, "{:#}", v.json);
    assert_eq!(v.json["entries"], dup + 1, "the chain holds up to the duplicate");
    assert_eq!(check(&v, "replay")["status"], "skipped");
}

/// `chancery verify --json` alone, for tampering the reference verifier (which
/// compares only some columns of the derived tables) does not look for.
fn verify_chancery(db: &Path) -> Verdict {
    let out = chancery().args(["verify", "--json", "--db"]).arg(db).output().unwrap();
    Verdict {
        code: out.status.code().unwrap(),
        json: serde_json::from_slice(&out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// The digest form of verification alone: `Some` when it vouches for the trial.
fn by_digest(db: &Path) -> Option<chancery::verify::Report> {
    let scratch = tempfile::tempdir().unwrap();
    chancery::verify::verify_by_digest(&chancery::verify::VerifyOptions {
        db: db.to_path_buf(),
        seed: None,
        checkpoints: Vec::new(),
        scratch_dir: scratch.path().to_path_buf(),
    })
    .unwrap()
}

/// A built trial with a withdrawal and the reveal as well: every event type.
fn build_all(dir: &Path) -> PathBuf {
    let db = build(dir, SEED);
    chancery()
        .args(["withdraw", "--db"])
        .arg(&db)
        .args(["--participant", "P02", "--reason", "moved", "--now", "2026-07-12T10:00:00Z"])
        .assert()
        .success();
    chancery()
        .env("CHANCERY_NOW", "2026-08-01T09:00:00Z")
        .args(["reveal", "--db"])
        .arg(&db)
        .args(["--key", &key_arg(&db), "--reason", "recruitment closed"])
        .assert()
        .success();
    db
}

#[test]
fn an_intact_trial_is_vouched_for_by_the_digests_with_the_exact_report() {
    let dir = tempfile::tempdir().unwrap();
    for db in [build(&dir.path().join("t"), SEED), build_all(&dir.path().join("u"))] {
        let fast = by_digest(&db).expect("the digest form vouches for an intact trial");
        let v = verify(&db, &[]);
        assert_eq!(v.code, 0, "{:#}", v.json);
        assert_eq!(serde_json::to_value(&fast).unwrap(), v.json);
    }
}

#[test]
fn a_derived_row_changed_added_or_removed_is_named_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let base = build_all(&dir.path().join("base"));
    let c = Connection::open(&base).unwrap();
    let p04 = seq_of(&c, "referral_screened", "P04") as u64;
    let p07 = seq_of(&c, "participant_randomised", "P07") as u64;
    let p03 = seq_of(&c, "participant_randomised", "P03") as u64;
    let p05 = seq_of(&c, "participant_randomised", "P05") as u64;
    let last: i64 = c.query_row("SELECT max(seq) FROM log", [], |r| r.get(0)).unwrap();
    let correction: i64 =
        c.query_row("SELECT seq FROM log WHERE type = 'outcome_corrected'", [], |r| r.get(0)).unwrap();
    drop(c);
    let cases: &[(&str, &str, u64)] = &[
        ("referral changed", "UPDATE referrals SET site = 'dudley' WHERE participant = 'P04'", p04),
        (
            "referral added",
            "INSERT INTO referrals VALUES ('P99', 3, 'sheffield', 'declined', '', '2026-01-01T00:00:00Z', NULL, NULL, NULL)",
            3,
        ),
        ("referral removed", "DELETE FROM referrals WHERE participant = 'P07'", p07),
        ("identity removed", "DELETE FROM identities WHERE participant = 'P07'", p07),
        (
            "identity twice",
            "CREATE TABLE i2 AS SELECT * FROM identities; INSERT INTO i2 SELECT * FROM identities WHERE participant = 'P03';
             DROP TABLE identities; ALTER TABLE i2 RENAME TO identities;",
            p03,
        ),
        (
            "sites swapped",
            "UPDATE referrals SET site = CASE participant WHEN 'P03' THEN 'dudley' ELSE 'sheffield' END WHERE participant IN ('P03', 'P05')",
            p03.min(p05),
        ),
        ("trial title", "UPDATE trial SET title = 'another trial'", 0),
        ("reveal moved", "UPDATE trial SET revealed_at = '2026-08-02T09:00:00Z'", 0),
        ("allocation state", "UPDATE allocation_streams SET used = used + 1 WHERE stream = (SELECT min(stream) FROM allocation_streams)", last as u64),
        (
            "corrected outcome",
            "UPDATE outcomes SET collected_on = '2026-07-02' WHERE participant = 'P01' AND field = 'phq9'",
            correction as u64,
        ),
        (
            "participant twice",
            "CREATE TABLE r2 AS SELECT * FROM referrals; INSERT INTO r2 SELECT * FROM referrals WHERE participant = 'P03';
             DROP VIEW participants; DROP TABLE referrals; ALTER TABLE r2 RENAME TO referrals;
             CREATE VIEW participants (participant, seq, site, stratum, arm, identity, randomised_at) AS
                 SELECT participant, seq, site, stratum, arm, identity, screened_at FROM referrals WHERE status = 'randomised';",
            p03,
        ),
    ];
    for (i, (what, sql, seq)) in cases.iter().enumerate() {
        let db = copy_trial(&base, &dir.path().join(format!("c{i}")));
        Connection::open(&db).unwrap().execute_batch(sql).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(by_digest(&db).is_none(), "{what}: the digest form must not vouch");
        let v = verify_chancery(&db);
        assert_fails(&v, *seq, "replay");
        assert_eq!(check(&v, "unique_participants")["ok"], true, "{what}");
    }
}

#[test]
fn a_chained_entry_whose_event_does_not_decode_breaks_the_chain_there_in_both_forms() {
    // The digest form leaves decoding to its derivation thread; an event that
    // does not decode must still stop it from vouching, and the report (the
    // exact form's) names the entry as a chain failure, with the entries after
    // it not counted. Each forgery is chained correctly, so only decoding can
    // find it; it is the last entry (nothing derived from it, so the tables
    // agree with a replay that skipped it) or followed by a valid-looking one.
    let dir = tempfile::tempdir().unwrap();
    let base = build_all(&dir.path().join("base"));
    type Edit = fn(&mut Value);
    let cases: &[(&str, &str, &str, Edit, &str)] = &[
        (
            "a member missing",
            "participant_randomised",
            "P03",
            |d| drop(d.as_object_mut().unwrap().remove("arm")),
            "arm",
        ),
        (
            "a member of the wrong type",
            "referral_screened",
            "P04",
            |d| d["reasons"] = Value::from(7),
            "expected a sequence",
        ),
        ("an unknown member", "participant_randomised", "P05", |d| d["extra"] = Value::from("x"), "extra"),
        ("a second trial_created", "trial_created", "", |_| {}, "second trial_created"),
    ];
    let runs = [false, true].into_iter().flat_map(|followed| cases.iter().enumerate().map(move |c| (followed, c)));
    for (followed, (i, (what, kind, participant, edit, needle))) in runs {
        let db = copy_trial(&base, &dir.path().join(format!("c{i}-{followed}")));
        let bad = if *kind == "trial_created" {
            // Entry 0 again, re-chained at the end.
            append_forged_from(&db, 0, |_| {})
        } else {
            append_forged(&db, kind, participant, edit)
        };
        if followed {
            append_forged(&db, "referral_screened", "P04", |d| d["participant"] = Value::from("LATER"));
        }
        assert!(by_digest(&db).is_none(), "{what}: the digest form must not vouch");
        let v = verify_chancery(&db);
        assert_fails(&v, bad, "chain");
        assert!(check(&v, "chain")["message"].as_str().unwrap().contains(needle), "{what}: {:#}", v.json);
        assert_eq!(v.json["entries"], bad, "{what}: entries after the break are not counted");
    }
}

#[test]
fn a_chained_entry_with_a_time_out_of_order_or_out_of_format_breaks_the_chain_there() {
    // Times never go backwards, and each is in the log's one text form; an
    // entry with the same time as the one before is fine (a batch's entries
    // share one), and is not mistaken for either.
    let dir = tempfile::tempdir().unwrap();
    let base = build_all(&dir.path().join("base"));
    let last_ts: String = Connection::open(&base)
        .unwrap()
        .query_row("SELECT ts FROM log ORDER BY seq DESC LIMIT 1", [], |r| r.get(0))
        .unwrap();
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("earlier", "2026-01-01T00:00:00.000000Z", Some("is earlier than entry")),
        ("no microseconds", "2099-01-01T00:00:00Z", Some("not in the log's time format")),
        ("an offset", "2099-01-01T00:00:00.000000+00:00", Some("not in the log's time format")),
        ("the same time as the entry before", &last_ts, None),
    ];
    for (i, (what, ts, needle)) in cases.iter().enumerate() {
        let db = copy_trial(&base, &dir.path().join(format!("t{i}")));
        let screened = seq_of(&insider(&db), "referral_screened", "P04");
        let bad = append_forged_from(&db, screened, |e| {
            e.data["participant"] = Value::from(format!("NEW{i}"));
            e.ts = ts.to_string();
        });
        let v = verify_chancery(&db);
        match needle {
            Some(needle) => {
                assert_fails(&v, bad, "chain");
                assert!(check(&v, "chain")["message"].as_str().unwrap().contains(needle), "{what}: {:#}", v.json);
            }
            // The chain holds; the replay finds the referral missing from the tables.
            None => {
                assert_eq!(check(&v, "chain")["ok"], true, "{what}: {:#}", v.json);
                assert_fails(&v, bad, "replay");
            }
        }
    }
}

/// Appends a copy of entry `template_seq` chained to the log's end, at its
/// last entry's time, then edited.
fn append_forged_from(db: &Path, template_seq: i64, edit: impl FnOnce(&mut chancery::log::Entry)) -> u64 {
    let c = insider(db);
    let (seq, body, hash): (i64, String, String) = c
        .query_row("SELECT seq, body, hash FROM log ORDER BY seq DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    let last = chancery::log::Entry::decode(&body).unwrap();
    let template: String = c.query_row("SELECT body FROM log WHERE seq = ?1", [template_seq], |r| r.get(0)).unwrap();
    let mut forged = chancery::log::Entry::decode(&template).unwrap();
    forged.seq = seq as u64 + 1;
    forged.prev = hash;
    forged.ts = last.ts.clone();
    edit(&mut forged);
    let text = forged.canonical();
    c.execute(
        "INSERT INTO log (seq, ts, type, hash, body) VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![forged.seq as i64, forged.ts, forged.kind, chancery::log::Entry::hash_of(&text), text],
    )
    .unwrap();
    forged.seq
}
