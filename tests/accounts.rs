//! Accounts, passwords, API tokens and logging in: every change in the log
//! and re-derived by `verify`, no secret anywhere but its own table, the
//! lockout, tokens that stop working, the access log, older databases
//! migrated, and bad input refused with one line and nothing written.

use std::path::{Path, PathBuf};

use chancery::accounts::Role;
use chancery::clock::{Clock, Timestamp};
use chancery::operations::accounts::{self as acc, LoginRefusal};
use chancery::operations::{self as op, Trial};

use crate::util::*;

const ADMIN_PW: &str = "admin pass phrase 1";
const COORD_PW: &str = "coordinator pass phrase";

fn at(minutes: i64) -> Clock {
    let t = Timestamp::parse(NOW).unwrap().0 + chrono::Duration::minutes(minutes);
    Clock::Fixed(Timestamp(t))
}

fn ts(minutes: i64) -> Timestamp {
    at(minutes).read()
}

/// `chancery user add` with the password on standard input.
fn user_add(db: &Path, name: &str, roles: &[&str], sites: &[&str], password: &str) -> assert_cmd::assert::Assert {
    let mut c = chancery();
    c.args(["user", "add", "--db"]).arg(db).args(["--name", name, "--password-stdin"]);
    for r in roles {
        c.args(["--role", r]);
    }
    for s in sites {
        c.args(["--site", s]);
    }
    c.write_stdin(format!("{password}\n")).assert()
}

/// A trial with an administrator and a coordinator at sheffield.
fn trial_with_accounts(dir: &Path) -> PathBuf {
    let db = init(dir, "work-health-ips.toml");
    user_add(&db, "admin", &["admin"], &[], ADMIN_PW).success();
    user_add(&db, "coord1", &["coordinator"], &["sheffield"], COORD_PW).success();
    db
}

fn run(db: &Path, args: &[&str]) -> std::process::Output {
    let out = chancery().args(args).arg("--db").arg(db).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn verify_py(db: &Path) -> serde_json::Value {
    let out =
        std::process::Command::new("python3").arg(root().join("tests/vectors/verify.py")).arg(db).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
}

fn login(
    trial: &mut Trial,
    name: &str,
    password: &str,
    minutes: i64,
) -> Result<chancery::accounts::Account, LoginRefusal> {
    let req = acc::LoginRequest {
        name: name.into(),
        password: password.into(),
        client: "10.0.0.7".into(),
        clock: at(minutes),
    };
    acc::login_attempt(trial, &req, &acc::LOCKOUT).unwrap()
}

#[test]
fn every_account_change_is_an_entry_in_the_log_and_the_trial_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial_with_accounts(dir.path());
    run(
        &db,
        &[
            "user",
            "change",
            "--name",
            "coord1",
            "--role",
            "coordinator",
            "--role",
            "data_manager",
            "--site",
            "sheffield",
            "--site",
            "rotherham",
            "--reason",
            "covers rotherham",
        ],
    );
    let reset = chancery()
        .args(["user", "reset-password", "--db"])
        .arg(&db)
        .args(["--name", "coord1", "--password-stdin", "--reason", "forgotten"])
        .write_stdin("a brand new pass phrase\n")
        .output()
        .unwrap();
    assert!(reset.status.success(), "{}", String::from_utf8_lossy(&reset.stderr));
    let token = String::from_utf8(run(&db, &["token", "create", "--user", "coord1"]).stdout).unwrap();
    let id = token.trim().split('_').nth(1).unwrap().to_string();
    run(&db, &["token", "revoke", "--id", &id, "--reason", "edc replaced"]);
    run(&db, &["user", "disable", "--name", "coord1", "--reason", "left the trial"]);

    let log = String::from_utf8(run(&db, &["export", "--what", "log", "--format", "json"]).stdout).unwrap();
    let entries: Vec<serde_json::Value> = serde_json::from_str(&log).unwrap();
    let kinds: Vec<&str> = entries.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "trial_created",
            "account_created",
            "account_created",
            "account_changed",
            "password_set",
            "token_created",
            "token_revoked",
            "account_disabled"
        ]
    );
    // Who could do what: the full new set, and who changed it.
    assert_eq!(entries[3]["data"]["roles"], serde_json::json!(["coordinator", "data_manager"]));
    assert_eq!(entries[3]["data"]["sites"], serde_json::json!(["rotherham", "sheffield"]));
    assert_eq!(entries[3]["user"], "tester");
    assert_eq!(entries[5]["data"]["token_id"], id.as_str());

    chancery().args(["verify", "--db"]).arg(&db).assert().success();
    let py = verify_py(&db);
    assert_eq!(py["ok"], true, "{py}");
    // The fast (digest) form vouches for it too: the account tables do not send it to the exact form.
    let scratch = tempfile::tempdir().unwrap();
    let fast = chancery::verify::verify_by_digest(&chancery::verify::VerifyOptions {
        db: db.clone(),
        seed: None,
        checkpoints: Vec::new(),
        scratch_dir: scratch.path().to_path_buf(),
    })
    .unwrap();
    assert!(fast.is_some_and(|r| r.ok));

    let trial = op::open_read_only(&db).unwrap();
    let a = acc::account(&trial, "coord1").unwrap().unwrap();
    assert!(a.disabled);
    assert_eq!(a.roles, [Role::Coordinator, Role::DataManager]);
    assert_eq!(a.sites, ["rotherham", "sheffield"]);
}

