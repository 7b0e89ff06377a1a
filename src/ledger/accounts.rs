//! Accounts and API tokens on a [`Trial`]: each change one transaction
//! appending one log event (`account_created`, `account_changed`,
//! `account_disabled`, `password_set`, `token_created`, `token_revoked`),
//! whose derived rows (`accounts`, `tokens`) `apply` writes through
//! [`apply_account_event`]; the password hash (argon2id) and the token's
//! SHA-256 are written beside the event in the same transaction, to tables
//! the log never sees. Logging in records every attempt in the access log and
//! locks an account after repeated failures.
//!
//! The rules for names, roles, sites and passwords are here too, pure, so
//! that the operations check them before hashing a password or opening a
//! transaction.

use chrono::Duration;

use super::{Trial, append, check_user};
use crate::accounts::{Account, Role};
use crate::allocation::State;
use crate::clock::{Clock, Timestamp};
use crate::error::{Error, Result};
use crate::event::{AccountDisabled, AccountGranted, Event, PasswordSet, TokenCreated, TokenRevoked};
use crate::protocol::Protocol;
use crate::referral::truncate;
use crate::store::{AccountRow, Credential, TokenRow, Tx};

/// The shortest password accepted, in characters.
pub const PASSWORD_MIN_CHARS: usize = 12;
/// The longest password accepted, in characters (hashing is bounded work).
pub const PASSWORD_MAX_CHARS: usize = 1024;
/// The longest account name, in characters.
pub const NAME_MAX_CHARS: usize = 64;
/// An API token's life when none is given, in days.
pub const TOKEN_DAYS_DEFAULT: u32 = 90;
/// The longest life an API token can be given, in days.
pub const TOKEN_DAYS_MAX: u32 = 365;
/// What every API token starts with (then its public id, `_`, its secret).
pub const TOKEN_PREFIX: &str = "chy_";

/// When repeated failed logins lock an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    /// Failures in a row (since the last success or password reset) that lock it.
    pub failures: usize,
    /// Within how many minutes, from the first of them to the last.
    pub window_minutes: i64,
    /// For how many minutes after the last of them it stays locked.
    pub lock_minutes: i64,
}

/// The default: 5 failures within 15 minutes lock the account for 15 minutes.
pub const LOCKOUT: Lockout = Lockout { failures: 5, window_minutes: 15, lock_minutes: 15 };

impl Default for Lockout {
    fn default() -> Lockout {
        LOCKOUT
    }
}

/// Why a login was refused. The messages never say which of the name and
/// the password was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRefusal {
    /// No such account, or the wrong password.
    Wrong,
    /// Too many failures: locked until this time (log format, UTC).
    Locked {
        /// When the lock ends.
        until: String,
    },
    /// The right password for a disabled account.
    Disabled,
}

impl LoginRefusal {
    /// The refusal as one line for the person logging in.
    pub fn message(&self) -> String {
        match self {
            LoginRefusal::Wrong => "wrong name or password".into(),
            LoginRefusal::Locked { until } => {
                format!("too many failed logins: this account is locked until {until} (UTC); try again then")
            }
            LoginRefusal::Disabled => "this account is disabled; ask an administrator".into(),
        }
    }
}

