//! Any bytes as a checkpoint file handed to `verify --checkpoint`: refused or
//! parsed, never a panic; a parsed checkpoint is exactly its text again, and
//! checking its signature under any key is an answer, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(c) = chancery::checkpoint::Checkpoint::parse(text)
    {
        assert_eq!(c.to_text(), text);
        let _ = c.signature_valid(&c.head[..]);
        let _ = c.signature_valid(&c.trial);
    }
});
