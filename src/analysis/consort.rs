//! Section 1, the CONSORT flow: referrals screened, ineligible (by failed
//! rule), declined and randomised, and per arm who was allocated, received
//! the intervention, withdrew, was lost or died, was followed up at each
//! timepoint and was analysed for each outcome.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Arms;
use crate::dataset::{Dataset, ParticipantRecord, ParticipantStatus};

/// The CONSORT flow.
#[derive(Debug, Clone, Serialize)]
pub struct Consort {
    /// Referrals screened.
    pub screened: usize,
    /// Screened out.
    pub ineligible: usize,
    /// Screened out, per failed rule (a referral may fail several).
    pub ineligible_by_reason: BTreeMap<String, usize>,
    /// Declined consent.
    pub declined: usize,
    /// Randomised.
    pub randomised: usize,
    /// Per arm, in protocol order.
    pub arms: Vec<ConsortArm>,
}

/// One arm's column of the CONSORT flow.
#[derive(Debug, Clone, Serialize)]
pub struct ConsortArm {
    /// Arm id.
    pub arm: String,
    /// Allocated.
    pub allocated: usize,
    /// Received the intervention (take-up measure > 0), if the protocol has one.
    pub received_intervention: Option<usize>,
    /// Withdrew, with reasons.
    pub withdrawn: usize,
    /// Lost to follow-up.
    pub lost: usize,
    /// Died.
    pub died: usize,
    /// Reasons given for withdrawal, loss and death, with counts.
    pub reasons: BTreeMap<String, usize>,
    /// Participants with any data at each timepoint, in protocol order.
    pub followed_up: Vec<TimepointCount>,
    /// Participants analysed (outcome present) for each analysed outcome, in
    /// report order (the primary outcome first).
    pub analysed: Vec<OutcomeCount>,
}

/// Participants followed up at one timepoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimepointCount {
    /// Timepoint id, e.g. `m12`.
    pub timepoint: String,
    /// Participants with any value recorded at it.
    pub n: usize,
}

/// Participants analysed for one outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutcomeCount {
    /// Outcome and timepoint, e.g. `paid_work_13_weeks_m12`.
    pub outcome: String,
    /// Participants with the outcome present.
    pub n: usize,
}

pub(super) fn consort(
    d: &Dataset,
    arms: &Arms,
    take_up: Option<&[Option<bool>]>,
    people: &[&ParticipantRecord],
    analysed: &[(String, Vec<bool>)],
) -> Consort {
    let mut c = Consort {
        screened: d.referrals.len(),
        ineligible: 0,
        ineligible_by_reason: BTreeMap::new(),
        declined: 0,
        randomised: d.participants.len(),
        arms: Vec::new(),
    };
    for r in &d.referrals {
        match r.status.as_str() {
            "ineligible" => {
                c.ineligible += 1;
                for reason in &r.reasons {
                    *c.ineligible_by_reason.entry(reason.clone()).or_default() += 1;
                }
            }
            "declined" => c.declined += 1,
            _ => {}
        }
    }
    // Which timepoints each participant has any value at, from one pass over
    // their keys (sorted by timepoint).
    let timepoints = &d.protocol.timepoints;
    let seen: Vec<Vec<bool>> = d
        .participants
        .iter()
        .map(|r| {
            let mut seen = vec![false; timepoints.len()];
            let mut last: Option<&str> = None;
            for ((tp, _), _) in r.outcomes.iter() {
                if last != Some(tp) {
                    last = Some(tp);
                    for (k, t) in timepoints.iter().enumerate() {
                        seen[k] |= t.id == *tp;
                    }
                }
            }
            seen
        })
        .collect();
    for arm in &d.protocol.arms {
        let in_arm: Vec<usize> = (0..people.len()).filter(|&i| people[i].arm == arm.id).collect();
        let mut a = ConsortArm {
            arm: arm.id.clone(),
            allocated: d.participants.iter().filter(|r| r.arm == arm.id).count(),
            received_intervention: take_up
                .filter(|_| arm.id == arms.intervention || arm.id == arms.control)
                .map(|t| in_arm.iter().filter(|&&i| t[i] == Some(true)).count()),
            withdrawn: 0,
            lost: 0,
            died: 0,
            reasons: BTreeMap::new(),
            followed_up: Vec::new(),
            analysed: analysed
                .iter()
                .map(|(name, has)| OutcomeCount {
                    outcome: name.clone(),
                    n: in_arm.iter().filter(|&&i| has[i]).count(),
                })
                .collect(),
        };
        for r in d.participants.iter().filter(|r| r.arm == arm.id) {
            let reason = match &r.status {
                ParticipantStatus::Active => continue,
                ParticipantStatus::Withdrawn { reason, .. } => {
                    a.withdrawn += 1;
                    format!("withdrawn: {reason}")
                }
                ParticipantStatus::Lost { reason, .. } => {
                    a.lost += 1;
                    format!("lost: {reason}")
                }
                ParticipantStatus::Died { reason, .. } => {
                    a.died += 1;
                    format!("died: {reason}")
                }
            };
            *a.reasons.entry(reason).or_default() += 1;
        }
        a.followed_up = d
            .protocol
            .timepoints
            .iter()
            .enumerate()
            .map(|(k, t)| {
                let n = d.participants.iter().zip(&seen).filter(|(r, seen)| r.arm == arm.id && seen[k]).count();
                TimepointCount { timepoint: t.id.clone(), n }
            })
            .collect();
        c.arms.push(a);
    }
    c
}