#[test]
fn verify_rederives_accounts_and_tokens_and_names_a_tampered_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial_with_accounts(dir.path());
    run(&db, &["token", "create", "--user", "coord1"]);
    let token_id: String = {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.query_row("SELECT token_id FROM tokens", [], |r| r.get(0)).unwrap()
    };
    run(&db, &["token", "revoke", "--id", &token_id, "--reason", "lost"]);

    // The tables beside the log are not tampering merely for being there or changing.
    let edited = dir.path().join("edited.db");
    std::fs::copy(&db, &edited).unwrap();
    let c = rusqlite::Connection::open(&edited).unwrap();
    c.execute_batch(
        "INSERT INTO access_log (ts, name, client, outcome) VALUES ('2026-03-02T09:00:00.000000Z', 'x', 'y', 'wrong');
         UPDATE credentials SET phc = 'something else';",
    )
    .unwrap();
    drop(c);
    chancery().args(["verify", "--db"]).arg(&edited).assert().success();
    assert_eq!(verify_py(&edited)["ok"], true);

    for (sql, needle) in [
        // A coordinator made an administrator in SQL, behind the log's back.
        ("UPDATE accounts SET roles = 'admin,coordinator' WHERE name = 'coord1'", "table accounts row \"coord1\""),
        ("UPDATE tokens SET revoked_seq = NULL", "table tokens row"),
        (
            "INSERT INTO accounts VALUES ('ghost', 'admin', '', 0, 1, '2026-03-02T09:00:00.000000Z', 1, 1)",
            "table accounts row \"ghost\"",
        ),
    ] {
        let tampered = dir.path().join("tampered.db");
        std::fs::copy(&db, &tampered).unwrap();
        rusqlite::Connection::open(&tampered).unwrap().execute_batch(sql).unwrap();
        let out = chancery().args(["verify", "--db"]).arg(&tampered).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{sql}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("FAIL replay") && text.contains(needle), "{sql}: {text}");
        assert!(verify_py(&tampered)["failed"]["replay"].is_number(), "{sql}");
        std::fs::remove_file(&tampered).unwrap();
    }
}

