//! The JSON API (`/api/v1/…`): the same operations as the command line, each
//! answering with exactly the JSON its `--json` prints (the same result
//! serialised by serde_json). Every handler takes a [`Caller`] and asks its
//! account's scope for the action before it does anything; for a coordinator,
//! a participant at another site is answered exactly like one that does not
//! exist.

use std::collections::HashSet;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::accounts::{Action, Scope};
use crate::error::Error;
use crate::export::Format;
use crate::operations::{self as op, CorrectTo, ExportTable, Referrals, StatusChange};

use super::auth::{self, Caller, Via};
use super::error::{ApiError, ApiResult};
use super::state::AppState;

/// A JSON body, refused as JSON when it cannot be read: 400 for malformed
/// JSON, wrong types, missing or unknown fields (naming the field where
/// serde does), 415 without a JSON content type, 413 when too large.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<Self> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(t)) => Ok(ApiJson(t)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            // "Failed to deserialize the JSON body into the target type: values.age: invalid type …"
            let text = std::error::Error::source(&e).map_or_else(|| e.body_text(), |s| s.to_string());
            let field = field_of(&text);
            let mut err = ApiError::bad_request(format!("the request body does not fit this route: {text}"));
            err.field = field;
            err
        }
        JsonRejection::JsonSyntaxError(e) => {
            let text = std::error::Error::source(&e).map_or_else(|| e.body_text(), |s| s.to_string());
            ApiError::bad_request(format!("the request body is not valid JSON: {text}"))
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the request body as JSON with `Content-Type: application/json`",
        ),
        JsonRejection::BytesRejection(_) => ApiError::too_large(super::API_BODY_LIMIT),
        other => ApiError::bad_request(format!("the request body could not be read: {}", other.body_text())),
    }
}

/// The field a serde message is about: its path (`values.age: …`), or the
/// name in "unknown field `x`" / "missing field `x`".
fn field_of(text: &str) -> Option<String> {
    for marker in ["unknown field `", "missing field `", "duplicate field `"] {
        if let Some(at) = text.find(marker) {
            let rest = &text[at + marker.len()..];
            return rest.split('`').next().map(str::to_string);
        }
    }
    let (path, _) = text.split_once(": ")?;
    (!path.is_empty() && !path.contains(' ') && path != ".").then(|| path.to_string())
}

/// Query parameters, refused as JSON (400) when they cannot be read
/// (an unknown or repeated parameter, a bad value).
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(t)) => Ok(ApiQuery(t)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let text = std::error::Error::source(&e).map_or_else(|| e.body_text(), |s| s.to_string());
                let mut err = ApiError::bad_request(format!("the query string does not fit this route: {text}"));
                err.field = field_of(&text);
                Err(err)
            }
            Err(other) => Err(ApiError::bad_request(other.body_text())),
        }
    }
}

/// A form's field values, `{"field": value}`: each a string, number or
/// boolean (as its text); a field named twice is refused.
#[derive(Debug, Default)]
pub struct Values(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Values, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Values;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of field names to values (strings or numbers)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Values, A::Error> {
                let mut seen = HashSet::new();
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Scalar>()? {
                    if !seen.insert(k.clone()) {
                        return Err(serde::de::Error::custom(format!("duplicate field `{k}`")));
                    }
                    out.push((k, v.0));
                }
                Ok(Values(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A value given as a JSON string, number or boolean, as its text.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(Scalar(s)),
            serde_json::Value::Number(n) => Ok(Scalar(n.to_string())),
            serde_json::Value::Bool(b) => Ok(Scalar(if b { "yes" } else { "no" }.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "invalid type: {}, expected a string or a number",
                match other {
                    serde_json::Value::Null => "null",
                    serde_json::Value::Array(_) => "an array",
                    _ => "an object",
                }
            ))),
        }
    }
}

/// `POST /api/v1/randomise`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomiseBody {
    /// Participant id.
    pub participant: String,
    /// Site id.
    pub site: String,
    /// The protocol's fields.
    #[serde(default)]
    pub values: Values,
}

