//! The service's hostile-input catalogue: careless or malicious HTTP, sent
//! as raw bytes to a running `chancery serve` (so nothing is tidied by a
//! client on the way). Every case must get a clear 4xx (on /api, a JSON
//! `{"error": …}`), never a 500, never a panic, and leave the log exactly as
//! it was.

use crate::service_util::*;
use crate::util::nhs;

/// What one case sends and what it must get back.
struct Case {
    name: &'static str,
    request: Vec<u8>,
    /// The statuses that answer it correctly (all 4xx).
    expect: &'static [u16],
    /// Whether the answer must be the API's JSON error.
    json: bool,
    /// Something the answer's body must say (case-insensitive): the reason
    /// this input is refused, so a case refused for another reason fails.
    needle: Option<&'static str>,
    /// Something the answer must never contain (what an attack would fetch
    /// or inject).
    never: Option<&'static str>,
}

fn case(name: &'static str, request: Vec<u8>, expect: &'static [u16], json: bool) -> Case {
    Case { name, request, expect, json, needle: None, never: None }
}

impl Case {
    fn saying(mut self, needle: &'static str) -> Case {
        self.needle = Some(needle);
        self
    }

    fn never(mut self, text: &'static str) -> Case {
        self.never = Some(text);
        self
    }
}

/// A JSON API request with a bearer token.
fn api(method: &str, path: &str, token: &str, body: &[u8]) -> Vec<u8> {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    request(method, path, &headers, body)
}

/// `POST /api/v1/randomise` with `body` as JSON text.
fn randomise(token: &str, body: &str) -> Vec<u8> {
    api("POST", "/api/v1/randomise", token, body.as_bytes())
}

/// A complete referral's JSON with one change made to it.
fn referral_with(f: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut body = randomise_body("H1", "sheffield", &nhs(5_000));
    f(&mut body);
    body.to_string()
}

fn with_value(field: &str, value: serde_json::Value) -> String {
    referral_with(|b| {
        b["values"][field] = value;
    })
}

/// `POST /api/v1/outcomes` for P1 at m4 with one change made.
fn outcome_with(f: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut body = serde_json::json!({
        "participant": "P1", "timepoint": "m4", "collected_on": today(),
        "values": {"phq9": "10"}, "window_reason": "collected early for a test"
    });
    f(&mut body);
    body.to_string()
}

fn today() -> String {
    chrono::Utc::now().date_naive().to_string()
}

const BAD: &[u16] = &[400, 422];
const UNAUTHENTICATED: &[u16] = &[401];
const NOT_FOUND: &[u16] = &[400, 404];

