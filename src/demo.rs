//! The demonstration: a whole trial on simulated referrals, run through the
//! same library calls a coordinator's commands use.
//!
//! Simulated referrals are drawn from their own named ChaCha20 stream (never
//! the allocation stream), so a demonstration is reproducible for its seed.
//! The data are simulated; every output of the demonstration says so.

use std::path::{Path, PathBuf};

use chrono::{Datelike, Duration, TimeZone, Utc, Weekday};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::identity::nhs_number_from_stem;
use crate::keys;
use crate::ledger::{self, InitOptions, Status, Trial};
use crate::protocol::{Kind, Protocol, Stage};
use crate::random::Stream;
use crate::referral::Referral;

/// What the demonstration is asked to do.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Folder to create the trial in (must be new or empty).
    pub dir: PathBuf,
    /// Protocol file.
    pub protocol: PathBuf,
    /// Referrals to screen.
    pub referrals: u32,
    /// Seed for the trial and the simulation.
    pub seed: [u8; 32],
}

/// What the demonstration produced.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// The trial database.
    pub db: PathBuf,
    /// The trial key file.
    pub key: PathBuf,
    /// Allocation summary.
    pub status: Status,
    /// Working days over which referrals arrived.
    pub days: u32,
}

/// A uniform draw in `0..n` as f64 helper: a number in [0, 1) from two words (53 bits).
fn unit(s: &mut Stream) -> f64 {
    let hi = u64::from(s.next_word()) >> 5;
    let lo = u64::from(s.next_word()) >> 6;
    ((hi << 26) | lo) as f64 / (1u64 << 53) as f64
}

fn pick<'a>(s: &mut Stream, items: &[(&'a str, u32)]) -> &'a str {
    let weights: Vec<u32> = items.iter().map(|(_, w)| *w).collect();
    items[s.weighted(&weights)].0
}

