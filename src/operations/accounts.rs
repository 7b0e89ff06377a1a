//! Accounts: adding, changing and disabling them, passwords, API tokens and
//! logging in. Account, role, site and token changes are log events (who did
//! it, when, why); password and token hashes are kept only in tables outside
//! the log, and login attempts in the access log (not the chain).
//!
//! CONTRACT: the service codes against these signatures. Added since the
//! first form (nothing changed): [`login_attempt`] (a refused login as data,
//! so a group commit keeps its access-log row), [`check_login_password`] and
//! [`record_login`] (the same in two halves: the slow argon2id check on a
//! read-only handle, off the single writer, then a short write), [`list_accounts_at`],
//! [`list_tokens`], [`access_log`], [`LOCKOUT`] and [`Lockout`].
//!
//! Every write checks its input before it opens a transaction (and before a
//! password is hashed), then appends one log event in one transaction with
//! what goes beside it (the password's argon2id hash, the token's SHA-256,
//! neither ever in the log).

use serde::Serialize;

use crate::accounts::{Account, Role};
use crate::clock::{Clock, Timestamp};
use crate::error::{Error, Result};
use crate::ledger::{self, Trial};
use crate::store::{AccessRow, AccountRow, TokenRow};

pub use crate::ledger::{LOCKOUT, Lockout, LoginRefusal, PasswordCheck, TOKEN_DAYS_DEFAULT, TOKEN_DAYS_MAX};

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

fn checked(r: std::result::Result<(), String>) -> Result<()> {
    r.map_err(Error::Input)
}

/// A new password checked and hashed (argon2id, random salt), before any transaction.
fn hashed(password: &str) -> Result<String> {
    checked(ledger::check_password(password))?;
    ledger::hash_password(password)
}

fn token_summary(t: &TokenRow) -> TokenSummary {
    TokenSummary {
        id: t.token_id.clone(),
        account: t.account.clone(),
        expires_at: t.expires_at.clone(),
        revoked: t.revoked_seq.is_some(),
    }
}

/// An account's summary: its tokens not revoked (and, with `now`, not
/// expired; none for a disabled account), and the end of a lockout (with `now`, only one still running).
fn summary(trial: &Trial, row: &AccountRow, tokens: &[TokenRow], now: Option<Timestamp>) -> Result<AccountSummary> {
    let live = |t: &&TokenRow| {
        !row.disabled
            && t.account == row.name
            && t.revoked_seq.is_none()
            && now.is_none_or(|n| t.expires_at > n.to_log_text())
    };
    // Without a time, any lock that has not been lifted (a lock that has
    // ended is told from one still running by comparing with the time now).
    let since = now.unwrap_or(Timestamp(chrono::DateTime::<chrono::Utc>::MIN_UTC));
    let locked = trial.locked_until(&row.name, since, &LOCKOUT)?;
    Ok(AccountSummary {
        account: ledger::account_of(row),
        created_at: row.created_at.clone(),
        tokens: tokens.iter().filter(live).map(token_summary).collect(),
        locked_until: locked.map(|t| t.to_log_text()),
    })
}

fn summary_of(trial: &Trial, name: &str) -> Result<AccountSummary> {
    let row =
        trial.store().account(name)?.ok_or_else(|| Error::Integrity(format!("account {name} was not recorded")))?;
    summary(trial, &row, &trial.store().tokens()?, None)
}

/// Adds an account.
pub fn add_account(trial: &mut Trial, req: &AddAccountRequest) -> Result<AccountSummary> {
    // Everything that can be checked is, before the password is hashed.
    ledger::check_user(&req.user)?;
    checked(ledger::check_account_name(&req.name))?;
    ledger::grant(trial.protocol(), &req.roles, &req.sites).map_err(Error::Input)?;
    crate::text::reason("--reason", &req.reason).map_err(Error::Input)?;
    let phc = hashed(&req.password)?;
    trial.add_account(&req.name, &req.roles, &req.sites, &phc, &req.reason, &req.user, req.clock)?;
    summary_of(trial, &req.name)
}

/// Changes an account's roles and sites.
pub fn change_account(trial: &mut Trial, req: &ChangeAccountRequest) -> Result<AccountSummary> {
    trial.change_account(&req.name, &req.roles, &req.sites, &req.reason, &req.user, req.clock)?;
    summary_of(trial, &req.name)
}

/// Disables an account (its sessions and tokens stop working at once).
pub fn disable_account(trial: &mut Trial, req: &AccountRequest) -> Result<AccountSummary> {
    trial.disable_account(&req.name, &req.reason, &req.user, req.clock)?;
    summary_of(trial, &req.name)
}

/// Sets an account's password (and lifts a lockout).
pub fn set_password(trial: &mut Trial, req: &AccountRequest) -> Result<AccountSummary> {
    ledger::check_user(&req.user)?;
    crate::text::reason("--reason", &req.reason).map_err(Error::Input)?;
    if trial.store().account(&req.name)?.is_none() {
        return Err(Error::Input(format!(
            "there is no account {:?}; check the name (see `chancery user list`)",
            crate::referral::truncate(&req.name, 40)
        )));
    }
    let phc = hashed(&req.password)?;
    trial.set_password(&req.name, &phc, &req.reason, &req.user, req.clock)?;
    summary_of(trial, &req.name)
}

