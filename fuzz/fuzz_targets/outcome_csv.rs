//! Any bytes as an outcome import file, then validated against the default
//! protocol's rules: errors, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let on = chrono::NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
    let _ = chancery::followup::parse_outcome_csv("fuzz.csv", data, on);
});
