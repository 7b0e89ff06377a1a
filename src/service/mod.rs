//! The trial as an HTTP service (`chancery serve`): a second front end over
//! the same [`operations`](crate::operations) the command line calls.
//!
//! - [`server`]: [`serve`] (the runtime, the listener, TLS, graceful shutdown).
//! - [`state`]: [`AppState`], what every handler shares.
//! - [`writer`]: the one writer thread and its group commits.
//! - [`auth`]: sessions, tokens, CSRF, the login rate limit, [`Caller`].
//! - [`api`]: the JSON API; [`openapi`]: its description.
//! - [`pages`]: the HTML pages.
//! - [`error`]: [`ApiError`], the errors as HTTP answers.
//!
//! [`router`] builds the whole application from a state, so tests can call
//! it in process; every layer (limits, timeouts, tracing, security headers,
//! sessions and CSRF) is applied there.

pub mod api;
pub mod auth;
pub mod error;
pub mod openapi;
pub mod pages;
pub mod server;
pub mod state;
pub mod writer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};

pub use auth::{Caller, Via};
pub use error::{ApiError, ApiResult};
pub use server::serve;
pub use state::AppState;

/// The largest JSON (or form) body the API and the pages accept.
pub const API_BODY_LIMIT: usize = 2 * 1024 * 1024;
/// The largest upload (an outcome CSV): the command line's own limit.
pub const UPLOAD_BODY_LIMIT: usize = crate::bounded::CSV_BYTES as usize;

/// How `chancery serve` was asked to run.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The trial database.
    pub db: PathBuf,
    /// The trial key file (default `<db>.key`).
    pub key: Option<PathBuf>,
    /// The address to listen on.
    pub listen: SocketAddr,
    /// TLS certificate and private key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Serve plain HTTP on an address other than loopback.
    pub insecure_http: bool,
    /// A session ends after this long unused.
    pub idle: Duration,
    /// A session ends this long after login, used or not.
    pub absolute: Duration,
    /// A request is answered 408 after this long.
    pub request_timeout: Duration,
    /// The clock of the trial's writes: the system clock when serving; a
    /// fixed time in tests that compare with the command line.
    pub clock: crate::clock::Clock,
}

impl ServeOptions {
    /// The defaults for serving `db`: 127.0.0.1:8080, 30 minutes idle, 12
    /// hours absolute.
    pub fn new(db: PathBuf) -> ServeOptions {
        ServeOptions {
            db,
            key: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: None,
            insecure_http: false,
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(12 * 3600),
            request_timeout: Duration::from_secs(60),
            clock: crate::clock::Clock::System,
        }
    }

    /// Whether the service speaks TLS (cookies are then `Secure`).
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// The HTML pages' routes (src/service/pages/), merged into the router with
/// the same layers as the API.
fn page_routes() -> Router<AppState> {
    pages::routes()
}

/// The whole application on `state`.
pub fn router(state: AppState) -> Router {
    let mut api = Router::new();
    for (_, path, handler) in api::routes() {
        api = api.route(path, handler);
    }
    let api = api.layer(RequestBodyLimitLayer::new(API_BODY_LIMIT));
    let (_, import_path, import) = api::import_route();
    let import = Router::new()
        .route(import_path, import)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(UPLOAD_BODY_LIMIT));
    let pages = page_routes().layer(RequestBodyLimitLayer::new(API_BODY_LIMIT));
    let timeout = state.options().request_timeout;
    let tls = state.options().tls();
    let mut app = Router::new()
        .merge(api)
        .merge(import)
        .merge(pages)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), auth::sessions_and_csrf))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(middleware::from_fn(api_errors_as_json))
        .layer(CompressionLayer::new());
    for (name, value) in SECURITY_HEADERS {
        app = app.layer(SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value)));
    }
    if tls {
        app = app.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ));
    }
    app.layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        // Method and path only: never bodies, cookies or Authorization.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO).include_headers(false))
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO).include_headers(false)),
        )
        // The outermost limit holds the CSRF check's reading of a form body.
        .layer(RequestBodyLimitLayer::new(UPLOAD_BODY_LIMIT))
        .with_state(state)
}

/// Sent with every response.
const SECURITY_HEADERS: [(header::HeaderName, &str); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
];

async fn not_found(request: Request) -> Response {
    if request.uri().path().starts_with("/api/") {
        ApiError::not_found("there is no such API route; see /api/v1/openapi.json").into_response()
    } else {
        (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "not found\n").into_response()
    }
}

/// Under `/api/`, an error answered by a layer rather than a handler (405,
/// 408, 413 from the body limit) gets a JSON body too.
async fn api_errors_as_json(request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !api || json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => "this route does not take that method; see /api/v1/openapi.json".to_string(),
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is larger than this route accepts".to_string(),
        StatusCode::REQUEST_TIMEOUT => "the request took too long and was stopped".to_string(),
        s => s.canonical_reason().unwrap_or("refused").to_lowercase(),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut answer = ApiError::new(status, message).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}
