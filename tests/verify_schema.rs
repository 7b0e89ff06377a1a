//! `verify` checks the whole file: the schema (every table, view, index and
//! trigger) against the one this build creates; without the seed, that each
//! allocation record follows the one before it in its stream; and a file of an
//! older schema is verified read-only, its derived tables reported as not
//! compared. Each case is checked against the reference verifier too.

use std::path::{Path, PathBuf};

use chancery::log::Entry;
use rusqlite::Connection;
use serde_json::Value;

use crate::util::*;

/// The demonstration's default seed, which its trials are made under.
const DEMO_SEED: &str = "c4a2ce2ec4a2ce2ec4a2ce2ec4a2ce2ec4a2ce2ec4a2ce2ec4a2ce2ec4a2ce2e";

/// A demonstration trial (randomisations, outcomes, status changes and a
/// checkpoint) under `protocol_name`, in `dir`; returns the database.
fn demo(dir: &Path, protocol_name: &str) -> PathBuf {
    chancery()
        .args(["demo", "--dir"])
        .arg(dir)
        .args(["--participants", "80", "--protocol"])
        .arg(protocol(protocol_name))
        .assert()
        .success();
    dir.join("trial.db")
}

struct Verdict {
    code: i32,
    json: Value,
    stderr: String,
    /// The reference verifier's `failed`: each failing check and the seq it names.
    reference: Value,
}