fn normal(s: &mut Stream, mean: f64, sd: f64) -> f64 {
    // Box–Muller; only for simulated data, never for allocation.
    let u1 = unit(s).max(1e-12);
    let u2 = unit(s);
    mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Simulates `n` referrals for `protocol`: realistic values for the default
/// protocol's fields (about one in ten ineligible, one in twelve declining),
/// and plausible values by type for any other field.
pub fn simulate_referrals(protocol: &Protocol, seed: &[u8; 32], n: u32) -> Vec<Referral> {
    let mut s = Stream::open(seed, "demo/referrals", 0);
    let mut out = Vec::with_capacity(n as usize);
    let mut stem = 400_000_000u32;
    let site_weights: Vec<u32> = protocol
        .sites
        .iter()
        .map(|site| match site.id.as_str() {
            "sheffield" | "birmingham" => 5,
            "doncaster" | "rotherham" | "barnsley" | "wolverhampton" | "sandwell" => 3,
            _ => 2,
        })
        .collect();
    for i in 0..n {
        let site = &protocol.sites[s.weighted(&site_weights)];
        let scr = site.region.as_deref() == Some("sheffield_city_region");
        let mut values = Vec::new();
        let in_work = scr && unit(&mut s) < 0.3;
        let severity = normal(&mut s, 0.0, 1.0);
        for f in &protocol.fields {
            let v: String = match (f.name.as_str(), &f.kind) {
                (_, Kind::NhsNumber) => loop {
                    stem += 1;
                    if let Some(x) = nhs_number_from_stem(stem) {
                        break x;
                    }
                },
                ("age", _) => {
                    if unit(&mut s) < 0.02 {
                        "17".into()
                    } else {
                        (18.0 + 45.0 * unit(&mut s)).floor().to_string()
                    }
                }
                ("sex", _) => pick(&mut s, &[("female", 55), ("male", 43), ("other", 1), ("not_stated", 1)]).into(),
                ("employment_status", _) => {
                    if in_work || (!scr && unit(&mut s) < 0.04) {
                        "in_work".into()
                    } else {
                        "out_of_work".into()
                    }
                }
                ("condition", _) => pick(&mut s, &[("mental_health", 55), ("msk", 20), ("both", 25)]).into(),
                ("referral_source", _) => {
                    pick(&mut s, &[("gp", 35), ("iapt", 25), ("msk_service", 12), ("community_hub", 10), ("self", 18)])
                        .into()
                }
                ("weeks_out_of_work", _) => {
                    if in_work {
                        String::new()
                    } else {
                        ((unit(&mut s) * 150.0).floor() as i64 + 1).to_string()
                    }
                }
                ("gp_in_area", _) => if unit(&mut s) < 0.03 { "no" } else { "yes" }.into(),
                ("wants_work", _) => if unit(&mut s) < 0.03 { "no" } else { "yes" }.into(),
                ("receiving_ips", _) => if unit(&mut s) < 0.02 { "yes" } else { "no" }.into(),
                (_, Kind::Category { levels }) if f.stage == Stage::Consent => {
                    let _ = levels;
                    if unit(&mut s) < 0.08 { "no" } else { "yes" }.into()
                }
                ("phq9", _) => normal(&mut s, 12.0 + 3.0 * severity, 4.0).round().clamp(0.0, 27.0).to_string(),
                ("gad7", _) => normal(&mut s, 10.0 + 3.0 * severity, 3.5).round().clamp(0.0, 21.0).to_string(),
                ("swemwbs", _) => normal(&mut s, 19.0 - 2.5 * severity, 4.0).round().clamp(7.0, 35.0).to_string(),
                ("eq5d", _) => format!("{:.3}", normal(&mut s, 0.62 - 0.08 * severity, 0.18).clamp(-0.285, 1.0)),
                (_, Kind::Category { levels }) => levels[s.below(levels.len() as u32) as usize].clone(),
                (_, Kind::Integer { min, max }) => {
                    let lo = min.unwrap_or(0);
                    let hi = max.unwrap_or(lo + 100).min(lo + 1000);
                    (lo + s.below((hi - lo + 1) as u32) as i64).to_string()
                }
                (_, Kind::Number { min, max }) => {
                    let lo = min.unwrap_or(0.0);
                    let hi = max.unwrap_or(lo + 1.0);
                    format!("{:.3}", lo + (hi - lo) * unit(&mut s))
                }
                (_, Kind::Date) => String::new(),
            };
            values.push((f.name.clone(), v));
        }
        out.push(Referral { participant: format!("R{:05}", i + 1), site: site.id.clone(), values });
    }
    out
}

/// Picks the folder for a demonstration: `dir` if it is new or empty.
pub fn prepare_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir).map_err(Error::io(format!("reading {}", dir.display())))?.next().is_none();
        if !empty {
            return Err(Error::Refused(format!(
                "{} already exists and is not empty; the demonstration needs a new folder (give --dir)",
                dir.display()
            )));
        }
    }
    std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))
}

/// Runs the demonstration (in a folder made ready by [`prepare_dir`]): creates the trial and randomises the simulated
/// referrals, a working day's batch per transaction, from 5 January 2026.
pub fn run(opts: &DemoOptions, mut progress: impl FnMut(u64, u64)) -> Result<DemoReport> {
    std::fs::create_dir_all(&opts.dir).map_err(Error::io(format!("creating {}", opts.dir.display())))?;
    let db = opts.dir.join("trial.db");
    let key_path = keys::default_key_path(&db);
    let start = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).single().expect("valid date");
    ledger::init(&InitOptions {
        protocol: opts.protocol.clone(),
        db: db.clone(),
        key: key_path.clone(),
        seed: Some(opts.seed),
        user: "demo-coordinator".into(),
        now: Timestamp(start),
    })?;
    let mut trial = Trial::open(&db)?;
    let key = keys::TrialKey::read(&key_path)?;
    let referrals = simulate_referrals(trial.protocol(), &opts.seed, opts.referrals);
    let per_day = 18usize;
    let mut day = start;
    let mut days = 0;
    let total = referrals.len() as u64;
    for (i, chunk) in referrals.chunks(per_day).enumerate() {
        day += Duration::days(1);
        while matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
            day += Duration::days(1);
        }
        days += 1;
        let batch: Vec<(String, Referral)> =
            chunk.iter().map(|r| (format!("simulated referral {}", r.participant), r.clone())).collect();
        trial.randomise(&key, &batch, "demo-coordinator", Timestamp(day))?;
        progress(((i + 1) * per_day).min(referrals.len()) as u64, total);
    }
    Ok(DemoReport { db, key: key_path, status: trial.status()?, days })
}
