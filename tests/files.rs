//! Files that are never half-written, read-only copies that can be audited,
//! inputs read with limits, and designs that cannot be run refused up front.

use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::OnceLock;

use crate::util::{chancery, init_command, protocol};

/// A finished demonstration trial, made once and only read (or copied).
fn demo() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        chancery().args(["demo", "--participants", "300", "--dir"]).arg(dir.path().join("t")).assert().success();
        dir
    })
    .path()
}

fn demo_db() -> PathBuf {
    demo().join("t/trial.db")
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A mounted tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` at `dir`, if this process may (it needs
    /// root); `None` otherwise.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Process::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(dir)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }

    fn remount_read_only(&self) {
        let o = Process::new("mount").args(["-o", "remount,ro"]).arg(&self.0).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Process::new("umount").arg(&self.0).output();
    }
}

/// Fills the filesystem at `dir` with one file, to the last byte.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![b'x'; 4096];
    while f.write_all(&block).is_ok() {}
    while f.write_all(b"x").is_ok() {}
    let _ = f.sync_all();
    path
}

// See: on a full disk `export --out` left a CSV ending mid-row, `checkpoint
// --out` and `analyse --out` empty files, and a rerun was then refused
// because the file existed.
#[test]
fn on_a_full_disk_no_output_is_left_half_written_and_a_rerun_works() {
    let db = demo_db();
    let key = demo().join("t/trial.db.key");
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk"), "1m") else {
        // Without mount permission the same failure is injected in
        // outfile's unit tests (a writer failing part-way).
        eprintln!("skipped: no permission to mount a tmpfs");
        return;
    };
    let d = &disk.0;
    // Room for 8 KiB: the log's export is larger, and fails mid-write.
    let filler = fill(d);
    let room = std::fs::metadata(&filler).unwrap().len() - 8192;
    std::fs::OpenOptions::new().write(true).open(&filler).unwrap().set_len(room).unwrap();
    let export = |what: &str, name: &str| {
        chancery().args(["export", "--what", what, "--db"]).arg(&db).arg("--out").arg(d.join(name)).output().unwrap()
    };
    let out = export("log", "log.csv");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("No space left on device"), "{}", stderr(&out));
    assert_eq!(names(d), ["filler"], "left behind");

    // No room at all.
    let filler = fill(d);
    let checkpoint = || {
        chancery()
            .args(["checkpoint", "--db"])
            .arg(&db)
            .arg("--key")
            .arg(&key)
            .arg("--out")
            .arg(d.join("cp.txt"))
            .output()
            .unwrap()
    };
    let out = checkpoint();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("No space left on device"), "{}", stderr(&out));
    let analyse =
        || chancery().args(["analyse", "--db"]).arg(&db).arg("--out").arg(d.join("analysis")).output().unwrap();
    let out = analyse();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("No space left on device"), "{}", stderr(&out));
    let report = || chancery().args(["report", "--db"]).arg(&db).arg("--out").arg(d.join("report")).output().unwrap();
    let out = report();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(names(d), ["filler"], "only the filler may remain");

    // With room again, the same commands succeed: nothing stands in their way.
    std::fs::remove_file(&filler).unwrap();
    let out = export("log", "log.csv");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read_to_string(d.join("log.csv")).unwrap().ends_with('\n'));
    let out = checkpoint();
    assert!(out.status.success(), "{}", stderr(&out));
    chancery::checkpoint::Checkpoint::parse(&std::fs::read_to_string(d.join("cp.txt")).unwrap()).unwrap();
    let out = analyse();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        names(&d.join("analysis")),
        ["analysis.json", "baseline.csv", "consort.csv", "estimates.csv", "survival.csv"]
    );
    assert!(report().status.success());
    assert_eq!(names(d), ["analysis", "cp.txt", "log.csv", "report"]);
}

