//! Logging in and out, and the home page.
//!
//! The login form carries a CSRF token too, though there is no session yet:
//! the same random value in the form and in a short-lived `SameSite=Strict`
//! cookie scoped to `/login` (a double-submit), so another site cannot log a
//! browser in to an account of its choosing.

use axum::Form;
use axum::extract::State;
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::super::auth::{self, Caller, Via};
use super::super::error::ApiError;
use super::super::state::AppState;
use super::{PageResult, Viewer, csrf_field, layout, respond};

/// The login form's CSRF cookie.
const LOGIN_COOKIE: &str = "chancery_login";

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
}

fn login_page(state: &AppState, status: StatusCode, name: &str, error: Option<&str>) -> Response {
    let token = match auth::random_token() {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let body = html! {
        form method="post" action="/login" id="login-form" {
            (csrf_field(&token))
            @if let Some(m) = error {
                p.error id="error" role="alert" { (m) }
            }
            div.field {
                label for="name" { "Account name" }
                input type="text" id="name" name="name" value=(name) required autocomplete="username"
                    autocapitalize="none" spellcheck="false";
            }
            div.field {
                label for="password" { "Password" }
                input type="password" id="password" name="password" required autocomplete="current-password";
            }
            button type="submit" id="login" { "Log in" }
        }
    };
    let mut r = respond(status, layout::bare(state.title(), "Log in", body));
    let secure = if state.options().tls() { "; Secure" } else { "" };
    if let Ok(v) =
        HeaderValue::from_str(&format!("{LOGIN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/login{secure}"))
    {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// GET /login: the form (or home, if already signed in).
pub async fn login_form(State(state): State<AppState>, caller: Result<Caller, ApiError>) -> Response {
    if caller.is_ok() {
        return Redirect::to("/").into_response();
    }
    login_page(&state, StatusCode::OK, "", None)
}

/// The login form as submitted.
#[derive(Deserialize)]
pub struct Login {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

/// POST /login: checks the name and password through the trial (the access
/// log, the lockout) and starts a session; the form again, with the
/// message, if not (the name kept, never the password).
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    form: Result<Form<Login>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(login)) = form else {
        return login_page(&state, StatusCode::BAD_REQUEST, "", Some("the form could not be read; try again"));
    };
    let given = cookie(&headers, LOGIN_COOKIE);
    if given.as_deref().is_none_or(|c| c.is_empty() || c != login.csrf) {
        return login_page(
            &state,
            StatusCode::FORBIDDEN,
            &login.name,
            Some("the form's CSRF token is missing or wrong (cookies must be allowed for this site); log in again"),
        );
    }
    let client = auth::client_address(&extensions);
    match auth::log_in(&state, login.name.clone(), login.password, client).await {
        Ok((_, id, _)) => {
            let mut r = Redirect::to("/").into_response();
            r.headers_mut().append(header::SET_COOKIE, auth::session_set_cookie(&state, &id));
            r.headers_mut()
                .append(header::SET_COOKIE, HeaderValue::from_static("chancery_login=; Path=/login; Max-Age=0"));
            r
        }
        Err(e) => {
            let mut r = login_page(&state, e.status, &login.name, Some(&e.error));
            if let Some(s) = e.retry_after {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            r
        }
    }
}

/// POST /logout: ends the session.
pub async fn logout(viewer: Viewer) -> Response {
    if let Via::Session(s) = &viewer.caller.via {
        viewer.state.sessions().end(s);
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().append(header::SET_COOKIE, auth::session_clear_cookie(&viewer.state));
    r
}

/// What each page is for, on the home page.
fn purpose(href: &str) -> &'static str {
    match href {
        "/randomise" => "Screen a referral (eligibility, consent, baseline) and randomise it.",
        "/participants" => "Your sites' participants, their follow-up and status changes.",
        "/due" => "Who is due for follow-up, in window or overdue.",
        "/status" => "The trial's counts and the log's head.",
        "/exports" => "Download the trial's tables as CSV or JSON.",
        "/analysis" => "The intention-to-treat analysis.",
        "/report" => "The HTML report with the audit status.",
        "/verify" => "Verify the log and the tables against it.",
        "/checkpoint" => "Download a signed checkpoint of the log.",
        "/accounts" => "Add, change and disable accounts; API tokens.",
        _ => "",
    }
}

/// GET /: what the account can do here.
pub async fn home(viewer: Viewer) -> PageResult {
    let links = layout::nav_links(&viewer.caller.account);
    Ok(viewer.page(
        StatusCode::OK,
        "Home",
        html! {
            @if links.is_empty() {
                p { "Your account has no role that shows anything here." }
            } @else {
                ul.home {
                    @for (href, label) in links {
                        li { a href=(href) { (label) } " — " (purpose(href)) }
                    }
                }
            }
        },
    ))
}