#[test]
fn no_password_hash_or_token_appears_in_the_log_exports_or_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial_with_accounts(dir.path());
    let token_out = run(&db, &["token", "create", "--user", "coord1"]);
    let token = String::from_utf8(token_out.stdout.clone()).unwrap().trim().to_string();
    assert!(token.starts_with("chy_") && token.len() == 4 + 8 + 1 + 64, "the token alone on stdout: {token:?}");
    let secret = token.rsplit('_').next().unwrap().to_string();
    let (phcs, hashes): (Vec<String>, Vec<String>) = {
        let c = rusqlite::Connection::open(&db).unwrap();
        let phcs = c
            .prepare("SELECT phc FROM credentials")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let hashes = c
            .prepare("SELECT sha256 FROM token_secrets")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        (phcs, hashes)
    };
    assert_eq!(phcs.len(), 2);
    assert!(phcs.iter().all(|p| p.starts_with("$argon2id$")), "{phcs:?}");

    let mut outputs = vec![String::from_utf8_lossy(&token_out.stderr).to_string()];
    for what in ["log", "allocations", "participants", "outcomes", "history", "codebook"] {
        for format in ["csv", "json"] {
            outputs.push(String::from_utf8(run(&db, &["export", "--what", what, "--format", format]).stdout).unwrap());
        }
    }
    for args in [
        &["user", "list", "--json"][..],
        &["user", "list"],
        &["token", "list", "--json"],
        &["token", "list"],
        &["status", "--json"],
        &["verify", "--json"],
    ] {
        let out = run(&db, args);
        outputs.push(String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr));
    }
    let trial = op::open_read_only(&db).unwrap();
    outputs.push(format!("{:?}", acc::list_accounts(&trial).unwrap()));
    let all = outputs.join("\n");
    let salts: Vec<&str> = phcs.iter().map(|p| p.rsplit('$').nth(1).unwrap()).collect();
    for secret_text in [ADMIN_PW, COORD_PW, &secret, &token]
        .into_iter()
        .chain(phcs.iter().map(String::as_str))
        .chain(salts)
        .chain(hashes.iter().map(String::as_str))
    {
        assert!(!all.contains(secret_text), "{secret_text:?} appears in an output");
    }
    // The log's bytes as stored, too.
    let c = rusqlite::Connection::open(&db).unwrap();
    let bodies: Vec<String> =
        c.prepare("SELECT body FROM log").unwrap().query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect();
    let bodies = bodies.join("\n");
    assert!(!bodies.contains("argon2") && !bodies.contains(&secret) && !bodies.contains(COORD_PW));
}

#[test]
fn five_failures_lock_an_account_for_fifteen_minutes_and_a_new_password_lifts_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial_with_accounts(dir.path());
    let mut trial = op::open(&db).unwrap();
    assert_eq!(login(&mut trial, "coord1", COORD_PW, 1).unwrap().name, "coord1");
    for m in 2..=6 {
        assert_eq!(login(&mut trial, "coord1", "not the password", m), Err(LoginRefusal::Wrong));
    }
    // Locked until 15 minutes after the fifth failure, even with the right password.
    let until = "2026-03-02T09:21:00.000000Z".to_string();
    assert_eq!(login(&mut trial, "coord1", COORD_PW, 7), Err(LoginRefusal::Locked { until: until.clone() }));
    assert_eq!(login(&mut trial, "coord1", COORD_PW, 20), Err(LoginRefusal::Locked { until: until.clone() }));
    let message = acc::login(
        &mut trial,
        &acc::LoginRequest { name: "coord1".into(), password: COORD_PW.into(), client: "c".into(), clock: at(20) },
    )
    .unwrap_err()
    .to_string();
    assert!(message.contains(&format!("locked until {until}")), "{message}");
    let listed = acc::list_accounts_at(&trial, ts(20)).unwrap();
    assert_eq!(
        listed.iter().find(|a| a.account.name == "coord1").unwrap().locked_until.as_deref(),
        Some(until.as_str())
    );
    // Lifted after the 15 minutes.
    assert!(login(&mut trial, "coord1", COORD_PW, 21).is_ok());

    // Locked again, then lifted at once by a new password.
    for m in 22..=26 {
        assert_eq!(login(&mut trial, "coord1", "wrong again", m), Err(LoginRefusal::Wrong));
    }
    assert!(matches!(login(&mut trial, "coord1", COORD_PW, 27), Err(LoginRefusal::Locked { .. })));
    let reset = acc::AccountRequest {
        name: "coord1".into(),
        password: "a fresh pass phrase".into(),
        reason: "locked out".into(),
        user: "admin".into(),
        clock: at(28),
    };
    acc::set_password(&mut trial, &reset).unwrap();
    assert!(login(&mut trial, "coord1", "a fresh pass phrase", 29).is_ok());
    assert_eq!(login(&mut trial, "coord1", COORD_PW, 30), Err(LoginRefusal::Wrong), "the old password is gone");

    // Failures spread over more than 15 minutes do not lock.
    for m in [31, 36, 41, 46, 51] {
        assert_eq!(login(&mut trial, "coord1", "nope", m), Err(LoginRefusal::Wrong));
    }
    assert!(login(&mut trial, "coord1", "a fresh pass phrase", 52).is_ok());
}

