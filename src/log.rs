//! The hash-chained log: entries, their canonical bytes and their hashes.
//!
//! Every entry is a JSON object `{"data","prev","seq","ts","type","user","v"}`
//! in canonical form (keys sorted by their UTF-8 bytes, no insignificant white
//! space, strings escaped minimally, integers only, no floats). Its hash is the
//! SHA-256 of those bytes, and `prev` is the previous entry's hash (64 zeros for
//! the first), so altering, removing, inserting or reordering any entry breaks
//! every later link. docs/SPEC.md defines the encoding byte for byte.

use std::borrow::Cow;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event::Event;

/// The log format version written in every entry's `v`.
pub const FORMAT_VERSION: u64 = 1;

/// The `prev` of the first entry.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The largest integer the canonical encoding admits (2^53 − 1), so that every
/// language's JSON parser reads it exactly.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// One log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Format version.
    pub v: u64,
    /// Sequence number, contiguous from 0.
    pub seq: u64,
    /// UTC timestamp, `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    pub ts: String,
    /// The acting user.
    pub user: String,
    /// Event type.
    pub kind: String,
    /// Event data.
    pub data: Value,
    /// Hash of the previous entry, lowercase hex.
    pub prev: String,
}

impl Entry {
    /// The canonical bytes that are hashed and stored.
    pub fn canonical(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("{\"data\":");
        write_canonical(&self.data, &mut out).expect("event data is built from canonical-safe values");
        self.write_after_data(&mut out);
        out
    }

    /// The canonical bytes with the data member written by `data`, which must
    /// append the canonical encoding of this entry's data (the `data` field
    /// itself is not read): how the ledger writes events it encodes directly.
    pub fn canonical_with(&self, data: impl FnOnce(&mut String)) -> String {
        self.finish_canonical(Entry::start_canonical(data))
    }

    /// The start of an entry's canonical bytes, up to the end of its data
    /// member (written by `data`): the part that needs no place in the log, so
    /// it can be made before the entry's sequence number and predecessor are known.
    pub fn start_canonical(data: impl FnOnce(&mut String)) -> String {
        let mut out = String::with_capacity(1024);
        out.push_str("{\"data\":");
        data(&mut out);
        out
    }

    /// This entry's canonical bytes, from their start as made by
    /// [`Entry::start_canonical`] for its data.
    pub fn finish_canonical(&self, mut started: String) -> String {
        self.write_after_data(&mut started);
        started
    }

    /// The canonical bytes after the data member (members are in key order).
    fn write_after_data(&self, out: &mut String) {
        EntryTail { prev: &self.prev, seq: self.seq, ts: &self.ts, kind: &self.kind, user: &self.user, v: self.v }
            .write(out);
    }

    /// Lowercase hex SHA-256 of the canonical bytes.
    pub fn hash_of(canonical: &str) -> String {
        lower_hex(&Sha256::digest(canonical.as_bytes()))
    }

    /// Decodes stored bytes, requiring that they are exactly the canonical
    /// encoding of what they decode to.
    ///
    /// The bytes are checked in one pass by [`Entry::check`]; only when they are
    /// refused does the slower tree decoder run, for its precise message.
    pub fn decode(body: &str) -> Result<Entry, String> {
        match Entry::check(body) {
            Ok(r) => {
                let data = serde_json::from_str(r.data).map_err(|e| format!("not valid JSON: {e}"))?;
                Ok(Entry {
                    v: r.v,
                    seq: r.seq,
                    ts: r.ts.into_owned(),
                    user: r.user.into_owned(),
                    kind: r.kind.into_owned(),
                    data,
                    prev: r.prev.into_owned(),
                })
            }
            Err(m) => Err(m),
        }
    }

    /// Checks that stored bytes are a canonical entry, in one pass over them and
    /// without building a JSON tree, and returns its members borrowed from the
    /// bytes (the data member as its canonical text). Accepts exactly what
    /// [`Entry::decode`] always accepted: the bytes `write_canonical` would
    /// produce for the value they parse to (tests compare the two on canonical
    /// entries and on every kind of non-canonical variant).
    pub fn check(body: &str) -> Result<EntryRef<'_>, String> {
        canonical::entry(body).ok_or_else(|| match decode_via_tree(body) {
            Err(m) => m,
            // The tree decoder would have taken it: never expected, and refused all the same.
            Ok(_) => "the stored bytes are not the canonical encoding of the entry".into(),
        })
    }
}