/// Every account. `locked_until` is any lock not lifted since (by a
/// successful login or a new password), which may have ended:
/// [`list_accounts_at`] gives only locks still running, and only tokens not expired.
pub fn list_accounts(trial: &Trial) -> Result<Vec<AccountSummary>> {
    list(trial, None)
}

/// Every account as it stands at `now`: its live tokens, and its lock if one is running.
pub fn list_accounts_at(trial: &Trial, now: Timestamp) -> Result<Vec<AccountSummary>> {
    list(trial, Some(now))
}

fn list(trial: &Trial, now: Option<Timestamp>) -> Result<Vec<AccountSummary>> {
    let tokens = trial.store().tokens()?;
    trial.store().accounts()?.iter().map(|row| summary(trial, row, &tokens, now)).collect()
}

/// The account by that name as it stands now, `None` if there is none.
pub fn account(trial: &Trial, name: &str) -> Result<Option<Account>> {
    Ok(trial.store().account(name)?.as_ref().map(ledger::account_of))
}

/// Creates an API token for an account.
pub fn create_token(trial: &mut Trial, req: &TokenRequest) -> Result<NewToken> {
    let mut random = |bytes: &mut [u8]| {
        getrandom::fill(bytes).map_err(|e| Error::Refused(format!("no randomness for a token: {e}")))
    };
    token_with(trial, req, &mut random)
}

/// [`create_token`] drawing the token's id and secret from `random`: for the
/// specification's test vector only, whose log must be the same every time.
#[doc(hidden)]
pub fn create_token_with_randomness(
    trial: &mut Trial,
    req: &TokenRequest,
    random: &mut dyn FnMut(&mut [u8]) -> Result<()>,
) -> Result<NewToken> {
    token_with(trial, req, random)
}

fn token_with(
    trial: &mut Trial,
    req: &TokenRequest,
    random: &mut dyn FnMut(&mut [u8]) -> Result<()>,
) -> Result<NewToken> {
    let (row, token) = trial.create_token(&req.account, req.expires_days, &req.user, req.clock, random)?;
    Ok(NewToken { id: row.token_id, token, expires_at: row.expires_at })
}

/// Revokes a token.
pub fn revoke_token(trial: &mut Trial, req: &RevokeRequest) -> Result<TokenSummary> {
    let row = trial.revoke_token(&req.id, &req.reason, &req.user, req.clock)?;
    Ok(token_summary(&row))
}

/// Every token, revoked and expired ones too, in the order they were made.
pub fn list_tokens(trial: &Trial) -> Result<Vec<TokenSummary>> {
    Ok(trial.store().tokens()?.iter().map(token_summary).collect())
}

/// The account a bearer token acts as, if the token is live (known, not
/// revoked, not expired, its account not disabled) at `now`.
pub fn token_account(trial: &Trial, token: &str, now: Timestamp) -> Result<Option<Account>> {
    trial.token_account(token, now)
}

/// Checks a login: the account if the password is right and the account is
/// neither disabled nor locked. Every attempt goes to the access log; the
/// fifth failure in a row locks the account for 15 minutes. A refusal says
/// only "wrong name or password" or "locked until …", never which of name and
/// password was wrong.
///
/// A refusal is an `Err` here, so in a group commit that undoes a refused
/// job, the attempt's access-log row would go with it: a group should call
/// [`login_attempt`], for which a refusal is an `Ok` value.
pub fn login(trial: &mut Trial, req: &LoginRequest) -> Result<Account> {
    login_attempt(trial, req, &LOCKOUT)?.map_err(|r| Error::Refused(r.message()))
}

/// A login attempt under `lockout` ([`LOCKOUT`] by default): `Ok(Ok(account))`
/// logged in, `Ok(Err(refusal))` refused (and recorded), `Err` only when the
/// attempt could not be recorded at all.
pub fn login_attempt(
    trial: &mut Trial,
    req: &LoginRequest,
    lockout: &Lockout,
) -> Result<std::result::Result<Account, LoginRefusal>> {
    trial.login(&req.name, &req.password, &req.client, req.clock, lockout)
}

/// The first half of [`login_attempt`]: checks the password against the
/// stored argon2id hash (tens of milliseconds of work, on purpose) and only
/// reads, so it can run on a read-only [`Trial`] beside the writer.
pub fn check_login_password(trial: &Trial, name: &str, password: &str) -> Result<PasswordCheck> {
    trial.check_login_password(name, password)
}

/// The second half of [`login_attempt`]: a short write that decides (lock,
/// disabled, the password checked still the account's) and records the
/// attempt in the access log. `Ok(Err(refusal))` when refused.
pub fn record_login(
    trial: &mut Trial,
    check: &PasswordCheck,
    client: &str,
    clock: Clock,
    lockout: &Lockout,
) -> Result<std::result::Result<Account, LoginRefusal>> {
    trial.record_login(check, client, clock, lockout)
}

/// The access log (login attempts, oldest first): for an administrator;
/// never exported with the trial's data.
pub fn access_log(trial: &Trial) -> Result<Vec<AccessRow>> {
    trial.store().access_log()
}
