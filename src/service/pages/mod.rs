//! The service's HTML pages, rendered on the server with maud (templates
//! the compiler checks). No JavaScript and no inline script or style: every
//! page works without JavaScript under `default-src 'self'`, with one small
//! stylesheet ([`layout::STYLE`]) served from [`layout::STYLESHEET`].
//!
//! Each handler asks the account's scope for its action first
//! ([`Viewer::may`]: a 403 page disclosing nothing), then calls the same
//! operation the command line calls: writes through the writer (answered
//! only once committed), reads on a read-only trial. Every POST form
//! carries the session's CSRF token in its hidden `csrf` field (checked by
//! the service's middleware before the handler runs). A signed-out visitor
//! is sent to the login page.
//!
//! - `form.rs`: the randomise form generated from the protocol, and the
//!   submitted form parsed back into the command line's referral.
//! - `layout.rs`: the header, navigation and stylesheet every page shares.
//! - `session.rs`: login, logout, home.
//! - `trial.rs`: randomise, participants, a participant (outcome, status and
//!   correction forms), the follow-up due list, status.
//! - `results.rs`: exports, analysis, report, verification, checkpoint.
//! - `admin.rs`: the accounts page.
//! - `markdown.rs`: the analysis's Markdown as HTML.

pub mod admin;
pub mod form;
pub mod layout;
pub mod markdown;
pub mod results;
pub mod session;
pub mod trial;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};

use crate::accounts::{Action, Scope};
use crate::error::Error;

use super::auth::{Caller, Via};
use super::state::AppState;
use layout::Chrome;

/// Every page's route (the API's are the service's own).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(layout::STYLESHEET, get(stylesheet))
        .route("/login", get(session::login_form).post(session::login))
        .route("/logout", post(session::logout))
        .route("/", get(session::home))
        .route("/randomise", get(trial::randomise_form).post(trial::randomise))
        .route("/participants", get(trial::participants))
        .route("/participants/{id}", get(trial::participant))
        .route("/participants/{id}/outcomes/{timepoint}", post(trial::record_outcome))
        .route("/participants/{id}/status", post(trial::change_status))
        .route("/participants/{id}/corrections", post(trial::correct_outcome))
        .route("/due", get(trial::due))
        .route("/status", get(trial::status))
        .route("/exports", get(results::exports))
        .route("/exports/{file}", get(results::download))
        .route("/analysis", get(results::analysis))
        .route("/report", get(results::report))
        .route("/report.html", get(results::report_file))
        .route("/verify", get(results::verification))
        .route("/checkpoint", get(results::checkpoint_page).post(results::checkpoint))
        .route("/accounts", get(admin::accounts).post(admin::add))
        .route("/accounts/{name}/disable", post(admin::disable))
        .route("/accounts/{name}/password", post(admin::password))
        .route("/accounts/{name}/roles", post(admin::roles))
        .route("/accounts/{name}/tokens", post(admin::create_token))
        .route("/tokens/{id}/revoke", post(admin::revoke_token))
}

/// Every page route's path and method, for tests that walk them all.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/static/style.css"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/"),
    ("GET", "/randomise"),
    ("POST", "/randomise"),
    ("GET", "/participants"),
    ("GET", "/participants/{id}"),
    ("POST", "/participants/{id}/outcomes/{timepoint}"),
    ("POST", "/participants/{id}/status"),
    ("POST", "/participants/{id}/corrections"),
    ("GET", "/due"),
    ("GET", "/status"),
    ("GET", "/exports"),
    ("GET", "/exports/{file}"),
    ("GET", "/analysis"),
    ("GET", "/report"),
    ("GET", "/report.html"),
    ("GET", "/verify"),
    ("GET", "/checkpoint"),
    ("POST", "/checkpoint"),
    ("GET", "/accounts"),
    ("POST", "/accounts"),
    ("POST", "/accounts/{name}/disable"),
    ("POST", "/accounts/{name}/password"),
    ("POST", "/accounts/{name}/roles"),
    ("POST", "/accounts/{name}/tokens"),
    ("POST", "/tokens/{id}/revoke"),
];

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("max-age=3600")),
        ],
        layout::STYLE,
    )
        .into_response()
}

/// An HTML response that no cache keeps (pages show participants' data).
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut r = (status, markup).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The HTTP status for a library error shown on a page: bad input 422,
/// refused 409, a fault 500 (as the API answers).
pub fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::Input(_) | Error::Protocol(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Error::Refused(_) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A page's result: the page, or the page that says why not.
pub type PageResult = Result<Response, Response>;

/// The signed-in caller of a page, with the service's state. Signed out,
/// the request is sent to the login page.
pub struct Viewer {
    /// The service.
    pub state: AppState,
    /// Who is asking.
    pub caller: Caller,
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Viewer, Response> {
        match Caller::from_request_parts(parts, state).await {
            Ok(caller) => Ok(Viewer { state: state.clone(), caller }),
            Err(e) if e.status == StatusCode::UNAUTHORIZED => Err(Redirect::to("/login").into_response()),
            Err(e) => Err(respond(
                e.status,
                layout::bare(state.title(), "Something went wrong", html! { p.error id="error" { (e.error) } }),
            )),
        }
    }
}

impl Viewer {
    /// The header's contents.
    pub fn chrome(&self) -> Chrome<'_> {
        Chrome { trial_title: self.state.title(), account: &self.caller.account, csrf: self.csrf(), practice: false }
    }

    /// The session's CSRF token (empty for an API token, whose requests
    /// need none).
    pub fn csrf(&self) -> &str {
        match &self.caller.via {
            Via::Session(s) => &s.csrf,
            Via::Token => "",
        }
    }

    /// The acting user of every write: the account's name.
    pub fn user(&self) -> String {
        self.caller.account.name.clone()
    }

    /// A page of the site.
    pub fn page(&self, status: StatusCode, heading: &str, body: Markup) -> Response {
        respond(status, layout::page(&self.chrome(), heading, body))
    }

    /// The account's scope for `action`, or the 403 page.
    pub fn may(&self, action: Action) -> Result<Scope, Response> {
        match self.caller.account.scope(action) {
            Scope::Denied => Err(self.page(
                StatusCode::FORBIDDEN,
                "Not allowed",
                html! { p.error id="error" { "Your account's roles do not allow this." } },
            )),
            scope => Ok(scope),
        }
    }

    /// The page for a library error.
    pub fn failed(&self, heading: &str, e: &Error) -> Response {
        self.page(status_of(e), heading, html! { p.error id="error" { (e.to_string()) } })
    }

    /// The 404 page for a participant: the same for one at another site as
    /// for one that does not exist.
    pub fn no_participant(&self, participant: &str) -> Response {
        let e = super::error::ApiError::no_participant(participant);
        self.page(StatusCode::NOT_FOUND, "Not found", html! { p.error id="error" { (e.error) } })
    }
}

/// The hidden CSRF field every POST form carries.
pub fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// The value of the one pair named `name`, or `None`.
pub fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}