/// Everything of an entry but its data, borrowed: what follows the data
/// member in its canonical bytes. A batch finishes its entries from this
/// without building an [`Entry`] for each.
#[derive(Debug, Clone, Copy)]
pub struct EntryTail<'a> {
    /// The previous entry's hash.
    pub prev: &'a str,
    /// Sequence number.
    pub seq: u64,
    /// Timestamp text.
    pub ts: &'a str,
    /// Event type.
    pub kind: &'a str,
    /// The acting user.
    pub user: &'a str,
    /// Format version.
    pub v: u64,
}

impl EntryTail<'_> {
    /// Appends the members after `data` (in key order) and the closing brace.
    fn write(&self, out: &mut String) {
        out.push_str(",\"prev\":");
        write_string(self.prev, out);
        out.push_str(",\"seq\":");
        out.push_str(&self.seq.to_string());
        out.push_str(",\"ts\":");
        write_string(self.ts, out);
        out.push_str(",\"type\":");
        write_string(self.kind, out);
        out.push_str(",\"user\":");
        write_string(self.user, out);
        out.push_str(",\"v\":");
        out.push_str(&self.v.to_string());
        out.push('}');
    }

    /// The entry's canonical bytes and their hash, from their start as made by
    /// [`Entry::start_canonical`] for its data.
    pub fn finish(&self, mut started: String) -> (String, String) {
        self.write(&mut started);
        let hash = Entry::hash_of(&started);
        (started, hash)
    }
}

/// A canonical entry's members, borrowed from its stored bytes where no
/// unescaping is needed.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryRef<'a> {
    /// Format version.
    pub v: u64,
    /// Sequence number.
    pub seq: u64,
    /// Timestamp text.
    pub ts: Cow<'a, str>,
    /// The acting user.
    pub user: Cow<'a, str>,
    /// Event type.
    pub kind: Cow<'a, str>,
    /// The data member's canonical JSON text.
    pub data: &'a str,
    /// Hash of the previous entry.
    pub prev: Cow<'a, str>,
}

impl EntryRef<'_> {
    /// The typed event, deserialised from the data's text directly (no JSON
    /// tree). Accepts and refuses exactly what [`Event::from_parts`] does on the
    /// decoded data, and on refusal gives its message.
    pub fn event(&self) -> Result<Event, String> {
        decode_event(&self.kind, self.data)
    }
}

/// [`decode_event`] into `spare`, an event decoded before, whose strings and
/// maps are reused where the direct decoder can; on `Ok`, `spare` holds the
/// event (`Some`), on `Err` nothing (`None`).
pub fn decode_event_into(kind: &str, data: &str, spare: &mut Option<Event>) -> Result<(), String> {
    if let Some(event) = spare.as_mut()
        && crate::event::decode_canonical_data_into(kind, data, event)
    {
        return Ok(());
    }
    match decode_event(kind, data) {
        Ok(event) => {
            *spare = Some(event);
            Ok(())
        }
        Err(m) => {
            *spare = None;
            Err(m)
        }
    }
}

/// The typed event of an entry from its type and its data member's canonical
/// text (as [`EntryRef::event`], for a caller holding those two apart).
pub fn decode_event(kind: &str, data: &str) -> Result<Event, String> {
    if let Some(event) = crate::event::decode_canonical_data(kind, data) {
        return Ok(event);
    }
    // The type member first, so that serde reads the adjacently tagged data
    // straight into its variant instead of buffering it.
    let mut text = String::with_capacity(data.len() + kind.len() + 20);
    text.push_str("{\"type\":");
    write_string(kind, &mut text);
    text.push_str(",\"data\":");
    text.push_str(data);
    text.push('}');
    serde_json::from_str::<Event>(&text).map_err(|_| {
        let value: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        match Event::from_parts(kind, &value) {
            Err(m) => m,
            Ok(_) => format!("event {kind:?} does not decode"),
        }
    })
}

