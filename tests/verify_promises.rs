//! What `verify` promises (docs/SPEC.md §8), one tampering each: the check
//! that catches it and the sequence number it reports, with the reference
//! verifier written from the specification alone (tests/vectors/verify.py)
//! agreeing. The log is edited as an insider with write access would, and
//! where the point is that only one check can catch a change, the insider
//! re-chains every later entry and fixes the derived tables too.

use std::path::{Path, PathBuf};

use chancery::log::Entry;
use rusqlite::Connection;
use serde_json::Value;

use crate::util::*;

/// A permuted-blocks trial: eight referrals (the fifth screened out as under
/// 18), so entries 1–8 are referrals and randomisations.
fn build(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let db = init(dir, "work-health-ips.toml");
    for i in 0..8u32 {
        let site = ["sheffield", "rotherham"][i as usize % 2];
        let over: &[(&str, &str)] = if i == 4 { &[("age", "17")] } else { &[] };
        let mut args = vec!["randomise".to_string(), "--db".into(), db.display().to_string()];
        args.extend(referral_args(&format!("P{i:02}"), site, &nhs(i), over));
        chancery().args(&args).assert().success();
    }
    db
}

/// Both verifiers' verdicts: chancery's JSON and stderr, and the reference's JSON.
struct Verdicts {
    code: i32,
    json: Value,
    stderr: String,
    reference: Value,
}

/// Runs `chancery verify --json` and verify.py with the same seed and
/// checkpoints; they must agree on the verdict, the first bad entry and the head.
fn verify(db: &Path, seed: bool, checkpoints: &[&Path]) -> Verdicts {
    let mut c = chancery();
    c.args(["verify", "--json", "--db"]).arg(db);
    let mut py = std::process::Command::new("python3");
    py.arg(root().join("tests/vectors/verify.py")).arg(db);
    if seed {
        c.args(["--seed", SEED]);
        py.args(["--seed", SEED]);
    }
    for cp in checkpoints {
        c.arg("--checkpoint").arg(cp);
        py.arg("--checkpoint").arg(cp);
    }
    let out = c.output().unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    let py = py.output().unwrap();
    let reference: Value = serde_json::from_slice(&py.stdout)
        .unwrap_or_else(|e| panic!("reference verifier: {e}: {}", String::from_utf8_lossy(&py.stderr)));
    assert_eq!(reference["ok"], json["ok"], "chancery {json:#} vs reference {reference:#}");
    assert_eq!(reference["first_bad_seq"], json["first_bad_seq"], "chancery {json:#} vs reference {reference:#}");
    assert_eq!(reference["head"], json["head"]);
    Verdicts { code: out.status.code().unwrap(), json, stderr: String::from_utf8(out.stderr).unwrap(), reference }
}

fn check<'a>(v: &'a Verdicts, name: &str) -> &'a Value {
    v.json["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
}

/// Asserts that `name` fails at `seq`, that `seq` is the first bad entry, that
/// the message says `says`, and that the reference verifier names the same
/// check at the same entry.
fn assert_fails(v: &Verdicts, name: &str, seq: u64, says: &str) {
    assert_eq!(v.code, 1, "{:#}", v.json);
    assert_eq!(v.json["first_bad_seq"], seq, "{:#}", v.json);
    assert_eq!(check(v, name)["ok"], false, "{name}: {:#}", v.json);
    assert_eq!(check(v, name)["seq"], seq, "{name}: {:#}", v.json);
    let message = check(v, name)["message"].as_str().unwrap();
    assert!(message.contains(says), "{name}: expected {says:?} in {message}");
    assert_eq!(v.reference["failed"][name], seq, "reference verifier: {:#}", v.reference);
    assert_eq!(v.stderr.lines().count(), 1, "{}", v.stderr);
}

/// A connection as an insider with write access to the file would use: the
/// append-only triggers dropped for the edit and put back, exactly as the
/// schema defines them, when it is dropped (so only the edit itself is
/// there for verify to find, not a missing trigger).
struct Insider(Connection);

impl std::ops::Deref for Insider {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.0
    }
}

