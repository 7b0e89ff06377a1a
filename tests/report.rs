//! The report: one self-contained HTML file, rendered by headless Chromium
//! (Debian's `chromium`, installed by .ci/run when absent; `CHROMIUM` names
//! another binary). The screenshot is kept in target/test-artefacts/.

use std::path::Path;
use std::process::Command;

use crate::util::*;

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

fn headless(args: &[&str], page: &Path) -> std::process::Output {
    Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}); install Debian's chromium (.ci/run does)", chromium()))
}

#[test]
fn the_report_renders_in_a_browser_with_its_key_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let out = chancery().args(["demo", "--participants", "1500", "--dir"]).arg(dir.path().join("t")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = String::from_utf8(out.stdout).unwrap();
    let page = dir.path().join("t/report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: no scripts, no external references.
    let stripped = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for external in ["<script", "http://", "https://", "src=\"", "<link"] {
        assert!(!stripped.contains(external), "the report must be self-contained: found {external}");
    }
    assert_eq!(html.matches("<svg").count(), 5, "CONSORT, recruitment, balance, Kaplan–Meier, forest");

    let dom = headless(&["--dump-dom"], &page);
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    let dom = String::from_utf8(dom.stdout).unwrap();
    let headline = summary.lines().find_map(|l| l.strip_prefix("primary outcome (paid_work_13_weeks): ")).unwrap();
    let headline = headline.split("  [").next().unwrap();
    assert!(dom.contains(headline), "headline {headline:?} not in the rendered page");
    let head = summary.lines().find_map(|l| l.strip_prefix("log: ")).unwrap().split("head ").nth(1).unwrap();
    assert!(dom.contains(head), "log head not in the audit section");
    assert!(dom.contains("every check that ran passed"));
    for text in [
        "CONSORT flow",
        "Assessed for eligibility",
        "Number at risk",
        "Baseline characteristics",
        "Subgroups (secondary)",
    ] {
        assert!(dom.contains(text), "{text}");
    }

    let artefacts = root().join("target/test-artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let shot = artefacts.join("report.png");
    let _ = std::fs::remove_file(&shot);
    let r = headless(&[&format!("--screenshot={}", shot.display()), "--window-size=1100,2400"], &page);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // A blank page compresses to a few kilobytes; charts and tables do not.
    assert!(png.len() > 50_000, "screenshot is {} bytes: is the page blank?", png.len());
}

#[test]
fn the_report_never_overwrites_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    chancery().args(["demo", "--participants", "300", "--dir"]).arg(dir.path().join("t")).assert().success();
    let db = dir.path().join("t/trial.db");
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    chancery().args(["report", "--db"]).arg(&db).arg("--out").arg(&a).assert().success();
    chancery().args(["report", "--db"]).arg(&db).arg("--out").arg(&b).assert().success();
    assert_eq!(std::fs::read(a.join("report.html")).unwrap(), std::fs::read(b.join("report.html")).unwrap());
    let before = std::fs::read_dir(&a).unwrap().count();
    std::fs::write(a.join("report.html"), "an evaluator's annotated copy").unwrap();
    let again = chancery().args(["report", "--db"]).arg(&db).arg("--out").arg(&a).assert().code(1);
    assert_eq!(String::from_utf8_lossy(&again.get_output().stderr).lines().count(), 1);
    assert_eq!(std::fs::read_to_string(a.join("report.html")).unwrap(), "an evaluator's annotated copy");
    assert_eq!(std::fs::read_dir(&a).unwrap().count(), before, "the refused report added files");
}
