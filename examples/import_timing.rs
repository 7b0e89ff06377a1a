//! Times one outcome import of 2 × N rows (N randomised participants, m4 and
//! m12, ten values each), printing wall and CPU time: a quick probe beside the
//! criterion bench (`benches/outcomes.rs` builds the same CSV).
use std::time::Instant;

use chancery::clock::Timestamp;
use chancery::followup::parse_outcome_csv;
use chancery::keys::{TrialKey, default_key_path};
use chancery::ledger::{InitOptions, Trial, init};

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = stat.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(13) + ticks(14)) / 100.0
}

fn prepare(db: &std::path::Path, n: usize) {
    let seed = [0x5b; 32];
    init(&InitOptions {
        protocol: concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/work-health-ips.toml").into(),
        db: db.to_path_buf(),
        key: default_key_path(db),
        seed: Some(seed),
        user: "probe".into(),
        now: Timestamp::parse("2026-01-01T00:00:00Z").unwrap(),
    })
    .unwrap();
    let mut trial = Trial::open(db).unwrap();
    let key = TrialKey::read(&default_key_path(db)).unwrap();
    let refs: Vec<_> = chancery::demo::simulate_referrals(trial.protocol(), &seed, (n * 2) as u32)
        .into_iter()
        .filter(|r| {
            chancery::referral::screen(trial.protocol(), r)
                .is_ok_and(|s| s.decision == chancery::referral::Decision::Randomise)
        })
        .take(n)
        .map(|r| (r.participant.clone(), r))
        .collect();
    let _ = trial.randomise(&key, &refs, "probe", Timestamp::parse("2026-01-02T09:00:00Z").unwrap()).unwrap();
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(50_000);
    // A second argument keeps the randomised trial as a template there, so
    // that a profiler can watch the import alone on later runs.
    let template = std::env::args().nth(2).map(std::path::PathBuf::from);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    if let Some(t) = template.as_ref().filter(|t| t.exists()) {
        std::fs::copy(t, &db).unwrap();
        std::fs::copy(default_key_path(t), default_key_path(&db)).unwrap();
    } else {
        prepare(&db, n);
        if let Some(t) = &template {
            std::fs::copy(&db, t).unwrap();
            std::fs::copy(default_key_path(&db), default_key_path(t)).unwrap();
        }
    }
    let ids: Vec<String> =
        Trial::open(&db).unwrap().store().participants().unwrap().into_iter().map(|p| p.participant).collect();

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
    let now = Timestamp::parse("2027-01-10T12:00:00Z").unwrap();
    let t = Instant::now();
    let c = cpu_seconds();
    let mut trial = Trial::open(&db).unwrap();
    let entries = parse_outcome_csv("outcomes.csv", csv.as_bytes(), now.date()).unwrap();
    let parsed = t.elapsed().as_secs_f64();
    let written = trial.record_outcomes(&entries, "probe", now).unwrap();
    drop(trial);
    println!(
        "import {} rows: wall {:.3}s (parse {:.3}s), cpu {:.3}s",
        written.len(),
        t.elapsed().as_secs_f64(),
        parsed,
        cpu_seconds() - c
    );
}
