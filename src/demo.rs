//! The demonstration: a whole trial on simulated referrals, run through the
//! same library calls a coordinator's commands use.
//!
//! Simulated referrals are drawn from their own named ChaCha20 stream (never
//! the allocation stream), so a demonstration is reproducible for its seed.
//! The data are simulated; every output of the demonstration says so.

use std::collections::BTreeMap;
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
    /// True effect of IPS on the primary outcome, in percentage points.
    pub effect_pp: f64,
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
    /// The last day of follow-up.
    pub last_day: chrono::NaiveDate,
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
    simulate_referrals_from(protocol, &mut Stream::open(seed, "demo/referrals", 0), n)
}

/// [`simulate_referrals`] drawing from a given stream (the design assessment
/// uses its own stream, so its referral mix never shares draws with a demo).
pub fn simulate_referrals_from(protocol: &Protocol, s: &mut Stream, n: u32) -> Vec<Referral> {
    let mut referrals = ReferralGenerator::new(protocol);
    (0..n).map(|_| referrals.next(s)).collect()
}

/// Simulated referrals one at a time, in the order [`simulate_referrals`]
/// draws them: the simulation of whole trials draws referrals until enough
/// are randomised, with the same generator the demonstration uses.
pub struct ReferralGenerator<'p> {
    protocol: &'p Protocol,
    site_weights: Vec<u32>,
    stem: u32,
    made: u32,
}

