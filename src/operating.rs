//! The analysis's operating characteristics, by simulation: whole simulated
//! trials (recruitment, allocation, attrition, outcomes) run through the same
//! primary analysis a trial's data will get, before the trial starts.
//!
//! Each simulated trial is the demonstration in memory: its referrals come
//! from the demonstration's generator ([`crate::demo::ReferralGenerator`],
//! stream `demo/referrals`), are screened by the protocol
//! ([`crate::referral::screen`]) and allocated by the allocation code itself
//! ([`crate::allocation::allocate_with`]) until the number asked for are
//! randomised, and each randomised participant is followed up by the
//! demonstration's outcome model ([`crate::demo::simulate_follow_up`], stream
//! `demo/follow-up`). The [`Dataset`] so built is analysed by
//! [`crate::analysis::analyse_primary`], the function [`crate::analysis::analyse`]
//! runs for its headline. Trial `k` is the demonstration run with the seed
//! `simulate/trials` gives it under the simulation's seed (eight words from
//! word 8k, as [`crate::design::simulate`] derives its trials' seeds), so it
//! does not depend on the other trials, on their order or on the number of
//! threads; the trials run in parallel on the thread pool.
//!
//! The truth the estimates are compared with is the headline's own estimand:
//! the marginal risk difference of the primary outcome (intervention minus
//! control, percentage points) in the randomised population, the average over
//! that population of [`crate::demo::primary_risk`] under each arm. The
//! model's attrition is drawn apart from the arm, the baseline and the
//! outcome (missing completely at random), so the complete-case standardised
//! risk difference targets it too.
//!
//! Reported (Morris, White & Crowther 2019, *Statistics in Medicine*
//! 38:2074–2102): the mean estimate with its Monte Carlo standard error, the
//! empirical standard error (the estimates' standard deviation) against the
//! mean standard error the analysis reported, the coverage of its confidence
//! intervals and the share of trials whose interval excludes no effect (the
//! power; with no effect, the type I error rate), each with its Monte Carlo
//! standard error.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use compact_str::CompactString;
use rayon::prelude::*;
use serde::Serialize;

use crate::allocation::{self, State};
use crate::dataset::ParticipantStatus;
use crate::dataset::{Dataset, NamedValues, Names, OutcomeKeys, OutcomeValue, Outcomes, ParticipantRecord};
use crate::demo::{self, ReferralGenerator};
use crate::error::{Error, Result};
use crate::outcome::StatusKind;
use crate::protocol::Protocol;
use crate::random::Stream;
use crate::referral::{self, Decision};
use crate::stats::Estimable;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct OperatingOptions {
    /// Number of simulated trials.
    pub trials: u32,
    /// Participants randomised in each.
    pub participants: u32,
    /// The true effect the outcome model is given: percentage points more
    /// with the primary outcome under the intervention.
    pub effect_pp: f64,
    /// The simulation's seed (not a trial's seed).
    pub seed: [u8; 32],
}

/// The analysis's operating characteristics over the simulated trials.
#[derive(Debug, Clone, Serialize)]
pub struct OperatingCharacteristics {
    /// Trial id.
    pub trial: String,
    /// Simulated trials.
    pub trials: u32,
    /// Participants randomised in each.
    pub participants: u32,
    /// The effect given to the outcome model, percentage points.
    pub effect_pp: f64,
    /// The primary outcome and its timepoint, e.g. `paid_work_13_weeks at m12`.
    pub outcome: String,
    /// What the headline estimates, in words.
    pub estimand: String,
    /// The headline's method.
    pub method: String,
    /// The true value of the estimand in the simulated population, on the
    /// headline's scale (percentage points).
    pub true_effect: f64,
    /// Trials whose headline was estimable (the figures below are over these).
    pub estimated: u32,
    /// Mean of the headline estimates.
    pub mean_estimate: f64,
    /// Monte Carlo standard error of the mean estimate.
    pub mc_se: f64,
    /// Mean estimate minus the true effect.
    pub bias: f64,
    /// Standard deviation of the estimates across trials.
    pub empirical_se: f64,
    /// Mean of the standard errors the analysis reported.
    pub mean_reported_se: f64,
    /// Confidence level of the intervals.
    pub level: f64,
    /// Share of trials whose confidence interval holds the true effect.
    pub coverage: f64,
    /// Monte Carlo standard error of the coverage.
    pub coverage_mc_se: f64,
    /// Share of trials whose confidence interval excludes no effect: the power,
    /// or with no effect the type I error rate, of the headline's Wald test at
    /// two-sided significance 1 − level.
    pub rejection_rate: f64,
    /// Monte Carlo standard error of the rejection rate.
    pub rejection_mc_se: f64,
    /// Mean participants per trial with the primary outcome (analysed).
    pub mean_analysed: f64,
}

