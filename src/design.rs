//! Design assessment, before a trial goes live: the number to recruit for the
//! protocol's `[design]` assumptions, and the properties of its allocation
//! method by simulation (imbalance and predictability), compared with simple
//! randomisation, fixed blocks and minimisation on the same referrals.
//!
//! The simulation runs the allocation code itself ([`crate::allocation`])
//! with in-memory state, so what it measures is what the trial will do.
//! Everything is drawn from named ChaCha20 streams under the simulation's own
//! seed (never a trial's seed): `simulate/referral-mix` for the referrals
//! that set the spread across strata, `simulate/trials` for each simulated
//! trial's seed, and, under that seed, `simulate/referrals` for the order in
//! which participants arrive. The same seed gives the same report.
//!
//! Predictability follows Blackwell & Hodges (1957) and Berger, Ivanova &
//! Knoll (2003): a recruiter who knows every past allocation in the
//! participant's stratum guesses the arm furthest below its target share
//! there (the convergence strategy). Ties are scored at their expectation (a
//! guess among k tied arms is right with probability 1/k), so the figure has
//! no guessing noise: simple randomisation 1:1 scores 50% exactly in
//! expectation.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::allocation::{self, State};
use crate::error::{Error, Result};
use crate::protocol::{Imbalance, Method, Protocol};
use crate::random::Stream;
use crate::referral::{self, Decision};
use crate::stats::power::{self, PowerCalculation, Solve, TwoProportions};

// ---------------------------------------------------------------------------
// Sample size for the protocol's [design].

/// The number to recruit for a protocol's `[design]` assumptions.
#[derive(Debug, Clone, Serialize)]
pub struct SampleSize {
    /// Trial id.
    pub trial: String,
    /// The intervention arm's id (arm 1 of the calculation).
    pub intervention: String,
    /// The control arm's id (arm 2).
    pub control: String,
    /// Expected proportion with the primary outcome under the intervention.
    pub intervention_rate: f64,
    /// Expected proportion under control.
    pub control_rate: f64,
    /// Allocation ratio, intervention : control.
    pub ratio: (u32, u32),
    /// Expected share without a primary outcome.
    pub attrition: f64,
    /// The calculation: arm 1 is the intervention, arm 2 the control.
    pub calculation: PowerCalculation,
    /// Participants to randomise in all: `recruit1 + recruit2`.
    pub recruit_total: u64,
}

/// Overrides of the protocol's `[design]` values (`None` keeps the protocol's).
#[derive(Debug, Clone, Copy, Default)]
pub struct DesignOverrides {
    /// Target power.
    pub power: Option<f64>,
    /// Two-sided significance level.
    pub alpha: Option<f64>,
    /// Expected attrition.
    pub attrition: Option<f64>,
    /// Participants analysed in the intervention arm: solve for power instead.
    pub n_intervention: Option<f64>,
}

/// The sample size (or, with `n_intervention`, the power) for the protocol's
/// `[design]`: two proportions as R's `power.prop.test`, generalised to the
/// arms' allocation ratio, inflated for attrition and rounded up per arm.
pub fn sample_size(protocol: &Protocol, o: &DesignOverrides) -> Result<SampleSize> {
    let d = protocol.design.as_ref().ok_or_else(|| {
        Error::Input(format!(
            "protocol {} has no [design] table; add the sample-size assumptions (protocol/README.md) or give --p1 and --p2",
            protocol.id
        ))
    })?;
    let control = d.control_arm;
    let intervention = 1 - control;
    let (ri, rc) = (protocol.arms[intervention].ratio, protocol.arms[control].ratio);
    let design = TwoProportions {
        p1: d.intervention_rate(),
        p2: d.control_rate,
        sig_level: o.alpha.unwrap_or(d.alpha),
        allocation_ratio: f64::from(rc) / f64::from(ri),
        attrition: o.attrition.unwrap_or(d.attrition),
    };
    let solve = match o.n_intervention {
        Some(n1) => Solve::Power { n1 },
        None => Solve::SampleSize { power: o.power.unwrap_or(d.power) },
    };
    let calculation = power::two_proportions(&design, solve).map_err(|e| Error::Input(e.to_string()))?;
    Ok(SampleSize {
        trial: protocol.id.clone(),
        intervention: protocol.arms[intervention].id.clone(),
        control: protocol.arms[control].id.clone(),
        intervention_rate: design.p1,
        control_rate: design.p2,
        ratio: (ri, rc),
        attrition: design.attrition,
        recruit_total: calculation.recruit1 + calculation.recruit2,
        calculation,
    })
}

