//! Times N durable single randomisations (each its own transaction, as a
//! coordinator makes them) against N raw SQLite insert + commits with the same
//! durability, alternating in blocks so both see the same disk; prints wall and
//! CPU time per call. A quick probe beside `benches/ledger.rs`.
use std::time::Instant;

use chancery::clock::Timestamp;
use chancery::keys::{TrialKey, default_key_path};
use chancery::ledger::{InitOptions, Trial, init};

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = stat.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(13) + ticks(14)) / 100.0
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let seed = [0x5a; 32];
    init(&InitOptions {
        protocol: concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/work-health-ips.toml").into(),
        db: db.clone(),
        key: default_key_path(&db),
        seed: Some(seed),
        user: "probe".into(),
        now: Timestamp::parse("2026-01-01T00:00:00Z").unwrap(),
    })
    .unwrap();
    let mut trial = Trial::open(&db).unwrap();
    let key = TrialKey::read(&default_key_path(&db)).unwrap();
    let refs: Vec<_> = chancery::demo::simulate_referrals(trial.protocol(), &seed, (n * 2) as u32)
        .into_iter()
        .filter(|r| {
            chancery::referral::screen(trial.protocol(), r)
                .is_ok_and(|s| s.decision == chancery::referral::Decision::Randomise)
        })
        .take(n)
        .map(|r| (r.participant.clone(), r))
        .collect();
    let conn = rusqlite::Connection::open(dir.path().join("floor.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch("CREATE TABLE t (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)").unwrap();
    let body = "x".repeat(700);
    let now = Timestamp::parse("2026-01-02T00:00:00Z").unwrap();
    let (mut wall, mut cpu) = ([0.0f64; 2], [0.0f64; 2]);
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
    }
    let per = |x: f64| x / refs.len() as f64 * 1e6;
    println!(
        "floor: wall {:.0} µs, cpu {:.0} µs; randomise_one: wall {:.0} µs, cpu {:.0} µs; ratio {:.2}",
        per(wall[0]),
        per(cpu[0]),
        per(wall[1]),
        per(cpu[1]),
        wall[1] / wall[0]
    );
}
