//! The service's JSON API, in process: the router built on a fresh trial
//! (as `chancery serve` builds it) and called as a client would, with the
//! trial's clock fixed so its answers can be compared with the command
//! line's. The route × role matrix walks every route in [`ROUTES`].

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use chancery::accounts::Role;
use chancery::clock::{Clock, Timestamp};
use chancery::operations::{self as op, accounts as acc};
use chancery::service::{AppState, ServeOptions, router};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::util::{self, NOW, REFERRAL_FIELDS, chancery, nhs, referral_args};

/// The password every test account has.
pub const PASSWORD: &str = "a long enough test password 1";

/// Who calls: an account by name (its roles and sites in [`ACCOUNTS`]), or nobody.
pub type Who = Option<&'static str>;

/// The test accounts: name, roles, sites.
pub const ACCOUNTS: &[(&str, &[Role], &[&str])] = &[
    ("ann", &[Role::Admin], &[]),
    ("cora", &[Role::Coordinator], &["sheffield"]),
    ("colin", &[Role::Coordinator], &["rotherham"]),
    ("dora", &[Role::DataManager], &[]),
    ("eve", &[Role::Evaluator], &[]),
    ("audrey", &[Role::Auditor], &[]),
];

/// Randomised before the service starts: one at each coordinator's site.
pub const AT_SHEFFIELD: &str = "S-001";
pub const AT_ROTHERHAM: &str = "R-001";

/// A trial with the test accounts, a token each, and the service's router on it.
pub struct App {
    pub _dir: tempfile::TempDir,
    pub db: PathBuf,
    pub state: AppState,
    pub router: Router,
    pub tokens: Vec<(&'static str, String)>,
}

/// An answer: status, headers, body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

pub fn clock() -> Clock {
    Clock::Fixed(Timestamp::parse(NOW).unwrap())
}

/// Adds `accounts` (name, roles, sites; password [`PASSWORD`]; acting user
/// `tester`, at the fixed time) to `db`.
pub fn add_accounts(db: &std::path::Path, accounts: &[(&str, &[Role], &[&str])]) {
    let mut trial = op::open(db).unwrap();
    for (name, roles, sites) in accounts {
        acc::add_account(
            &mut trial,
            &acc::AddAccountRequest {
                name: name.to_string(),
                roles: roles.to_vec(),
                sites: sites.iter().map(|s| s.to_string()).collect(),
                password: PASSWORD.into(),
                reason: "test account".into(),
                user: "tester".into(),
                clock: clock(),
            },
        )
        .unwrap_or_else(|e| panic!("adding {name}: {e}"));
    }
}

/// A randomised referral at `site` (through the command line).
pub fn randomise_cli(db: &std::path::Path, participant: &str, site: &str, nhs_number: &str) {
    let mut args = util::s(&["randomise", "--db"]);
    args.push(db.display().to_string());
    args.extend(referral_args(participant, site, nhs_number, &[]));
    chancery().args(&args).assert().success();
}

impl App {
    pub fn new() -> App {
        App::with(|_| {})
    }

    /// As [`App::new`], with the options changed by `change` first.
    pub fn with(change: impl FnOnce(&mut ServeOptions)) -> App {
        let dir = tempfile::tempdir().unwrap();
        let db = util::init(dir.path(), "work-health-ips.toml");
        randomise_cli(&db, AT_SHEFFIELD, "sheffield", &nhs(1));
        randomise_cli(&db, AT_ROTHERHAM, "rotherham", &nhs(2));
        add_accounts(&db, ACCOUNTS);
        let mut tokens = Vec::new();
        {
            let mut trial = op::open(&db).unwrap();
            for (name, _, _) in ACCOUNTS {
                let t = acc::create_token(
                    &mut trial,
                    &acc::TokenRequest {
                        account: name.to_string(),
                        expires_days: 30,
                        user: "tester".into(),
                        clock: clock(),
                    },
                )
                .unwrap();
                tokens.push((*name, t.token));
            }
        }
        let mut options = ServeOptions::new(db.clone());
        options.clock = clock();
        change(&mut options);
        let key = op::read_trial_key(&op::key_path(&db, None)).unwrap();
        let signing = op::read_signing_key(&op::key_path(&db, None)).ok();
        let (state, _writer) = AppState::new(options, key, signing).unwrap();
        let router = router(state.clone());
        App { _dir: dir, db, state, router, tokens }
    }

