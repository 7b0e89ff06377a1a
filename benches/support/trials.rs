//! The trials the benches measure: a new trial of the demonstration protocol
//! and the referrals to randomise in it. Shared by `benches/ledger.rs`,
//! `benches/outcomes.rs` and `benches/verify.rs`.

// Each bench uses the part it needs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use chancery::clock::Timestamp;
use chancery::demo::simulate_referrals;
use chancery::keys::{TrialKey, default_key_path};
use chancery::ledger::{InitOptions, Trial, init};
use chancery::protocol::Protocol;
use chancery::referral::{Decision, Referral, screen};

/// The demonstration protocol.
pub fn protocol_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/work-health-ips.toml")
}

/// A new trial of the demonstration protocol at `db` with `seed`, begun by
/// user `bench` on 2026-01-01, opened, with its key.
pub fn new_trial(db: &Path, seed: [u8; 32]) -> (Trial, TrialKey) {
    init(&InitOptions {
        protocol: protocol_path(),
        db: db.to_path_buf(),
        key: default_key_path(db),
        seed: Some(seed),
        user: "bench".into(),
        now: Timestamp::parse("2026-01-01T00:00:00Z").unwrap().into(),
    })
    .unwrap();
    (Trial::open(db).unwrap(), TrialKey::read(&default_key_path(db)).unwrap())
}

/// `n` simulated referrals that are eligible and consent, so every one is
/// allocated, each with its origin (its participant id).
pub fn eligible_referrals(protocol: &Protocol, seed: &[u8; 32], n: usize) -> Vec<(String, Referral)> {
    simulate_referrals(protocol, seed, (n * 2) as u32)
        .into_iter()
        .filter(|r| screen(protocol, r).is_ok_and(|s| s.decision == Decision::Randomise))
        .take(n)
        .map(|r| (r.participant.clone(), r))
        .collect()
}
