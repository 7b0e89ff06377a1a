//! Starting the service as the world meets it: a trial made with the
//! command line, accounts and tokens added with the command line, and
//! `chancery serve` started as a child process on a free loopback port,
//! spoken to over real HTTP (reqwest, or raw bytes for requests no proper
//! client would send). The child is killed when its [`Service`] is dropped.
//!
//! The service writes on the system clock and judges token expiry by it, so
//! everything here runs the command line on the system clock too (no
//! `CHANCERY_NOW`), unless a test asks for a fixed time.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as ProcessCommand, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assert_cmd::Command;

use crate::util;

/// The password every account made by [`Fixture::user`] gets unless told
/// otherwise: long enough for any sensible length rule.
pub const PASSWORD: &str = "staple-battery-horse-correct-7";

/// The chancery binary on the system clock, acting as `tester`.
pub fn cli() -> Command {
    let mut c = Command::cargo_bin("chancery").unwrap();
    c.env_remove("CHANCERY_NOW").env("CHANCERY_ALLOW_FUTURE_TIME", "1").env("USER", "tester");
    c
}

/// A trial of the default protocol (work-health-ips) with the test seed in a
/// fresh temporary folder, made on the system clock (or at `now`).
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    /// The fixed time the command line runs at, if any (see [`Fixture::at`]).
    now: std::cell::RefCell<Option<String>>,
}

impl Fixture {
    /// A new trial on the system clock.
    pub fn new() -> Fixture {
        Fixture::at(None)
    }

    /// A new trial made at `now` (a fixed time before the system clock, for
    /// a test that needs entries in the past, e.g. a token already expired).
    pub fn at(now: Option<&str>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("trial.db");
        let mut cmd = cli();
        if let Some(now) = now {
            cmd.env("CHANCERY_NOW", now);
        }
        util::init_command(cmd, &util::protocol("work-health-ips.toml"), &db).assert().success();
        Fixture { dir, db, now: std::cell::RefCell::new(now.map(str::to_string)) }
    }