impl Verdict {
    fn check(&self, name: &str) -> &Value {
        self.json["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
    }
}

/// `chancery verify --json` and the reference verifier (tests/vectors/verify.py),
/// which must agree on the verdict and the first bad entry.
fn verify(db: &Path, extra: &[&str]) -> Verdict {
    let out = chancery().args(["verify", "--json", "--db"]).arg(db).args(extra).output().unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {} {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    let py = std::process::Command::new("python3")
        .arg(root().join("tests/vectors/verify.py"))
        .arg(db)
        .args(extra)
        .output()
        .expect("python3 runs the reference verifier");
    let reference: Value = serde_json::from_slice(&py.stdout)
        .unwrap_or_else(|e| panic!("reference verifier: {e}: {}", String::from_utf8_lossy(&py.stderr)));
    assert_eq!(reference["ok"], json["ok"], "chancery {json:#} vs reference {reference:#}");
    assert_eq!(reference["first_bad_seq"], json["first_bad_seq"], "chancery {json:#} vs reference {reference:#}");
    assert_eq!(reference["head"], json["head"]);
    assert_eq!(py.status.code(), out.status.code(), "chancery {json:#} vs reference {reference:#}");
    Verdict {
        code: out.status.code().unwrap(),
        json,
        stderr: String::from_utf8(out.stderr).unwrap(),
        reference: reference["failed"].clone(),
    }
}

/// The digest form alone: `Some` when it vouches for the trial.
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

fn copy(db: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    let new = to.join("trial.db");
    chancery::store::Store::open_any_for_audit(db).unwrap().0.backup_to(&new).unwrap();
    new
}

fn export_allocations(db: &Path) -> String {
    let out = chancery().args(["export", "--what", "allocations", "--db"]).arg(db).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_schema_object_added_dropped_or_redefined_fails_a_named_schema_check() {
    // Regression: `verify` passed a database whose `participants` view had been
    // redefined to flip arms, which `export` and `status` then showed.
    let dir = tempfile::tempdir().unwrap();
    let base = demo(&dir.path().join("base"), "work-health-ips.toml");
    let intact = verify(&base, &[]);
    assert_eq!(intact.code, 0, "{:#}", intact.json);
    assert_eq!(intact.check("schema")["status"], "passed");
    let participants = export_allocations(&base);
    let cases: &[(&str, &str, &str)] = &[
        (
            "participants view flipping the arms",
            "DROP VIEW participants;
             CREATE VIEW participants (participant, seq, site, stratum, arm, identity, randomised_at) AS
                 SELECT participant, seq, site, stratum, CASE arm WHEN 'ips' THEN 'usual_care' ELSE 'ips' END,
                     identity, screened_at FROM referrals WHERE status = 'randomised';",
            "view participants differs from schema 5's definition",
        ),
        (
            "append-only trigger dropped",
            "DROP TRIGGER log_is_append_only_update;",
            "trigger log_is_append_only_update is missing",
        ),
        ("table added", "CREATE TABLE notes (x TEXT);", "table notes is not part of schema 5"),
        (
            "trigger added",
            "CREATE TRIGGER keep_arm AFTER INSERT ON referrals BEGIN SELECT 1; END;",
            "trigger keep_arm is not part of schema 5",
        ),
        (
            "index added",
            "CREATE INDEX referrals_by_arm ON referrals (arm);",
            "index referrals_by_arm is not part of schema 5",
        ),
        ("log table altered", "ALTER TABLE log ADD COLUMN note TEXT;", "table log differs from schema 5's definition"),
    ];
    for (i, (what, sql, needle)) in cases.iter().enumerate() {
        let db = copy(&base, &dir.path().join(format!("c{i}")));
        Connection::open(&db).unwrap().execute_batch(sql).unwrap_or_else(|e| panic!("{what}: {e}"));
        if i == 0 {
            assert_ne!(export_allocations(&db), participants, "the redefined view changes what export shows");
        }
        assert!(by_digest(&db).is_none(), "{what}: the digest form must not vouch");
        let v = verify(&db, &[]);
        assert_eq!(v.code, 1, "{what}: {:#}", v.json);
        assert_eq!(v.json["ok"], false, "{what}");
        let schema = v.check("schema");
        assert_eq!(schema["status"], "failed", "{what}: {:#}", v.json);
        assert_eq!(schema["seq"], Value::Null, "{what}: a file check names no entry");
        assert!(schema["message"].as_str().unwrap().contains(needle), "{what}: {schema:#}");
        assert!(v.reference.get("schema").is_some(), "{what}: the reference verifier fails it too: {:#}", v.reference);
        assert_eq!(v.json["first_bad_seq"], Value::Null, "{what}: every entry checks out");
        for c in v.json["checks"].as_array().unwrap().iter().filter(|c| c["name"] != "schema") {
            assert_ne!(c["status"], "failed", "{what}: only the schema fails: {c}");
        }
        assert!(v.stderr.starts_with("error: verification failed: schema check: "), "{what}: {}", v.stderr);
        assert!(v.stderr.contains(needle), "{what}: {}", v.stderr);
        assert_eq!(v.stderr.lines().count(), 1, "{}", v.stderr);
    }

    // Layout is not definition: the same view written on one line still passes.
    let db = copy(&base, &dir.path().join("layout"));
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "DROP VIEW participants; CREATE VIEW participants (participant, seq, site, stratum, arm, identity, randomised_at) AS SELECT participant, seq, site, stratum, arm, identity, screened_at FROM referrals WHERE status = 'randomised';",
        )
        .unwrap();
    let v = verify(&db, &[]);
    assert_eq!(v.code, 0, "{:#}", v.json);
    assert_eq!(v.check("schema")["status"], "passed");
}

/// The append-only triggers as the schema defines them, put back after an
/// insider's edit (so that only the edit itself is there to find).
fn restore_triggers(c: &Connection) {
    for o in chancery::store::Store::expected_schema().unwrap().iter().filter(|o| o.kind == "trigger") {
        c.execute_batch(&format!("DROP TRIGGER IF EXISTS {}; {};", o.name, o.sql)).unwrap();
    }
}

/// Rewrites entry `seq` with `edit` and re-chains every entry after it, as an
/// insider with write access would, leaving the triggers as they were.
fn rewrite(db: &Path, seq: i64, edit: impl FnOnce(&mut Entry)) {
    let c = Connection::open(db).unwrap();
    c.execute_batch("DROP TRIGGER log_is_append_only_update; DROP TRIGGER log_is_append_only_delete;").unwrap();
    let rows: Vec<(i64, String)> = c
        .prepare("SELECT seq, body FROM log WHERE seq >= ?1 ORDER BY seq")
        .unwrap()
        .query_map([seq], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let mut prev: Option<String> = None;
    let mut edit = Some(edit);
    for (s, body) in rows {
        let mut e = Entry::decode(&body).unwrap();
        if let Some(p) = prev {
            e.prev = p;
        }
        if let Some(edit) = edit.take() {
            edit(&mut e);
        }
        let text = e.canonical();
        let hash = Entry::hash_of(&text);
        c.execute("UPDATE log SET body = ?1, hash = ?2 WHERE seq = ?3", rusqlite::params![text, hash, s]).unwrap();
        prev = Some(hash);
    }
    restore_triggers(&c);
}

/// The last randomisation in the log: its seq and allocation record, and the
/// record of the randomisation before it in the same stream.
fn last_randomisation(db: &Path) -> (i64, Value, Value) {
    let c = Connection::open(db).unwrap();
    let rows: Vec<(i64, String)> = c
        .prepare("SELECT seq, body FROM log WHERE type = 'participant_randomised' ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let records: Vec<(i64, Value)> =
        rows.iter().map(|(s, b)| (*s, Entry::decode(b).unwrap().data["allocation"].clone())).collect();
    let (seq, last) = records.last().unwrap().clone();
    let before = records.iter().rev().skip(1).find(|(_, r)| r["stream"] == last["stream"]).unwrap().1.clone();
    (seq, last, before)
}

#[test]
fn a_forged_allocation_record_that_reuses_or_skips_stream_positions_fails_without_the_seed() {
    // Before this check, only the seed could show an allocation record false:
    // an insider could rewrite one to reuse an earlier block position (keeping
    // the tables in step) and pass every check an auditor without the seed runs.
    let dir = tempfile::tempdir().unwrap();
    type Forge = fn(&Connection, &mut Value, &Value);
    let cases: &[(&str, &str, Forge, &str)] = &[
        (
            "a permuted block position reused",
            "work-health-ips.toml",
            |c, rec, before| {
                for k in ["block", "start_word", "position"] {
                    rec[k] = before[k].clone();
                }
                // The allocation state the forged record leaves, so the tables agree.
                c.execute(
                    "UPDATE allocation_streams SET block = ?1, start_word = ?2, used = ?3 WHERE stream = ?4",
                    rusqlite::params![
                        before["block"].as_i64(),
                        before["start_word"].as_i64(),
                        before["position"].as_i64(),
                        before["stream"].as_str()
                    ],
                )
                .unwrap();
            },
            "this position was already used",
        ),
        (
            "minimisation words reused",
            "example-minimisation.toml",
            |_, rec, before| rec["word_start"] = before["word_start"].clone(),
            "each starts where the last ended",
        ),
        (
            "simple randomisation words skipped",
            "example-simple-2to1.toml",
            |c, rec, _| {
                rec["word_start"] = Value::from(rec["word_start"].as_u64().unwrap() + 1);
                rec["word_end"] = Value::from(rec["word_end"].as_u64().unwrap() + 1);
                c.execute("UPDATE allocation_streams SET next_word = next_word + 1 WHERE stream = 'simple'", [])
                    .unwrap();
            },
            "each starts where the last ended",
        ),
    ];
    for (i, (what, protocol_name, forge, needle)) in cases.iter().enumerate() {
        let db = demo(&dir.path().join(format!("d{i}")), protocol_name);
        let (seq, mut record, before) = last_randomisation(&db);
        let c = Connection::open(&db).unwrap();
        forge(&c, &mut record, &before);
        drop(c);
        rewrite(&db, seq, |e| e.data["allocation"] = record);
        let v = verify(&db, &[]);
        assert_eq!(v.code, 1, "{what}: {:#}", v.json);
        assert_eq!(v.json["seed"], "none", "{what}: no seed given and none revealed");
        assert_eq!(v.json["first_bad_seq"], seq, "{what}: {:#}", v.json);
        let replay = v.check("replay");
        assert_eq!(replay["status"], "failed", "{what}: {:#}", v.json);
        assert_eq!(replay["seq"], seq, "{what}");
        assert!(replay["message"].as_str().unwrap().contains(needle), "{what}: {replay:#}");
        assert_eq!(v.reference["replay"], seq, "{what}: {:#}", v.reference);
        for name in ["chain", "schema", "unique_participants"] {
            assert_eq!(v.check(name)["status"], "passed", "{what}: the forgery is chained and the tables agree");
        }
        assert!(v.stderr.contains(&format!("verification failed at log entry {seq}: replay check")), "{}", v.stderr);
        // With the seed, the re-derivation finds it too.
        let v = verify(&db, &["--seed", DEMO_SEED]);
        assert_eq!(v.check("allocations")["status"], "failed", "{what}: {:#}", v.json);
        assert_eq!(v.json["first_bad_seq"], seq, "{what}");
    }
}

#[test]
fn an_older_schema_file_is_verified_read_only_with_its_tables_left_to_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let base = demo(&dir.path().join("base"), "work-health-ips.toml");
    let checkpoint = dir.path().join("base/checkpoint.txt");
    let cp = checkpoint.to_str().unwrap();
    for schema in [1, 2] {
        let db = copy(&base, &dir.path().join(format!("s{schema}")));
        crate::outcomes::downgrade(&db, schema);
        let bytes = std::fs::read(&db).unwrap();
        let v = verify(&db, &["--seed", DEMO_SEED, "--checkpoint", cp]);
        assert_eq!(v.code, 0, "schema {schema}: {:#} {}", v.json, v.stderr);
        assert_eq!(v.json["ok"], true);
        assert_eq!(v.json["complete"], false, "the tables were not compared");
        for name in
            ["chain", "unique_participants", "checkpoints", "seed_commitment", "allocations", "sqlite_integrity"]
        {
            assert_eq!(v.check(name)["status"], "passed", "schema {schema}: {name}: {:#}", v.json);
        }
        let replay = v.check("replay");
        assert_eq!(replay["status"], "skipped", "{replay:#}");
        let msg = replay["message"].as_str().unwrap();
        assert!(msg.contains(&format!("schema {schema}'s layout")) && msg.contains("chancery migrate"), "{msg}");
        assert_eq!(v.check("schema")["status"], "skipped");
        assert!(v.check("schema")["message"].as_str().unwrap().contains(&format!("schema {schema}, older")));
        assert_eq!(std::fs::read(&db).unwrap(), bytes, "verification writes nothing");
        let text = String::from_utf8(chancery().args(["verify", "--db"]).arg(&db).output().unwrap().stdout).unwrap();
        assert!(text.contains("skip replay") && text.contains("verified: every check that could run passed"), "{text}");

        // Its log is checked as closely as a current file's: a forged block
        // position, and a dropped append-only trigger, still fail.
        let forged = copy(&db, &dir.path().join(format!("f{schema}")));
        let (seq, mut record, before) = last_randomisation(&forged);
        for k in ["block", "start_word", "position"] {
            record[k] = before[k].clone();
        }
        rewrite(&forged, seq, |e| e.data["allocation"] = record);
        let v = verify(&forged, &[]);
        assert_eq!(v.check("replay")["status"], "failed", "{:#}", v.json);
        assert_eq!(v.json["first_bad_seq"], seq);
        let dropped = copy(&db, &dir.path().join(format!("t{schema}")));
        Connection::open(&dropped).unwrap().execute_batch("DROP TRIGGER log_is_append_only_delete;").unwrap();
        let v = verify(&dropped, &[]);
        assert_eq!(v.code, 1);
        assert!(
            v.check("schema")["message"].as_str().unwrap().contains("trigger log_is_append_only_delete is missing"),
            "{:#}",
            v.json
        );
    }
}

#[test]
fn the_specification_states_the_schema_this_build_creates() {
    // docs/SPEC.md appendix A is what an independent verifier compares a file
    // with: it must create exactly what chancery's schema does.
    let spec = std::fs::read_to_string(root().join("docs/SPEC.md")).unwrap();
    let appendix = spec.split("## Appendix A").nth(1).expect("SPEC.md has appendix A");
    let sql = appendix.split("```sql").nth(1).unwrap().split("```").next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = Connection::open(dir.path().join("spec.db")).unwrap();
    c.execute_batch(sql).unwrap();
    c.pragma_update(None, "application_id", chancery::store::APPLICATION_ID).unwrap();
    c.pragma_update(None, "user_version", chancery::store::SCHEMA_VERSION).unwrap();
    drop(c);
    let (spec_db, _) = chancery::store::Store::open_any_for_audit(&dir.path().join("spec.db")).unwrap();
    assert_eq!(spec_db.schema_objects().unwrap(), chancery::store::Store::expected_schema().unwrap());
    // verify.py carries its own copy, which must be the same text.
    let py = std::fs::read_to_string(root().join("tests/vectors/verify.py")).unwrap();
    let py_sql = py.split("SCHEMA_SQL = \"\"\"").nth(1).unwrap().split("\"\"\"").next().unwrap();
    assert_eq!(chancery::store::normalise_sql(py_sql), chancery::store::normalise_sql(sql));
}
