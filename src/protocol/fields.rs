//! Referral fields: their types ([`Kind`]), stages ([`Stage`]) and the
//! `[[fields]]` tables they are read from; the identity and consent fields;
//! and the names a factor, rule or analysis option may read ([`FieldRef`],
//! resolved by [`Declared`]).

use std::collections::HashSet;

use serde::Deserialize;

use super::Site;
use super::parse::{Raw, Where, check_id};
use crate::error::Result;

/// A value a rule or factor can read: the site, its region, or a declared field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldRef {
    /// The referral's site.
    Site,
    /// The region of the referral's site.
    Region,
    /// A declared field, by index.
    Field(usize),
}

/// When a field is collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before eligibility is decided; needed for every referral.
    Screening,
    /// The consent question.
    Consent,
    /// Baseline questionnaire, collected after consent and before allocation.
    Baseline,
}

/// The type of a field or outcome, with its valid range or levels.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A whole number within the bounds.
    Integer {
        /// Smallest valid value.
        min: Option<i64>,
        /// Largest valid value.
        max: Option<i64>,
    },
    /// A decimal number within the bounds.
    Number {
        /// Smallest valid value.
        min: Option<f64>,
        /// Largest valid value.
        max: Option<f64>,
    },
    /// One of a fixed list of levels (`yes_no` is the levels `yes`, `no`).
    Category {
        /// Valid levels in declaration order.
        levels: Vec<String>,
    },
    /// A calendar date, ISO 8601 (YYYY-MM-DD).
    Date,
    /// A UK NHS number: 10 digits with a valid modulus-11 check digit.
    NhsNumber,
}

impl Kind {
    /// The type's name as written in protocol files.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Integer { .. } => "integer",
            Kind::Number { .. } => "number",
            Kind::Category { levels } if is_yes_no(levels) => "yes_no",
            Kind::Category { .. } => "category",
            Kind::Date => "date",
            Kind::NhsNumber => "nhs_number",
        }
    }

    /// A short statement of the valid values, for messages and the codebook.
    pub fn describe(&self) -> String {
        let bound = |min: Option<String>, max: Option<String>| match (min, max) {
            (Some(a), Some(b)) => format!("{a} to {b}"),
            (Some(a), None) => format!("at least {a}"),
            (None, Some(b)) => format!("at most {b}"),
            (None, None) => "any value".to_string(),
        };
        match self {
            Kind::Integer { min, max } => {
                format!("a whole number, {}", bound(min.map(|v| v.to_string()), max.map(|v| v.to_string())))
            }
            Kind::Number { min, max } => {
                format!("a number, {}", bound(min.map(|v| v.to_string()), max.map(|v| v.to_string())))
            }
            Kind::Category { levels } => format!("one of {}", levels.join(", ")),
            Kind::Date => "a date, YYYY-MM-DD".to_string(),
            Kind::NhsNumber => "an NHS number, 10 digits with a valid check digit".to_string(),
        }
    }
}

fn is_yes_no(levels: &[String]) -> bool {
    levels.len() == 2 && levels[0] == "yes" && levels[1] == "no"
}

/// A referral field.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Name used in `--set FIELD=VALUE` and CSV headers.
    pub name: String,
    /// Label for tables.
    pub label: String,
    /// Type and valid values.
    pub kind: Kind,
    /// When it is collected.
    pub stage: Stage,
    /// Unit, e.g. `years`.
    pub unit: Option<String>,
    /// Whether a value must be given (screening and consent fields default to required;
    /// baseline fields are always required of a consenting eligible referral).
    pub required: bool,
    /// Definition for the codebook.
    pub description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNamed {
    field: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawField {
    name: String,
    label: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    stage: Option<String>,
    unit: Option<String>,
    min: Option<toml::Value>,
    max: Option<toml::Value>,
    levels: Option<Vec<String>>,
    required: Option<bool>,
    description: Option<String>,
}

pub(super) fn parse_kind(
    kind: &str,
    min: &Option<toml::Value>,
    max: &Option<toml::Value>,
    levels: &Option<Vec<String>>,
) -> std::result::Result<Kind, String> {
    let int = |v: &Option<toml::Value>, which: &str| -> std::result::Result<Option<i64>, String> {
        match v {
            None => Ok(None),
            Some(toml::Value::Integer(i)) => Ok(Some(*i)),
            Some(other) => Err(format!("{which} of an integer field must be a whole number, not {other}")),
        }
    };
    let num = |v: &Option<toml::Value>, which: &str| -> std::result::Result<Option<f64>, String> {
        match v {
            None => Ok(None),
            Some(toml::Value::Integer(i)) => Ok(Some(*i as f64)),
            Some(toml::Value::Float(f)) if f.is_finite() => Ok(Some(*f)),
            Some(other) => Err(format!("{which} must be a finite number, not {other}")),
        }
    };
    let no_bounds = |k: Kind| -> std::result::Result<Kind, String> {
        if min.is_some() || max.is_some() {
            return Err(format!("a {kind} field takes no min or max"));
        }
        Ok(k)
    };
    let k = match kind {
        "integer" => {
            let (lo, hi) = (int(min, "min")?, int(max, "max")?);
            if let (Some(a), Some(b)) = (lo, hi)
                && a > b
            {
                return Err(format!("min {a} is greater than max {b}"));
            }
            Kind::Integer { min: lo, max: hi }
        }
        "number" => {
            let (lo, hi) = (num(min, "min")?, num(max, "max")?);
            if let (Some(a), Some(b)) = (lo, hi)
                && a > b
            {
                return Err(format!("min {a} is greater than max {b}"));
            }
            Kind::Number { min: lo, max: hi }
        }
        "category" => {
            let levels = levels.clone().ok_or_else(|| "a category field needs `levels`".to_string())?;
            if levels.is_empty() {
                return Err("a category field needs at least one level".into());
            }
            let mut seen = HashSet::new();
            for l in &levels {
                check_id("level", l)?;
                if !seen.insert(l) {
                    return Err(format!("level {l:?} is declared twice"));
                }
            }
            no_bounds(Kind::Category { levels })?
        }
        "yes_no" => {
            if levels.is_some() {
                return Err("a yes_no field takes no levels (they are yes and no)".into());
            }
            no_bounds(Kind::Category { levels: vec!["yes".into(), "no".into()] })?
        }
        "date" => no_bounds(Kind::Date)?,
        "nhs_number" => no_bounds(Kind::NhsNumber)?,
        other => {
            return Err(format!(
                "unknown type {other:?} (expected integer, number, category, yes_no, date or nhs_number)"
            ));
        }
    };
    if levels.is_some() && !matches!(k, Kind::Category { .. }) {
        return Err(format!("a {kind} field takes no levels"));
    }
    Ok(k)
}

/// The names a factor, rule or analysis option may read, as the protocol
/// declares them: `site`, `region` (when the sites have regions) and the
/// fields.
pub(super) struct Declared<'a> {
    pub(super) fields: &'a [Field],
    sites: &'a [Site],
    regions: &'a [String],
    has_regions: bool,
}

