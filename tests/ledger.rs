//! The allocation ledger: init, randomise, batch, status, export, and refusals.

use std::path::Path;

use chancery::allocation::{self, Detail, State};
use chancery::protocol::Protocol;

use crate::util::*;

fn seed() -> [u8; 32] {
    chancery::keys::parse_seed(SEED).unwrap()
}

/// The arms the first allocations get, as a string of arm indices, for a fixed
/// seed and a fixed cycle of strata.
fn golden_sequence(protocol_name: &str, n: usize) -> String {
    let p = Protocol::load(&protocol(protocol_name)).unwrap();
    let mut state = State::new(&p);
    let mut out = String::new();
    for i in 0..n {
        let levels: Vec<usize> = p.factors.iter().enumerate().map(|(f, x)| (i / (f + 1)) % x.levels.len()).collect();
        let a = allocation::allocate(&p, &seed(), &state, &levels);
        state.record(&a);
        out.push(char::from(b'0' + a.arm as u8));
    }
    out
}

// Golden vectors: a change to any of these is a change to allocation, which
// needs a format version bump and a docs/SPEC.md entry.
#[test]
fn golden_permuted_blocks() {
    assert_eq!(golden_sequence("work-health-ips.toml", 60), GOLDEN_BLOCKS);
}

#[test]
fn golden_simple_two_to_one() {
    assert_eq!(golden_sequence("example-simple-2to1.toml", 60), GOLDEN_SIMPLE);
}

#[test]
fn golden_minimisation() {
    assert_eq!(golden_sequence("example-minimisation.toml", 60), GOLDEN_MINIMISATION);
}

const GOLDEN_BLOCKS: &str = "001001011010100001001011011000100100111011111101010110111101";
const GOLDEN_SIMPLE: &str = "000101111110010110001100000001100001000100110101001000001001";
const GOLDEN_MINIMISATION: &str = "110001100011001000011110101110100111101100100010011001010011";

#[test]
fn golden_stream_words() {
    let mut s = chancery::random::Stream::open(&seed(), "blocks/all", 0);
    let words: Vec<u32> = (0..4).map(|_| s.next_word()).collect();
    assert_eq!(words, GOLDEN_WORDS);
    assert_eq!(chancery::random::stream_id("simple"), GOLDEN_STREAM_ID);
}

const GOLDEN_WORDS: [u32; 4] = [784229468, 3190339784, 663925063, 458137206];
const GOLDEN_STREAM_ID: u64 = 10968693422238453089;

#[test]
fn hand_worked_minimisation_matches_its_recorded_scores() {
    // Arms ips, usual_care (1:1); factors site (weight 2), condition, employment_status; range; p = 0.8.
    // Before: at site leeds ips 3, usual_care 1; condition msk ips 1, usual_care 2;
    // employment out_of_work ips 2, usual_care 2. New participant: leeds, msk, out_of_work.
    //   ips:        site (4,1) range 3 × 2000 = 6000; msk (2,2) 0; out_of_work (3,2) 1 × 1000 → 7000
    //   usual_care: site (3,2) range 1 × 2000 = 2000; msk (1,3) 2 × 1000 = 2000; (2,3) 1000 → 5000
    // usual_care minimises; the draw decides whether p takes it.
    let p = Protocol::load(&protocol("example-minimisation.toml")).unwrap();
    let mut state = State::new(&p);
    let (site, condition, employment) = (0, 1, 0); // leeds, msk, out_of_work
    state.counts[0][site] = vec![3, 1];
    state.counts[1][condition] = vec![1, 2];
    state.counts[2][employment] = vec![2, 2];
    let a = allocation::allocate(&p, &seed(), &state, &[site, condition, employment]);
    let Detail::Minimisation { scores, preferred, draw_p, draw_arm, .. } = &a.detail else { panic!("{a:?}") };
    assert_eq!(scores, &vec![7000u128, 5000]);
    assert_eq!(preferred, &vec![1]);
    let r = draw_p.expect("a preferred and an other arm: p decides");
    assert_eq!(a.arm, if r < 800_000 { 1 } else { 0 });
    assert_eq!(*draw_arm, None, "a single arm in the chosen set needs no draw");
}

