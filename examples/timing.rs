//! Quick timing probes beside the criterion benches, printing wall and CPU
//! time (CPU time is the steadier figure on a shared machine):
//!
//! - `batch [N]`: one N-referral batch (100,000) in one transaction, with the
//!   writing thread's CPU time, then raw SQLite writing the same rows in one
//!   transaction (the structural floor, `benches/support/same_rows.rs`);
//! - `one [N] [KEEP]`: N durable single randomisations (2,000), each its own
//!   transaction, against as many raw SQLite insert + commits with the same
//!   durability and raw SQLite writing the same rows each randomisation
//!   wrote, alternating in runs of 100 so all three see the same disk; KEEP
//!   keeps a copy of the trial database (and its WAL) for inspection;
//! - `verify [N] [TEMPLATE]`: `verify` with the seed on a trial of N screened
//!   referrals (100,000) against reading the log's bytes and hashing them
//!   with SHA-256, SQLite's integrity check alone, and the other parts any
//!   verifier must do (`benches/support/least_verify.rs`); with TEMPLATE the
//!   trial is kept there and reused;
//! - `storage [N] [RUNS]`: the structural floor of an N-referral batch
//!   (100,000) in four storage forms, alternated RUNS times (3): raw SQLite
//!   writing, in one transaction with chancery's durability, the rows the
//!   batch wrote (`current`); the same with every hash and identity as a
//!   32-byte blob instead of hex text (`blob hashes`); that, with each log
//!   row keeping only the event's data and the rest of its canonical bytes
//!   left to be rebuilt from the row's columns (`data only`); and that, with
//!   referral rows cut to the participant, seq, identity and small integer
//!   codes (`minimal`). What a change of storage could buy a batch, measured;
//!   no such form is chancery's;
//! - `import [N] [TEMPLATE]`: importing 2 × N outcome rows (N = 50,000
//!   randomised participants, m4 and m12, ten values each), the CSV that
//!   `benches/outcomes.rs` builds; with TEMPLATE the randomised trial is kept
//!   there and reused, so a profiler can watch the import alone.
//! - `analyse [N] [TEMPLATE] [RUNS]`: `Trial::dataset` + `analysis::analyse`
//!   on a demonstration trial of N simulated referrals (125,000, as
//!   `benches/analyse.rs`), RUNS times (5), each phase timed (dataset, the
//!   analysis, dropping the dataset); with TEMPLATE (a folder) the trial is
//!   built there once and reused.
//! - `inputs [N] [DIR]`: writes into DIR (`bench-inputs`) the trials and
//!   files the whole commands in `benches/commands.sh` run on.
//!
//! `cargo run --release --example timing -- batch 100000`. The allocator
//! is the `chancery` binary's (mimalloc).
/// mimalloc: the workloads make millions of small short-lived strings and maps
/// (CSV cells, canonical values, dataset rows), where glibc's allocator spent
/// a quarter of a batch's time; the benches use the binary's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::time::Instant;

use chancery::clock::Timestamp;
use chancery::followup::parse_outcome_csv;
use chancery::keys::{TrialKey, default_key_path};
use chancery::ledger::{InitOptions, Trial, init};
use chancery::referral::Referral;

#[path = "../benches/support/least_verify.rs"]
mod least_verify;
#[path = "../benches/support/same_rows.rs"]
mod same_rows;

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = stat.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(13) + ticks(14)) / 100.0
}

/// CPU time of the calling thread (user + system), in seconds.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for clock_gettime to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// A new trial of the default protocol at `db`, and `n` eligible consenting referrals for it.
fn trial(db: &Path, seed: [u8; 32], n: usize) -> (Trial, TrialKey, Vec<(String, Referral)>) {
    init(&InitOptions {
        protocol: concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/work-health-ips.toml").into(),
        db: db.to_path_buf(),
        key: default_key_path(db),
        seed: Some(seed),
        user: "probe".into(),
        now: Timestamp::parse("2026-01-01T00:00:00Z").unwrap().into(),
    })
    .unwrap();
    let trial = Trial::open(db).unwrap();
    let key = TrialKey::read(&default_key_path(db)).unwrap();
    let refs = chancery::demo::simulate_referrals(trial.protocol(), &seed, (n * 2) as u32)
        .into_iter()
        .filter(|r| {
            chancery::referral::screen(trial.protocol(), r)
                .is_ok_and(|s| s.decision == chancery::referral::Decision::Randomise)
        })
        .take(n)
        .map(|r| (r.participant.clone(), r))
        .collect();
    (trial, key, refs)
}

