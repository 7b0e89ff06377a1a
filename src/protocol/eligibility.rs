//! Eligibility rules ([`Rule`]): conditions on screening fields, the site or
//! its region ([`Condition`], [`Op`], [`Operand`]), read from
//! `[[eligibility]]` and checked against the fields' types and levels.

use serde::Deserialize;

use super::fields::{Declared, FieldRef, Kind, Stage};
use super::parse::{Raw, Where, check_id};
use crate::error::Result;

/// A comparison in an eligibility rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Equal to.
    Eq,
    /// Not equal to.
    Ne,
    /// One of a list.
    In,
    /// None of a list.
    NotIn,
    /// At least.
    Ge,
    /// Greater than.
    Gt,
    /// At most.
    Le,
    /// Less than.
    Lt,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "in" => Op::In,
            "not_in" => Op::NotIn,
            "ge" => Op::Ge,
            "gt" => Op::Gt,
            "le" => Op::Le,
            "lt" => Op::Lt,
            _ => return None,
        })
    }

    /// The operator as a symbol, for messages.
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "≠",
            Op::In => "in",
            Op::NotIn => "not in",
            Op::Ge => "≥",
            Op::Gt => ">",
            Op::Le => "≤",
            Op::Lt => "<",
        }
    }
}

/// The right-hand side of a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A number, for `ge`, `gt`, `le`, `lt`, or `eq`/`ne` on numeric fields.
    Number(f64),
    /// A level, for `eq`/`ne` on category fields, the site or the region.
    Level(String),
    /// A list of levels, for `in`/`not_in`.
    Levels(Vec<String>),
}

/// One comparison: `field op value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// What is compared.
    pub field: FieldRef,
    /// How.
    pub op: Op,
    /// With what.
    pub value: Operand,
}

/// An eligibility rule: when every `when` condition holds, `require` must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Identifier, reported as the reason code.
    pub id: String,
    /// Human-readable reason a referral fails this rule.
    pub reason: String,
    /// Conditions under which the rule applies (all must hold); empty means always.
    pub when: Vec<Condition>,
    /// What an eligible referral must satisfy.
    pub require: Condition,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    id: String,
    reason: String,
    #[serde(default)]
    when: Vec<RawCondition>,
    require: RawCondition,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    field: String,
    op: String,
    value: toml::Value,
}

/// The `[[eligibility]]` tables, in declaration order.
pub(super) fn eligibility(raw: &Raw, d: &Declared, w: &Where) -> Result<Vec<Rule>> {
    let fields = d.fields;
    let mut eligibility: Vec<Rule> = Vec::new();
    for r in &raw.eligibility {
        let rr = r.get_ref();
        check_id("rule id", &rr.id).map_err(|m| w.at(r, m))?;
        if eligibility.iter().any(|x| x.id == rr.id) {
            return Err(w.at(r, format!("rule {:?} is declared twice", rr.id)));
        }
        let cond = |c: &RawCondition| -> std::result::Result<Condition, String> {
            let field =
                d.resolve(&c.field).ok_or_else(|| format!("rule {:?} names undeclared field {:?}", rr.id, c.field))?;
            if let FieldRef::Field(i) = field
                && fields[i].stage != Stage::Screening
            {
                return Err(format!(
                    "rule {:?} reads {:?}, which is not a screening field; eligibility is decided before consent and baseline",
                    rr.id, c.field
                ));
            }
            let op = Op::parse(&c.op).ok_or_else(|| {
                format!("rule {:?}: unknown op {:?} (expected eq, ne, in, not_in, ge, gt, le, lt)", rr.id, c.op)
            })?;
            let levels = d.levels_of(field);
            let value = match op {
                Op::In | Op::NotIn => {
                    let list = c
                        .value
                        .as_array()
                        .ok_or_else(|| format!("rule {:?}: op {} needs a list of levels", rr.id, c.op))?;
                    let mut out = Vec::new();
                    for v in list {
                        out.push(
                            v.as_str().ok_or_else(|| format!("rule {:?}: {v} is not a level name", rr.id))?.to_string(),
                        );
                    }
                    Operand::Levels(out)
                }
                _ => match &c.value {
                    toml::Value::Integer(i) => Operand::Number(*i as f64),
                    toml::Value::Float(f) if f.is_finite() => Operand::Number(*f),
                    toml::Value::String(s) => Operand::Level(s.clone()),
                    other => return Err(format!("rule {:?}: value {other} must be a number or a level", rr.id)),
                },
            };
            match (&levels, &value) {
                (Some(ls), Operand::Level(l)) if !matches!(op, Op::Eq | Op::Ne) => {
                    return Err(format!(
                        "rule {:?}: {:?} is a category; compare it with eq, ne, in or not_in, not {} {l:?}",
                        rr.id, c.field, c.op
                    ));
                }
                (Some(ls), Operand::Level(l)) if !ls.contains(l) => {
                    return Err(format!(
                        "rule {:?}: {l:?} is not a level of {:?} (levels: {})",
                        rr.id,
                        c.field,
                        ls.join(", ")
                    ));
                }
                (Some(ls), Operand::Levels(list)) => {
                    if let Some(l) = list.iter().find(|l| !ls.contains(l)) {
                        return Err(format!(
                            "rule {:?}: {l:?} is not a level of {:?} (levels: {})",
                            rr.id,
                            c.field,
                            ls.join(", ")
                        ));
                    }
                }
                (Some(_), Operand::Number(_)) => {
                    return Err(format!(
                        "rule {:?}: {:?} is a category; compare it with a level, not a number",
                        rr.id, c.field
                    ));
                }
                (None, Operand::Level(_) | Operand::Levels(_)) => {
                    return Err(format!("rule {:?}: {:?} is not a category; compare it with a number", rr.id, c.field));
                }
                _ => {}
            }
            if let FieldRef::Field(i) = field
                && matches!(fields[i].kind, Kind::Date | Kind::NhsNumber)
            {
                return Err(format!("rule {:?}: {:?} cannot be used in an eligibility rule", rr.id, c.field));
            }
            Ok(Condition { field, op, value })
        };
        let when = rr.when.iter().map(cond).collect::<std::result::Result<Vec<_>, _>>().map_err(|m| w.at(r, m))?;
        let require = cond(&rr.require).map_err(|m| w.at(r, m))?;
        eligibility.push(Rule { id: rr.id.clone(), reason: rr.reason.clone(), when, require });
    }
    Ok(eligibility)
}
