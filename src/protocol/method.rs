//! The allocation method ([`Method`]: permuted blocks, simple, minimisation
//! with its [`Imbalance`] measure and p) and the stratification or
//! minimisation factors ([`Factor`]), read from `[allocation]`; the bound on
//! the strata a new trial may have ([`MAX_STRATA`]).

use serde::Deserialize;

use super::Arm;
use super::fields::{Declared, FieldRef, Stage};
use super::parse::{Raw, Rules, Where};
use crate::error::Result;

/// The most strata (combinations of factor levels) a protocol may have.
pub const MAX_STRATA: u64 = 100_000;

/// The number of strata the factors make (the product of their levels), or
/// `None` if it does not fit in a `u64`.
pub fn strata_count(factors: &[Factor]) -> Option<u64> {
    factors.iter().try_fold(1u64, |n, f| n.checked_mul(f.levels.len() as u64))
}

/// How participants are allocated to arms.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// Permuted blocks within strata; each block's size is drawn from `block_sizes`.
    PermutedBlocks {
        /// Allowed block sizes, each a multiple of the ratio total.
        block_sizes: Vec<u32>,
    },
    /// Simple randomisation with the allocation ratio.
    Simple,
    /// Pocock–Simon minimisation.
    Minimisation {
        /// How imbalance within one factor level is measured.
        imbalance: Imbalance,
        /// Probability, in millionths, of taking the arm that minimises imbalance.
        p_millionths: u32,
    },
}

impl Method {
    /// The method's name as written in protocol files.
    pub fn name(&self) -> &'static str {
        match self {
            Method::PermutedBlocks { .. } => "permuted_blocks",
            Method::Simple => "simple",
            Method::Minimisation { .. } => "minimisation",
        }
    }
}

/// Imbalance measure for minimisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imbalance {
    /// Largest minus smallest ratio-adjusted count.
    Range,
    /// Population variance of ratio-adjusted counts.
    Variance,
}

