//! Times one 100,000-referral batch, printing wall and CPU time (a quick probe
//! beside the criterion bench).
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
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
    let t = Instant::now();
    let c = cpu_seconds();
    let screened: Vec<_> = refs.iter().map(|(_, r)| chancery::referral::screen(trial.protocol(), r).unwrap()).collect();
    println!("screen only: {:.3}s ({} referrals)", t.elapsed().as_secs_f64(), screened.len());
    let t = Instant::now();
    let out = trial.randomise(&key, &refs, "probe", Timestamp::parse("2026-01-02T00:00:00Z").unwrap()).unwrap();
    println!(
        "randomise: wall {:.3}s, cpu {:.3}s, {} allocated",
        t.elapsed().as_secs_f64(),
        cpu_seconds() - c,
        out.len()
    );
}