    pub fn token(&self, name: &str) -> &str {
        &self.tokens.iter().find(|(n, _)| *n == name).unwrap().1
    }

    /// Sends `request` from 127.0.0.1.
    pub async fn send(&self, mut request: Request<Body>) -> Answer {
        request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap().to_vec();
        Answer { status, headers, body }
    }

    /// `method path` as `who` (by bearer token), with a JSON body if given.
    pub async fn call(&self, who: Who, method: &str, path: &str, body: Option<Value>) -> Answer {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(name) = who {
            b = b.header(header::AUTHORIZATION, format!("Bearer {}", self.token(name)));
        }
        let request = match body {
            Some(v) => b.header(header::CONTENT_TYPE, "application/json").body(Body::from(v.to_string())),
            None => b.body(Body::empty()),
        };
        self.send(request.unwrap()).await
    }

    /// Logs in through the API; returns the session cookie and CSRF token.
    pub async fn login(&self, name: &str) -> (String, String) {
        let a = self.call(None, "POST", "/api/v1/login", Some(json!({"name": name, "password": PASSWORD}))).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        let cookie = a.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_string();
        let cookie = cookie.split(';').next().unwrap().to_string();
        (cookie, a.json()["csrf"].as_str().unwrap().to_string())
    }

    /// `method path` with a session cookie and, if given, a CSRF header.
    pub async fn with_session(
        &self,
        cookie: &str,
        csrf: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut b = Request::builder().method(method).uri(path).header(header::COOKIE, cookie);
        if let Some(t) = csrf {
            b = b.header("x-csrf-token", t);
        }
        let request = match body {
            Some(v) => b.header(header::CONTENT_TYPE, "application/json").body(Body::from(v.to_string())),
            None => b.body(Body::empty()),
        };
        self.send(request.unwrap()).await
    }

    pub fn log(&self) -> String {
        util::log_snapshot(&self.db)
    }
}

/// The fields of an eligible, consenting referral, as the API's `values`.
pub fn referral_values(nhs_number: &str) -> Value {
    let mut v = serde_json::Map::new();
    v.insert("nhs_number".into(), json!(nhs_number));
    for (k, x) in REFERRAL_FIELDS {
        v.insert(k.into(), json!(x));
    }
    Value::Object(v)
}

/// A route the matrix walks: method, path, a body for a caller (`n` makes
/// each caller's body distinct), and who may use it.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub body: fn(n: u32) -> Option<Value>,
    /// The accounts allowed; everyone else gets 403 (or, for a coordinator
    /// asking about another site's participant, the unknown participant's 404).
    pub allowed: &'static [&'static str],
}

const EVERYONE: &[&str] = &["ann", "cora", "colin", "dora", "eve", "audrey"];

