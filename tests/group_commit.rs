//! Group commit (`operations::group::in_one_commit`): several writes in one
//! `BEGIN IMMEDIATE … COMMIT`, each its own all-or-nothing unit, answered
//! only once the group is durable; beside other processes writing the same
//! database.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chancery::clock::{Clock, Timestamp};
use chancery::keys::TrialKey;
use chancery::operations::group::{Job, in_one_commit};
use chancery::operations::{self as op, Randomisation, Referrals};

use crate::util::*;

fn clock(at: &str) -> Clock {
    Clock::Fixed(Timestamp::parse(at).unwrap())
}

/// A trial of the default protocol made in process, with its key.
fn trial(dir: &Path) -> (PathBuf, TrialKey) {
    let db = dir.join("trial.db");
    op::init(&op::InitRequest {
        protocol: protocol("work-health-ips.toml"),
        db: db.clone(),
        key: None,
        seed: Some(chancery::keys::parse_seed(SEED).unwrap()),
        user: "tester".into(),
        clock: clock(NOW),
    })
    .unwrap();
    let key = op::read_trial_key(&op::key_path(&db, None)).unwrap();
    (db, key)
}

/// One referral: the complete eligible one but for `overrides`.
fn referral(id: &str, site: &str, nhs: &str, overrides: &[(&str, &str)]) -> Referrals {
    let mut fields = vec![("nhs_number".to_string(), nhs.to_string())];
    fields.extend(REFERRAL_FIELDS.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    for (k, v) in overrides {
        if let Some(slot) = fields.iter_mut().find(|(n, _)| n == k) {
            slot.1 = v.to_string();
        }
    }
    Referrals::single(id, site, &fields)
}

fn request(referrals: Referrals, clock: Clock) -> op::RandomiseRequest {
    op::RandomiseRequest { referrals, user: "coordinator".into(), clock }
}

fn job<'a>(key: &'a TrialKey, r: op::RandomiseRequest) -> Job<'a, Randomisation> {
    Box::new(move |t| op::randomise(t, key, &r))
}

/// Twelve referrals at four sites over the three conditions, with four
/// refused in the middle (an id used before in the group, an NHS number
/// randomised before in the group, a value out of its range, a site the
/// protocol does not have) and one ineligible (screened and written).
fn mixed(at: Clock) -> Vec<(op::RandomiseRequest, Option<&'static str>)> {
    let sites = ["sheffield", "rotherham", "dudley", "birmingham"];
    let conditions = ["mental_health", "msk", "both"];
    let mut out: Vec<_> = (0..12u32)
        .map(|i| {
            let r = referral(
                &format!("G{i}"),
                sites[i as usize % 4],
                &nhs(i),
                &[("condition", conditions[i as usize % 3])],
            );
            (request(r, at), None)
        })
        .collect();
    let refused = [
        (3, referral("G1", "sheffield", &nhs(900), &[]), "participant G1 is already recorded"),
        (5, referral("X1", "dudley", &nhs(2), &[]), "this NHS number was already randomised as participant G2"),
        (7, referral("X2", "sheffield", &nhs(901), &[("age", "abc")]), "age"),
        (9, referral("X3", "leeds", &nhs(902), &[]), "leeds"),
    ];
    for (at_index, r, message) in refused.into_iter().rev() {
        out.insert(at_index, (request(r, at), Some(message)));
    }
    out.insert(11, (request(referral("X4", "sheffield", &nhs(903), &[("age", "17")]), at), None));
    out
}

fn verify_passes(db: &Path, key: &TrialKey) {
    let v = op::verify(db, &op::VerifyRequest { seed: Some(key.seed), checkpoints: vec![] }).unwrap();
    assert_eq!(v.failure, None);
}

/// The log's (seq, ts) pairs, read as an auditor would.
fn log_times(db: &Path) -> Vec<(i64, String)> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut s = c.prepare("SELECT seq, ts FROM log ORDER BY seq").unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<rusqlite::Result<_>>().unwrap()
}

fn randomised(db: &Path) -> std::collections::BTreeSet<String> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut s = c.prepare("SELECT participant FROM referrals WHERE status = 'randomised'").unwrap();
    s.query_map([], |r| r.get(0)).unwrap().collect::<rusqlite::Result<_>>().unwrap()
}

/// The referrals' participant ids in log order.
fn referrals_by_seq(db: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut s = c.prepare("SELECT participant FROM referrals ORDER BY seq").unwrap();
    s.query_map([], |r| r.get(0)).unwrap().collect::<rusqlite::Result<_>>().unwrap()
}

fn as_json(r: &chancery::Result<Randomisation>) -> String {
    match r {
        Ok(r) => serde_json::to_string(r).unwrap(),
        Err(e) => format!("error: {e}"),
    }
}