fn randomise(db: &Path, args: &[String]) -> serde_json::Value {
    let out = chancery().args(["randomise", "--json", "--db"]).arg(db).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn randomise_prints_the_documented_json() {
    let dir = tempfile::tempdir().unwrap();
    let db = init(dir.path(), "work-health-ips.toml");
    let v = randomise(&db, &referral_args("P001", "sheffield", &nhs(1), &[]));
    assert_eq!(v["participant"], "P001");
    assert_eq!(v["status"], "randomised");
    assert!(v["arm"] == "ips" || v["arm"] == "usual_care");
    assert_eq!(v["reasons"], serde_json::json!([]));
    assert_eq!(v["seq"], 1);
    assert_eq!(v["log_length"], 2);
    assert_eq!(v["entry_hash"], v["head"]);
    assert_eq!(v["entry_hash"].as_str().unwrap().len(), 64);
}

#[test]
fn ineligible_and_declined_referrals_get_no_arm_but_count() {
    let dir = tempfile::tempdir().unwrap();
    let db = init(dir.path(), "work-health-ips.toml");
    let v =
        randomise(&db, &referral_args("P001", "dudley", &nhs(1), &[("age", "17"), ("employment_status", "in_work")]));
    assert_eq!(v["status"], "ineligible");
    assert_eq!(v["arm"], serde_json::Value::Null);
    let reasons: Vec<String> =
        v["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
    assert!(reasons[0].starts_with("adult:") && reasons[1].starts_with("in_work_region:"), "{reasons:?}");
    let v = randomise(&db, &referral_args("P002", "dudley", &nhs(2), &[("consent", "no"), ("phq9", "")]));
    assert_eq!(v["status"], "declined");
    assert_eq!(v["arm"], serde_json::Value::Null);
    let out = chancery().args(["status", "--json", "--db"]).arg(&db).output().unwrap();
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (s["screened"].as_u64(), s["ineligible"].as_u64(), s["declined"].as_u64(), s["randomised"].as_u64()),
        (Some(2), Some(1), Some(1), Some(0))
    );
    assert_eq!(s["by_arm"], serde_json::json!({"ips": 0, "usual_care": 0}));
    assert_eq!(s["log_entries"], 3);
}

#[test]
fn a_duplicate_nhs_number_is_refused_at_another_site() {
    let dir = tempfile::tempdir().unwrap();
    let db = init(dir.path(), "work-health-ips.toml");
    randomise(&db, &referral_args("P001", "sheffield", &nhs(7), &[]));
    let mut args = vec!["randomise".to_string(), "--db".into(), db.display().to_string()];
    args.extend(referral_args("P002", "birmingham", &nhs(7), &[]));
    refused(&db, &args, "already randomised as participant P001 at sheffield");
    // The message never shows the NHS number itself.
    let out = chancery().args(&args).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&nhs(7)));
}