// See: `analyse --out` silently replaced existing tables while `export`,
// `report` and `backup` refused.
#[test]
fn every_out_refuses_an_existing_file_unless_forced() {
    let db = demo_db();
    let key = demo().join("t/trial.db.key");
    let dir = tempfile::tempdir().unwrap();
    let tables = dir.path().join("tables");
    chancery().args(["analyse", "--db"]).arg(&db).arg("--out").arg(&tables).assert().success();
    let estimates = tables.join("estimates.csv");
    let first = std::fs::read(&estimates).unwrap();
    std::fs::write(&estimates, "keep me").unwrap();
    std::fs::remove_file(tables.join("survival.csv")).unwrap();
    let out = chancery().args(["analyse", "--db"]).arg(&db).arg("--out").arg(&tables).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("analysis.json already exists") && e.contains("--force"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    // Refused whole: the missing table was not written either.
    assert_eq!(std::fs::read_to_string(&estimates).unwrap(), "keep me");
    assert!(!tables.join("survival.csv").exists());
    chancery().args(["analyse", "--force", "--db"]).arg(&db).arg("--out").arg(&tables).assert().success();
    assert_eq!(std::fs::read(&estimates).unwrap(), first);
    assert!(tables.join("survival.csv").exists());

    // export, checkpoint and report: the same rule and the same message.
    let file = dir.path().join("out.txt");
    let cases: Vec<(Vec<String>, PathBuf)> = vec![
        (
            vec!["export".into(), "--what".into(), "allocations".into(), "--out".into(), file.display().to_string()],
            file.clone(),
        ),
        (
            vec![
                "checkpoint".into(),
                "--key".into(),
                key.display().to_string(),
                "--out".into(),
                file.display().to_string(),
            ],
            file.clone(),
        ),
        (vec!["report".into(), "--out".into(), dir.path().display().to_string()], dir.path().join("report.html")),
    ];
    for (args, target) in cases {
        std::fs::write(&target, "keep me").unwrap();
        let out = chancery().args(&args).arg("--db").arg(&db).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains("already exists") && stderr(&out).contains("--force"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me", "{args:?}");
        chancery().args(&args).arg("--db").arg(&db).arg("--force").assert().success();
        assert_ne!(std::fs::read_to_string(&target).unwrap(), "keep me", "{args:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600, "{args:?}");
        }
    }
    // No temporary file is left beside the outputs.
    assert!(names(dir.path()).iter().all(|n| !n.ends_with(".partial")), "{:?}", names(dir.path()));
}

/// A read-only copy of the demonstration's database, as an auditor holds
/// one: on a read-only mount when this process may mount (root ignores file
/// permissions), else in a folder and file without write permission.
struct ReadOnlyCopy {
    db: PathBuf,
    _mount: Option<Tmpfs>,
    _dir: tempfile::TempDir,
}

fn read_only_copy() -> ReadOnlyCopy {
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    let mount = Tmpfs::mount(&media, "16m");
    let db = media.join("trial.db");
    std::fs::copy(demo_db(), &db).unwrap();
    match &mount {
        Some(m) => m.remount_read_only(),
        None => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
            std::fs::set_permissions(&media, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
    }
    ReadOnlyCopy { db, _mount: mount, _dir: dir }
}

// See: verify, status, export and analyse could not open a database on a
// read-only medium or in a folder the user cannot write.
#[test]
fn every_reading_command_works_on_a_read_only_copy() {
    let copy = read_only_copy();
    let db = &copy.db;
    let before = std::fs::read(db).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let key = demo().join("t/trial.db.key");
    let run = |args: &[&str]| {
        let out = chancery().args(args).arg("--db").arg(db).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(run(&["verify"]).contains("verified"));
    assert!(run(&["status"]).contains("log: "));
    for what in ["allocations", "log", "participants", "outcomes", "history", "codebook"] {
        assert!(run(&["export", "--what", what]).lines().count() > 1, "{what}");
    }
    assert!(run(&["analyse"]).contains("CACE"));
    assert!(run(&["followup", "due"]).contains("follow-up due"));
    assert!(run(&["checkpoint", "--key", key.to_str().unwrap()]).contains("signature: "));
    let report = out_dir.path().join("report");
    assert!(run(&["report", "--out", report.to_str().unwrap()]).contains("report written"));
    let backup = out_dir.path().join("copy.db");
    assert!(run(&["backup", "--to", backup.to_str().unwrap()]).contains("the copy verifies"));
    // A write is refused, and nothing changed.
    let out = chancery()
        .args(["withdraw", "--participant", "R00001", "--reason", "moved away", "--db"])
        .arg(db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read(db).unwrap(), before);
    assert_eq!(names(db.parent().unwrap()), ["trial.db"], "no -wal or -shm was made beside it");
}

// See: a database on /dev/shm is lost when the machine restarts.
#[test]
fn a_database_on_a_memory_filesystem_is_warned_about() {
    let shm = Path::new("/dev/shm");
    if chancery::store::volatile_warning(&shm.join("x.db")).is_none() {
        eprintln!("skipped: /dev/shm is not a memory filesystem here");
        return;
    }
    let dir = tempfile::tempdir_in(shm).unwrap();
    let db = dir.path().join("trial.db");
    let out = init_command(chancery(), &protocol("work-health-ips.toml"), &db).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let warning = format!(
        "warning: {} is on a memory-backed filesystem (tmpfs) and will be lost when the machine restarts; keep a trial's database on a disk\n",
        db.display()
    );
    assert_eq!(stderr(&out), warning);
    let out = chancery()
        .args(["withdraw", "--participant", "P1", "--reason", "moved away", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(stderr(&out).starts_with(&warning), "{}", stderr(&out));
}

// See: `verify --checkpoint /dev/urandom` grew to 4.4 GB and `outcome import
// --csv /dev/zero` to 10 GB.
#[test]
fn no_input_is_read_without_a_limit() {
    let db = demo_db();
    let out = chancery().args(["verify", "--checkpoint", "/dev/urandom", "--db"]).arg(&db).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: /dev/urandom is larger than a checkpoint can be (over 16 KiB); check the file name\n"
    );
    for args in [&["outcome", "import", "--csv"][..], &["randomise", "--key", "k", "--batch"]] {
        let out = chancery().args(args).arg("/dev/zero").arg("--db").arg(&db).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(
            stderr(&out),
            "error: /dev/zero line 1: longer than 65536 bytes, more than any row of a CSV file holds; check the file (is it a CSV file?)\n",
            "{args:?}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out =
        chancery().args(["init", "--protocol", "/dev/zero", "--db"]).arg(dir.path().join("t.db")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/dev/zero is larger than a protocol can be (over 1 MiB)"), "{}", stderr(&out));
    assert!(names(dir.path()).is_empty());
}

/// The minimisation example with `edit` applied to its text, written to `dir`.
fn minimisation_protocol(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(protocol("example-minimisation.toml")).unwrap();
    let path = dir.join("protocol.toml");
    std::fs::write(&path, edit(text)).unwrap();
    path
}

/// `n` four-level category fields, all minimisation factors.
fn many_factors(n: usize) -> impl Fn(String) -> String {
    move |text| {
        let factors: Vec<String> = (0..n).map(|i| format!("{{ field = \"f{i}\" }}")).collect();
        let mut t = text.replacen(
            "  { field = \"employment_status\" },\n",
            &format!("  {{ field = \"employment_status\" }},\n  {},\n", factors.join(",\n  ")),
            1,
        );
        for i in 0..n {
            t.push_str(&format!(
                "\n[[fields]]\nname = \"f{i}\"\ntype = \"category\"\nlevels = [\"a\", \"b\", \"c\", \"d\"]\n"
            ));
        }
        t
    }
}

// See: `simulate` on 40 four-level factors (accepted by `init`) was killed
// for memory, and with 12 used 2.3 GB before refusing.
#[test]
fn impossible_strata_counts_are_refused_before_anything_is_allocated() {
    let dir = tempfile::tempdir().unwrap();
    for n in [40, 12] {
        let p = minimisation_protocol(dir.path(), many_factors(n));
        let db = dir.path().join(format!("t{n}.db"));
        let out = init_command(chancery(), &p, &db).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{n}");
        let e = stderr(&out);
        assert!(e.contains("strata, more than the 100000 any trial could fill"), "{e}");
        assert!(!db.exists());
        let out = chancery().args(["simulate", "--trials", "1", "--protocol"]).arg(&p).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{n}");
        assert!(stderr(&out).contains("any trial could fill"), "{}", stderr(&out));
    }
    // 3 sites x 3 conditions x 2 employment statuses x 4^3 = 1152 strata are fine.
    let p = minimisation_protocol(dir.path(), many_factors(3));
    init_command(chancery(), &p, &dir.path().join("ok.db")).assert().success();
}

// See: p1 = 0.5, p2 = 0.50000000001 printed "18446744073709551615 +
// 18446744073709551615 = 18446744073709551614 in total".
#[test]
fn power_says_a_design_is_not_achievable_instead_of_overflowing() {
    let out = chancery().args(["power", "proportions", "--p1", "0.5", "--p2", "0.50000000001"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("the design is not achievable") && e.contains("more than the 10 million"), "{e}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("18446744073709551615"));
}

// See: minimisation with p = 0 was accepted and put every participant in one arm.
#[test]
fn minimisation_with_p_at_most_a_half_is_refused_at_init() {
    let dir = tempfile::tempdir().unwrap();
    for p in ["0", "0.5"] {
        let path = minimisation_protocol(dir.path(), |t| t.replace("p = 0.8", &format!("p = {p}")));
        let db = dir.path().join("t.db");
        let out = init_command(chancery(), &path, &db).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "p = {p}");
        let e = stderr(&out);
        assert!(
            e.contains(&format!("p = {p}: minimisation must take the arm that reduces imbalance more often than not")),
            "{e}"
        );
        assert!(!db.exists());
    }
    let path = minimisation_protocol(dir.path(), |t| t.replace("p = 0.8", "p = 0.51"));
    init_command(chancery(), &path, &dir.path().join("ok.db")).assert().success();
}
