//! `chancery verify` against its physical floor, in the same run: a raw
//! SHA-256 pass over the same log bytes (reading them from SQLite included),
//! and SQLite's `integrity_check` alone (one of the required checks).
//! Beside them, for the 1,000,000-entry log, what any verifier has to do at
//! the least, each timed alone: reading, hashing and checking the JSON syntax
//! of every entry in one pass; SQLite's integrity check; and reading every
//! row of the derived tables. Their CPU time over the machine's cores is the
//! wall time no verifier can beat here, before it has decoded or replayed a
//! single event.
//! Criterion times a 100,000-entry log; a 1,000,000-entry log is verified once
//! by the `chancery` binary as a child process, reporting wall and CPU time
//! and its peak memory. Figures: BENCHMARKS.md.

/// mimalloc: the workloads make millions of small short-lived strings and maps
/// (CSV cells, canonical values, dataset rows), where glibc's allocator spent
/// a quarter of a batch's time; the benches use the binary's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use sha2::{Digest, Sha256};

use chancery::clock::Timestamp;

#[path = "support/least_verify.rs"]
mod least_verify;
#[path = "support/trials.rs"]
mod trials;

use trials::new_trial;

const SEED: [u8; 32] = [0x77; 32];

fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// A trial whose log has about `entries` entries: one per screened referral.
fn trial_with(dir: &Path, entries: usize) -> PathBuf {
    let db = dir.join(format!("trial-{entries}.db"));
    let (mut trial, key) = new_trial(&db, SEED);
    let protocol = trial.protocol().clone();
    let referrals: Vec<_> = chancery::demo::simulate_referrals(&protocol, &SEED, entries as u32)
        .into_iter()
        .map(|r| (r.participant.clone(), r))
        .collect();
    for (i, chunk) in referrals.chunks(100_000).enumerate() {
        let at = Timestamp::parse(&format!("2026-01-{:02}T09:00:00Z", 2 + i)).unwrap();
        trial.randomise(&key, chunk, "bench", at).unwrap();
    }
    db
}

/// The floor: read every log body from SQLite and SHA-256 it.
fn sha_floor(db: &Path) -> usize {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT body FROM log ORDER BY seq").unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut n = 0;
    while let Some(r) = rows.next().unwrap() {
        let body: &[u8] = r.get_ref(0).unwrap().as_bytes().unwrap();
        std::hint::black_box(Sha256::digest(body));
        n += 1;
    }
    n
}

/// SQLite's `PRAGMA integrity_check` alone, run as verification runs it (its
/// own read-only connection, the audit page cache): one of the checks the
/// issue requires, timed apart so that its share of the floor is on record.
fn integrity_alone(db: &Path) {
    let report = chancery::store::Store::open_for_audit(db).unwrap().integrity_check().unwrap();
    assert_eq!(report, "ok");
}

/// CPU seconds this process spends running `f`.
fn cpu_of(f: impl FnOnce()) -> f64 {
    let cpu = cpu_seconds(libc::RUSAGE_SELF);
    f();
    cpu_seconds(libc::RUSAGE_SELF) - cpu
}

fn verify_in_process(db: &Path) {
    let report = chancery::verify::verify(&chancery::verify::VerifyOptions {
        db: db.to_path_buf(),
        seed: None,
        checkpoints: Vec::new(),
        scratch_dir: std::env::temp_dir(),
    })
    .unwrap();
    assert!(report.ok);
}

