//! The `allocations` check and the allocation part of `replay`: each
//! allocation record checked to follow the one before it in its stream
//! (without the seed), the stratum label checked against the recorded
//! values, and with the seed each allocation re-derived exactly.

use super::findings::Finding;
use crate::allocation::{self, State};
use crate::event::{AllocationRecord, Randomised};
use crate::ledger;
use crate::protocol::{FieldRef, Protocol};

/// Whether a randomisation's allocation record follows the one before it in
/// its stream, as any allocation must, checked without the seed (docs/SPEC.md
/// §8.1): permuted blocks number from 1 and fill positions 1, 2, … of a block
/// with the same start word, a new block (the next number, position 1, a later
/// start word) beginning only once the last one's positions filled one of the
/// protocol's block sizes; simple randomisation and minimisation use the words
/// that follow the previous participant's. `state` is the state before it.
pub(super) fn record_follows(protocol: &Protocol, state: &State, r: &Randomised) -> std::result::Result<(), String> {
    use crate::protocol::Method;
    match (&protocol.method, &r.allocation) {
        (
            Method::PermutedBlocks { block_sizes },
            AllocationRecord::PermutedBlocks { stream, block, start_word, position },
        ) => {
            let expected = format!("blocks/{}", r.stratum);
            if *stream != expected {
                return Err(format!(
                    "the allocation record names stream {stream:?}, but its stratum's is {expected:?}"
                ));
            }
            let at = format!("block {block} (start word {start_word}) position {position}");
            let max = block_sizes.iter().copied().max().unwrap_or(0);
            if *position > max {
                return Err(format!("{at} is beyond the largest block size, {max}"));
            }
            match state.blocks.get(stream) {
                None if (*block, *start_word, *position) == (1, 0, 1) => Ok(()),
                None => {
                    Err(format!("{at} is the stream's first allocation, which takes block 1 (start word 0) position 1"))
                }
                Some(c) if *block == c.block && *start_word == c.start_word && *position == c.used + 1 => Ok(()),
                Some(c)
                    if *block == c.block + 1
                        && *start_word > c.start_word
                        && *position == 1
                        && block_sizes.contains(&c.used) =>
                {
                    Ok(())
                }
                Some(c) => Err(format!(
                    "{at} does not follow the stream's last allocation, block {} (start word {}) position {}: positions fill a block in turn, and a new block starts (position 1, at a later word) only when the last is full{}",
                    c.block,
                    c.start_word,
                    c.used,
                    if *position <= c.used && *block == c.block { "; this position was already used" } else { "" }
                )),
            }
        }
        (Method::Simple, AllocationRecord::Simple { stream, word_start, word_end })
        | (Method::Minimisation { .. }, AllocationRecord::Minimisation { stream, word_start, word_end, .. }) => {
            let (name, least) =
                if matches!(protocol.method, Method::Simple) { ("simple", 1) } else { ("minimisation", 0) };
            if stream != name {
                return Err(format!("the allocation record names stream {stream:?}, not {name:?}"));
            }
            if *word_start != state.next_word {
                return Err(format!(
                    "the allocation uses words from {word_start}, but the previous allocation's ended at {}: each starts where the last ended",
                    state.next_word
                ));
            }
            if *word_end < word_start.saturating_add(least) {
                return Err(format!("the allocation's words end at {word_end}, before they start ({word_start})"));
            }
            Ok(())
        }
        _ => Err("the allocation record is not of the protocol's method".into()),
    }
}

/// The factor levels the recorded values give, and their stratum label (docs/SPEC.md §6.1).
pub(super) fn stratum_of_values(
    protocol: &Protocol,
    r: &Randomised,
) -> std::result::Result<(Vec<usize>, String), String> {
    let mut levels = Vec::with_capacity(protocol.factors.len());
    for f in &protocol.factors {
        let value = match f.source {
            FieldRef::Site => Some(r.site.clone()),
            FieldRef::Region => protocol.site(&r.site).and_then(|s| s.region.clone()),
            FieldRef::Field(i) => r.values.get(&protocol.fields[i].name).cloned(),
        };
        let level = value
            .as_ref()
            .and_then(|v| f.levels.iter().position(|l| l == v))
            .ok_or_else(|| format!("the recorded values give no level of factor {} ({value:?})", f.name))?;
        levels.push(level);
    }
    let label = allocation::stratum_label(protocol, &levels);
    Ok((levels, label))
}

/// Re-derives one allocation from the seed and the replayed state; `levels`,
/// the factor levels its stratum label names, if known.
pub(super) fn check_allocation(
    protocol: &Protocol,
    seed: &[u8; 32],
    state: &State,
    (seq, r): (u64, &Randomised),
    levels: Option<&[usize]>,
    (blocks, f): (&mut allocation::Blocks, &mut Finding),
) {
    let parsed;
    let levels = match levels {
        Some(l) => l,
        None => match ledger::parse_stratum(protocol, &r.stratum) {
            Ok(l) => {
                parsed = l;
                &parsed
            }
            Err(m) => return f.fail(seq, format!("entry {seq}: {m}")),
        },
    };
    let derived = allocation::allocate_with(protocol, seed, state, levels, blocks);
    let arm = &protocol.arms[derived.arm].id;
    let record = AllocationRecord::from_detail(protocol, &derived.detail);
    if *arm != r.arm {
        f.fail(
            seq,
            format!("entry {seq}: participant {} is recorded in arm {} but the seed gives {arm}", r.participant, r.arm),
        );
    } else if record != r.allocation {
        f.fail(
            seq,
            format!(
                "entry {seq}: participant {}'s allocation record {:?} differs from the one the seed gives {:?}",
                r.participant, r.allocation, record
            ),
        );
    }
}
