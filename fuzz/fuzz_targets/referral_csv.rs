//! Any bytes as a batch of referrals, then screened by the default protocol.
#![no_main]
use libfuzzer_sys::fuzz_target;

const PROTOCOL: &str = include_str!("../../protocol/work-health-ips.toml");

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static P: chancery::protocol::Protocol = chancery::protocol::Protocol::parse("p", PROTOCOL).unwrap();
    }
    if let Ok(batch) = chancery::referral::parse_batch_csv("fuzz.csv", data) {
        P.with(|p| {
            for (_, r) in &batch {
                let _ = chancery::referral::screen(p, r);
            }
        });
    }
});
