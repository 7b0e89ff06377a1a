//! Who is asking: sessions (cookies), API tokens (bearer), the CSRF check on
//! every POST made with a session, the login rate limit, and the [`Caller`]
//! extractor every handler that touches the trial takes.
//!
//! A session id is 32 random bytes, sent only in an HttpOnly, SameSite=Strict
//! cookie (Secure under TLS); the server keeps only its SHA-256, so a memory
//! dump of the sessions cannot be replayed as cookies. Sessions live in memory:
//! a restart logs everyone out. The account behind a session or token is read
//! again on every request, so a disabled account or a changed role takes
//! effect at once.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::accounts::{Account, Action, Scope};
use crate::operations::accounts as op;

use super::error::{ApiError, ApiResult};
use super::state::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "chancery_session";
/// The header an API call made with a session cookie carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field a page's POST carries its CSRF token in.
pub const CSRF_FIELD: &str = "csrf";
/// Login attempts allowed per client address per [`RATE_WINDOW`].
pub const RATE_LIMIT: usize = 10;
/// The window of the login rate limit.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// 32 random bytes from the operating system, as hex.
pub fn random_token() -> ApiResult<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        ApiError::from(crate::error::Error::Integrity(format!("the system's random source failed: {e}")))
    })?;
    Ok(hex::encode(bytes))
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// Equal in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One session as the server keeps it.
#[derive(Debug, Clone)]
struct Session {
    account: String,
    csrf: String,
    created: Instant,
    last_seen: Instant,
}

/// A live session, as the request that presented its cookie sees it.
#[derive(Debug, Clone)]
pub struct SessionRef {
    /// The account's name.
    pub account: String,
    /// The session's CSRF token (to put in forms).
    pub csrf: String,
    id_hash: [u8; 32],
}

/// The sessions, in memory, keyed by the hash of their id.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    /// Starts a session for `account`; returns its id (for the cookie) and
    /// its CSRF token.
    pub fn create(&self, account: &str, now: Instant, limits: (Duration, Duration)) -> ApiResult<(String, String)> {
        let id = random_token()?;
        let csrf = random_token()?;
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| live(s, now, limits));
        map.insert(
            digest(&id),
            Session { account: account.to_string(), csrf: csrf.clone(), created: now, last_seen: now },
        );
        Ok((id, csrf))
    }

    /// The live session with cookie value `id` (touched: its idle time
    /// starts again), or `None`; an expired one is removed.
    pub fn resolve(&self, id: &str, now: Instant, limits: (Duration, Duration)) -> Option<SessionRef> {
        let key = digest(id);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let session = map.get_mut(&key)?;
        if !live(session, now, limits) {
            map.remove(&key);
            return None;
        }
        session.last_seen = now;
        Some(SessionRef { account: session.account.clone(), csrf: session.csrf.clone(), id_hash: key })
    }

    /// Ends a session.
    pub fn end(&self, session: &SessionRef) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(&session.id_hash);
    }

    /// Ends every session of `account` (disabled, or gone).
    pub fn end_account(&self, account: &str) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, s| s.account != account);
    }

    /// How many sessions are held (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn live(s: &Session, now: Instant, (idle, absolute): (Duration, Duration)) -> bool {
    now.saturating_duration_since(s.last_seen) < idle && now.saturating_duration_since(s.created) < absolute
}

/// Failed login attempts per client address in the last [`RATE_WINDOW`], in
/// memory. Only failures count: behind a proxy every user arrives from one
/// address, and a morning's successful logins at nine sites must not lock
/// everyone out; guessing is what the limit is for, and guesses fail.
#[derive(Default)]
pub struct RateLimiter {
    map: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    /// `Err(seconds to wait)` if `client` has failed [`RATE_LIMIT`] times in
    /// the last [`RATE_WINDOW`]; nothing is counted.
    pub fn check(&self, client: &str, now: Instant) -> Result<(), u64> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let Some(q) = map.get_mut(client) else { return Ok(()) };
        while q.front().is_some_and(|t| now.saturating_duration_since(*t) >= RATE_WINDOW) {
            q.pop_front();
        }
        if q.len() >= RATE_LIMIT {
            let oldest = q.front().copied().unwrap_or(now);
            let wait = RATE_WINDOW.saturating_sub(now.saturating_duration_since(oldest));
            return Err(wait.as_secs().max(1));
        }
        Ok(())
    }

    /// Counts a failed attempt from `client`.
    pub fn failed(&self, client: &str, now: Instant) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, q| q.back().is_some_and(|t| now.saturating_duration_since(*t) < RATE_WINDOW));
        }
        map.entry(client.to_string()).or_default().push_back(now);
    }
}

/// How a caller proved who they are.
#[derive(Debug, Clone)]
pub enum Via {
    /// A session cookie (its CSRF token, for the forms of the page).
    Session(SessionRef),
    /// An API token.
    Token,
}

