//! The service under load: durable randomisations over HTTP on loopback
//! (`POST /api/v1/randomise` with a bearer token) from 1, 8 and 64
//! concurrent clients for a fixed time each, with throughput and p50/p99
//! latency, beside the floor measured in the same run: a raw one-row SQLite
//! commit with the service's durability (WAL, `synchronous=FULL`), in the
//! same folder, just before and just after each level (the disk's `fsync`
//! time moves with the machine's load).
//!
//! ```text
//! cargo build --release --bin chancery --example service_load
//! target/release/examples/service_load [SECONDS] [CLIENTS…]
//! ```
//!
//! SECONDS is each level's duration (10); CLIENTS the levels (1 8 64). It
//! makes a trial of the bundled protocol in a temporary folder (`chancery
//! init`), a coordinator at four sites (`chancery user add`), a token
//! (`chancery token create`), and starts `chancery serve --listen
//! 127.0.0.1:0` from the same folder as this example's binary (or
//! `CHANCERY_BIN`). The clients and the service share the machine's cores.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The fields of an eligible, consenting referral for the bundled protocol
/// (as the tests' `REFERRAL_FIELDS`), but for the NHS number.
const FIELDS: [(&str, &str); 14] = [
    ("age", "34"),
    ("sex", "female"),
    ("employment_status", "out_of_work"),
    ("condition", "mental_health"),
    ("referral_source", "gp"),
    ("weeks_out_of_work", "10"),
    ("gp_in_area", "yes"),
    ("wants_work", "yes"),
    ("receiving_ips", "no"),
    ("consent", "yes"),
    ("phq9", "12"),
    ("gad7", "9"),
    ("swemwbs", "21"),
    ("eq5d", "0.731"),
];
const SITES: [&str; 4] = ["sheffield", "rotherham", "dudley", "birmingham"];
const CONDITIONS: [&str; 3] = ["mental_health", "msk", "both"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: f64 = args.first().map_or(10.0, |s| s.parse().expect("SECONDS is a number"));
    let levels: Vec<usize> = if args.len() > 1 {
        args[1..].iter().map(|s| s.parse().expect("CLIENTS are numbers")).collect()
    } else {
        vec![1, 8, 64]
    };
    let bin = std::env::var_os("CHANCERY_BIN").map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("this binary's path");
        exe.parent().and_then(Path::parent).expect("target/<profile>/examples").join("chancery")
    });
    let dir = tempfile::tempdir_in(std::env::current_dir().expect("a working folder")).expect("a temporary folder");
    println!("load {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());

    let serves = Command::new(&bin).args(["serve", "--help"]).output().is_ok_and(|o| o.status.success());
    if !serves {
        let floor = Floor::merge(&raw_commits(&floor_database(&dir.path().join("floor.db")), 2000), &[]);
        println!(
            "{} has no `serve` command: the floor alone (raw one-row commit, WAL, synchronous=FULL, {} commits): mean {:.0} µs ({:.0}/s), p50 {:.0} µs",
            bin.display(),
            floor.n,
            floor.mean * 1e6,
            1.0 / floor.mean,
            floor.p50 * 1e6
        );
        return;
    }
    let db = dir.path().join("trial.db");
    let token = set_up(&bin, &db);
    let mut service = Service::start(&bin, &db);
    let url = format!("{}/api/v1/randomise", service.address);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().expect("an HTTP client");
    let next = Arc::new(AtomicU32::new(0));
    // Warm up: connections, the service's caches, the page cache.
    runtime.block_on(drive(&client, &url, &token, &next, 4, Duration::from_secs(1)));
    // The disk's fsync time moves with the machine's load, so each level is
    // set beside raw commits made just before and just after it.
    let floor_db = floor_database(&dir.path().join("floor.db"));
    let mut results = Vec::new();
    for &clients in &levels {
        let before = raw_commits(&floor_db, FLOOR_COMMITS);
        let cpu = service.cpu_seconds();
        let started = Instant::now();
        let run = runtime.block_on(drive(&client, &url, &token, &next, clients, Duration::from_secs_f64(seconds)));
        let wall = started.elapsed().as_secs_f64();
        let cpu = service.cpu_seconds() - cpu;
        let floor = Floor::merge(&before, &raw_commits(&floor_db, FLOOR_COMMITS));
        results.push((clients, run, wall, cpu, floor));
    }
    service.stop();

    println!(
        "floor: a raw one-row commit (WAL, synchronous=FULL), {FLOOR_COMMITS} just before and {FLOOR_COMMITS} just after each level"
    );
    println!(
        "| clients | randomisations | per second | raw commit: mean µs (per second), p50 µs | × raw commit rate | p50 ms | p50 × raw commit p50 | p99 ms | errors | service CPU per request |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (clients, run, wall, cpu, floor) in &results {
        let mut l = run.latencies.clone();
        l.sort_by(f64::total_cmp);
        let rate = l.len() as f64 / wall;
        println!(
            "| {clients} | {} | {:.0} | {:.0} ({:.0}), {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.0} µs |",
            l.len(),
            rate,
            floor.mean * 1e6,
            1.0 / floor.mean,
            floor.p50 * 1e6,
            rate * floor.mean,
            quantile(&l, 0.5) * 1e3,
            quantile(&l, 0.5) / floor.p50,
            quantile(&l, 0.99) * 1e3,
            run.errors,
            cpu / l.len().max(1) as f64 * 1e6
        );
        if let Some(e) = &run.first_error {
            println!("  first error at {clients} clients: {e}");
        }
    }
    println!("load {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
}

/// Raw commits measured beside each level, before and after it.
const FLOOR_COMMITS: usize = 500;

/// The trial, a coordinator at four sites, and a token for it.
fn set_up(bin: &Path, db: &Path) -> String {
    let protocol = Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/work-health-ips.toml");
    let init = command(bin).args(["init", "--protocol"]).arg(&protocol).arg("--db").arg(db).output();
    check("chancery init", init);
    let mut add = command(bin);
    add.args(["user", "add", "--db"]).arg(db).args(["--name", "loadclient", "--role", "coordinator"]);
    for site in SITES {
        add.args(["--site", site]);
    }
    let mut child = add
        .arg("--password-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chancery user add");
    child.stdin.take().expect("stdin").write_all(b"a long enough password for the load test\n").expect("the password");
    check("chancery user add", child.wait_with_output());
    let out = command(bin).args(["token", "create", "--db"]).arg(db).args(["--user", "loadclient"]).output();
    String::from_utf8(check("chancery token create", out)).expect("a token").trim().to_string()
}

/// A chancery command; the log records the operating-system user as acting.
fn command(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    c.env("USER", "trialmanager");
    c
}

fn check(what: &str, out: std::io::Result<std::process::Output>) -> Vec<u8> {
    let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// `chancery serve` as a child process.
struct Service {
    child: Child,
    address: String,
}

impl Service {
    fn start(bin: &Path, db: &Path) -> Service {
        let mut child = Command::new(bin)
            .args(["serve", "--db"])
            .arg(db)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chancery serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("the first line");
        let address = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("serve said {line:?}")).into();
        Service { child, address }
    }

    /// The service's user + system CPU time so far (Linux).
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name's closing parenthesis; utime and stime are the 14th and 15th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<f64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        let ticks = 100.0; // USER_HZ on Linux
        f.get(11).zip(f.get(12)).map_or(0.0, |(u, s)| (u + s) / ticks)
    }

    fn stop(&mut self) {
        // SIGTERM: the service finishes the group it is writing and stops.
        // SAFETY: a signal to the child this value owns.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct Run {
    latencies: Vec<f64>,
    errors: u64,
    first_error: Option<String>,
}

/// `clients` clients, each randomising one referral after another until
/// `duration` has passed; every referral a new participant and NHS number.
async fn drive(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    next: &Arc<AtomicU32>,
    clients: usize,
    duration: Duration,
) -> Run {
    let deadline = Instant::now() + duration;
    let errors = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url, token, next, errors) =
                (client.clone(), url.to_string(), token.to_string(), next.clone(), errors.clone());
            tokio::spawn(async move {
                let mut run = Run::default();
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let started = Instant::now();
                    let sent = client.post(&url).bearer_auth(&token).json(&referral(i)).send().await;
                    let outcome = match sent {
                        Ok(r) if r.status() == reqwest::StatusCode::OK => {
                            r.bytes().await.map(drop).map_err(|e| e.to_string())
                        }
                        Ok(r) => Err(format!("{}: {}", r.status(), r.text().await.unwrap_or_default())),
                        Err(e) => Err(e.to_string()),
                    };
                    match outcome {
                        Ok(()) => run.latencies.push(started.elapsed().as_secs_f64()),
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            run.first_error.get_or_insert(e);
                        }
                    }
                }
                run
            })
        })
        .collect();
    let mut all = Run::default();
    for t in tasks {
        let run = t.await.expect("a client task");
        all.latencies.extend(run.latencies);
        if all.first_error.is_none() {
            all.first_error = run.first_error;
        }
    }
    all.errors = errors.load(Ordering::Relaxed);
    all
}

