//! Accounts' tables: `accounts` and `tokens`, derived from the log's account
//! and token events through `ledger::apply` (so `verify` rebuilds and
//! compares them), and three tables that are not derived from the log and
//! never enter it: `credentials` (each account's argon2id password hash),
//! `token_secrets` (each API token's SHA-256) and `access_log` (every login
//! attempt). Verification knows them as part of the schema and compares none
//! of them with the log; no export reads them.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Store, Tx};
use crate::error::{Error, Result};

/// The accounts' tables (schema 5), created by `init` and by `migrate` from
/// any older schema (an older log holds no account event, so the derived
/// ones start empty).
pub(super) const ACCOUNTS_SCHEMA: &str = "
CREATE TABLE accounts (
    name         TEXT PRIMARY KEY,
    roles        TEXT NOT NULL,
    sites        TEXT NOT NULL,
    disabled     INTEGER NOT NULL,
    created_seq  INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    password_seq INTEGER NOT NULL,
    seq          INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE tokens (
    token_id    TEXT PRIMARY KEY,
    account     TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    created_seq INTEGER NOT NULL,
    revoked_seq INTEGER,
    seq         INTEGER NOT NULL
) WITHOUT ROWID;

-- Not derived from the log, and never in it: the secrets that let people and
-- machines in, and the record of their attempts.
CREATE TABLE credentials (
    account TEXT PRIMARY KEY,
    phc     TEXT NOT NULL,
    set_seq INTEGER NOT NULL,
    set_at  TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE token_secrets (
    token_id TEXT PRIMARY KEY,
    sha256   TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE access_log (
    id      INTEGER PRIMARY KEY,
    ts      TEXT NOT NULL,
    name    TEXT NOT NULL,
    client  TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX access_log_by_name ON access_log (name, outcome, id);
";

/// A row of `accounts`: an account as the log's events leave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    /// The account's name (the key).
    pub name: String,
    /// Its roles, joined by `,` in the order of [`crate::accounts::Role::ALL`].
    pub roles: String,
    /// Its sites, sorted, joined by `,`.
    pub sites: String,
    /// Disabled by an `account_disabled` entry.
    pub disabled: bool,
    /// The `account_created` entry.
    pub created_seq: u64,
    /// Its time.
    pub created_at: String,
    /// The entry that last set its password (`account_created` or `password_set`).
    pub password_seq: u64,
    /// The entry that last changed the row.
    pub seq: u64,
}

/// A row of `tokens`: an API token as the log's events leave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// The token's public id (the key).
    pub token_id: String,
    /// The account it acts as.
    pub account: String,
    /// When it expires (log time format).
    pub expires_at: String,
    /// The `token_created` entry.
    pub created_seq: u64,
    /// The `token_revoked` entry, if it was revoked.
    pub revoked_seq: Option<u64>,
    /// The entry that last changed the row.
    pub seq: u64,
}

/// An account's password hash (`credentials`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The argon2id hash in PHC string form (salt and parameters inside).
    pub phc: String,
    /// The log entry that set it.
    pub set_seq: u64,
    /// That entry's time: failed logins before it no longer count.
    pub set_at: String,
}

const ACCOUNT_COLUMNS: &str = "name, roles, sites, disabled, created_seq, created_at, password_seq, seq";
const TOKEN_COLUMNS: &str = "token_id, account, expires_at, created_seq, revoked_seq, seq";

fn account_of(r: &rusqlite::Row) -> rusqlite::Result<AccountRow> {
    Ok(AccountRow {
        name: r.get(0)?,
        roles: r.get(1)?,
        sites: r.get(2)?,
        disabled: r.get::<_, i64>(3)? != 0,
        created_seq: r.get::<_, i64>(4)? as u64,
        created_at: r.get(5)?,
        password_seq: r.get::<_, i64>(6)? as u64,
        seq: r.get::<_, i64>(7)? as u64,
    })
}

fn token_of(r: &rusqlite::Row) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        token_id: r.get(0)?,
        account: r.get(1)?,
        expires_at: r.get(2)?,
        created_seq: r.get::<_, i64>(3)? as u64,
        revoked_seq: r.get::<_, Option<i64>>(4)?.map(|s| s as u64),
        seq: r.get::<_, i64>(5)? as u64,
    })
}