/// `POST /api/v1/outcomes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeBody {
    /// Participant id.
    pub participant: String,
    /// Timepoint id.
    pub timepoint: String,
    /// The date the values were collected (default: today in the trial's time zone).
    #[serde(default)]
    pub collected_on: Option<String>,
    /// Why outside the window.
    #[serde(default)]
    pub window_reason: Option<String>,
    /// The outcome values.
    pub values: Values,
}

/// `POST /api/v1/outcomes/correct`: `value` sets the field, `clear: true`
/// corrects it to missing (as `--set` and `--clear`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrectBody {
    /// Participant id.
    pub participant: String,
    /// Timepoint id.
    pub timepoint: String,
    /// The field.
    pub field: String,
    /// Its corrected value.
    #[serde(default)]
    pub value: Option<String>,
    /// Correct it to missing.
    #[serde(default)]
    pub clear: bool,
    /// Why.
    pub reason: String,
}

/// The status changes.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Withdrawn.
    Withdraw,
    /// Consent renewed.
    Reconsent,
    /// Lost to follow-up.
    Lost,
    /// Died.
    Died,
}

/// `POST /api/v1/status-changes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusChangeBody {
    /// Participant id.
    pub participant: String,
    /// The change.
    pub change: ChangeKind,
    /// Why.
    pub reason: String,
    /// The date of the change (default: today in the trial's time zone).
    #[serde(default)]
    pub on: Option<String>,
    /// With `withdraw`: no further contact.
    #[serde(default)]
    pub no_further_contact: bool,
}

/// `POST /api/v1/login`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// The account name.
    pub name: String,
    /// The password.
    pub password: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DueQuery {
    #[serde(default)]
    on: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    #[serde(default)]
    format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    #[serde(default)]
    delimiter: Option<String>,
}

/// The API's routes: (method, path, handler). The router and the OpenAPI
/// document's test both read this list.
pub fn routes() -> Vec<(&'static str, &'static str, MethodRouter<AppState>)> {
    vec![
        ("GET", "/healthz", get(healthz)),
        ("GET", "/api/v1/openapi.json", get(openapi)),
        ("POST", "/api/v1/login", post(login)),
        ("POST", "/api/v1/logout", post(logout)),
        ("GET", "/api/v1/session", get(session)),
        ("GET", "/api/v1/status", get(status)),
        ("POST", "/api/v1/randomise", post(randomise)),
        ("POST", "/api/v1/outcomes", post(record_outcome)),
        ("POST", "/api/v1/outcomes/correct", post(correct_outcome)),
        ("POST", "/api/v1/status-changes", post(change_status)),
        ("GET", "/api/v1/due", get(due)),
        ("GET", "/api/v1/export/{what}", get(export)),
        ("GET", "/api/v1/verify", get(verify)),
        ("POST", "/api/v1/checkpoint", post(checkpoint)),
    ]
}

/// The CSV import, with its own (larger) body limit.
pub fn import_route() -> (&'static str, &'static str, MethodRouter<AppState>) {
    ("POST", "/api/v1/outcomes/import", post(import_outcomes))
}

fn json_of(v: &impl serde::Serialize) -> ApiResult<Response> {
    // Pretty, as the command line prints it, with its final newline.
    let mut body =
        serde_json::to_vec_pretty(v).map_err(|e| ApiError::from(Error::Integrity(format!("writing JSON: {e}"))))?;
    body.push(b'\n');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn healthz() -> &'static str {
    "ok"
}

async fn openapi() -> Response {
    let doc = super::openapi::document();
    ([(header::CONTENT_TYPE, "application/json")], doc.to_string()).into_response()
}

async fn login(
    State(state): State<AppState>,
    parts: ClientAddress,
    ApiJson(body): ApiJson<LoginBody>,
) -> ApiResult<Response> {
    let (account, id, csrf) = auth::log_in(&state, body.name, body.password, parts.0).await?;
    let mut response = json_of(&serde_json::json!({
        "name": account.name,
        "roles": account.roles,
        "sites": account.sites,
        "csrf": csrf,
    }))?;
    response.headers_mut().insert(header::SET_COOKIE, auth::session_set_cookie(&state, &id));
    Ok(response)
}

