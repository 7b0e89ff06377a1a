//! The service's errors as HTTP answers: JSON `{"error": …, "field": …}` with
//! the status its kind calls for, in one place. The library's [`Error`] maps
//! by kind (bad input 422, refused 409, a server fault 500); the service's
//! own refusals (401, 403, 404, 413, 429) are made here too, each saying
//! nothing about the trial's data.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::Error;

/// An API error: the status and the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The message (one line, no secrets, no other site's data).
    pub error: String,
    /// The request field it concerns, if one.
    pub field: Option<String>,
    /// Seconds to wait before trying again (429).
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    field: Option<&'a str>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, error: message.into(), field: None, retry_after: None }
    }

    /// The same error about request field `field`.
    pub fn on(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    /// 400: the request could not be read (malformed JSON, wrong types).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401: no session or token, or one that is no longer good.
    pub fn unauthenticated() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "not signed in: log in, or send `Authorization: Bearer TOKEN` with a live API token",
        )
    }

    /// 403: the account may not do this (nothing more is said).
    pub fn forbidden() -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "your account's roles do not allow this")
    }

    /// 403: a POST from a session without its CSRF token.
    pub fn csrf() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "the request's CSRF token is missing or wrong: reload the page and try again (API calls with a session send it as X-CSRF-Token)",
        )
    }

    /// 404: no such route or thing.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 404 for a participant the caller may not see: the same answer whether
    /// it exists at another site or not at all.
    pub fn no_participant(participant: &str) -> ApiError {
        ApiError::not_found(format!(
            "there is no participant {:?} at your sites",
            crate::referral::truncate(participant, 40)
        ))
        .on("participant")
    }

    /// 413: the body is larger than `limit` bytes.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than the {limit} bytes this route accepts"),
        )
    }

    /// 429: too many login attempts from this address.
    pub fn too_many(retry_after: u64) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many login attempts from your address; try again in {retry_after} seconds"),
        );
        e.retry_after = Some(retry_after);
        e
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let status = match &e {
            Error::Input(_) | Error::Protocol(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Refused(_) => StatusCode::CONFLICT,
            // Integrity, key, SQLite and file errors: a fault of the server's.
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            // The operator sees the whole message; the client sees it too
            // (messages never hold secrets), so a fault can be reported.
            tracing::error!("{e}");
        }
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Body { error: &self.error, field: self.field.as_deref() })
            .unwrap_or_else(|_| br#"{"error":"error","field":null}"#.to_vec());
        let mut response = (self.status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if let Some(s) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

/// A handler's result.
pub type ApiResult<T> = std::result::Result<T, ApiError>;
