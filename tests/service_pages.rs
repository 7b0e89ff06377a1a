//! The service's HTML pages, in process: the router built on a fresh trial
//! and called as a browser would (the login form, its cookies, the forms'
//! hidden CSRF field), with the trial's clock fixed.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use chancery::accounts::Role;
use chancery::operations as op;
use chancery::protocol::{Kind, Stage};
use chancery::service::pages::form::{help_text, input_id};
use chancery::service::{AppState, ServeOptions, router};
use tower::ServiceExt;

// The in-process trial, accounts and clock are the API tests' (one definition).
use crate::service_api::{PASSWORD, add_accounts, clock};
use crate::util::{self, REFERRAL_FIELDS, chancery, nhs, referral_args};

const ACCOUNTS: &[(&str, &[Role], &[&str])] = &[
    ("ann", &[Role::Admin], &[]),
    ("cora", &[Role::Coordinator], &["sheffield"]),
    ("colin", &[Role::Coordinator], &["rotherham", "barnsley"]),
    ("dora", &[Role::DataManager], &[]),
    ("eve", &[Role::Evaluator], &[]),
    ("audrey", &[Role::Auditor], &[]),
];

struct App {
    _dir: tempfile::TempDir,
    db: PathBuf,
    router: Router,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

/// A browser's session: its cookie and the CSRF token of its pages.
struct Session {
    cookie: String,
    csrf: String,
}

/// The value of `attr` in an HTML tag's text.
fn attr(tag: &str, attr: &str) -> Option<String> {
    let needle = format!(" {attr}=\"");
    let at = tag.find(&needle)? + needle.len();
    Some(tag[at..at + tag[at..].find('"')?].to_string())
}

/// Every tag named `name` (`<input …>`) in the page.
fn tags<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i..];
        let end = rest.find('>').unwrap_or(rest.len());
        let tag = &rest[..end];
        if tag[open.len()..].starts_with([' ', '>']) || tag.len() == open.len() {
            out.push(tag);
        }
        rest = &rest[end..];
    }
    out
}

/// The text of the element with id `id` (tags stripped), if there is one.
fn text_of(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let start = at + html[at..].find('>')? + 1;
    let open = html[..at].rfind('<')?;
    let name: String = html[open + 1..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    let end = start + html[start..].find(&format!("</{name}>"))?;
    let mut text = String::new();
    let mut inside = false;
    for c in html[start..end].chars() {
        match c {
            '<' => inside = true,
            '>' => inside = false,
            c if !inside => text.push(c),
            _ => {}
        }
    }
    Some(unescape(&text))
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&#39;", "'").replace("&amp;", "&")
}

fn encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
                b' ' => "+".to_string(),
                b => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").to_string())
        .find(|c| c.starts_with(&format!("{name}=")))
}