impl Drop for Insider {
    fn drop(&mut self) {
        self.0
            .execute_batch(
                "CREATE TRIGGER log_is_append_only_update BEFORE UPDATE ON log
BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER log_is_append_only_delete BEFORE DELETE ON log
BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;",
            )
            .unwrap();
    }
}

fn insider(db: &Path) -> Insider {
    let c = Connection::open(db).unwrap();
    c.execute_batch(
        "DROP TRIGGER IF EXISTS log_is_append_only_update; DROP TRIGGER IF EXISTS log_is_append_only_delete;",
    )
    .unwrap();
    Insider(c)
}

fn entries(c: &Connection) -> Vec<Entry> {
    let mut s = c.prepare("SELECT body FROM log ORDER BY seq").unwrap();
    s.query_map([], |r| r.get::<_, String>(0)).unwrap().map(|b| Entry::decode(&b.unwrap()).unwrap()).collect()
}

/// Replaces the log with `entries`, renumbered from 0 and chained afresh, as
/// an insider rewriting the whole log would.
fn rewrite_log(c: &Connection, mut entries: Vec<Entry>) {
    c.execute("DELETE FROM log", []).unwrap();
    let mut prev = "0".repeat(64);
    for (i, e) in entries.iter_mut().enumerate() {
        e.seq = i as u64;
        e.prev = prev;
        let text = e.canonical();
        prev = Entry::hash_of(&text);
        c.execute(
            "INSERT INTO log (seq, ts, type, hash, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![e.seq as i64, e.ts, e.kind, prev, text],
        )
        .unwrap();
    }
}

/// The first entry of `kind` for `participant`.
fn seq_of(c: &Connection, kind: &str, participant: &str) -> u64 {
    c.query_row(
        "SELECT seq FROM log WHERE type = ?1 AND body LIKE ?2 ORDER BY seq LIMIT 1",
        [kind, &format!("%\"participant\":\"{participant}\"%")],
        |r| r.get::<_, i64>(0),
    )
    .unwrap() as u64
}

/// The central promise: an allocation changed in the log, with every later
/// entry re-chained and the derived tables made to agree, passes the chain and
/// the replay, and is caught only by re-deriving it from the seed.
#[test]
fn a_forged_arm_chained_and_tabled_consistently_is_caught_only_by_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(dir.path());
    let c = insider(&db);
    let at = seq_of(&c, "participant_randomised", "P02");
    let mut log = entries(&c);
    let arm = log[at as usize].data["arm"].as_str().unwrap().to_string();
    let other = if arm == "ips" { "usual_care" } else { "ips" };
    log[at as usize].data["arm"] = Value::String(other.into());
    rewrite_log(&c, log);
    c.execute("UPDATE referrals SET arm = ?1 WHERE participant = 'P02'", [other]).unwrap();
    drop(c);

    // Without the seed nothing shows: the forgery is consistent.
    let v = verify(&db, false, &[]);
    assert_eq!(v.json["ok"], true, "{:#}", v.json);
    assert_eq!(check(&v, "allocations")["ok"], Value::Null, "skipped without a seed");

    let v = verify(&db, true, &[]);
    assert_fails(&v, "allocations", at, &format!("recorded in arm {other} but the seed gives {arm}"));
    for passed in ["chain", "replay", "unique_participants", "seed_commitment"] {
        assert_eq!(check(&v, passed)["ok"], true, "{passed}: {:#}", v.json);
    }
}

/// An allocation record altered the same way (its block number), with the
/// allocation state table changed to match, is caught by the seed too.
#[test]
fn a_forged_allocation_record_with_matching_state_is_caught_by_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(dir.path());
    let c = insider(&db);
    // P07 is the last randomised in its stratum, so its record sets the stream's row.
    let at = seq_of(&c, "participant_randomised", "P07");
    let mut log = entries(&c);
    let stream = log[at as usize].data["allocation"]["stream"].as_str().unwrap().to_string();
    let block = log[at as usize].data["allocation"]["block"].as_u64().unwrap();
    log[at as usize].data["allocation"]["block"] = (block + 1).into();
    rewrite_log(&c, log);
    c.execute("UPDATE allocation_streams SET block = block + 1 WHERE stream = ?1", [&stream]).unwrap();
    drop(c);
    let v = verify(&db, true, &[]);
    assert_fails(&v, "allocations", at, "differs from the one the seed gives");
    // The record no longer follows its stream's last one (docs/SPEC.md §8.1),
    // which replay sees even without the seed.
    let replay = check(&v, "replay");
    assert_eq!(replay["ok"], false, "{:#}", v.json);
    assert!(replay["message"].as_str().unwrap().contains("does not follow"), "{:#}", v.json);
    let v = verify(&db, false, &[]);
    assert_fails(&v, "replay", at, "does not follow");
}