/// Every authenticated API route (`/healthz`, the description and login
/// need none; the CSV import is walked separately for its body).
pub const ROUTES: &[Route] = &[
    Route { method: "GET", path: "/api/v1/session", body: |_| None, allowed: EVERYONE },
    Route { method: "GET", path: "/api/v1/status", body: |_| None, allowed: EVERYONE },
    Route {
        method: "POST",
        path: "/api/v1/randomise",
        body: |n| {
            Some(
                json!({"participant": format!("M-{n}"), "site": "sheffield", "values": referral_values(&nhs(100 + n))}),
            )
        },
        allowed: &["cora"],
    },
    Route {
        method: "POST",
        path: "/api/v1/outcomes",
        body: |_| {
            Some(json!({"participant": AT_SHEFFIELD, "timepoint": "m4", "collected_on": "2026-03-02",
                "window_reason": "contacted early", "values": {"in_paid_work": "no"}}))
        },
        allowed: &["cora"],
    },
    Route {
        method: "POST",
        path: "/api/v1/outcomes/correct",
        body: |_| {
            Some(json!({"participant": AT_SHEFFIELD, "timepoint": "m4", "field": "in_paid_work", "value": "yes",
                "reason": "misread"}))
        },
        allowed: &["dora"],
    },
    Route {
        method: "POST",
        path: "/api/v1/status-changes",
        body: |_| Some(json!({"participant": AT_SHEFFIELD, "change": "lost", "reason": "moved away"})),
        allowed: &["cora"],
    },
    Route { method: "GET", path: "/api/v1/due", body: |_| None, allowed: &["cora", "colin", "dora"] },
    Route { method: "GET", path: "/api/v1/export/allocations", body: |_| None, allowed: &["eve"] },
    Route { method: "GET", path: "/api/v1/export/log?format=json", body: |_| None, allowed: &["eve", "audrey"] },
    Route { method: "GET", path: "/api/v1/verify", body: |_| None, allowed: &["audrey"] },
    Route { method: "POST", path: "/api/v1/checkpoint", body: |_| None, allowed: &["ann", "audrey"] },
    Route { method: "POST", path: "/api/v1/logout", body: |_| None, allowed: EVERYONE },
];

/// What a refusal may say: the fixed message, nothing of the trial's data.
fn discloses_nothing(a: &Answer) {
    let text = a.text();
    for secret in [AT_SHEFFIELD, AT_ROTHERHAM, "ips", "usual_care", "randomised", "stratum"] {
        assert!(!text.contains(secret), "a refusal disclosed {secret:?}: {text}");
    }
    assert!(!text.chars().any(|c| c.is_ascii_digit()), "a refusal disclosed a number: {text}");
}

