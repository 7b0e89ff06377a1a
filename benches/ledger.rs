//! Ledger performance against its physical floor, measured in the same run:
//! one durable randomisation versus a raw SQLite insert + commit with the same
//! durability (WAL, synchronous=FULL); a 100,000-referral batch.
//! Figures and how to reproduce them: BENCHMARKS.md.

/// mimalloc: the workloads make millions of small short-lived strings and maps
/// (CSV cells, canonical values, dataset rows), where glibc's allocator spent
/// a quarter of a batch's time; the benches use the binary's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

use chancery::clock::Timestamp;

#[path = "support/same_rows.rs"]
mod same_rows;
#[path = "support/trials.rs"]
mod trials;

use trials::{eligible_referrals, new_trial};

const SEED: [u8; 32] = [0x5a; 32];

fn durable_randomisation(c: &mut Criterion) {
    chancery::allocator::keep_freed_memory();
    let mut group = c.benchmark_group("durable_write");
    // Floor: a raw insert + commit of a row of similar size, same durability.
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("floor.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch("CREATE TABLE t (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)").unwrap();
    let body = "x".repeat(700);
    group.bench_function("floor_raw_sqlite_insert_commit", |b| {
        b.iter(|| {
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            conn.execute("INSERT INTO t (body) VALUES (?1)", [&body]).unwrap();
            conn.execute_batch("COMMIT").unwrap();
        })
    });

    // The structural floor: raw SQLite writing, one transaction each, the rows
    // that chancery's randomisations wrote (captured from a trial built
    // first), into a copy of a fresh trial database.
    let dir = tempfile::tempdir().unwrap();
    let (mut trial, key) = new_trial(&dir.path().join("trial.db"), SEED);
    let fresh = dir.path().join("fresh.db");
    std::fs::copy(dir.path().join("trial.db"), &fresh).unwrap();
    let referrals = eligible_referrals(trial.protocol(), &SEED, 20_000);
    let now = Timestamp::parse("2026-01-02T00:00:00Z").unwrap();
    for chunk in referrals.chunks(1_000) {
        trial.randomise(&key, chunk, "bench", now).unwrap();
    }
    drop(trial);
    let rows = same_rows::capture(&dir.path().join("trial.db"), 1..=referrals.len() as u64);
    let mut same = same_rows::open_copy(&fresh, &dir.path().join("same-0.db"));
    let mut next = 0usize;
    group.bench_function("floor_same_rows_raw_sqlite", |b| {
        b.iter(|| {
            same_rows::write(&same, &rows[next % rows.len()]);
            next += 1;
            // Past the captured rows, start again in another fresh copy.
            if next % rows.len() == 0 {
                same = same_rows::open_copy(&fresh, &dir.path().join(format!("same-{next}.db")));
            }
        })
    });
    drop(same);

    let dir = tempfile::tempdir().unwrap();
    let (mut trial, key) = new_trial(&dir.path().join("trial.db"), SEED);
    let referrals = eligible_referrals(trial.protocol(), &SEED, 20_000);
    let mut next = 0usize;
    let now = Timestamp::parse("2026-01-02T00:00:00Z").unwrap();
    group.bench_function("randomise_one", |b| {
        b.iter(|| {
            let r = &referrals[next % referrals.len()];
            // Past the prepared list, fresh ids keep every call a real allocation.
            let mut r = r.clone();
            if next >= referrals.len() {
                r.1.participant = format!("X{next}");
                r.1.values.retain(|(k, _)| k != "nhs_number");
                r.1.values.push((
                    "nhs_number".into(),
                    chancery::identity::nhs_number_from_stem(700_000_000 + next as u32 * 2).unwrap_or_else(|| {
                        chancery::identity::nhs_number_from_stem(700_000_001 + next as u32 * 2).unwrap()
                    }),
                ));
            }
            next += 1;
            let out = trial.randomise(&key, &[r], "bench", now).unwrap();
            assert_eq!(out[0].status, "randomised");
        })
    });
    group.finish();
}

fn batch_100k(c: &mut Criterion) {
    chancery::allocator::keep_freed_memory();
    let mut group = c.benchmark_group("batch");
    group.sample_size(10);
    let dir = tempfile::tempdir().unwrap();
    let (probe, _) = new_trial(&dir.path().join("trial.db"), SEED);
    let referrals = eligible_referrals(probe.protocol(), &SEED, 100_000);
    drop(probe);
    // The structural floor: raw SQLite writing the rows the batch writes, in
    // one transaction, into a copy of a fresh trial database.
    let (fresh, rows) = {
        let dir = tempfile::tempdir().unwrap();
        let (mut trial, key) = new_trial(&dir.path().join("trial.db"), SEED);
        let fresh = tempfile::NamedTempFile::new_in(dir.path().parent().unwrap()).unwrap();
        std::fs::copy(dir.path().join("trial.db"), fresh.path()).unwrap();
        trial.randomise(&key, &referrals, "bench", Timestamp::parse("2026-01-02T00:00:00Z").unwrap()).unwrap();
        drop(trial);
        (fresh, same_rows::capture(&dir.path().join("trial.db"), 1..=referrals.len() as u64))
    };
    group.bench_function("floor_same_rows_raw_sqlite", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let conn = same_rows::open_copy(fresh.path(), &dir.path().join("same.db"));
                (dir, conn)
            },
            |(dir, conn)| {
                same_rows::write_all(&conn, &rows);
                drop(conn);
                dir
            },
            BatchSize::PerIteration,
        )
    });
    drop(rows);
    group.bench_function("randomise_100k_referrals", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let (trial, key) = new_trial(&dir.path().join("trial.db"), SEED);
                (dir, trial, key)
            },
            |(dir, mut trial, key)| {
                let out = trial
                    .randomise(&key, &referrals, "bench", Timestamp::parse("2026-01-02T00:00:00Z").unwrap())
                    .unwrap();
                assert_eq!(out.len(), referrals.len());
                // Closing the database is the batch's; deleting the scratch
                // folder is not (criterion drops what the routine returns
                // outside the measurement).
                drop(trial);
                dir
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, durable_randomisation, batch_100k);
criterion_main!(benches);