/// The `ts` and `type` columns are copies of the body's members; a copy that
/// differs is a broken chain at that entry.
#[test]
fn a_ts_or_type_column_that_differs_from_the_body_breaks_the_chain_there() {
    for (edit, says) in [
        ("UPDATE log SET ts = '2026-03-02T09:00:00.000001Z' WHERE seq = 3", "ts"),
        ("UPDATE log SET type = 'referral_screened' WHERE seq = 3", "type"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = build(dir.path());
        insider(&db).execute(edit, []).unwrap();
        let v = verify(&db, true, &[]);
        assert_fails(&v, "chain", 3, says);
        assert_eq!(v.json["entries"], 3, "the chain holds up to entry 2");
    }
}

/// Entry 0 carries the protocol and its SHA-256; a protocol text swapped
/// under the old hash (here: one added comment line), re-chained, breaks the
/// chain at entry 0.
#[test]
fn an_entry_0_whose_protocol_sha256_does_not_match_its_text_breaks_the_chain_at_0() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(dir.path());
    let c = insider(&db);
    let mut log = entries(&c);
    let text = log[0].data["protocol"].as_str().unwrap().to_string();
    log[0].data["protocol"] = Value::String(format!("# amended\n{text}"));
    rewrite_log(&c, log);
    c.execute("UPDATE trial SET protocol = '# amended\n' || protocol", []).unwrap();
    drop(c);
    let v = verify(&db, true, &[]);
    assert_fails(&v, "chain", 0, "protocol_sha256");
}

/// The recorded stratum must follow from the recorded values (§6.1): a value
/// changed under an unchanged stratum, re-chained, is a replay failure there.
#[test]
fn a_stratum_that_does_not_follow_from_the_values_fails_replay_there() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(dir.path());
    let c = insider(&db);
    let at = seq_of(&c, "participant_randomised", "P03");
    let mut log = entries(&c);
    assert_eq!(log[at as usize].data["values"]["condition"], "mental_health");
    log[at as usize].data["values"]["condition"] = Value::String("msk".into());
    rewrite_log(&c, log);
    drop(c);
    let v = verify(&db, true, &[]);
    assert_fails(&v, "replay", at, "its recorded values give");
    assert_eq!(check(&v, "chain")["ok"], true);
}

/// No randomisation may follow the seed's reveal: one appended after it, as
/// an insider would, is an `allocations` failure at that entry.
#[test]
fn a_randomisation_after_the_seed_was_revealed_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(dir.path());
    chancery().args(["reveal", "--db"]).arg(&db).assert().success();
    let c = insider(&db);
    let template = seq_of(&c, "participant_randomised", "P07");
    let mut log = entries(&c);
    let mut forged = log[template as usize].clone();
    forged.ts = log.last().unwrap().ts.clone();
    forged.data["participant"] = Value::String("LATE".into());
    forged.data["identity"] = Value::String("cd".repeat(32));
    log.push(forged);
    let at = log.len() as u64 - 1;
    rewrite_log(&c, log);
    drop(c);
    // The seed is the revealed one: none is given.
    let v = verify(&db, false, &[]);
    assert_fails(&v, "allocations", at, "after the seed was revealed");
}

