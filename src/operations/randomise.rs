//! Randomising: one referral or a batch, screened and, where eligible and
//! consenting, allocated, all in one transaction ([`randomise`]).

use serde::Serialize;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::keys::TrialKey;
use crate::ledger::{Confirmation, Trial};
use crate::referral::{self, Referral};
use crate::table_input::CsvOptions;

/// The referrals of one request, each with where it came from (`referral`, or
/// `referrals.csv:4`) for messages. Parsed before the trial is opened.
#[derive(Debug, Clone)]
pub struct Referrals {
    list: Vec<(String, Referral)>,
    batch: bool,
}

impl Referrals {
    /// One referral from its participant id, site and field values, as
    /// (field, value) pairs (field names are trimmed).
    pub fn single(participant: &str, site: &str, values: &[(String, String)]) -> Referrals {
        let values = values.iter().map(|(k, v)| (k.trim().to_string(), v.clone())).collect();
        let r = Referral { participant: participant.to_string(), site: site.to_string(), values };
        Referrals { list: vec![("referral".to_string(), r)], batch: false }
    }

    /// A batch from a CSV file's bytes (`participant,site,<field>…`), in file
    /// order; `name` names the file in messages, `delimiter` is its separator
    /// if not a comma. Every malformed row is reported, and none is kept if
    /// any is bad. The bytes are held to [`crate::bounded::Limits::CSV`] here,
    /// however the front end received them.
    pub fn from_csv(name: &str, bytes: &[u8], delimiter: Option<u8>) -> Result<Referrals> {
        crate::bounded::check(name, bytes, crate::bounded::Limits::CSV)?;
        let list = referral::read_batch_csv(name, bytes, &CsvOptions { delimiter }).map_err(Error::Input)?;
        Ok(Referrals { list, batch: true })
    }

    /// The referrals, each with where it came from.
    pub fn list(&self) -> &[(String, Referral)] {
        &self.list
    }

    /// Whether they came as a batch (a file), however many there are.
    pub fn is_batch(&self) -> bool {
        self.batch
    }
}

/// What [`randomise`] needs besides the trial and its key.
#[derive(Debug, Clone)]
pub struct RandomiseRequest {
    /// The referrals.
    pub referrals: Referrals,
    /// The acting user.
    pub user: String,
    /// The clock (read once, inside the transaction).
    pub clock: Clock,
}

/// What [`randomise`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Randomisation {
    /// Whether the referrals came as a batch.
    pub batch: bool,
    /// One confirmation per referral, in order.
    pub confirmations: Vec<Confirmation>,
    /// How many were randomised.
    pub randomised: usize,
    /// How many were screened out.
    pub ineligible: usize,
    /// How many declined consent.
    pub declined: usize,
}

/// Screens and randomises the referrals in order, in one transaction, with
/// the trial's key: if any is invalid nothing is written and the error lists
/// every bad one.
pub fn randomise(trial: &mut Trial, key: &TrialKey, request: &RandomiseRequest) -> Result<Randomisation> {
    let confirmations = trial.randomise(key, request.referrals.list(), &request.user, request.clock)?;
    let n = |s: &str| confirmations.iter().filter(|c| c.status == s).count();
    Ok(Randomisation {
        batch: request.referrals.is_batch(),
        randomised: n("randomised"),
        ineligible: n("ineligible"),
        declined: n("declined"),
        confirmations,
    })
}