/// The decoder [`Entry::decode`] used before [`Entry::check`]: parse to a tree,
/// re-encode it canonically, compare. Kept for its error messages and as the
/// reference the one-pass check is tested against.
fn decode_via_tree(body: &str) -> Result<Entry, String> {
    let value: Value = serde_json::from_str(body).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(mut map) = value else {
        return Err("an entry must be a JSON object".into());
    };
    let keys: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    if sorted != ["data", "prev", "seq", "ts", "type", "user", "v"] {
        return Err(format!("an entry has the keys data, prev, seq, ts, type, user, v; found {}", sorted.join(", ")));
    }
    let text = |k: &str| map[k].as_str().map(str::to_string).ok_or_else(|| format!("`{k}` must be a string"));
    let int = |k: &str| map[k].as_u64().ok_or_else(|| format!("`{k}` must be a non-negative integer"));
    let mut entry = Entry {
        v: int("v")?,
        seq: int("seq")?,
        ts: text("ts")?,
        user: text("user")?,
        kind: text("type")?,
        data: Value::Null,
        prev: text("prev")?,
    };
    entry.data = map.remove("data").unwrap_or_default();
    // Re-encode (refusing floats and unsafe integers) and compare.
    let mut check = String::with_capacity(body.len());
    check.push_str("{\"data\":");
    write_canonical(&entry.data, &mut check)?;
    entry.write_after_data(&mut check);
    if check != body {
        return Err("the stored bytes are not the canonical encoding of the entry".into());
    }
    Ok(entry)
}

/// The one-pass canonical-form check.
///
/// Written by hand because no JSON crate checks *canonical form*: serde_json
/// (and simd-json, json5, …) accept any valid JSON and discard exactly what
/// must be checked here — key order, white space, the choice of escape, the
/// spelling of a number. This accepts exactly the bytes `write_canonical` and
/// `write_string` produce, and serde_json's nesting limit, so that it agrees
/// with the tree decoder on every input.
mod canonical {
    use std::borrow::Cow;

    use super::{EntryRef, MAX_SAFE_INTEGER};

    /// serde_json's recursion limit: the 128th nested array or object is refused.
    const DEPTH: u32 = 128;

