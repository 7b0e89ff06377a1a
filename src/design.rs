//! Design assessment: the properties of a protocol's allocation method by
//! simulation, before the trial goes live — balance (final and worst running
//! imbalance, overall and within strata) and predictability (how often a
//! recruiter who knows the past allocations in the stratum guesses the next
//! one), compared with simple randomisation, fixed blocks and minimisation on
//! the same referral sequences. This is what R's randomizeR does offline.
//!
//! Referrals come from the demonstration's simulator (realistic spread across
//! sites and strata), screened by the protocol's own rules; allocations come
//! from [`crate::allocation`] exactly as in a live trial, each simulated trial
//! under its own seed derived from the given one, so results are reproducible.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::allocation::{self, State};
use crate::protocol::{Imbalance, Method, Protocol};
use crate::referral::{self, Decision};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// Simulated trials per method.
    pub trials: u32,
    /// Randomised participants per trial.
    pub participants: u32,
    /// Seed from which every trial's referrals and allocation seed derive.
    pub seed: [u8; 32],
}

/// One method's properties, averaged over the simulated trials.
#[derive(Debug, Clone, Serialize)]
pub struct MethodProperties {
    /// The method, e.g. "permuted blocks 2/4/6 (this protocol)".
    pub method: String,
    /// Mean final imbalance overall: Σ over arms of |count − n × share|
    /// (for two arms 1:1, the difference between the arms).
    pub final_imbalance_mean: f64,
    /// Largest final imbalance overall in any trial.
    pub final_imbalance_max: f64,
    /// Mean over trials of the largest running imbalance overall.
    pub max_running_imbalance_mean: f64,
    /// Mean final imbalance within a stratum (over strata and trials).
    pub stratum_final_imbalance_mean: f64,
    /// Largest running imbalance within any stratum in any trial.
    pub stratum_max_running_imbalance: f64,
    /// Share of allocations a recruiter guesses right by the convergence
    /// strategy (guess the arm furthest below its share in the stratum;
    /// ties split evenly). 1/arms is unpredictable.
    pub predictability: f64,
}

/// The assessment.
#[derive(Debug, Clone, Serialize)]
pub struct Assessment {
    /// Protocol id.
    pub protocol: String,
    /// Simulated trials per method.
    pub trials: u32,
    /// Participants per trial.
    pub participants: u32,
    /// Strata (combinations of the protocol's factors) seen.
    pub strata_seen: usize,
    /// Results, the protocol's own method first.
    pub methods: Vec<MethodProperties>,
}

/// The methods compared: the protocol's own, then simple randomisation, fixed
/// blocks of twice the ratio total, and minimisation (range, p = 0.8) over the
/// protocol's factors, each skipped where it is the protocol's own.
fn methods(p: &Protocol) -> Vec<(String, Protocol)> {
    let total: u32 = p.arms.iter().map(|a| a.ratio).sum();
    let own = match &p.method {
        Method::PermutedBlocks { block_sizes } => format!(
            "permuted blocks {} (this protocol)",
            block_sizes.iter().map(u32::to_string).collect::<Vec<_>>().join("/")
        ),
        Method::Simple => "simple randomisation (this protocol)".into(),
        Method::Minimisation { p_millionths, .. } => {
            format!("minimisation, p = {} (this protocol)", f64::from(*p_millionths) / 1e6)
        }
    };
    let mut out = vec![(own, p.clone())];
    let alternatives = [
        ("simple randomisation".to_string(), Method::Simple),
        (format!("fixed blocks of {}", 2 * total), Method::PermutedBlocks { block_sizes: vec![2 * total] }),
        (
            "minimisation, range, p = 0.8".to_string(),
            Method::Minimisation { imbalance: Imbalance::Range, p_millionths: 800_000 },
        ),
    ];
    for (name, m) in alternatives {
        if m != p.method && !(matches!(m, Method::Minimisation { .. }) && p.factors.is_empty()) {
            out.push((name, Protocol { method: m, ..p.clone() }));
        }
    }
    out
}

fn trial_seed(seed: &[u8; 32], purpose: &str, t: u32) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"chancery/v1/simulate/")
        .chain_update(purpose.as_bytes())
        .chain_update(seed)
        .chain_update(t.to_le_bytes())
        .finalize()
        .into()
}

/// Σ over arms of |count − n × share|.
fn imbalance(counts: &[u64], shares: &[f64]) -> f64 {
    let n: u64 = counts.iter().sum();
    counts.iter().zip(shares).map(|(&c, s)| (c as f64 - n as f64 * s).abs()).sum()
}