#[test]
fn two_databases_from_the_same_seed_and_referrals_are_identical() {
    let csv = batch_csv(300);
    let heads: Vec<(String, String)> = (0..2)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let db = init(dir.path(), "work-health-ips.toml");
            let file = dir.path().join("referrals.csv");
            std::fs::write(&file, &csv).unwrap();
            chancery().args(["randomise", "--db"]).arg(&db).arg("--batch").arg(&file).assert().success();
            let alloc = chancery().args(["export", "--what", "allocations", "--db"]).arg(&db).output().unwrap();
            let status = chancery().args(["status", "--json", "--db"]).arg(&db).output().unwrap();
            let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
            (String::from_utf8(alloc.stdout).unwrap(), s["head"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(heads[0], heads[1]);
    assert!(heads[0].0.lines().count() > 200);
}

fn batch_csv(n: u32) -> String {
    let sites = [
        "sheffield",
        "rotherham",
        "barnsley",
        "doncaster",
        "bassetlaw",
        "wolverhampton",
        "dudley",
        "birmingham",
        "sandwell",
    ];
    let conditions = ["mental_health", "msk", "both"];
    let mut s = String::from(
        "participant,site,nhs_number,age,sex,employment_status,condition,referral_source,weeks_out_of_work,gp_in_area,wants_work,receiving_ips,consent,phq9,gad7,swemwbs,eq5d\n",
    );
    for i in 0..n {
        let site = sites[(i as usize * 7) % 9];
        let emp = if i % 5 == 0 && (i as usize * 7) % 9 < 5 { "in_work" } else { "out_of_work" };
        let consent = if i % 13 == 0 { "no" } else { "yes" };
        let age = if i % 17 == 0 { 17 } else { 20 + i % 40 };
        s.push_str(&format!(
            "B{i:04},{site},{},{age},female,{emp},{},gp,{},yes,yes,no,{consent},{},{},{},0.{}\n",
            nhs(1000 + i),
            conditions[i as usize % 3],
            if emp == "in_work" { String::new() } else { (4 + i % 50).to_string() },
            i % 28,
            i % 22,
            7 + i % 29,
            100 + i % 800
        ));
    }
    s
}

#[test]
fn a_batch_is_processed_in_order_and_keeps_block_balance() {
    let dir = tempfile::tempdir().unwrap();
    let db = init(dir.path(), "work-health-ips.toml");
    let file = dir.path().join("referrals.csv");
    std::fs::write(&file, batch_csv(600)).unwrap();
    let out = chancery().args(["randomise", "--json", "--db"]).arg(&db).arg("--batch").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.len(), 600);
    for (i, c) in v.iter().enumerate() {
        assert_eq!(c["participant"], format!("B{i:04}"));
        assert_eq!(c["seq"], i as u64 + 1);
    }
    // Running imbalance within every stratum never exceeds half the largest block (6 / 2).
    let mut diff = std::collections::HashMap::<String, i64>::new();
    for c in v.iter().filter(|c| c["status"] == "randomised") {
        let d = diff.entry(c["stratum"].as_str().unwrap().to_string()).or_default();
        *d += if c["arm"] == "ips" { 1 } else { -1 };
        assert!(d.abs() <= 3, "{c}");
    }
}

#[test]
fn a_batch_with_bad_rows_is_refused_whole_listing_every_bad_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = init(dir.path(), "work-health-ips.toml");
    let mut csv = batch_csv(5);
    csv = csv.replacen(",female,", ",robot,", 1); // line 2: bad level
    csv.push_str(&format!("B0099,narnia,{},30,female,out_of_work,msk,gp,10,yes,yes,no,yes,1,1,10,0.5\n", nhs(5000)));
    csv.push_str(&format!("B0001,sheffield,{},30,female,out_of_work,msk,gp,10,yes,yes,no,yes,1,1,10,0.5\n", nhs(5001)));
    let file = dir.path().join("bad.csv");
    std::fs::write(&file, csv).unwrap();
    let before = db_snapshot(&db);
    let out = chancery().args(["randomise", "--db"]).arg(&db).arg("--batch").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.csv:2: participant B0000: field sex"), "{err}");
    assert!(err.contains("bad.csv:7: participant B0099: unknown site \"narnia\""), "{err}");
    assert!(err.contains("bad.csv:8: participant B0001 appears twice in this batch (also at"), "{err}");
    assert!(before == db_snapshot(&db), "the database changed");
}

#[test]
fn a_batch_naming_people_randomised_by_an_earlier_batch_is_refused_in_row_order() {
    // A batch writes its identity rows in key order at the end, so a second
    // randomisation of a person is found there; the report still lists the
    // rows in the file's order, names the earlier participant, and writes nothing.
    let dir = tempfile::tempdir().unwrap();
    let db = init(dir.path(), "work-health-ips.toml");
    let first = dir.path().join("first.csv");
    std::fs::write(&first, batch_csv(40)).unwrap();
    chancery().args(["randomise", "--db"]).arg(&db).arg("--batch").arg(&first).assert().success();
    let header = batch_csv(0);
    let row = |id: &str, site: &str, nhs_of: u32| {
        format!("{id},{site},{},30,female,out_of_work,msk,gp,10,yes,yes,no,yes,1,1,10,0.5\n", nhs(nhs_of))
    };
    // B0001 and B0014 were randomised by the first batch (B0000 was not: aged 17).
    let csv = format!(
        "{header}{}{}{}{}{}",
        row("C0001", "dudley", 9001),
        row("C0002", "sheffield", 1014),
        row("C0003", "dudley", 9003),
        row("C0004", "sandwell", 1001),
        row("C0005", "dudley", 9005)
    );
    let second = dir.path().join("second.csv");
    std::fs::write(&second, csv).unwrap();
    let before = db_snapshot(&db);
    let out = chancery().args(["randomise", "--db"]).arg(&db).arg("--batch").arg(&second).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let a = err.find("second.csv:3: participant C0002: this NHS number was already randomised as participant B0014");
    let b = err.find("second.csv:5: participant C0004: this NHS number was already randomised as participant B0001");
    assert!(a.is_some() && b.is_some() && a < b, "{err}");
    assert!(!err.contains("C0001") && !err.contains("C0003") && !err.contains("C0005"), "{err}");
    assert!(!err.contains(&nhs(1014)) && !err.contains(&nhs(1001)), "no NHS number in the message: {err}");
    assert!(before == db_snapshot(&db), "the database changed");
    // The same rows one at a time: the first new one is written, the repeat refused.
    let single = dir.path().join("single.csv");
    std::fs::write(&single, format!("{header}{}", row("C0004", "sandwell", 1001))).unwrap();
    let out = chancery().args(["randomise", "--db"]).arg(&db).arg("--batch").arg(&single).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already randomised as participant B0001"));
    assert!(before == db_snapshot(&db), "the database changed");
}