/// A group answers each request as the same requests made one by one would
/// be answered, and leaves the same log byte for byte (fixed clock): the same
/// allocations, confirmations and receipts; the refused requests refused
/// alone, with their own messages, the others committed; then it verifies.
#[test]
fn a_group_writes_what_the_same_requests_write_one_by_one_and_refuses_each_bad_one_alone() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ((db_a, key_a), (db_b, key_b)) = (trial(a.path()), trial(b.path()));
    let mut grouped = op::open(&db_a).unwrap();
    let mut jobs: Vec<_> = mixed(clock(NOW)).into_iter().map(|(r, _)| job(&key_a, r)).collect();
    let n = jobs.len();
    // What another connection sees while the group runs, from its last job.
    let seen_meanwhile = AtomicUsize::new(0);
    let last = jobs.pop().unwrap();
    let (db, seen) = (&db_a, &seen_meanwhile);
    jobs.push(Box::new(move |t| {
        seen.store(log_times(db).len(), Ordering::SeqCst);
        last(t)
    }));
    let in_group = in_one_commit(&mut grouped, jobs);
    assert_eq!(in_group.len(), n);
    assert_eq!(seen_meanwhile.load(Ordering::SeqCst), 1, "nothing of a group is visible before its one commit");

    let mut single = op::open(&db_b).unwrap();
    let requests = mixed(clock(NOW));
    for ((r, refusal), got) in requests.iter().zip(&in_group) {
        let alone = op::randomise(&mut single, &key_b, r);
        assert_eq!(as_json(got), as_json(&alone));
        match refusal {
            Some(message) => assert!(as_json(got).contains(message), "{message}: {}", as_json(got)),
            None => assert!(got.is_ok(), "{}", as_json(got)),
        }
    }
    assert_eq!(in_group.iter().filter(|r| r.is_err()).count(), 4);
    assert_eq!(log_snapshot(&db_a), log_snapshot(&db_b));
    assert_eq!(db_snapshot(&db_a), db_snapshot(&db_b), "the derived tables too");
    verify_passes(&db_a, &key_a);

    // The next group goes on from where the last left the allocation state.
    let later = clock("2026-03-03T09:00:00Z");
    let next: Vec<_> = (20..26u32)
        .map(|i| request(referral(&format!("H{i}"), "sheffield", &nhs(i), &[("condition", "msk")]), later))
        .collect();
    let jobs = next.iter().cloned().map(|r| job(&key_a, r)).collect();
    let got = in_one_commit(&mut grouped, jobs);
    for (r, got) in next.iter().zip(&got) {
        assert_eq!(as_json(got), as_json(&op::randomise(&mut single, &key_b, r)));
    }
    assert_eq!(log_snapshot(&db_a), log_snapshot(&db_b));
    verify_passes(&db_a, &key_a);
}

/// Each write reads the clock inside its own savepoint, after the writes
/// before it in the group: entry times never decrease within a group or
/// across groups on the system clock, and a write given a fixed time earlier
/// than the last entry is refused alone (the log cannot be back-dated).
/// Outcome records and status changes run in groups as randomisations do.
#[test]
fn entry_times_never_decrease_within_or_across_groups() {
    let dir = tempfile::tempdir().unwrap();
    let (db, key) = trial(dir.path());
    let mut t = op::open(&db).unwrap();
    let mut refused = 0;
    for g in 0..5u32 {
        let mut jobs: Vec<Job<'_, String>> = Vec::new();
        for i in 0..6u32 {
            let r = request(referral(&format!("T{g}_{i}"), "rotherham", &nhs(100 * g + i), &[]), Clock::System);
            let key = &key;
            jobs.push(Box::new(move |t| op::randomise(t, key, &r).map(|r| r.confirmations[0].participant.clone())));
        }
        // Back-dated: refused alone, in the middle of the group.
        let r = request(referral(&format!("B{g}"), "rotherham", &nhs(100 * g + 50), &[]), clock(NOW));
        let key = &key;
        jobs.insert(3, Box::new(move |t| op::randomise(t, key, &r).map(|_| String::new())));
        if g > 0 {
            let participant = format!("T{}_0", g - 1);
            jobs.push(Box::new(move |t| {
                op::record_outcome(
                    t,
                    &op::RecordRequest {
                        participant,
                        timepoint: "m4".into(),
                        values: vec![("phq9".into(), "7".into())],
                        on: None,
                        window_reason: Some("collected early".into()),
                        user: "coordinator".into(),
                        clock: Clock::System,
                    },
                )
                .map(|w| format!("{w:?}"))
            }));
        }
        for r in in_one_commit(&mut t, jobs) {
            if let Err(e) = r {
                assert!(e.to_string().contains("cannot be back-dated"), "{e}");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 5);
    let times = log_times(&db);
    assert_eq!(times.len(), 1 + 5 * 6 + 4, "trial_created, the randomisations, the outcome records");
    for w in times.windows(2) {
        assert!(w[0].1 <= w[1].1, "entry {} at {} after entry {} at {}", w[1].0, w[1].1, w[0].0, w[0].1);
    }
    verify_passes(&db, &key);
}

/// A job that stops unexpectedly (a panic, which no input should cause) may
/// have left its write half made: the whole group is rolled back and every
/// job answered with an error, and the trial handle goes on.
#[test]
fn a_job_that_panics_rolls_its_group_back_and_the_writer_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (db, key) = trial(dir.path());
    let mut t = op::open(&db).unwrap();
    let before = db_snapshot(&db);
    let mut jobs: Vec<_> = (0..3u32)
        .map(|i| job(&key, request(referral(&format!("K{i}"), "sheffield", &nhs(i), &[]), clock(NOW))))
        .collect();
    jobs.insert(2, Box::new(|_| panic!("a bug in a job")));
    let got = in_one_commit(&mut t, jobs);
    assert_eq!(got.len(), 4);
    for r in &got {
        let e = r.as_ref().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("nothing of the group was written"), "{e}");
    }
    assert!(before == db_snapshot(&db), "a group with a panicking job changed the database");
    let again: Vec<_> = (0..3u32)
        .map(|i| job(&key, request(referral(&format!("K{i}"), "sheffield", &nhs(i), &[]), clock(NOW))))
        .collect();
    assert!(in_one_commit(&mut t, again).iter().all(|r| r.is_ok()));
    verify_passes(&db, &key);
}