/// The client's address, as an extractor.
pub struct ClientAddress(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> ApiResult<Self> {
        Ok(ClientAddress(auth::client_address(&parts.extensions)))
    }
}

async fn logout(State(state): State<AppState>, caller: Caller) -> Response {
    if let Via::Session(s) = &caller.via {
        state.sessions().end(s);
    }
    let mut headers = HeaderMap::new();
    headers.insert(header::SET_COOKIE, auth::session_clear_cookie(&state));
    (StatusCode::NO_CONTENT, headers).into_response()
}

async fn session(caller: Caller) -> ApiResult<Response> {
    json_of(&serde_json::json!({
        "name": caller.account.name,
        "roles": caller.account.roles,
        "sites": caller.account.sites,
        "csrf": caller.csrf(),
    }))
}

async fn status(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.may(Action::ViewStatus)?;
    let by_arm = caller.account.scope(Action::ViewStatusByArm).allowed();
    let s = state.read(op::status).await?;
    let mut value =
        serde_json::to_value(&s.status).map_err(|e| ApiError::from(Error::Integrity(format!("writing JSON: {e}"))))?;
    if !by_arm {
        without_arms(&mut value);
    }
    json_of(&value)
}

/// The status without counts by arm (for coordinators and data managers:
/// with permuted blocks, a stratum's counts by arm tell which arm is due):
/// `by_arm` goes, and the counts by site and by stratum become totals.
pub fn without_arms(status: &mut serde_json::Value) {
    let Some(object) = status.as_object_mut() else { return };
    object.remove("by_arm");
    for key in ["by_site", "by_stratum"] {
        if let Some(serde_json::Value::Object(groups)) = object.get_mut(key) {
            for counts in groups.values_mut() {
                let total: u64 = counts.as_object().map_or(0, |c| c.values().filter_map(|n| n.as_u64()).sum());
                *counts = serde_json::Value::from(total);
            }
        }
    }
}

async fn randomise(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<RandomiseBody>,
) -> ApiResult<Response> {
    let scope = caller.may(Action::Randomise)?;
    if !scope.covers(&body.site) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "you may randomise only at your own sites").on("site"));
    }
    let referrals = Referrals::single(&body.participant, &body.site, &body.values.0);
    let request = op::RandomiseRequest { referrals, user: caller.account.name.clone(), clock: state.trial_clock() };
    let key = state.key();
    let r = state.write(move |t| op::randomise(t, &key, &request)).await.map_err(|e| {
        let e = match (&scope, e) {
            (Scope::Sites(sites), Error::Input(m)) => Error::Input(other_sites_withheld(&m, sites)),
            (_, e) => e,
        };
        // The field the message is about, found as the pages find it to put
        // the message beside the input, so an EDC can show it at its field.
        let field = super::pages::form::field_of(state.protocol(), &e.to_string());
        let error = ApiError::from(e);
        match field {
            Some(f) => error.on(f),
            None => error,
        }
    })?;
    match r.confirmations.first() {
        Some(c) => json_of(c),
        None => Err(ApiError::from(Error::Integrity("randomising gave no confirmation".into()))),
    }
}

/// A refusal of a coordinator's referral without what it says of another
/// site's participant: a person already randomised elsewhere is refused, but
/// not by naming the participant id or the site.
fn other_sites_withheld(message: &str, sites: &[String]) -> String {
    let marker = "this NHS number was already randomised as participant ";
    let Some(at) = message.find(marker) else { return message.to_string() };
    let rest = &message[at + marker.len()..];
    let own = sites.iter().any(|s| rest.contains(&format!(" at {s};")));
    if own {
        return message.to_string();
    }
    format!(
        "{}this NHS number was already randomised at another site; a person is randomised once; nothing was written",
        &message[..at]
    )
}

/// Refuses a participant the caller's scope does not cover, exactly as one
/// that does not exist.
async fn at_callers_sites(state: &AppState, scope: &Scope, participant: &str) -> ApiResult<()> {
    match scope {
        Scope::AllSites => Ok(()),
        Scope::Denied => Err(ApiError::forbidden()),
        Scope::Sites(sites) => {
            let id = participant.to_string();
            let site = state.read(move |t| op::participant_site(t, &id)).await?;
            match site {
                Some(s) if sites.contains(&s) => Ok(()),
                _ => Err(ApiError::no_participant(participant)),
            }
        }
    }
}