#[test]
fn bad_csv_files_are_refused_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = init(dir.path(), "work-health-ips.toml");
    let cases: &[(&[u8], &str)] = &[
        (b"site,participant\nx,y\n", "header must start with participant,site"),
        (b"participant,site,age,age\nP1,sheffield,30,30\n", "column \"age\" appears twice"),
        (b"participant,site,age\nP1,sheffield\n", "bad.csv:2: the row has 2 cells but the header has 3"),
        (b"participant,site,age\n", "no referrals"),
        (b"participant,site,age\nP1,sheffield,\xff\n", "not UTF-8"),
    ];
    for (bytes, needle) in cases {
        let file = dir.path().join("bad.csv");
        std::fs::write(&file, bytes).unwrap();
        refused(
            &db,
            &[
                "randomise".into(),
                "--db".into(),
                db.display().to_string(),
                "--batch".into(),
                file.display().to_string(),
            ],
            needle,
        );
    }
}

#[test]
fn bad_referrals_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = init(dir.path(), "work-health-ips.toml");
    let base = |p: &str, o: &[(&str, &str)]| {
        let mut a = vec!["randomise".to_string(), "--db".into(), db.display().to_string()];
        a.extend(referral_args(p, "sheffield", &nhs(3), o));
        a
    };
    refused(&db, &base("P1", &[("phq9", "28")]), "phq9: 28 is out of range");
    refused(&db, &base("P1", &[("phq9", "")]), "baseline field phq9 is missing");
    refused(&db, &base("P1", &[("eq5d", "NaN")]), "not a plain decimal number");
    refused(&db, &base("P1", &[("age", "99999999999999999999")]), "too large");
    refused(&db, &base("P1", &[("nhs_number", "1234567890")]), "not a valid NHS number");
    refused(&db, &base("P1", &[("colour", "red")]), "unknown field \"colour\"");
    refused(&db, &base("P 1", &[]), "participant id \"P 1\" is not valid");
    refused(&db, &base("'; DROP TABLE log; --", &[]), "is not valid");
    refused(&db, &base("P1", &[("consent", "")]), "consent is missing");
    let mut bad_set = base("P1", &[]);
    bad_set.push("--set".into());
    bad_set.push("novalue".into());
    refused(&db, &bad_set, "is not FIELD=VALUE");
    // Back-dating is refused.
    let mut early = base("P1", &[]);
    early.extend(["--now".to_string(), "2026-01-01T00:00:00Z".to_string()]);
    refused(&db, &early, "cannot be back-dated");
    // A wrong key is refused.
    let other = tempfile::tempdir().unwrap();
    init(other.path(), "work-health-ips.toml");
    chancery()
        .args(["init", "--protocol"])
        .arg(protocol("example-simple-2to1.toml"))
        .arg("--db")
        .arg(other.path().join("x.db"))
        .assert()
        .success();
    let mut wrong_key = base("P1", &[]);
    wrong_key.extend(["--key".to_string(), other.path().join("x.db.key").display().to_string()]);
    refused(&db, &wrong_key, "not this trial's key");
}