/// A complete eligible, consenting referral's form fields.
fn referral(participant: &str, site: &str, nhs_number: &str, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut pairs = vec![
        ("participant".to_string(), participant.to_string()),
        ("site".into(), site.into()),
        ("nhs_number".into(), nhs_number.into()),
    ];
    pairs.extend(REFERRAL_FIELDS.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    for (k, v) in overrides {
        if let Some(slot) = pairs.iter_mut().find(|(n, _)| n == k) {
            slot.1 = v.to_string();
        }
    }
    pairs
}

impl App {
    fn new() -> App {
        let dir = tempfile::tempdir().unwrap();
        let db = util::init(dir.path(), "work-health-ips.toml");
        for (p, site, n) in [("S-001", "sheffield", 1), ("R-001", "rotherham", 2)] {
            let mut args = util::s(&["randomise", "--db"]);
            args.push(db.display().to_string());
            args.extend(referral_args(p, site, &nhs(n), &[]));
            chancery().args(&args).assert().success();
        }
        add_accounts(&db, ACCOUNTS);
        let mut options = ServeOptions::new(db.clone());
        options.clock = clock();
        let key = op::read_trial_key(&op::key_path(&db, None)).unwrap();
        let signing = op::read_signing_key(&op::key_path(&db, None)).ok();
        let (state, _writer) = AppState::new(options, key, signing).unwrap();
        App { _dir: dir, db, router: router(state) }
    }

    async fn send(&self, mut request: Request<Body>) -> Answer {
        request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        Answer { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
    }

    async fn get(&self, session: Option<&Session>, path: &str) -> Answer {
        let mut b = Request::builder().uri(path);
        if let Some(s) = session {
            b = b.header(header::COOKIE, &s.cookie);
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }

    /// Posts a form as the browser would: with the session's csrf field
    /// unless `csrf` is `None`.
    async fn post(&self, session: &Session, path: &str, fields: &[(String, String)], csrf: Option<&str>) -> Answer {
        let mut pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if let Some(t) = csrf {
            pairs.insert(0, ("csrf", t));
        }
        let request = Request::builder()
            .method("POST")
            .uri(path)
            .header(header::COOKIE, &session.cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(encode(&pairs)))
            .unwrap();
        self.send(request).await
    }

    /// Logs in through the login form.
    async fn login(&self, name: &str, password: &str) -> Result<Session, Answer> {
        let form = self.get(None, "/login").await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        let csrf =
            tags(&form.body, "input").into_iter().find(|t| t.contains("name=\"csrf\"")).and_then(|t| attr(t, "value"));
        let cookie = set_cookie(&form.headers, "chancery_login").expect("the login form sets its CSRF cookie");
        let request = Request::builder()
            .method("POST")
            .uri("/login")
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(encode(&[("name", name), ("password", password), ("csrf", &csrf.unwrap())])))
            .unwrap();
        let a = self.send(request).await;
        if a.status != StatusCode::SEE_OTHER {
            return Err(a);
        }
        let cookie = set_cookie(&a.headers, "chancery_session").expect("a session cookie");
        let home = self.get(Some(&Session { cookie: cookie.clone(), csrf: String::new() }), "/").await;
        assert_eq!(home.status, StatusCode::OK, "{}", home.body);
        let logout = tags(&home.body, "input").into_iter().find(|t| t.contains("name=\"csrf\"")).unwrap();
        Ok(Session { cookie, csrf: attr(logout, "value").unwrap() })
    }

    async fn session(&self, name: &str) -> Session {
        self.login(name, PASSWORD).await.unwrap_or_else(|a| panic!("logging in as {name}: {} {}", a.status, a.body))
    }

    fn log(&self) -> String {
        util::log_snapshot(&self.db)
    }
}

/// The pages a signed-in account's navigation offers, and home.
fn nav_of(html: &str) -> Vec<String> {
    let nav = &html[html.find("<nav").unwrap()..html.find("</nav>").unwrap()];
    tags(nav, "a").into_iter().filter_map(|t| attr(t, "href")).collect()
}

#[tokio::test]
async fn the_randomise_form_is_the_protocols_fields_in_screening_order_with_levels_bounds_and_help() {
    let app = App::new();
    let cora = app.session("cora").await;
    let page = app.get(Some(&cora), "/randomise").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let html = &page.body;
    let protocol = chancery::protocol::Protocol::load(&util::protocol("work-health-ips.toml")).unwrap();
    let mut last = 0;
    for stage in [Stage::Screening, Stage::Consent, Stage::Baseline] {
        for f in protocol.fields.iter().filter(|f| f.stage == stage) {
            let at = html.find(&format!("name=\"{}\"", f.name)).unwrap_or_else(|| panic!("no input for {}", f.name));
            assert!(at > last, "{} is out of the protocol's screening order", f.name);
            last = at;
            let tag = &html[html[..at].rfind('<').unwrap()..];
            let tag = &tag[..tag.find('>').unwrap()];
            match &f.kind {
                Kind::Category { levels } => {
                    assert!(tag.starts_with("<select"), "{tag}");
                    let options = &html[at..at + html[at..].find("</select>").unwrap()];
                    let values: Vec<String> =
                        tags(options, "option").into_iter().filter_map(|o| attr(o, "value")).collect();
                    let mut expected = vec![String::new()];
                    expected.extend(levels.iter().cloned());
                    assert_eq!(values, expected, "{}", f.name);
                }
                Kind::Integer { min, max } => {
                    assert_eq!(attr(tag, "type").as_deref(), Some("number"), "{tag}");
                    assert_eq!(attr(tag, "min"), min.map(|m| m.to_string()), "{tag}");
                    assert_eq!(attr(tag, "max"), max.map(|m| m.to_string()), "{tag}");
                    assert_eq!(attr(tag, "step").as_deref(), Some("1"));
                }
                Kind::Number { min, max } => {
                    assert_eq!(attr(tag, "min"), min.map(|m| m.to_string()), "{tag}");
                    assert_eq!(attr(tag, "max"), max.map(|m| m.to_string()), "{tag}");
                }
                Kind::Date => assert_eq!(attr(tag, "type").as_deref(), Some("date")),
                Kind::NhsNumber => assert_eq!(attr(tag, "type").as_deref(), Some("text")),
            }
            let help = text_of(html, &format!("help-{}", f.name)).unwrap();
            assert_eq!(help, help_text(f), "{}", f.name);
            assert_eq!(attr(tag, "id"), Some(input_id(&f.name)));
        }
    }
    // The site select offers the coordinator's own sites only.
    let site = &html[html.find("<select id=\"site\"").unwrap()..];
    let site = &site[..site.find("</select>").unwrap()];
    let offered: Vec<String> = tags(site, "option").into_iter().filter_map(|o| attr(o, "value")).collect();
    assert_eq!(offered, ["sheffield"]);
    assert!(!html.contains("<script"), "no scripts in pages");
}

#[tokio::test]
async fn a_bad_value_shows_the_command_lines_error_next_to_its_field_and_writes_nothing() {
    let app = App::new();
    let cora = app.session("cora").await;
    let before = app.log();
    let form = referral("W-001", "sheffield", &nhs(50), &[("phq9", "28")]);
    let a = app.post(&cora, "/randomise", &form, Some(&cora.csrf)).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    let shown = text_of(&a.body, "error-phq9").unwrap_or_else(|| panic!("no error next to phq9: {}", a.body));
    // The command line refuses the same referral with the same message.
    let mut args = util::s(&["randomise", "--db"]);
    args.push(app.db.display().to_string());
    args.extend(referral_args("W-001", "sheffield", &nhs(50), &[("phq9", "28")]));
    let out = chancery().args(&args).output().unwrap();
    let cli = String::from_utf8_lossy(&out.stderr).trim().strip_prefix("error: ").unwrap().to_string();
    assert_eq!(shown, cli);
    assert!(shown.contains("phq9: 28 is out of range"), "{shown}");
    assert_eq!(app.log(), before, "a refused referral wrote to the log");
    // The form comes back as typed.
    let phq9 = tags(&a.body, "input").into_iter().find(|t| t.contains("name=\"phq9\"")).unwrap();
    assert_eq!(attr(phq9, "value").as_deref(), Some("28"));
    let participant = tags(&a.body, "input").into_iter().find(|t| t.contains("name=\"participant\"")).unwrap();
    assert_eq!(attr(participant, "value").as_deref(), Some("W-001"));
    // A missing baseline value and an unknown id format go to their fields too.
    let a = app
        .post(&cora, "/randomise", &referral("W-001", "sheffield", &nhs(50), &[("gad7", "")]), Some(&cora.csrf))
        .await;
    assert!(text_of(&a.body, "error-gad7").unwrap().contains("baseline field gad7 is missing"), "{}", a.body);
    let a = app.post(&cora, "/randomise", &referral("-x", "sheffield", &nhs(50), &[]), Some(&cora.csrf)).await;
    assert!(text_of(&a.body, "error-participant").unwrap().contains("is not valid"), "{}", a.body);
    // Another site's id is refused at the site select.
    let a = app.post(&cora, "/randomise", &referral("W-001", "rotherham", &nhs(50), &[]), Some(&cora.csrf)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(text_of(&a.body, "error-site").unwrap().contains("not one of your sites"), "{}", a.body);
    assert_eq!(app.log(), before);
}

#[tokio::test]
async fn a_good_referral_shows_its_allocation_and_receipt_once_the_log_has_it() {
    let app = App::new();
    let cora = app.session("cora").await;
    let a = app.post(&cora, "/randomise", &referral("W-002", "sheffield", &nhs(51), &[]), Some(&cora.csrf)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let allocation = text_of(&a.body, "allocation").unwrap_or_else(|| panic!("no allocation: {}", a.body));
    let receipt = text_of(&a.body, "receipt").unwrap();
    let trial = op::open_read_only(&app.db).unwrap();
    let table = op::export(&trial, op::ExportTable::Allocations).unwrap();
    let col = |n: &str| table.columns.iter().position(|c| c == n).unwrap();
    let row =
        table.rows.iter().find(|r| r[col("participant")].as_deref() == Some("W-002")).expect("W-002 is in the log");
    let arm = row[col("arm")].clone().unwrap();
    let seq = row[col("seq")].clone().unwrap();
    assert!(allocation.contains(&format!("({arm})")), "{allocation} vs arm {arm}");
    assert!(receipt.contains(&format!("log entry {seq} ")), "{receipt} vs seq {seq}");
    let status = op::status(&trial).unwrap();
    assert!(receipt.contains(&status.status.head), "{receipt}");
    // An ineligible referral is recorded too, with its reasons and receipt.
    let a = app
        .post(&cora, "/randomise", &referral("W-003", "sheffield", &nhs(52), &[("age", "17")]), Some(&cora.csrf))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(text_of(&a.body, "decision").unwrap().contains("not eligible"));
    assert!(a.body.contains("adult: aged under 18") && text_of(&a.body, "receipt").is_some());
    assert!(text_of(&a.body, "allocation").is_none());
    // Regression: its page was headed "Randomised".
    assert!(a.body.contains("<title>Screened out · ") && !a.body.contains("<title>Randomised"), "{}", a.body);
}

#[tokio::test]
async fn every_page_shows_the_trials_title_the_user_their_roles_and_sites() {
    let app = App::new();
    let title = "Health-led employment trial: IPS versus usual care for people with mental health or musculoskeletal conditions";
    for (name, roles, sites) in ACCOUNTS {
        let s = app.session(name).await;
        let home = app.get(Some(&s), "/").await;
        let mut pages = nav_of(&home.body);
        if *name == "cora" {
            pages.push("/participants/S-001".into());
        }
        for path in pages {
            let p = app.get(Some(&s), &path).await;
            assert_eq!(p.status, StatusCode::OK, "{name} {path}: {}", p.body);
            assert_eq!(text_of(&p.body, "trial-title").as_deref(), Some(title), "{name} {path}");
            assert_eq!(text_of(&p.body, "user").as_deref(), Some(*name), "{name} {path}");
            let shown_roles: Vec<&str> = roles.iter().map(|r| r.name()).collect();
            assert_eq!(text_of(&p.body, "roles").unwrap(), shown_roles.join(", "), "{name} {path}");
            let mut sorted = sites.to_vec();
            sorted.sort();
            let shown_sites = if sites.is_empty() { "all sites".to_string() } else { sorted.join(", ") };
            assert_eq!(text_of(&p.body, "sites").unwrap(), shown_sites, "{name} {path}");
            assert!(p.body.contains("<form class=\"inline\" id=\"logout\" method=\"post\" action=\"/logout\">"));
            assert!(p.body.contains("href=\"#main\"") && p.body.contains("/static/style.css"));
        }
    }
    // Signed out, a page sends the visitor to log in.
    let a = app.get(None, "/status").await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.headers[header::LOCATION], "/login");
}

#[tokio::test]
async fn the_navigation_and_the_pages_follow_the_roles() {
    let app = App::new();
    let expect: &[(&str, &[&str], &[&str])] = &[
        (
            "ann",
            &["/", "/status", "/checkpoint", "/accounts"],
            &["/randomise", "/participants", "/exports", "/analysis"],
        ),
        (
            "cora",
            &["/", "/randomise", "/participants", "/due", "/status"],
            &["/accounts", "/exports", "/verify", "/report"],
        ),
        ("dora", &["/", "/participants", "/due", "/status"], &["/randomise", "/accounts", "/exports"]),
        ("eve", &["/", "/status", "/exports", "/analysis", "/report"], &["/randomise", "/participants", "/verify"]),
        ("audrey", &["/", "/status", "/exports", "/verify", "/checkpoint"], &["/randomise", "/analysis", "/accounts"]),
    ];
    for (name, links, refused) in expect {
        let s = app.session(name).await;
        let home = app.get(Some(&s), "/").await;
        assert_eq!(nav_of(&home.body), *links, "{name}");
        for path in *refused {
            let a = app.get(Some(&s), path).await;
            assert_eq!(a.status, StatusCode::FORBIDDEN, "{name} {path}");
            assert!(!a.body.contains("S-001") && !a.body.contains("R-001"), "{name} {path}");
        }
    }
    // Counts by arm only for the roles that may see them.
    let cora = app.session("cora").await;
    let status = app.get(Some(&cora), "/status").await;
    assert!(status.body.contains("id=\"status-counts\"") && !status.body.contains("id=\"by-arm\""));
    assert!(!status.body.contains("usual_care"), "a coordinator's status page names the arms");
    let eve = app.session("eve").await;
    let status = app.get(Some(&eve), "/status").await;
    assert!(status.body.contains("id=\"by-arm\"") && status.body.contains("usual_care"));
}

#[tokio::test]
async fn a_form_posted_without_its_csrf_token_is_refused_and_writes_nothing() {
    let app = App::new();
    let cora = app.session("cora").await;
    let ann = app.session("ann").await;
    let before = app.log();
    let form = referral("W-010", "sheffield", &nhs(60), &[]);
    for token in [None, Some("wrong"), Some(&cora.csrf[1..])] {
        let a = app.post(&cora, "/randomise", &form, token).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{token:?}: {}", a.body);
        let a = app.post(&cora, "/participants/S-001/outcomes/m4", &[("phq9".into(), "8".into())], token).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{token:?}");
        let add = [
            ("name".to_string(), "mallory".to_string()),
            ("password".into(), PASSWORD.into()),
            ("role".into(), "admin".into()),
        ];
        assert_eq!(app.post(&ann, "/accounts", &add, token).await.status, StatusCode::FORBIDDEN);
        assert_eq!(app.post(&cora, "/logout", &[], token).await.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(app.log(), before, "a POST without its CSRF token wrote to the log");
    // Another session's token is not this one's.
    assert_eq!(app.post(&cora, "/randomise", &form, Some(&ann.csrf)).await.status, StatusCode::FORBIDDEN);
    // The login form's own token: a POST without the cookie it was given with is refused.
    let a = app
        .send(
            Request::builder()
                .method("POST")
                .uri("/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(encode(&[("name", "cora"), ("password", PASSWORD), ("csrf", "x")])))
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert!(set_cookie(&a.headers, "chancery_session").is_none());
}

#[tokio::test]
async fn every_form_input_has_a_label_and_every_id_is_unique() {
    let app = App::new();
    let mut checked = 0;
    let login = app.get(None, "/login").await;
    let mut pages = vec![("nobody".to_string(), "/login".to_string(), login.body)];
    for (name, _, _) in ACCOUNTS {
        let s = app.session(name).await;
        let home = app.get(Some(&s), "/").await;
        let mut paths = nav_of(&home.body);
        paths.push("/participants/S-001".into());
        for path in paths {
            let p = app.get(Some(&s), &path).await;
            if p.status == StatusCode::OK {
                pages.push((name.to_string(), path, p.body));
            }
        }
    }
    for (who, path, html) in &pages {
        let mut ids: Vec<String> = Vec::new();
        for name in [
            "a", "p", "div", "input", "select", "textarea", "form", "table", "tr", "span", "strong", "main", "nav",
            "button", "fieldset", "details", "h2", "label", "ul", "dl", "code", "header",
        ] {
            ids.extend(tags(html, name).into_iter().filter_map(|t| attr(t, "id")));
        }
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "{who} {path}: an id is used twice");
        for kind in ["input", "select", "textarea"] {
            for tag in tags(html, kind) {
                if attr(tag, "type").as_deref() == Some("hidden") {
                    continue;
                }
                let id = attr(tag, "id").unwrap_or_else(|| panic!("{who} {path}: {tag} has no id"));
                assert!(html.contains(&format!("for=\"{id}\"")), "{who} {path}: no label for {tag}");
                checked += 1;
            }
        }
        for form in tags(html, "form") {
            if attr(form, "method").as_deref() == Some("post") {
                let rest = &html[html.find(form).unwrap()..];
                let body = &rest[..rest.find("</form>").unwrap()];
                assert!(body.contains("name=\"csrf\""), "{who} {path}: a form without its csrf field: {form}");
            }
        }
    }
    assert!(checked > 100, "only {checked} inputs were checked");
}

#[tokio::test]
async fn another_sites_participant_is_answered_exactly_like_one_that_does_not_exist() {
    let app = App::new();
    let colin = app.session("colin").await;
    let list = app.get(Some(&colin), "/participants").await;
    assert!(list.body.contains("id=\"p-R-001\"") && !list.body.contains("S-001"), "{}", list.body);
    assert!(!list.body.contains("usual_care") && !list.body.contains("Individual Placement"), "the list shows arms");
    let theirs = app.get(Some(&colin), "/participants/S-001").await;
    let nobody = app.get(Some(&colin), "/participants/NOSUCH1").await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    assert_eq!(nobody.status, StatusCode::NOT_FOUND);
    assert_eq!(theirs.body.replace("S-001", "ID"), nobody.body.replace("NOSUCH1", "ID"));
    let before = app.log();
    let fields = [("phq9".to_string(), "8".to_string()), ("collected_on".into(), "2026-03-02".into())];
    for path in ["/participants/S-001/outcomes/m4", "/participants/NOSUCH1/outcomes/m4"] {
        let a = app.post(&colin, path, &fields, Some(&colin.csrf)).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
    }
    let change = [("change".to_string(), "lost".to_string()), ("reason".into(), "moved".into())];
    assert_eq!(
        app.post(&colin, "/participants/S-001/status", &change, Some(&colin.csrf)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.log(), before);
}

#[tokio::test]
async fn an_outcome_form_records_a_follow_up_and_refuses_a_bad_value_at_its_field() {
    let app = App::new();
    let cora = app.session("cora").await;
    let page = app.get(Some(&cora), "/participants/S-001").await;
    assert!(
        page.body.contains("id=\"outcome-m4\"")
            && page.body.contains("id=\"record-m12\"")
            && page.body.contains("id=\"status\"")
    );
    assert!(!page.body.contains("usual_care") && !page.body.contains("Individual Placement"), "the page shows the arm");
    let before = app.log();
    let bad = [
        ("phq9".to_string(), "99".to_string()),
        ("collected_on".into(), "2026-03-02".into()),
        ("window_reason".into(), "early".into()),
    ];
    let a = app.post(&cora, "/participants/S-001/outcomes/m4", &bad, Some(&cora.csrf)).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert!(text_of(&a.body, "error-m4-phq9").unwrap().contains("99 is out of range"), "{}", a.body);
    assert_eq!(app.log(), before);
    let good = [
        ("phq9".to_string(), "8".to_string()),
        ("in_paid_work".into(), "no".into()),
        ("collected_on".into(), "2026-03-02".into()),
        ("window_reason".into(), "collected early for the test".into()),
    ];
    let a = app.post(&cora, "/participants/S-001/outcomes/m4", &good, Some(&cora.csrf)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(text_of(&a.body, "written").unwrap().contains("log entry"), "{}", a.body);
    let trial = op::open_read_only(&app.db).unwrap();
    let outcomes = op::export(&trial, op::ExportTable::Outcomes).unwrap();
    assert!(
        outcomes
            .rows
            .iter()
            .any(|r| r.iter().any(|c| c.as_deref() == Some("S-001")) && r.iter().any(|c| c.as_deref() == Some("phq9")))
    );
    // The status change form.
    let lost = [("change".to_string(), "lost".to_string()), ("reason".into(), "moved away".into())];
    let a = app.post(&cora, "/participants/S-001/status", &lost, Some(&cora.csrf)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(text_of(&a.body, "written").unwrap().starts_with("Recorded as lost"), "{}", a.body);
    // A coordinator records; a data manager corrects (at any site), keeping the original in the log.
    assert!(!a.body.contains("id=\"correct\""));
    let dora = app.session("dora").await;
    let page = app.get(Some(&dora), "/participants/S-001").await;
    assert!(page.body.contains("id=\"correct\"") && !page.body.contains("id=\"outcome-m4\""), "{}", page.body);
    let fix = |value: &str| {
        vec![
            ("timepoint".to_string(), "m4".to_string()),
            ("field".into(), "phq9".into()),
            ("value".into(), value.into()),
            ("reason".into(), "transcription error".into()),
        ]
    };
    let before = app.log();
    let a = app.post(&dora, "/participants/S-001/corrections", &fix(""), Some(&dora.csrf)).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text_of(&a.body, "error-correct-value").unwrap().contains("give the corrected value"), "{}", a.body);
    assert_eq!(app.log(), before);
    let a = app.post(&dora, "/participants/S-001/corrections", &fix("9"), Some(&dora.csrf)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(text_of(&a.body, "written").unwrap().starts_with("Corrected"), "{}", a.body);
    assert_eq!(
        app.post(&cora, "/participants/S-001/corrections", &fix("10"), Some(&cora.csrf)).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_failed_login_says_so_keeps_the_name_and_never_the_password() {
    let app = App::new();
    let a = app.login("cora", "not the password at all").await.err().expect("refused");
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert!(text_of(&a.body, "error").is_some());
    let name = tags(&a.body, "input").into_iter().find(|t| t.contains("name=\"name\"")).unwrap();
    assert_eq!(attr(name, "value").as_deref(), Some("cora"));
    assert!(!a.body.contains("not the password at all"));
    // Logging out ends the session.
    let cora = app.session("cora").await;
    let a = app.post(&cora, "/logout", &[], Some(&cora.csrf)).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(app.get(Some(&cora), "/status").await.headers[header::LOCATION], "/login");
}

#[tokio::test]
async fn exports_are_downloads_with_safe_names_for_the_roles_that_may() {
    let app = App::new();
    let eve = app.session("eve").await;
    let a = app.get(Some(&eve), "/exports/allocations.csv").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers[header::CONTENT_DISPOSITION], "attachment; filename=\"work-health-ips-allocations.csv\"");
    assert!(a.body.starts_with("seq,") || a.body.contains("participant"), "{}", a.body);
    assert!(a.body.contains("S-001"));
    let a = app.get(Some(&eve), "/exports/outcomes.json").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("application/json"));
    for bad in
        ["/exports/allocations.xml", "/exports/secrets.csv", "/exports/..%2F..%2Fetc%2Fpasswd", "/exports/allocations"]
    {
        assert_eq!(app.get(Some(&eve), bad).await.status, StatusCode::NOT_FOUND, "{bad}");
    }
    // The log is the auditor's, the tables the evaluator's.
    assert_eq!(app.get(Some(&eve), "/exports/log.csv").await.status, StatusCode::FORBIDDEN);
    let audrey = app.session("audrey").await;
    assert_eq!(app.get(Some(&audrey), "/exports/log.json").await.status, StatusCode::OK);
    assert_eq!(app.get(Some(&audrey), "/exports/allocations.csv").await.status, StatusCode::FORBIDDEN);
    let cora = app.session("cora").await;
    assert_eq!(app.get(Some(&cora), "/exports/allocations.csv").await.status, StatusCode::FORBIDDEN);
    // The analysis, the report and the verification.
    let a = app.get(Some(&eve), "/analysis").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.contains("<h2>Intention-to-treat analysis") && a.body.contains("<table>"), "{}", a.body);
    let a = app.get(Some(&eve), "/report.html").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers[header::CONTENT_DISPOSITION], "attachment; filename=\"work-health-ips-report.html\"");
    let v = app.get(Some(&audrey), "/verify").await;
    assert!(text_of(&v.body, "verification").unwrap().starts_with("Verification passed"), "{}", v.body);
    let c = app.post(&audrey, "/checkpoint", &[], Some(&audrey.csrf)).await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    assert!(
        c.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"work-health-ips-checkpoint-")
    );
}

#[tokio::test]
async fn an_admin_adds_and_changes_accounts_and_a_new_token_is_shown_once() {
    let app = App::new();
    let ann = app.session("ann").await;
    let add = |name: &str, password: &str| {
        vec![
            ("name".to_string(), name.to_string()),
            ("password".into(), password.into()),
            ("role".into(), "coordinator".into()),
            ("site".into(), "doncaster".into()),
            ("reason".into(), "new coordinator".into()),
        ]
    };
    let a = app.post(&ann, "/accounts", &add("dan", PASSWORD), Some(&ann.csrf)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(text_of(&a.body, "accounts").unwrap().contains("dan"), "{}", a.body);
    let dan = app.session("dan").await;
    assert_eq!(app.get(Some(&dan), "/randomise").await.status, StatusCode::OK);
    // A refused add keeps what was typed but the password.
    let a = app.post(&ann, "/accounts", &add("dan", "another long password 2"), Some(&ann.csrf)).await;
    assert_ne!(a.status, StatusCode::OK, "{}", a.body);
    assert!(!a.body.contains("another long password 2"));
    let name = tags(&a.body, "input").into_iter().find(|t| t.contains("id=\"name\"")).unwrap();
    assert_eq!(attr(name, "value").as_deref(), Some("dan"));
    // A token, shown once.
    let a = app.post(&ann, "/accounts/dan/tokens", &[("expires_days".into(), "30".into())], Some(&ann.csrf)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let token = text_of(&a.body, "token").unwrap();
    assert!(token.len() > 20, "{token}");
    let again = app.get(Some(&ann), "/accounts").await;
    assert!(!again.body.contains(&token), "the token is shown again");
    // Disabling ends the account's sessions at once.
    let a = app.post(&ann, "/accounts/dan/disable", &[("reason".into(), "left".into())], Some(&ann.csrf)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(app.get(Some(&dan), "/randomise").await.status, StatusCode::SEE_OTHER);
}
