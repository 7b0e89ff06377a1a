//! Allocation: which arm the next participant gets, by permuted blocks,
//! simple randomisation or minimisation, from the trial seed.
//!
//! Everything here is pure and deterministic: the same protocol, seed, state
//! and referral give the same allocation on every machine. Random numbers come
//! only from [`crate::random::Stream`]; docs/SPEC.md specifies each procedure
//! so that an auditor can re-derive every allocation independently.
//!
//! The state that carries allocation from one participant to the next (block
//! cursors, stream positions, counts) is derived from the log's allocation
//! events through [`State::record`]; the same function serves live allocation
//! and replay.

use std::collections::HashMap;

use crate::protocol::{Imbalance, Method, Protocol};
use crate::random::Stream;

/// Where a stratum's permuted-block list stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockCursor {
    /// The current block's number, from 1.
    pub block: u64,
    /// The stream word at which the current block's generation starts.
    pub start_word: u64,
    /// How many participants the current block has allocated.
    pub used: u32,
}

/// How one allocation was decided; enough for an auditor with the seed to
/// re-derive it, and no more (the current block's size and contents are not
/// recorded, so the database alone does not reveal the next allocations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// Permuted blocks.
    Blocks {
        /// Stream name (`blocks/<stratum>`).
        stream: String,
        /// Block number within the stratum, from 1.
        block: u64,
        /// Stream word where the block's generation starts.
        start_word: u64,
        /// Position within the block, from 1.
        position: u32,
    },
    /// Simple randomisation.
    Simple {
        /// Stream name (`simple`).
        stream: String,
        /// First stream word used.
        word_start: u64,
        /// Stream word after the last one used.
        word_end: u64,
    },
    /// Minimisation.
    Minimisation {
        /// Stream name (`minimisation`).
        stream: String,
        /// First stream word used.
        word_start: u64,
        /// Stream word after the last one used.
        word_end: u64,
        /// Imbalance score had each arm been chosen, in arm order (integers, see SPEC).
        scores: Vec<u128>,
        /// Arms with the least score, by index.
        preferred: Vec<usize>,
        /// The draw in 0..1,000,000 that decided between preferred and other arms, if made.
        draw_p: Option<u32>,
        /// The draw that chose among several arms of the chosen set, if made.
        draw_arm: Option<u32>,
    },
}

/// One allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// Index of the allocated arm in the protocol's arms.
    pub arm: usize,
    /// Level index of each factor, in factor order.
    pub levels: Vec<usize>,
    /// How it was decided.
    pub detail: Detail,
}

/// The state allocation carries from one participant to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// Block cursors by stream name.
    pub blocks: HashMap<String, BlockCursor>,
    /// Next word of the `simple` or `minimisation` stream.
    pub next_word: u64,
    /// Participants per factor, level and arm: `counts[factor][level][arm]`.
    pub counts: Vec<Vec<Vec<u64>>>,
}

impl State {
    /// The state before the first allocation.
    pub fn new(protocol: &Protocol) -> State {
        State {
            blocks: HashMap::new(),
            next_word: 0,
            counts: protocol.factors.iter().map(|f| vec![vec![0; protocol.arms.len()]; f.levels.len()]).collect(),
        }
    }

    /// Advances the state past an allocation (live or replayed from the log).
    pub fn record(&mut self, a: &Allocation) {
        for (f, &l) in a.levels.iter().enumerate() {
            if let Some(c) = self.counts.get_mut(f).and_then(|x| x.get_mut(l)).and_then(|x| x.get_mut(a.arm)) {
                *c += 1;
            }
        }
        match &a.detail {
            Detail::Blocks { stream, block, start_word, position } => {
                self.blocks
                    .insert(stream.clone(), BlockCursor { block: *block, start_word: *start_word, used: *position });
            }
            Detail::Simple { word_end, .. } | Detail::Minimisation { word_end, .. } => {
                self.next_word = *word_end;
            }
        }
    }
}