#[test]
fn usage_errors_exit_2() {
    let out = chancery().args(["randomise"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = chancery().args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn init_never_overwrites_and_prints_the_commitments() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let out = chancery()
        .args(["init", "--json", "--protocol"])
        .arg(protocol("work-health-ips.toml"))
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["seed_commitment"].as_str().unwrap().len(), 64);
    assert_eq!(v["protocol_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(v["key_origin"], "random");
    let key = std::fs::read_to_string(dir.path().join("t.db.key")).unwrap();
    let seed_line = key.lines().find(|l| l.starts_with("seed")).unwrap();
    let seed_hex = seed_line.split('=').nth(1).unwrap().trim();
    // The seed is nowhere in what init printed or in the database.
    assert!(!String::from_utf8_lossy(&out.stdout).contains(seed_hex));
    assert!(!std::fs::read(&db).unwrap().windows(64).any(|w| w == seed_hex.as_bytes()));
    let files = |names: &[&str]| names.iter().map(|n| std::fs::read(dir.path().join(n)).unwrap()).collect::<Vec<_>>();
    let before = (files(&["t.db.key", "t.db.key.signing"]), db_snapshot(&db));
    let again = chancery()
        .args(["init", "--protocol"])
        .arg(protocol("work-health-ips.toml"))
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    // Neither the trial nor its keys were touched.
    assert!(before == (files(&["t.db.key", "t.db.key.signing"]), db_snapshot(&db)), "init changed an existing trial");
}

#[test]
fn bad_protocols_are_refused_at_init_naming_file_line_and_problem() {
    let base = std::fs::read_to_string(protocol("work-health-ips.toml")).unwrap();
    let cases: Vec<(String, &str)> = vec![
        (
            base.replace("method = \"permuted_blocks\"", "method = \"coin_toss\""),
            "unknown allocation method \"coin_toss\"",
        ),
        (
            base.replace("ratio = 1\n\n[[arms]]\nid = \"usual_care\"", "ratio = 0\n\n[[arms]]\nid = \"usual_care\""),
            "ratio 0",
        ),
        (
            base.replace(
                "levels = [\"female\", \"male\", \"other\", \"not_stated\"]",
                "levels = [\"female\", \"female\"]",
            ),
            "level \"female\" is declared twice",
        ),
        (
            base.replace(
                "strata = [\"site\", \"employment_status\", \"condition\"]",
                "strata = [\"site\", \"postcode\"]",
            ),
            "factor \"postcode\" names no declared field",
        ),
        (
            base.replace("strata = [\"site\", \"employment_status\", \"condition\"]", "strata = [\"site\", \"site\"]"),
            "listed twice",
        ),
        (
            base.replace(
                "require = { field = \"age\", op = \"ge\", value = 18 }",
                "require = { field = \"height\", op = \"ge\", value = 18 }",
            ),
            "undeclared field \"height\"",
        ),
        (
            base.replace("min = 0\nmax = 27\ndescription = \"Patient", "min = 27\nmax = 0\ndescription = \"Patient"),
            "min 27 is greater than max 0",
        ),
        (base.replace("block_sizes = [2, 4, 6]", "block_sizes = [3]"), "block size 3 is not a positive multiple"),
        (base.replace("format = 1", "format = 2"), "protocol format 2 is not supported"),
        (base.replace("[trial]", "[trial\n"), "bad.toml:"),
        (
            {
                let (head, rest) = base.split_once("[[arms]]").unwrap();
                format!("{head}[allocation]{}", rest.split_once("[allocation]").unwrap().1)
            },
            "declares no arms",
        ),
    ];
    for (text, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, &text).unwrap();
        let db = dir.path().join("t.db");
        let out = chancery().args(["init", "--protocol"]).arg(&file).arg("--db").arg(&db).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{needle}: {err}");
        assert!(err.contains(needle), "expected {needle:?} in {err}");
        assert!(err.contains("bad.toml"), "the file is named: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(!db.exists() && !dir.path().join("t.db.key").exists(), "nothing is created");
    }
}

#[test]
fn a_protocol_error_names_the_line() {
    let base = std::fs::read_to_string(protocol("work-health-ips.toml")).unwrap();
    let text = base.replace("min = 7\nmax = 35", "min = 35\nmax = 7");
    let line = text.lines().position(|l| l.contains("name = \"swemwbs\"")).unwrap() + 1;
    let e = Protocol::parse("p.toml", &text).unwrap_err().to_string();
    // The span of a [[fields]] table starts at its first key.
    assert!(
        e.starts_with(&format!("p.toml:{line}:")) || e.starts_with(&format!("p.toml:{}:", line - 1)),
        "{e} (line {line})"
    );
}

#[test]
fn exports_have_the_documented_columns() {
    let dir = tempfile::tempdir().unwrap();
    let db = init(dir.path(), "work-health-ips.toml");
    randomise(&db, &referral_args("P001", "sheffield", &nhs(1), &[]));
    let out = chancery().args(["export", "--what", "allocations", "--db"]).arg(&db).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("participant,site,stratum,arm,seq,randomised_at,no_further_contact\n"), "{text}");
    assert!(text.contains("P001,sheffield,site=sheffield|employment_status=out_of_work|condition=mental_health,"));
    let out = chancery().args(["export", "--what", "log", "--format", "json", "--db"]).arg(&db).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[1]["type"], "participant_randomised");
    // The NHS number never reaches the database or the exports.
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&nhs(1)));
    assert!(!std::fs::read(&db).unwrap().windows(10).any(|w| w == nhs(1).as_bytes()));
    // An existing output file is never overwritten.
    let target = dir.path().join("out.csv");
    std::fs::write(&target, "keep").unwrap();
    let out = chancery()
        .args(["export", "--what", "allocations", "--db"])
        .arg(&db)
        .arg("--out")
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
}

