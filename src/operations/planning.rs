//! Planning and demonstration, before or beside a real trial: sample size and
//! power ([`power`]), the allocation method's and the analysis's properties by
//! simulation ([`simulate_allocation`], [`simulate_analysis`]), and a whole
//! simulated trial in a new folder ([`prepare_demo`], [`run_demo`],
//! [`publish_demo`]: three steps, so a front end can show what each did).

use std::path::PathBuf;

use chrono::NaiveDate;
use serde::Serialize;

use crate::analysis::Analysis;
use crate::demo::{DemoOptions, DemoReport};
use crate::design::{Assessment, DesignOverrides};
use crate::error::{Error, Result};
use crate::keys;
use crate::ledger::Status;
use crate::operating::{OperatingCharacteristics, OperatingOptions};
use crate::protocol::Protocol;
use crate::stats::power::{PowerCalculation, Solve, TwoMeans, TwoProportions, two_means, two_proportions};

use super::DEFAULT_PROTOCOL;

/// A design's common options.
#[derive(Debug, Clone, Copy)]
pub struct PowerOptions {
    /// Target power: solve for the sample size (0.9 if neither this nor `n`).
    pub power: Option<f64>,
    /// Participants analysed in the intervention arm: solve for the power.
    pub n: Option<f64>,
    /// Two-sided significance level.
    pub alpha: f64,
    /// Control participants per intervention participant.
    pub ratio: f64,
    /// Expected share without an outcome, 0 ≤ a < 1.
    pub attrition: f64,
}

/// The design whose sample size or power to find.
#[derive(Debug, Clone)]
pub enum PowerDesign {
    /// Two proportions (R's power.prop.test).
    Proportions {
        /// Expected proportion in the intervention arm.
        p1: f64,
        /// Expected proportion in the control arm.
        p2: f64,
        /// The common options.
        options: PowerOptions,
    },
    /// Two means (R's power.t.test, strict = TRUE).
    Means {
        /// Difference in means to detect.
        delta: f64,
        /// Common standard deviation.
        sd: f64,
        /// The common options.
        options: PowerOptions,
    },
    /// The protocol's `[design]` table: the number to recruit (or the power).
    Protocol {
        /// The protocol file (default: the bundled one).
        protocol: Option<PathBuf>,
        /// Values to use instead of the protocol's.
        overrides: DesignOverrides,
    },
}

/// What [`power`] needs.
#[derive(Debug, Clone)]
pub struct PowerRequest {
    /// The design.
    pub design: PowerDesign,
}

/// What [`power`] found.
#[derive(Debug, Clone, Serialize)]
pub struct Power {
    /// What was calculated, in words (`two proportions: 0.29 vs 0.25`).
    pub description: String,
    /// The calculation.
    pub calculation: PowerCalculation,
}

/// Sample size or power for two proportions or two means, or the number to
/// recruit under a protocol's `[design]` assumptions.
pub fn power(request: &PowerRequest) -> Result<Power> {
    let stats = |e: crate::stats::StatsError| Error::Input(format!("{e}"));
    let solve = |c: &PowerOptions| match (c.power, c.n) {
        (_, Some(n1)) => Solve::Power { n1 },
        (Some(power), None) => Solve::SampleSize { power },
        (None, None) => Solve::SampleSize { power: 0.9 },
    };
    let (description, calculation) = match &request.design {
        &PowerDesign::Proportions { p1, p2, options: ref o } => (
            format!("two proportions: {p1} vs {p2}"),
            two_proportions(
                &TwoProportions { p1, p2, sig_level: o.alpha, allocation_ratio: o.ratio, attrition: o.attrition },
                solve(o),
            )
            .map_err(stats)?,
        ),
        &PowerDesign::Means { delta, sd, options: ref o } => (
            format!("two means: difference {delta}, SD {sd}"),
            two_means(
                &TwoMeans { delta, sd, sig_level: o.alpha, allocation_ratio: o.ratio, attrition: o.attrition },
                solve(o),
            )
            .map_err(stats)?,
        ),
        PowerDesign::Protocol { protocol, overrides } => {
            let (p, name) = match protocol {
                Some(path) => (Protocol::load(path)?, path.display().to_string()),
                None => {
                    (Protocol::parse("the default protocol", DEFAULT_PROTOCOL)?, "the default protocol".to_string())
                }
            };
            if p.design.is_none() {
                return Err(Error::Input(format!(
                    "{name} has no [design] table; add one or give `proportions` or `means`"
                )));
            }
            let s = crate::design::sample_size(&p, overrides)?;
            let outcome =
                p.outcomes.iter().find(|o| o.primary).map_or("primary outcome".to_string(), |o| o.label.clone());
            (
                format!(
                    "{}: {outcome}, {:.1}% under {} vs {:.1}% under {} ({:+} pp)",
                    p.id,
                    s.control_rate * 100.0,
                    s.control,
                    s.intervention_rate * 100.0,
                    s.intervention,
                    p.design.as_ref().map_or(0.0, |d| d.effect_pp)
                ),
                s.calculation,
            )
        }
    };
    Ok(Power { description, calculation })
}