/// Strict Ed25519 (RFC 8032 §5.1.7, §7): a checkpoint whose signature's S is
/// replaced by S + L (the group order) verifies under lax rules but is refused.
#[test]
fn a_malleated_checkpoint_signature_s_plus_l_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(dir.path());
    let out = chancery().args(["checkpoint", "--db"]).arg(&db).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let good = dir.path().join("good.checkpoint");
    std::fs::write(&good, &text).unwrap();
    assert_eq!(verify(&db, true, &[&good]).json["ok"], true);

    let line = text.lines().find_map(|l| l.strip_prefix("signature: ")).unwrap();
    let mut sig = hex::decode(line).unwrap();
    // L = 2^252 + 27742317777372353535851937790883648493, little-endian.
    let l: [u8; 32] =
        hex::decode("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010").unwrap().try_into().unwrap();
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(sig[32 + i]) + u16::from(l[i]) + carry;
        sig[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0, "S + L < 2^256");
    let bad = dir.path().join("malleated.checkpoint");
    std::fs::write(&bad, text.replace(line, &hex::encode(&sig))).unwrap();
    let v = verify(&db, true, &[&bad]);
    assert_fails(&v, "checkpoints", 0, "signature does not verify");
}

/// An entry inserted mid-log without re-chaining: the entry pushed down no
/// longer fits (its bytes say another seq), so the chain breaks at the entry
/// after the inserted one, and nothing after it is trusted.
#[test]
fn an_entry_inserted_mid_log_breaks_the_chain_at_the_next_entry() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(dir.path());
    let c = insider(&db);
    let log = entries(&c);
    // Entry 5 (P04, screened out) copied as a new referral at seq 3, chained
    // to entry 2; the stored entries 3.. move down one place, bodies unchanged.
    let mut inserted = log[5].clone();
    inserted.seq = 3;
    inserted.prev = c.query_row("SELECT hash FROM log WHERE seq = 2", [], |r| r.get(0)).unwrap();
    inserted.ts = log[2].ts.clone();
    inserted.data["participant"] = Value::String("INSERTED".into());
    c.execute("UPDATE log SET seq = seq + 1000 WHERE seq >= 3", []).unwrap();
    c.execute("UPDATE log SET seq = seq - 999 WHERE seq >= 1000", []).unwrap();
    let text = inserted.canonical();
    c.execute(
        "INSERT INTO log (seq, ts, type, hash, body) VALUES (3, ?1, ?2, ?3, ?4)",
        rusqlite::params![inserted.ts, inserted.kind, Entry::hash_of(&text), text],
    )
    .unwrap();
    drop(c);
    let v = verify(&db, true, &[]);
    assert_fails(&v, "chain", 4, "entry 4");
    assert_eq!(v.json["entries"], 4);
}

/// An entry inserted mid-log with everything after it re-chained and the
/// tables renumbered is a consistent rewrite: only a checkpoint taken before
/// shows it, as a fork at the checkpoint's last entry.
#[test]
fn an_entry_inserted_and_re_chained_is_a_fork_against_an_earlier_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(dir.path());
    let out = chancery().args(["checkpoint", "--db"]).arg(&db).output().unwrap();
    let cp = dir.path().join("before.checkpoint");
    std::fs::write(&cp, out.stdout).unwrap();
    let c = insider(&db);
    let mut log = entries(&c);
    let length = log.len() as u64;
    let mut inserted = log[5].clone();
    inserted.ts = log[2].ts.clone();
    inserted.data["participant"] = Value::String("INSERTED".into());
    log.insert(3, inserted.clone());
    rewrite_log(&c, log);
    for table in ["referrals", "identities"] {
        c.execute(&format!("UPDATE {table} SET seq = seq + 1 WHERE seq >= 3"), []).unwrap();
    }
    c.execute(
        "INSERT INTO referrals (participant, seq, site, status, reasons, screened_at) SELECT 'INSERTED', 3, site, status, reasons, ?1 FROM referrals WHERE participant = 'P04'",
        [&inserted.ts],
    )
    .unwrap();
    drop(c);
    let v = verify(&db, true, &[]);
    assert_eq!(v.json["ok"], true, "a consistent rewrite passes without a checkpoint: {:#}", v.json);
    let v = verify(&db, true, &[&cp]);
    assert_fails(&v, "checkpoints", length - 1, "rewritten or forked");
}