#[test]
fn a_file_that_is_not_a_chancery_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    std::fs::write(&db, b"this is not sqlite at all, just some text that is long enough to be a header....").unwrap();
    let out = chancery().args(["status", "--db"]).arg(&db).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a SQLite database") || err.contains("not a chancery database"), "{err}");
    let out = chancery().args(["status", "--db"]).arg(dir.path().join("missing.db")).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

/// Two new trials of one protocol from the same seed, in `dir`, and their key.
/// The eligible, consenting referrals among `n` simulated for `p`, each with its id as origin.
fn eligible(p: &chancery::protocol::Protocol, n: u32) -> Vec<(String, chancery::referral::Referral)> {
    chancery::demo::simulate_referrals(p, &seed(), n)
        .into_iter()
        .filter(|r| {
            chancery::referral::screen(p, r).is_ok_and(|s| s.decision == chancery::referral::Decision::Randomise)
        })
        .map(|r| (r.participant.clone(), r))
        .collect()
}

fn twin_trials(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf, chancery::keys::TrialKey) {
    let (one, two) = (dir.join("one"), dir.join("two"));
    std::fs::create_dir_all(&one).unwrap();
    std::fs::create_dir_all(&two).unwrap();
    let (db1, db2) = (init(&one, name), init(&two, name));
    let key = chancery::keys::TrialKey::read(&chancery::keys::default_key_path(&db1)).unwrap();
    (db1, db2, key)
}

#[test]
fn handles_that_take_turns_allocate_exactly_as_one_handle_would() {
    // A trial handle keeps its allocation state between randomisations, but
    // only while the log head is the one that state belongs to: after another
    // handle (another coordinator) writes, it must load the state afresh.
    use chancery::clock::Timestamp;
    use chancery::keys::default_key_path;
    use chancery::ledger::Trial;
    for name in ["work-health-ips.toml", "example-simple-2to1.toml", "example-minimisation.toml"] {
        let dir = tempfile::tempdir().unwrap();
        let (db1, db2, key) = twin_trials(dir.path(), name);
        let mut single = Trial::open(&db1).unwrap();
        let p = single.protocol().clone();
        let referrals: Vec<_> = eligible(&p, 400).into_iter().take(80).collect();
        assert_eq!(referrals.len(), 80, "{name}");
        let now = Timestamp::parse(NOW).unwrap();
        let mut handles = [Trial::open(&db2).unwrap(), Trial::open(&db2).unwrap()];
        for (i, r) in referrals.iter().enumerate() {
            single.randomise(&key, std::slice::from_ref(r), "tester", now).unwrap();
            // Runs of one, two and three calls on each handle in turn.
            let h = (i / (1 + i % 3)) % 2;
            handles[h].randomise(&key, std::slice::from_ref(r), "tester", now).unwrap();
        }
        let alloc = |db: &Path| {
            let out = chancery().args(["export", "--what", "allocations", "--db"]).arg(db).output().unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(alloc(&db1), alloc(&db2), "{name}");
        for db in [&db1, &db2] {
            chancery().args(["verify", "--db"]).arg(db).arg("--key").arg(default_key_path(&db1)).assert().success();
        }
    }
}

#[test]
fn a_handle_that_accepted_a_key_still_refuses_another() {
    // A handle remembers the last key it accepted (so a run of single
    // randomisations does not derive the identity key each time); a different
    // key must still be checked, refused if it is not the trial's, and leave
    // the log unchanged; the right key works again afterwards, and identities
    // hashed by the remembered hasher are the ones a fresh handle finds.
    use chancery::clock::Timestamp;
    use chancery::ledger::Trial;
    let dir = tempfile::tempdir().unwrap();
    let (db, other_db, key) = twin_trials(dir.path(), "work-health-ips.toml");
    // A trial of the same protocol and id under another seed: its key names the same trial.
    let other_dir = tempfile::tempdir().unwrap();
    let third = init(other_dir.path(), "example-simple-2to1.toml");
    let foreign = chancery::keys::TrialKey::read(&chancery::keys::default_key_path(&third)).unwrap();
    let mut same_id = key.clone();
    same_id.seed[0] ^= 1;
    let mut trial = Trial::open(&db).unwrap();
    let p = trial.protocol().clone();
    let referrals = eligible(&p, 60);
    let now = Timestamp::parse(NOW).unwrap();
    trial.randomise(&key, &referrals[..1], "tester", now).unwrap();
    let before = db_snapshot(&db);
    let log_lines = log_snapshot(&db).lines().count();
    for wrong in [&foreign, &same_id] {
        let err = trial.randomise(wrong, &referrals[1..2], "tester", now).unwrap_err().to_string();
        assert!(err.contains("not this trial's key"), "{err}");
        assert!(db_snapshot(&db) == before, "the database changed");
    }
    trial.randomise(&key, &referrals[1..2], "tester", now).unwrap();
    // The same person again under a new id, through the remembered hasher.
    let mut again = referrals[0].1.clone();
    again.participant = "AGAIN1".into();
    let err = trial.randomise(&key, &[("again".into(), again.clone())], "tester", now).unwrap_err().to_string();
    assert!(err.contains("already randomised"), "{err}");
    // That refusal rolled its transaction back: the handle writes again.
    assert_eq!(log_snapshot(&db).lines().count(), log_lines + 1);
    trial.randomise(&key, &referrals[2..3], "tester", now).unwrap();
    drop(trial);
    // A fresh handle on a twin trial hashes identities the same way.
    let mut fresh = Trial::open(&other_db).unwrap();
    fresh.randomise(&key, &referrals[..2], "tester", now).unwrap();
    let identities = |db: &Path| {
        let conn = rusqlite::Connection::open(db).unwrap();
        let mut stmt = conn.prepare("SELECT identity FROM identities ORDER BY seq").unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0)).unwrap().collect::<Result<Vec<_>, _>>().unwrap()
    };
    assert_eq!(identities(&db).len(), 3);
    assert_eq!(identities(&db)[..2], identities(&other_db)[..]);
}