/// A stratification or minimisation factor.
#[derive(Debug, Clone, PartialEq)]
pub struct Factor {
    /// What the factor reads.
    pub source: FieldRef,
    /// Its name (`site`, `region` or a field name).
    pub name: String,
    /// Its levels, in declaration order.
    pub levels: Vec<String>,
    /// Weight in the minimisation score (1 unless given).
    pub weight: f64,
    /// The weight in thousandths, as minimisation uses it (exact integer arithmetic).
    pub weight_milli: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAllocation {
    method: String,
    block_sizes: Option<Vec<i64>>,
    #[serde(default)]
    strata: Vec<String>,
    #[serde(default)]
    factors: Vec<RawFactor>,
    imbalance: Option<String>,
    p: Option<f64>,
}

/// A minimisation factor: `{ field = "site", weight = 2.0 }`, or its bare name
/// `"site"`, which means `{ field = "site" }` (weight 1), as in `strata`.
struct RawFactor {
    field: String,
    weight: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFactorTable {
    field: String,
    weight: Option<f64>,
}

impl<'de> Deserialize<'de> for RawFactor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<RawFactor, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawFactor;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a factor name or a table { field = \"name\", weight = w }")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> std::result::Result<RawFactor, E> {
                Ok(RawFactor { field: name.to_string(), weight: None })
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> std::result::Result<RawFactor, M::Error> {
                // Through the table's own derive, so unknown keys are refused by name.
                let t = RawFactorTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(RawFactor { field: t.field, weight: t.weight })
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The `[allocation]` table: the method and the factors, in declaration order.
pub(super) fn method_and_factors(
    raw: &Raw,
    arms: &[Arm],
    d: &Declared,
    identity: usize,
    rules: Rules,
    w: &Where,
) -> Result<(Method, Vec<Factor>)> {
    let fields = d.fields;
    let ra = raw.allocation.get_ref();
    let total_ratio: u32 = arms.iter().map(|a| a.ratio).sum();
    let mut factor_specs: Vec<(String, f64)> = Vec::new();
    let method = match ra.method.as_str() {
        "permuted_blocks" => {
            let sizes = ra
                .block_sizes
                .clone()
                .ok_or_else(|| w.at(&raw.allocation, "permuted_blocks needs `block_sizes`, e.g. [2, 4, 6]"))?;
            if sizes.is_empty() {
                return Err(w.at(&raw.allocation, "block_sizes is empty; give at least one block size"));
            }
            let mut out = Vec::new();
            for s in sizes {
                if s <= 0 || s > 1000 || s % i64::from(total_ratio) != 0 {
                    return Err(w.at(
                        &raw.allocation,
                        format!(
                            "block size {s} is not a positive multiple of the ratio total {total_ratio} (at most 1000)"
                        ),
                    ));
                }
                if out.contains(&(s as u32)) {
                    return Err(w.at(&raw.allocation, format!("block size {s} is listed twice")));
                }
                out.push(s as u32);
            }
            if !ra.factors.is_empty() || ra.imbalance.is_some() || ra.p.is_some() {
                return Err(w.at(
                    &raw.allocation,
                    "factors, imbalance and p belong to minimisation; permuted_blocks uses `strata`",
                ));
            }
            factor_specs.extend(ra.strata.iter().map(|s| (s.clone(), 1.0)));
            Method::PermutedBlocks { block_sizes: out }
        }
        "simple" => {
            if ra.block_sizes.is_some() || !ra.factors.is_empty() || ra.imbalance.is_some() || ra.p.is_some() {
                return Err(w.at(
                    &raw.allocation,
                    "simple randomisation takes only `strata` (used for reporting and analysis)",
                ));
            }
            factor_specs.extend(ra.strata.iter().map(|s| (s.clone(), 1.0)));
            Method::Simple
        }
        "minimisation" => {
            if ra.block_sizes.is_some() || !ra.strata.is_empty() {
                return Err(w.at(&raw.allocation, "minimisation uses `factors`, not `strata` or `block_sizes`"));
            }
            if ra.factors.is_empty() {
                return Err(w.at(
                    &raw.allocation,
                    "minimisation needs at least one factor, e.g. factors = [{ field = \"site\" }]",
                ));
            }
            for f in &ra.factors {
                let weight = f.weight.unwrap_or(1.0);
                if !(weight.is_finite() && (0.001..=1000.0).contains(&weight)) {
                    return Err(w.at(
                        &raw.allocation,
                        format!(
                            "factor {:?} has weight {weight}; a weight must be a number from 0.001 to 1000",
                            f.field
                        ),
                    ));
                }
                factor_specs.push((f.field.clone(), weight));
            }
            let imbalance = match ra.imbalance.as_deref().unwrap_or("range") {
                "range" => Imbalance::Range,
                "variance" => Imbalance::Variance,
                other => {
                    return Err(w.at(
                        &raw.allocation,
                        format!("unknown imbalance measure {other:?} (expected range or variance)"),
                    ));
                }
            };
            let p = ra.p.ok_or_else(|| {
                w.at(
                    &raw.allocation,
                    "minimisation needs `p`, the probability of taking the minimising arm, e.g. p = 0.8",
                )
            })?;
            if !(0.0..=1.0).contains(&p) {
                return Err(w.at(&raw.allocation, format!("p = {p} is not a probability between 0 and 1")));
            }
            if p <= 0.5 && rules == Rules::NewTrial {
                return Err(w.at(
                    &raw.allocation,
                    format!(
                        "p = {p}: minimisation must take the arm that reduces imbalance more often than not \
                         (at p = 0 it always takes another, putting everyone in one arm); use p above 0.5, \
                         usually 0.8, or method = \"simple\""
                    ),
                ));
            }
            let p_millionths = (p * 1_000_000.0).round() as u32;
            Method::Minimisation { imbalance, p_millionths }
        }
        other => {
            return Err(w.at(
                &raw.allocation,
                format!("unknown allocation method {other:?} (expected permuted_blocks, simple or minimisation)"),
            ));
        }
    };
    let mut factors: Vec<Factor> = Vec::new();
    for (name, weight) in factor_specs {
        let source = d.resolve(&name).ok_or_else(|| {
            w.at(&raw.allocation, format!("stratification factor {name:?} names no declared field (nor site/region)"))
        })?;
        if factors.iter().any(|f| f.source == source) {
            return Err(w.at(
                &raw.allocation,
                format!("factor {name:?} is listed twice; each factor may be counted only once"),
            ));
        }
        if let FieldRef::Field(i) = source {
            if fields[i].stage == Stage::Consent || i == identity {
                return Err(w.at(&raw.allocation, format!("{name:?} cannot be a stratification factor")));
            }
            // A factor's level is needed for every randomisation: an optional
            // field (at any stage) could leave it missing.
            if !fields[i].required {
                return Err(w.at(&raw.allocation, format!("factor {name:?} must be a required field: every randomisation needs its level, so drop `required = false`")));
            }
        }
        let levels = d.levels_of(source).ok_or_else(|| {
            w.at(
                &raw.allocation,
                format!("factor {name:?} is not a category field; stratify only on categories, site or region"),
            )
        })?;
        factors.push(Factor { source, name, levels, weight, weight_milli: (weight * 1000.0).round() as u64 });
    }
    if rules == Rules::NewTrial && strata_count(&factors).is_none_or(|n| n > MAX_STRATA) {
        let levels: Vec<String> = factors.iter().map(|f| f.levels.len().to_string()).collect();
        return Err(w.at(
            &raw.allocation,
            format!(
                "the factors' levels ({}) make {} strata, more than the {MAX_STRATA} any trial could fill \
                 (even 100,000 participants would average one a stratum, and a stratum's balance needs several); \
                 use fewer factors or merge levels",
                levels.join(" x "),
                strata_count(&factors).map_or("over 2^64".to_string(), |n| n.to_string()),
            ),
        ));
    }
    Ok((method, factors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Protocol;
    use std::path::Path;

    fn minimisation_with(factors: &str) -> std::result::Result<Protocol, String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/example-minimisation.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let start = text.find("factors = [").unwrap();
        let end = start + text[start..].find("]\n").unwrap() + 2;
        let text = format!("{}factors = [{factors}]\n{}", &text[..start], &text[end..]);
        Protocol::parse("p.toml", &text).map_err(|e| e.to_string())
    }

    /// A factor may be its bare name, as docs/SPEC.md §6 and `strata` allow;
    /// it means `{ field = name }` with weight 1. See: `init` refused `"site"`.
    #[test]
    fn a_bare_factor_name_is_the_factor_with_weight_one() {
        let bare = minimisation_with(r#""site", { field = "condition", weight = 2 }"#).unwrap();
        let table = minimisation_with(r#"{ field = "site" }, { field = "condition", weight = 2.0 }"#).unwrap();
        assert_eq!(bare.factors, table.factors);
        assert_eq!(bare.factors[0].weight_milli, 1000);
        assert_eq!(bare.factors[1].weight_milli, 2000);
        let e = minimisation_with(r#"{ field = "site", wieght = 2 }"#).unwrap_err();
        assert!(e.starts_with("p.toml:") && e.contains("wieght"), "{e}");
        let e = minimisation_with("3").unwrap_err();
        assert!(e.contains("a factor name or a table"), "{e}");
    }

    /// Weights and p become integers as docs/SPEC.md §6.4 states: the binary64
    /// value of the decimal, times 1000 (or 1,000,000) in binary64, rounded to the
    /// nearest integer with halves away from zero.
    #[test]
    fn weights_and_p_round_as_the_specification_states() {
        for (weight, milli) in [("0.0125", 13), ("0.0025", 3), ("0.5005", 500), ("1.0005", 1001), ("0.001", 1)] {
            let p = minimisation_with(&format!(r#"{{ field = "site", weight = {weight} }}"#)).unwrap();
            assert_eq!(p.factors[0].weight_milli, milli, "weight {weight}");
        }
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/example-minimisation.toml");
        let text = std::fs::read_to_string(path).unwrap();
        // p must be above 0.5 (init refuses less); 0.5000315 is just below a tie in binary64.
        for (p, millionths) in [("0.8000005", 800_001), ("0.5000315", 500_031), ("1", 1_000_000), ("0.51", 510_000)] {
            let t = text.replace("p = 0.8\n", &format!("p = {p}\n"));
            let got = Protocol::parse("p.toml", &t).unwrap().method;
            assert_eq!(got, Method::Minimisation { imbalance: Imbalance::Range, p_millionths: millionths }, "p {p}");
        }
    }

    /// A factor's level is needed for every randomisation; an optional baseline
    /// field as a factor could be missing. See: it passed validation and
    /// randomising without it panicked.
    #[test]
    fn an_optional_field_cannot_be_a_factor() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/example-minimisation.toml");
        let text = std::fs::read_to_string(path).unwrap().replace(
            "levels = [\"mental_health\", \"msk\", \"both\"]\n",
            "levels = [\"mental_health\", \"msk\", \"both\"]\nstage = \"baseline\"\nrequired = false\n",
        );
        let e = Protocol::parse("p.toml", &text).unwrap_err().to_string();
        assert!(e.contains("factor \"condition\" must be a required field"), "{e}");
    }
}