/// The authenticated account behind a request, read afresh from the trial.
/// A handler asks [`Caller::may`] (or `caller.account.scope(...)`) before it
/// does anything.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The account as it stands now.
    pub account: Account,
    /// Session or token.
    pub via: Via,
}

impl Caller {
    /// The account's scope for `action`, or 403 if it has none.
    pub fn may(&self, action: Action) -> ApiResult<Scope> {
        match self.account.scope(action) {
            Scope::Denied => Err(ApiError::forbidden()),
            scope => Ok(scope),
        }
    }

    /// The session's CSRF token (`None` for a token caller).
    pub fn csrf(&self) -> Option<&str> {
        match &self.via {
            Via::Session(s) => Some(&s.csrf),
            Via::Token => None,
        }
    }
}

/// The client's address (for the rate limit and the access log).
pub fn client_address(parts_extensions: &axum::http::Extensions) -> String {
    parts_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip().to_string())
        .unwrap_or_else(|| "local".to_string())
}

/// The bearer token of an `Authorization` header, if it is one.
fn bearer(headers: &HeaderMap) -> Option<ApiResult<String>> {
    let value = headers.get(header::AUTHORIZATION)?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256);
    Some(token.map(str::to_string).ok_or_else(ApiError::unauthenticated))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Caller> {
        if let Some(token) = bearer(&parts.headers) {
            let token = token?;
            let now = state.trial_clock().read();
            let account = state.read(move |t| op::token_account(t, &token, now)).await?;
            return match account {
                Some(account) if !account.disabled => Ok(Caller { account, via: Via::Token }),
                _ => Err(ApiError::unauthenticated()),
            };
        }
        let Some(session) = parts.extensions.get::<SessionRef>().cloned() else {
            return Err(ApiError::unauthenticated());
        };
        let name = session.account.clone();
        match state.read(move |t| op::account(t, &name)).await? {
            Some(account) if !account.disabled => Ok(Caller { account, via: Via::Session(session) }),
            _ => {
                state.sessions().end_account(&session.account);
                Err(ApiError::unauthenticated())
            }
        }
    }
}

/// The session cookie's value in `headers`, if there is one.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_string())
}