fn account(c: &Connection, name: &str) -> Result<Option<AccountRow>> {
    c.prepare_cached(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = ?1"))
        .and_then(|mut s| s.query_row([name], account_of).optional())
        .map_err(Error::sqlite("reading an account"))
}

fn token(c: &Connection, id: &str) -> Result<Option<TokenRow>> {
    c.prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE token_id = ?1"))
        .and_then(|mut s| s.query_row([id], token_of).optional())
        .map_err(Error::sqlite("reading a token"))
}

fn credential(c: &Connection, name: &str) -> Result<Option<Credential>> {
    c.prepare_cached("SELECT phc, set_seq, set_at FROM credentials WHERE account = ?1")
        .and_then(|mut s| {
            s.query_row([name], |r| {
                Ok(Credential { phc: r.get(0)?, set_seq: r.get::<_, i64>(1)? as u64, set_at: r.get(2)? })
            })
            .optional()
        })
        .map_err(Error::sqlite("reading a credential"))
}

fn token_secret(c: &Connection, id: &str) -> Result<Option<String>> {
    c.prepare_cached("SELECT sha256 FROM token_secrets WHERE token_id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(Error::sqlite("reading a token"))
}

/// The failed attempts (`wrong`) for `name` after its last successful one and
/// at or after `since`, oldest first: what a lockout is decided from.
fn failures_since(c: &Connection, name: &str, since: &str) -> Result<Vec<String>> {
    c.prepare_cached(
        "SELECT ts FROM access_log WHERE name = ?1 AND outcome = 'wrong' AND ts >= ?2
           AND id > coalesce((SELECT max(id) FROM access_log WHERE name = ?1 AND outcome = 'ok'), 0)
         ORDER BY id",
    )
    .and_then(|mut s| s.query_map(params![name, since], |r| r.get(0))?.collect())
    .map_err(Error::sqlite("reading the access log"))
}

fn all<T>(c: &Connection, sql: &str, f: fn(&rusqlite::Row) -> rusqlite::Result<T>, what: &str) -> Result<Vec<T>> {
    c.prepare(sql).and_then(|mut s| s.query_map([], f)?.collect()).map_err(Error::sqlite(what.to_string()))
}

impl Store {
    /// Every account, by name.
    pub fn accounts(&self) -> Result<Vec<AccountRow>> {
        all(
            &self.conn,
            &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY name"),
            account_of,
            "reading accounts",
        )
    }

    /// The account by that name.
    pub fn account(&self, name: &str) -> Result<Option<AccountRow>> {
        account(&self.conn, name)
    }

    /// Every token, in the order they were created.
    pub fn tokens(&self) -> Result<Vec<TokenRow>> {
        all(&self.conn, &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_seq"), token_of, "reading tokens")
    }

    /// The token with that public id.
    pub fn token(&self, id: &str) -> Result<Option<TokenRow>> {
        token(&self.conn, id)
    }

    /// The SHA-256 (hex) of the token with that public id.
    pub fn token_secret(&self, id: &str) -> Result<Option<String>> {
        token_secret(&self.conn, id)
    }

    /// An account's password hash.
    pub fn credential(&self, name: &str) -> Result<Option<Credential>> {
        credential(&self.conn, name)
    }

    /// The failed login attempts for `name` since its last success, at or after `since`.
    pub fn login_failures_since(&self, name: &str, since: &str) -> Result<Vec<String>> {
        failures_since(&self.conn, name, since)
    }
}

impl Tx<'_> {
    /// The account by that name.
    pub fn account(&self, name: &str) -> Result<Option<AccountRow>> {
        account(self.tx, name)
    }

    /// The token with that public id.
    pub fn token(&self, id: &str) -> Result<Option<TokenRow>> {
        token(self.tx, id)
    }

    /// An account's password hash.
    pub fn credential(&self, name: &str) -> Result<Option<Credential>> {
        credential(self.tx, name)
    }

    /// The failed login attempts for `name` since its last success, at or after `since`.
    pub fn login_failures_since(&self, name: &str, since: &str) -> Result<Vec<String>> {
        failures_since(self.tx, name, since)
    }

    /// An account whose name is `name` but for the case of its letters.
    pub fn account_named_alike(&self, name: &str) -> Result<Option<String>> {
        self.tx
            .prepare_cached("SELECT name FROM accounts WHERE lower(name) = lower(?1) LIMIT 1")
            .and_then(|mut s| s.query_row([name], |r| r.get(0)).optional())
            .map_err(Error::sqlite("reading an account"))
    }

    /// How many accounts other than `name` are enabled and hold the admin role.
    pub fn other_active_admins(&self, name: &str) -> Result<u64> {
        self.tx
            .prepare_cached(
                "SELECT count(*) FROM accounts WHERE disabled = 0 AND name <> ?1 AND ',' || roles || ',' LIKE '%,admin,%'",
            )
            .and_then(|mut s| s.query_row([name], |r| r.get::<_, i64>(0)))
            .map(|n| n as u64)
            .map_err(Error::sqlite("counting administrators"))
    }

    /// Writes (or replaces) an account's row.
    pub fn put_account(&self, a: &AccountRow) -> Result<()> {
        self.tx
            .prepare_cached(&format!(
                "INSERT OR REPLACE INTO accounts ({ACCOUNT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))
            .and_then(|mut s| {
                s.execute(params![
                    a.name,
                    a.roles,
                    a.sites,
                    a.disabled as i64,
                    a.created_seq as i64,
                    a.created_at,
                    a.password_seq as i64,
                    a.seq as i64
                ])
            })
            .map(drop)
            .map_err(Error::sqlite("recording an account"))
    }

    /// Writes (or replaces) a token's row.
    pub fn put_token(&self, t: &TokenRow) -> Result<()> {
        self.tx
            .prepare_cached(&format!("INSERT OR REPLACE INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"))
            .and_then(|mut s| {
                s.execute(params![
                    t.token_id,
                    t.account,
                    t.expires_at,
                    t.created_seq as i64,
                    t.revoked_seq.map(|s| s as i64),
                    t.seq as i64
                ])
            })
            .map(drop)
            .map_err(Error::sqlite("recording a token"))
    }

    /// Sets an account's password hash (replacing the one before).
    pub fn set_credential(&self, name: &str, c: &Credential) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO credentials (account, phc, set_seq, set_at) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![name, c.phc, c.set_seq as i64, c.set_at]))
            .map(drop)
            .map_err(Error::sqlite("recording a password"))
    }

    /// Keeps a new token's SHA-256 (hex).
    pub fn insert_token_secret(&self, id: &str, sha256: &str) -> Result<()> {
        self.tx
            .prepare_cached("INSERT INTO token_secrets (token_id, sha256) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![id, sha256]))
            .map(drop)
            .map_err(Error::sqlite("recording a token"))
    }

    /// Records a login attempt: when, the name typed, the client's address
    /// and the outcome (`ok`, `wrong`, `locked`, `disabled`); never the password.
    pub fn record_access(&self, ts: &str, name: &str, client: &str, outcome: &str) -> Result<()> {
        self.tx
            .prepare_cached("INSERT INTO access_log (ts, name, client, outcome) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut s| s.execute(params![ts, name, client, outcome]))
            .map(drop)
            .map_err(Error::sqlite("recording a login attempt"))
    }
}

/// A row of `access_log`, as the tests and an administrator read it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccessRow {
    /// When.
    pub ts: String,
    /// The name typed.
    pub name: String,
    /// The client's address.
    pub client: String,
    /// `ok`, `wrong`, `locked` or `disabled`.
    pub outcome: String,
}

impl Store {
    /// The access log, oldest first.
    pub fn access_log(&self) -> Result<Vec<AccessRow>> {
        all(
            &self.conn,
            "SELECT ts, name, client, outcome FROM access_log ORDER BY id",
            |r| Ok(AccessRow { ts: r.get(0)?, name: r.get(1)?, client: r.get(2)?, outcome: r.get(3)? }),
            "reading the access log",
        )
    }
}

// The live transaction is where `ledger::apply` writes the account tables.
impl crate::ledger::AccountSink for Tx<'_> {
    fn account(&self, name: &str) -> Result<Option<AccountRow>> {
        Tx::account(self, name)
    }
    fn put_account(&self, a: &AccountRow) -> Result<()> {
        Tx::put_account(self, a)
    }
    fn token(&self, id: &str) -> Result<Option<TokenRow>> {
        Tx::token(self, id)
    }
    fn put_token(&self, t: &TokenRow) -> Result<()> {
        Tx::put_token(self, t)
    }
}