#[test]
fn a_long_batch_prepared_on_a_second_thread_writes_what_short_batches_write() {
    // Batches of 512 or more are screened and allocated on a second thread
    // while the first writes; the log must be byte for byte what the same
    // referrals give in short batches, written on one thread, for every method.
    use chancery::clock::Timestamp;
    use chancery::keys::default_key_path;
    use chancery::ledger::Trial;
    for name in ["work-health-ips.toml", "example-simple-2to1.toml", "example-minimisation.toml"] {
        let dir = tempfile::tempdir().unwrap();
        let (db1, db2, key) = twin_trials(dir.path(), name);
        let mut long = Trial::open(&db1).unwrap();
        let mut short = Trial::open(&db2).unwrap();
        let p = long.protocol().clone();
        // Screened out, declined and randomised referrals, in simulation order.
        let referrals: Vec<_> = chancery::demo::simulate_referrals(&p, &seed(), 1500)
            .into_iter()
            .filter(|r| chancery::referral::screen(&p, r).is_ok())
            .map(|r| (r.participant.clone(), r))
            .collect();
        assert!(referrals.len() > 1200, "{name}");
        let now = Timestamp::parse(NOW).unwrap();
        let written = long.randomise(&key, &referrals, "tester", now).unwrap();
        let mut one_thread = Vec::new();
        for chunk in referrals.chunks(100) {
            one_thread.extend(short.randomise(&key, chunk, "tester", now).unwrap().into_iter().map(|mut c| {
                (c.log_length, c.head) = (0, String::new());
                c
            }));
        }
        let written: Vec<_> = written
            .into_iter()
            .map(|mut c| {
                (c.log_length, c.head) = (0, String::new());
                c
            })
            .collect();
        assert_eq!(serde_json::to_value(&written).unwrap(), serde_json::to_value(&one_thread).unwrap(), "{name}");
        assert_eq!(log_snapshot(&db1), log_snapshot(&db2), "{name}");
        chancery().args(["verify", "--db"]).arg(&db1).arg("--key").arg(default_key_path(&db1)).assert().success();
    }
}

/// A trial whose first batch randomised B0000..B0039; with the CSV of
/// B0000..B0739 and its header and rows B0040..B0739 (700 rows new to the trial).
fn after_a_first_batch(dir: &Path) -> (std::path::PathBuf, String, Vec<String>) {
    let db = init(dir, "work-health-ips.toml");
    let first = dir.join("first.csv");
    std::fs::write(&first, batch_csv(40)).unwrap();
    chancery().args(["randomise", "--db"]).arg(&db).arg("--batch").arg(&first).assert().success();
    let all = batch_csv(740);
    let mut lines: Vec<String> = all.lines().map(str::to_string).collect();
    lines.drain(1..41);
    (db, all, lines)
}

/// Sets cell `field` of a CSV line.
fn set_cell(line: &mut String, field: usize, value: &str) {
    let mut f: Vec<&str> = line.split(',').collect();
    f[field] = value;
    *line = f.join(",");
}