fn batch(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (mut trial, key, refs) = trial(&dir.path().join("t.db"), [0x5a; 32], n);
    std::fs::copy(dir.path().join("t.db"), dir.path().join("fresh.db")).unwrap();
    let (t, c, w) = (Instant::now(), cpu_seconds(), thread_cpu_seconds());
    let out = trial.randomise(&key, &refs, "probe", Timestamp::parse("2026-01-02T00:00:00Z").unwrap()).unwrap();
    let (wall, cpu, writer) = (t.elapsed().as_secs_f64(), cpu_seconds() - c, thread_cpu_seconds() - w);
    drop(trial);
    println!("batch of {}: wall {wall:.3} s, cpu {cpu:.3} s, of which the writing thread {writer:.3} s", out.len());
    let rows = same_rows::capture(&dir.path().join("t.db"), 1..=out.len() as u64);
    let same = same_rows::open_copy(&dir.path().join("fresh.db"), &dir.path().join("same.db"));
    let (t, c) = (Instant::now(), cpu_seconds());
    same_rows::write_all(&same, &rows);
    println!(
        "the same rows, raw SQLite in one transaction: wall {:.3} s, cpu {:.3} s",
        t.elapsed().as_secs_f64(),
        cpu_seconds() - c
    );
}

fn one(n: usize, keep: Option<&Path>) {
    let dir = tempfile::tempdir().unwrap();
    let (mut trial, key, refs) = trial(&dir.path().join("t.db"), [0x5a; 32], n);
    let same = same_rows::open_copy(&dir.path().join("t.db"), &dir.path().join("same.db"));
    let conn = rusqlite::Connection::open(dir.path().join("floor.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch("CREATE TABLE t (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)").unwrap();
    let body = "x".repeat(700);
    let now = Timestamp::parse("2026-01-02T00:00:00Z").unwrap();
    let (mut wall, mut cpu) = ([0.0f64; 3], [0.0f64; 3]);
    let mut seq = 1;
    for chunk in refs.chunks(100) {
        let (t, c) = (Instant::now(), cpu_seconds());
        for _ in chunk {
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            conn.execute("INSERT INTO t (body) VALUES (?1)", [&body]).unwrap();
            conn.execute_batch("COMMIT").unwrap();
        }
        wall[0] += t.elapsed().as_secs_f64();
        cpu[0] += cpu_seconds() - c;
        let (t, c) = (Instant::now(), cpu_seconds());
        for r in chunk {
            let out = trial.randomise(&key, std::slice::from_ref(r), "probe", now).unwrap();
            assert_eq!(out[0].status, "randomised");
        }
        wall[1] += t.elapsed().as_secs_f64();
        cpu[1] += cpu_seconds() - c;
        // The same rows again, written by raw SQLite.
        let rows = same_rows::capture(&dir.path().join("t.db"), seq..seq + chunk.len() as u64);
        seq += chunk.len() as u64;
        let (t, c) = (Instant::now(), cpu_seconds());
        for r in &rows {
            same_rows::write(&same, r);
        }
        wall[2] += t.elapsed().as_secs_f64();
        cpu[2] += cpu_seconds() - c;
    }
    let per = |x: f64| x / refs.len() as f64 * 1e6;
    println!(
        "floor: wall {:.0} µs, cpu {:.0} µs; the same rows, raw: wall {:.0} µs, cpu {:.0} µs; \
         randomise one: wall {:.0} µs, cpu {:.0} µs; ratio {:.2} the raw commit, {:.2} the same rows \
         (which are {:.2} the raw commit)",
        per(wall[0]),
        per(cpu[0]),
        per(wall[2]),
        per(cpu[2]),
        per(wall[1]),
        per(cpu[1]),
        wall[1] / wall[0],
        wall[1] / wall[2],
        wall[2] / wall[0]
    );
    if let Some(keep) = keep {
        std::fs::copy(dir.path().join("t.db"), keep).unwrap();
        let wal = dir.path().join("t.db-wal");
        if wal.exists() {
            std::fs::copy(wal, keep.with_extension("db-wal")).unwrap();
        }
        drop(trial);
    }
}

/// Verifies a trial of `n` screened referrals (kept at `template` and reused
/// if given) in-process, with the seed, beside the read + SHA-256 floor.
fn verify(n: usize, template: Option<&Path>) {
    let dir = tempfile::tempdir().unwrap();
    let db = match template.filter(|t| t.exists()) {
        Some(t) => t.to_path_buf(),
        None => {
            let db = template.map_or_else(|| dir.path().join("t.db"), Path::to_path_buf);
            let (mut trial, key, _) = trial(&db, [0x77; 32], 1);
            let refs: Vec<_> = chancery::demo::simulate_referrals(trial.protocol(), &[0x77; 32], n as u32)
                .into_iter()
                .map(|r| (r.participant.clone(), r))
                .collect();
            trial.randomise(&key, &refs, "probe", Timestamp::parse("2026-01-02T09:00:00Z").unwrap()).unwrap();
            db
        }
    };
    let seed = TrialKey::read(&default_key_path(&db)).unwrap().seed;
    let (t, c) = (Instant::now(), cpu_seconds());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut stmt = conn.prepare("SELECT body FROM log ORDER BY seq").unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut digest = [0u8; 32];
    while let Some(r) = rows.next().unwrap() {
        let body = r.get_ref(0).unwrap().as_bytes().unwrap();
        let d: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(body).into();
        digest[0] ^= d[0];
    }
    let (floor_wall, floor_cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    // SQLite's integrity check alone, as verification runs it: one required check.
    let (t, c) = (Instant::now(), cpu_seconds());
    assert_eq!(chancery::store::Store::open_for_audit(&db).unwrap().integrity_check().unwrap(), "ok");
    let (integrity_wall, integrity_cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    let c = cpu_seconds();
    least_verify::chain(&db);
    let chain_cpu = cpu_seconds() - c;
    let c = cpu_seconds();
    std::hint::black_box(least_verify::derived_tables(&db));
    let tables_cpu = cpu_seconds() - c;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let least = (chain_cpu + integrity_cpu + tables_cpu) / cores as f64;
    let (t, c) = (Instant::now(), cpu_seconds());
    let report = chancery::verify::verify(&chancery::verify::VerifyOptions {
        db: db.clone(),
        seed: Some(seed),
        checkpoints: vec![],
        scratch_dir: dir.path().to_path_buf(),
    })
    .unwrap();
    let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    assert!(report.ok);
    println!(
        "floor (read + SHA-256): wall {floor_wall:.3} s, cpu {floor_cpu:.3} s; SQLite's integrity_check alone: \
         wall {integrity_wall:.3} s, cpu {integrity_cpu:.3} s ({:.2}x the floor); verify: wall {wall:.3} s, cpu {cpu:.3} s; \
         ratio {:.2} wall, {:.2} cpu ({}); the least any verifier does: read + SHA-256 + JSON syntax cpu {chain_cpu:.3} s, \
         the derived tables read cpu {tables_cpu:.3} s, with the integrity check over {cores} cores {least:.3} s ({:.2}x the floor)",
        integrity_wall / floor_wall,
        wall / floor_wall,
        cpu / floor_cpu,
        digest[0],
        least / floor_wall
    );
}

/// The rows of a batch of `n` in four storage forms, each written raw in one
/// transaction into a copy of the fresh trial database, alternated `runs` times.
fn storage(n: usize, runs: usize) {
    use rusqlite::{Connection, params};
    let dir = tempfile::tempdir().unwrap();
    let (mut trial, key, refs) = trial(&dir.path().join("t.db"), [0x5a; 32], n);
    std::fs::copy(dir.path().join("t.db"), dir.path().join("fresh.db")).unwrap();
    trial.randomise(&key, &refs, "probe", Timestamp::parse("2026-01-02T00:00:00Z").unwrap()).unwrap();
    drop(trial);
    let conn = Connection::open(dir.path().join("t.db")).unwrap();
    type Log = (i64, String, String, String, String);
    let log: Vec<Log> = conn
        .prepare("SELECT seq, ts, type, hash, body FROM log WHERE seq > 0 ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    type Ref = (String, i64, String, String, String, String, Option<String>, Option<String>, Option<String>);
    let referrals: Vec<Ref> = conn
        .prepare(
            "SELECT participant, seq, site, status, reasons, screened_at, stratum, arm, identity FROM referrals ORDER BY seq",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let identities: Vec<(String, String, i64)> = conn
        .prepare("SELECT identity, participant, seq FROM identities ORDER BY identity")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    drop(conn);
    let blob = |h: &str| hex::decode(h).unwrap();
    // `{"data":DATA,"prev":...}`: DATA is the body from its 9th byte to its "prev" member.
    let data_of = |body: &str| body[8..body.rfind(",\"prev\":").unwrap()].to_string();
    let short: Vec<(i64, String, String, Vec<u8>, String)> =
        log.iter().map(|l| (l.0, l.1.clone(), l.2.clone(), blob(&l.3), data_of(&l.4))).collect();
    let mut blob_identities: Vec<(Vec<u8>, &str, i64)> =
        identities.iter().map(|i| (blob(&i.0), i.1.as_str(), i.2)).collect();
    blob_identities.sort_unstable();
    let forms = ["current", "blob hashes", "data only", "minimal"];
    for run in 0..runs {
        for (form, name) in forms.iter().enumerate() {
            let path = dir.path().join(format!("form-{run}-{form}.db"));
            let c = same_rows::open_copy(&dir.path().join("fresh.db"), &path);
            if form >= 1 {
                c.execute_batch(
                    "DROP TABLE identities;
                     CREATE TABLE identities (identity BLOB PRIMARY KEY, participant TEXT NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID;",
                )
                .unwrap();
            }
            if form == 3 {
                c.execute_batch(
                    "DROP VIEW participants; DROP TABLE referrals;
                     CREATE TABLE referrals (participant TEXT PRIMARY KEY, seq INTEGER NOT NULL, status INTEGER NOT NULL,
                         site INTEGER NOT NULL, stratum INTEGER, arm INTEGER, identity BLOB) WITHOUT ROWID;",
                )
                .unwrap();
            }
            let (t, cpu) = (Instant::now(), cpu_seconds());
            c.execute_batch("BEGIN IMMEDIATE").unwrap();
            let mut put_log =
                c.prepare_cached("INSERT INTO log (seq, ts, type, hash, body) VALUES (?1, ?2, ?3, ?4, ?5)").unwrap();
            let mut put_referral = c
                .prepare_cached(
                    "INSERT INTO referrals (participant, seq, site, status, reasons, screened_at, stratum, arm, identity)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .ok();
            let mut put_minimal = c
                .prepare_cached(
                    "INSERT INTO referrals (participant, seq, status, site, stratum, arm, identity) VALUES (?1, ?2, 2, ?3, ?4, ?5, ?6)",
                )
                .ok();
            for (i, r) in referrals.iter().enumerate() {
                match form {
                    0 => put_log.execute(params![log[i].0, log[i].1, log[i].2, log[i].3, log[i].4]),
                    1 => put_log.execute(params![log[i].0, log[i].1, log[i].2, short[i].3, log[i].4]),
                    _ => put_log.execute(params![short[i].0, short[i].1, short[i].2, short[i].3, short[i].4]),
                }
                .unwrap();
                let identity = r.8.as_deref().map(blob);
                match (form, put_referral.as_mut(), put_minimal.as_mut()) {
                    (0, Some(s), _) => s.execute(params![r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8]),
                    (1 | 2, Some(s), _) => s.execute(params![r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, identity]),
                    (3, _, Some(s)) => {
                        s.execute(params![r.0, r.1, (i % 9) as i64, (i % 54) as i64, (i % 2) as i64, identity])
                    }
                    _ => unreachable!("each form has its referral statement"),
                }
                .unwrap();
            }
            let mut put_identity =
                c.prepare_cached("INSERT INTO identities (identity, participant, seq) VALUES (?1, ?2, ?3)").unwrap();
            if form == 0 {
                for i in &identities {
                    put_identity.execute(params![i.0, i.1, i.2]).unwrap();
                }
            } else {
                for i in &blob_identities {
                    put_identity.execute(params![i.0, i.1, i.2]).unwrap();
                }
            }
            drop((put_log, put_referral, put_minimal, put_identity));
            let inserted = t.elapsed().as_secs_f64();
            c.execute_batch("COMMIT").unwrap();
            let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - cpu);
            drop(c);
            let size = std::fs::metadata(&path).unwrap().len() as f64 / 1e6;
            println!(
                "run {run}, {name:>11}: wall {wall:.3} s (inserts {inserted:.3}, commit {:.3}), cpu {cpu:.3} s, database {size:.1} MB",
                wall - inserted
            );
            std::fs::remove_file(&path).unwrap();
        }
    }
}

fn import(n: usize, template: Option<&Path>) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    if let Some(t) = template.filter(|t| t.exists()) {
        std::fs::copy(t, &db).unwrap();
        std::fs::copy(default_key_path(t), default_key_path(&db)).unwrap();
    } else {
        let (mut trial, key, refs) = trial(&db, [0x5b; 32], n);
        trial.randomise(&key, &refs, "probe", Timestamp::parse("2026-01-02T09:00:00Z").unwrap()).unwrap();
        drop(trial);
        if let Some(t) = template {
            std::fs::copy(&db, t).unwrap();
            std::fs::copy(default_key_path(&db), default_key_path(t)).unwrap();
        }
    }
    let ids: Vec<String> =
        Trial::open(&db).unwrap().store().participants().unwrap().into_iter().map(|p| p.participant).collect();
    let csv = outcome_csv(&ids);
    let now = Timestamp::parse("2027-01-10T12:00:00Z").unwrap();
    let (t, c) = (Instant::now(), cpu_seconds());
    let mut trial = Trial::open(&db).unwrap();
    let entries = parse_outcome_csv("outcomes.csv", csv.as_bytes(), now.date()).unwrap();
    let parsed = t.elapsed().as_secs_f64();
    let written = trial.record_outcomes(&entries, "probe", now).unwrap();
    drop(trial);
    let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    println!("import of {} rows: wall {wall:.3} s (parsing {parsed:.3} s), cpu {cpu:.3} s", written.len());
}

/// The follow-up CSV `benches/outcomes.rs` builds: m4 and m12, ten values
/// each, for every participant in `ids`.
fn outcome_csv(ids: &[String]) -> String {
    let mut csv = String::from(
        "participant,timepoint,collected_on,in_paid_work,weeks_in_paid_work,first_job_date,paid_work_13_weeks,\
         earnings_monthly,sickness_absence_days,phq9,gad7,swemwbs,eq5d,ips_contacts\n",
    );
    for (i, p) in ids.iter().enumerate() {
        let (phq, gad, swe, eq) = (i % 28, i % 22, 7 + i % 29, i % 1000);
        csv.push_str(&format!("{p},m4,2026-05-04,no,0,,,0,0,{phq},{gad},{swe},0.{eq:03},{}\n", i % 40));
        if i % 3 == 0 {
            csv.push_str(&format!(
                "{p},m12,2027-01-04,yes,20,2026-08-03,yes,1250.50,2,{phq},{gad},{swe},0.{eq:03},{}\n",
                i % 60
            ));
        } else {
            csv.push_str(&format!("{p},m12,2027-01-04,no,0,,no,0,0,{phq},{gad},{swe},0.{eq:03},{}\n", i % 60));
        }
    }
    csv
}

/// Writes into `dir` the inputs of the whole commands BENCHMARKS.md times
/// (`benches/commands.sh` runs them): `batch.db`, a fresh trial (seed 0x5a..,
/// key `batch.db.key`) and `referrals.csv`, `n` eligible referrals for it
/// (100,000); `one.csv`, one more referral; `import.db`, a trial with `n / 2`
/// randomised participants, and `outcomes.csv`, their m4 and m12 rows (the
/// import probe's); `demo/`, the analysis bench's demonstration trial (125,000
/// referrals, seed 0x42..); `verify.db`, the verify bench's 1,000,001-entry log.
fn inputs(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let t = Instant::now();
    let (fresh, _, refs) = trial(&dir.join("batch.db"), [0x5a; 32], n + 1);
    drop(fresh);
    let fields: Vec<&str> = refs[0].1.values.iter().map(|(k, _)| k.as_str()).collect();
    let write_csv = |path: &Path, rows: &[(String, Referral)]| {
        let mut w = csv::Writer::from_path(path).unwrap();
        w.write_record(["participant", "site"].iter().chain(&fields)).unwrap();
        for (_, r) in rows {
            let values = fields.iter().map(|f| r.values.iter().find(|(k, _)| k == f).map_or("", |(_, v)| v));
            w.write_record([r.participant.as_str(), r.site.as_str()].into_iter().chain(values)).unwrap();
        }
        w.flush().unwrap();
    };
    write_csv(&dir.join("referrals.csv"), &refs[..n]);
    write_csv(&dir.join("one.csv"), &refs[n..]);
    let db = dir.join("import.db");
    let (mut randomised, key, refs) = trial(&db, [0x5b; 32], n / 2);
    randomised.randomise(&key, &refs, "probe", Timestamp::parse("2026-01-02T09:00:00Z").unwrap()).unwrap();
    let ids: Vec<String> = randomised.store().participants().unwrap().into_iter().map(|p| p.participant).collect();
    drop(randomised);
    std::fs::write(dir.join("outcomes.csv"), outcome_csv(&ids)).unwrap();
    println!("batch and import inputs: {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    chancery::demo::run(
        &chancery::demo::DemoOptions {
            dir: dir.join("demo"),
            protocol: concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/work-health-ips.toml").into(),
            referrals: 125_000,
            seed: [0x42; 32],
            effect_pp: 4.0,
        },
        |_, _, _| {},
    )
    .unwrap();
    println!("demonstration trial: {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let db = dir.join("verify.db");
    let (mut big, key, _) = trial(&db, [0x77; 32], 1);
    let referrals: Vec<_> = chancery::demo::simulate_referrals(big.protocol(), &[0x77; 32], 1_000_000)
        .into_iter()
        .map(|r| (r.participant.clone(), r))
        .collect();
    for (i, chunk) in referrals.chunks(100_000).enumerate() {
        let at = Timestamp::parse(&format!("2026-01-{:02}T09:00:00Z", 2 + i)).unwrap();
        big.randomise(&key, chunk, "probe", at).unwrap();
    }
    println!("1,000,001-entry log: {:.1} s", t.elapsed().as_secs_f64());
}

fn analyse(n: u32, template: Option<&Path>, runs: usize) {
    let dir = tempfile::tempdir().unwrap();
    let folder = template.map_or_else(|| dir.path().join("trial"), Path::to_path_buf);
    let db = folder.join("trial.db");
    if !db.exists() {
        let (t, c) = (Instant::now(), cpu_seconds());
        chancery::demo::run(
            &chancery::demo::DemoOptions {
                dir: folder.clone(),
                protocol: concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/work-health-ips.toml").into(),
                referrals: n,
                seed: [0x42; 32],
                effect_pp: 4.0,
            },
            |_, _, _| {},
        )
        .unwrap();
        println!("built {}: wall {:.1} s, cpu {:.1} s", db.display(), t.elapsed().as_secs_f64(), cpu_seconds() - c);
    }
    let trial = Trial::open(&db).unwrap();
    let as_of = trial.last_entry_date().unwrap();
    let mut totals = [0.0f64; 6];
    let mut walls = Vec::new();
    for run in 0..runs {
        let (t0, c0) = (Instant::now(), cpu_seconds());
        let d = trial.dataset(as_of).unwrap();
        let (t1, c1) = (Instant::now(), cpu_seconds());
        let a = chancery::analysis::analyse(&d).unwrap();
        let (t2, c2) = (Instant::now(), cpu_seconds());
        let people = d.participants.len();
        drop(d);
        let (t3, c3) = (Instant::now(), cpu_seconds());
        assert!(a.primary.is_some());
        drop(a);
        let phase =
            [(t1 - t0).as_secs_f64(), c1 - c0, (t2 - t1).as_secs_f64(), c2 - c1, (t3 - t2).as_secs_f64(), c3 - c2];
        walls.push((t3 - t0).as_secs_f64());
        for (t, p) in totals.iter_mut().zip(phase) {
            *t += p;
        }
        println!(
            "run {run}: {people} participants; dataset wall {:.3} cpu {:.2}; analyse wall {:.3} cpu {:.2}; \
             drop wall {:.3} cpu {:.2}; total wall {:.3} cpu {:.2}",
            phase[0],
            phase[1],
            phase[2],
            phase[3],
            phase[4],
            phase[5],
            (t3 - t0).as_secs_f64(),
            c3 - c0
        );
    }
    let r = runs.max(1) as f64;
    println!(
        "mean of {runs}: dataset wall {:.3} cpu {:.2}; analyse wall {:.3} cpu {:.2}; drop wall {:.3} cpu {:.2}; \
         total wall {:.3} cpu {:.2}",
        totals[0] / r,
        totals[1] / r,
        totals[2] / r,
        totals[3] / r,
        totals[4] / r,
        totals[5] / r,
        (totals[0] + totals[2] + totals[4]) / r,
        (totals[1] + totals[3] + totals[5]) / r
    );
    // The first run pays for the page cache and fresh memory (what one
    // `chancery analyse` process sees); the later runs are what criterion's
    // warmed-up samples see.
    if let [first, rest @ ..] = walls.as_slice()
        && !rest.is_empty()
    {
        let mut rest = rest.to_vec();
        rest.sort_by(f64::total_cmp);
        println!("total wall: first run {first:.3}; later runs median {:.3}, min {:.3}", rest[rest.len() / 2], rest[0]);
    }
}

fn main() {
    chancery::allocator::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = |default: usize| args.get(1).and_then(|a| a.parse().ok()).unwrap_or(default);
    match args.first().map(String::as_str) {
        Some("batch") => batch(n(100_000)),
        Some("one") => one(n(2_000), args.get(2).map(Path::new)),
        Some("storage") => storage(n(100_000), args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3)),
        Some("import") => import(n(50_000), args.get(2).map(Path::new)),
        Some("verify") => verify(n(100_000), args.get(2).map(Path::new)),
        Some("inputs") => inputs(Path::new(args.get(2).map_or("bench-inputs", String::as_str)), n(100_000)),
        Some("analyse") => analyse(
            n(125_000) as u32,
            args.get(2).map(Path::new),
            args.get(3).and_then(|a| a.parse().ok()).unwrap_or(5),
        ),
        _ => eprintln!(
            "usage: timing inputs [N] [DIR] | batch [N] | one [N] [KEEP] | storage [N] [RUNS] | import [N] [TEMPLATE] | verify [N] [TEMPLATE] | analyse [N] [TEMPLATE] [RUNS]"
        ),
    }
}
