//! `chancery demo` end to end, as the README's first command runs it: 6,000
//! simulated referrals randomised day by day, follow-up at 4 and 12 months,
//! a checkpoint, verification, the full analysis and the report (target: under
//! 5 s for a release build). Figures: BENCHMARKS.md.

/// mimalloc: the workloads make millions of small short-lived strings and maps
/// (CSV cells, canonical values, dataset rows), where glibc's allocator spent
/// a quarter of a batch's time; the benches use the binary's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

use chancery::demo::{DemoOptions, publish, run};

fn demo(c: &mut Criterion) {
    chancery::allocator::keep_freed_memory();
    let referrals = if std::env::args().any(|a| a == "--bench") { 6_000 } else { 300 };
    let mut group = c.benchmark_group("demo");
    group.sample_size(10);
    group.bench_function(format!("demo_end_to_end_{referrals}_referrals"), |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| {
                let report = run(
                    &DemoOptions {
                        dir: dir.path().join("demo"),
                        protocol: Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/work-health-ips.toml"),
                        referrals,
                        seed: [0x11; 32],
                        effect_pp: 4.0,
                    },
                    |_, _, _| {},
                )
                .unwrap();
                let published = publish(&report).unwrap();
                assert!(published.built.verification.ok);
                drop(dir);
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, demo);
criterion_main!(benches);