/// The stratum label of a set of factor levels: `name=level|name=level…`, or
/// `all` when the protocol has no factors.
pub fn stratum_label(protocol: &Protocol, levels: &[usize]) -> String {
    if protocol.factors.is_empty() {
        return "all".into();
    }
    let mut label = String::with_capacity(80);
    for (i, (f, &l)) in protocol.factors.iter().zip(levels).enumerate() {
        if i > 0 {
            label.push('|');
        }
        label.push_str(&f.name);
        label.push('=');
        label.push_str(&f.levels[l]);
    }
    label
}

/// Generates the permuted block that starts at `start_word` of `stream`:
/// its size is `block_sizes[below(len)]`; its contents are each arm repeated
/// `ratio × size / ratio_total` times, in arm order, then Fisher–Yates shuffled.
/// Returns the block (arm indices) and the stream word after it.
pub fn generate_block(protocol: &Protocol, seed: &[u8; 32], stream: &str, start_word: u64) -> (Vec<usize>, u64) {
    let Method::PermutedBlocks { block_sizes } = &protocol.method else {
        unreachable!("blocks are generated only under permuted_blocks")
    };
    let mut s = Stream::open(seed, stream, start_word);
    let size = block_sizes[s.below(block_sizes.len() as u32) as usize];
    let total: u32 = protocol.arms.iter().map(|a| a.ratio).sum();
    let mut block = Vec::with_capacity(size as usize);
    for (i, arm) in protocol.arms.iter().enumerate() {
        for _ in 0..(arm.ratio * size / total) {
            block.push(i);
        }
    }
    s.shuffle(&mut block);
    (block, s.word_pos())
}

/// The permuted blocks generated last, one for each stream. The state records
/// only where a stratum's current block starts and how much of it is used, so
/// each allocation would generate that block again from its start word; a
/// caller allocating many participants keeps this beside the state instead.
/// Only a cache: allocations are the same with a fresh one or a kept one. It
/// belongs to one protocol; a different seed empties it. Kept because
/// generating a block again costs ~8,700 instructions an allocation: without
/// the cache a 10,000-referral batch's preparing thread (which paces the
/// batch) runs 10% more instructions, and `verify --key` of 20,001 entries 5%
/// more (`valgrind --tool=callgrind`, `timing batch 10000`; BENCHMARKS.md).
#[derive(Clone, Default)]
pub struct Blocks {
    seed: [u8; 32],
    /// Stream name → (start word, block, the word after it).
    by_stream: HashMap<String, (u64, Vec<usize>, u64)>,
}

/// Neither the seed nor the blocks, whose unused places are the next
/// allocations: concealment holds in debug output too.
impl std::fmt::Debug for Blocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blocks").field("streams", &self.by_stream.len()).finish_non_exhaustive()
    }
}

impl Blocks {
    /// The block of `stream` that starts at `start_word`, and the word after it.
    fn at(&mut self, protocol: &Protocol, seed: &[u8; 32], stream: &str, start_word: u64) -> (&[usize], u64) {
        if self.seed != *seed {
            self.by_stream.clear();
            self.seed = *seed;
        }
        if !matches!(self.by_stream.get(stream), Some((start, _, _)) if *start == start_word) {
            let (block, end) = generate_block(protocol, seed, stream, start_word);
            self.by_stream.insert(stream.to_string(), (start_word, block, end));
        }
        match self.by_stream.get(stream) {
            Some((_, block, end)) => (block, *end),
            None => unreachable!("the block was just inserted"),
        }
    }
}

/// Allocates the next participant with factor `levels`, given the state so far.
/// The state is not changed; call [`State::record`] with the result.
pub fn allocate(protocol: &Protocol, seed: &[u8; 32], state: &State, levels: &[usize]) -> Allocation {
    allocate_with(protocol, seed, state, levels, &mut Blocks::default())
}