impl<'a> Declared<'a> {
    pub(super) fn new(fields: &'a [Field], sites: &'a [Site], regions: &'a [String]) -> Declared<'a> {
        let has_regions = sites.iter().any(|s| s.region.is_some());
        Declared { fields, sites, regions, has_regions }
    }

    pub(super) fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    pub(super) fn resolve(&self, name: &str) -> Option<FieldRef> {
        match name {
            "site" => Some(FieldRef::Site),
            "region" if self.has_regions => Some(FieldRef::Region),
            _ => self.field_index(name).map(FieldRef::Field),
        }
    }

    pub(super) fn levels_of(&self, r: FieldRef) -> Option<Vec<String>> {
        match r {
            FieldRef::Site => Some(self.sites.iter().map(|s| s.id.clone()).collect()),
            FieldRef::Region => Some(self.regions.to_vec()),
            FieldRef::Field(i) => match &self.fields[i].kind {
                Kind::Category { levels } => Some(levels.clone()),
                _ => None,
            },
        }
    }
}

/// The `[[fields]]` tables, in declaration order.
pub(super) fn fields(raw: &Raw, w: &Where) -> Result<Vec<Field>> {
    let mut fields: Vec<Field> = Vec::new();
    for f in &raw.fields {
        let r = f.get_ref();
        check_id("field name", &r.name).map_err(|m| w.at(f, m))?;
        if matches!(r.name.as_str(), "site" | "region" | "participant" | "arm") {
            return Err(w.at(f, format!("{:?} is a reserved name; choose another field name", r.name)));
        }
        if fields.iter().any(|x| x.name == r.name) {
            return Err(w.at(f, format!("field {:?} is declared twice", r.name)));
        }
        let kind =
            parse_kind(&r.kind, &r.min, &r.max, &r.levels).map_err(|m| w.at(f, format!("field {:?}: {m}", r.name)))?;
        let stage = match r.stage.as_deref().unwrap_or("screening") {
            "screening" => Stage::Screening,
            "consent" => Stage::Consent,
            "baseline" => Stage::Baseline,
            other => {
                return Err(w.at(
                    f,
                    format!("field {:?}: unknown stage {other:?} (expected screening, consent or baseline)", r.name),
                ));
            }
        };
        fields.push(Field {
            name: r.name.clone(),
            label: r.label.clone().unwrap_or_else(|| r.name.clone()),
            kind,
            stage,
            unit: r.unit.clone(),
            required: r.required.unwrap_or(true),
            description: r.description.clone(),
        });
    }
    Ok(fields)
}

/// The identity and consent fields, by index into the fields.
pub(super) fn identity_and_consent(raw: &Raw, d: &Declared, w: &Where) -> Result<(usize, usize)> {
    let fields = d.fields;
    let identity = d.field_index(&raw.identity.get_ref().field).ok_or_else(|| {
        w.at(&raw.identity, format!("identity field {:?} is not declared in [[fields]]", raw.identity.get_ref().field))
    })?;
    if fields[identity].stage != Stage::Screening || !fields[identity].required {
        return Err(w.at(&raw.identity, "the identity field must be a required screening field"));
    }
    let consent = d.field_index(&raw.consent.get_ref().field).ok_or_else(|| {
        w.at(&raw.consent, format!("consent field {:?} is not declared in [[fields]]", raw.consent.get_ref().field))
    })?;
    if fields[consent].kind.name() != "yes_no" || fields[consent].stage != Stage::Consent {
        return Err(w.at(&raw.consent, "the consent field must be a yes_no field at stage \"consent\""));
    }
    if let Some(f) = raw
        .fields
        .iter()
        .find(|f| f.get_ref().stage.as_deref() == Some("consent") && f.get_ref().name != fields[consent].name)
    {
        return Err(w.at(f, "only the consent field may have stage \"consent\""));
    }
    Ok((identity, consent))
}