#[test]
fn a_long_batch_with_problems_is_refused_whole_in_row_order() {
    // The same report from the two-thread path: every problem, in the file's
    // order, and nothing written.
    let dir = tempfile::tempdir().unwrap();
    let (db, all, mut lines) = after_a_first_batch(dir.path());
    // Line 22 (B0060) names an unknown site; line 613 (B0651, eligible and
    // consenting) has the NHS number of B0001.
    assert!(lines[21].starts_with("B0060,") && lines[612].starts_with("B0651,"));
    set_cell(&mut lines[21], 1, "narnia");
    set_cell(&mut lines[612], 2, &nhs(1001));
    let csv = lines.join("\n") + "\n";
    let file = dir.path().join("long.csv");
    std::fs::write(&file, csv).unwrap();
    let before = db_snapshot(&db);
    let out = chancery().args(["randomise", "--db"]).arg(&db).arg("--batch").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let a = err.find("long.csv:22: participant B0060: unknown site");
    let b = err.find("long.csv:613: participant B0651: this NHS number was already randomised as participant B0001");
    assert_eq!(err.matches("long.csv:").count(), 2, "{err}");
    assert!(a.is_some() && b.is_some() && a < b, "{err}");
    assert!(before == db_snapshot(&db), "the database changed");

    // With no other problem the repeat is written with the rest and found
    // when the batch's identities are written, 64 to a statement.
    lines[21] = all.lines().nth(61).unwrap().to_string();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = chancery().args(["randomise", "--db"]).arg(&db).arg("--batch").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("long.csv:").count(), 1, "{err}");
    assert!(
        err.contains("long.csv:613: participant B0651: this NHS number was already randomised as participant B0001")
    );
    assert!(before == db_snapshot(&db), "the database changed");
    lines.remove(612);
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    chancery().args(["randomise", "--db"]).arg(&db).arg("--batch").arg(&file).assert().success();
}

#[test]
fn a_long_batch_repeating_an_earlier_participant_id_or_back_dated_writes_nothing() {
    // The second thread finishes and chains the entries ahead of the writer;
    // a participant id recorded by an earlier batch is found only when its
    // row is written, and a clock earlier than the log's last entry before
    // anything is prepared. Either way the batch is refused whole.
    let dir = tempfile::tempdir().unwrap();
    let (db, all, mut lines) = after_a_first_batch(dir.path());
    // Line 301 becomes B0007 again, with an NHS number of its own.
    set_cell(&mut lines[300], 0, "B0007");
    let file = dir.path().join("long.csv");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let before = db_snapshot(&db);
    let out = chancery().args(["randomise", "--db"]).arg(&db).arg("--batch").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("long.csv:").count(), 1, "{err}");
    assert!(err.contains("long.csv:301: participant B0007 is already recorded"), "{err}");
    assert!(before == db_snapshot(&db), "the database changed");

    let good = all.lines().take(1).chain(all.lines().skip(41)).collect::<Vec<_>>().join("\n") + "\n";
    std::fs::write(&file, good).unwrap();
    let out = chancery()
        .args(["randomise", "--db"])
        .arg(&db)
        .arg("--batch")
        .arg(&file)
        .args(["--now", "2025-12-31T23:59:59Z"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be back-dated"));
    assert!(before == db_snapshot(&db), "the database changed");
    chancery().args(["randomise", "--db"]).arg(&db).arg("--batch").arg(&file).assert().success();
    chancery().args(["verify", "--db"]).arg(&db).assert().success();
}

#[test]
fn a_handle_that_revealed_the_seed_refuses_to_randomise_again() {
    // A trial handle keeps the allocation state between its randomisations
    // while the log's head is where it left it; the reveal moves the head, so
    // the same handle must find that randomisation is closed.
    use chancery::clock::Timestamp;
    use chancery::ledger::Trial;
    let dir = tempfile::tempdir().unwrap();
    let (db, _, key) = twin_trials(dir.path(), "work-health-ips.toml");
    let mut trial = Trial::open(&db).unwrap();
    let p = trial.protocol().clone();
    let referrals: Vec<_> = chancery::demo::simulate_referrals(&p, &seed(), 200)
        .into_iter()
        .filter(|r| chancery::referral::screen(&p, r).is_ok())
        .map(|r| (r.participant.clone(), r))
        .collect();
    let now = Timestamp::parse(NOW).unwrap();
    trial.randomise(&key, &referrals[..1], "tester", now).unwrap();
    trial.randomise(&key, &referrals[1..2], "tester", now).unwrap();
    trial.reveal(&key, "recruitment closed", "tester", now).unwrap();
    let before = db_snapshot(&db);
    let err = trial.randomise(&key, &referrals[2..3], "tester", now).unwrap_err().to_string();
    assert!(err.contains("randomisation is closed"), "{err}");
    assert!(before == db_snapshot(&db), "the database changed");
}
