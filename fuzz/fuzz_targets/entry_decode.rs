//! Any bytes as a stored log entry: decoded strictly (canonical or refused),
//! and a decoded entry re-encodes to exactly its bytes; events decode or are refused.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(entry) = chancery::log::Entry::decode(text)
    {
        assert_eq!(entry.canonical(), text);
        let _ = chancery::event::Event::from_parts(&entry.kind, &entry.data);
    }
});