#[test]
fn refusals_never_say_whether_the_name_or_the_password_was_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial_with_accounts(dir.path());
    let mut trial = op::open(&db).unwrap();
    let message = |trial: &mut Trial, name: &str, pw: &str| {
        acc::login(
            trial,
            &acc::LoginRequest { name: name.into(), password: pw.into(), client: "c".into(), clock: at(1) },
        )
        .unwrap_err()
        .to_string()
    };
    assert_eq!(message(&mut trial, "nobody", COORD_PW), "wrong name or password");
    assert_eq!(message(&mut trial, "coord1", "wrong password!"), "wrong name or password");
}

#[test]
fn a_disabled_account_is_refused_even_with_the_right_password_and_its_tokens_die() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial_with_accounts(dir.path());
    let mut trial = op::open(&db).unwrap();
    let t = acc::create_token(
        &mut trial,
        &acc::TokenRequest { account: "coord1".into(), expires_days: 30, user: "admin".into(), clock: at(1) },
    )
    .unwrap();
    assert_eq!(acc::token_account(&trial, &t.token, ts(2)).unwrap().unwrap().name, "coord1");
    let disable = acc::AccountRequest {
        name: "coord1".into(),
        password: String::new(),
        reason: "left".into(),
        user: "admin".into(),
        clock: at(3),
    };
    acc::disable_account(&mut trial, &disable).unwrap();
    assert_eq!(login(&mut trial, "coord1", COORD_PW, 4), Err(LoginRefusal::Disabled));
    assert_eq!(LoginRefusal::Disabled.message(), "this account is disabled; ask an administrator");
    assert_eq!(login(&mut trial, "coord1", "a wrong guess", 4), Err(LoginRefusal::Wrong), "a guess learns nothing");
    assert_eq!(acc::token_account(&trial, &t.token, ts(5)).unwrap(), None);
}

#[test]
fn revoked_expired_and_forged_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial_with_accounts(dir.path());
    let mut trial = op::open(&db).unwrap();
    let make = |trial: &mut Trial, days| {
        acc::create_token(
            trial,
            &acc::TokenRequest { account: "coord1".into(), expires_days: days, user: "admin".into(), clock: at(1) },
        )
        .unwrap()
    };
    let short = make(&mut trial, 1);
    let long = make(&mut trial, 90);
    assert_ne!(short.id, long.id);
    assert_eq!(short.expires_at, "2026-03-03T09:01:00.000000Z");
    let live = |trial: &Trial, token: &str, minutes| acc::token_account(trial, token, ts(minutes)).unwrap().is_some();
    assert!(live(&trial, &short.token, 2));
    assert!(!live(&trial, &short.token, 24 * 60 + 1), "expired after its day");
    // Forged: a known id with another secret, or nonsense.
    let forged = format!("chy_{}_{}", long.id, "0".repeat(64));
    assert!(!live(&trial, &forged, 2));
    assert!(
        !live(&trial, "chy_zz", 2) && !live(&trial, "", 2) && !live(&trial, &long.token.replace("chy_", "xyz_"), 2)
    );
    let revoked = acc::revoke_token(
        &mut trial,
        &acc::RevokeRequest { id: long.id.clone(), reason: "leaked".into(), user: "admin".into(), clock: at(3) },
    )
    .unwrap();
    assert!(revoked.revoked);
    assert!(!live(&trial, &long.token, 4));
    assert!(acc::list_tokens(&trial).unwrap().iter().any(|t| t.id == long.id && t.revoked));
    let listed = acc::list_accounts_at(&trial, ts(4)).unwrap();
    let coord = listed.iter().find(|a| a.account.name == "coord1").unwrap();
    assert_eq!(coord.tokens.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), [short.id.as_str()]);
}

