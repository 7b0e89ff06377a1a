//! The hash-chained log: entries, their canonical bytes and their hashes.
//!
//! Every entry is a JSON object `{"data","prev","seq","ts","type","user","v"}`
//! in canonical form (keys sorted by their UTF-8 bytes, no insignificant white
//! space, strings escaped minimally, integers only, no floats). Its hash is the
//! SHA-256 of those bytes, and `prev` is the previous entry's hash (64 zeros for
//! the first), so altering, removing, inserting or reordering any entry breaks
//! every later link. docs/SPEC.md defines the encoding byte for byte.

use serde_json::Value;
use sha2::{Digest, Sha256};

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
        let mut out = String::with_capacity(512);
        out.push_str("{\"data\":");
        data(&mut out);
        self.write_after_data(&mut out);
        out
    }

    /// The canonical bytes after the data member (members are in key order).
    fn write_after_data(&self, out: &mut String) {
        out.push_str(",\"prev\":");
        write_string(&self.prev, out);
        out.push_str(",\"seq\":");
        out.push_str(&self.seq.to_string());
        out.push_str(",\"ts\":");
        write_string(&self.ts, out);
        out.push_str(",\"type\":");
        write_string(&self.kind, out);
        out.push_str(",\"user\":");
        write_string(&self.user, out);
        out.push_str(",\"v\":");
        out.push_str(&self.v.to_string());
        out.push('}');
    }

    /// Lowercase hex SHA-256 of the canonical bytes.
    pub fn hash_of(canonical: &str) -> String {
        hex::encode(Sha256::digest(canonical.as_bytes()))
    }

    /// Decodes stored bytes, requiring that they are exactly the canonical
    /// encoding of what they decode to.
    pub fn decode(body: &str) -> Result<Entry, String> {
        let value: Value = serde_json::from_str(body).map_err(|e| format!("not valid JSON: {e}"))?;
        let Value::Object(mut map) = value else {
            return Err("an entry must be a JSON object".into());
        };
        let keys: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        if sorted != ["data", "prev", "seq", "ts", "type", "user", "v"] {
            return Err(format!(
                "an entry has the keys data, prev, seq, ts, type, user, v; found {}",
                sorted.join(", ")
            ));
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

/// Appends a JSON string: `"` and `\` escaped, U+0008/09/0A/0C/0D as \b \t \n \f \r,
/// other controls below U+0020 as \u00xx (lowercase hex), everything else as UTF-8.
pub(crate) fn write_string(s: &str, out: &mut String) {
    out.push('"');
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
}
