//! The service's pages in a real browser: headless Chromium driven through
//! chromedriver (WebDriver, with fantoccini), as a trial team would use it.
//! An admin adds a coordinator on the accounts page; the coordinator logs
//! in, randomises a referral through the form, sees the allocation and its
//! receipt, and records a follow-up; a coordinator at another site cannot
//! see that participant; an auditor sees verification pass. A screenshot of
//! each page is kept under `target/test-artefacts/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them);
//! without them the test fails saying so, unless CHANCERY_SKIP_BROWSER=1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::service_util::*;
use crate::util::{REFERRAL_FIELDS, nhs};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver, killed on drop.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts chromedriver on a free loopback port; returns it and its URL once
/// it answers /status.
fn chromedriver() -> (Driver, String) {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {CHROMEDRIVER}: {e}"));
    let driver = Driver(child);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    while raw(addr, b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map(|r| r.status)
        .unwrap_or(0)
        != 200
    {
        assert!(started.elapsed() < Duration::from_secs(30), "chromedriver did not answer on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (driver, format!("http://127.0.0.1:{port}"))
}

/// A page as a user meets it, and its screenshot.
struct Browser {
    c: Client,
    base: String,
    shots: PathBuf,
    taken: u32,
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// `assert!` as an error, so that a failed check still closes the browser.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+).into());
        }
    };
}

impl Browser {
    async fn goto(&self, path: &str) -> Result<()> {
        Ok(self.c.goto(&format!("{}{path}", self.base)).await?)
    }

    async fn shot(&mut self, name: &str) -> Result<()> {
        self.taken += 1;
        let png = self.c.screenshot().await?;
        std::fs::write(self.shots.join(format!("browser-{:02}-{name}.png", self.taken)), png)?;
        Ok(())
    }

    async fn text(&self, css: &str) -> Result<String> {
        Ok(self.c.wait().at_most(Duration::from_secs(30)).for_element(Locator::Css(css)).await?.text().await?)
    }

    async fn exists(&self, css: &str) -> Result<bool> {
        Ok(!self.c.find_all(Locator::Css(css)).await?.is_empty())
    }

    /// Gives a form field its value, whatever control the page made of it:
    /// a select, radio buttons or checkboxes (by value), or a text input.
    async fn fill(&self, scope: &str, name: &str, value: &str) -> Result<()> {
        let all = self.c.find_all(Locator::Css(&format!("{scope} [name=\"{name}\"]"))).await?;
        let Some(first) = all.first() else {
            return Err(format!("no field named {name} in {scope}").into());
        };
        let kind = first.attr("type").await?.unwrap_or_default();
        if first.tag_name().await?.eq_ignore_ascii_case("select") {
            first.clone().select_by_value(value).await?;
        } else if kind == "date" {
            // A date picker takes keystrokes in the locale's order; set the
            // value as the form will send it (YYYY-MM-DD).
            let el = serde_json::to_value(first)?;
            self.c.execute("arguments[0].value = arguments[1];", vec![el, value.into()]).await?;
        } else if kind == "radio" || kind == "checkbox" {
            self.c.find(Locator::Css(&format!("{scope} [name=\"{name}\"][value=\"{value}\"]"))).await?.click().await?;
        } else {
            first.clear().await?;
            first.send_keys(value).await?;
        }
        Ok(())
    }

    /// Clicks a submit button and waits for the page it leads to (until the
    /// old page's root element is gone), so nothing is read off the old page.
    async fn submit(&self, css: &str) -> Result<()> {
        let old = self.c.find(Locator::Css("html")).await?;
        self.c.find(Locator::Css(css)).await?.click().await?;
        let started = Instant::now();
        while old.tag_name().await.is_ok() {
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("clicking {css} led to no new page").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    async fn login(&mut self, name: &str, password: &str) -> Result<()> {
        self.goto("/login").await?;
        self.fill("form", "name", name).await?;
        self.fill("form", "password", password).await?;
        self.submit("#login").await?;
        let user = self.text("#user").await?;
        ensure!(user.contains(name), "after logging in as {name}, the header shows user {user:?}");
        Ok(())
    }

    async fn logout(&self) -> Result<()> {
        self.submit("#logout button, #logout input[type=submit]").await?;
        self.c.wait().at_most(Duration::from_secs(30)).for_element(Locator::Id("login")).await?;
        Ok(())
    }
}

fn export(db: &Path, what: &str) -> Vec<serde_json::Value> {
    let out = cli().args(["export", "--format", "json", "--what", what, "--db"]).arg(db).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_pages_in_headless_chromium_admin_coordinators_and_auditor() {
    if std::env::var("CHANCERY_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("browser test skipped (CHANCERY_SKIP_BROWSER=1)");
        return;
    }
    assert!(
        Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists(),
        "the browser test needs {CHROMIUM} and {CHROMEDRIVER}: install Debian's chromium and chromium-driver \
         (`apt-get install chromium chromium-driver`; .ci/run does), or set CHANCERY_SKIP_BROWSER=1 to skip it"
    );
    let t = Fixture::new();
    t.user_with_password("ada", &["admin"], &[], "ada-password-Kestrel-11");
    t.user_with_password("bob", &["coordinator"], &["rotherham"], "bob-password-Merlin-22");
    t.user_with_password("audrey", &["auditor"], &[], "audrey-password-Hobby-33");
    let service = t.serve();
    let (_driver, webdriver) = chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let shots = artefacts_dir();
    let outcome = block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--window-size=1280,1400",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&webdriver)
            .await
            .expect("connecting to chromedriver");
        let mut b = Browser { c, base: service.base.clone(), shots, taken: 0 };
        let result = walk(&mut b, &t).await;
        if result.is_err() {
            let _ = b.shot("failure").await;
            if let Ok(html) = b.c.source().await {
                eprintln!("the page at the failure:\n{html}");
            }
        }
        let _ = b.c.close().await;
        result
    });
    service.assert_no_panic();
    if let Err(e) = outcome {
        panic!("{e}; service stderr: {}", service.stderr());
    }
}

async fn walk(b: &mut Browser, t: &Fixture) -> Result<()> {
    // The admin adds a coordinator for Sheffield on the accounts page.
    b.goto("/login").await?;
    b.shot("login").await?;
    b.login("ada", "ada-password-Kestrel-11").await?;
    b.shot("home-admin").await?;
    b.goto("/accounts").await?;
    b.shot("accounts").await?;
    let add = "form:has(#add-account)";
    b.fill(add, "name", "cora").await?;
    b.fill(add, "password", "cora-password-Osprey-44").await?;
    b.fill(add, "role", "coordinator").await?;
    b.fill(add, "site", "sheffield").await?;
    if b.exists(&format!("{add} [name=\"reason\"]")).await? {
        b.fill(add, "reason", "new coordinator at Sheffield").await?;
    }
    b.submit("#add-account").await?;
    let accounts = b.text("#accounts").await?;
    ensure!(accounts.contains("cora"), "the accounts table after adding cora: {accounts}");
    b.shot("accounts-added").await?;
    b.logout().await?;

    // The coordinator randomises a referral through the form.
    b.login("cora", "cora-password-Osprey-44").await?;
    b.shot("home-coordinator").await?;
    b.goto("/randomise").await?;
    b.shot("randomise-form").await?;
    let form = "form:has(#randomise)";
    b.fill(form, "participant", "WEB1").await?;
    b.fill(form, "site", "sheffield").await?;
    b.fill(form, "nhs_number", &nhs(90_001)).await?;
    for (k, v) in REFERRAL_FIELDS {
        b.fill(form, k, v).await?;
    }
    b.submit("#randomise").await?;
    let shown = b.text("#allocation").await?;
    let receipt = b.text("#receipt").await?;
    b.shot("allocation").await?;
    let stored = export(&t.db, "allocations");
    let row = stored.iter().find(|r| r["participant"] == "WEB1").ok_or("WEB1 is not in the allocations")?;
    let arm = row["arm"].as_str().unwrap();
    let label = if arm == "ips" { "Individual Placement and Support" } else { "Usual care" };
    ensure!(shown.contains(arm) || shown.contains(label), "the page shows {shown:?}; the log has arm {arm}");
    let seq = row["seq"].as_i64().unwrap().to_string();
    ensure!(receipt.contains(&seq), "the receipt {receipt:?} does not name log entry {seq}");

    // The participant is listed (without an arm) and followed up.
    b.goto("/participants").await?;
    b.shot("participants").await?;
    let listed = b.text("#p-WEB1").await?;
    ensure!(!listed.contains(label) && !listed.contains(arm), "the participants list shows the arm: {listed}");
    b.goto("/participants/WEB1").await?;
    b.shot("participant").await?;
    let m4 = "#outcome-m4";
    b.fill(m4, "phq9", "8").await?;
    b.fill(m4, "collected_on", &chrono::Utc::now().date_naive().to_string()).await?;
    // Randomised today, so today is outside the m4 window: say why.
    if b.exists(&format!("{m4} [name=\"window_reason\"]")).await? {
        b.fill(m4, "window_reason", "collected early for the browser test").await?;
    }
    b.submit("#record-m4").await?;
    b.text("#written").await?;
    b.shot("outcome-recorded").await?;
    let outcomes = export(&t.db, "outcomes");
    ensure!(
        outcomes.iter().any(|o| o.to_string().contains("WEB1") && o.to_string().contains("phq9")),
        "the follow-up is not in the outcomes export: {outcomes:?}"
    );
    b.logout().await?;

    // A coordinator at another site sees neither the participant nor its page.
    b.login("bob", "bob-password-Merlin-22").await?;
    b.goto("/participants").await?;
    b.shot("participants-other-site").await?;
    ensure!(!b.exists("#p-WEB1").await?, "a Rotherham coordinator sees WEB1 in the list");
    ensure!(!b.c.source().await?.contains("WEB1"), "a Rotherham coordinator's list mentions WEB1");
    b.goto("/participants/WEB1").await?;
    b.shot("participant-other-site").await?;
    let theirs = b.c.source().await?.replace("WEB1", "ID");
    b.goto("/participants/NOSUCH1").await?;
    let nobody = b.c.source().await?.replace("NOSUCH1", "ID");
    ensure!(theirs == nobody, "another site's participant's page differs from a participant that does not exist");
    ensure!(nobody.to_lowercase().contains("not found"), "the page for an unknown participant: {nobody}");
    b.logout().await?;

    // The auditor sees verification pass.
    b.login("audrey", "audrey-password-Hobby-33").await?;
    b.goto("/verify").await?;
    let verdict = b.text("#verification").await?;
    b.shot("verify").await?;
    ensure!(verdict.contains("passed") && !verdict.contains("FAILED"), "verification shows {verdict:?}");
    b.logout().await?;
    Ok(())
}