/// Simulated referrals screened to find the randomised population's mix for
/// the true effect (only the bounds of a risk make the mix matter).
const POPULATION_REFERRALS: u32 = 100_000;

/// The demonstration's pace: referrals randomised per working day.
const REFERRALS_PER_DAY: usize = 18;

/// Why `protocol` cannot be simulated by the demonstration's outcome model, if it cannot.
fn unsupported(protocol: &Protocol) -> Option<String> {
    let primary = protocol.outcomes.iter().find(|o| o.primary);
    if demo::follows_up(protocol) && primary.is_some_and(|o| o.name == "paid_work_13_weeks") {
        return None;
    }
    Some(format!(
        "protocol {} cannot be simulated: the outcome model (the demonstration's) needs two timepoints and the primary outcome paid_work_13_weeks, as in protocol/work-health-ips.toml",
        protocol.id
    ))
}

/// One simulated trial, in memory: the demonstration for `seed` (its
/// referrals, screened and allocated with `seed`, and its follow-up with
/// `effect_pp`) until `participants` are randomised. The dataset holds the
/// randomised participants with every value the demonstration would record
/// (not the screened referrals), as of the last follow-up.
pub fn simulated_trial(protocol: &Protocol, seed: &[u8; 32], participants: u32, effect_pp: f64) -> Result<Dataset> {
    if let Some(why) = unsupported(protocol) {
        return Err(Error::Input(why));
    }
    let ips = &protocol.arms[0].id;
    let mut referrals = ReferralGenerator::new(protocol);
    let mut referral_stream = Stream::open(seed, "demo/referrals", 0);
    let mut follow_stream = Stream::open(seed, "demo/follow-up", 0);
    let mut state = State::new(protocol);
    let mut blocks = allocation::Blocks::default();
    // The name and key tables every participant shares.
    let strata_names = Arc::new(Names::new(protocol.factors.iter().map(|f| f.name.clone()).collect()));
    let strata_index: Vec<u32> =
        protocol.factors.iter().map(|f| strata_names.index(&f.name).expect("a name of the table")).collect();
    let baseline_names = Arc::new(Names::new(protocol.fields.iter().map(|f| f.name.clone()).collect()));
    let keys = Arc::new(OutcomeKeys::new(
        protocol.outcomes.iter().flat_map(|o| o.timepoints.iter().map(move |t| (t.clone(), o.name.clone()))).collect(),
    ));
    let start = NaiveDate::from_ymd_opt(2026, 1, 5).expect("valid date");
    let (mut day, mut day_of) = (start, usize::MAX);
    let mut as_of = start;
    let mut people = Vec::with_capacity(participants as usize);
    // Every referral is screened; a protocol that randomises none (or too few) is refused.
    let limit = 1000 + 100 * u64::from(participants);
    let mut screened = 0u64;
    while people.len() < participants as usize {
        if screened == limit {
            return Err(Error::Input(format!(
                "protocol {}: {screened} simulated referrals randomised only {}; its eligibility rules admit too few of the demonstration's referrals",
                protocol.id,
                people.len()
            )));
        }
        // The demonstration randomises a working day's batch at a time.
        let batch = screened as usize / REFERRALS_PER_DAY;
        while day_of != batch {
            day += Duration::days(1);
            while matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
                day += Duration::days(1);
            }
            day_of = day_of.wrapping_add(1);
        }
        screened += 1;
        let r = referrals.next(&mut referral_stream);
        let s = referral::screen(protocol, &r).map_err(|m| Error::Input(format!("simulated referral: {m}")))?;
        if s.decision != Decision::Randomise {
            continue;
        }
        let levels = referral::factor_levels(protocol, &s);
        let a = allocation::allocate_with(protocol, seed, &state, &levels, &mut blocks);
        state.record(&a);
        let arm = protocol.arms[a.arm].id.clone();
        let entered: BTreeMap<String, String> = r.values.into_iter().collect();
        let follow = demo::simulate_follow_up(&mut follow_stream, protocol, &arm == ips, &entered, day, effect_pp);
        let mut values = Vec::new();
        for c in &follow.contacts {
            let on = day + Duration::days(c.day);
            as_of = as_of.max(on);
            let tp = &protocol.timepoints[c.timepoint].id;
            for (name, raw) in &c.values {
                if raw.trim().is_empty() {
                    continue;
                }
                let (Some(o), Some(k)) = (protocol.outcome(name), keys.index(tp, name)) else { continue };
                let v = referral::canonical_value(&o.kind, raw)
                    .map_err(|m| Error::Integrity(format!("simulated follow-up, {tp}: {name}: {m}")))?;
                values.push((k, OutcomeValue { value: v.into(), collected_on: on }));
            }
        }
        let status = match follow.status {
            None => ParticipantStatus::Active,
            Some((d, kind, reason, no_further_contact)) => {
                let on = day + Duration::days(d);
                as_of = as_of.max(on);
                let reason = reason.to_string();
                match kind {
                    StatusKind::Withdrawn => ParticipantStatus::Withdrawn { reason, no_further_contact, on },
                    StatusKind::Lost => ParticipantStatus::Lost { reason, on },
                    StatusKind::Died => ParticipantStatus::Died { reason, on },
                }
            }
        };
        let strata = NamedValues::from_indexed(
            strata_names.clone(),
            protocol
                .factors
                .iter()
                .zip(&a.levels)
                .zip(&strata_index)
                .map(|((f, &l), &k)| (k, CompactString::from(f.levels[l].as_str())))
                .collect(),
        );
        let baseline = NamedValues::from_indexed(
            baseline_names.clone(),
            s.values
                .iter()
                .filter_map(|(k, v)| Some((baseline_names.index(k)?, CompactString::from(v.as_str()))))
                .collect(),
        );
        people.push(ParticipantRecord {
            region: protocol.site(&s.site).and_then(|x| x.region.clone()),
            participant: s.participant,
            site: s.site,
            arm,
            strata,
            randomised_on: day,
            baseline,
            status,
            outcomes: Outcomes::from_indexed(keys.clone(), values),
        });
    }
    Ok(Dataset { protocol: protocol.clone(), referrals: Vec::new(), participants: people, as_of })
}