#[test]
fn the_access_log_records_every_attempt_and_never_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial_with_accounts(dir.path());
    let mut trial = op::open(&db).unwrap();
    let _ = login(&mut trial, "coord1", COORD_PW, 1);
    let _ = login(&mut trial, "coord1", "typo in the password", 2);
    let _ = login(&mut trial, "nobody", "whatever it is", 3);
    let rows = acc::access_log(&trial).unwrap();
    let seen: Vec<(&str, &str, &str)> =
        rows.iter().map(|r| (r.name.as_str(), r.client.as_str(), r.outcome.as_str())).collect();
    assert_eq!(seen, [("coord1", "10.0.0.7", "ok"), ("coord1", "10.0.0.7", "wrong"), ("nobody", "10.0.0.7", "wrong")]);
    assert_eq!(rows[0].ts, "2026-03-02T09:01:00.000000Z");
    let all = format!("{rows:?}");
    assert!(!all.contains("typo in the password") && !all.contains(COORD_PW));
    // Logins write no log entry.
    let log = String::from_utf8(run(&db, &["export", "--what", "log"]).stdout).unwrap();
    assert_eq!(log.lines().count(), 1 + 3);
}

#[test]
fn a_login_in_a_group_commit_keeps_its_access_log_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial_with_accounts(dir.path());
    let mut trial = op::open(&db).unwrap();
    let job = |pw: &'static str| -> op::group::Job<'static, Result<chancery::accounts::Account, LoginRefusal>> {
        Box::new(move |t: &mut Trial| {
            let req =
                acc::LoginRequest { name: "coord1".into(), password: pw.into(), client: "c".into(), clock: at(1) };
            acc::login_attempt(t, &req, &acc::LOCKOUT)
        })
    };
    let results = op::group::in_one_commit(&mut trial, vec![job(COORD_PW), job("not it at all")]);
    assert!(results[0].as_ref().unwrap().is_ok());
    assert_eq!(results[1].as_ref().unwrap(), &Err(LoginRefusal::Wrong));
    let outcomes: Vec<String> = acc::access_log(&trial).unwrap().into_iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, ["ok", "wrong"]);
}

#[test]
fn a_schema_4_database_is_refused_until_migrated_then_takes_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let db = randomised_trial(dir.path(), &["P1", "P2"], 0);
    // As schema 4 wrote it: none of the accounts' tables.
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "DROP TABLE accounts; DROP TABLE tokens; DROP TABLE credentials; DROP TABLE token_secrets; DROP TABLE access_log;
         PRAGMA user_version = 4;",
    )
    .unwrap();
    drop(c);
    let before = db_snapshot(&db);
    let out = user_add(&db, "admin", &["admin"], &[], ADMIN_PW).failure().get_output().clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("schema 4") && err.contains("chancery migrate --db"), "{err}");
    assert!(before == db_snapshot(&db));
    // Verified as it is, its derived tables left to the migration.
    let v = chancery().args(["verify", "--db"]).arg(&db).output().unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", String::from_utf8_lossy(&v.stdout));
    assert_eq!(verify_py(&db)["ok"], true);

    let m = run(&db, &["migrate"]);
    assert!(String::from_utf8_lossy(&m.stdout).contains("from schema 4 to 5"));
    user_add(&db, "admin", &["admin"], &[], ADMIN_PW).success();
    chancery().args(["verify", "--db"]).arg(&db).assert().success();
    assert_eq!(verify_py(&db)["ok"], true);
}

/// A command refused: exit 1, one line naming the problem, the database unchanged.
fn refused_with(db: &Path, args: &[&str], stdin: &str, needle: &str) {
    let before = db_snapshot(db);
    let out = chancery().args(args).arg("--db").arg(db).write_stdin(stdin).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(err.starts_with("error: ") && err.lines().count() == 1, "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: expected {needle:?} in {err}");
    assert!(before == db_snapshot(db), "{args:?} changed the database");
}