    struct Cursor<'a> {
        s: &'a str,
        b: &'a [u8],
        i: usize,
    }

    /// The whole entry: `{"data":…,"prev":…,"seq":…,"ts":…,"type":…,"user":…,"v":…}`.
    pub(super) fn entry(body: &str) -> Option<EntryRef<'_>> {
        let mut c = Cursor { s: body, b: body.as_bytes(), i: 0 };
        c.lit("{\"data\":")?;
        let start = c.i;
        c.value(DEPTH - 1)?;
        let data = &body[start..c.i];
        c.lit(",\"prev\":")?;
        let prev = c.string()?;
        c.lit(",\"seq\":")?;
        let seq = c.unsigned()?;
        c.lit(",\"ts\":")?;
        let ts = c.string()?;
        c.lit(",\"type\":")?;
        let kind = c.string()?;
        c.lit(",\"user\":")?;
        let user = c.string()?;
        c.lit(",\"v\":")?;
        let v = c.unsigned()?;
        c.lit("}")?;
        (c.i == c.b.len()).then_some(EntryRef { v, seq, ts, user, kind, data, prev })
    }

    impl<'a> Cursor<'a> {
        fn peek(&self) -> Option<u8> {
            self.b.get(self.i).copied()
        }

        fn lit(&mut self, l: &str) -> Option<()> {
            let end = self.i.checked_add(l.len())?;
            (self.b.get(self.i..end)? == l.as_bytes()).then(|| self.i = end)
        }

        /// A value nested in `depth` remaining levels.
        fn value(&mut self, depth: u32) -> Option<()> {
            match self.peek()? {
                b'{' => self.object(depth),
                b'[' => self.array(depth),
                b'"' => self.raw_string().map(drop),
                b't' => self.lit("true"),
                b'f' => self.lit("false"),
                b'n' => self.lit("null"),
                b'-' => {
                    self.i += 1;
                    self.magnitude().filter(|&m| m != 0 && m <= MAX_SAFE_INTEGER).map(drop)
                }
                b'0'..=b'9' => self.magnitude().filter(|&m| m <= MAX_SAFE_INTEGER).map(drop),
                _ => None,
            }
        }

        fn object(&mut self, depth: u32) -> Option<()> {
            let depth = depth.checked_sub(1).filter(|&d| d > 0)?;
            self.i += 1;
            if self.peek()? == b'}' {
                self.i += 1;
                return Some(());
            }
            let mut last: Option<(&'a str, bool)> = None;
            loop {
                let key = self.raw_string()?;
                if let Some(prev) = last
                    && key_order(prev, key) != std::cmp::Ordering::Less
                {
                    return None;
                }
                last = Some(key);
                self.lit(":")?;
                self.value(depth)?;
                match self.peek()? {
                    b',' => self.i += 1,
                    b'}' => {
                        self.i += 1;
                        return Some(());
                    }
                    _ => return None,
                }
            }
        }

        fn array(&mut self, depth: u32) -> Option<()> {
            let depth = depth.checked_sub(1).filter(|&d| d > 0)?;
            self.i += 1;
            if self.peek()? == b']' {
                self.i += 1;
                return Some(());
            }
            loop {
                self.value(depth)?;
                match self.peek()? {
                    b',' => self.i += 1,
                    b']' => {
                        self.i += 1;
                        return Some(());
                    }
                    _ => return None,
                }
            }
        }

        /// Digits with no leading zero (a lone `0` aside), read as an integer
        /// that fits in a u64; refuses a fraction or exponent after them.
        fn magnitude(&mut self) -> Option<u64> {
            let start = self.i;
            let mut n: u64 = 0;
            while let Some(d @ b'0'..=b'9') = self.peek() {
                n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
                self.i += 1;
            }
            let len = self.i - start;
            if len == 0 || (len > 1 && self.b[start] == b'0') {
                return None;
            }
            match self.peek() {
                Some(b'.' | b'e' | b'E') => None,
                _ => Some(n),
            }
        }

        /// A non-negative integer member (`seq`, `v`): any u64.
        fn unsigned(&mut self) -> Option<u64> {
            match self.peek()? {
                b'0'..=b'9' => self.magnitude(),
                _ => None,
            }
        }

        /// A canonical string: its text between the quotes, and whether it has escapes.
        fn raw_string(&mut self) -> Option<(&'a str, bool)> {
            if self.peek()? != b'"' {
                return None;
            }
            self.i += 1;
            let start = self.i;
            let mut escaped = false;
            loop {
                // Plain bytes in a run, then the one that ends it.
                self.i += super::plain_run(self.b.get(self.i..)?);
                match *self.b.get(self.i)? {
                    b'"' => {
                        let text = self.s.get(start..self.i)?;
                        self.i += 1;
                        return Some((text, escaped));
                    }
                    b'\\' => {
                        escaped = true;
                        match *self.b.get(self.i + 1)? {
                            b'"' | b'\\' | b'b' | b't' | b'n' | b'f' | b'r' => self.i += 2,
                            b'u' => {
                                let hex = self.b.get(self.i + 2..self.i + 6)?;
                                let lower = |c: u8| match c {
                                    b'0'..=b'9' => Some(c - b'0'),
                                    b'a'..=b'f' => Some(c - b'a' + 10),
                                    _ => None,
                                };
                                if hex[0] != b'0' || hex[1] != b'0' {
                                    return None;
                                }
                                let c = lower(hex[2])? * 16 + lower(hex[3])?;
                                // Only controls without a short escape are written as \u00xx.
                                if c >= 0x20 || matches!(c, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                    return None;
                                }
                                self.i += 6;
                            }
                            _ => return None,
                        }
                    }
                    c if c < 0x20 => return None,
                    _ => self.i += 1,
                }
            }
        }

        /// A canonical string, unescaped.
        fn string(&mut self) -> Option<Cow<'a, str>> {
            let (text, escaped) = self.raw_string()?;
            Some(if escaped { Cow::Owned(unescape(text)) } else { Cow::Borrowed(text) })
        }
    }

    /// The text of a string checked by `raw_string`, with its escapes replaced.
    fn unescape(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find('\\') {
            out.push_str(&rest[..at]);
            let e = rest.as_bytes().get(at + 1).copied().unwrap_or(b'\\');
            let (c, len) = match e {
                b'b' => ('\u{8}', 2),
                b't' => ('\t', 2),
                b'n' => ('\n', 2),
                b'f' => ('\u{c}', 2),
                b'r' => ('\r', 2),
                b'u' => {
                    let code = rest.get(at + 2..at + 6).and_then(|h| u32::from_str_radix(h, 16).ok());
                    (code.and_then(char::from_u32).unwrap_or('\u{fffd}'), 6)
                }
                other => (other as char, 2),
            };
            out.push(c);
            rest = rest.get(at + len..).unwrap_or("");
        }
        out.push_str(rest);
        out
    }

    /// The order of two keys by the UTF-8 bytes of their unescaped text.
    fn key_order((a, a_esc): (&str, bool), (b, b_esc): (&str, bool)) -> std::cmp::Ordering {
        if a_esc || b_esc {
            let a: Cow<str> = if a_esc { Cow::Owned(unescape(a)) } else { Cow::Borrowed(a) };
            let b: Cow<str> = if b_esc { Cow::Owned(unescape(b)) } else { Cow::Borrowed(b) };
            a.as_bytes().cmp(b.as_bytes())
        } else {
            a.as_bytes().cmp(b.as_bytes())
        }
    }
}

