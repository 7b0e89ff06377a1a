//! Accounts and roles: who may do what to the trial, and at which sites.
//!
//! An account holds one or more [`Role`]s; a coordinator is bound to sites.
//! [`Account::scope`] answers, for one [`Action`], whether the account may do
//! it and for which sites' participants. The table lives here, beside the
//! trial's other rules, so that every front end (the service's pages and its
//! API, and any later one) asks the same question and gets the same answer.
//!
//! Concealment shapes the table as much as convenience does: the people who
//! recruit (coordinators) and the people who chase outcomes (data managers)
//! never see counts by arm, because with permuted blocks the counts in a
//! stratum tell a recruiter which arm is due next.

use serde::{Deserialize, Serialize};

/// A role an account can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Accounts, checkpoints and the reveal; never randomises.
    Admin,
    /// Randomises, follows up and records outcomes and status changes for the
    /// participants of their own sites.
    Coordinator,
    /// Imports and corrects outcomes across sites.
    DataManager,
    /// The analysis, the report and the exports.
    Evaluator,
    /// Verification, checkpoints and the log export; reads only.
    Auditor,
}

impl Role {
    /// Every role, in the order they are listed.
    pub const ALL: [Role; 5] = [Role::Admin, Role::Coordinator, Role::DataManager, Role::Evaluator, Role::Auditor];

    /// The role's name as written in the log, on the command line and in pages.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Coordinator => "coordinator",
            Role::DataManager => "data_manager",
            Role::Evaluator => "evaluator",
            Role::Auditor => "auditor",
        }
    }

    /// Parses a role name. `Err`: the message, naming the roles there are.
    pub fn parse(s: &str) -> Result<Role, String> {
        Role::ALL.into_iter().find(|r| r.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
            format!("there is no role {:?}; the roles are {}", crate::referral::truncate(s, 40), names.join(", "))
        })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Something a person can ask the trial to do or show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Randomise a referral (at a site).
    Randomise,
    /// See the participants of a site (identifier, site, status, dates; never the arm).
    ViewParticipants,
    /// See the follow-up due list (no arms).
    FollowUpDue,
    /// Record one participant's outcome values at a timepoint.
    RecordOutcome,
    /// Withdraw, re-consent, lost to follow-up, died.
    ChangeStatus,
    /// Import a CSV file of outcomes.
    ImportOutcomes,
    /// Correct a recorded value.
    CorrectOutcome,
    /// The trial's status without counts by arm.
    ViewStatus,
    /// The trial's status with counts by arm.
    ViewStatusByArm,
    /// Export the analysis tables (with arms).
    Export,
    /// Run the analysis.
    Analyse,
    /// The HTML report.
    Report,
    /// Verify the log.
    Verify,
    /// Export the log.
    ExportLog,
    /// Sign and download a checkpoint.
    Checkpoint,
    /// Reveal the seed (closes randomisation).
    Reveal,
    /// Add, change and disable accounts; create and revoke API tokens.
    ManageAccounts,
}

/// For which sites an account may do an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Not at all.
    Denied,
    /// For the trial as a whole (every site).
    AllSites,
    /// Only for these sites' participants.
    Sites(Vec<String>),
}

impl Scope {
    /// Whether the scope covers `site`.
    pub fn covers(&self, site: &str) -> bool {
        match self {
            Scope::Denied => false,
            Scope::AllSites => true,
            Scope::Sites(s) => s.iter().any(|x| x == site),
        }
    }

    /// Whether the action is allowed at all (somewhere).
    pub fn allowed(&self) -> bool {
        !matches!(self, Scope::Denied)
    }
}

/// An account as the trial knows it now: its roles and sites, from the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// The account's name (the user recorded on every entry it writes).
    pub name: String,
    /// Its roles, sorted.
    pub roles: Vec<Role>,
    /// The sites a coordinator is bound to, sorted.
    pub sites: Vec<String>,
    /// Disabled accounts cannot log in or use tokens.
    pub disabled: bool,
}

impl Account {
    /// Whether the account holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// For which sites the account may do `action`.
    pub fn scope(&self, action: Action) -> Scope {
        if self.disabled {
            return Scope::Denied;
        }
        use Action::*;
        let own_sites = || {
            if self.has(Role::Coordinator) && !self.sites.is_empty() {
                Scope::Sites(self.sites.clone())
            } else {
                Scope::Denied
            }
        };
        let all_if = |roles: &[Role]| {
            if roles.iter().any(|r| self.has(*r)) { Scope::AllSites } else { Scope::Denied }
        };
        match action {
            Randomise | RecordOutcome | ChangeStatus => own_sites(),
            ViewParticipants | FollowUpDue => match all_if(&[Role::DataManager]) {
                Scope::Denied => own_sites(),
                all => all,
            },
            ImportOutcomes | CorrectOutcome => all_if(&[Role::DataManager]),
            ViewStatus => all_if(&Role::ALL),
            ViewStatusByArm => all_if(&[Role::Admin, Role::Evaluator, Role::Auditor]),
            Export | Analyse | Report => all_if(&[Role::Evaluator]),
            Verify | ExportLog => all_if(&[Role::Auditor]),
            Checkpoint => all_if(&[Role::Admin, Role::Auditor]),
            Reveal | ManageAccounts => all_if(&[Role::Admin]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(roles: &[Role], sites: &[&str]) -> Account {
        Account {
            name: "a".into(),
            roles: roles.to_vec(),
            sites: sites.iter().map(|s| s.to_string()).collect(),
            disabled: false,
        }
    }

    #[test]
    fn a_coordinator_acts_only_at_their_own_sites() {
        let c = account(&[Role::Coordinator], &["leeds"]);
        assert!(c.scope(Action::Randomise).covers("leeds"));
        assert!(!c.scope(Action::Randomise).covers("sheffield"));
        assert_eq!(c.scope(Action::ViewStatusByArm), Scope::Denied);
        assert_eq!(c.scope(Action::Export), Scope::Denied);
    }

    #[test]
    fn an_admin_never_randomises_and_a_disabled_account_does_nothing() {
        let a = account(&[Role::Admin], &[]);
        assert_eq!(a.scope(Action::Randomise), Scope::Denied);
        assert_eq!(a.scope(Action::ManageAccounts), Scope::AllSites);
        let mut d = account(&Role::ALL, &["leeds"]);
        d.disabled = true;
        assert!(Role::ALL.iter().all(|_| !d.scope(Action::ViewStatus).allowed()));
    }

    #[test]
    fn a_coordinator_without_sites_cannot_randomise() {
        assert_eq!(account(&[Role::Coordinator], &[]).scope(Action::Randomise), Scope::Denied);
    }

    #[test]
    fn role_names_round_trip_and_an_unknown_one_is_named() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.name()), Ok(r));
        }
        assert!(Role::parse("root").unwrap_err().contains("the roles are admin, coordinator"));
    }
}