impl<'p> ReferralGenerator<'p> {
    /// The generator for `protocol`, before its first referral.
    pub fn new(protocol: &'p Protocol) -> ReferralGenerator<'p> {
        let site_weights: Vec<u32> = protocol
            .sites
            .iter()
            .map(|site| match site.id.as_str() {
                "sheffield" | "birmingham" => 5,
                "doncaster" | "rotherham" | "barnsley" | "wolverhampton" | "sandwell" => 3,
                _ => 2,
            })
            .collect();
        ReferralGenerator { protocol, site_weights, stem: 400_000_000, made: 0 }
    }

    /// The next referral, drawn from `s`.
    pub fn next(&mut self, s: &mut Stream) -> Referral {
        let protocol = self.protocol;
        let i = self.made;
        self.made += 1;
        let stem = &mut self.stem;
        let site = &protocol.sites[s.weighted(&self.site_weights)];
        let scr = site.region.as_deref() == Some("sheffield_city_region");
        let mut values = Vec::new();
        let in_work = scr && unit(s) < 0.3;
        let severity = normal(s, 0.0, 1.0);
        for f in &protocol.fields {
            let v: String = match (f.name.as_str(), &f.kind) {
                (_, Kind::NhsNumber) => loop {
                    *stem += 1;
                    if let Some(x) = nhs_number_from_stem(*stem) {
                        break x;
                    }
                },
                ("age", _) => {
                    if unit(s) < 0.02 {
                        "17".into()
                    } else {
                        (18.0 + 45.0 * unit(s)).floor().to_string()
                    }
                }
                ("sex", _) => pick(s, &[("female", 55), ("male", 43), ("other", 1), ("not_stated", 1)]).into(),
                ("employment_status", _) => {
                    if in_work || (!scr && unit(s) < 0.04) {
                        "in_work".into()
                    } else {
                        "out_of_work".into()
                    }
                }
                ("condition", _) => pick(s, &[("mental_health", 55), ("msk", 20), ("both", 25)]).into(),
                ("referral_source", _) => {
                    pick(s, &[("gp", 35), ("iapt", 25), ("msk_service", 12), ("community_hub", 10), ("self", 18)])
                        .into()
                }
                ("weeks_out_of_work", _) => {
                    if in_work {
                        String::new()
                    } else {
                        ((unit(s) * 150.0).floor() as i64 + 1).to_string()
                    }
                }
                ("gp_in_area", _) => if unit(s) < 0.03 { "no" } else { "yes" }.into(),
                ("wants_work", _) => if unit(s) < 0.03 { "no" } else { "yes" }.into(),
                ("receiving_ips", _) => if unit(s) < 0.02 { "yes" } else { "no" }.into(),
                (_, Kind::Category { levels }) if f.stage == Stage::Consent => {
                    let _ = levels;
                    if unit(s) < 0.08 { "no" } else { "yes" }.into()
                }
                ("phq9", _) => normal(s, 12.0 + 3.0 * severity, 4.0).round().clamp(0.0, 27.0).to_string(),
                ("gad7", _) => normal(s, 10.0 + 3.0 * severity, 3.5).round().clamp(0.0, 21.0).to_string(),
                ("swemwbs", _) => normal(s, 19.0 - 2.5 * severity, 4.0).round().clamp(7.0, 35.0).to_string(),
                ("eq5d", _) => format!("{:.3}", normal(s, 0.62 - 0.08 * severity, 0.18).clamp(-0.285, 1.0)),
                (_, Kind::Category { levels }) => levels[s.below(levels.len() as u32) as usize].clone(),
                (_, Kind::Integer { min, max }) => {
                    let lo = min.unwrap_or(0);
                    let hi = max.unwrap_or(lo + 100).min(lo + 1000);
                    (lo + s.below((hi - lo + 1) as u32) as i64).to_string()
                }
                (_, Kind::Number { min, max }) => {
                    let lo = min.unwrap_or(0.0);
                    let hi = max.unwrap_or(lo + 1.0);
                    format!("{:.3}", lo + (hi - lo) * unit(s))
                }
                (_, Kind::Date) => String::new(),
            };
            values.push((f.name.clone(), v));
        }
        Referral { participant: format!("R{:05}", i + 1), site: site.id.clone(), values }
    }
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

/// One participant's planned follow-up contact.
#[derive(Debug, Clone)]
struct Planned {
    participant: String,
    timepoint: String,
    values: Vec<(String, String)>,
}

/// The chance that a randomised participant with these baseline values is in
/// paid work for 13+ weeks in the 12 months after randomisation (the default
/// protocol's primary outcome), in the IPS arm (`ips`) or usual care: the
/// control-arm rate for their employment status and condition, and
/// `effect_pp` percentage points more under IPS (within 0 to 1).
///
/// Whoever works 13+ weeks in the model has it recorded so at the 12-month
/// contact, whenever in its window the contact falls, and attrition is drawn
/// apart from the outcome and the arm: so the effect on the primary outcome,
/// as a risk difference among all randomised or among those followed up, is
/// the average over participants of this risk under IPS minus under usual
/// care, which is `effect_pp` unless the bounds clip it.
pub fn primary_risk(baseline: &BTreeMap<String, String>, ips: bool, effect_pp: f64) -> f64 {
    let in_work = baseline.get("employment_status").is_some_and(|v| v == "in_work");
    let base = match (in_work, baseline.get("condition").map(String::as_str)) {
        (true, _) => 0.50,
        (false, Some("msk")) => 0.27,
        (false, Some("both")) => 0.18,
        _ => 0.23,
    };
    (base + if ips { effect_pp / 100.0 } else { 0.0 }).clamp(0.0, 1.0)
}

/// A participant's simulated course after randomisation: whether and when
/// they find paid work, take up IPS, and respond at each timepoint.
struct Course {
    job_day: Option<i64>,
    weeks_by_12m: i64,
    contacts: u32,
    respond: [bool; 2],
    status: Option<(i64, crate::outcome::StatusKind, &'static str, bool)>,
}

/// Simulates the follow-up of one randomised participant: attrition (about
/// one in eight missing at 4 months and one in five at 12), a control-arm rate
/// of paid work for 13+ weeks that depends on employment status and condition,
/// and `effect_pp` percentage points more in the IPS arm.
fn simulate_course(s: &mut Stream, ips: bool, baseline: &BTreeMap<String, String>, effect_pp: f64) -> Course {
    let works_13 = unit(s) < primary_risk(baseline, ips, effect_pp);
    let some_work = works_13 || unit(s) < 0.12;
    let (job_day, weeks) = if works_13 {
        let d = 10 + (unit(s) * 250.0) as i64;
        (Some(d), 13 + ((365 - d) / 7 - 13).max(0) * (s.below(100) as i64) / 100)
    } else if some_work {
        let d = 20 + (unit(s) * 300.0) as i64;
        (Some(d), 1 + s.below(12) as i64)
    } else {
        (None, 0)
    };
    let weeks = if let Some(d) = job_day { weeks.min((365 - d) / 7).max(1) } else { 0 };
    let contacts = if ips {
        if unit(s) < 0.85 { 1 + s.below(30) } else { 0 }
    } else if unit(s) < 0.03 {
        1 + s.below(4)
    } else {
        0
    };
    let r = unit(s);
    let status = if r < 0.02 {
        Some((
            30 + s.below(300) as i64,
            crate::outcome::StatusKind::Withdrawn,
            "no longer wishes to take part",
            unit(s) < 0.5,
        ))
    } else if r < 0.025 {
        Some((60 + s.below(280) as i64, crate::outcome::StatusKind::Died, "notified by GP practice", false))
    } else {
        None
    };
    let respond = [unit(s) > 0.12, unit(s) > 0.2];
    // Most who miss the 12-month follow-up are marked lost once its window has closed.
    let status = match status {
        None if !respond[1] && unit(s) < 0.6 => Some((
            365 + 46 + s.below(14) as i64,
            crate::outcome::StatusKind::Lost,
            "no response after three contact attempts",
            false,
        )),
        other => other,
    };
    Course { job_day, weeks_by_12m: weeks, contacts, respond, status }
}

fn score(s: &mut Stream, baseline: Option<&String>, change: f64, sd: f64, lo: f64, hi: f64) -> String {
    let b = baseline.and_then(|v| v.parse::<f64>().ok()).unwrap_or((lo + hi) / 2.0);
    normal(s, b + change, sd).round().clamp(lo, hi).to_string()
}

/// The values collected at one timepoint, consistent with the course.
fn follow_up_values(
    s: &mut Stream,
    course: &Course,
    tp: usize,
    day: i64,
    randomised_on: chrono::NaiveDate,
    baseline: &BTreeMap<String, String>,
    ips: bool,
) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = Vec::new();
    let job_by = course.job_day.filter(|d| *d <= day);
    let weeks = match job_by {
        None => 0,
        Some(d) => ((course.weeks_by_12m * (day - d)) / (365 - d).max(1)).clamp(1, (day - d) / 7 + 1),
    };
    let weeks = if tp == 1 { course.weeks_by_12m.min((day - course.job_day.unwrap_or(day)) / 7 + 1) } else { weeks };
    let weeks = if job_by.is_some() { weeks.max(1) } else { 0 };
    let working = job_by.is_some() && unit(s) < 0.8;
    v.push(("in_paid_work".into(), if working { "yes" } else { "no" }.into()));
    v.push(("weeks_in_paid_work".into(), weeks.to_string()));
    if let Some(d) = job_by {
        let first = randomised_on + Duration::days(d);
        v.push(("first_job_date".into(), first.format("%Y-%m-%d").to_string()));
    }
    if tp == 1 {
        v.push(("paid_work_13_weeks".into(), if weeks >= 13 { "yes" } else { "no" }.into()));
    }
    v.push((
        "earnings_monthly".into(),
        if working { format!("{:.2}", normal(s, 1350.0, 400.0).max(200.0)) } else { "0".into() },
    ));
    if baseline.get("employment_status").is_some_and(|x| x == "in_work") {
        v.push(("sickness_absence_days".into(), s.below(12).to_string()));
    }
    let gain = if ips { 0.6 } else { 0.0 };
    v.push(("phq9".into(), score(s, baseline.get("phq9"), -1.5 - gain, 4.0, 0.0, 27.0)));
    v.push(("gad7".into(), score(s, baseline.get("gad7"), -1.2 - gain, 3.5, 0.0, 21.0)));
    v.push(("swemwbs".into(), score(s, baseline.get("swemwbs"), 1.0 + gain, 3.5, 7.0, 35.0)));
    let eq = baseline.get("eq5d").and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.6);
    v.push(("eq5d".into(), format!("{:.3}", normal(s, eq + 0.02, 0.12).clamp(-0.285, 1.0))));
    v.push((
        "ips_contacts".into(),
        (course.contacts * if tp == 0 { 1 } else { 2 } / 2 + course.contacts % 2).to_string(),
    ));
    v
}

/// Whether the demonstration's follow-up model fits the protocol: two
/// timepoints (4 and 12 months in the default protocol) and the outcome
/// `paid_work_13_weeks`. Without them the demonstration randomises only.
pub fn follows_up(protocol: &Protocol) -> bool {
    protocol.timepoints.len() == 2 && protocol.outcome("paid_work_13_weeks").is_some()
}

/// One randomised participant's simulated follow-up.
#[derive(Debug, Clone)]
pub struct FollowUp {
    /// A change of status, if any: days after randomisation, kind, reason,
    /// and whether further contact is refused.
    pub status: Option<(i64, crate::outcome::StatusKind, &'static str, bool)>,
    /// The contacts made, in timepoint order.
    pub contacts: Vec<Contact>,
}

/// One follow-up contact of a simulated participant.
#[derive(Debug, Clone)]
pub struct Contact {
    /// Index of the timepoint in the protocol's timepoints.
    pub timepoint: usize,
    /// Days after randomisation the values were collected.
    pub day: i64,
    /// The values collected (outcome name, value as entered).
    pub values: Vec<(String, String)>,
}

/// Simulates the follow-up of one participant randomised on `randomised_on`
/// (to IPS if `ips`) with these baseline values, drawing from `s`: the course
/// ([`primary_risk`] for the primary outcome), then at each timepoint the day
/// of the contact (the timepoint's day, give or take a few weeks) and, if the
/// participant responds and is still in follow-up, the values collected. The
/// demonstration and the simulation of the analysis both use it, so they
/// share one outcome model. Meant for a protocol that [`follows_up`].
pub fn simulate_follow_up(
    s: &mut Stream,
    protocol: &Protocol,
    ips: bool,
    baseline: &BTreeMap<String, String>,
    randomised_on: chrono::NaiveDate,
    effect_pp: f64,
) -> FollowUp {
    let course = simulate_course(s, ips, baseline, effect_pp);
    let stop = course.status.map(|(d, ..)| d).unwrap_or(i64::MAX);
    let mut contacts = Vec::with_capacity(protocol.timepoints.len());
    for (tp, t) in protocol.timepoints.iter().enumerate() {
        let d = i64::from(t.day) + (normal(s, 0.0, 8.0).round() as i64).clamp(-20, 25);
        if !course.respond[tp] || d >= stop {
            continue;
        }
        let values = follow_up_values(s, &course, tp, d, randomised_on, baseline, ips);
        contacts.push(Contact { timepoint: tp, day: d, values });
    }
    FollowUp { status: course.status, contacts }
}

/// Runs the demonstration (in a folder made ready by [`prepare_dir`]): creates
/// the trial, randomises the simulated referrals a working day's batch per
/// transaction from 5 January 2026, and follows every randomised participant up
/// at each timepoint with realistic attrition, recording values and status
/// changes through the same library calls a coordinator's commands use, in
/// date order (the log cannot be back-dated).
pub fn run(opts: &DemoOptions, mut progress: impl FnMut(&str, u64, u64)) -> Result<DemoReport> {
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
        now: Timestamp(start).into(),
    })?;
    let mut trial = Trial::open(&db)?;
    let key = keys::TrialKey::read(&key_path)?;
    let referrals = simulate_referrals(trial.protocol(), &opts.seed, opts.referrals);
    let follows_up = follows_up(trial.protocol());
    let mut s = Stream::open(&opts.seed, "demo/follow-up", 0);
    // Follow-up contacts and status changes by date.
    let mut contacts: BTreeMap<chrono::NaiveDate, Vec<Planned>> = BTreeMap::new();
    let mut changes: BTreeMap<chrono::NaiveDate, Vec<(String, crate::outcome::StatusKind, &'static str, bool)>> =
        BTreeMap::new();
    let per_day = 18usize;
    let mut day = start;
    let mut days = 0;
    let total = referrals.len() as u64;
    let mut chunks = referrals.chunks(per_day);
    let mut done = 0u64;
    loop {
        day += Duration::days(1);
        while matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
            day += Duration::days(1);
        }
        let today = day.date_naive();
        let at = |h: u32| Timestamp(day + Duration::hours(i64::from(h)));
        let chunk = chunks.next();
        if chunk.is_none() && contacts.is_empty() && changes.is_empty() {
            break;
        }
        if let Some(chunk) = chunk {
            days += 1;
            let batch: Vec<(String, Referral)> =
                chunk.iter().map(|r| (format!("simulated referral {}", r.participant), r.clone())).collect();
            let confirmations = trial.randomise(&key, &batch, "demo-coordinator", at(0))?;
            done += chunk.len() as u64;
            progress("randomising referrals", done, total);
            if follows_up {
                for (c, (_, r)) in confirmations.iter().zip(&batch) {
                    let Some(arm) = &c.arm else { continue };
                    let baseline: BTreeMap<String, String> = r.values.iter().cloned().collect();
                    let ips = arm == &trial.protocol().arms[0].id;
                    let follow = simulate_follow_up(&mut s, trial.protocol(), ips, &baseline, today, opts.effect_pp);
                    if let Some((d, kind, reason, nfc)) = follow.status {
                        changes.entry(today + Duration::days(d)).or_default().push((
                            c.participant.clone(),
                            kind,
                            reason,
                            nfc,
                        ));
                    }
                    for contact in follow.contacts {
                        contacts.entry(today + Duration::days(contact.day)).or_default().push(Planned {
                            participant: c.participant.clone(),
                            timepoint: trial.protocol().timepoints[contact.timepoint].id.clone(),
                            values: contact.values,
                        });
                    }
                }
            }
        }
        // Follow-up forms are entered once a week, on Fridays: the week's calls in one
        // transaction, then any status changes.
        if day.weekday() != Weekday::Fri && chunk.is_some() {
            continue;
        }
        let due: Vec<chrono::NaiveDate> = contacts.range(..=today).map(|(d, _)| *d).collect();
        let mut entries = Vec::new();
        for d in due {
            for p in contacts.remove(&d).unwrap_or_default() {
                entries.push((
                    format!("simulated follow-up {} {}", p.participant, p.timepoint),
                    crate::followup::OutcomeEntry {
                        participant: p.participant,
                        timepoint: p.timepoint,
                        collected_on: d,
                        values: p.values,
                        window_reason: None,
                    },
                ));
            }
        }
        if !entries.is_empty() {
            trial.record_outcomes(&entries, "demo-researcher", at(4))?;
        }
        let due: Vec<chrono::NaiveDate> = changes.range(..=today).map(|(d, _)| *d).collect();
        for d in due {
            for (p, kind, reason, nfc) in changes.remove(&d).unwrap_or_default() {
                trial.change_status(&p, kind, reason, nfc, Some(d), "demo-coordinator", at(6))?;
            }
        }
    }
    Ok(DemoReport { db, key: key_path, status: trial.status()?, days, last_day: day.date_naive() })
}