// ---------------------------------------------------------------------------
// Allocation properties by simulation.

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimulationOptions {
    /// Number of simulated trials.
    pub trials: u32,
    /// Participants randomised in each.
    pub participants: u32,
    /// The simulation's seed (not a trial's seed).
    pub seed: [u8; 32],
}

/// One stratum's share of the simulated referrals.
#[derive(Debug, Clone, Serialize)]
pub struct StratumShare {
    /// Stratum label, `factor=level|…` (as in allocation records).
    pub stratum: String,
    /// Share of randomised participants expected in it.
    pub share: f64,
}

/// Mean and extremes of a quantity across simulated trials.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Spread {
    /// Mean across trials.
    pub mean: f64,
    /// 95th percentile across trials (nearest rank).
    pub p95: f64,
    /// Largest across trials.
    pub max: f64,
}

/// Imbalance within one stratum under one method.
#[derive(Debug, Clone, Serialize)]
pub struct StratumImbalance {
    /// Stratum label.
    pub stratum: String,
    /// Mean participants per trial in the stratum.
    pub participants: f64,
    /// Imbalance at the end of each trial.
    pub final_imbalance: Spread,
    /// Largest imbalance at any point during each trial.
    pub max_imbalance: Spread,
}

/// The properties of one allocation method.
#[derive(Debug, Clone, Serialize)]
pub struct MethodAssessment {
    /// Short name, e.g. `protocol`, `simple`, `fixed blocks of 4`, `minimisation`.
    pub name: String,
    /// The method and its parameters, e.g. `permuted_blocks, block sizes 2, 4, 6, stratified by site, …`.
    pub description: String,
    /// Share of allocations a recruiter guesses right with the convergence strategy.
    pub predictability: f64,
    /// Overall imbalance at the end of each trial.
    pub final_imbalance: Spread,
    /// Largest overall imbalance at any point during each trial.
    pub max_imbalance: Spread,
    /// Largest imbalance within any one stratum at any point, across all trials.
    pub worst_stratum_imbalance: f64,
    /// Per stratum, in label order.
    pub strata: Vec<StratumImbalance>,
}

/// The result of a design assessment.
#[derive(Debug, Clone, Serialize)]
pub struct Assessment {
    /// Trial id.
    pub trial: String,
    /// Simulated trials.
    pub trials: u32,
    /// Participants per trial.
    pub participants: u32,
    /// Arm ids and ratios.
    pub arms: Vec<(String, u32)>,
    /// How imbalance is measured.
    pub imbalance_measure: String,
    /// Where the spread of referrals across strata comes from.
    pub referral_mix: String,
    /// Strata and their shares, in label order.
    pub strata: Vec<StratumShare>,
    /// The protocol's method first, then the comparators.
    pub methods: Vec<MethodAssessment>,
}

/// Simulated referrals screened to make the referral mix.
const MIX_REFERRALS: u32 = 20_000;

/// The factor levels of randomised participants in simulated referrals (the
/// demonstration's realistic generator, screened by the protocol's own
/// eligibility and consent rules), or `None` if none would be randomised.
fn referral_mix(protocol: &Protocol, seed: &[u8; 32]) -> Option<Vec<Vec<usize>>> {
    let mut s = Stream::open(seed, "simulate/referral-mix", 0);
    let referrals = crate::demo::simulate_referrals_from(protocol, &mut s, MIX_REFERRALS);
    let pool: Vec<Vec<usize>> = referrals
        .iter()
        .filter_map(|r| referral::screen(protocol, r).ok())
        .filter(|sc| sc.decision == Decision::Randomise)
        .map(|sc| referral::factor_levels(protocol, &sc))
        .collect();
    if pool.is_empty() { None } else { Some(pool) }
}

/// Every combination of factor levels, in mixed-radix order (last factor fastest).
fn all_level_combinations(protocol: &Protocol) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new()];
    for f in &protocol.factors {
        out = out
            .into_iter()
            .flat_map(|prefix| (0..f.levels.len()).map(move |l| [prefix.clone(), vec![l]].concat()))
            .collect();
    }
    out
}

/// The smallest block holding whole multiples of the ratio and at least 4.
fn fixed_block_size(protocol: &Protocol) -> u32 {
    let total: u32 = protocol.arms.iter().map(|a| a.ratio).sum();
    total * 4u32.div_ceil(total)
}