#[test]
fn bad_account_input_is_one_line_exit_1_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial_with_accounts(dir.path());
    let token = String::from_utf8(run(&db, &["token", "create", "--user", "coord1"]).stdout).unwrap();
    let id = token.trim().split('_').nth(1).unwrap().to_string();
    run(&db, &["token", "revoke", "--id", &id, "--reason", "rotated"]);
    let good = "a good long pass phrase\n";
    let add = |name: &'static str, extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec!["user", "add", "--name", name, "--password-stdin"];
        v.extend_from_slice(extra);
        v
    };
    for (args, stdin, needle) in [
        (add("a b", &["--role", "admin"]), good, "account name \"a b\" has ' ' at character 2"),
        (add("", &["--role", "admin"]), good, "give 1 to 64"),
        (
            add("x", &["--role", "coordinator"]),
            good,
            "a coordinator acts only at their own sites: give at least one --site",
        ),
        (add("x", &["--role", "coordinator", "--site", "leeds"]), good, "there is no site \"leeds\" in the protocol"),
        (add("x", &["--role", "admin", "--site", "sheffield"]), good, "only a coordinator is bound to sites"),
        (add("x", &["--role", "root"]), good, "there is no role \"root\"; the roles are admin"),
        (add("admin", &["--role", "admin"]), good, "account admin already exists"),
        (add("Admin", &["--role", "admin"]), good, "account Admin already exists as admin"),
        (add("x", &["--role", "admin"]), "short\n", "the password is 5 characters long; use at least 12"),
        (add("x", &["--role", "admin"]), "", "the password is 0 characters long; use at least 12"),
        (add("x", &["--role", "admin", "--reason", " "]), good, "--reason is empty"),
        (
            vec!["user", "change", "--name", "nobody", "--role", "admin", "--reason", "r"],
            "",
            "there is no account \"nobody\"",
        ),
        (
            vec!["user", "change", "--name", "coord1", "--role", "coordinator", "--site", "sheffield", "--reason", "r"],
            "",
            "account coord1 already has these roles and sites",
        ),
        (vec!["user", "disable", "--name", "coord1", "--reason", ""], "", "--reason is empty"),
        (
            vec!["user", "reset-password", "--name", "nobody", "--password-stdin", "--reason", "r"],
            good,
            "there is no account",
        ),
        (
            vec!["user", "reset-password", "--name", "coord1", "--password-stdin", "--reason", "r"],
            "tiny\n",
            "use at least 12",
        ),
        (vec!["token", "create", "--user", "nobody"], "", "there is no account \"nobody\""),
        (vec!["token", "create", "--user", "coord1", "--expires-days", "400"], "", "give 1 to 365"),
        (vec!["token", "create", "--user", "coord1", "--expires-days", "0"], "", "give 1 to 365"),
        (vec!["token", "revoke", "--id", "ffffffff", "--reason", "r"], "", "there is no token \"ffffffff\""),
    ] {
        refused_with(&db, &args, stdin, needle);
    }
    let revoke_again = ["token", "revoke", "--id", id.as_str(), "--reason", "again"];
    refused_with(&db, &revoke_again, "", "was already revoked");
    run(&db, &["user", "disable", "--name", "coord1", "--reason", "left"]);
    refused_with(&db, &["token", "create", "--user", "coord1"], "", "account coord1 is disabled");
    refused_with(&db, &["user", "disable", "--name", "coord1", "--reason", "again"], "", "account coord1 is disabled");
}

#[test]
fn a_password_checked_off_the_writer_is_recorded_by_a_short_write_and_a_reset_between_voids_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial_with_accounts(dir.path());
    let reader = op::open_read_only(&db).unwrap();
    let mut writer = op::open(&db).unwrap();
    let right = acc::check_login_password(&reader, "coord1", COORD_PW).unwrap();
    let wrong = acc::check_login_password(&reader, "coord1", "not the password").unwrap();
    assert!(acc::record_login(&mut writer, &right, "c", at(1), &acc::LOCKOUT).unwrap().is_ok());
    assert_eq!(acc::record_login(&mut writer, &wrong, "c", at(2), &acc::LOCKOUT).unwrap(), Err(LoginRefusal::Wrong));
    // The password changed between the check and the write: the old one no longer lets anyone in.
    let stale = acc::check_login_password(&reader, "coord1", COORD_PW).unwrap();
    let reset = acc::AccountRequest {
        name: "coord1".into(),
        password: "the new pass phrase".into(),
        reason: "rotated".into(),
        user: "admin".into(),
        clock: at(3),
    };
    acc::set_password(&mut writer, &reset).unwrap();
    assert_eq!(acc::record_login(&mut writer, &stale, "c", at(4), &acc::LOCKOUT).unwrap(), Err(LoginRefusal::Wrong));
    let outcomes: Vec<String> = acc::access_log(&writer).unwrap().into_iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, ["ok", "wrong", "wrong"]);
}