/// Every column of every derived table is part of the replay (docs/SPEC.md
/// §1.1), and a difference is named at the entry §8.3 says, by chancery and
/// by the reference verifier, which replays the tables from the
/// specification's description alone. See: verify.py compared only some
/// columns (not `reasons`, `screened_at`, `identities`, the allocation state
/// or the trial row), so it passed trials chancery failed.
#[test]
fn every_derived_column_is_replayed_and_a_difference_named_where_the_specification_says() {
    let dir = tempfile::tempdir().unwrap();
    let db = build(&dir.path().join("intact"));
    let c = insider(&db);
    let screened = seq_of(&c, "referral_screened", "P04") as i64;
    let p01 = seq_of(&c, "participant_randomised", "P01") as i64;
    let last: i64 = c.query_row("SELECT max(seq) FROM log", [], |r| r.get(0)).unwrap();
    drop(c);
    for (i, (edit, seq)) in [
        ("UPDATE referrals SET reasons = '' WHERE participant = 'P04'", screened),
        ("UPDATE referrals SET screened_at = '2020-01-01T00:00:00.000000Z' WHERE participant = 'P04'", screened),
        ("UPDATE identities SET participant = 'P99' WHERE participant = 'P01'", p01),
        ("UPDATE identities SET seq = 'one' WHERE participant = 'P01'", p01),
        ("UPDATE allocation_streams SET next_word = 1 WHERE stream LIKE 'blocks/site=rotherham%'", last),
        ("UPDATE trial SET created_at = '2020-01-01T00:00:00.000000Z'", 0),
        ("UPDATE trial SET revealed_at = ''", 0),
    ]
    .into_iter()
    .enumerate()
    {
        let copy = dir.path().join(i.to_string());
        std::fs::create_dir_all(&copy).unwrap();
        let db2 = copy.join("trial.db");
        chancery::store::Store::open(&db).unwrap().backup_to(&db2).unwrap();
        assert_eq!(insider(&db2).execute(edit, []).unwrap(), 1, "{edit}");
        let v = verify(&db2, true, &[]);
        assert_fails(&v, "replay", seq as u64, "differ from the log's replay");
    }
}

/// The vectors' protocols (unequal-ratio blocks with region as a factor;
/// 2:1:1 minimisation with the variance measure and rounding-tie weights) on
/// a larger trial: chancery and the reference verifier both re-derive every
/// allocation and replay every table.
#[test]
fn unequal_ratios_region_and_the_variance_measure_verify_alike_in_both_verifiers() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["blocks-2to1-region.toml", "minimisation-2to1to1-variance.toml"] {
        let trial = dir.path().join(name);
        chancery()
            .args(["demo", "--participants", "300", "--seed", SEED, "--protocol"])
            .arg(root().join("tests/vectors/protocols").join(name))
            .arg("--dir")
            .arg(&trial)
            .assert()
            .success();
        let v = verify(&trial.join("trial.db"), true, &[]);
        assert_eq!(v.json["ok"], true, "{name}: {:#}", v.json);
        assert_eq!(check(&v, "allocations")["ok"], true, "{name}: {:#}", v.json);
        assert_eq!(v.reference["failed"], serde_json::json!({}), "{name}: {:#}", v.reference);
    }
}

/// Minimisation scores are exact integers (docs/SPEC.md §6.4), computed in
/// 128 bits: `init` refuses ratios whose least common multiple could take a
/// score past that, rather than let scores wrap. See: six arms with coprime
/// ratios were accepted.
#[test]
fn init_refuses_minimisation_ratios_whose_scores_could_exceed_128_bits() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(protocol("example-minimisation.toml")).unwrap();
    let start = text.find("[[arms]]").unwrap();
    let end = text.find("[allocation]").unwrap();
    let arms: String =
        [97, 89, 83, 79, 73, 71].iter().map(|r| format!("[[arms]]\nid = \"arm{r}\"\nratio = {r}\n\n")).collect();
    let path = dir.path().join("six-arms.toml");
    std::fs::write(&path, format!("{}{arms}{}", &text[..start], &text[end..])).unwrap();
    let db = dir.path().join("trial.db");
    let out = chancery().args(["init", "--protocol"]).arg(&path).arg("--db").arg(&db).output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: ") && err.contains("exceed exact 128-bit integers"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!db.exists(), "nothing is written");
}