fn date(text: Option<&str>, field: &str) -> ApiResult<Option<chrono::NaiveDate>> {
    text.map(crate::clock::parse_date).transpose().map_err(|e| ApiError::from(e).on(field))
}

async fn record_outcome(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<OutcomeBody>,
) -> ApiResult<Response> {
    let scope = caller.may(Action::RecordOutcome)?;
    at_callers_sites(&state, &scope, &body.participant).await?;
    let request = op::RecordRequest {
        on: date(body.collected_on.as_deref(), "collected_on")?,
        participant: body.participant,
        timepoint: crate::values::canonical_name(&body.timepoint),
        values: body.values.0,
        window_reason: body.window_reason,
        user: caller.account.name.clone(),
        clock: state.trial_clock(),
    };
    let written = state.write(move |t| op::record_outcome(t, &request)).await?;
    json_of(&written)
}

async fn import_outcomes(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<ImportQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    caller.may(Action::ImportOutcomes)?;
    let csv = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !csv.starts_with("text/csv") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the outcome file as the request body with `Content-Type: text/csv`",
        ));
    }
    let delimiter = query
        .delimiter
        .as_deref()
        .map(crate::table_input::parse_delimiter)
        .transpose()
        .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m).on("delimiter"))?;
    let request = op::ImportRequest {
        name: "upload.csv".into(),
        csv: body.to_vec(),
        delimiter,
        user: caller.account.name.clone(),
        clock: state.trial_clock(),
    };
    let imported = state.write(move |t| op::import_outcomes(t, &request)).await?;
    json_of(&imported.written)
}

async fn correct_outcome(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CorrectBody>,
) -> ApiResult<Response> {
    let scope = caller.may(Action::CorrectOutcome)?;
    at_callers_sites(&state, &scope, &body.participant).await?;
    let set = body.value.map(|v| (body.field.clone(), v));
    let clear = body.clear.then(|| body.field.clone());
    let to = CorrectTo::new(set, clear).map_err(|e| ApiError::from(e).on("value"))?;
    let request = op::CorrectRequest {
        participant: body.participant,
        timepoint: crate::values::canonical_name(&body.timepoint),
        to,
        reason: body.reason,
        user: caller.account.name.clone(),
        clock: state.trial_clock(),
    };
    let written = state.write(move |t| op::correct_outcome(t, &request)).await?;
    json_of(&written)
}

async fn change_status(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<StatusChangeBody>,
) -> ApiResult<Response> {
    let scope = caller.may(Action::ChangeStatus)?;
    at_callers_sites(&state, &scope, &body.participant).await?;
    let change = match body.change {
        ChangeKind::Withdraw => StatusChange::Withdrawn { no_further_contact: body.no_further_contact },
        _ if body.no_further_contact => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "no_further_contact goes only with the change \"withdraw\"",
            )
            .on("no_further_contact"));
        }
        ChangeKind::Reconsent => StatusChange::ConsentRenewed,
        ChangeKind::Lost => StatusChange::Lost,
        ChangeKind::Died => StatusChange::Died,
    };
    let request = op::StatusChangeRequest {
        on: date(body.on.as_deref(), "on")?,
        participant: body.participant,
        change,
        reason: body.reason,
        user: caller.account.name.clone(),
        clock: state.trial_clock(),
    };
    let written = state.write(move |t| op::change_status(t, &request)).await?;
    json_of(&written)
}

async fn due(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<DueQuery>,
) -> ApiResult<Response> {
    let scope = caller.may(Action::FollowUpDue)?;
    let on = date(query.on.as_deref(), "on")?;
    let clock = state.trial_clock();
    let mut d = state.read(move |t| op::due(t, &op::DueRequest { on, clock })).await?;
    d.due.retain(|row| scope.covers(&row.site));
    json_of(&d.due)
}

