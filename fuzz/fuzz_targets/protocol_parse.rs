//! Any bytes as a protocol file: an error or a protocol, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = chancery::protocol::Protocol::parse("fuzz.toml", text);
    }
});