/// [`allocate`], keeping the blocks it generates in `blocks` for the next allocations.
pub fn allocate_with(
    protocol: &Protocol,
    seed: &[u8; 32],
    state: &State,
    levels: &[usize],
    blocks: &mut Blocks,
) -> Allocation {
    let detail_and_arm = match &protocol.method {
        Method::PermutedBlocks { .. } => {
            let stream = format!("blocks/{}", stratum_label(protocol, levels));
            let cursor = state.blocks.get(&stream).copied();
            let (block_no, start, used, arm) = match cursor {
                None => (1, 0, 0, blocks.at(protocol, seed, &stream, 0).0[0]),
                Some(c) => {
                    let (b, end) = blocks.at(protocol, seed, &stream, c.start_word);
                    match b.get(c.used as usize) {
                        Some(&arm) => (c.block, c.start_word, c.used, arm),
                        None => (c.block + 1, end, 0, blocks.at(protocol, seed, &stream, end).0[0]),
                    }
                }
            };
            (Detail::Blocks { stream, block: block_no, start_word: start, position: used + 1 }, arm)
        }
        Method::Simple => {
            let mut s = Stream::open(seed, "simple", state.next_word);
            let ratios: Vec<u32> = protocol.arms.iter().map(|a| a.ratio).collect();
            let arm = s.weighted(&ratios);
            (Detail::Simple { stream: "simple".into(), word_start: state.next_word, word_end: s.word_pos() }, arm)
        }
        Method::Minimisation { imbalance, p_millionths } => {
            minimise(protocol, seed, state, levels, *imbalance, *p_millionths)
        }
    };
    let (detail, arm) = detail_and_arm;
    Allocation { arm, levels: levels.to_vec(), detail }
}

/// The least common multiple of the arms' ratios.
fn ratio_lcm(protocol: &Protocol) -> u64 {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    protocol.arms.iter().fold(1u64, |l, a| l / gcd(l, u64::from(a.ratio)) * u64::from(a.ratio))
}

/// The most participants a minimisation trial is checked for at `init`.
pub const MINIMISATION_PARTICIPANTS: u64 = 1_000_000_000;

/// Whether every minimisation score for up to `participants` participants
/// fits the 128-bit integers `minimise` computes in, so that scores are
/// exact (docs/SPEC.md §6.4): `K² × ((N + 1)·L)² × Σ weight_milli < 2^128`.
pub fn scores_fit(protocol: &Protocol, participants: u64) -> bool {
    let k = protocol.arms.len() as u128;
    let weights: u128 = protocol.factors.iter().map(|f| u128::from(f.weight_milli)).sum();
    u128::from(participants + 1)
        .checked_mul(u128::from(ratio_lcm(protocol)))
        .and_then(|x| x.checked_mul(x))
        .and_then(|x| x.checked_mul(k * k))
        .and_then(|x| x.checked_mul(weights))
        .is_some()
}