async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Path(what): Path<String>,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    let table = match what.as_str() {
        "allocations" => ExportTable::Allocations,
        "log" => ExportTable::Log,
        "participants" => ExportTable::Participants,
        "outcomes" => ExportTable::Outcomes,
        "history" => ExportTable::History,
        "codebook" => ExportTable::Codebook,
        _ => {
            return Err(ApiError::not_found(
                "there is no such export; the exports are allocations, log, participants, outcomes, history, codebook",
            )
            .on("what"));
        }
    };
    if table == ExportTable::Log {
        if !caller.account.scope(Action::ExportLog).allowed() {
            caller.may(Action::Export)?;
        }
    } else {
        caller.may(Action::Export)?;
    }
    let (format, content_type, extension) = match query.format.as_deref().unwrap_or("csv") {
        "csv" => (Format::Csv, "text/csv; charset=utf-8", "csv"),
        "json" => (Format::Json, "application/json", "json"),
        _ => {
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "the format is csv or json").on("format"));
        }
    };
    let bytes = state
        .read(move |t| {
            let mut out = Vec::new();
            op::export(t, table)?.write(format, &mut out)?;
            Ok(out)
        })
        .await?;
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{what}.{extension}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type)), (header::CONTENT_DISPOSITION, disposition)],
        bytes,
    )
        .into_response())
}

async fn verify(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.may(Action::Verify)?;
    let v = state.with_db(|db| op::verify(db, &op::VerifyRequest::default())).await?;
    json_of(&v.report)
}

async fn checkpoint(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.may(Action::Checkpoint)?;
    let Some(signing) = state.signing_key() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the service was started without the trial's signing key (<key>.signing), so it cannot sign checkpoints",
        ));
    };
    let clock = state.trial_clock();
    let c = state.read(move |t| op::checkpoint(t, &signing, &op::CheckpointRequest { clock })).await?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8")),
            (header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"checkpoint.txt\"")),
        ],
        c.to_text(),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_without_arms_keeps_totals_only() {
        let mut v = serde_json::json!({
            "randomised": 3,
            "by_arm": {"ips": 2, "usual": 1},
            "by_site": {"leeds": {"ips": 2, "usual": 1}},
            "by_stratum": {"s1": {"ips": 1, "usual": 1}, "s2": {"ips": 1, "usual": 0}},
        });
        without_arms(&mut v);
        assert_eq!(v, serde_json::json!({"randomised": 3, "by_site": {"leeds": 3}, "by_stratum": {"s1": 2, "s2": 1}}));
        assert!(!v.to_string().contains("ips"));
    }

    #[test]
    fn values_take_strings_and_numbers_and_refuse_a_field_named_twice() {
        let v: Values = serde_json::from_str(r#"{"age": 34, "eq5d": 0.731, "sex": "female"}"#).unwrap();
        assert_eq!(v.0[0], ("age".into(), "34".into()));
        assert_eq!(v.0[1], ("eq5d".into(), "0.731".into()));
        let e = serde_json::from_str::<Values>(r#"{"age": 34, "age": 35}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate field `age`"), "{e}");
        assert!(serde_json::from_str::<Values>(r#"{"age": [1]}"#).is_err());
    }

    #[test]
    fn a_duplicate_person_at_another_site_is_refused_without_naming_them() {
        let m = "participant P-9: this NHS number was already randomised as participant P-1 at rotherham; a person is randomised once; nothing was written";
        let withheld = other_sites_withheld(m, &["sheffield".to_string()]);
        assert!(!withheld.contains("P-1") && !withheld.contains("rotherham"), "{withheld}");
        assert!(withheld.starts_with("participant P-9: this NHS number was already randomised at another site"));
        assert_eq!(other_sites_withheld(m, &["rotherham".to_string()]), m);
    }

    #[test]
    fn the_field_of_a_serde_message_is_named() {
        assert_eq!(field_of("unknown field `bogus`, expected one of").as_deref(), Some("bogus"));
        assert_eq!(field_of("values.age: invalid type: null").as_deref(), Some("values.age"));
        assert_eq!(field_of("expected value at line 1 column 2"), None);
    }
}