/// The marginal risk difference (percentage points) of the primary outcome
/// in the randomised population: [`demo::primary_risk`] under the
/// intervention minus under control, averaged over the participants the
/// protocol randomises from [`POPULATION_REFERRALS`] simulated referrals
/// (stream `simulate/population` under the simulation's seed).
fn true_effect(protocol: &Protocol, seed: &[u8; 32], effect_pp: f64) -> f64 {
    let mut s = Stream::open(seed, "simulate/population", 0);
    let mut referrals = ReferralGenerator::new(protocol);
    let (mut sum, mut n) = (0.0, 0u64);
    for _ in 0..POPULATION_REFERRALS {
        let r = referrals.next(&mut s);
        if !matches!(referral::screen(protocol, &r), Ok(sc) if sc.decision == Decision::Randomise) {
            continue;
        }
        let entered: BTreeMap<String, String> = r.values.into_iter().collect();
        sum += demo::primary_risk(&entered, true, effect_pp) - demo::primary_risk(&entered, false, effect_pp);
        n += 1;
    }
    // The differences' sum carries rounding of about 1e-12 (0.27 + 0.04 − 0.27
    // is not 0.04 in binary): the truth is stated to 1e-9 pp.
    let truth = if n == 0 { effect_pp } else { 100.0 * sum / n as f64 };
    (truth * 1e9).round() / 1e9
}

/// What one simulated trial's headline gave.
struct TrialEstimate {
    estimate: f64,
    se: f64,
    ci: (f64, f64),
}

/// One simulated trial's result: the headline if estimable, the
/// participants analysed, and the headline's measure and method.
type TrialResult = (Option<TrialEstimate>, usize, Option<String>);

