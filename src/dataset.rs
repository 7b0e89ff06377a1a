//! The analysis dataset: everything the evaluators' analysis reads, as plain
//! values, built from the store by [`crate::ledger::Trial::dataset`].
//!
//! Keeping the analysis on this value (not on SQLite) keeps the statistics
//! pure: values in, estimates out.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use crate::protocol::Protocol;

/// One screened referral (randomised or not), for the CONSORT flow.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferralRecord {
    /// Participant (referral) id.
    pub participant: String,
    /// Site id.
    pub site: String,
    /// `randomised`, `ineligible` or `declined`.
    pub status: String,
    /// Failed eligibility rule ids (ineligible only).
    pub reasons: Vec<String>,
}

/// Where a randomised participant stands in follow-up.
#[derive(Debug, Clone, PartialEq)]
pub enum ParticipantStatus {
    /// In follow-up.
    Active,
    /// Withdrew; `no_further_contact` if they asked for no further data collection.
    Withdrawn {
        /// Why.
        reason: String,
        /// Whether further contact is refused.
        no_further_contact: bool,
        /// When.
        on: NaiveDate,
    },
    /// Lost to follow-up.
    Lost {
        /// Why.
        reason: String,
        /// When.
        on: NaiveDate,
    },
    /// Died.
    Died {
        /// Recorded note.
        reason: String,
        /// When.
        on: NaiveDate,
    },
}

impl ParticipantStatus {
    /// `active`, `withdrawn`, `lost` or `died`.
    pub fn name(&self) -> &'static str {
        match self {
            ParticipantStatus::Active => "active",
            ParticipantStatus::Withdrawn { .. } => "withdrawn",
            ParticipantStatus::Lost { .. } => "lost",
            ParticipantStatus::Died { .. } => "died",
        }
    }
}

/// A current outcome value.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeValue {
    /// Canonical text of the value (as the protocol's type: integer, decimal, level, date).
    pub value: String,
    /// The follow-up date it was collected on.
    pub collected_on: NaiveDate,
}

/// A participant's current outcome values by (timepoint id, outcome name).
pub type Outcomes = BTreeMap<(String, String), OutcomeValue>;

/// One randomised participant.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantRecord {
    /// Participant id.
    pub participant: String,
    /// Site id.
    pub site: String,
    /// Region of the site, if the protocol has regions.
    pub region: Option<String>,
    /// Allocated arm id (intention to treat: always the allocated arm).
    pub arm: String,
    /// Level of each stratification factor as used at randomisation, by factor name.
    pub strata: BTreeMap<String, String>,
    /// Date of randomisation (UTC).
    pub randomised_on: NaiveDate,
    /// Screening and baseline values as recorded at randomisation (canonical text), by field name.
    pub baseline: BTreeMap<String, String>,
    /// Follow-up status.
    pub status: ParticipantStatus,
    /// Current outcome values by (timepoint id, outcome name), corrections applied.
    pub outcomes: Outcomes,
}

/// Everything the analysis reads.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The trial's protocol.
    pub protocol: Protocol,
    /// Every screened referral, in log order.
    pub referrals: Vec<ReferralRecord>,
    /// Every randomised participant, in randomisation order.
    pub participants: Vec<ParticipantRecord>,
    /// The date the data are analysed as of.
    pub as_of: NaiveDate,
}