    /// A new trial with a random key (as a live trial has, where the
    /// identity and signing secrets do not follow from the seed).
    pub fn random_key() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("trial.db");
        cli()
            .args(["init", "--protocol"])
            .arg(util::protocol("work-health-ips.toml"))
            .arg("--db")
            .arg(&db)
            .assert()
            .success();
        Fixture { dir, db, now: std::cell::RefCell::new(None) }
    }

    /// From now on, the command line runs at `now` (`None`: the system clock).
    pub fn set_now(&self, now: Option<&str>) {
        *self.now.borrow_mut() = now.map(str::to_string);
    }

    /// [`cli`] at the fixture's time.
    pub fn cmd(&self) -> Command {
        let mut c = cli();
        if let Some(now) = &*self.now.borrow() {
            c.env("CHANCERY_NOW", now);
        }
        c
    }

    /// The trial key file's path.
    pub fn key(&self) -> PathBuf {
        PathBuf::from(format!("{}.key", self.db.display()))
    }

    /// Adds an account through the command line (`user add … --password-stdin`).
    pub fn user(&self, name: &str, roles: &[&str], sites: &[&str]) {
        self.user_with_password(name, roles, sites, PASSWORD)
    }

    /// Adds an account with its own password.
    pub fn user_with_password(&self, name: &str, roles: &[&str], sites: &[&str], password: &str) {
        let mut cmd = self.cmd();
        cmd.args(["user", "add", "--db"]).arg(&self.db).args(["--name", name]);
        for r in roles {
            cmd.args(["--role", r]);
        }
        for s in sites {
            cmd.args(["--site", s]);
        }
        let out = cmd.arg("--password-stdin").write_stdin(format!("{password}\n")).output().unwrap();
        assert!(
            out.status.success(),
            "chancery user add {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A new API token for `user` (`token create`, which prints it alone).
    pub fn token(&self, user: &str) -> String {
        self.token_with(user, &[])
    }

    /// A token with extra arguments (e.g. `--expires-days 1`).
    pub fn token_with(&self, user: &str, extra: &[&str]) -> String {
        let out = self
            .cmd()
            .args(["token", "create", "--db"])
            .arg(&self.db)
            .args(["--user", user])
            .args(extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "chancery token create --user {user}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = stdout.trim().to_string();
        assert!(!token.is_empty() && !token.contains(char::is_whitespace), "token create printed {stdout:?}");
        token
    }

    /// Revokes a token through the command line (`token revoke`, by the
    /// token's public id as `token list --json` shows it).
    pub fn revoke(&self, token: &str) {
        let out = self.cmd().args(["token", "list", "--json", "--db"]).arg(&self.db).output().unwrap();
        assert!(out.status.success(), "chancery token list: {}", String::from_utf8_lossy(&out.stderr));
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let id = list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["id"].as_str().map(str::to_string))
            .find(|id| token.contains(id.as_str()))
            .unwrap_or_else(|| panic!("no listed token id is part of the token: {list}"));
        let out = self
            .cmd()
            .args(["token", "revoke", "--db"])
            .arg(&self.db)
            .args(["--id", &id, "--reason", "test"])
            .output()
            .unwrap();
        assert!(out.status.success(), "chancery token revoke: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Randomises a complete eligible referral through the command line.
    pub fn randomise(&self, participant: &str, site: &str, nhs: &str) {
        let mut args = vec!["randomise".to_string(), "--db".into(), self.db.display().to_string()];
        args.extend(util::referral_args(participant, site, nhs, &[]));
        let out = self.cmd().args(&args).output().unwrap();
        assert!(out.status.success(), "chancery randomise {participant}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts the service on this trial (see [`Service::start`]).
    pub fn serve(&self) -> Service {
        Service::start(&self.db, &[])
    }
}

/// The log's chain as stored: every entry's seq, time, type and hash, to
/// compare before and after a request that must change nothing. Read
/// directly (read-only) so that it works while the service holds the file.
pub fn log_rows(db: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut s = c.prepare("SELECT seq, ts, type, hash FROM log ORDER BY seq").unwrap();
    s.query_map([], |r| {
        Ok(format!(
            "{} {} {} {}",
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?
        ))
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

/// A running `chancery serve`, killed (SIGKILL) and reaped on drop.
pub struct Service {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://ADDR`.
    pub base: String,
    /// The first line it printed.
    pub first_line: String,
    stderr: Arc<Mutex<Vec<u8>>>,
    stdout: Arc<Mutex<Vec<u8>>>,
}

/// How long a service may take to say where it listens and answer /healthz
/// (a debug build on a loaded two-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Collects a child's stream in the background (so its pipe never fills).
fn drain(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
}

impl Service {
    /// `chancery serve --db DB --listen 127.0.0.1:0 EXTRA…`, waiting until it
    /// has printed its address and answers /healthz. Panics with its output
    /// if it does not start.
    pub fn start(db: &Path, extra: &[&str]) -> Service {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Service::try_start(db, &args).unwrap_or_else(|e| panic!("chancery serve did not start: {e}"))
    }

    /// `chancery serve --db DB ARGS…` (no `--listen` added); `Err` with what
    /// it printed and how it ended if it exits or stays silent.
    pub fn try_start(db: &Path, args: &[&str]) -> Result<Service, String> {
        let mut child = ProcessCommand::new(assert_cmd::cargo::cargo_bin("chancery"))
            .args(["serve", "--db"])
            .arg(db)
            .args(args)
            .env_remove("CHANCERY_NOW")
            .env("USER", "tester")
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run chancery serve: {e}"))?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        drain(child.stderr.take().unwrap(), stderr.clone());
        let stdout = Arc::new(Mutex::new(Vec::new()));
        // The first line, then the rest drained.
        let (tx, rx) = std::sync::mpsc::channel();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let rest = stdout.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                rest.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let fail = |child: &mut Child, stderr: &Arc<Mutex<Vec<u8>>>, what: String| {
            let _ = child.kill();
            let status = child.wait().ok();
            std::thread::sleep(Duration::from_millis(100));
            format!("{what} (exit {status:?}); stderr: {}", String::from_utf8_lossy(&stderr.lock().unwrap()))
        };
        let first_line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) if !line.is_empty() => line.trim_end().to_string(),
            Ok(_) => return Err(fail(&mut child, &stderr, "it printed nothing and closed its output".into())),
            Err(_) => return Err(fail(&mut child, &stderr, format!("no first line within {START_TIMEOUT:?}"))),
        };
        let addr_text = first_line
            .strip_prefix("listening on http://")
            .or_else(|| first_line.strip_prefix("listening on https://"))
            .map(|a| a.trim_end_matches('/').to_string());
        let Some(addr) = addr_text.and_then(|a| a.parse::<SocketAddr>().ok()) else {
            return Err(fail(
                &mut child,
                &stderr,
                format!("its first line is not `listening on http://ADDR`: {first_line:?}"),
            ));
        };
        let service = Service { child, addr, base: format!("http://{addr}"), first_line, stderr, stdout };
        let started = Instant::now();
        loop {
            if let Ok(r) = service.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") {
                if r.status == 200 {
                    return Ok(service);
                }
            }
            if started.elapsed() > START_TIMEOUT {
                let mut s = service;
                let e = fail(&mut s.child, &s.stderr, "/healthz never answered 200".into());
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What it has written to standard error so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).to_string()
    }

    /// What it has written to standard output after its first line.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).to_string()
    }

    /// Panics if it has panicked (or printed a backtrace) so far.
    pub fn assert_no_panic(&self) {
        let e = self.stderr();
        assert!(!e.contains("panicked") && !e.contains("stack backtrace"), "the service panicked: {e}");
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL (no destructors, no flush), and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `request` as it is, over a new connection, and reads the answer.
    pub fn raw(&self, request: &[u8]) -> std::io::Result<RawResponse> {
        raw(self.addr, request)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP answer read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Header lines, as sent (`Name: value`).
    pub headers: Vec<String>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header of that name (case-insensitive), its value.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find_map(|h| {
            let (n, v) = h.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// One request written as bytes (for what clients refuse to send: bare CRs,
/// `..` left in a path, unknown methods), the answer read until the server
/// closes or the body is complete. A server may close without answering a
/// request it cannot parse at all; that is status 0.
pub fn raw(addr: SocketAddr, request: &[u8]) -> std::io::Result<RawResponse> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    // Written on its own thread while the answer is read: a server may
    // answer (413, 431) and close before reading a huge request whole.
    let mut w = s.try_clone()?;
    let request = request.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&request);
        let _ = w.flush();
    });
    let mut data = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                data.extend_from_slice(&buf[..n]);
                if complete(&data) {
                    break;
                }
            }
            Err(e) if data.is_empty() && e.kind() != std::io::ErrorKind::ConnectionReset => return Err(e),
            Err(_) => break,
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    Ok(parse_response(&data))
}

/// A request as bytes: `METHOD PATH HTTP/1.1`, Host, the headers given,
/// Content-Length when there is a body, Connection: close.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n").into_bytes();
    for (n, v) in headers {
        r.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    if !body.is_empty() || method == "POST" {
        r.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

/// Runs a future to completion on a runtime of its own (for tests that are
/// otherwise plain threads).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(f)
}

fn head_end(data: &[u8]) -> Option<usize> {
    data.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Whether `data` holds a whole response (by Content-Length or a chunked
/// body's last chunk), so a kept-alive connection need not be waited out.
fn complete(data: &[u8]) -> bool {
    let Some(end) = head_end(data) else { return false };
    let r = parse_head(&data[..end]);
    if let Some(len) = r.header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        return data.len() >= end + len;
    }
    if r.header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        return data[end..].ends_with(b"0\r\n\r\n");
    }
    r.status == 204 || r.status == 304 || (100..200).contains(&r.status)
}

fn parse_head(head: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines.filter(|l| !l.is_empty()).map(str::to_string).collect();
    RawResponse { status, headers, body: Vec::new() }
}

fn parse_response(data: &[u8]) -> RawResponse {
    let Some(end) = head_end(data) else {
        return RawResponse { status: 0, headers: vec![], body: data.to_vec() };
    };
    let mut r = parse_head(&data[..end]);
    let body = &data[end..];
    r.body = if r.header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        dechunk(body)
    } else {
        body.to_vec()
    };
    r
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&body[..eol]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16) else { break };
        if size == 0 || body.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
        body = &body[(eol + 4 + size).min(body.len())..];
    }
    out
}

/// An HTTP client with a cookie store (a browser's session), following no
/// redirects (so a test sees each 303 itself), with a generous timeout.
pub fn client() -> reqwest::Client {
    client_with(Arc::new(reqwest::cookie::Jar::default()))
}

/// [`client`] with a cookie jar the test can read (to replay or forge the
/// session cookie in a raw request).
pub fn client_with(jar: Arc<reqwest::cookie::Jar>) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// The value of the hidden `csrf` input in a page's HTML.
pub fn csrf_of(html: &str) -> Option<String> {
    let mut rest = html;
    while let Some(i) = rest.find("<input") {
        rest = &rest[i..];
        let tag = &rest[..rest.find('>').unwrap_or(rest.len())];
        if tag.contains("name=\"csrf\"") {
            let v = tag.split("value=\"").nth(1)?;
            return Some(html_unescape(&v[..v.find('"')?]));
        }
        rest = &rest[6..];
    }
    None
}

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&#39;", "'").replace("&amp;", "&")
}

/// Logs `client` in through the login form (GET /login for its CSRF token,
/// then POST /login); `Ok` with the home page's HTML once logged in, `Err`
/// with what the service answered otherwise.
pub async fn login(client: &reqwest::Client, service: &Service, name: &str, password: &str) -> Result<String, String> {
    let form = client.get(service.url("/login")).send().await.map_err(|e| e.to_string())?;
    let status = form.status();
    let html = form.text().await.map_err(|e| e.to_string())?;
    let csrf = csrf_of(&html).ok_or_else(|| format!("GET /login ({status}) has no csrf input: {html}"))?;
    let answer = client
        .post(service.url("/login"))
        .form(&[("name", name), ("password", password), ("csrf", &csrf)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = answer.status();
    if !status.is_redirection() {
        return Err(format!("POST /login answered {status}: {}", answer.text().await.unwrap_or_default()));
    }
    let home = client.get(service.url("/")).send().await.map_err(|e| e.to_string())?;
    let status = home.status();
    let html = home.text().await.map_err(|e| e.to_string())?;
    if status != 200 || html.contains("id=\"login\"") {
        return Err(format!("after logging in, GET / answered {status}: {html}"));
    }
    Ok(html)
}

/// A referral's `values` for the API: [`util::REFERRAL_FIELDS`] and an NHS number.
pub fn referral_values(nhs: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut values = serde_json::Map::new();
    values.insert("nhs_number".into(), nhs.into());
    for (k, v) in util::REFERRAL_FIELDS {
        values.insert(k.into(), v.into());
    }
    values
}

/// The body of `POST /api/v1/randomise` for a complete eligible referral.
pub fn randomise_body(participant: &str, site: &str, nhs: &str) -> serde_json::Value {
    serde_json::json!({"participant": participant, "site": site, "values": referral_values(nhs)})
}

/// The service's stderr holds no panic; used by tests at their end.
pub fn no_panic(service: &Service) {
    service.assert_no_panic();
}

/// A free TCP port on loopback (for a helper process that cannot pick its
/// own and report it, such as chromedriver).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Where test artefacts (screenshots) go: `target/test-artefacts/`, under
/// CARGO_TARGET_DIR when it is set.
pub fn artefacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| util::root().join("target"));
    let dir = target.join("test-artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A logged-in browser session: its client, its cookies as a `Cookie`
/// header value, and the CSRF token its forms carry.
pub struct Session {
    pub client: reqwest::Client,
    pub jar: Arc<reqwest::cookie::Jar>,
    /// The `Cookie` header the client sends (`name=value; …`).
    pub cookie: String,
    /// The CSRF token from the home page's logout form.
    pub csrf: String,
    /// The home page after logging in.
    pub home: String,
}

/// Logs `name` in; panics with the service's answer if it cannot.
pub async fn session(service: &Service, name: &str, password: &str) -> Session {
    use reqwest::cookie::CookieStore;
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let client = client_with(jar.clone());
    let home = login(&client, service, name, password).await.unwrap_or_else(|e| panic!("logging in as {name}: {e}"));
    let url: reqwest::Url = service.url("/").parse().unwrap();
    let cookie = jar.cookies(&url).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    assert!(!cookie.is_empty(), "no session cookie after logging in as {name}");
    let csrf = csrf_of(&home).unwrap_or_else(|| panic!("the home page has no csrf input (logout form): {home}"));
    Session { client, jar, cookie, csrf, home }
}
