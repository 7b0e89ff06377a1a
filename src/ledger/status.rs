//! [`Trial::status`]: the counts by status, arm, site and stratum, and the
//! log head.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Trial;
use crate::error::Result;

/// Counts for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Trial id.
    pub trial: String,
    /// Allocation method.
    pub method: String,
    /// `random`, or `given` for a demonstration seed.
    pub key_origin: String,
    /// Referrals screened.
    pub screened: u64,
    /// Screened out.
    pub ineligible: u64,
    /// Declined consent.
    pub declined: u64,
    /// Randomised.
    pub randomised: u64,
    /// Randomised per arm (every arm listed).
    pub by_arm: BTreeMap<String, u64>,
    /// Randomised per site and arm.
    pub by_site: BTreeMap<String, BTreeMap<String, u64>>,
    /// Randomised per stratum and arm.
    pub by_stratum: BTreeMap<String, BTreeMap<String, u64>>,
    /// Ineligible referrals per failed rule.
    pub ineligible_by_reason: BTreeMap<String, u64>,
    /// Participants with follow-up data, per timepoint, in protocol order (every timepoint listed).
    pub followed_up: Vec<(String, u64)>,
    /// Participants withdrawn, lost to follow-up or died, per status.
    pub not_active: BTreeMap<String, u64>,
    /// Participants who asked for no further contact and have not consented again.
    pub no_further_contact: u64,
    /// Log length.
    pub log_entries: u64,
    /// Log head hash.
    pub head: String,
}

impl Trial {
    /// Counts by status, arm, site and stratum, and the log head.
    pub fn status(&self) -> Result<Status> {
        let head = self.store.head()?;
        let mut s = Status {
            trial: self.row.trial_id.clone(),
            method: self.protocol.method.name().into(),
            key_origin: self.row.key_origin.clone(),
            screened: 0,
            ineligible: 0,
            declined: 0,
            randomised: 0,
            by_arm: self.protocol.arms.iter().map(|a| (a.id.clone(), 0)).collect(),
            by_site: BTreeMap::new(),
            by_stratum: BTreeMap::new(),
            ineligible_by_reason: BTreeMap::new(),
            followed_up: Vec::new(),
            not_active: BTreeMap::new(),
            no_further_contact: 0,
            log_entries: head.len,
            head: head.hash,
        };
        for r in self.store.referrals()? {
            s.screened += 1;
            match r.status.as_str() {
                "ineligible" => {
                    s.ineligible += 1;
                    for reason in r.reasons.split(',').filter(|x| !x.is_empty()) {
                        *s.ineligible_by_reason.entry(reason.to_string()).or_default() += 1;
                    }
                }
                "declined" => s.declined += 1,
                _ => {}
            }
        }
        let zero: BTreeMap<String, u64> = self.protocol.arms.iter().map(|a| (a.id.clone(), 0)).collect();
        for p in self.store.participants()? {
            s.randomised += 1;
            *s.by_arm.entry(p.arm.clone()).or_default() += 1;
            *s.by_site.entry(p.site.clone()).or_insert_with(|| zero.clone()).entry(p.arm.clone()).or_default() += 1;
            *s.by_stratum.entry(p.stratum.clone()).or_insert_with(|| zero.clone()).entry(p.arm.clone()).or_default() +=
                1;
        }
        // Rows come ordered by participant and timepoint: count each pair once.
        let mut last = (String::new(), String::new());
        let mut by_timepoint: BTreeMap<String, u64> = BTreeMap::new();
        self.store.for_each_outcome_value(|participant, timepoint, _, _, _| {
            if (last.0.as_str(), last.1.as_str()) != (participant, timepoint) {
                last = (participant.to_string(), timepoint.to_string());
                *by_timepoint.entry(last.1.clone()).or_default() += 1;
            }
        })?;
        s.followed_up = self
            .protocol
            .timepoints
            .iter()
            .map(|t| (t.id.clone(), by_timepoint.get(&t.id).copied().unwrap_or(0)))
            .collect();
        for st in self.store.statuses()? {
            s.no_further_contact += u64::from(st.no_further_contact);
            *s.not_active.entry(st.status).or_default() += 1;
        }
        Ok(s)
    }
}