fn verify(c: &mut Criterion) {
    chancery::allocator::keep_freed_memory();
    let dir = tempfile::tempdir().unwrap();
    let n = if bench_mode() { 100_000 } else { 1_000 };
    let db = trial_with(dir.path(), n);
    let mut group = c.benchmark_group("verify");
    group.sample_size(10);
    group.bench_function(format!("floor_read_and_sha256_{n}_entries"), |b| b.iter(|| assert!(sha_floor(&db) > n / 2)));
    group.bench_function(format!("sqlite_integrity_check_alone_{n}_entries"), |b| b.iter(|| integrity_alone(&db)));
    group.bench_function(format!("verify_{n}_entries"), |b| b.iter(|| verify_in_process(&db)));
    group.finish();

    if bench_mode() {
        // The 100,000-entry log again, as a child process: its peak memory
        // beside the 1,000,000-entry one shows whether memory grows with the log.
        for db in [db.clone(), trial_with(dir.path(), 1_000_000)] {
            let t = Instant::now();
            let cpu = cpu_seconds(libc::RUSAGE_SELF);
            let entries = sha_floor(&db);
            let floor_cpu = cpu_seconds(libc::RUSAGE_SELF) - cpu;
            let floor = t.elapsed();
            let t = Instant::now();
            let cpu = cpu_seconds(libc::RUSAGE_SELF);
            integrity_alone(&db);
            let (integrity_cpu, integrity) = (cpu_seconds(libc::RUSAGE_SELF) - cpu, t.elapsed());
            let (wall, verify_cpu, peak_kib) = verify_child(&db);
            // CPU time as well as wall time: on a machine shared with other work
            // the wall clock also measures the wait for a core.
            println!(
                "verify {entries} entries: wall {:.2} s, CPU {verify_cpu:.2} s; floor (read + SHA-256): wall {:.2} s, CPU {floor_cpu:.2} s; ratio {:.1}x wall, {:.1}x CPU; peak memory {} MiB; SQLite's integrity_check alone: wall {:.2} s, CPU {integrity_cpu:.2} s ({:.1}x the floor's wall)",
                wall.as_secs_f64(),
                floor.as_secs_f64(),
                wall.as_secs_f64() / floor.as_secs_f64(),
                verify_cpu / floor_cpu,
                peak_kib / 1024,
                integrity.as_secs_f64(),
                integrity.as_secs_f64() / floor.as_secs_f64()
            );
            if entries > 500_000 {
                let chain = cpu_of(|| least_verify::chain(&db));
                let tables = cpu_of(|| {
                    std::hint::black_box(least_verify::derived_tables(&db));
                });
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                let least = chain + integrity_cpu + tables;
                println!(
                    "the least any verifier does, {entries} entries: read + SHA-256 + JSON syntax CPU {chain:.2} s, integrity_check CPU {integrity_cpu:.2} s, the derived tables read CPU {tables:.2} s; together {least:.2} s of CPU, over {cores} cores at least {:.2} s wall, {:.2}x the floor's wall, before any event is decoded or replayed",
                    least / cores as f64,
                    least / cores as f64 / floor.as_secs_f64()
                );
            }
        }
    }
}

/// Runs `chancery verify` on `db` as a child process: wall time, CPU seconds
/// and peak resident memory (KiB).
fn verify_child(db: &Path) -> (std::time::Duration, f64, u64) {
    let cpu = cpu_seconds(libc::RUSAGE_CHILDREN);
    let t = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chancery"))
        .args(["verify", "--db"])
        .arg(db)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Peak memory is the child's own high-water mark (VmHWM), polled while it
    // runs: getrusage's figure for children is useless here, because Linux
    // charges a spawned child with its parent's peak (this process built the
    // big log) when the child calls exec.
    let mut peak_kib = 0u64;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        peak_kib = peak_kib.max(vm_hwm_kib(child.id()).unwrap_or(0));
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let wall = t.elapsed();
    assert!(status.success());
    (wall, cpu_seconds(libc::RUSAGE_CHILDREN) - cpu, peak_kib)
}

/// A running process's peak resident memory, from /proc (Linux).
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn usage(who: libc::c_int) -> libc::rusage {
    // SAFETY: getrusage only writes the struct it is given.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut u);
        u
    }
}

/// User plus system CPU seconds of this process or of its finished children.
fn cpu_seconds(who: libc::c_int) -> f64 {
    let u = usage(who);
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

criterion_group!(benches, verify);
criterion_main!(benches);
