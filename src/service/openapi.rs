//! The API's OpenAPI 3.1 description, served at `/api/v1/openapi.json`:
//! every route with its method, authentication, request and response in
//! outline. A test checks it against the routes the router serves
//! ([`super::api::routes`]), both ways.

use serde_json::{Value, json};

/// One route as documented.
pub struct Documented {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The path (OpenAPI's `{name}` parameters, as axum's).
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Whether it needs a session or a token.
    pub auth: bool,
    /// The request body's schema, if it takes one.
    pub request: Option<fn() -> (&'static str, Value)>,
    /// The success response's content type and schema.
    pub response: fn() -> (&'static str, Value),
}

fn obj(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "additionalProperties": false, "required": required, "properties": properties})
}

fn values() -> Value {
    json!({"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}})
}

fn written() -> (&'static str, Value) {
    (
        "application/json",
        obj(
            &["participant", "seq", "entry_hash"],
            json!({
                "participant": {"type": "string"}, "seq": {"type": "integer"}, "entry_hash": {"type": "string"}
            }),
        ),
    )
}

fn json_any(description: &'static str) -> (&'static str, Value) {
    ("application/json", json!({"type": "object", "description": description}))
}

/// Every route of the API, documented.
pub const ROUTES: &[Documented] = &[
    Documented {
        method: "GET",
        path: "/healthz",
        summary: "liveness: `ok`, without authentication and without any trial data",
        auth: false,
        request: None,
        response: || ("text/plain", json!({"type": "string", "const": "ok"})),
    },
    Documented {
        method: "GET",
        path: "/api/v1/openapi.json",
        summary: "this description",
        auth: false,
        request: None,
        response: || json_any("an OpenAPI 3.1 document"),
    },
    Documented {
        method: "POST",
        path: "/api/v1/login",
        summary: "log in: starts a session (cookie) and returns its CSRF token; failures go to the access log, repeated ones lock the account, and attempts are rate-limited per address (429)",
        auth: false,
        request: Some(|| {
            (
                "application/json",
                obj(&["name", "password"], json!({"name": {"type": "string"}, "password": {"type": "string"}})),
            )
        }),
        response: || {
            (
                "application/json",
                obj(
                    &["name", "roles", "sites", "csrf"],
                    json!({
                        "name": {"type": "string"}, "roles": {"type": "array", "items": {"type": "string"}},
                        "sites": {"type": "array", "items": {"type": "string"}}, "csrf": {"type": "string"}
                    }),
                ),
            )
        },
    },
    Documented {
        method: "POST",
        path: "/api/v1/logout",
        summary: "ends the session",
        auth: true,
        request: None,
        response: || ("application/json", json!({"description": "204 No Content"})),
    },
    Documented {
        method: "GET",
        path: "/api/v1/session",
        summary: "the caller's account (name, roles, sites) and, with a session, its CSRF token",
        auth: true,
        request: None,
        response: || json_any("{name, roles, sites, csrf}"),
    },
    Documented {
        method: "GET",
        path: "/api/v1/status",
        summary: "the JSON of `chancery status --json`; without counts by arm (by_arm removed, by_site and by_stratum as totals) for accounts that may not see them",
        auth: true,
        request: None,
        response: || json_any("the trial's status"),
    },
    Documented {
        method: "POST",
        path: "/api/v1/randomise",
        summary: "screens and randomises one referral at one of the caller's sites: the JSON of `chancery randomise --json`, answered only after it is committed",
        auth: true,
        request: Some(|| {
            (
                "application/json",
                obj(
                    &["participant", "site"],
                    json!({
                        "participant": {"type": "string"}, "site": {"type": "string"}, "values": values()
                    }),
                ),
            )
        }),
        response: || {
            json_any(
                "the confirmation: participant, site, status, arm, arm_label, stratum, reasons, seq, entry_hash, log_length, head",
            )
        },
    },
    Documented {
        method: "POST",
        path: "/api/v1/outcomes",
        summary: "records one participant's outcome values at a timepoint (`chancery outcome record --json`)",
        auth: true,
        request: Some(|| {
            (
                "application/json",
                obj(
                    &["participant", "timepoint", "values"],
                    json!({
                        "participant": {"type": "string"}, "timepoint": {"type": "string"},
                        "collected_on": {"type": "string", "format": "date"}, "window_reason": {"type": "string"}, "values": values()
                    }),
                ),
            )
        }),
        response: written,
    },
    Documented {
        method: "POST",
        path: "/api/v1/outcomes/import",
        summary: "imports outcomes from a CSV body, all or nothing (`chancery outcome import --json`); query `delimiter` if not a comma",
        auth: true,
        request: Some(|| {
            (
                "text/csv",
                json!({"type": "string", "description": "participant,timepoint[,collected_on][,window_reason],<outcome>…"}),
            )
        }),
        response: || ("application/json", json!({"type": "array", "items": written().1})),
    },
    Documented {
        method: "POST",
        path: "/api/v1/outcomes/correct",
        summary: "corrects a recorded value (`value`) or corrects it to missing (`clear`); the original stays in the log",
        auth: true,
        request: Some(|| {
            (
                "application/json",
                obj(
                    &["participant", "timepoint", "field", "reason"],
                    json!({
                        "participant": {"type": "string"}, "timepoint": {"type": "string"}, "field": {"type": "string"},
                        "value": {"type": "string"}, "clear": {"type": "boolean"}, "reason": {"type": "string"}
                    }),
                ),
            )
        }),
        response: written,
    },
    Documented {
        method: "POST",
        path: "/api/v1/status-changes",
        summary: "withdraw, reconsent, lost, died (`chancery withdraw --json` and the others)",
        auth: true,
        request: Some(|| {
            (
                "application/json",
                obj(
                    &["participant", "change", "reason"],
                    json!({
                        "participant": {"type": "string"}, "change": {"enum": ["withdraw", "reconsent", "lost", "died"]},
                        "reason": {"type": "string"}, "on": {"type": "string", "format": "date"}, "no_further_contact": {"type": "boolean"}
                    }),
                ),
            )
        }),
        response: written,
    },
    Documented {
        method: "GET",
        path: "/api/v1/due",
        summary: "the follow-up due list at the caller's sites, without arms (`chancery followup due --json`); query `on` (a date)",
        auth: true,
        request: None,
        response: || ("application/json", json!({"type": "array", "items": {"type": "object"}})),
    },
    Documented {
        method: "GET",
        path: "/api/v1/export/{what}",
        summary: "an export (allocations, log, participants, outcomes, history, codebook) as `format=csv` (default) or `format=json`, as `chancery export` writes it",
        auth: true,
        request: None,
        response: || ("text/csv", json!({"type": "string"})),
    },
    Documented {
        method: "GET",
        path: "/api/v1/verify",
        summary: "verifies the log: the JSON of `chancery verify --json`",
        auth: true,
        request: None,
        response: || json_any("the verification report"),
    },
    Documented {
        method: "POST",
        path: "/api/v1/checkpoint",
        summary: "a signed checkpoint of the log's length and head, now (the text `chancery checkpoint` prints)",
        auth: true,
        request: None,
        response: || ("text/plain", json!({"type": "string"})),
    },
];

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let error = json!({"type": "object", "required": ["error", "field"], "properties": {
        "error": {"type": "string"}, "field": {"type": ["string", "null"]}
    }});
    let mut paths = serde_json::Map::new();
    for r in ROUTES {
        let (content_type, schema) = (r.response)();
        let mut op = json!({
            "summary": r.summary,
            "responses": {
                "200": {"description": "done", "content": {content_type: {"schema": schema}}},
                "400": {"$ref": "#/components/responses/Error"},
                "401": {"$ref": "#/components/responses/Error"},
                "403": {"$ref": "#/components/responses/Error"},
                "404": {"$ref": "#/components/responses/Error"},
                "409": {"$ref": "#/components/responses/Error"},
                "413": {"$ref": "#/components/responses/Error"},
                "422": {"$ref": "#/components/responses/Error"},
                "429": {"$ref": "#/components/responses/Error"},
            },
        });
        op["security"] = if r.auth { json!([{"bearer": []}, {"session": []}]) } else { json!([]) };
        if let Some(request) = r.request {
            let (content_type, schema) = request();
            op["requestBody"] = json!({"required": true, "content": {content_type: {"schema": schema}}});
        }
        if r.path.contains("{what}") {
            op["parameters"] = json!([
                {"name": "what", "in": "path", "required": true, "schema": {"enum": ["allocations", "log", "participants", "outcomes", "history", "codebook"]}},
                {"name": "format", "in": "query", "schema": {"enum": ["csv", "json"]}},
            ]);
        }
        let entry = paths.entry(r.path).or_insert_with(|| json!({}));
        entry[r.method.to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "chancery",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A randomised controlled trial as a service: the same operations as the `chancery` command line, with the same JSON. Writes made with a session cookie carry the session's CSRF token in `X-CSRF-Token`.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API token from `chancery token create`"},
                "session": {"type": "apiKey", "in": "cookie", "name": super::auth::COOKIE},
            },
            "responses": {"Error": {"description": "refused", "content": {"application/json": {"schema": error}}}},
        },
    })
}