/// Expected correct guesses for the next allocation in a stratum with these counts.
fn guess_credit(counts: &[u64], shares: &[f64], arm: usize) -> f64 {
    let n: u64 = counts.iter().sum();
    let deficit: Vec<f64> = counts.iter().zip(shares).map(|(&c, s)| (n + 1) as f64 * s - c as f64).collect();
    let best = deficit.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let tied: Vec<usize> = (0..counts.len()).filter(|&k| (deficit[k] - best).abs() < 1e-9).collect();
    if tied.contains(&arm) { 1.0 / tied.len() as f64 } else { 0.0 }
}

/// Runs the assessment; `progress(done, total)` is called after each simulated trial.
pub fn simulate(p: &Protocol, opts: &SimulateOptions, mut progress: impl FnMut(u64, u64)) -> Assessment {
    let arms = p.arms.len();
    let total: u32 = p.arms.iter().map(|a| a.ratio).sum();
    let shares: Vec<f64> = p.arms.iter().map(|a| f64::from(a.ratio) / f64::from(total)).collect();
    let methods = methods(p);
    let n = opts.participants as usize;
    let mut strata_seen = std::collections::BTreeSet::new();
    let mut acc: Vec<[f64; 7]> = vec![[0.0; 7]; methods.len()];
    let mut stratum_final_count = 0usize;
    let steps = u64::from(opts.trials) * methods.len() as u64;
    let mut done = 0;
    for t in 0..opts.trials {
        // The same referral sequence for every method in this trial.
        let referral_seed = trial_seed(&opts.seed, "referrals", t);
        let mut levels_seq: Vec<Vec<usize>> = Vec::with_capacity(n);
        let mut batch = 0u32;
        while levels_seq.len() < n && batch < 50 {
            let more =
                crate::demo::simulate_referrals(p, &trial_seed(&referral_seed, "batch", batch), (n as u32).max(100));
            for r in more {
                if levels_seq.len() == n {
                    break;
                }
                if let Ok(s) = referral::screen(p, &r)
                    && s.decision == Decision::Randomise
                {
                    levels_seq.push(referral::factor_levels(p, &s));
                }
            }
            batch += 1;
        }
        let allocation_seed = trial_seed(&opts.seed, "allocation", t);
        for (m, (_, mp)) in methods.iter().enumerate() {
            let mut state = State::new(mp);
            let mut overall = vec![0u64; arms];
            let mut by_stratum: std::collections::HashMap<String, Vec<u64>> = std::collections::HashMap::new();
            let (mut max_running, mut stratum_max, mut credit) = (0.0f64, 0.0f64, 0.0f64);
            for levels in &levels_seq {
                let a = allocation::allocate(mp, &allocation_seed, &state, levels);
                state.record(&a);
                let label = allocation::stratum_label(p, levels);
                let counts = by_stratum.entry(label.clone()).or_insert_with(|| vec![0; arms]);
                credit += guess_credit(counts, &shares, a.arm);
                counts[a.arm] += 1;
                overall[a.arm] += 1;
                max_running = max_running.max(imbalance(&overall, &shares));
                stratum_max = stratum_max.max(imbalance(counts, &shares));
                if m == 0 {
                    strata_seen.insert(label);
                }
            }
            let fin = imbalance(&overall, &shares);
            let r = &mut acc[m];
            r[0] += fin;
            r[1] = r[1].max(fin);
            r[2] += max_running;
            r[3] += by_stratum.values().map(|c| imbalance(c, &shares)).sum::<f64>();
            r[4] = r[4].max(stratum_max);
            r[5] += credit / levels_seq.len().max(1) as f64;
            if m == 0 {
                stratum_final_count += by_stratum.len();
            }
            done += 1;
            progress(done, steps);
        }
    }
    let trials = f64::from(opts.trials.max(1));
    let strata_mean = stratum_final_count.max(1) as f64;
    Assessment {
        protocol: p.id.clone(),
        trials: opts.trials,
        participants: opts.participants,
        strata_seen: strata_seen.len(),
        methods: methods
            .into_iter()
            .zip(acc)
            .map(|((name, _), r)| MethodProperties {
                method: name,
                final_imbalance_mean: r[0] / trials,
                final_imbalance_max: r[1],
                max_running_imbalance_mean: r[2] / trials,
                stratum_final_imbalance_mean: r[3] / strata_mean,
                stratum_max_running_imbalance: r[4],
                predictability: r[5] / trials,
            })
            .collect(),
    }
}
