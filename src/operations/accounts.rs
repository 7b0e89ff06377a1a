//! Accounts: adding, changing and disabling them, passwords, API tokens and
//! logging in. Account, role, site and token changes are log events (who did
//! it, when, why); password and token hashes are kept only in tables outside
//! the log, and login attempts in the access log (not the chain).
//!
//! CONTRACT (the service codes against these signatures; bodies to come).

use serde::Serialize;

use crate::accounts::{Account, Role};
use crate::clock::{Clock, Timestamp};
use crate::error::{Error, Result};
use crate::ledger::Trial;

/// What adding an account asks.
#[derive(Debug, Clone)]
pub struct AddAccountRequest {
    /// The new account's name.
    pub name: String,
    /// Its roles (at least one).
    pub roles: Vec<Role>,
    /// Its sites (protocol sites; required for a coordinator).
    pub sites: Vec<String>,
    /// The password (checked for length; hashed with argon2id).
    pub password: String,
    /// Why (recorded in the log).
    pub reason: String,
    /// The acting user (an admin's account name, or the command line's user).
    pub user: String,
    /// The clock, read inside the transaction.
    pub clock: Clock,
}

/// What changing an account's roles and sites asks.
#[derive(Debug, Clone)]
pub struct ChangeAccountRequest {
    /// The account.
    pub name: String,
    /// Its roles from now on.
    pub roles: Vec<Role>,
    /// Its sites from now on.
    pub sites: Vec<String>,
    /// Why.
    pub reason: String,
    /// The acting user.
    pub user: String,
    /// The clock.
    pub clock: Clock,
}

/// What disabling an account, or setting its password, asks.
#[derive(Debug, Clone)]
pub struct AccountRequest {
    /// The account.
    pub name: String,
    /// The new password (for [`set_password`]; empty for [`disable_account`]).
    pub password: String,
    /// Why.
    pub reason: String,
    /// The acting user.
    pub user: String,
    /// The clock.
    pub clock: Clock,
}

/// An account as listed (no password, no token hashes).
#[derive(Debug, Clone, Serialize)]
pub struct AccountSummary {
    /// The account.
    #[serde(flatten)]
    pub account: Account,
    /// When it was created (log time).
    pub created_at: String,
    /// Its live tokens (id and expiry; never the token).
    pub tokens: Vec<TokenSummary>,
    /// Locked after failed logins until this time, if it is.
    pub locked_until: Option<String>,
}

/// An API token as listed.
#[derive(Debug, Clone, Serialize)]
pub struct TokenSummary {
    /// The token's public id (its first characters; the rest is secret).
    pub id: String,
    /// Its account.
    pub account: String,
    /// When it expires.
    pub expires_at: String,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// What creating a token asks.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The account the token acts as.
    pub account: String,
    /// Days until it expires.
    pub expires_days: u32,
    /// The acting user.
    pub user: String,
    /// The clock.
    pub clock: Clock,
}

/// A token just created: the only time the token itself is seen.
#[derive(Debug, Clone, Serialize)]
pub struct NewToken {
    /// Its public id.
    pub id: String,
    /// The token to give to the machine (shown once; only its hash is kept).
    pub token: String,
    /// When it expires.
    pub expires_at: String,
}

/// What revoking a token asks.
#[derive(Debug, Clone)]
pub struct RevokeRequest {
    /// The token's public id.
    pub id: String,
    /// Why.
    pub reason: String,
    /// The acting user.
    pub user: String,
    /// The clock.
    pub clock: Clock,
}

/// A login attempt.
#[derive(Debug, Clone)]
pub struct LoginRequest {
    /// The account name typed.
    pub name: String,
    /// The password typed.
    pub password: String,
    /// The client's address (for the access log).
    pub client: String,
    /// The clock.
    pub clock: Clock,
}

fn not_yet() -> Error {
    Error::Refused("accounts are not stored yet".into())
}

/// Adds an account.
pub fn add_account(_trial: &mut Trial, _req: &AddAccountRequest) -> Result<AccountSummary> {
    Err(not_yet())
}

/// Changes an account's roles and sites.
pub fn change_account(_trial: &mut Trial, _req: &ChangeAccountRequest) -> Result<AccountSummary> {
    Err(not_yet())
}

/// Disables an account (its sessions and tokens stop working at once).
pub fn disable_account(_trial: &mut Trial, _req: &AccountRequest) -> Result<AccountSummary> {
    Err(not_yet())
}

/// Sets an account's password (and lifts a lockout).
pub fn set_password(_trial: &mut Trial, _req: &AccountRequest) -> Result<AccountSummary> {
    Err(not_yet())
}

/// Every account.
pub fn list_accounts(_trial: &Trial) -> Result<Vec<AccountSummary>> {
    Err(not_yet())
}

/// The account by that name as it stands now, `None` if there is none.
pub fn account(_trial: &Trial, _name: &str) -> Result<Option<Account>> {
    Err(not_yet())
}

/// Creates an API token for an account.
pub fn create_token(_trial: &mut Trial, _req: &TokenRequest) -> Result<NewToken> {
    Err(not_yet())
}

/// Revokes a token.
pub fn revoke_token(_trial: &mut Trial, _req: &RevokeRequest) -> Result<TokenSummary> {
    Err(not_yet())
}

/// The account a bearer token acts as, if the token is live (known, not
/// revoked, not expired, its account not disabled) at `now`.
pub fn token_account(_trial: &Trial, _token: &str, _now: Timestamp) -> Result<Option<Account>> {
    Err(not_yet())
}

/// Checks a login: the account if the password is right and the account is
/// neither disabled nor locked. Every attempt goes to the access log; the
/// fifth failure in a row locks the account for 15 minutes. A refusal says
/// only "wrong name or password" or "locked until …", never which of name and
/// password was wrong.
pub fn login(_trial: &mut Trial, _req: &LoginRequest) -> Result<Account> {
    Err(not_yet())
}
