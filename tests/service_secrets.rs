//! The trial's secrets and the accounts' passwords never leave the service:
//! a whole session (every role, every route, writes, exports, verification,
//! the report, the accounts page, a new token) is recorded, every response's
//! status line, headers and body, and the service's own output, and searched
//! for the seed, the identity secret, the signing key (hex either case, and
//! base64) and every password. The service also refuses a key file others
//! can read, and listens on localhost unless told otherwise.

use std::path::PathBuf;

use crate::service_util::*;
use crate::util::nhs;

/// Base64 (RFC 4648), standard or URL-safe alphabet, padded or not: the
/// forms a secret's bytes would take in a cookie, a token or JSON.
fn base64_forms(bytes: &[u8]) -> Vec<String> {
    const STD: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(STD[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    let url = out.replace('+', "-").replace('/', "_");
    // Without padding, and without the last character (whose low bits depend
    // on what follows when the bytes sit inside a longer encoding).
    let core = |s: &str| {
        let s = s.trim_end_matches('=');
        s[..s.len() - 1].to_string()
    };
    vec![core(&out), core(&url)]
}

fn field(text: &str, name: &str) -> String {
    text.lines().find_map(|l| l.strip_prefix(&format!("{name} = "))).unwrap().trim().to_string()
}

/// A recorded exchange: what was asked and everything that came back.
struct Exchange {
    what: String,
    status: u16,
    text: String,
}

struct Recorder {
    exchanges: Vec<Exchange>,
}

impl Recorder {
    async fn keep(&mut self, what: impl Into<String>, r: reqwest::RequestBuilder) -> (u16, String) {
        let what = what.into();
        let r = r.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = r.status().as_u16();
        let mut text = format!("HTTP {status}\n");
        for (n, v) in r.headers() {
            text.push_str(&format!("{n}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        let body = r.bytes().await.unwrap_or_default();
        let body = String::from_utf8_lossy(&body).to_string();
        text.push('\n');
        text.push_str(&body);
        self.exchanges.push(Exchange { what, status, text });
        (status, body)
    }

    /// Panics unless the last exchange answered `status`.
    fn expect(&self, status: u16) {
        let e = self.exchanges.last().unwrap();
        assert_eq!(e.status, status, "{}: {}", e.what, e.text);
    }
}

const ROLES: [(&str, &[&str], &[&str], &str); 5] = [
    ("ada", &["admin"], &[], "ada-password-Quokka-1913"),
    ("cora", &["coordinator"], &["sheffield"], "cora-password-Wombat-2207"),
    ("dana", &["data_manager"], &[], "dana-password-Numbat-3319"),
    ("eve", &["evaluator"], &[], "eve-password-Bilby-4421"),
    ("audrey", &["auditor"], &[], "audrey-password-Dingo-5533"),
];

const EXPORTS: [&str; 6] = ["allocations", "log", "participants", "outcomes", "history", "codebook"];

#[test]
fn a_whole_session_never_shows_the_key_the_seed_or_a_password() {
    // A real (random) key, as a live trial has.
    let t = Fixture::random_key();
    let key_text = std::fs::read_to_string(t.key()).unwrap();
    let signing_text = std::fs::read_to_string(format!("{}.signing", t.key().display())).unwrap();
    let hex_secrets = [field(&key_text, "seed"), field(&key_text, "identity"), field(&signing_text, "secret")];
    let mut secrets: Vec<String> = Vec::new();
    for h in &hex_secrets {
        assert_eq!(h.len(), 64);
        secrets.push(h.to_lowercase());
        secrets.push(h.to_uppercase());
        secrets.extend(base64_forms(&hex::decode(h).unwrap()));
    }
    for (name, roles, sites, password) in ROLES {
        t.user_with_password(name, roles, sites, password);
    }
    let added_password = "new-account-password-Echidna-6640";
    let mut passwords: Vec<String> = ROLES.iter().map(|r| r.3.to_string()).collect();
    passwords.push(added_password.into());
    let tokens: Vec<(String, String)> = ROLES.iter().map(|r| (r.0.to_string(), t.token(r.0))).collect();
    let token = |name: &str| tokens.iter().find(|t| t.0 == name).unwrap().1.clone();
    t.randomise("P1", "sheffield", &nhs(1));

    let service = t.serve();
    let mut rec = Recorder { exchanges: Vec::new() };
    block_on(async {
        let api = reqwest::Client::new();
        let get = |path: &str, who: &str| api.get(service.url(path)).bearer_auth(token(who));
        let post = |path: &str, who: &str, body: serde_json::Value| {
            api.post(service.url(path)).bearer_auth(token(who)).json(&body)
        };
        // The API, as each role would use it.
        rec.keep("healthz", api.get(service.url("/healthz"))).await;
        rec.expect(200);
        rec.keep("openapi", get("/api/v1/openapi.json", "eve")).await;
        rec.expect(200);
        for (who, ..) in ROLES {
            rec.keep(format!("status as {who}"), get("/api/v1/status", who)).await;
            rec.expect(200);
        }
        rec.keep("randomise", post("/api/v1/randomise", "cora", randomise_body("P2", "sheffield", &nhs(2)))).await;
        rec.expect(200);
        rec.keep(
            "randomise a duplicate",
            post("/api/v1/randomise", "cora", randomise_body("P3", "sheffield", &nhs(2))),
        )
        .await;
        rec.keep("randomise as an admin", post("/api/v1/randomise", "ada", randomise_body("P4", "sheffield", &nhs(4))))
            .await;
        rec.expect(403);
        let today = chrono::Utc::now().date_naive().to_string();
        rec.keep(
            "outcome",
            post(
                "/api/v1/outcomes",
                "cora",
                serde_json::json!({"participant": "P1", "timepoint": "m4", "collected_on": today,
                    "values": {"phq9": "10"}, "window_reason": "collected early for a test"}),
            ),
        )
        .await;
        rec.keep(
            "withdraw",
            post(
                "/api/v1/status-changes",
                "cora",
                serde_json::json!({"participant": "P2", "change": "withdraw", "reason": "moved away"}),
            ),
        )
        .await;
        rec.keep("due", get("/api/v1/due", "cora")).await;
        rec.expect(200);
        rec.keep("due as a data manager", get("/api/v1/due", "dana")).await;
        for what in EXPORTS {
            for format in ["csv", "json"] {
                rec.keep(
                    format!("export {what} {format}"),
                    get(&format!("/api/v1/export/{what}?format={format}"), "eve"),
                )
                .await;
            }
        }
        rec.keep("export log as an auditor", get("/api/v1/export/log?format=json", "audrey")).await;
        rec.expect(200);
        rec.keep("verify", get("/api/v1/verify", "audrey")).await;
        rec.expect(200);
        rec.keep("checkpoint", api.post(service.url("/api/v1/checkpoint")).bearer_auth(token("audrey"))).await;
        rec.expect(200);
        rec.keep("verify as a coordinator", get("/api/v1/verify", "cora")).await;
        rec.expect(403);

        // The pages, logged in as each role.
        for (who, _, _, password) in ROLES {
            let s = session(&service, who, password).await;
            let c = &s.client;
            for path in [
                "/",
                "/randomise",
                "/participants",
                "/participants/P1",
                "/due",
                "/status",
                "/exports",
                "/analysis",
                "/report",
                "/verify",
                "/accounts",
            ] {
                rec.keep(format!("{path} as {who}"), c.get(service.url(path))).await;
            }
            for what in EXPORTS {
                for ext in ["csv", "json"] {
                    let path = format!("/exports/{what}.{ext}");
                    rec.keep(format!("{path} as {who}"), c.get(service.url(&path))).await;
                }
            }
            rec.keep(
                format!("checkpoint page as {who}"),
                c.post(service.url("/checkpoint")).form(&[("csrf", &s.csrf)]),
            )
            .await;
            if who == "cora" {
                let (_, page) = rec.keep("randomise form", c.get(service.url("/randomise"))).await;
                let csrf = csrf_of(&page).unwrap_or(s.csrf.clone());
                let mut form: Vec<(String, String)> = vec![
                    ("participant".into(), "P5".into()),
                    ("site".into(), "sheffield".into()),
                    ("nhs_number".into(), nhs(5)),
                    ("csrf".into(), csrf),
                ];
                form.extend(crate::util::REFERRAL_FIELDS.iter().map(|(k, v)| (k.to_string(), v.to_string())));
                let (_, page) = rec.keep("randomise by the form", c.post(service.url("/randomise")).form(&form)).await;
                assert!(page.contains("id=\"allocation\""), "randomising by the form showed no allocation: {page}");
            }
            if who == "ada" {
                let (_, page) = rec.keep("accounts page", c.get(service.url("/accounts"))).await;
                let csrf = csrf_of(&page).unwrap_or(s.csrf.clone());
                let form = [
                    ("name", "newbie"),
                    ("password", added_password),
                    ("role", "coordinator"),
                    ("site", "rotherham"),
                    ("reason", "new starter"),
                    ("csrf", &csrf),
                ];
                rec.keep("add an account", c.post(service.url("/accounts")).form(&form)).await;
                rec.keep("accounts page after", c.get(service.url("/accounts"))).await;
                let (_, page) = rec
                    .keep(
                        "token for the new account",
                        c.post(service.url("/accounts/newbie/tokens"))
                            .form(&[("csrf", csrf.as_str()), ("expires_days", "30")]),
                    )
                    .await;
                assert!(page.to_lowercase().contains("token"), "creating a token: {page}");
                rec.keep("accounts page with tokens", c.get(service.url("/accounts"))).await;
            }
            rec.keep(format!("logout {who}"), c.post(service.url("/logout")).form(&[("csrf", &s.csrf)])).await;
        }
        // A failed login, and a login as the new account.
        let c = client();
        let (_, page) = rec.keep("login page", c.get(service.url("/login"))).await;
        let csrf = csrf_of(&page).unwrap_or_default();
        rec.keep(
            "a wrong password",
            c.post(service.url("/login")).form(&[
                ("name", "cora"),
                ("password", "cora-password-Wrong"),
                ("csrf", &csrf),
            ]),
        )
        .await;
        let newbie = session(&service, "newbie", added_password).await;
        rec.keep("home as newbie", newbie.client.get(service.url("/"))).await;
        rec.expect(200);
    });
    service.assert_no_panic();
    let ok = rec.exchanges.iter().filter(|e| e.status == 200).count();
    assert!(ok >= 60, "only {ok} of {} requests answered 200: a scan of refusals proves little", rec.exchanges.len());

    let mut haystacks: Vec<(String, String)> = rec.exchanges.iter().map(|e| (e.what.clone(), e.text.clone())).collect();
    haystacks.push(("the service's stdout".into(), format!("{}\n{}", service.first_line, service.stdout())));
    haystacks.push(("the service's stderr".into(), service.stderr()));
    drop(service);
    let mut leaks = Vec::new();
    for (what, text) in &haystacks {
        for s in &secrets {
            if text.contains(s.as_str()) {
                leaks.push(format!("{what}: a key secret ({}…)", &s[..8]));
            }
        }
        for p in &passwords {
            if text.contains(p.as_str()) {
                leaks.push(format!("{what}: the password {p}"));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets in responses or output:\n{}", leaks.join("\n"));
    eprintln!("{} exchanges scanned ({ok} answered 200)", rec.exchanges.len());
}

#[test]
fn the_service_refuses_a_key_others_can_read_and_listens_on_localhost_by_default() {
    use std::os::unix::fs::PermissionsExt;
    let t = Fixture::new();
    let key: PathBuf = t.key();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = Service::try_start(&t.db, &["--listen", "127.0.0.1:0"]);
    let e = refused.err().expect("the service started with a key file of mode 0644");
    assert!(e.contains("readable"), "the refusal should say the key is readable by others: {e}");
    assert!(!e.contains("panicked"), "{e}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // No --listen: 127.0.0.1:8080. (Another program may hold the port; the
    // refusal then names the address it tried.)
    match Service::try_start(&t.db, &[]) {
        Ok(s) => {
            assert_eq!(s.first_line, "listening on http://127.0.0.1:8080");
            assert!(s.addr.ip().is_loopback());
        }
        Err(e) => assert!(e.contains("127.0.0.1:8080"), "{e}"),
    }
    // An address given is used (and said).
    let s = Service::start(&t.db, &[]);
    assert!(s.first_line.starts_with("listening on http://127.0.0.1:"), "{}", s.first_line);
}