/// Checks an account name: 1 to [`NAME_MAX_CHARS`] ASCII letters, digits,
/// `.`, `_`, `-` or `@`, starting with a letter or digit (an e-mail address
/// fits; a space, which would make the name ambiguous in a log line, does not).
pub fn check_account_name(name: &str) -> std::result::Result<(), String> {
    let shown = truncate(name, 40);
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    let n = name.chars().count();
    if n == 0 || n > NAME_MAX_CHARS {
        return Err(format!("account name {shown:?} is {n} characters long; give 1 to {NAME_MAX_CHARS} with --name"));
    }
    if let Some((i, c)) = name.char_indices().find(|(_, c)| !ok_char(*c)) {
        return Err(format!(
            "account name {shown:?} has {c:?} at character {}; use only letters, digits, '.', '_', '-' and '@' (no spaces)",
            name[..i].chars().count() + 1
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("account name {shown:?} must start with a letter or digit"));
    }
    Ok(())
}

/// Checks a new password's length: at least [`PASSWORD_MIN_CHARS`] characters.
pub fn check_password(password: &str) -> std::result::Result<(), String> {
    let n = password.chars().count();
    if n < PASSWORD_MIN_CHARS {
        return Err(format!(
            "the password is {n} characters long; use at least {PASSWORD_MIN_CHARS} (a phrase of several words is easiest)"
        ));
    }
    if n > PASSWORD_MAX_CHARS {
        return Err(format!("the password is {n} characters long; use at most {PASSWORD_MAX_CHARS}"));
    }
    Ok(())
}

/// An account's roles and sites as the log records them: roles in the
/// order of [`Role::ALL`], sites sorted, none twice. At least one role; a
/// coordinator has at least one site, each the protocol's; nobody else has any.
pub fn grant(
    protocol: &Protocol,
    roles: &[Role],
    sites: &[String],
) -> std::result::Result<(Vec<Role>, Vec<String>), String> {
    let mut roles = roles.to_vec();
    roles.sort();
    roles.dedup();
    let mut sites: Vec<String> = sites.iter().map(|s| s.trim().to_string()).collect();
    sites.sort();
    sites.dedup();
    let known: Vec<&str> = protocol.sites.iter().map(|s| s.id.as_str()).collect();
    if roles.is_empty() {
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
        return Err(format!("give at least one --role ({})", names.join(", ")));
    }
    if let Some(s) = sites.iter().find(|s| !known.contains(&s.as_str())) {
        return Err(format!(
            "there is no site {:?} in the protocol; its sites are {}",
            truncate(s, 40),
            known.join(", ")
        ));
    }
    if roles.contains(&Role::Coordinator) {
        if sites.is_empty() {
            return Err(format!(
                "a coordinator acts only at their own sites: give at least one --site ({})",
                known.join(", ")
            ));
        }
    } else if !sites.is_empty() {
        return Err("only a coordinator is bound to sites: leave out --site, or add --role coordinator".into());
    }
    Ok((roles, sites))
}

fn role_names(roles: &[Role]) -> Vec<String> {
    roles.iter().map(|r| r.name().to_string()).collect()
}

/// Hashes a password with argon2id (the `argon2` crate's defaults, version
/// 19) under a fresh random salt; the PHC string carries salt and parameters.
pub fn hash_password(password: &str) -> Result<String> {
    use argon2::PasswordHasher as _;
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| Error::Refused(format!("no randomness for a password salt: {e}")))?;
    let salt = argon2::password_hash::SaltString::encode_b64(&salt)
        .map_err(|e| Error::Refused(format!("cannot encode a password salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Refused(format!("cannot hash the password: {e}")))
}

/// Whether `password` is the one `phc` was made from (the crate compares in
/// constant time). A stored hash that does not parse matches nothing.
fn password_matches(phc: &str, password: &str) -> bool {
    use argon2::PasswordVerifier as _;
    argon2::password_hash::PasswordHash::new(phc)
        .is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash nobody's password matches, checked when the name typed has no
/// account, so a login takes as long whether or not the name exists.
fn unknown_account_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("no account has this password").unwrap_or_default())
}

/// The end of the lock the failures (oldest first) leave, if they lock:
/// each run of `failures` within `window_minutes` locks until
/// `lock_minutes` after its last, and counting starts again after it.
fn lock_end(failures: &[String], lockout: &Lockout) -> Option<Timestamp> {
    let mut run: Vec<Timestamp> = Vec::new();
    let mut end = None;
    for ts in failures {
        let Ok(t) = Timestamp::parse(ts) else { continue };
        run.push(t);
        if run.len() > lockout.failures {
            run.remove(0);
        }
        if run.len() == lockout.failures
            && lockout.failures > 0
            && t.0 - run[0].0 <= Duration::minutes(lockout.window_minutes)
        {
            end = Some(Timestamp(t.0 + Duration::minutes(lockout.lock_minutes)));
            run.clear();
        }
    }
    end
}

/// An account as its row records it.
pub(crate) fn account_of(row: &AccountRow) -> Account {
    let split = |s: &str| -> Vec<String> { s.split(',').filter(|x| !x.is_empty()).map(str::to_string).collect() };
    Account {
        name: row.name.clone(),
        roles: split(&row.roles).iter().filter_map(|r| Role::parse(r).ok()).collect(),
        sites: split(&row.sites),
        disabled: row.disabled,
    }
}

/// Where `apply` writes the account tables: the live transaction, or
/// verification's replay (a supertrait of `Sink`, so both write them).
pub(crate) trait AccountSink {
    fn account(&self, name: &str) -> Result<Option<AccountRow>>;
    fn put_account(&self, a: &AccountRow) -> Result<()>;
    fn token(&self, id: &str) -> Result<Option<TokenRow>>;
    fn put_token(&self, t: &TokenRow) -> Result<()>;
}

/// The derived rows of an account or token event (docs/SPEC.md §1.1): an
/// event about an account or token that does not exist, an account created
/// twice, a token id used twice or a role no chancery knows cannot be replayed.
pub(crate) fn apply_account_event<S: AccountSink + ?Sized>(tx: &S, seq: u64, ts: &str, event: &Event) -> Result<()> {
    let cannot = |what: String| Error::Integrity(format!("log entry {seq}: {what}"));
    let existing = |name: &str| -> Result<AccountRow> {
        tx.account(name)?.ok_or_else(|| cannot(format!("names account {name:?}, which was never created")))
    };
    let joined = |g: &AccountGranted| -> Result<(String, String)> {
        if let Some(r) = g.roles.iter().find(|r| Role::parse(r).is_err()) {
            return Err(cannot(format!("gives account {:?} the unknown role {r:?}", g.account)));
        }
        Ok((g.roles.join(","), g.sites.join(",")))
    };
    match event {
        Event::AccountCreated(g) => {
            if tx.account(&g.account)?.is_some() {
                return Err(cannot(format!("creates account {:?} a second time", g.account)));
            }
            let (roles, sites) = joined(g)?;
            tx.put_account(&AccountRow {
                name: g.account.clone(),
                roles,
                sites,
                disabled: false,
                created_seq: seq,
                created_at: ts.to_string(),
                password_seq: seq,
                seq,
            })
        }
        Event::AccountChanged(g) => {
            let mut a = existing(&g.account)?;
            (a.roles, a.sites) = joined(g)?;
            a.seq = seq;
            tx.put_account(&a)
        }
        Event::AccountDisabled(d) => {
            let mut a = existing(&d.account)?;
            a.disabled = true;
            a.seq = seq;
            tx.put_account(&a)
        }
        Event::PasswordSet(p) => {
            let mut a = existing(&p.account)?;
            a.password_seq = seq;
            a.seq = seq;
            tx.put_account(&a)
        }
        Event::TokenCreated(t) => {
            existing(&t.account)?;
            if tx.token(&t.token_id)?.is_some() {
                return Err(cannot(format!("creates token {:?} a second time", t.token_id)));
            }
            tx.put_token(&TokenRow {
                token_id: t.token_id.clone(),
                account: t.account.clone(),
                expires_at: t.expires_at.clone(),
                created_seq: seq,
                revoked_seq: None,
                seq,
            })
        }
        Event::TokenRevoked(r) => {
            let mut t = tx
                .token(&r.token_id)?
                .ok_or_else(|| cannot(format!("revokes token {:?}, which was never created", r.token_id)))?;
            t.revoked_seq = Some(seq);
            t.seq = seq;
            tx.put_token(&t)
        }
        _ => Ok(()),
    }
}

/// Appends one account or token event in `tx`, returning its seq and time.
fn append_account_event(
    tx: &Tx,
    protocol: &Protocol,
    event: &Event,
    user: &str,
    clock: Clock,
) -> Result<(u64, String)> {
    let mut head = tx.head()?;
    let now = clock.stamp(head.ts.as_deref())?;
    // Account events touch no allocation state: nothing of it is loaded or written.
    let mut state = State::new(protocol);
    let (seq, _) = append(tx, protocol, &mut state, &mut head, event, user, now)?;
    Ok((seq, now.to_log_text()))
}

fn reason_of(reason: &str) -> Result<String> {
    crate::text::reason("--reason", reason).map_err(|m| Error::Input(format!("{m}; nothing was written")))
}

fn input(m: String) -> Error {
    Error::Input(m)
}

fn unknown_account(name: &str) -> Error {
    Error::Input(format!("there is no account {:?}; check the name (see `chancery user list`)", truncate(name, 40)))
}

/// The account by that name, which must exist and not be disabled.
fn active(tx: &Tx, name: &str) -> Result<AccountRow> {
    let a = tx.account(name)?.ok_or_else(|| unknown_account(name))?;
    if a.disabled {
        return Err(Error::Refused(format!(
            "account {name} is disabled, and a disabled account stays disabled (its history stays in the log); add a new account for the person with `chancery user add`; nothing was written"
        )));
    }
    Ok(a)
}

/// Refuses a change that would leave the trial with no enabled administrator:
/// nobody could then manage accounts, from the pages or the API.
fn keep_an_admin(tx: &Tx, before: &AccountRow, still_admin: bool) -> Result<()> {
    let was_admin = before.roles.split(',').any(|r| r == Role::Admin.name());
    if was_admin && !still_admin && tx.other_active_admins(&before.name)? == 0 {
        return Err(Error::Refused(format!(
            "account {} is the trial's only enabled administrator; add another administrator first, so that someone can still manage accounts; nothing was written",
            before.name
        )));
    }
    Ok(())
}

impl Trial {
    /// Adds an account with its password's hash (see [`hash_password`]).
    #[allow(clippy::too_many_arguments)]
    pub fn add_account(
        &mut self,
        name: &str,
        roles: &[Role],
        sites: &[String],
        phc: &str,
        reason: &str,
        user: &str,
        clock: Clock,
    ) -> Result<AccountRow> {
        check_user(user)?;
        check_account_name(name).map_err(input)?;
        let (roles, sites) = grant(&self.protocol, roles, sites).map_err(input)?;
        let reason = reason_of(reason)?;
        let tx = self.store.transaction()?;
        if let Some(existing) = tx.account_named_alike(name)? {
            // Names that differ only in case would be two accounts people take for one.
            let alike = if existing == name { String::new() } else { format!(" as {existing}") };
            return Err(Error::Refused(format!(
                "account {name} already exists{alike}; choose another --name (or change it with `chancery user change`)"
            )));
        }
        let event = Event::AccountCreated(AccountGranted {
            account: name.to_string(),
            roles: role_names(&roles),
            sites,
            reason,
        });
        let (seq, ts) = append_account_event(&tx, &self.protocol, &event, user, clock)?;
        tx.set_credential(name, &Credential { phc: phc.to_string(), set_seq: seq, set_at: ts })?;
        let row = tx.account(name)?.ok_or_else(|| unknown_account(name))?;
        tx.commit()?;
        Ok(row)
    }

    /// Replaces an account's roles and sites.
    pub fn change_account(
        &mut self,
        name: &str,
        roles: &[Role],
        sites: &[String],
        reason: &str,
        user: &str,
        clock: Clock,
    ) -> Result<AccountRow> {
        check_user(user)?;
        let (roles, sites) = grant(&self.protocol, roles, sites).map_err(input)?;
        let reason = reason_of(reason)?;
        let tx = self.store.transaction()?;
        let before = active(&tx, name)?;
        keep_an_admin(&tx, &before, roles.contains(&Role::Admin))?;
        let (role_text, site_text) = (role_names(&roles).join(","), sites.join(","));
        if before.roles == role_text && before.sites == site_text {
            return Err(Error::Refused(format!(
                "account {name} already has these roles and sites; nothing was written"
            )));
        }
        let event = Event::AccountChanged(AccountGranted {
            account: name.to_string(),
            roles: role_names(&roles),
            sites,
            reason,
        });
        append_account_event(&tx, &self.protocol, &event, user, clock)?;
        let row = tx.account(name)?.ok_or_else(|| unknown_account(name))?;
        tx.commit()?;
        Ok(row)
    }

    /// Disables an account: it can no longer log in, and its tokens stop working.
    pub fn disable_account(&mut self, name: &str, reason: &str, user: &str, clock: Clock) -> Result<AccountRow> {
        check_user(user)?;
        let reason = reason_of(reason)?;
        let tx = self.store.transaction()?;
        let before = active(&tx, name)?;
        keep_an_admin(&tx, &before, false)?;
        let event = Event::AccountDisabled(AccountDisabled { account: name.to_string(), reason });
        append_account_event(&tx, &self.protocol, &event, user, clock)?;
        let row = tx.account(name)?.ok_or_else(|| unknown_account(name))?;
        tx.commit()?;
        Ok(row)
    }

    /// Sets an account's password (its hash, see [`hash_password`]); failed
    /// logins before it no longer count towards a lockout.
    pub fn set_password(
        &mut self,
        name: &str,
        phc: &str,
        reason: &str,
        user: &str,
        clock: Clock,
    ) -> Result<AccountRow> {
        check_user(user)?;
        let reason = reason_of(reason)?;
        let tx = self.store.transaction()?;
        active(&tx, name)?;
        let event = Event::PasswordSet(PasswordSet { account: name.to_string(), reason });
        let (seq, ts) = append_account_event(&tx, &self.protocol, &event, user, clock)?;
        tx.set_credential(name, &Credential { phc: phc.to_string(), set_seq: seq, set_at: ts })?;
        let row = tx.account(name)?.ok_or_else(|| unknown_account(name))?;
        tx.commit()?;
        Ok(row)
    }

    /// Creates an API token for an account, `days` days long, drawing its id
    /// and secret from `random` (the operating system's generator, except in
    /// the specification's test vector). Returns the token's row and the
    /// token itself, `chy_<id>_<secret>`, which is kept nowhere.
    pub fn create_token(
        &mut self,
        account: &str,
        days: u32,
        user: &str,
        clock: Clock,
        random: &mut dyn FnMut(&mut [u8]) -> Result<()>,
    ) -> Result<(TokenRow, String)> {
        use sha2::Digest as _;
        check_user(user)?;
        if !(1..=TOKEN_DAYS_MAX).contains(&days) {
            return Err(Error::Input(format!(
                "--expires-days {days} is out of range; give 1 to {TOKEN_DAYS_MAX} (default {TOKEN_DAYS_DEFAULT})"
            )));
        }
        let tx = self.store.transaction()?;
        active(&tx, account)?;
        // The id is public (it names the token in the log and in lists): 32
        // bits, drawn again in the unlikely case it is taken.
        let mut id = String::new();
        for _ in 0..16 {
            let mut bytes = [0u8; 4];
            random(&mut bytes)?;
            id = hex::encode(bytes);
            if tx.token(&id)?.is_none() {
                break;
            }
        }
        if tx.token(&id)?.is_some() {
            return Err(Error::Refused("no free token id could be drawn; try again".into()));
        }
        let mut secret = [0u8; 32];
        random(&mut secret)?;
        let secret = hex::encode(secret);
        // SHA-256, not argon2: the secret is 256 bits from the operating
        // system's generator, so no guess can find it from its hash however
        // fast the hash is; a slow hash guards low-entropy passwords and here
        // would only slow down every API call.
        let digest = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
        let mut head = tx.head()?;
        let now = clock.stamp(head.ts.as_deref())?;
        let expires_at = Timestamp(now.0 + Duration::days(i64::from(days))).to_log_text();
        let event =
            Event::TokenCreated(TokenCreated { account: account.to_string(), token_id: id.clone(), expires_at });
        let mut state = State::new(&self.protocol);
        append(&tx, &self.protocol, &mut state, &mut head, &event, user, now)?;
        tx.insert_token_secret(&id, &digest)?;
        let row = tx.token(&id)?.ok_or_else(|| Error::Integrity(format!("token {id} was not recorded")))?;
        tx.commit()?;
        Ok((row, format!("{TOKEN_PREFIX}{id}_{secret}")))
    }

    /// Revokes an API token.
    pub fn revoke_token(&mut self, id: &str, reason: &str, user: &str, clock: Clock) -> Result<TokenRow> {
        check_user(user)?;
        let reason = reason_of(reason)?;
        let tx = self.store.transaction()?;
        let t = tx.token(id)?.ok_or_else(|| {
            Error::Input(format!("there is no token {:?}; check the id (see `chancery token list`)", truncate(id, 40)))
        })?;
        if let Some(seq) = t.revoked_seq {
            return Err(Error::Refused(format!(
                "token {id} was already revoked (log entry {seq}); nothing was written"
            )));
        }
        let event = Event::TokenRevoked(TokenRevoked { token_id: id.to_string(), reason });
        append_account_event(&tx, &self.protocol, &event, user, clock)?;
        let row = tx.token(id)?.ok_or_else(|| Error::Integrity(format!("token {id} was not recorded")))?;
        tx.commit()?;
        Ok(row)
    }

    /// The account a bearer token acts as, if the token is live at `now`:
    /// known, its secret's hash the one kept, not revoked, not expired, and
    /// its account not disabled.
    pub fn token_account(&self, token: &str, now: Timestamp) -> Result<Option<Account>> {
        use sha2::Digest as _;
        let Some((id, secret)) = token.trim().strip_prefix(TOKEN_PREFIX).and_then(|t| t.split_once('_')) else {
            return Ok(None);
        };
        if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let Some(kept) = self.store.token_secret(id)? else { return Ok(None) };
        let digest = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
        // Compared without an early exit, so the time taken says nothing of
        // how much of the hash matched.
        let same =
            kept.len() == digest.len() && kept.bytes().zip(digest.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if !same {
            return Ok(None);
        }
        let Some(t) = self.store.token(id)? else { return Ok(None) };
        if t.revoked_seq.is_some() || t.expires_at.as_str() <= now.to_log_text().as_str() {
            return Ok(None);
        }
        match self.store.account(&t.account)? {
            Some(a) if !a.disabled => Ok(Some(account_of(&a))),
            _ => Ok(None),
        }
    }

    /// When the account `name` (or the name typed, if there is no such
    /// account) stops being locked, if it is locked at `now`.
    pub fn locked_until(&self, name: &str, now: Timestamp, lockout: &Lockout) -> Result<Option<Timestamp>> {
        let since = self.store.credential(name)?.map(|c| c.set_at).unwrap_or_default();
        let end = lock_end(&self.store.login_failures_since(name, &since)?, lockout);
        Ok(end.filter(|e| *e > now))
    }

    /// The first half of a login: the password checked against the stored
    /// hash (argon2id, slow on purpose). It only reads, so a service can run
    /// it on a read-only handle, off the writer; [`Trial::record_login`]
    /// then decides and records the attempt in a short write.
    pub fn check_login_password(&self, name: &str, password: &str) -> Result<PasswordCheck> {
        let typed = clean(name);
        let stored = self.store.credential(&typed)?;
        let matches = match &stored {
            Some(c) => password_matches(&c.phc, password),
            None => {
                // As long as for a name that exists, so timing tells nothing.
                password_matches(unknown_account_hash(), password);
                false
            }
        };
        Ok(PasswordCheck { typed, set_seq: stored.map(|c| c.set_seq), matches })
    }

    /// The second half of a login: in one transaction, the account if the
    /// password checked was right (and is still the account's) and the
    /// account is neither locked nor disabled, else why not; the attempt is
    /// recorded in the access log either way (the password never is).
    pub fn record_login(
        &mut self,
        check: &PasswordCheck,
        client: &str,
        clock: Clock,
        lockout: &Lockout,
    ) -> Result<std::result::Result<Account, LoginRefusal>> {
        let typed = check.typed.as_str();
        let client = clean(client);
        let tx = self.store.transaction()?;
        let head = tx.head()?;
        let now = clock.stamp(head.ts.as_deref())?;
        let credential = tx.credential(typed)?;
        // A password set since the check was made: the check is of the old one.
        let matches = check.matches && credential.as_ref().map(|c| c.set_seq) == check.set_seq;
        let since = credential.map(|c| c.set_at).unwrap_or_default();
        let locked = lock_end(&tx.login_failures_since(typed, &since)?, lockout).filter(|end| *end > now);
        let account = tx.account(typed)?;
        let (outcome, result) = match (&account, locked) {
            (_, Some(until)) => ("locked", Err(LoginRefusal::Locked { until: until.to_log_text() })),
            (None, None) => ("wrong", Err(LoginRefusal::Wrong)),
            (Some(a), None) if a.disabled => {
                ("disabled", Err(if matches { LoginRefusal::Disabled } else { LoginRefusal::Wrong }))
            }
            (Some(a), None) if matches => ("ok", Ok(account_of(a))),
            (Some(_), None) => ("wrong", Err(LoginRefusal::Wrong)),
        };
        tx.record_access(&now.to_log_text(), typed, &client, outcome)?;
        tx.commit()?;
        Ok(result)
    }

    /// A login attempt: [`Trial::check_login_password`] then
    /// [`Trial::record_login`], the slow hash before the write lock is taken.
    pub fn login(
        &mut self,
        name: &str,
        password: &str,
        client: &str,
        clock: Clock,
        lockout: &Lockout,
    ) -> Result<std::result::Result<Account, LoginRefusal>> {
        let check = self.check_login_password(name, password)?;
        self.record_login(&check, client, clock, lockout)
    }
}

/// A password checked for a login ([`Trial::check_login_password`]), to be
/// recorded by [`Trial::record_login`]. Made only by the check, so a caller
/// cannot claim a password was right.
#[derive(Debug, Clone)]
pub struct PasswordCheck {
    /// The name as typed, made safe to keep and show.
    typed: String,
    /// Which password the check was against (its setting entry), if any.
    set_seq: Option<u64>,
    /// Whether the password matched it.
    matches: bool,
}

/// Text typed by a person or sent by a client, made safe to keep and show:
/// at most 100 characters, control characters replaced.
fn clean(s: &str) -> String {
    truncate(s, 100).chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> String {
        Timestamp(Timestamp::parse("2026-12-01T09:00:00Z").unwrap().0 + Duration::minutes(minute)).to_log_text()
    }

    #[test]
    fn five_failures_within_fifteen_minutes_lock_for_fifteen_after_the_fifth() {
        let f: Vec<String> = [0, 2, 4, 6, 8].map(at).to_vec();
        assert_eq!(lock_end(&f, &LOCKOUT).map(|t| t.to_log_text()), Some(at(23)));
        // Four are not enough, nor five spread over more than fifteen minutes.
        assert_eq!(lock_end(&f[..4], &LOCKOUT), None);
        assert_eq!(lock_end(&[0, 4, 8, 12, 16].map(at), &LOCKOUT), None);
        // After a lock, counting starts again.
        let mut g = f.clone();
        g.push(at(30));
        assert_eq!(lock_end(&g, &LOCKOUT).map(|t| t.to_log_text()), Some(at(23)));
    }

    #[test]
    fn names_and_passwords_follow_one_rule_each() {
        assert!(check_account_name("alice.smith@nhs.net").is_ok());
        assert!(check_account_name("alice smith").unwrap_err().contains("' ' at character 6"));
        assert!(check_account_name("").unwrap_err().contains("1 to 64"));
        assert!(check_account_name("-x").unwrap_err().contains("start with a letter"));
        assert!(check_password("short").unwrap_err().contains("use at least 12"));
        assert!(check_password("a long enough phrase").is_ok());
    }

    #[test]
    fn passwords_hash_with_argon2id_and_a_fresh_salt() {
        let a = hash_password("correct horse battery").unwrap();
        let b = hash_password("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(password_matches(&a, "correct horse battery"));
        assert!(!password_matches(&a, "correct horse battery!"));
        assert!(!password_matches("not a hash", "x"));
    }
}