fn describe(protocol: &Protocol) -> String {
    let method = match &protocol.method {
        Method::PermutedBlocks { block_sizes } => {
            format!("permuted blocks of {}", block_sizes.iter().map(u32::to_string).collect::<Vec<_>>().join(", "))
        }
        Method::Simple => "simple randomisation".to_string(),
        Method::Minimisation { imbalance, p_millionths } => format!(
            "minimisation ({}, p = {})",
            match imbalance {
                Imbalance::Range => "range",
                Imbalance::Variance => "variance",
            },
            f64::from(*p_millionths) / 1e6
        ),
    };
    if protocol.factors.is_empty() || protocol.method == Method::Simple {
        method
    } else {
        let by = if matches!(protocol.method, Method::Minimisation { .. }) { "over" } else { "within strata of" };
        format!("{method}, {by} {}", protocol.factors.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(" × "))
    }
}

/// The methods compared: the protocol's own, then simple randomisation,
/// fixed blocks and minimisation (range, p = 0.8) with the protocol's
/// factors, each left out where it is the protocol's own method.
fn methods(protocol: &Protocol) -> Vec<(String, Protocol)> {
    let b = fixed_block_size(protocol);
    let comparators = [
        ("simple".to_string(), Method::Simple),
        (format!("fixed blocks of {b}"), Method::PermutedBlocks { block_sizes: vec![b] }),
        ("minimisation".to_string(), Method::Minimisation { imbalance: Imbalance::Range, p_millionths: 800_000 }),
    ];
    let mut out = vec![("protocol".to_string(), protocol.clone())];
    for (name, method) in comparators {
        if method != protocol.method {
            out.push((name, Protocol { method, ..protocol.clone() }));
        }
    }
    out
}

/// Distance from the target allocation, Σₐ |nₐ − n·rₐ/R|, scaled by R so it
/// is an integer: for two arms 1:1 it is R·|n₁ − n₂| with R = 2, i.e. the
/// caller divides by R.
fn scaled_imbalance(counts: &[u64], ratios: &[u64], total_ratio: u64) -> u64 {
    let n: u64 = counts.iter().sum();
    counts.iter().zip(ratios).map(|(&c, &r)| (n * r).abs_diff(total_ratio * c)).sum()
}

/// What one simulated trial under one method measured.
struct TrialResult {
    correct: f64,
    final_overall: f64,
    max_overall: f64,
    /// Per stratum index: (participants, final, max running).
    strata: Vec<(u64, f64, f64)>,
}

fn run_trial(
    protocol: &Protocol,
    seed: &[u8; 32],
    sequence: &[usize],
    combos: &[Vec<usize>],
    ratios: &[u64],
) -> TrialResult {
    let arms = protocol.arms.len();
    let total_ratio: u64 = ratios.iter().sum();
    let r = total_ratio as f64;
    let mut state = State::new(protocol);
    let mut blocks = allocation::Blocks::default();
    let mut overall = vec![0u64; arms];
    let mut by_stratum = vec![vec![0u64; arms]; combos.len()];
    let mut max_stratum = vec![0u64; combos.len()];
    let mut max_overall = 0u64;
    let mut correct = 0.0;
    for &s in sequence {
        let counts = &by_stratum[s];
        // The convergence guess: the arms furthest below their target share in the stratum.
        let n: u64 = counts.iter().sum();
        let deficit: Vec<i128> =
            (0..arms).map(|a| i128::from(n * ratios[a]) - i128::from(total_ratio * counts[a])).collect();
        let best = *deficit.iter().max().expect("at least two arms");
        let guessed: Vec<usize> = (0..arms).filter(|&a| deficit[a] == best).collect();
        let a = allocation::allocate_with(protocol, seed, &state, &combos[s], &mut blocks);
        if guessed.contains(&a.arm) {
            correct += 1.0 / guessed.len() as f64;
        }
        state.record(&a);
        overall[a.arm] += 1;
        by_stratum[s][a.arm] += 1;
        max_overall = max_overall.max(scaled_imbalance(&overall, ratios, total_ratio));
        max_stratum[s] = max_stratum[s].max(scaled_imbalance(&by_stratum[s], ratios, total_ratio));
    }
    TrialResult {
        correct,
        final_overall: scaled_imbalance(&overall, ratios, total_ratio) as f64 / r,
        max_overall: max_overall as f64 / r,
        strata: by_stratum
            .iter()
            .zip(&max_stratum)
            .map(|(c, &m)| (c.iter().sum(), scaled_imbalance(c, ratios, total_ratio) as f64 / r, m as f64 / r))
            .collect(),
    }
}

