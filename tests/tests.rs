//! Integration tests, built as one binary.

#[path = "util.rs"]
mod util;

mod accounts;
mod analysis;
mod audit;
mod browser;
mod clock;
mod consent;
mod demo;
mod design;
mod files;
mod group_commit;
mod hardening;
mod hostile;
mod inputs;
mod ledger;
mod operating;
mod operations;
mod outcome_rules;
mod outcomes;
mod report;
mod service_api;
mod service_auth;
mod service_hostile;
mod service_kill;
mod service_pages;
mod service_secrets;
mod service_tls;
mod service_util;
mod vectors;
mod verify_promises;
mod verify_schema;

/// With `autotests = false`, a file under tests/ that no target names is
/// never compiled and its tests never run, silently. Every `.rs` file there
/// must be a module of this binary or a `[[test]]` of its own (or a helper
/// of one: `util.rs`, a test's own folder).
#[test]
fn every_test_file_is_compiled() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let this = std::fs::read_to_string(root.join("tests/tests.rs")).unwrap();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(root.join("tests")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some(stem) = name.strip_suffix(".rs") else { continue };
        let declared = this.lines().any(|l| l.trim() == format!("mod {stem};"))
            || this.contains(&format!("#[path = \"{name}\"]"))
            || manifest.contains(&format!("path = \"tests/{name}\""));
        if name != "tests.rs" && !declared {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "test files no target compiles (add `mod NAME;` to tests/tests.rs): {missing:?}");
}