/// Pocock–Simon minimisation in exact integer arithmetic (Pocock & Simon,
/// Biometrics 1975). For each candidate arm k and factor f, the counts at the
/// participant's level with k added are scaled to `count × (L / ratio)` (L the
/// lcm of the ratios, so unequal ratios compare fairly); the factor's imbalance
/// is their range, or K·Σx² − (Σx)² (K² × the population variance); the score is
/// Σ weight_milli × imbalance. Each factor is counted exactly once.
fn minimise(
    protocol: &Protocol,
    seed: &[u8; 32],
    state: &State,
    levels: &[usize],
    imbalance: Imbalance,
    p_millionths: u32,
) -> (Detail, usize) {
    let arms = protocol.arms.len();
    let lcm = ratio_lcm(protocol);
    let scale: Vec<u128> = protocol.arms.iter().map(|a| u128::from(lcm / u64::from(a.ratio))).collect();
    let scores: Vec<u128> = (0..arms)
        .map(|k| {
            protocol
                .factors
                .iter()
                .enumerate()
                .map(|(f, factor)| {
                    let counts = &state.counts[f][levels[f]];
                    let x: Vec<u128> =
                        (0..arms).map(|a| (u128::from(counts[a]) + u128::from(a == k)) * scale[a]).collect();
                    let imb = match imbalance {
                        Imbalance::Range => x.iter().max().unwrap() - x.iter().min().unwrap(),
                        Imbalance::Variance => {
                            let sum: u128 = x.iter().sum();
                            let sq: u128 = x.iter().map(|v| v * v).sum();
                            arms as u128 * sq - sum * sum
                        }
                    };
                    u128::from(factor.weight_milli) * imb
                })
                .sum()
        })
        .collect();
    let best = *scores.iter().min().expect("at least two arms");
    let preferred: Vec<usize> = (0..arms).filter(|&k| scores[k] == best).collect();
    let others: Vec<usize> = (0..arms).filter(|&k| scores[k] != best).collect();

    let mut s = Stream::open(seed, "minimisation", state.next_word);
    let word_start = state.next_word;
    let (set, draw_p) = if others.is_empty() {
        (&preferred, None)
    } else {
        let r = s.below(1_000_000);
        if r < p_millionths { (&preferred, Some(r)) } else { (&others, Some(r)) }
    };
    let (arm, draw_arm) = if set.len() == 1 {
        (set[0], None)
    } else {
        let weights: Vec<u32> = set.iter().map(|&k| protocol.arms[k].ratio).collect();
        let total: u32 = weights.iter().sum();
        let r = s.below(total);
        let mut acc = 0;
        let mut chosen = set[set.len() - 1];
        for (i, w) in weights.iter().enumerate() {
            acc += w;
            if r < acc {
                chosen = set[i];
                break;
            }
        }
        (chosen, Some(r))
    };
    let detail = Detail::Minimisation {
        stream: "minimisation".into(),
        word_start,
        word_end: s.word_pos(),
        scores,
        preferred,
        draw_p,
        draw_arm,
    };
    (detail, arm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn load(name: &str) -> Protocol {
        Protocol::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol").join(name)).unwrap()
    }

    fn run(protocol: &Protocol, seed: &[u8; 32], levels: &[Vec<usize>]) -> Vec<Allocation> {
        let mut state = State::new(protocol);
        levels
            .iter()
            .map(|l| {
                let a = allocate(protocol, seed, &state, l);
                state.record(&a);
                a
            })
            .collect()
    }

    proptest::proptest! {
        /// Allocating with the blocks kept from earlier allocations gives what
        /// generating every block afresh gives, for every method, and a cache
        /// that served another seed serves this one correctly.
        #[test]
        fn kept_blocks_allocate_as_fresh_ones(
            file in proptest::sample::select(vec!["work-health-ips.toml", "example-minimisation.toml", "example-simple-2to1.toml"]),
            seeds in proptest::collection::vec(0u8..4, 1..4),
            strata in proptest::collection::vec((0usize..9, 0usize..2, 0usize..3), 1..120),
        ) {
            let p = load(file);
            let mut blocks = Blocks::default();
            for seed in seeds {
                let seed = [seed; 32];
                let mut state = State::new(&p);
                for &(a, b, c) in &strata {
                    let levels: Vec<usize> =
                        [a, b, c].iter().zip(&p.factors).map(|(&l, f)| l % f.levels.len()).collect();
                    let fresh = allocate(&p, &seed, &state, &levels);
                    proptest::prop_assert_eq!(&allocate_with(&p, &seed, &state, &levels, &mut blocks), &fresh);
                    state.record(&fresh);
                }
            }
        }
    }

    #[test]
    fn kept_blocks_do_not_show_in_debug_output() {
        let p = load("work-health-ips.toml");
        let mut blocks = Blocks::default();
        let seed = [0xab; 32];
        let state = State::new(&p);
        allocate_with(&p, &seed, &state, &[0, 0, 0], &mut blocks);
        let shown = format!("{blocks:?}");
        assert_eq!(shown, "Blocks { streams: 1, .. }");
    }

    #[test]
    fn a_block_holds_each_arm_in_ratio() {
        let p = load("work-health-ips.toml");
        for start in 0..50 {
            let (b, end) = generate_block(&p, &[3; 32], "blocks/x", start * 7);
            assert!([2, 4, 6].contains(&b.len()));
            assert_eq!(b.iter().filter(|&&a| a == 0).count() * 2, b.len());
            assert!(end > start * 7);
        }
    }

    #[test]
    fn running_imbalance_never_exceeds_half_the_largest_block() {
        let p = load("work-health-ips.toml");
        let levels: Vec<Vec<usize>> = (0..3000).map(|i| vec![i % 9, (i / 9) % 2, (i / 18) % 3]).collect();
        let allocs = run(&p, &[9; 32], &levels);
        let mut diff: HashMap<Vec<usize>, i64> = HashMap::new();
        for a in &allocs {
            let d = diff.entry(a.levels.clone()).or_default();
            *d += if a.arm == 0 { 1 } else { -1 };
            assert!(d.abs() <= 3, "imbalance {d} in stratum {:?}", a.levels);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_allocations_and_another_seed_does_not() {
        let p = load("work-health-ips.toml");
        let levels: Vec<Vec<usize>> = (0..200).map(|i| vec![i % 9, 0, i % 3]).collect();
        let a = run(&p, &[1; 32], &levels);
        assert_eq!(a, run(&p, &[1; 32], &levels));
        assert_ne!(a, run(&p, &[2; 32], &levels));
    }

    /// Scores are exact only within 128 bits; `init` refuses ratios whose
    /// least common multiple could overflow them (six arms with coprime ratios).
    #[test]
    fn scores_fit_for_usual_ratios_and_not_for_six_coprime_ones() {
        let mut p = load("example-minimisation.toml");
        assert!(scores_fit(&p, MINIMISATION_PARTICIPANTS));
        p.arms[0].ratio = 100;
        p.arms[1].ratio = 99;
        assert!(scores_fit(&p, MINIMISATION_PARTICIPANTS));
        let arm = p.arms[0].clone();
        p.arms = [97, 89, 83, 79, 73, 71].iter().map(|&r| crate::protocol::Arm { ratio: r, ..arm.clone() }).collect();
        assert!(!scores_fit(&p, MINIMISATION_PARTICIPANTS));
    }

    #[test]
    fn minimisation_with_p_zero_still_allocates_validly() {
        let mut p = load("example-minimisation.toml");
        p.method = Method::Minimisation { imbalance: Imbalance::Range, p_millionths: 0 };
        let levels: Vec<Vec<usize>> = (0..100).map(|i| vec![i % 3, i % 3, i % 2]).collect();
        for a in run(&p, &[5; 32], &levels) {
            assert!(a.arm < 2);
            if let Detail::Minimisation { preferred, .. } = &a.detail {
                if preferred.len() == 1 {
                    assert_ne!(a.arm, preferred[0], "p = 0 never takes the minimising arm");
                }
            }
        }
    }

    #[test]
    fn minimisation_with_p_one_keeps_every_factor_balanced() {
        let mut p = load("example-minimisation.toml");
        p.method = Method::Minimisation { imbalance: Imbalance::Range, p_millionths: 1_000_000 };
        let levels: Vec<Vec<usize>> = (0..300).map(|i| vec![i % 3, (i / 3) % 3, (i / 7) % 2]).collect();
        let allocs = run(&p, &[5; 32], &levels);
        let mut state = State::new(&p);
        for a in &allocs {
            state.record(a);
        }
        for f in &state.counts {
            for level in f {
                assert!((level[0] as i64 - level[1] as i64).abs() <= 2, "{level:?}");
            }
        }
    }

    #[test]
    fn simple_randomisation_follows_the_two_to_one_ratio() {
        let p = load("example-simple-2to1.toml");
        let levels: Vec<Vec<usize>> = (0..6000).map(|i| vec![i % 3]).collect();
        let allocs = run(&p, &[4; 32], &levels);
        let first = allocs.iter().filter(|a| a.arm == 0).count() as f64 / 6000.0;
        assert!((first - 2.0 / 3.0).abs() < 0.03, "share {first}");
    }
}
