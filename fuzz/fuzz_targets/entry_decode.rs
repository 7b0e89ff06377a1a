//! Any bytes as a stored log entry: decoded strictly (canonical or refused),
//! and a decoded entry re-encodes to exactly its bytes. Its event decodes
//! straight from the canonical text (as verification and the live writer
//! read it) exactly as through the JSON tree, with the same refusals and
//! messages, and decoding into an event decoded before (whose strings and
//! maps are reused) gives the same event as decoding afresh.
#![no_main]
use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;

use chancery::event::Event;
use chancery::log::{Entry, decode_event_into};

thread_local! {
    /// The last event of each kind decoded, to decode the next into.
    static SPARES: RefCell<std::collections::HashMap<String, Event>> = RefCell::default();
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(entry) = Entry::decode(text) else { return };
    assert_eq!(entry.canonical(), text);
    let checked = Entry::check(text).expect("decode accepted it");
    let by_tree = Event::from_parts(&entry.kind, &entry.data);
    assert_eq!(checked.event(), by_tree);
    SPARES.with(|spares| {
        let mut spares = spares.borrow_mut();
        let mut spare = spares.get(&entry.kind).cloned();
        let r = decode_event_into(&entry.kind, checked.data, &mut spare);
        match (&by_tree, r, &spare) {
            (Ok(e), Ok(()), Some(got)) => assert_eq!(got, e),
            (Err(m), Err(got), None) => assert_eq!(&got, m),
            (want, got, spare) => panic!("into a spare: {got:?} / {spare:?}, afresh: {want:?}"),
        }
        if let Ok(e) = by_tree {
            spares.insert(entry.kind.clone(), e);
        }
    });
});