/// Rewrites entry `seq` with `edit` and re-chains the entries after it, as an
/// insider with write access would.
fn rewrite(db: &Path, seq: i64, edit: impl FnOnce(&mut chancery::log::Entry)) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch("DROP TRIGGER log_is_append_only_update; DROP TRIGGER log_is_append_only_delete;").unwrap();
    let rows: Vec<(i64, String)> = c
        .prepare("SELECT seq, body FROM log WHERE seq >= ?1 ORDER BY seq")
        .unwrap()
        .query_map([seq], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let (mut prev, mut edit) = (None, Some(edit));
    for (s, body) in rows {
        let mut e = chancery::log::Entry::decode(&body).unwrap();
        if let Some(p) = prev {
            e.prev = p;
        }
        if let Some(edit) = edit.take() {
            edit(&mut e);
        }
        let text = e.canonical();
        let hash = chancery::log::Entry::hash_of(&text);
        c.execute("UPDATE log SET body = ?1, hash = ?2 WHERE seq = ?3", rusqlite::params![text, hash, s]).unwrap();
        prev = Some(hash);
    }
    for o in chancery::store::Store::expected_schema().unwrap().iter().filter(|o| o.kind == "trigger") {
        c.execute_batch(&format!("{};", o.sql)).unwrap();
    }
}

#[test]
fn a_forged_account_event_that_cannot_be_replayed_fails_replay_at_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial_with_accounts(dir.path());
    run(
        &db,
        &["user", "change", "--name", "coord1", "--role", "coordinator", "--site", "barnsley", "--reason", "moved"],
    );
    // Entry 3 is the change; the forgeries re-chain the log after it, so only replay can tell.
    for (what, edit) in [
        ("an account never created", serde_json::json!({"account": "ghost"})),
        ("a role no chancery knows", serde_json::json!({"roles": ["superuser"]})),
    ] {
        let forged = dir.path().join("forged.db");
        std::fs::copy(&db, &forged).unwrap();
        rewrite(&forged, 3, |e| {
            for (k, v) in edit.as_object().unwrap() {
                e.data[k] = v.clone();
            }
        });
        let out = chancery().args(["verify", "--json", "--db"]).arg(&forged).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{what}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["first_bad_seq"], 3, "{what}: {report:#}");
        let replay = report["checks"].as_array().unwrap().iter().find(|c| c["name"] == "replay").unwrap();
        assert!(replay["message"].as_str().unwrap().contains("entry 3 cannot be replayed"), "{what}: {replay:#}");
        let py = verify_py(&forged);
        assert_eq!(py["failed"]["replay"], 3, "{what}: {py}");
        assert_eq!(py["failed"].get("chain"), None, "{what}: {py}");
        std::fs::remove_file(&forged).unwrap();
    }
}

/// Regression: the only administrator could disable their own account (from
/// the accounts page, with no way back), leaving nobody to manage accounts.
#[test]
fn the_last_enabled_administrator_can_be_neither_disabled_nor_demoted() {
    let dir = tempfile::tempdir().unwrap();
    let db = trial_with_accounts(dir.path());
    let only = "the trial's only enabled administrator; add another administrator first";
    refused_with(&db, &["user", "disable", "--name", "admin", "--reason", "left"], "", only);
    refused_with(
        &db,
        &["user", "change", "--name", "admin", "--role", "auditor", "--reason", "moved to audit"],
        "",
        only,
    );
    // With a second administrator, either may go.
    user_add(&db, "admin2", &["admin"], &[], ADMIN_PW).success();
    run(&db, &["user", "disable", "--name", "admin", "--reason", "left the trial"]);
    refused_with(&db, &["user", "disable", "--name", "admin2", "--reason", "left"], "", only);
    // A disabled account says what to do instead.
    refused_with(
        &db,
        &["user", "change", "--name", "admin", "--role", "admin", "--reason", "back"],
        "",
        "a disabled account stays disabled",
    );
}