/// What [`simulate_allocation`] and [`simulate_analysis`] need.
#[derive(Debug, Clone)]
pub struct SimulateRequest {
    /// The protocol file (default: the bundled one).
    pub protocol: Option<PathBuf>,
    /// Simulated trials (default 100 for the allocation, 200 for the analysis).
    pub trials: Option<u32>,
    /// Participants randomised per trial (default: the number to recruit for
    /// the protocol's `[design]`, else 1000).
    pub participants: Option<u32>,
    /// The simulation's seed, 64 hex digits (not a trial's seed).
    pub seed: String,
    /// For the analysis: the true effect on the primary outcome in percentage
    /// points (default: the protocol's `[design]` effect, else 4).
    pub effect_pp: Option<f64>,
}

/// Reads a protocol file, or the bundled default.
fn load_protocol(path: &Option<PathBuf>) -> Result<Protocol> {
    match path {
        Some(p) => Protocol::load(p),
        None => Protocol::parse("work-health-ips.toml (bundled)", DEFAULT_PROTOCOL),
    }
}

/// Participants per simulated trial: as given, else the number to recruit
/// for the protocol's `[design]`, else 1000.
fn simulated_participants(p: &Protocol, participants: Option<u32>) -> Result<u32> {
    Ok(match participants {
        Some(n) => n,
        None => match &p.design {
            Some(_) => {
                let s = crate::design::sample_size(p, &Default::default())?;
                u32::try_from(s.recruit_total).unwrap_or(u32::MAX).min(1_000_000)
            }
            None => 1000,
        },
    })
}

/// The protocol's allocation method by simulation: imbalance overall and per
/// stratum, and predictability, against simple randomisation, fixed blocks
/// and minimisation on the same referrals. `progress(done, total)` after
/// each simulated trial.
pub fn simulate_allocation(request: &SimulateRequest, progress: impl FnMut(u64, u64)) -> Result<Assessment> {
    let seed = keys::parse_seed(&request.seed)?;
    let p = load_protocol(&request.protocol)?;
    let participants = simulated_participants(&p, request.participants)?;
    let trials = request.trials.unwrap_or(100);
    crate::design::simulate(&p, &crate::design::SimulationOptions { trials, participants, seed }, progress)
}

/// The primary analysis over whole simulated trials (the demonstration's
/// recruitment, attrition and outcomes): bias, standard errors, coverage and
/// rejection rate. `progress(done, total)` (from any thread) after each trial.
pub fn simulate_analysis(
    request: &SimulateRequest,
    progress: impl Fn(u64, u64) + Sync,
) -> Result<OperatingCharacteristics> {
    let seed = keys::parse_seed(&request.seed)?;
    let p = load_protocol(&request.protocol)?;
    let participants = simulated_participants(&p, request.participants)?;
    let effect_pp = request.effect_pp.unwrap_or_else(|| p.design.as_ref().map_or(4.0, |d| d.effect_pp));
    let trials = request.trials.unwrap_or(200);
    crate::operating::simulate_analysis(&p, &OperatingOptions { trials, participants, effect_pp, seed }, progress)
}

