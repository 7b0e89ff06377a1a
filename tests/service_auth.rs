//! The service's sessions, CSRF, expiry, logout, lockout, rate limit and
//! tokens, in process (see `service_api.rs` for the app). The sessions'
//! clock is the state's [`SessionClock`](chancery::service::state::SessionClock),
//! moved forward here instead of waiting.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use chancery::operations::{self as op, accounts as acc};
use serde_json::json;

use crate::service_api::{App, PASSWORD, clock, referral_values};
use crate::util::nhs;

#[tokio::test]
async fn a_session_cookie_is_http_only_strict_and_secure_only_under_tls() {
    let app = App::new();
    let a = app.call(None, "POST", "/api/v1/login", Some(json!({"name": "cora", "password": PASSWORD}))).await;
    let cookie = a.headers[header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    let tls = App::with(|o| o.tls = Some(("cert.pem".into(), "key.pem".into())));
    let a = tls.call(None, "POST", "/api/v1/login", Some(json!({"name": "cora", "password": PASSWORD}))).await;
    assert!(a.headers[header::SET_COOKIE].to_str().unwrap().contains("; Secure"));
    // The session's own answers are never cached and carry the security headers.
    for (name, value) in [
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ] {
        assert_eq!(a.headers[name], value, "{name}");
    }
    assert!(a.headers["content-security-policy"].to_str().unwrap().starts_with("default-src 'self'"));
}

#[tokio::test]
async fn a_post_with_a_session_but_without_its_csrf_token_is_refused_and_writes_nothing() {
    let app = App::new();
    let (cookie, csrf) = app.login("cora").await;
    let before = app.log();
    let body = || Some(json!({"participant": "S-010", "site": "sheffield", "values": referral_values(&nhs(10))}));
    for token in [None, Some("0000"), Some(&csrf[..csrf.len() - 1])] {
        let a = app.with_session(&cookie, token, "POST", "/api/v1/randomise", body()).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{token:?}: {}", a.text());
        assert!(a.json()["error"].as_str().unwrap().contains("CSRF token"), "{}", a.text());
    }
    // A form post with a wrong csrf field is refused the same way.
    let a = app
        .send(
            Request::builder()
                .method("POST")
                .uri("/api/v1/checkpoint")
                .header(header::COOKIE, &cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from("csrf=wrong"))
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(app.log(), before, "a POST without its CSRF token wrote to the log");
    // With it: done. GETs need none.
    let a = app.with_session(&cookie, Some(&csrf), "POST", "/api/v1/randomise", body()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let a = app.with_session(&cookie, None, "GET", "/api/v1/due", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
}

#[tokio::test]
async fn a_session_ends_after_its_idle_time_and_at_its_absolute_limit_and_at_logout() {
    let app = App::with(|o| {
        o.idle = Duration::from_secs(60);
        o.absolute = Duration::from_secs(300);
    });
    let (cookie, _) = app.login("cora").await;
    app.state.clock().advance(Duration::from_secs(59));
    assert_eq!(app.with_session(&cookie, None, "GET", "/api/v1/session", None).await.status, StatusCode::OK);
    app.state.clock().advance(Duration::from_secs(61));
    let a = app.with_session(&cookie, None, "GET", "/api/v1/session", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "idle session still works: {}", a.text());

    // Used every 50 seconds it lives until the absolute limit, no longer.
    let (cookie, _) = app.login("cora").await;
    for _ in 0..5 {
        app.state.clock().advance(Duration::from_secs(50));
        assert_eq!(app.with_session(&cookie, None, "GET", "/api/v1/session", None).await.status, StatusCode::OK);
    }
    app.state.clock().advance(Duration::from_secs(51));
    assert_eq!(app.with_session(&cookie, None, "GET", "/api/v1/session", None).await.status, StatusCode::UNAUTHORIZED);

    let (cookie, csrf) = app.login("cora").await;
    let a = app.with_session(&cookie, Some(&csrf), "POST", "/api/v1/logout", None).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(a.headers[header::SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(app.with_session(&cookie, None, "GET", "/api/v1/session", None).await.status, StatusCode::UNAUTHORIZED);
}

async fn login_from(app: &App, ip: [u8; 4], name: &str, password: &str) -> crate::service_api::Answer {
    let mut request = Request::builder()
        .method("POST")
        .uri("/api/v1/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"name": name, "password": password}).to_string()))
        .unwrap();
    request.extensions_mut().insert(ConnectInfo(SocketAddr::from((ip, 1234))));
    let response = tower::ServiceExt::oneshot(app.router.clone(), request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap().to_vec();
    crate::service_api::Answer { status, headers, body }
}

#[tokio::test]
async fn repeated_wrong_passwords_lock_the_account_and_one_address_is_rate_limited() {
    let app = App::new();
    for i in 0..5 {
        let a = login_from(&app, [10, 0, 0, i], "cora", "wrong password").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
        assert!(a.text().contains("wrong name or password"), "{}", a.text());
    }
    // Locked now, even with the right password.
    let a = login_from(&app, [10, 0, 0, 9], "cora", PASSWORD).await;
    assert_ne!(a.status, StatusCode::OK, "a locked account logged in");
    assert!(a.text().contains("locked"), "{}", a.text());
    // An unknown name is told the same as a wrong password.
    let a = login_from(&app, [10, 0, 1, 1], "nobody", PASSWORD).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.text().contains("wrong name or password"), "{}", a.text());

    // Ten attempts a minute from one address, then 429 with Retry-After.
    for _ in 0..10 {
        assert_eq!(login_from(&app, [10, 0, 2, 1], "ann", "wrong").await.status, StatusCode::UNAUTHORIZED);
    }
    let a = login_from(&app, [10, 0, 2, 1], "eve", PASSWORD).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.text());
    assert!(a.headers.contains_key(header::RETRY_AFTER));
    // Another address is not held back; a minute later neither is this one.
    assert_eq!(login_from(&app, [10, 0, 2, 2], "eve", PASSWORD).await.status, StatusCode::OK);
    app.state.clock().advance(Duration::from_secs(61));
    assert_eq!(login_from(&app, [10, 0, 2, 1], "eve", PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_revoked_token_stops_working_at_the_next_request() {
    let app = App::new();
    assert_eq!(app.call(Some("eve"), "GET", "/api/v1/session", None).await.status, StatusCode::OK);
    let mut trial = op::open(&app.db).unwrap();
    let id =
        acc::list_accounts(&trial).unwrap().into_iter().find(|a| a.account.name == "eve").unwrap().tokens[0].id.clone();
    acc::revoke_token(
        &mut trial,
        &acc::RevokeRequest { id, reason: "leaked".into(), user: "ann".into(), clock: clock() },
    )
    .unwrap();
    let a = app.call(Some("eve"), "GET", "/api/v1/session", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
    // A made-up token is refused the same way.
    let a = app
        .send(
            Request::builder()
                .uri("/api/v1/status")
                .header(header::AUTHORIZATION, "Bearer made-up")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_disabled_accounts_session_and_token_stop_working_at_once() {
    let app = App::new();
    let (cookie, _) = app.login("cora").await;
    assert_eq!(app.with_session(&cookie, None, "GET", "/api/v1/due", None).await.status, StatusCode::OK);
    let mut trial = op::open(&app.db).unwrap();
    acc::disable_account(
        &mut trial,
        &acc::AccountRequest {
            name: "cora".into(),
            password: String::new(),
            reason: "left".into(),
            user: "ann".into(),
            clock: clock(),
        },
    )
    .unwrap();
    assert_eq!(app.with_session(&cookie, None, "GET", "/api/v1/due", None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.call(Some("cora"), "GET", "/api/v1/due", None).await.status, StatusCode::UNAUTHORIZED);
    let a = app.call(None, "POST", "/api/v1/login", Some(json!({"name": "cora", "password": PASSWORD}))).await;
    assert_ne!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn healthz_answers_without_authentication_and_without_trial_data() {
    let app = App::new();
    let a = app.call(None, "GET", "/healthz", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.text(), "ok");
}

/// `chancery serve` with `args`, expected to refuse to start with `needle`.
fn serve_refuses(args: &[&str], needle: &str) {
    let out = crate::util::chancery().arg("serve").args(args).timeout(Duration::from_secs(20)).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(needle), "{stderr}");
    assert!(out.stdout.is_empty(), "it said it was listening: {}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn serve_refuses_a_key_others_can_read_a_key_of_another_trial_and_plain_http_beyond_loopback() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = crate::util::init(dir.path(), "work-health-ips.toml");
    let db_arg = db.to_str().unwrap();
    serve_refuses(
        &["--db", db_arg, "--listen", "0.0.0.0:0"],
        "is not a loopback address and no --tls-cert/--tls-key were given",
    );
    // Another trial's key.
    let other = tempfile::tempdir().unwrap();
    let other_db = other.path().join("other.db");
    crate::util::chancery()
        .args(["init", "--protocol"])
        .arg(crate::util::protocol("work-health-ips.toml"))
        .arg("--db")
        .arg(&other_db)
        .assert()
        .success();
    let other_key = format!("{}.key", other_db.display());
    serve_refuses(&["--db", db_arg, "--key", &other_key, "--listen", "127.0.0.1:0"], "is not this trial's key");
    // A key file others can read.
    let key = format!("{db_arg}.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    serve_refuses(&["--db", db_arg, "--listen", "127.0.0.1:0"], "key file");
    // A mistyped database is named as such, not as its key file missing
    // (regression: it said "key file nosuch.db.key not found").
    let missing = dir.path().join("nosuch.db");
    let out = crate::util::chancery()
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(&missing)
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nosuch.db") && !stderr.contains("key file"), "{stderr}");
    assert!(!missing.exists(), "serve created the database it was pointed at");
}

#[test]
fn serve_prints_its_address_first_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let db = crate::util::init(dir.path(), "work-health-ips.toml");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("chancery"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let address = first.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{first}")).to_string();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"), "{answer}");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