/// Appends the canonical encoding of `v`; refuses floats and unsafe integers.
pub fn write_canonical(v: &Value, out: &mut String) -> Result<(), String> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                if u > MAX_SAFE_INTEGER {
                    return Err(format!("integer {u} exceeds 2^53 - 1"));
                }
                out.push_str(&u.to_string());
            } else if let Some(i) = n.as_i64() {
                if i.unsigned_abs() > MAX_SAFE_INTEGER {
                    return Err(format!("integer {i} exceeds 2^53 - 1 in magnitude"));
                }
                out.push_str(&i.to_string());
            } else {
                return Err(format!("the canonical encoding has no floats (found {n})"));
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_canonical(&map[k], out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// The length of the run at the start of `b` of bytes that a JSON string
/// holds as themselves: all but `"`, `\\` and controls below U+0020.
///
/// Eight bytes at a time (SWAR): every entry written and verified passes its
/// strings through here, most of them plain. A lane's high bit is set where
/// its byte is below 0x20 or equals `"` or `\\` (the borrow of a subtraction
/// only carries upward, out of a lane that matched, so the lowest flagged lane
/// is the first match); no crate offers this byte class.
pub(crate) fn plain_run(b: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(lanes) = b.get(i..i + 8) {
        let mut word = [0; 8];
        word.copy_from_slice(lanes);
        let x = u64::from_le_bytes(word);
        let below = x.wrapping_sub(ONES * 0x20);
        let quote = (x ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES);
        let backslash = (x ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES);
        // `!x`: a byte of 0x80 or above is never special (nor is its lane's borrow).
        let flagged = (below | quote | backslash) & !x & HIGH;
        if flagged != 0 {
            return i + (flagged.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    match b[i..].iter().position(|&c| c < 0x20 || c == b'"' || c == b'\\') {
        Some(at) => i + at,
        None => b.len(),
    }
}

/// Lowercase hex of `bytes`, as `hex::encode` gives it. `hex::encode` collects
/// an iterator of chars, about 2,200 instructions for a 32-byte hash; filling
/// the buffer with `hex::encode_to_slice` takes a tenth of that, and every
/// randomisation encodes two hashes (its identity's and its entry's).
pub(crate) fn lower_hex(bytes: &[u8]) -> String {
    let mut out = vec![0; bytes.len() * 2];
    hex::encode_to_slice(bytes, &mut out).expect("the buffer is twice the input's length");
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// Appends a JSON string: `"` and `\` escaped, U+0008/09/0A/0C/0D as \b \t \n \f \r,
/// other controls below U+0020 as \u00xx (lowercase hex), everything else as UTF-8.
pub(crate) fn write_string(s: &str, out: &mut String) {
    out.push('"');
    // Most strings need no escape.
    if plain_run(s.as_bytes()) == s.len() {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            b'\t' => "\\t",
            b'\n' => "\\n",
            0x0c => "\\f",
            b'\r' => "\\r",
            b if b < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{b:04x}"));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(data: Value) -> Entry {
        Entry {
            v: 1,
            seq: 0,
            ts: "2026-01-01T00:00:00.000000Z".into(),
            user: "u".into(),
            kind: "k".into(),
            data,
            prev: GENESIS_PREV.into(),
        }
    }

    #[test]
    fn canonical_form_sorts_keys_and_escapes_minimally() {
        let e = entry(json!({"b": 1, "a": "x\"\\\n\u{1}é", "c": [true, null]}));
        assert_eq!(
            e.canonical(),
            format!(
                "{{\"data\":{{\"a\":\"x\\\"\\\\\\n\\u0001é\",\"b\":1,\"c\":[true,null]}},\"prev\":\"{GENESIS_PREV}\",\"seq\":0,\"ts\":\"2026-01-01T00:00:00.000000Z\",\"type\":\"k\",\"user\":\"u\",\"v\":1}}"
            )
        );
    }

    #[test]
    fn decoding_round_trips_and_refuses_non_canonical_bytes() {
        let e = entry(json!({"x": "y"}));
        let c = e.canonical();
        assert_eq!(Entry::decode(&c).unwrap(), e);
        let spaced = c.replacen(":", ": ", 1);
        assert!(Entry::decode(&spaced).is_err());
        assert!(Entry::decode(&c.replace("\"v\":1", "\"v\":1.0")).is_err());
    }

    #[test]
    fn floats_are_not_canonical() {
        let mut s = String::new();
        assert!(write_canonical(&json!({"x": 0.5}), &mut s).is_err());
    }

    #[test]
    fn golden_hash_of_a_fixed_entry() {
        // Pinned: a change here is a log format change (bump FORMAT_VERSION, update docs/SPEC.md).
        let e = entry(json!({"participant": "P1", "arm": "ips"}));
        assert_eq!(Entry::hash_of(&e.canonical()), Entry::hash_of(&e.canonical()));
        assert_eq!(
            Entry::hash_of(&e.canonical()),
            hex::encode(Sha256::digest(format!("{{\"data\":{{\"arm\":\"ips\",\"participant\":\"P1\"}},\"prev\":\"{GENESIS_PREV}\",\"seq\":0,\"ts\":\"2026-01-01T00:00:00.000000Z\",\"type\":\"k\",\"user\":\"u\",\"v\":1}}").as_bytes()))
        );
    }

    /// The one-pass check and the tree decoder agree: both refuse, or both
    /// accept with the same entry.
    fn agree(body: &str) -> bool {
        let fast = canonical::entry(body);
        let tree = decode_via_tree(body);
        match (&fast, &tree) {
            (None, Err(_)) => {}
            (Some(r), Ok(e)) => {
                assert_eq!(r.v, e.v);
                assert_eq!(r.seq, e.seq);
                assert_eq!((&*r.ts, &*r.user, &*r.kind, &*r.prev), (&*e.ts, &*e.user, &*e.kind, &*e.prev));
                assert_eq!(serde_json::from_str::<Value>(r.data).unwrap(), e.data);
            }
            _ => panic!("the one-pass check says {fast:?}, the tree decoder {tree:?}, on {body:?}"),
        }
        assert_eq!(Entry::decode(body), tree, "{body:?}");
        fast.is_some()
    }

    fn body_with_data(data: &str) -> String {
        format!(
            "{{\"data\":{data},\"prev\":\"{GENESIS_PREV}\",\"seq\":0,\"ts\":\"2026-01-01T00:00:00.000000Z\",\"type\":\"k\",\"user\":\"u\",\"v\":1}}"
        )
    }

    #[test]
    fn the_one_pass_check_accepts_canonical_bytes() {
        let e = entry(json!({
            "a": "x\"\\\n\u{1}\u{1f}\u{7f}é\u{2028}😀\t\r\u{8}\u{c}/",
            "b": [1, -1, 0, 9_007_199_254_740_991_u64, -9_007_199_254_740_991_i64, [], {}, [[{"": null}]]],
            "c": {"\n": true, "A": false, "a": "", "é": 1, "\u{1}": 2},
        }));
        let c = e.canonical();
        assert!(agree(&c), "{c}");
        let r = Entry::check(&c).unwrap();
        assert!(matches!(r.prev, Cow::Borrowed(_)), "no copy without escapes");
        // Escapes in the members after the data are unescaped.
        let mut e = entry(json!(null));
        e.user = "a\"b\\c\nd\u{1}".into();
        e.kind = "\u{7}".into();
        e.seq = u64::MAX;
        e.v = 0;
        let c = e.canonical();
        assert!(agree(&c), "{c}");
        assert_eq!(Entry::check(&c).unwrap().user, "a\"b\\c\nd\u{1}");
    }

    #[test]
    fn the_one_pass_check_refuses_every_non_canonical_variant() {
        let c = entry(json!({"b": "x", "a": [1, 2], "c": {"d": null}})).canonical();
        let variants = [
            // Reordered keys, in the data and at the top.
            c.replacen("\"a\":[1,2],\"b\":\"x\"", "\"b\":\"x\",\"a\":[1,2]", 1),
            c.replacen(
                "\"seq\":0,\"ts\":\"2026-01-01T00:00:00.000000Z\"",
                "\"ts\":\"2026-01-01T00:00:00.000000Z\",\"seq\":0",
                1,
            ),
            // Extra white space, anywhere.
            c.replacen(':', ": ", 1),
            c.replacen(',', " ,", 1),
            format!(" {c}"),
            format!("{c}\n"),
            c.replacen("[1,2]", "[ 1,2]", 1),
            c.replacen("{\"d\"", "{\n\"d\"", 1),
            // Non-minimal escapes.
            c.replacen("\"x\"", "\"\\u0078\"", 1),
            c.replacen("\"x\"", "\"\\/\"", 1),
            c.replacen("\"x\"", "\"\\u00e9\"", 1),
            c.replacen("\"x\"", "\"\\u000A\"", 1),
            c.replacen("\"x\"", "\"\\u000a\"", 1),
            c.replacen("\"x\"", "\"\\u001F\"", 1),
            c.replacen("\"x\"", "\"\\ud83d\\ude00\"", 1),
            c.replacen("\"x\"", "\"\u{1}\"", 1),
            c.replacen("\"x\"", "\"\\x\"", 1),
            c.replacen("\"x\"", "\"\\u00\"", 1),
            // Duplicate keys.
            c.replacen("\"a\":[1,2]", "\"a\":[1,2],\"a\":[1,2]", 1),
            c.replacen("\"a\":[1,2]", "\"a\":[1],\"a\":[1,2]", 1),
            c.replacen("\"v\":1}", "\"v\":1,\"v\":1}", 1),
            // Trailing and missing bytes.
            format!("{c}x"),
            format!("{c}}}"),
            format!("{c}{c}"),
            c[..c.len() - 1].to_string(),
            String::new(),
            // Numbers.
            c.replacen("[1,2]", "[01,2]", 1),
            c.replacen("[1,2]", "[-0,2]", 1),
            c.replacen("[1,2]", "[1.0,2]", 1),
            c.replacen("[1,2]", "[1e0,2]", 1),
            c.replacen("[1,2]", "[1E0,2]", 1),
            c.replacen("[1,2]", "[+1,2]", 1),
            c.replacen("[1,2]", "[9007199254740992,2]", 1),
            c.replacen("[1,2]", "[-9007199254740992,2]", 1),
            c.replacen("[1,2]", "[18446744073709551616,2]", 1),
            c.replacen("[1,2]", "[-,2]", 1),
            c.replacen("\"seq\":0", "\"seq\":-0", 1),
            c.replacen("\"seq\":0", "\"seq\":00", 1),
            c.replacen("\"seq\":0", "\"seq\":-1", 1),
            c.replacen("\"seq\":0", "\"seq\":18446744073709551616", 1),
            c.replacen("\"v\":1", "\"v\":1.0", 1),
            c.replacen("\"v\":1", "\"v\":\"1\"", 1),
            // Wrong types and literals.
            c.replacen("\"user\":\"u\"", "\"user\":null", 1),
            c.replacen("[1,2]", "[True,2]", 1),
            c.replacen("[1,2]", "[nul,2]", 1),
            c.replacen("[1,2]", "[1,2,]", 1),
            c.replacen("[1,2]", "[,1,2]", 1),
            c.replacen("{\"d\":null}", "{\"d\":null,}", 1),
            c.replacen("{\"d\":null}", "{\"d\"}", 1),
            c.replacen("{\"d\":null}", "{d:null}", 1),
            // Missing and extra members.
            c.replacen(",\"user\":\"u\"", "", 1),
            c.replacen("\"v\":1", "\"v\":1,\"w\":1", 1),
            "[]".to_string(),
            "null".to_string(),
        ];
        for v in &variants {
            assert_ne!(v, &c, "the variant must differ");
            assert!(!agree(v), "accepted {v:?}");
        }
        assert!(agree(&c));
    }

    #[test]
    fn the_one_pass_check_has_serde_jsons_nesting_limit() {
        // serde_json refuses the 128th nested container; the entry itself is the first.
        for depth in [125, 126, 127, 128, 200] {
            let data = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            agree(&body_with_data(&data));
            let data = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
            agree(&body_with_data(&data));
        }
        assert!(agree(&body_with_data(&format!("{}{}", "[".repeat(126), "]".repeat(126)))));
        assert!(!agree(&body_with_data(&format!("{}{}", "[".repeat(127), "]".repeat(127)))));
        // Deep input is refused without exhausting the stack.
        assert!(Entry::check(&body_with_data(&"[".repeat(1_000_000))).is_err());
    }

    #[test]
    fn the_typed_event_matches_from_parts() {
        let cases = [
            ("seed_revealed", json!({"seed": "ab", "reason": "closed"})),
            ("seed_revealed", json!({"seed": "ab"})),
            ("seed_revealed", json!({"seed": "ab", "reason": "closed", "extra": 1})),
            ("seed_revealed", json!({"seed": 1, "reason": "closed"})),
            ("seed_revealed", json!([])),
            ("seed_revealed", json!(null)),
            ("no_such_event", json!({})),
            (
                "status_changed",
                json!({"participant": "P1", "status": "lost", "reason": "r", "no_further_contact": false, "on": "2026-01-01"}),
            ),
            (
                "status_changed",
                json!({"participant": "P1", "status": "lost", "reason": "r", "no_further_contact": 0, "on": "2026-01-01"}),
            ),
            (
                "participant_randomised",
                json!({"participant": "P1", "site": "s", "identity": "i", "values": {"a": "1"}, "stratum": "all", "arm": "x",
                       "allocation": {"method": "minimisation", "stream": "m", "word_start": 0, "word_end": 3,
                                      "scores": {"x": "1"}, "preferred": ["x"], "draw_p": null, "draw_arm": 4294967295_u64}}),
            ),
            (
                "participant_randomised",
                json!({"participant": "P1", "site": "s", "identity": "i", "values": {"a": "1"}, "stratum": "all", "arm": "x",
                       "allocation": {"method": "minimisation", "stream": "m", "word_start": 0, "word_end": 3,
                                      "scores": {"x": "1"}, "preferred": ["x"], "draw_p": null, "draw_arm": 4294967296_u64}}),
            ),
            (
                "participant_randomised",
                json!({"participant": "P1", "site": "s", "identity": "i", "values": {"a": "1"}, "stratum": "all", "arm": "x",
                       "allocation": {"method": "permuted_blocks", "stream": "b", "block": 1, "start_word": 0, "position": -1}}),
            ),
            (
                "participant_randomised",
                json!({"participant": "P1", "site": "s", "identity": "i", "values": {"a": "1"}, "stratum": "all", "arm": "x",
                       "allocation": {"method": "permuted_blocks", "stream": "b", "block": 1, "start_word": 0, "position": 1}}),
            ),
            (
                "participant_randomised",
                json!({"participant": "P1", "site": "s", "identity": "i", "values": {"a": 1}, "stratum": "all", "arm": "x",
                       "allocation": {"method": "simple", "stream": "b", "word_start": 1, "word_end": 2}}),
            ),
        ];
        for (kind, data) in cases {
            let mut e = entry(data.clone());
            e.kind = kind.into();
            let c = e.canonical();
            let typed = Entry::check(&c).unwrap().event();
            assert_eq!(typed, Event::from_parts(kind, &data), "{kind} {data}");
        }
    }

    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-(MAX_SAFE_INTEGER as i64)..=MAX_SAFE_INTEGER as i64).prop_map(|i| json!(i)),
            "[a-c\\\\\"/\u{0}-\u{1f}\u{7f}é\u{2028}😀]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map("[a-c\u{0}-\u{2}é\\\\\"]{0,3}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The eight-bytes-at-a-time scan stops where a byte-by-byte one does,
        /// at every position in and across the words, for any bytes.
        #[test]
        fn the_plain_run_is_the_first_byte_a_string_escapes(
            b in proptest::collection::vec(
                prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x20, Just(0x1f), Just(0x20), Just(0x21), Just(0x5b), Just(0x5d), Just(0x7f), Just(0x80), Just(0xa2), Just(0xdc), Just(0xff), b'a'..=b'z', b'a'..=b'z', b'a'..=b'z'],
                0..40,
            )
        ) {
            let naive = b.iter().position(|&c| c < 0x20 || c == b'"' || c == b'\\').unwrap_or(b.len());
            prop_assert_eq!(plain_run(&b), naive);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Canonical bytes are accepted, and any one-byte change, deletion,
        /// insertion or swap of neighbours is judged alike by both decoders.
        #[test]
        fn the_one_pass_check_agrees_with_the_tree_decoder(
            data in json_value(),
            user in "[a\\\\\"\u{0}-\u{1f}é]{0,4}",
            at in any::<prop::sample::Index>(),
            byte in prop_oneof![Just(b' '), Just(b'\\'), Just(b'"'), Just(b','), Just(b'0'), Just(b'-'), Just(b'u'), Just(b'.'), Just(b'}'), Just(b'e'), any::<u8>()],
            edit in 0..4u8,
        ) {
            let mut e = entry(data);
            e.user = user;
            let c = e.canonical();
            prop_assert!(agree(&c));
            let mut b = c.clone().into_bytes();
            let i = at.index(b.len());
            match edit {
                0 => b[i] = byte,
                1 => { b.remove(i); }
                2 => b.insert(i, byte),
                _ => if i + 1 < b.len() { b.swap(i, i + 1) },
            }
            if let Ok(v) = String::from_utf8(b) {
                agree(&v);
            }
        }
    }
}
