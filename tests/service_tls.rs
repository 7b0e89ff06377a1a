//! `chancery serve` over TLS, as a deployment without a proxy runs it: a
//! certificate made with `openssl`, the service started with `--tls-cert`
//! and `--tls-key`, and `curl` trusting only that certificate. The pages'
//! cookies must then be `Secure`, and plain HTTP to the same port must not
//! be answered with trial data.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::service_util::Fixture;

/// Kills the service on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost, as PEM files.
fn certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("tls-key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed (.ci/run checks for it)");
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is installed (.ci/run checks for it)")
}

#[test]
fn over_tls_the_service_answers_https_only_and_its_cookies_are_secure() {
    let f = Fixture::new();
    let (cert, key) = certificate(f.dir.path());
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("chancery"))
        .args(["serve", "--db"])
        .arg(&f.db)
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env_remove("CHANCERY_NOW")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let _running = Running(child);
    let addr = first
        .trim()
        .strip_prefix("listening on https://")
        .unwrap_or_else(|| panic!("first line under TLS is not `listening on https://ADDR`: {first:?}"))
        .trim_end_matches('/')
        .to_string();
    let base = format!("https://{addr}");
    let cacert = cert.to_str().unwrap();

    // Up within a minute (a debug build on a loaded machine).
    let mut healthy = None;
    for _ in 0..600 {
        let out = curl(&["--cacert", cacert, &format!("{base}/healthz")]);
        if out.status.success() {
            healthy = Some(String::from_utf8_lossy(&out.stdout).to_string());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(healthy.as_deref().map(str::trim), Some("ok"), "/healthz over TLS never answered");

    // The login page's cookie is Secure (and still HttpOnly, SameSite=Strict).
    let head = curl(&["--cacert", cacert, "-D", "-", "-o", "/dev/null", &format!("{base}/login")]);
    let headers = String::from_utf8_lossy(&head.stdout).to_lowercase();
    let cookie = headers
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("GET /login set no cookie: {headers}"));
    for flag in ["secure", "httponly", "samesite=strict"] {
        assert!(cookie.contains(flag), "the login cookie over TLS lacks {flag}: {cookie}");
    }
    assert!(headers.contains("strict-transport-security"), "no HSTS header over TLS: {headers}");

    // A client that does not trust the certificate is refused by its own TLS
    // check, and plain HTTP to the TLS port gets no page.
    let untrusted = curl(&[&format!("{base}/healthz")]);
    assert!(!untrusted.status.success(), "curl accepted a certificate it was not told to trust");
    let plain = curl(&["-o", "/dev/null", "-w", "%{http_code}", &format!("http://{addr}/login")]);
    let code = String::from_utf8_lossy(&plain.stdout).to_string();
    assert!(!plain.status.success() || code != "200", "plain HTTP to the TLS port was answered {code}");
}

#[test]
fn a_certificate_that_cannot_be_read_is_one_clear_line_and_no_service() {
    let f = Fixture::new();
    let bad = f.dir.path().join("cert.pem");
    std::fs::write(&bad, "not a certificate\n").unwrap();
    let out = Command::new(assert_cmd::cargo::cargo_bin("chancery"))
        .args(["serve", "--db"])
        .arg(&f.db)
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&bad)
        .arg("--tls-key")
        .arg(&bad)
        .env_remove("CHANCERY_NOW")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "not one line: {stderr}");
    assert!(stderr.contains("cert.pem"), "the message does not name the file: {stderr}");
}