fn spread(values: &mut [f64]) -> Spread {
    if values.is_empty() {
        return Spread { mean: 0.0, p95: 0.0, max: 0.0 };
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let rank = (0.95 * n as f64).ceil() as usize;
    Spread { mean: values.iter().sum::<f64>() / n as f64, p95: values[rank.clamp(1, n) - 1], max: values[n - 1] }
}

/// The seed of simulated trial `k`: eight words of `simulate/trials` from word 8k.
pub(crate) fn trial_seed(seed: &[u8; 32], k: u32) -> [u8; 32] {
    let mut s = Stream::open(seed, "simulate/trials", 8 * u64::from(k));
    let mut out = [0u8; 32];
    for chunk in out.chunks_exact_mut(4) {
        chunk.copy_from_slice(&s.next_word().to_le_bytes());
    }
    out
}

/// Simulates `options.trials` trials of `options.participants` under the
/// protocol's allocation method and the comparators, on the same referral
/// sequences. `progress(done, total)` is called after each simulated trial.
pub fn simulate(
    protocol: &Protocol,
    options: &SimulationOptions,
    mut progress: impl FnMut(u64, u64),
) -> Result<Assessment> {
    if options.trials == 0 || options.participants == 0 {
        return Err(Error::Input(
            "simulate needs at least one trial and one participant (--trials, --participants)".into(),
        ));
    }
    // Counted before any stratum is built: a protocol that was never checked
    // at `init` may have more strata than memory holds.
    let count = crate::protocol::strata_count(&protocol.factors);
    if count.is_none_or(|n| n > 10_000) {
        return Err(Error::Input(format!(
            "protocol {} has {} strata; the simulation handles up to 10,000 strata",
            protocol.id,
            count.map_or("over 2^64".to_string(), |n| n.to_string())
        )));
    }
    let combos = all_level_combinations(protocol);
    let index_of =
        |levels: &[usize]| levels.iter().zip(&protocol.factors).fold(0usize, |i, (&l, f)| i * f.levels.len() + l);
    // The pool the referral sequences draw from: stratum indices of randomised
    // simulated referrals, or every stratum equally when none would be randomised.
    let (pool, mix): (Vec<usize>, String) = match referral_mix(protocol, &options.seed) {
        Some(levels) => {
            let n = levels.len();
            (
                levels.iter().map(|l| index_of(l)).collect(),
                format!(
                    "{n} of {MIX_REFERRALS} simulated referrals randomised under the protocol's eligibility and consent rules; each simulated trial draws its participants from them at random"
                ),
            )
        }
        None => (
            (0..combos.len()).collect(),
            "no simulated referral met the protocol's rules: participants spread equally across strata".to_string(),
        ),
    };
    let mut share = vec![0u64; combos.len()];
    for &i in &pool {
        share[i] += 1;
    }
    let ratios: Vec<u64> = protocol.arms.iter().map(|a| u64::from(a.ratio)).collect();
    let methods = methods(protocol);
    let total = u64::from(options.trials);
    // Per method: correct guesses, final and max overall, and per stratum (n, final, max) per trial.
    let mut correct = vec![0.0; methods.len()];
    let mut finals = vec![Vec::new(); methods.len()];
    let mut maxes = vec![Vec::new(); methods.len()];
    let mut strata: Vec<Vec<Vec<(u64, f64, f64)>>> = vec![Vec::new(); methods.len()];
    for k in 0..options.trials {
        let seed = trial_seed(&options.seed, k);
        let mut s = Stream::open(&seed, "simulate/referrals", 0);
        let sequence: Vec<usize> =
            (0..options.participants).map(|_| pool[s.below(pool.len() as u32) as usize]).collect();
        for (m, (_, p)) in methods.iter().enumerate() {
            let r = run_trial(p, &seed, &sequence, &combos, &ratios);
            correct[m] += r.correct;
            finals[m].push(r.final_overall);
            maxes[m].push(r.max_overall);
            strata[m].push(r.strata);
        }
        progress(u64::from(k) + 1, total);
    }
    let trials = options.trials as f64;
    let allocations = trials * f64::from(options.participants);
    let labels: Vec<String> = combos.iter().map(|c| allocation::stratum_label(protocol, c)).collect();
    // Strata in label order; those no referral falls in are left out.
    let order: BTreeMap<&str, usize> =
        labels.iter().enumerate().filter(|(i, _)| share[*i] > 0).map(|(i, l)| (l.as_str(), i)).collect();
    let assessments = methods
        .iter()
        .enumerate()
        .map(|(m, (name, p))| {
            let per_stratum: Vec<StratumImbalance> = order
                .iter()
                .map(|(label, &i)| {
                    let column = strata[m].iter().map(|t| t[i]);
                    let mut f: Vec<f64> = column.clone().map(|x| x.1).collect();
                    let mut x: Vec<f64> = column.clone().map(|x| x.2).collect();
                    StratumImbalance {
                        stratum: label.to_string(),
                        participants: column.map(|x| x.0 as f64).sum::<f64>() / trials,
                        final_imbalance: spread(&mut f),
                        max_imbalance: spread(&mut x),
                    }
                })
                .collect();
            MethodAssessment {
                name: name.clone(),
                description: describe(p),
                predictability: correct[m] / allocations,
                final_imbalance: spread(&mut finals[m]),
                max_imbalance: spread(&mut maxes[m]),
                worst_stratum_imbalance: per_stratum.iter().map(|s| s.max_imbalance.max).fold(0.0, f64::max),
                strata: per_stratum,
            }
        })
        .collect();
    Ok(Assessment {
        trial: protocol.id.clone(),
        trials: options.trials,
        participants: options.participants,
        arms: protocol.arms.iter().map(|a| (a.id.clone(), a.ratio)).collect(),
        imbalance_measure:
            "Σ over arms of |participants − target share × total|; for two arms 1:1, the difference in numbers".into(),
        referral_mix: mix,
        strata: order
            .iter()
            .map(|(label, &i)| StratumShare { stratum: label.to_string(), share: share[i] as f64 / pool.len() as f64 })
            .collect(),
        methods: assessments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn default_protocol() -> Protocol {
        Protocol::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/work-health-ips.toml")).unwrap()
    }

    fn run(p: &Protocol, trials: u32, participants: u32, seed: u8) -> Assessment {
        simulate(p, &SimulationOptions { trials, participants, seed: [seed; 32] }, |_, _| {}).unwrap()
    }

    fn method<'a>(a: &'a Assessment, name: &str) -> &'a MethodAssessment {
        a.methods.iter().find(|m| m.name == name).unwrap()
    }

    #[test]
    fn the_default_protocol_needs_6468_participants() {
        // power.prop.test(p1 = 0.29, p2 = 0.25, power = 0.9)$n = 2586.689 analysed per arm;
        // ⌈2586.689 / 0.8⌉ = 3234 per arm for 20% attrition.
        let s = sample_size(&default_protocol(), &DesignOverrides::default()).unwrap();
        assert_eq!((s.intervention.as_str(), s.control.as_str()), ("ips", "usual_care"));
        assert!((s.calculation.n1 - 2586.6886342631233).abs() < 1e-6);
        assert_eq!((s.calculation.recruit1, s.calculation.recruit2, s.recruit_total), (3234, 3234, 6468));
        let o = DesignOverrides { n_intervention: Some(2000.0), attrition: Some(0.0), ..Default::default() };
        let s = sample_size(&default_protocol(), &o).unwrap();
        assert!((s.calculation.power - 0.813_293_534_005_721).abs() < 1e-8);
        assert_eq!(s.recruit_total, 4000);
    }

    #[test]
    fn unequal_allocation_follows_the_arms_ratio() {
        let mut p = default_protocol();
        p.arms[0].ratio = 2; // ips 2 : usual care 1
        let s = sample_size(&p, &DesignOverrides::default()).unwrap();
        assert_eq!(s.ratio, (2, 1));
        assert!((s.calculation.n2 / s.calculation.n1 - 0.5).abs() < 1e-12);
        let equal = sample_size(&default_protocol(), &DesignOverrides::default()).unwrap();
        assert!(s.calculation.n1 + s.calculation.n2 > equal.calculation.n1 + equal.calculation.n2);
    }

    #[test]
    fn a_protocol_without_design_assumptions_is_refused_with_what_to_do() {
        let mut p = default_protocol();
        p.design = None;
        let e = sample_size(&p, &DesignOverrides::default()).unwrap_err().to_string();
        assert!(e.contains("no [design] table") && e.contains("--p1"), "{e}");
    }

    #[test]
    fn the_same_seed_gives_the_same_assessment() {
        let p = default_protocol();
        let a = serde_json::to_string(&run(&p, 3, 200, 1)).unwrap();
        assert_eq!(a, serde_json::to_string(&run(&p, 3, 200, 1)).unwrap());
        assert_ne!(a, serde_json::to_string(&run(&p, 3, 200, 2)).unwrap());
    }

    #[test]
    fn known_properties_of_the_methods_hold_on_the_default_protocol() {
        let p = default_protocol();
        let a = run(&p, 20, 1000, 7);
        let (protocol, simple, fixed, minimisation) =
            (method(&a, "protocol"), method(&a, "simple"), method(&a, "fixed blocks of 4"), method(&a, "minimisation"));
        // Simple randomisation cannot be guessed; permuted blocks can.
        assert!((simple.predictability - 0.5).abs() < 0.01, "{}", simple.predictability);
        assert!(protocol.predictability > 0.6, "{}", protocol.predictability);
        // Within a stratum a block's imbalance never exceeds half the largest block.
        assert!(protocol.worst_stratum_imbalance <= 3.0, "{}", protocol.worst_stratum_imbalance);
        assert!(fixed.worst_stratum_imbalance <= 2.0, "{}", fixed.worst_stratum_imbalance);
        assert!(simple.worst_stratum_imbalance > 3.0);
        // Minimisation balances the whole trial best.
        for m in &a.methods {
            if m.name != "minimisation" {
                assert!(minimisation.final_imbalance.mean < m.final_imbalance.mean, "{}", m.name);
                assert!(minimisation.max_imbalance.mean < m.max_imbalance.mean, "{}", m.name);
            }
        }
        // Shares of the strata add to one, and the strata are those referrals fall in.
        let total: f64 = a.strata.iter().map(|s| s.share).sum();
        assert!((total - 1.0).abs() < 1e-9);
        assert!(a.strata.iter().all(|s| !s.stratum.contains("in_work") || !s.stratum.contains("site=birmingham")));
    }

    #[test]
    fn with_no_eligible_referral_the_strata_are_spread_evenly() {
        let text = default_protocol().text
            + "\n[[eligibility]]\nid = \"nobody\"\nreason = \"closed\"\nrequire = { field = \"age\", op = \"gt\", value = 100 }\n";
        let p = Protocol::parse("closed.toml", &text).unwrap();
        let a = run(&p, 2, 540, 1);
        assert!(a.referral_mix.starts_with("no simulated referral"), "{}", a.referral_mix);
        // 9 sites × 2 employment statuses × 3 conditions, each equally likely.
        assert_eq!(a.strata.len(), 54);
        assert!(a.strata.iter().all(|s| (s.share - 1.0 / 54.0).abs() < 1e-12));
        assert!(a.methods[0].strata.iter().all(|s| s.participants > 0.0));
    }

    #[test]
    fn a_comparator_that_is_the_protocols_own_method_is_not_repeated() {
        let mut p = default_protocol();
        p.method = Method::Minimisation { imbalance: Imbalance::Range, p_millionths: 800_000 };
        let names: Vec<String> = run(&p, 1, 50, 1).methods.into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["protocol", "simple", "fixed blocks of 4"]);
        p.arms[0].ratio = 2;
        p.method = Method::Simple;
        let names: Vec<String> = run(&p, 1, 50, 1).methods.into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["protocol", "fixed blocks of 6", "minimisation"]);
    }

    #[test]
    fn fixed_blocks_of_four_are_more_predictable_than_random_sizes() {
        // One stratum, long sequences. Under the convergence strategy a block of
        // 2m yields m + (4^m / C(2m, m) − 1) / 2 correct guesses (Blackwell &
        // Hodges 1957): 17/24 = 70.8% for blocks of 4, and (1.5 + 17/6 + 4.1) / 12
        // = 70.3% for sizes 2, 4, 6 drawn with equal probability.
        let mut p = default_protocol();
        p.factors.clear();
        let a = run(&p, 100, 2000, 3);
        let (protocol, fixed) = (method(&a, "protocol"), method(&a, "fixed blocks of 4"));
        assert!((fixed.predictability - 17.0 / 24.0).abs() < 0.01, "{}", fixed.predictability);
        assert!((protocol.predictability - 8.433_333 / 12.0).abs() < 0.004, "{}", protocol.predictability);
        assert!(
            fixed.predictability > protocol.predictability + 0.002,
            "{} {}",
            fixed.predictability,
            protocol.predictability
        );
        assert_eq!(a.strata.len(), 1);
        assert_eq!(a.strata[0].stratum, "all");
    }
}