/// Set (to the database's path) in the child process that
/// [`a_group_whose_commit_fails_writes_nothing_and_the_next_group_goes_on`]
/// starts: the file-size limit it sets holds for the whole process.
const CHILD: &str = "CHANCERY_TEST_GROUP_COMMIT_FAILS";

/// The requests of the commit-failure test: two groups, the first committed,
/// the second (refused once, by a full disk) and then again.
fn failure_groups() -> [Vec<op::RandomiseRequest>; 2] {
    let one = |i: u32| {
        let condition = ["mental_health", "msk", "both"][i as usize % 3];
        request(referral(&format!("F{i}"), "sheffield", &nhs(i), &[("condition", condition)]), clock(NOW))
    };
    [(0..3).map(one).collect(), (3..9).map(one).collect()]
}

/// A group whose COMMIT fails (here the disk refuses the write-ahead log's
/// growth: a file-size limit, as a full disk would) answers every request
/// with an error saying nothing was written, and writes nothing; the next
/// group, on the same open trial, writes exactly what a trial that never saw
/// the failure writes (the allocation state the failed group left behind is
/// not used), and the log verifies.
#[cfg(target_os = "linux")]
#[test]
fn a_group_whose_commit_fails_writes_nothing_and_the_next_group_goes_on() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ((db, key), (reference, key_b)) = (trial(a.path()), trial(b.path()));
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "group_commit::commit_failure_in_a_process_of_its_own", "--test-threads=1", "--nocapture"])
        .env(CHILD, &db)
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    assert!(said.contains("the failed group wrote nothing; the next group committed"), "{said}");

    let mut t = op::open(&reference).unwrap();
    for group in failure_groups() {
        for r in group {
            op::randomise(&mut t, &key_b, &r).unwrap();
        }
    }
    assert_eq!(log_snapshot(&db), log_snapshot(&reference));
    verify_passes(&db, &key);
}

/// The child of the test above (does nothing unless started by it).
#[cfg(target_os = "linux")]
#[test]
fn commit_failure_in_a_process_of_its_own() {
    let Some(db) = std::env::var_os(CHILD).map(PathBuf::from) else { return };
    let key = op::read_trial_key(&op::key_path(&db, None)).unwrap();
    let mut t = op::open(&db).unwrap();
    let [first, second] = failure_groups();
    let run = |t: &mut op::Trial, group: &[op::RandomiseRequest]| {
        in_one_commit(t, group.iter().cloned().map(|r| job(&key, r)).collect())
    };
    assert!(run(&mut t, &first).iter().all(|r| r.is_ok()));
    let before = db_snapshot(&db);

    // The write-ahead log may not grow past what it holds now.
    let wal = std::fs::metadata(format!("{}-wal", db.display())).unwrap().len();
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system calls on values owned here.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit), 0);
        let low = libc::rlimit { rlim_cur: wal, rlim_max: limit.rlim_max };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &low), 0);
    }
    let failed = run(&mut t, &second);
    // SAFETY: as above.
    unsafe { assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0) };
    assert_eq!(failed.len(), second.len());
    for r in &failed {
        let e = r.as_ref().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.starts_with("committing a group of writes, so nothing of it was written: "), "{e}");
    }
    assert!(before == db_snapshot(&db), "the failed group changed the database");

    assert!(run(&mut t, &second).iter().all(|r| r.is_ok()));
    println!("the failed group wrote nothing; the next group committed");
}

