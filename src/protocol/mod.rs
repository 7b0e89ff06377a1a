//! The trial protocol: arms, allocation method, sites, fields, eligibility,
//! follow-up timepoints and outcomes, read from a versioned TOML file.
//!
//! `Protocol::parse` refuses a malformed or inconsistent file with one error
//! naming the file, the line where it can, and the problem. The format is
//! documented in protocol/README.md.
//!
//! # Where each part is
//!
//! - `mod.rs`: [`Protocol`] itself, its arms and sites, and the look-ups
//!   the rest of the code uses (`field`, `outcome`, `regions`, …).
//! - `parse.rs`: reading the file ([`Protocol::load`], [`Protocol::parse`],
//!   [`Protocol::parse_recorded`]): the TOML read into its raw shapes, the
//!   format version, the trial table, arms and sites, then each section
//!   below in turn, with `FILE:LINE:` errors.
//! - `fields.rs`: referral fields ([`Field`], [`Kind`], [`Stage`]), the
//!   identity and consent fields, and the names a factor, rule or analysis
//!   option may read ([`FieldRef`]: the site, its region or a field).
//! - `method.rs`: the allocation method ([`Method`], [`Imbalance`]) and the
//!   stratification or minimisation factors ([`Factor`], [`MAX_STRATA`]).
//! - `eligibility.rs`: eligibility rules ([`Rule`], [`Condition`], [`Op`],
//!   [`Operand`]).
//! - `outcomes.rs`: follow-up timepoints ([`Timepoint`]) and the outcomes
//!   collected at them ([`Outcome`]), one of them primary.
//! - `analysis_plan.rs`: the pre-specified analysis options ([`AnalysisPlan`]).
//! - `design.rs`: the sample-size assumptions ([`Design`]).

mod analysis_plan;
mod design;
mod eligibility;
mod fields;
mod method;
mod outcomes;
mod parse;

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

pub use analysis_plan::AnalysisPlan;
pub use design::Design;
pub use eligibility::{Condition, Op, Operand, Rule};
pub use fields::{Field, FieldRef, Kind, Stage};
pub use method::{Factor, Imbalance, MAX_STRATA, Method, strata_count};
pub use outcomes::{Outcome, Timepoint};

/// The protocol format version this build reads.
pub const PROTOCOL_FORMAT: i64 = 1;

/// A validated trial protocol.
#[derive(Debug, Clone)]
pub struct Protocol {
    /// The protocol file's text, exactly as read (stored in the log's first entry).
    pub text: String,
    /// Trial identifier, e.g. `work-health-ips`.
    pub id: String,
    /// Human-readable title.
    pub title: String,
    /// Registration number (e.g. ISRCTN), if any.
    pub registration: Option<String>,
    /// The trial's time zone (IANA name, e.g. `Europe/London`): the dates
    /// people enter and "today" are calendar dates there; log times stay UTC.
    /// UTC when the protocol names none.
    pub timezone: chrono_tz::Tz,
    /// Arms in declaration order; allocation ratios are integers.
    pub arms: Vec<Arm>,
    /// The allocation method and its parameters.
    pub method: Method,
    /// The stratification (or minimisation) factors, in declaration order.
    pub factors: Vec<Factor>,
    /// Recruiting sites.
    pub sites: Vec<Site>,
    /// Referral fields (screening, consent and baseline), in declaration order.
    pub fields: Vec<Field>,
    /// Indices into `fields` in byte order of the field names: the order in
    /// which a referral's values are recorded.
    pub by_name: Vec<usize>,
    /// Index into `fields` of the identity field used to catch duplicate referrals.
    pub identity: usize,
    /// Index into `fields` of the yes/no consent field.
    pub consent: usize,
    /// Eligibility rules, checked in order; every failing rule is reported.
    pub eligibility: Vec<Rule>,
    /// Follow-up timepoints.
    pub timepoints: Vec<Timepoint>,
    /// Outcomes collected at follow-up.
    pub outcomes: Vec<Outcome>,
    /// The pre-specified analysis plan.
    pub analysis: AnalysisPlan,
    /// The sample-size assumptions for the primary outcome, if the protocol states them.
    pub design: Option<Design>,
}

/// A trial arm.
#[derive(Debug, Clone, PartialEq)]
pub struct Arm {
    /// Identifier, e.g. `ips`.
    pub id: String,
    /// Label, e.g. `Individual Placement and Support`.
    pub label: String,
    /// This arm's share in the allocation ratio.
    pub ratio: u32,
}

/// A recruiting site.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    /// Identifier, e.g. `sheffield`.
    pub id: String,
    /// Label.
    pub label: String,
    /// Region the site belongs to, if the protocol declares regions.
    pub region: Option<String>,
}

impl Protocol {
    /// SHA-256 of the protocol text, as committed in the log.
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(self.text.as_bytes()).into()
    }

    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The site called `id`.
    pub fn site(&self, id: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.id == id)
    }

    /// The arm called `id`.
    pub fn arm(&self, id: &str) -> Option<&Arm> {
        self.arms.iter().find(|a| a.id == id)
    }

    /// The timepoint called `id`.
    pub fn timepoint(&self, id: &str) -> Option<&Timepoint> {
        self.timepoints.iter().find(|t| t.id == id)
    }

    /// The outcome called `name`.
    pub fn outcome(&self, name: &str) -> Option<&Outcome> {
        self.outcomes.iter().find(|o| o.name == name)
    }

    /// The primary outcome, if the protocol declares outcomes.
    pub fn primary_outcome(&self) -> Option<&Outcome> {
        self.outcomes.iter().find(|o| o.primary)
    }

    /// Distinct regions in site order.
    pub fn regions(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in &self.sites {
            if let Some(r) = &s.region
                && !out.contains(r)
            {
                out.push(r.clone());
            }
        }
        out
    }

    /// The names of all fields, for messages.
    pub fn field_names(&self) -> String {
        self.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Arm ids, for messages.
    pub fn arm_ids(&self) -> BTreeSet<&str> {
        self.arms.iter().map(|a| a.id.as_str()).collect()
    }
}