/// Runs `options.trials` simulated trials of `options.participants` through
/// the primary analysis and summarises how it behaved. `progress(done,
/// total)` is called (from any thread) after each trial.
pub fn simulate_analysis(
    protocol: &Protocol,
    options: &OperatingOptions,
    progress: impl Fn(u64, u64) + Sync,
) -> Result<OperatingCharacteristics> {
    if options.trials == 0 || options.participants == 0 {
        return Err(Error::Input(
            "simulate --analysis needs at least one trial and one participant (--trials, --participants)".into(),
        ));
    }
    if !(-50.0..=50.0).contains(&options.effect_pp) {
        return Err(Error::Input(format!(
            "--effect {} must be between -50 and 50 percentage points",
            options.effect_pp
        )));
    }
    if let Some(why) = unsupported(protocol) {
        return Err(Error::Input(why));
    }
    let done = AtomicU64::new(0);
    let total = u64::from(options.trials);
    let results: Vec<TrialResult> = (0..options.trials)
        .into_par_iter()
        .map(|k| -> Result<TrialResult> {
            let seed = crate::design::trial_seed(&options.seed, k);
            let d = simulated_trial(protocol, &seed, options.participants, options.effect_pp)?;
            let primary = crate::analysis::analyse_primary(&d)?;
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
            let Some(primary) = primary else { return Ok((None, 0, None)) };
            let t = &primary.unadjusted.table;
            let analysed = t.treated_n + t.control_n;
            Ok(match primary.adjusted.risk_difference {
                Estimable::Value(e) => (
                    Some(TrialEstimate {
                        estimate: e.estimate,
                        se: e.se.unwrap_or(f64::NAN),
                        ci: (e.ci_low, e.ci_high),
                    }),
                    analysed,
                    Some(format!("{}; {}", e.measure, e.method)),
                ),
                Estimable::NotEstimable(_) => (None, analysed, None),
            })
        })
        .collect::<Result<_>>()?;
    let truth = true_effect(protocol, &options.seed, options.effect_pp);
    let level = protocol.analysis.confidence;
    let estimates: Vec<&TrialEstimate> = results.iter().filter_map(|(e, ..)| e.as_ref()).collect();
    // Means, standard deviations and Monte Carlo errors need two estimates at
    // least: with fewer there is nothing to report but that (never a NaN).
    if estimates.len() < 2 {
        return Err(Error::Input(format!(
            "the primary analysis was estimable in {} of {} simulated trials of {} participants; operating characteristics need two at least: give more --participants or --trials",
            estimates.len(),
            options.trials,
            options.participants
        )));
    }
    let m = estimates.len() as f64;
    let mean = |f: &dyn Fn(&TrialEstimate) -> f64| estimates.iter().map(|e| f(e)).sum::<f64>() / m;
    let share = |f: &dyn Fn(&TrialEstimate) -> bool| estimates.iter().filter(|e| f(e)).count() as f64 / m;
    let mean_estimate = mean(&|e| e.estimate);
    let empirical_se = if estimates.len() > 1 {
        (estimates.iter().map(|e| (e.estimate - mean_estimate).powi(2)).sum::<f64>() / (m - 1.0)).sqrt()
    } else {
        f64::NAN
    };
    let coverage = share(&|e| e.ci.0 <= truth && truth <= e.ci.1);
    let rejection_rate = share(&|e| e.ci.0 > 0.0 || e.ci.1 < 0.0);
    let binomial_se = |p: f64| (p * (1.0 - p) / m).sqrt();
    let method = results.iter().find_map(|(_, _, m)| m.clone()).unwrap_or_default();
    let outcome = protocol
        .outcomes
        .iter()
        .find(|o| o.primary)
        .map(|o| format!("{} at {}", o.name, o.timepoints.last().map_or("", String::as_str)))
        .unwrap_or_default();
    Ok(OperatingCharacteristics {
        trial: protocol.id.clone(),
        trials: options.trials,
        participants: options.participants,
        effect_pp: options.effect_pp,
        outcome,
        estimand:
            "marginal risk difference (intervention minus control, percentage points) in the randomised population"
                .into(),
        method,
        true_effect: truth,
        estimated: estimates.len() as u32,
        mean_estimate,
        mc_se: empirical_se / m.sqrt(),
        bias: mean_estimate - truth,
        empirical_se,
        mean_reported_se: mean(&|e| e.se),
        level,
        coverage,
        coverage_mc_se: binomial_se(coverage),
        rejection_rate,
        rejection_mc_se: binomial_se(rejection_rate),
        mean_analysed: results.iter().map(|(_, n, _)| *n as f64).sum::<f64>() / f64::from(options.trials),
    })
}
