//! Outcome import against its physical floor, measured in the same run:
//! importing 100,000 follow-up rows (50,000 participants × m4 and m12, ten
//! values each) as `chancery outcome import` does — parse the CSV, validate
//! every row, append one hash-chained event per row and update the outcome
//! tables, all in one durable transaction — versus a raw SQLite insert of the
//! same number of rows of the same size in one transaction with the same
//! durability, plus a SHA-256 of each.
//! Figures and how to reproduce them: BENCHMARKS.md.

/// mimalloc: the workloads make millions of small short-lived strings and maps
/// (CSV cells, canonical values, dataset rows), where glibc's allocator spent
/// a quarter of a batch's time; the benches use the binary's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sha2::{Digest, Sha256};

use chancery::clock::Timestamp;
use chancery::followup::parse_outcome_csv;
use chancery::ledger::Trial;

#[path = "support/trials.rs"]
mod trials;

use trials::{eligible_referrals, new_trial};

const SEED: [u8; 32] = [0x5b; 32];

/// Under `cargo bench` the full size; under `cargo test --benches` (one pass,
/// debug build) a small trial so CI stays quick while still checking the result.
fn participants() -> usize {
    if std::env::args().any(|a| a == "--bench") { 50_000 } else { 500 }
}

/// A trial with `n` randomised participants, closed so its file can be copied.
fn prepared_trial(dir: &Path, n: usize) -> (PathBuf, Vec<String>) {
    let db = dir.join("template.db");
    let (mut trial, key) = new_trial(&db, SEED);
    let referrals = eligible_referrals(trial.protocol(), &SEED, n);
    assert_eq!(referrals.len(), n);
    let out = trial.randomise(&key, &referrals, "bench", Timestamp::parse("2026-01-02T09:00:00Z").unwrap()).unwrap();
    drop(trial);
    (db, out.into_iter().map(|c| c.participant).collect())
}

/// The CSV a coordinator would import: one row per participant and timepoint.
fn outcome_csv(participants: &[String]) -> Vec<u8> {
    let mut csv = String::from(
        "participant,timepoint,collected_on,in_paid_work,weeks_in_paid_work,first_job_date,paid_work_13_weeks,\
         earnings_monthly,sickness_absence_days,phq9,gad7,swemwbs,eq5d,ips_contacts\n",
    );
    for (i, p) in participants.iter().enumerate() {
        let phq = i % 28;
        csv.push_str(&format!(
            "{p},m4,2026-05-04,no,0,,,0,0,{phq},{},{},0.{:03},{}\n",
            i % 22,
            7 + i % 29,
            i % 1000,
            i % 40
        ));
        if i % 3 == 0 {
            csv.push_str(&format!(
                "{p},m12,2027-01-04,yes,20,2026-08-03,yes,1250.50,2,{phq},{},{},0.{:03},{}\n",
                i % 22,
                7 + i % 29,
                i % 1000,
                i % 60
            ));
        } else {
            csv.push_str(&format!(
                "{p},m12,2027-01-04,no,0,,no,0,0,{phq},{},{},0.{:03},{}\n",
                i % 22,
                7 + i % 29,
                i % 1000,
                i % 60
            ));
        }
    }
    csv.into_bytes()
}

fn import(c: &mut Criterion) {
    chancery::allocator::keep_freed_memory();
    let n = participants();
    let rows = 2 * n;
    let template_dir = tempfile::tempdir().unwrap();
    let (template, ids) = prepared_trial(template_dir.path(), n);
    let csv = outcome_csv(&ids);
    let now = Timestamp::parse("2027-01-10T12:00:00Z").unwrap();

    let mut group = c.benchmark_group("outcome_import");
    group.sample_size(10);

    // Floor: the same number of rows, each the size of a typical outcome event,
    // inserted in one transaction with the same durability, each hashed once.
    let body = "x".repeat(600);
    group.bench_function(format!("floor_raw_sqlite_{rows}_rows_one_commit"), |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let conn = rusqlite::Connection::open(dir.path().join("floor.db")).unwrap();
                conn.pragma_update(None, "journal_mode", "WAL").unwrap();
                conn.pragma_update(None, "synchronous", "FULL").unwrap();
                conn.execute_batch("CREATE TABLE t (seq INTEGER PRIMARY KEY, body TEXT NOT NULL, hash TEXT NOT NULL)")
                    .unwrap();
                (dir, conn)
            },
            |(dir, conn)| {
                conn.execute_batch("BEGIN IMMEDIATE").unwrap();
                {
                    let mut stmt = conn.prepare("INSERT INTO t (body, hash) VALUES (?1, ?2)").unwrap();
                    for _ in 0..rows {
                        let hash = hex::encode(Sha256::digest(body.as_bytes()));
                        stmt.execute([&body, &hash]).unwrap();
                    }
                }
                conn.execute_batch("COMMIT").unwrap();
                drop(conn);
                drop(dir);
            },
            BatchSize::PerIteration,
        )
    });

    group.bench_function(format!("import_{rows}_outcome_rows"), |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let db = dir.path().join("trial.db");
                std::fs::copy(&template, &db).unwrap();
                (dir, Trial::open(&db).unwrap())
            },
            |(dir, mut trial)| {
                let entries = parse_outcome_csv("outcomes.csv", &csv, now.date()).unwrap();
                let written = trial.record_outcomes(&entries, "bench", now).unwrap();
                assert_eq!(written.len(), rows);
                drop(trial);
                drop(dir);
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, import);
criterion_main!(benches);
