//! `chancery analyse` on a large trial: reading the dataset from the database
//! and every model of the eight sections, against R fitting the same models
//! on the same data (benches/analyse_reference.R), measured in the same run.
//! Figures and how to reproduce them: BENCHMARKS.md.

/// mimalloc: the workloads make millions of small short-lived strings and maps
/// (CSV cells, canonical values, dataset rows), where glibc's allocator spent
/// a quarter of a batch's time; the benches use the binary's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};

use chancery::demo::{DemoOptions, run};
use chancery::ledger::Trial;

/// Under `cargo bench`, 125,000 simulated referrals (about 100,000 randomised);
/// under `cargo test --benches` a small trial, so CI stays quick.
fn referrals() -> u32 {
    if std::env::args().any(|a| a == "--bench") { 125_000 } else { 1_500 }
}

fn analyse(c: &mut Criterion) {
    chancery::allocator::keep_freed_memory();
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &DemoOptions {
            dir: dir.path().join("trial"),
            protocol: Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/work-health-ips.toml"),
            referrals: referrals(),
            seed: [0x42; 32],
            effect_pp: 4.0,
        },
        |_, _, _| {},
    )
    .unwrap();
    let trial = Trial::open(&report.db).unwrap();
    let as_of = trial.last_entry_date().unwrap();
    let n = trial.dataset(as_of).unwrap().participants.len();
    let mut group = c.benchmark_group("analyse");
    group.sample_size(10);
    group.bench_function(format!("analyse_{n}_participants"), |b| {
        b.iter(|| {
            let a = chancery::analysis::analyse(&trial.dataset(as_of).unwrap()).unwrap();
            assert!(a.primary.is_some());
        })
    });
    group.finish();

    // CPU time (user + sys, all threads) beside wall time for a few runs: the
    // machine is often shared, and the analysis uses every core it has.
    if let Some(cpu0) = cpu_seconds() {
        let runs = 3;
        let t0 = std::time::Instant::now();
        for _ in 0..runs {
            let a = chancery::analysis::analyse(&trial.dataset(as_of).unwrap()).unwrap();
            assert!(a.primary.is_some());
        }
        let wall = t0.elapsed().as_secs_f64() / f64::from(runs);
        let cpu = (cpu_seconds().unwrap_or(cpu0) - cpu0) / f64::from(runs);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!("analyse_{n}_participants: wall {wall:.3} s, CPU {cpu:.3} s per run ({threads} threads available)");
    }

    // R on the same data, same run (only under `cargo bench`, and only if R is installed).
    if std::env::args().any(|a| a == "--bench")
        && std::process::Command::new("Rscript").arg("--version").output().is_ok()
    {
        let participants = dir.path().join("participants.csv");
        let outcomes = dir.path().join("outcomes.csv");
        let mut f = std::fs::File::create(&participants).unwrap();
        chancery::export::participants(&trial, as_of).unwrap().write(chancery::export::Format::Csv, &mut f).unwrap();
        let mut f = std::fs::File::create(&outcomes).unwrap();
        chancery::export::outcomes(&trial).unwrap().write(chancery::export::Format::Csv, &mut f).unwrap();
        let out = std::process::Command::new("Rscript")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/analyse_reference.R"))
            .arg(&participants)
            .arg(&outcomes)
            .output()
            .unwrap();
        println!(
            "R (same models, same {n} participants): {} s {}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}

/// This process's user + system CPU time in seconds, from /proc (Linux).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok());
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

criterion_group!(benches, analyse);
criterion_main!(benches);