/// The request body of referral `i`: participant `L<i>`, a distinct valid NHS number.
fn referral(i: u32) -> serde_json::Value {
    let mut values = serde_json::Map::new();
    for (k, v) in FIELDS {
        values.insert(k.into(), v.into());
    }
    values.insert("condition".into(), CONDITIONS[i as usize % 3].into());
    values.insert("nhs_number".into(), nhs(i).into());
    serde_json::json!({ "participant": format!("L{i}"), "site": SITES[i as usize % 4], "values": values })
}

fn nhs(i: u32) -> String {
    let mut stem = 100_000_000 + i * 2;
    loop {
        if let Some(n) = chancery::identity::nhs_number_from_stem(stem) {
            return n;
        }
        stem += 1;
    }
}

struct Floor {
    n: usize,
    mean: f64,
    p50: f64,
}

impl Floor {
    fn merge(a: &[f64], b: &[f64]) -> Floor {
        let mut all: Vec<f64> = a.iter().chain(b).copied().collect();
        all.sort_by(f64::total_cmp);
        Floor { n: all.len(), mean: all.iter().sum::<f64>() / all.len() as f64, p50: quantile(&all, 0.5) }
    }
}

/// The floor's database: one connection kept open, as the service keeps its
/// own, so that its write-ahead log, once grown to the checkpoint size, is
/// written over in place as the service's is (a log that grows with each
/// commit costs the file system more per `fsync`).
fn floor_database(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("the floor's database");
    conn.pragma_update(None, "journal_mode", "WAL").expect("WAL");
    conn.pragma_update(None, "synchronous", "FULL").expect("synchronous=FULL");
    conn.execute_batch("CREATE TABLE t (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)").expect("a table");
    // Past the first automatic checkpoint (1,000 pages): the log at its size.
    raw_commits(&conn, 1_200);
    conn
}

/// `n` one-row commits of a 700-byte row, each its own `BEGIN IMMEDIATE`
/// transaction, WAL and `synchronous=FULL`: each commit's seconds.
fn raw_commits(conn: &rusqlite::Connection, n: usize) -> Vec<f64> {
    let body = "x".repeat(700);
    (0..n)
        .map(|_| {
            let t = Instant::now();
            conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
            conn.execute("INSERT INTO t (body) VALUES (?1)", [&body]).expect("insert");
            conn.execute_batch("COMMIT").expect("commit");
            t.elapsed().as_secs_f64()
        })
        .collect()
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