#[tokio::test]
async fn every_route_answers_every_role_as_the_table_says_and_refusals_disclose_nothing() {
    let app = App::new();
    let before = app.log();
    // Refusals first: none of them may write.
    for (i, r) in ROUTES.iter().enumerate() {
        let a = app.call(None, r.method, r.path, (r.body)(i as u32)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{} {} without auth: {}", r.method, r.path, a.text());
        assert_eq!(a.json(), json!({"error": a.json()["error"], "field": null}));
        discloses_nothing(&a);
        for who in EVERYONE.iter().filter(|w| !r.allowed.contains(w)) {
            let a = app.call(Some(who), r.method, r.path, (r.body)(i as u32)).await;
            // A coordinator of another site is told the participant does not exist.
            let other_site = *who == "colin" && r.path != "/api/v1/randomise" && r.allowed == ["cora"];
            if other_site {
                assert_eq!(a.status, StatusCode::NOT_FOUND, "{who}: {} {}: {}", r.method, r.path, a.text());
            } else {
                assert_eq!(a.status, StatusCode::FORBIDDEN, "{who}: {} {}: {}", r.method, r.path, a.text());
                discloses_nothing(&a);
            }
        }
    }
    assert_eq!(app.log(), before, "a refused request wrote to the log");
    for (i, r) in ROUTES.iter().enumerate() {
        for who in r.allowed {
            let a = app.call(Some(who), r.method, r.path, (r.body)(i as u32 * 10 + 1)).await;
            assert!(
                a.status.is_success(),
                "{who}: {} {} should be allowed: {} {}",
                r.method,
                r.path,
                a.status,
                a.text()
            );
        }
    }
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_the_router_serves() {
    let app = App::new();
    let doc = app.call(None, "GET", "/api/v1/openapi.json", None).await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for method in methods.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    let mut served: Vec<(String, String)> = chancery::service::api::routes()
        .into_iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .chain(std::iter::once(chancery::service::api::import_route()).map(|(m, p, _)| (m.to_string(), p.to_string())))
        .collect();
    served.sort();
    assert_eq!(documented, served);
    // Each documented route is served (not 404, not 405), and the matrix walks it.
    for (method, path) in &documented {
        let path = path.replace("{what}", "codebook");
        let a = app.call(Some("eve"), method, &path, None).await;
        assert!(
            a.status != StatusCode::NOT_FOUND && a.status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {}",
            a.status
        );
        let public = ["/healthz", "/api/v1/openapi.json", "/api/v1/login", "/api/v1/outcomes/import"];
        let walked = ROUTES.iter().any(|r| {
            r.method == method && r.path.split('?').next().unwrap().starts_with(path.split("/codebook").next().unwrap())
        });
        assert!(public.contains(&path.as_str()) || walked, "the route matrix does not walk {method} {path}");
    }
}

#[tokio::test]
async fn unknown_routes_methods_and_unreadable_bodies_are_answered_in_json() {
    let app = App::new();
    let a = app.call(Some("cora"), "GET", "/api/v1/nothing-here", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.json()["error"].as_str().unwrap().contains("no such API route"));
    let a = app.call(Some("cora"), "DELETE", "/api/v1/status", None).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(a.json()["error"].as_str().unwrap().contains("does not take that method"));
    let before = app.log();
    let cases: &[(&str, StatusCode, Option<&str>)] = &[
        ("{not json", StatusCode::BAD_REQUEST, None),
        (r#"{"participant": 5, "site": "sheffield"}"#, StatusCode::BAD_REQUEST, Some("participant")),
        (r#"{"site": "sheffield"}"#, StatusCode::BAD_REQUEST, Some("participant")),
        (r#"{"participant": "X", "site": "sheffield", "arm": "ips"}"#, StatusCode::BAD_REQUEST, Some("arm")),
        (r#"{"participant": "X", "site": "sheffield", "values": {"age": 1, "age": 2}}"#, StatusCode::BAD_REQUEST, None),
        (
            r#"{"participant": "X", "site": "sheffield", "values": {"age": null}}"#,
            StatusCode::BAD_REQUEST,
            Some("values.age"),
        ),
    ];
    for (body, status, field) in cases {
        let request = Request::builder()
            .method("POST")
            .uri("/api/v1/randomise")
            .header(header::AUTHORIZATION, format!("Bearer {}", app.token("cora")))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let a = app.send(request).await;
        assert_eq!(a.status, *status, "{body}: {}", a.text());
        let j = a.json();
        assert!(j["error"].is_string(), "{j}");
        if let Some(f) = field {
            assert_eq!(j["field"], *f, "{body}: {j}");
        }
    }
    // A value the protocol refuses is 422 with the field it is about
    // (regression: `field` was null, so an EDC could not show it at its input).
    for (name, bad) in [("age", "340"), ("phq9", "99"), ("sex", "x")] {
        let mut values = referral_values(&nhs(91));
        values[name] = Value::String(bad.into());
        let body = serde_json::json!({"participant": "F-1", "site": "sheffield", "values": values});
        let request = Request::builder()
            .method("POST")
            .uri("/api/v1/randomise")
            .header(header::AUTHORIZATION, format!("Bearer {}", app.token("cora")))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let a = app.send(request).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{name}={bad}: {}", a.text());
        assert_eq!(a.json()["field"], name, "{name}={bad}: {}", a.text());
    }
    // Without a JSON content type; too large.
    let a = app
        .send(
            Request::builder()
                .method("POST")
                .uri("/api/v1/randomise")
                .header(header::AUTHORIZATION, format!("Bearer {}", app.token("cora")))
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", a.text());
    let huge = format!(r#"{{"participant": "{}", "site": "sheffield"}}"#, "x".repeat(3 * 1024 * 1024));
    let a = app.call(Some("cora"), "POST", "/api/v1/randomise", Some(serde_json::from_str(&huge).unwrap())).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text());
    assert!(a.json()["error"].as_str().unwrap().contains("larger than"));
    assert_eq!(app.log(), before, "an unreadable request wrote to the log");
}

#[tokio::test]
async fn a_coordinator_cannot_see_or_change_another_sites_participant_by_guessing_its_id() {
    let app = App::new();
    let before = app.log();
    for (method, path, body) in [
        (
            "POST",
            "/api/v1/outcomes",
            json!({"participant": "ID", "timepoint": "m4", "collected_on": "2026-03-02",
            "window_reason": "early", "values": {"in_paid_work": "yes"}}),
        ),
        ("POST", "/api/v1/status-changes", json!({"participant": "ID", "change": "withdraw", "reason": "asked"})),
    ] {
        let as_body =
            |id: &str| serde_json::from_str::<Value>(&body.to_string().replace("\"ID\"", &format!("{id:?}"))).unwrap();
        let other = app.call(Some("cora"), method, path, Some(as_body(AT_ROTHERHAM))).await;
        let unknown = app.call(Some("cora"), method, path, Some(as_body("R-999"))).await;
        assert_eq!(other.status, StatusCode::NOT_FOUND, "{}", other.text());
        // The same answer, but for the id the caller typed.
        assert_eq!(other.text().replace(AT_ROTHERHAM, "R-999"), unknown.text());
        assert_eq!(other.status, unknown.status);
    }
    // The due list shows only the coordinator's own site.
    let due = app.call(Some("cora"), "GET", "/api/v1/due?on=2026-07-01", None).await;
    assert_eq!(due.status, StatusCode::OK);
    assert!(due.text().contains(AT_SHEFFIELD) && !due.text().contains(AT_ROTHERHAM), "{}", due.text());
    // Randomising at another site is forbidden.
    let a = app
        .call(
            Some("cora"),
            "POST",
            "/api/v1/randomise",
            Some(json!({"participant": "R-002", "site": "rotherham", "values": referral_values(&nhs(50))})),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());
    assert_eq!(a.json()["field"], "site");
    // A person already randomised at another site is refused without naming them.
    let a = app
        .call(
            Some("cora"),
            "POST",
            "/api/v1/randomise",
            Some(json!({"participant": "S-002", "site": "sheffield", "values": referral_values(&nhs(2))})),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text());
    assert!(
        a.text().contains("already randomised at another site") && !a.text().contains(AT_ROTHERHAM),
        "{}",
        a.text()
    );
    assert_eq!(app.log(), before);
}

#[tokio::test]
async fn coordinators_and_data_managers_see_the_status_without_arms() {
    let app = App::new();
    for who in ["cora", "dora"] {
        let s = app.call(Some(who), "GET", "/api/v1/status", None).await;
        assert_eq!(s.status, StatusCode::OK);
        let text = s.text();
        // (The trial's id, work-health-ips, names an arm too.)
        let arms = text.replace("work-health-ips", "");
        assert!(!arms.contains("\"ips\"") && !arms.contains("usual_care") && !arms.contains("by_arm"), "{who}: {text}");
        assert!(s.json()["by_stratum"].as_object().unwrap().values().all(Value::is_u64), "{text}");
        assert_eq!(s.json()["randomised"], 2);
        assert_eq!(s.json()["by_site"]["sheffield"], 1);
    }
    for who in ["ann", "eve", "audrey"] {
        let s = app.call(Some(who), "GET", "/api/v1/status", None).await.json();
        assert!(s["by_arm"].is_object(), "{who}: {s}");
    }
}

/// A twin of the app's trial on which the command line does the same things.
fn twin() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = util::init(dir.path(), "work-health-ips.toml");
    randomise_cli(&db, AT_SHEFFIELD, "sheffield", &nhs(1));
    randomise_cli(&db, AT_ROTHERHAM, "rotherham", &nhs(2));
    add_accounts(&db, ACCOUNTS);
    (dir, db)
}

fn cli_json(args: &[String]) -> Value {
    let out = chancery().args(args).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn the_api_answers_with_the_json_the_command_line_prints() {
    let app = App::new();
    let (_dir, twin_db) = twin();
    let db = twin_db.display().to_string();
    // The tokens were made in the app's trial only: compare from here on,
    // where both logs differ only by the token events before.
    let api = app
        .call(
            Some("cora"),
            "POST",
            "/api/v1/randomise",
            Some(json!({"participant": "S-002", "site": "sheffield", "values": referral_values(&nhs(3))})),
        )
        .await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.text());
    let mut args = util::s(&["randomise", "--json", "--user", "cora", "--db", &db]);
    args.extend(referral_args("S-002", "sheffield", &nhs(3), &[]));
    let cli = cli_json(&args);
    let (mut a, mut c) = (api.json(), cli);
    for k in ["seq", "entry_hash", "log_length", "head"] {
        // Present in both, but the app's log holds its token events too.
        assert!(a[k].is_number() || a[k].is_string());
        a[k] = Value::Null;
        c[k] = Value::Null;
    }
    assert_eq!(a, c);
    assert!(a["arm"].is_string());

    let api = app
        .call(
            Some("cora"),
            "POST",
            "/api/v1/outcomes",
            Some(json!({"participant": "S-002", "timepoint": "m4", "collected_on": "2026-03-02",
                "window_reason": "contacted early", "values": {"in_paid_work": "yes"}})),
        )
        .await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.text());
    let cli = cli_json(&util::s(&[
        "outcome",
        "record",
        "--json",
        "--user",
        "cora",
        "--db",
        &db,
        "--participant",
        "S-002",
        "--timepoint",
        "m4",
        "--on",
        "2026-03-02",
        "--window-reason",
        "contacted early",
        "--set",
        "in_paid_work=yes",
    ]));
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&api.json()), keys(&cli));
    assert_eq!(api.json()["participant"], cli["participant"]);

    // The status of both trials: the same but for the log's length and head.
    let mut a = app.call(Some("audrey"), "GET", "/api/v1/status", None).await.json();
    let mut c = cli_json(&util::s(&["status", "--json", "--db", &db]));
    for k in ["log_entries", "head"] {
        a[k] = Value::Null;
        c[k] = Value::Null;
    }
    assert_eq!(a, c);

    // The codebook export is byte for byte the command line's.
    let api = app.call(Some("eve"), "GET", "/api/v1/export/codebook?format=json", None).await;
    let cli = chancery().args(["export", "--what", "codebook", "--format", "json", "--db", &db]).output().unwrap();
    assert_eq!(api.body, cli.stdout);
    assert_eq!(api.headers[header::CONTENT_TYPE], "application/json");

    // Verification: the same checks.
    let api = app.call(Some("audrey"), "GET", "/api/v1/verify", None).await.json();
    let cli = cli_json(&util::s(&["verify", "--json", "--db", &db]));
    let names = |v: &Value| v["checks"].as_array().map(|c| c.iter().map(|x| x["name"].clone()).collect::<Vec<_>>());
    assert_eq!(names(&api), names(&cli), "{api}");
}

#[tokio::test]
async fn only_a_data_manager_imports_outcomes_and_only_as_csv() {
    let app = App::new();
    let csv = format!(
        "participant,timepoint,collected_on,window_reason,in_paid_work\n{AT_SHEFFIELD},m4,2026-03-02,early,yes\n"
    );
    let import = |who: &'static str, content_type: &'static str| {
        Request::builder()
            .method("POST")
            .uri("/api/v1/outcomes/import")
            .header(header::AUTHORIZATION, format!("Bearer {}", app.token(who)))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(csv.clone()))
            .unwrap()
    };
    let before = app.log();
    for who in ["ann", "cora", "colin", "eve", "audrey"] {
        let a = app.send(import(who, "text/csv")).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{who}: {}", a.text());
        discloses_nothing(&a);
    }
    let a = app.send(import("dora", "application/json")).await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", a.text());
    assert_eq!(app.log(), before);
    let a = app.send(import("dora", "text/csv")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let written = a.json();
    assert_eq!(written.as_array().unwrap().len(), 1);
    assert_eq!(written[0]["participant"], AT_SHEFFIELD);
    // The same file again is refused as the command line refuses it: 422 or 409, never 500.
    let a = app.send(import("dora", "text/csv")).await;
    assert!(a.status == StatusCode::UNPROCESSABLE_ENTITY || a.status == StatusCode::CONFLICT, "{}", a.text());
}

/// A page route the matrix walks: method, path, form fields (besides the
/// session's `csrf`), and who may use it.
#[derive(Clone, Copy)]
pub struct Page {
    pub method: &'static str,
    pub path: &'static str,
    pub form: &'static str,
    pub allowed: &'static [&'static str],
}

const COORDINATORS: &[&str] = &["cora", "colin"];

/// Every page route (`/login` and the stylesheet need no session).
pub const PAGES: &[Page] = &[
    Page { method: "GET", path: "/", form: "", allowed: EVERYONE },
    Page { method: "GET", path: "/randomise", form: "", allowed: COORDINATORS },
    Page { method: "POST", path: "/randomise", form: "participant=P-NEW&site=sheffield", allowed: &["cora"] },
    Page { method: "GET", path: "/participants", form: "", allowed: &["cora", "colin", "dora"] },
    Page { method: "GET", path: "/participants/S-001", form: "", allowed: &["cora", "dora"] },
    Page {
        method: "POST",
        path: "/participants/S-001/outcomes/m4",
        form: "in_paid_work=yes&collected_on=2026-03-02&window_reason=early",
        allowed: &["cora"],
    },
    Page { method: "POST", path: "/participants/S-001/status", form: "change=lost&reason=moved", allowed: &["cora"] },
    Page { method: "GET", path: "/due", form: "", allowed: &["cora", "colin", "dora"] },
    Page { method: "GET", path: "/status", form: "", allowed: EVERYONE },
    Page { method: "GET", path: "/exports", form: "", allowed: &["eve", "audrey"] },
    Page { method: "GET", path: "/exports/allocations.csv", form: "", allowed: &["eve"] },
    Page { method: "GET", path: "/analysis", form: "", allowed: &["eve"] },
    Page { method: "GET", path: "/report", form: "", allowed: &["eve"] },
    Page { method: "GET", path: "/report.html", form: "", allowed: &["eve"] },
    Page { method: "GET", path: "/verify", form: "", allowed: &["audrey"] },
    Page { method: "GET", path: "/checkpoint", form: "", allowed: &["ann", "audrey"] },
    Page { method: "POST", path: "/checkpoint", form: "", allowed: &["ann", "audrey"] },
    Page { method: "GET", path: "/accounts", form: "", allowed: &["ann"] },
    Page { method: "POST", path: "/accounts", form: "name=new.one&role=auditor&reason=r", allowed: &["ann"] },
    Page { method: "POST", path: "/accounts/nobody/disable", form: "reason=r", allowed: &["ann"] },
    Page { method: "POST", path: "/accounts/nobody/password", form: "password=x&reason=r", allowed: &["ann"] },
    Page { method: "POST", path: "/accounts/nobody/roles", form: "role=auditor&reason=r", allowed: &["ann"] },
    Page { method: "POST", path: "/accounts/nobody/tokens", form: "expires_days=1", allowed: &["ann"] },
    Page { method: "POST", path: "/tokens/none/revoke", form: "reason=r", allowed: &["ann"] },
    Page { method: "POST", path: "/logout", form: "", allowed: EVERYONE },
];

/// What a page's refusal may show: the page's frame, none of the trial's data.
fn page_discloses_nothing(who: &str, path: &str, body: &str) {
    // (A refused form may show back what its caller typed.)
    for secret in [AT_SHEFFIELD, AT_ROTHERHAM, "usual_care", "Usual care"] {
        assert!(!body.contains(secret), "{who} {path}: a refusal disclosed {secret:?}");
    }
}

#[tokio::test]
async fn every_page_answers_every_role_as_the_table_says_and_refusals_disclose_nothing() {
    let app = App::new();
    let page = |cookie: Option<&str>, csrf: Option<&str>, p: &Page| {
        let mut b = Request::builder().method(p.method).uri(p.path);
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        if p.method == "POST" {
            let form = match csrf {
                Some(t) if p.form.is_empty() => format!("csrf={t}"),
                Some(t) => format!("csrf={t}&{}", p.form),
                None => p.form.to_string(),
            };
            b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(Body::from(form)).unwrap()
        } else {
            b.body(Body::empty()).unwrap()
        }
    };
    let before = app.log();
    for p in PAGES {
        let a = app.send(page(None, None, p)).await;
        assert!(a.status.is_redirection(), "{} {} without a session: {}", p.method, p.path, a.status);
        assert_eq!(a.headers[header::LOCATION], "/login");
    }
    let mut sessions = Vec::new();
    for who in EVERYONE {
        sessions.push((*who, app.login(who).await));
    }
    for p in PAGES.iter().filter(|p| p.path != "/logout") {
        for (who, (cookie, csrf)) in sessions.iter().filter(|(w, _)| !p.allowed.contains(w)) {
            let a = app.send(page(Some(cookie), Some(csrf), p)).await;
            let other_site = *who == "colin" && p.path.starts_with("/participants/S-001");
            let expected = if other_site { StatusCode::NOT_FOUND } else { StatusCode::FORBIDDEN };
            assert_eq!(a.status, expected, "{who}: {} {}", p.method, p.path);
            if other_site {
                // Exactly the answer for an id that does not exist.
                let path = p.path.replace(AT_SHEFFIELD, "S-999");
                let unknown = app
                    .send(page(Some(cookie), Some(csrf), &Page { path: Box::leak(path.into_boxed_str()), ..*p }))
                    .await;
                assert_eq!(a.text().replace(AT_SHEFFIELD, "S-999"), unknown.text(), "{who}: {} {}", p.method, p.path);
            } else {
                page_discloses_nothing(who, p.path, &a.text());
            }
        }
    }
    assert_eq!(app.log(), before, "a refused page wrote to the log");
    for p in PAGES {
        for (who, (cookie, csrf)) in sessions.iter().filter(|(w, _)| p.allowed.contains(w)) {
            let a = app.send(page(Some(cookie), Some(csrf), p)).await;
            assert!(
                ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN, StatusCode::METHOD_NOT_ALLOWED].contains(&a.status)
                    && !a.status.is_server_error(),
                "{who}: {} {} should be allowed: {}",
                p.method,
                p.path,
                a.status
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_randomisations_through_the_one_writer_each_get_their_own_committed_entry() {
    let app = std::sync::Arc::new(App::new());
    let mut tasks = Vec::new();
    for i in 0..24u32 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            // Every third one is refused (a site not the coordinator's is 403;
            // a bad age 422) and must be refused alone.
            let (site, age) = if i % 3 == 0 { ("sheffield", "x") } else { ("sheffield", "34") };
            let mut values = referral_values(&nhs(1000 + i));
            values["age"] = json!(age);
            let a = app
                .call(
                    Some("cora"),
                    "POST",
                    "/api/v1/randomise",
                    Some(json!({"participant": format!("C-{i}"), "site": site, "values": values})),
                )
                .await;
            (i, a.status, a.json())
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        let (i, status, body) = t.await.unwrap();
        if i % 3 == 0 {
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        } else {
            assert_eq!(status, StatusCode::OK, "{body}");
            seqs.push(body["seq"].as_u64().unwrap());
        }
    }
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 16, "each allocation its own log entry");
    let status = app.call(Some("audrey"), "GET", "/api/v1/status", None).await.json();
    assert_eq!(status["randomised"], 2 + 16);
    let v = app.call(Some("audrey"), "GET", "/api/v1/verify", None).await.json();
    assert_eq!(v["ok"], true, "{v}");
}