#[test]
fn hostile_http_inputs_are_refused_with_a_clear_4xx_and_change_nothing() {
    // The trial at a fixed time in the past, so that a token made then has
    // already expired; everything after on the system clock.
    let t = Fixture::at(Some("2026-01-05T09:00:00Z"));
    t.user("old", &["coordinator"], &["sheffield"]);
    let expired = t.token_with("old", &["--expires-days", "1"]);
    t.set_now(None);
    t.user("cora", &["coordinator"], &["sheffield"]);
    t.user("eve", &["evaluator"], &[]);
    t.user("ada", &["admin"], &[]);
    let cora = t.token("cora");
    let eve = t.token("eve");
    let revoked = t.token("cora");
    t.revoke(&revoked);
    t.randomise("P1", "sheffield", &nhs(1));
    t.randomise("R1", "rotherham", &nhs(2));
    let s = t.serve();
    let (coordinator, evaluator) =
        block_on(async { (session(&s, "cora", PASSWORD).await, session(&s, "eve", PASSWORD).await) });
    let cookie = coordinator.cookie.clone();
    // The session cookie with its value's last character changed.
    let forged = {
        let mut c = cookie.split(';').next().unwrap().trim().to_string();
        let last = c.pop().unwrap();
        c.push(if last == 'a' { 'b' } else { 'a' });
        c
    };
    let mut one_off = cora.clone();
    let last = one_off.pop().unwrap();
    one_off.push(if last == 'x' { 'y' } else { 'x' });
    let good = randomise_body("H1", "sheffield", &nhs(5_000)).to_string();
    let nested = format!(
        "{{\"participant\":\"H1\",\"site\":\"sheffield\",\"values\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let huge_string = "9".repeat(300_000);
    let page_form = |csrf: Option<&str>| {
        let mut body = format!("participant=H2&site=sheffield&nhs_number={}", nhs(5_001));
        for (k, v) in crate::util::REFERRAL_FIELDS {
            body.push_str(&format!("&{k}={v}"));
        }
        if let Some(c) = csrf {
            body.push_str(&format!("&csrf={c}"));
        }
        body
    };
    let form_headers = |cookie: &str| -> Vec<(String, String)> {
        vec![("Cookie".into(), cookie.to_string()), ("Content-Type".into(), "application/x-www-form-urlencoded".into())]
    };
    let page_post = |path: &str, cookie: &str, body: &str| {
        let h = form_headers(cookie);
        let h: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        request("POST", path, &h, body.as_bytes())
    };
    let auth = format!("Bearer {cora}");
    let ev_cookie = evaluator.cookie.clone();

    let cases = vec![
        // Malformed JSON and wrong shapes.
        case("malformed JSON", randomise(&cora, "{\"participant\": \"H1\", "), BAD, true),
        case("an empty JSON body", randomise(&cora, ""), &[400, 415, 422], true),
        case("a JSON array, not an object", randomise(&cora, "[1, 2, 3]"), BAD, true),
        case("JSON with trailing garbage", randomise(&cora, &format!("{good} trailing")), BAD, true),
        case("a byte-order mark before the JSON", randomise(&cora, &format!("\u{feff}{good}")), BAD, true),
        case(
            "the participant as a number",
            randomise(&cora, &referral_with(|b| b["participant"] = 12.into())),
            BAD,
            true,
        )
        .saying("participant"),
        case("values as a string", randomise(&cora, &referral_with(|b| b["values"] = "age=34".into())), BAD, true)
            .saying("values"),
        case(
            "a value that is an object",
            randomise(&cora, &with_value("age", serde_json::json!({"n": 34}))),
            BAD,
            true,
        )
        .saying("age"),
        case(
            "an unknown top-level field choosing the arm",
            randomise(&cora, &referral_with(|b| b["arm"] = "ips".into())),
            BAD,
            true,
        )
        .saying("arm"),
        case(
            "the participant missing",
            randomise(&cora, &referral_with(|b| drop(b.as_object_mut().unwrap().remove("participant")))),
            BAD,
            true,
        )
        .saying("participant"),
        case(
            "the site missing",
            randomise(&cora, &referral_with(|b| drop(b.as_object_mut().unwrap().remove("site")))),
            BAD,
            true,
        )
        .saying("site"),
        case("a field given twice", randomise(&cora, &good.replacen("{", "{\"participant\":\"H9\",", 1)), BAD, true)
            .saying("participant"),
        case("JSON nested 100,000 deep", randomise(&cora, &nested), &[400, 413, 422], true),
        case(
            "invalid UTF-8 in the body",
            {
                let mut b = good.clone().into_bytes();
                let at = b.windows(6).position(|w| w == b"female").unwrap();
                b.splice(at..at + 1, [0xff, 0xfe]);
                api("POST", "/api/v1/randomise", &cora, &b)
            },
            BAD,
            true,
        ),
        case(
            "JSON sent as text/plain",
            request(
                "POST",
                "/api/v1/randomise",
                &[("Authorization", &auth), ("Content-Type", "text/plain")],
                good.as_bytes(),
            ),
            &[400, 415],
            true,
        ),
        case(
            "JSON sent with no content type",
            request("POST", "/api/v1/randomise", &[("Authorization", &auth)], good.as_bytes()),
            &[400, 415],
            true,
        ),
        case(
            "a 64 MiB body declared",
            {
                let mut r = format!(
                    "POST /api/v1/randomise HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {auth}\r\n\
                     Content-Type: application/json\r\nContent-Length: 67108864\r\n\r\n"
                )
                .into_bytes();
                r.extend_from_slice(&[b' '; 1 << 20]);
                r
            },
            &[413],
            true,
        ),
        case(
            "an 8 MiB chunked body",
            {
                let mut r = format!(
                    "POST /api/v1/randomise HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {auth}\r\n\
                     Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                .into_bytes();
                let chunk = vec![b' '; 1 << 16];
                for _ in 0..128 {
                    r.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    r.extend_from_slice(&chunk);
                    r.extend_from_slice(b"\r\n");
                }
                r.extend_from_slice(b"0\r\n\r\n");
                r
            },
            &[413],
            true,
        ),
        // Values the trial refuses.
        case(
            "a 300,000-digit age",
            randomise(&cora, &with_value("age", huge_string.clone().into())),
            &[413, 422],
            true,
        ),
        case("age out of range", randomise(&cora, &with_value("age", "101".into())), &[422], true).saying("age"),
        case(
            "age beyond 64 bits",
            randomise(&cora, &with_value("age", "99999999999999999999999".into())),
            &[422],
            true,
        )
        .saying("age"),
        case("age NaN", randomise(&cora, &with_value("age", "NaN".into())), &[422], true).saying("age"),
        case("EQ-5D below its floor", randomise(&cora, &with_value("eq5d", "-0.3".into())), &[422], true)
            .saying("eq5d"),
        case("a level that does not exist", randomise(&cora, &with_value("sex", "robot".into())), &[422], true)
            .saying("sex"),
        case(
            "an unknown field in values",
            randomise(&cora, &with_value("favourite_colour", "blue".into())),
            &[422],
            true,
        )
        .saying("favourite_colour"),
        case("an invalid NHS number", randomise(&cora, &with_value("nhs_number", "1234567890".into())), &[422], true)
            .saying("nhs"),
        case("a NUL in a value", randomise(&cora, &with_value("sex", "fem\u{0}ale".into())), &[400, 422], true),
        case(
            "SQL in the participant id",
            randomise(&cora, &referral_with(|b| b["participant"] = "x'); DROP TABLE log;--".into())),
            &[422],
            true,
        )
        .saying("participant id"),
        case(
            "a script in the participant id",
            randomise(&cora, &referral_with(|b| b["participant"] = "<script>alert(1)</script>".into())),
            &[422],
            true,
        )
        // (Quoted back in JSON, served as application/json with nosniff: inert.)
        .saying("participant id"),
        case(
            "a NUL in the participant id",
            randomise(&cora, &referral_with(|b| b["participant"] = "P\u{0}9".into())),
            &[400, 422],
            true,
        ),
        case(
            "terminal escapes in the participant id",
            randomise(&cora, &referral_with(|b| b["participant"] = "P\u{1b}[31m9".into())),
            &[422],
            true,
        )
        .saying("participant id"),
        case(
            "a 10,000-character participant id",
            randomise(&cora, &referral_with(|b| b["participant"] = "P".repeat(10_000).into())),
            &[413, 422],
            true,
        ),
        case(
            "a site that does not exist",
            randomise(&cora, &referral_with(|b| b["site"] = "atlantis".into())),
            &[403, 404, 422],
            true,
        ),
        case(
            "another coordinator's site",
            randomise(&cora, &referral_with(|b| b["site"] = "rotherham".into())),
            &[403],
            true,
        ),
        case(
            "a participant randomised before",
            randomise(&cora, &randomise_body("P1", "sheffield", &nhs(5_002)).to_string()),
            &[409, 422],
            true,
        )
        .saying("P1"),
        // Outcomes: dates and numbers.
        case(
            "the 30th of February",
            api(
                "POST",
                "/api/v1/outcomes",
                &cora,
                outcome_with(|b| b["collected_on"] = "2026-02-30".into()).as_bytes(),
            ),
            BAD,
            true,
        )
        .saying("2026-02-30"),
        case(
            "a date in words",
            api("POST", "/api/v1/outcomes", &cora, outcome_with(|b| b["collected_on"] = "yesterday".into()).as_bytes()),
            BAD,
            true,
        )
        .saying("yesterday"),
        case(
            "a collection date in the future",
            api(
                "POST",
                "/api/v1/outcomes",
                &cora,
                outcome_with(|b| b["collected_on"] = "2099-01-01".into()).as_bytes(),
            ),
            &[422],
            true,
        )
        .saying("2099-01-01"),
        case(
            "an outcome out of range",
            api("POST", "/api/v1/outcomes", &cora, outcome_with(|b| b["values"]["phq9"] = "99".into()).as_bytes()),
            &[422],
            true,
        )
        .saying("phq9"),
        case(
            "a timepoint that does not exist",
            api("POST", "/api/v1/outcomes", &cora, outcome_with(|b| b["timepoint"] = "m99".into()).as_bytes()),
            &[422],
            true,
        )
        .saying("m99"),
        case(
            "an outcome for another site's participant",
            api("POST", "/api/v1/outcomes", &cora, outcome_with(|b| b["participant"] = "R1".into()).as_bytes()),
            &[404],
            true,
        ),
        case(
            "a status change that does not exist",
            api(
                "POST",
                "/api/v1/status-changes",
                &cora,
                serde_json::json!({"participant": "P1", "change": "resurrect", "reason": "test"})
                    .to_string()
                    .as_bytes(),
            ),
            BAD,
            true,
        )
        .saying("resurrect"),
        case(
            "a status change on the 30th of February",
            api(
                "POST",
                "/api/v1/status-changes",
                &cora,
                serde_json::json!({"participant": "P1", "change": "lost", "reason": "test", "on": "2026-02-30"})
                    .to_string()
                    .as_bytes(),
            ),
            BAD,
            true,
        )
        .saying("2026-02-30"),
        case("the due list on the 30th of February", api("GET", "/api/v1/due?on=2026-02-30", &cora, b""), BAD, true)
            .saying("2026-02-30"),
        // Authentication.
        case("no credentials", request("GET", "/api/v1/status", &[], b""), UNAUTHENTICATED, true),
        case(
            "an empty bearer token",
            request("GET", "/api/v1/status", &[("Authorization", "Bearer ")], b""),
            UNAUTHENTICATED,
            true,
        ),
        case(
            "a malformed bearer token",
            request("GET", "/api/v1/status", &[("Authorization", "Bearer !!!'\"<>")], b""),
            UNAUTHENTICATED,
            true,
        ),
        case(
            "a token under another scheme",
            request("GET", "/api/v1/status", &[("Authorization", &format!("Basic {cora}"))], b""),
            UNAUTHENTICATED,
            true,
        ),
        case("a token one character off", api("GET", "/api/v1/status", &one_off, b""), UNAUTHENTICATED, true),
        case("a revoked token", randomise(&revoked, &good), UNAUTHENTICATED, true),
        case("an expired token", randomise(&expired, &good), UNAUTHENTICATED, true),
        case(
            "a forged session cookie",
            request("GET", "/api/v1/status", &[("Cookie", &forged)], b""),
            UNAUTHENTICATED,
            true,
        ),
        case("a form without its CSRF token", page_post("/randomise", &cookie, &page_form(None)), &[403], false),
        case(
            "a form with a wrong CSRF token",
            page_post("/randomise", &cookie, &page_form(Some("0000000000000000"))),
            &[403],
            false,
        ),
        case(
            "an API write by session without its CSRF token",
            request(
                "POST",
                "/api/v1/randomise",
                &[("Cookie", &cookie), ("Content-Type", "application/json")],
                good.as_bytes(),
            ),
            &[401, 403],
            true,
        ),
        // Downloads and paths.
        case(
            "path traversal in an export name",
            api("GET", "/api/v1/export/..%2f..%2fetc%2fpasswd", &eve, b""),
            NOT_FOUND,
            true,
        )
        .never("root:"),
        case(
            "dot segments in an export page",
            request("GET", "/exports/../../x.csv", &[("Cookie", &ev_cookie)], b""),
            NOT_FOUND,
            false,
        )
        .never("root:"),
        case(
            "encoded dot segments in an export page",
            request("GET", "/exports/%2e%2e%2f%2e%2e%2fetc%2fpasswd.csv", &[("Cookie", &ev_cookie)], b""),
            NOT_FOUND,
            false,
        )
        .never("root:"),
        case("a NUL in an export name", api("GET", "/api/v1/export/log%00.csv", &eve, b""), NOT_FOUND, true),
        case("an export format that does not exist", api("GET", "/api/v1/export/log?format=xml", &eve, b""), BAD, true)
            .saying("format"),
        case("the format given twice", api("GET", "/api/v1/export/log?format=csv&format=json", &eve, b""), BAD, true)
            .saying("format"),
        case(
            "CRLF in a query parameter",
            api("GET", "/api/v1/export/log?format=csv%0d%0aSet-Cookie:%20stolen=1", &eve, b""),
            BAD,
            true,
        )
        .never("stolen=1"),
        case("an unknown API route", api("GET", "/api/v1/nope", &cora, b""), &[404], true),
        case(
            "a script in a participant page's URL",
            request("GET", "/participants/%3Cscript%3Ealert(1)%3C%2Fscript%3E", &[("Cookie", &cookie)], b""),
            &[404],
            false,
        )
        .never("<script>alert(1)"),
        case(
            "SQL in a participant page's URL",
            request("GET", "/participants/x'%20OR%20'1'='1", &[("Cookie", &cookie)], b""),
            &[404],
            false,
        ),
        case(
            "another site's participant's page",
            request("GET", "/participants/R1", &[("Cookie", &cookie)], b""),
            &[404],
            false,
        ),
        // HTTP itself.
        case(
            "a bare CR inside a header",
            b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Note: a\rSet-Cookie: stolen=1\r\nConnection: close\r\n\r\n"
                .to_vec(),
            &[400],
            false,
        )
        .never("stolen=1"),
        case(
            "a NUL inside a header",
            b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Note: a\0b\r\nConnection: close\r\n\r\n".to_vec(),
            &[400],
            false,
        ),
        case(
            "a Content-Length that is not a number",
            b"POST /api/v1/randomise HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\nConnection: close\r\n\r\n".to_vec(),
            &[400],
            false,
        ),
        case(
            "a 100 kB URL",
            request("GET", &format!("/api/v1/export/{}", "a".repeat(100_000)), &[("Authorization", &auth)], b""),
            &[400, 404, 414, 431],
            false,
        ),
        case(
            "a 1 MiB header",
            request("GET", "/api/v1/status", &[("Authorization", &auth), ("X-Big", &"b".repeat(1 << 20))], b""),
            &[400, 413, 431],
            false,
        ),
        case(
            "500 headers",
            {
                let h: Vec<(String, String)> = (0..500).map(|i| (format!("X-H{i}"), "v".into())).collect();
                let h: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                request("GET", "/api/v1/status", &h, b"")
            },
            &[400, 431],
            false,
        ),
        case("an unknown method", api("BREW", "/api/v1/status", &cora, b""), &[400, 405, 501], true),
        case("DELETE on randomise", api("DELETE", "/api/v1/randomise", &cora, b""), &[405], true),
        case("TRACE", api("TRACE", "/api/v1/status", &cora, b""), &[405], true),
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());

    let mut failures = Vec::new();
    for c in &cases {
        let before = log_rows(&t.db);
        let answer = s.raw(&c.request);
        let after = log_rows(&t.db);
        let mut wrong = Vec::new();
        match &answer {
            Err(e) => wrong.push(format!("no answer: {e}")),
            Ok(r) => {
                let text = r.text();
                if !c.expect.contains(&r.status) {
                    wrong.push(format!("status {} (expected one of {:?})", r.status, c.expect));
                }
                if c.json {
                    let is_json = r.header("content-type").is_some_and(|t| t.starts_with("application/json"));
                    let error = serde_json::from_slice::<serde_json::Value>(&r.body)
                        .ok()
                        .and_then(|v| v["error"].as_str().map(str::to_string));
                    match error {
                        Some(e) if is_json && !e.trim().is_empty() => {}
                        _ => wrong.push(format!("not a JSON error: {:?}", truncate(&text))),
                    }
                }
                if let Some(n) = c.needle {
                    if !text.to_lowercase().contains(&n.to_lowercase()) {
                        wrong.push(format!("the answer does not say {n:?}: {:?}", truncate(&text)));
                    }
                }
                if let Some(n) = c.never {
                    if text.contains(n) || r.headers.iter().any(|h| h.contains(n)) {
                        wrong.push(format!("the answer contains {n:?}"));
                    }
                }
                if text.contains("panicked") {
                    wrong.push("the answer mentions a panic".into());
                }
            }
        }
        if before != after {
            wrong.push(format!("the log changed: {} entries before, {} after", before.len(), after.len()));
        }
        if !wrong.is_empty() {
            failures.push(format!("{}: {}", c.name, wrong.join("; ")));
        }
    }
    let mut s = s;
    assert!(s.running(), "the service died during the catalogue: {}", s.stderr());
    s.assert_no_panic();
    // The service still works after all that: a good request is answered.
    let ok = s.raw(&randomise(&cora, &good)).unwrap();
    assert_eq!(ok.status, 200, "a good randomisation after the catalogue: {}", ok.text());
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 300 { format!("{}…", s.chars().take(300).collect::<String>()) } else { s.to_string() }
}