/// What the demonstration needs.
#[derive(Debug, Clone)]
pub struct DemoRequest {
    /// The folder to create (new or empty).
    pub dir: PathBuf,
    /// Simulated referrals to screen.
    pub participants: u32,
    /// The seed for the trial and the simulation, 64 hex digits.
    pub seed: String,
    /// The protocol file (default: the bundled one, written into the folder).
    pub protocol: Option<PathBuf>,
    /// The true effect of IPS on the primary outcome, in percentage points.
    pub effect_pp: f64,
}

/// A demonstration ready to run: its folder made, its protocol in place.
#[derive(Debug, Clone)]
pub struct DemoPlan {
    /// What [`run_demo`] will do.
    pub options: DemoOptions,
}

/// Checks the request and makes the demonstration's folder ready (writing the
/// bundled protocol into it if none is given).
pub fn prepare_demo(request: &DemoRequest) -> Result<DemoPlan> {
    let effect = request.effect_pp;
    if !(-50.0..=50.0).contains(&effect) {
        return Err(Error::Input(format!("--effect {effect} must be between -50 and 50 percentage points")));
    }
    let seed = keys::parse_seed(&request.seed)?;
    let dir = &request.dir;
    crate::demo::prepare_dir(dir)?;
    let protocol = match &request.protocol {
        Some(p) => p.clone(),
        None => {
            let p = dir.join("work-health-ips.toml");
            std::fs::write(&p, DEFAULT_PROTOCOL).map_err(Error::io(format!("writing {}", p.display())))?;
            p
        }
    };
    Ok(DemoPlan {
        options: DemoOptions { dir: dir.clone(), protocol, referrals: request.participants, seed, effect_pp: effect },
    })
}

/// The simulated trial, run.
#[derive(Debug, Clone, Serialize)]
pub struct DemoRun {
    /// The folder.
    pub dir: PathBuf,
    /// The trial database.
    pub db: PathBuf,
    /// The trial key file.
    pub key: PathBuf,
    /// The trial's state at the end.
    pub status: Status,
    /// The largest difference between arms' counts within a stratum.
    pub largest_stratum_difference: i64,
    /// Working days over which referrals arrived.
    pub days: u32,
    /// The last day of follow-up.
    pub last_day: NaiveDate,
    /// The true simulated effect, in percentage points.
    pub effect_pp: f64,
}

/// Runs the whole simulated trial: creates it, randomises the simulated
/// referrals a working day's batch at a time and follows them up, through the
/// same library calls as a coordinator's. `progress(stage, done, total)`.
pub fn run_demo(plan: &DemoPlan, progress: impl FnMut(&str, u64, u64)) -> Result<DemoRun> {
    let r = crate::demo::run(&plan.options, progress)?;
    Ok(DemoRun {
        dir: plan.options.dir.clone(),
        largest_stratum_difference: super::reading::largest_stratum_difference(&r.status),
        db: r.db,
        key: r.key,
        status: r.status,
        days: r.days,
        last_day: r.last_day,
        effect_pp: plan.options.effect_pp,
    })
}

/// What the demonstration handed out.
#[derive(Debug, Clone, Serialize)]
pub struct DemoPublished {
    /// The signed checkpoint's file.
    pub checkpoint: PathBuf,
    /// The folder of the analysis tables.
    pub tables: PathBuf,
    /// The report's file.
    pub report: PathBuf,
    /// The analysis.
    pub analysis: Analysis,
    /// The verification against the checkpoint.
    pub verification: crate::verify::Report,
}

/// Makes a checkpoint, verifies the log against it, writes the analysis
/// tables and the report, as a trial team would at the end of follow-up.
pub fn publish_demo(run: &DemoRun) -> Result<DemoPublished> {
    let p = crate::demo::publish(&DemoReport {
        db: run.db.clone(),
        key: run.key.clone(),
        status: run.status.clone(),
        days: run.days,
        last_day: run.last_day,
    })?;
    Ok(DemoPublished {
        checkpoint: p.checkpoint,
        tables: p.tables,
        report: p.report,
        analysis: p.built.analysis,
        verification: p.built.verification,
    })
}