/// What the demonstration hands out after the simulated trial: a signed
/// checkpoint, the verification, the analysis tables and the report.
pub struct Published {
    /// The checkpoint file.
    pub checkpoint: PathBuf,
    /// Folder of the analysis tables.
    pub tables: PathBuf,
    /// The report.
    pub report: PathBuf,
    /// The report's contents' sources.
    pub built: crate::report::Built,
}

/// Makes a checkpoint (dated the last simulated day), verifies the log against
/// it, runs the analysis and writes the report, as a trial team would at the
/// end of follow-up.
pub fn publish(r: &DemoReport) -> Result<Published> {
    let dir = r.db.parent().map(Path::to_path_buf).unwrap_or_default();
    let trial = Trial::open(&r.db)?;
    let signing = keys::read_signing_key(&keys::signing_key_path(&r.key))?;
    let when =
        Timestamp(Utc.from_utc_datetime(&r.last_day.and_hms_opt(18, 0, 0).expect("valid time")).max(
            trial.store().head()?.ts.as_deref().and_then(|t| Timestamp::parse(t).ok()).map_or(Utc::now(), |t| t.0),
        ));
    let checkpoint = trial.checkpoint(&signing, when)?;
    let cp_path = dir.join("checkpoint.txt");
    // Written as every output is: whole or not at all, owner-only.
    use crate::outfile::{OUTPUT_MODE, Overwrite, write};
    write(&cp_path, checkpoint.to_text().as_bytes(), Overwrite::Refuse, OUTPUT_MODE)?;
    let built = crate::report::for_trial(&r.db, vec![(cp_path.display().to_string(), checkpoint)], None)?;
    let tables = dir.join("analysis");
    crate::analysis::write_tables(&built.analysis, &tables)?;
    let report = dir.join("report.html");
    write(&report, built.html.as_bytes(), Overwrite::Refuse, OUTPUT_MODE)?;
    Ok(Published { checkpoint: cp_path, tables, report, built })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The effect the demonstration states is the effect on the recorded
    /// primary outcome: whoever the model has in paid work for 13+ weeks is
    /// recorded so at 12 months, whichever day of its contact range (the
    /// default protocol's day 365, 20 days early to 25 late) the contact
    /// falls on, and nobody else is.
    #[test]
    fn the_recorded_primary_outcome_is_the_modelled_one() {
        let seed = [0x19; 32];
        let mut s = Stream::open(&seed, "test/courses", 0);
        let on = chrono::NaiveDate::from_ymd_opt(2026, 1, 6).unwrap();
        let baselines: Vec<BTreeMap<String, String>> =
            [("in_work", "msk"), ("out_of_work", "msk"), ("out_of_work", "both"), ("out_of_work", "mental_health")]
                .iter()
                .map(|(e, c)| {
                    [("employment_status", *e), ("condition", *c)]
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                })
                .collect();
        let mut working = 0;
        for i in 0..4000 {
            let (baseline, ips) = (&baselines[i % 4], i % 8 < 4);
            // The course's first draw decides the outcome.
            let works_13 =
                unit(&mut Stream::open(&seed, "test/courses", s.word_pos())) < primary_risk(baseline, ips, 4.0);
            working += usize::from(works_13);
            let course = simulate_course(&mut s, ips, baseline, 4.0);
            for day in 365 - 20..=365 + 25 {
                let values = follow_up_values(&mut s, &course, 1, day, on, baseline, ips);
                let recorded = values.iter().find(|(k, _)| k == "paid_work_13_weeks").map(|(_, v)| v.as_str());
                assert_eq!(recorded, Some(if works_13 { "yes" } else { "no" }), "course {i}, day {day}");
            }
        }
        assert!(working > 800 && working < 1400, "{working}");
    }
}