/// Coordinators' `chancery` commands (randomise, outcome record), each its
/// own process, write the database while a group writer in this process
/// (as the service's) commits group after group on the system clock. The
/// commands go through the same lock (SQLite's, `BEGIN IMMEDIATE` with a
/// busy timeout) and wait their turn: every one succeeds, nothing is lost
/// (every write answered is in the log, and nothing else), the entry times
/// never decrease, and the log verifies.
#[test]
fn commands_in_other_processes_and_a_group_writer_share_the_database_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (db, key) = trial(dir.path());
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_chancery"));
    let mut t = op::open(&db).unwrap();
    // Participants whose follow-up the commands record.
    for w in 0..4u32 {
        let r = request(referral(&format!("P{w}"), "sheffield", &nhs(w), &[]), Clock::System);
        op::randomise(&mut t, &key, &r).unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let grouped = Arc::new(Mutex::new(Vec::<String>::new()));
    let writer = {
        let (stop, grouped, key) = (stop.clone(), grouped.clone(), key.clone());
        std::thread::spawn(move || {
            let mut groups = 0u32;
            while !stop.load(Ordering::Relaxed) || groups < 3 {
                let jobs: Vec<Job<'_, String>> = (0..8u32)
                    .map(|i| {
                        let id = format!("S{groups}_{i}");
                        let r = request(referral(&id, "dudley", &nhs(1_000 + 10 * groups + i), &[]), Clock::System);
                        let key = &key;
                        Box::new(move |t: &mut op::Trial| op::randomise(t, key, &r).map(|_| id)) as Job<'_, String>
                    })
                    .collect();
                for r in in_one_commit(&mut t, jobs) {
                    grouped.lock().unwrap().push(r.unwrap());
                }
                groups += 1;
            }
            groups
        })
    };

    let workers: Vec<_> = (0..4u32)
        .map(|w| {
            let (db, bin) = (db.clone(), bin.clone());
            std::thread::spawn(move || {
                let mut written = Vec::new();
                for i in 0..4u32 {
                    let id = format!("C{w}_{i}");
                    let mut args = s(&["randomise", "--db", &db.display().to_string()]);
                    args.extend(referral_args(&id, "birmingham", &nhs(50_000 + 10 * w + i), &[]));
                    written.push((id, run(&bin, &args)));
                }
                for timepoint in ["m4", "m12"] {
                    let participant = format!("P{w}");
                    let mut args = s(&["outcome", "record", "--db", &db.display().to_string()]);
                    args.extend(s(&["--participant", &participant, "--timepoint", timepoint, "--set", "phq9=5"]));
                    args.extend(s(&["--window-reason", "collected early"]));
                    written.push((format!("{participant} {timepoint}"), run(&bin, &args)));
                }
                written
            })
        })
        .collect();
    let commands: Vec<(String, Result<(), String>)> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    let groups = writer.join().unwrap();
    let grouped = grouped.lock().unwrap().clone();

    for (what, result) in &commands {
        assert!(result.is_ok(), "{what}: {result:?}");
    }
    let mut expected: std::collections::BTreeSet<String> = grouped.iter().cloned().collect();
    expected.extend(commands.iter().filter(|(w, _)| w.starts_with('C')).map(|(w, _)| w.clone()));
    expected.extend((0..4).map(|w| format!("P{w}")));
    assert_eq!(randomised(&db), expected, "every write answered is in the log, and nothing else");
    // The commands wrote between the groups, not only before or after them.
    let by_seq = referrals_by_seq(&db);
    let commands_at: Vec<usize> = (0..by_seq.len()).filter(|&i| by_seq[i].starts_with('C')).collect();
    let (first, last) = (commands_at[0], commands_at[commands_at.len() - 1]);
    assert!(by_seq[first..last].iter().any(|p| p.starts_with('S')), "the commands' entries are {commands_at:?}");
    let times = log_times(&db);
    assert_eq!(times.len(), 1 + 4 + 8 * groups as usize + 4 * 4 + 4 * 2);
    for w in times.windows(2) {
        assert!(w[0].1 <= w[1].1, "entry {} at {} after entry {} at {}", w[1].0, w[1].1, w[0].0, w[0].1);
    }
    verify_passes(&db, &key);
}

/// Runs a chancery command on the system clock; `Err` holds its error line.
fn run(bin: &Path, args: &[String]) -> Result<(), String> {
    let out = Command::new(bin)
        .args(args)
        .env_remove("CHANCERY_NOW")
        .env_remove("CHANCERY_ALLOW_FUTURE_TIME")
        .env("USER", "coordinator")
        .output()
        .unwrap();
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}