/// The `Set-Cookie` value that starts a session.
pub fn session_set_cookie(state: &AppState, id: &str) -> HeaderValue {
    let secure = if state.options().tls() { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/{secure}"))
        .unwrap_or_else(|_| HeaderValue::from_static("chancery_session=; Max-Age=0"))
}

/// The `Set-Cookie` value that ends a session in the browser.
pub fn session_clear_cookie(state: &AppState) -> HeaderValue {
    let secure = if state.options().tls() { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}"))
        .unwrap_or_else(|_| HeaderValue::from_static("chancery_session=; Max-Age=0"))
}

fn session_limits(state: &AppState) -> (Duration, Duration) {
    (state.options().idle, state.options().absolute)
}

/// Logs in through the trial (the access log and the lockout are there),
/// after the per-address rate limit; on success starts a session and
/// returns the account, the session id (for [`session_set_cookie`]) and its
/// CSRF token. A refusal (wrong name or password, a locked or disabled
/// account: the operation's message) is 401, too many attempts 429.
pub async fn log_in(
    state: &AppState,
    name: String,
    password: String,
    client: String,
) -> ApiResult<(Account, String, String)> {
    state.limiter().check(&client, state.clock().now()).map_err(ApiError::too_many)?;
    let limiter_client = client.clone();
    // The slow argon2id check runs on a read-only trial beside the writer;
    // the writer only decides and records the attempt (a short write). A
    // refusal is a value, not an error, so the group commit keeps its
    // access-log row (and the failure count that locks the account).
    let check = state.read(move |t| op::check_login_password(t, &name, &password)).await?;
    let clock = state.trial_clock();
    let account =
        state.write(move |t| op::record_login(t, &check, &client, clock, &op::LOCKOUT)).await?.map_err(|refusal| {
            state.limiter().failed(&limiter_client, state.clock().now());
            ApiError::new(axum::http::StatusCode::UNAUTHORIZED, refusal.message())
        })?;
    let (id, csrf) = state.sessions().create(&account.name, state.clock().now(), session_limits(state))?;
    Ok((account, id, csrf))
}

fn unsafe_method(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Middleware on every route: resolves the session cookie (into the request's
/// extensions, for [`Caller`]) and, on a POST (any unsafe method) made with a
/// live session and no bearer token, requires the session's CSRF token in
/// the `X-CSRF-Token` header or in the form's `csrf` field; 403 without it.
pub async fn sessions_and_csrf(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(session) = session_cookie(request.headers())
        .and_then(|id| state.sessions().resolve(&id, state.clock().now(), session_limits(&state)))
    else {
        return next.run(request).await;
    };
    request.extensions_mut().insert(session.clone());
    if !unsafe_method(request.method()) || request.headers().contains_key(header::AUTHORIZATION) {
        return next.run(request).await;
    }
    if let Some(given) = request.headers().get(CSRF_HEADER) {
        return match given.to_str() {
            Ok(t) if same(t, &session.csrf) => next.run(request).await,
            _ => ApiError::csrf().into_response(),
        };
    }
    let content_type =
        request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let form = content_type.starts_with("application/x-www-form-urlencoded");
    let multipart = content_type.starts_with("multipart/form-data");
    if !form && !multipart {
        return ApiError::csrf().into_response();
    }
    // The form's body is read here (under the route's body limit) to find its
    // csrf field, and handed on unchanged.
    let (parts, body) = request.into_parts();
    // A form is small; a multipart form may carry a CSV file.
    let limit = if form { super::API_BODY_LIMIT } else { super::UPLOAD_BODY_LIMIT };
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return ApiError::too_large(limit).into_response(),
    };
    let token = if form { form_field(&bytes, CSRF_FIELD) } else { multipart_field(&bytes, CSRF_FIELD) };
    match token {
        Some(t) if same(&t, &session.csrf) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        _ => ApiError::csrf().into_response(),
    }
}

/// A field of a URL-encoded form body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    url_decoded_pairs(body).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn url_decoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    fn decode(s: &[u8]) -> String {
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < s.len() => {
                    match u8::from_str_radix(std::str::from_utf8(&s[i + 1..i + 3]).unwrap_or("zz"), 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    body.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|b| *b == b'=') {
            Some(i) => (decode(&p[..i]), decode(&p[i + 1..])),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// A text field of a multipart form body (the part named `name`).
fn multipart_field(body: &[u8], name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\"");
    let text = String::from_utf8_lossy(body);
    let at = text.find(&marker)?;
    let rest = &text[at..];
    let start = rest.find("\r\n\r\n")? + 4;
    let end = rest[start..].find("\r\n")?;
    Some(rest[start..start + end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_expires_when_idle_and_at_its_absolute_limit() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let limits = (Duration::from_secs(60), Duration::from_secs(300));
        let (id, csrf) = sessions.create("ann", t0, limits).unwrap();
        assert_eq!(sessions.resolve(&id, t0 + Duration::from_secs(59), limits).unwrap().csrf, csrf);
        // Kept alive by use, but not past the absolute limit.
        for s in [110, 160, 210, 260] {
            assert!(sessions.resolve(&id, t0 + Duration::from_secs(s), limits).is_some(), "{s}");
        }
        assert!(sessions.resolve(&id, t0 + Duration::from_secs(301), limits).is_none());
        let (id, _) = sessions.create("ann", t0, limits).unwrap();
        assert!(sessions.resolve(&id, t0 + Duration::from_secs(61), limits).is_none());
        assert!(sessions.resolve("not-a-session", t0, limits).is_none());
    }

    #[test]
    fn only_the_hash_of_a_session_id_is_kept() {
        let sessions = Sessions::default();
        let (id, _) = sessions.create("ann", Instant::now(), (Duration::MAX, Duration::MAX)).unwrap();
        let map = sessions.map.lock().unwrap();
        assert!(map.keys().all(|k| hex::encode(k) != id) && map.contains_key(&digest(&id)));
    }

    #[test]
    fn the_rate_limit_allows_ten_failures_a_minute_per_address_and_counts_only_failures() {
        let limiter = RateLimiter::default();
        let t0 = Instant::now();
        // Successful logins are never counted: only `failed` adds to the count.
        for _ in 0..100 {
            assert!(limiter.check("10.0.0.1", t0).is_ok());
        }
        for i in 0..RATE_LIMIT {
            assert!(limiter.check("10.0.0.1", t0 + Duration::from_secs(i as u64)).is_ok());
            limiter.failed("10.0.0.1", t0 + Duration::from_secs(i as u64));
        }
        let wait = limiter.check("10.0.0.1", t0 + Duration::from_secs(20)).unwrap_err();
        assert_eq!(wait, 40);
        assert!(limiter.check("10.0.0.2", t0 + Duration::from_secs(20)).is_ok());
        assert!(limiter.check("10.0.0.1", t0 + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn the_csrf_field_is_found_in_forms_and_multipart_bodies() {
        assert_eq!(form_field(b"name=a&csrf=ab%2Bc+d", "csrf").as_deref(), Some("ab+c d"));
        assert_eq!(form_field(b"name=a", "csrf"), None);
        let mp = b"--x\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nt0k\r\n--x--\r\n";
        assert_eq!(multipart_field(mp, "csrf").as_deref(), Some("t0k"));
    }
}
