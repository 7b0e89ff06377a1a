//! The digest form's table digests: the tables it folds (`DIGESTED`), a
//! keyed SHA-256 of each row summed modulo 2^256 (order-independent, so the
//! replay in log order and the live table in key order fold alike), and the
//! live tables read and folded in key order on a pinned connection.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::open_pinned;
use crate::error::{Error, Result};
use crate::store::{DERIVED_TABLES, Head};

/// The tables the digest form folds into digests: each is only ever inserted
/// into by `ledger::apply` (or, for the trial row, set from entry 0 and the
/// reveal, and for the allocation state, written once from the final state),
/// so its replay is the multiset of rows the events emit. The others
/// (`outcomes`, `participant_status`) are replayed into the scratch database,
/// as corrections and status changes replace rows in place.
pub(super) const DIGESTED: [&str; 5] = ["trial", "referrals", "identities", "allocation_streams", "allocation_counts"];

/// A table's digest: the sum, modulo 2^256, of a keyed SHA-256 of each row's
/// encoding (types, lengths and bytes of every column). The sum does not depend
/// on the order rows are added in, so the replay (in log order) and the live
/// table (in key order) can each be folded in one pass with constant memory.
/// The key is fresh random bytes for each verification, unknown when the
/// database was written: a sum of unkeyed hashes could be matched by a chosen
/// set of forged rows (a generalised birthday search), a sum of keyed ones only
/// by chance, about 2^-200 at worst.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Sum([u64; 4]);

impl Sum {
    pub(super) fn add(&mut self, h: &[u8; 32]) {
        let mut carry = 0u64;
        for (i, limb) in self.0.iter_mut().enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&h[8 * i..8 * i + 8]);
            let (a, c1) = limb.overflowing_add(u64::from_le_bytes(word));
            let (b, c2) = a.overflowing_add(carry);
            *limb = b;
            carry = u64::from(c1) + u64::from(c2);
        }
    }
}

/// One column's value as SQLite stores it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Cell<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a [u8]),
    Blob(&'a [u8]),
}

impl<'a> From<rusqlite::types::ValueRef<'a>> for Cell<'a> {
    fn from(v: rusqlite::types::ValueRef<'a>) -> Cell<'a> {
        use rusqlite::types::ValueRef as V;
        match v {
            V::Null => Cell::Null,
            V::Integer(i) => Cell::Int(i),
            V::Real(f) => Cell::Real(f),
            V::Text(t) => Cell::Text(t),
            V::Blob(b) => Cell::Blob(b),
        }
    }
}

/// A key value kept from one row to the next, bytes and all.
#[derive(Debug, Clone)]
enum KeyValue {
    Null,
    Int(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl KeyValue {
    fn of(v: rusqlite::types::ValueRef) -> KeyValue {
        use rusqlite::types::ValueRef as V;
        match v {
            V::Null => KeyValue::Null,
            V::Integer(i) => KeyValue::Int(i),
            V::Real(f) => KeyValue::Real(f),
            V::Text(t) => KeyValue::Text(t.to_vec()),
            V::Blob(b) => KeyValue::Blob(b.to_vec()),
        }
    }

    /// Becomes `v`, reusing its buffer.
    fn set(&mut self, v: rusqlite::types::ValueRef) {
        match (self, v) {
            (KeyValue::Text(t), rusqlite::types::ValueRef::Text(new)) => {
                t.clear();
                t.extend_from_slice(new);
            }
            (this, v) => *this = KeyValue::of(v),
        }
    }

    fn as_ref(&self) -> rusqlite::types::ValueRef<'_> {
        use rusqlite::types::ValueRef as V;
        match self {
            KeyValue::Null => V::Null,
            KeyValue::Int(i) => V::Integer(*i),
            KeyValue::Real(f) => V::Real(*f),
            KeyValue::Text(t) => V::Text(t),
            KeyValue::Blob(b) => V::Blob(b),
        }
    }
}

pub(super) fn text(s: &str) -> Cell<'_> {
    Cell::Text(s.as_bytes())
}

/// Hashes rows under the verification's key.
pub(super) struct RowHasher {
    keyed: Sha256,
    buf: Vec<u8>,
}

impl RowHasher {
    pub(super) fn new(key: &[u8; 32]) -> RowHasher {
        // Domain and key fill exactly one block, compressed once and not per row.
        let mut keyed = Sha256::new();
        keyed.update(b"chancery verify row digest\0\0\0\0\0\0");
        keyed.update(key);
        RowHasher { keyed, buf: Vec::with_capacity(512) }
    }

    /// The keyed hash of one row of table `table` (its index in `DIGESTED`).
    pub(super) fn hash<'c>(&mut self, table: usize, cells: impl IntoIterator<Item = Cell<'c>>) -> [u8; 32] {
        self.buf.clear();
        self.buf.push(table as u8);
        for cell in cells {
            match cell {
                Cell::Null => self.buf.push(0),
                Cell::Int(i) => {
                    self.buf.push(1);
                    self.buf.extend_from_slice(&i.to_le_bytes());
                }
                Cell::Real(f) => {
                    self.buf.push(2);
                    self.buf.extend_from_slice(&f.to_bits().to_le_bytes());
                }
                Cell::Text(t) | Cell::Blob(t) => {
                    self.buf.push(if matches!(cell, Cell::Text(_)) { 3 } else { 4 });
                    self.buf.extend_from_slice(&(t.len() as u64).to_le_bytes());
                    self.buf.extend_from_slice(t);
                }
            }
        }
        let mut h = self.keyed.clone();
        h.update(&self.buf);
        h.finalize().into()
    }
}

/// Each digested table's digest, in `DIGESTED` order.
pub(super) type Sums = [Sum; DIGESTED.len()];

/// The two sides' digests: `None` on the live side where its rows cannot match
/// any replay (columns other than the schema's, keys not strictly increasing,
/// an identity twice).
pub(super) struct Digests {
    pub(super) stored: Option<Sums>,
    pub(super) replayed: Option<Sums>,
}

pub(super) fn digested(table: &str) -> usize {
    DIGESTED.iter().position(|t| *t == table).unwrap_or(0)
}

/// The live tables' digests in the pinned state, or `None` (the digest form
/// then declines) if that state cannot be read on a second connection.
///
/// Folds the live digested tables into their digests, reading each as the exact
/// form's comparison does (`SELECT *` in key order) and checking on the way
/// that its columns are the schema's (`columns`, from the scratch database) and
/// its keys strictly increasing, so that no key is there twice and both sides
/// would be walked in the same order (for `identities`, keyed by the identity
/// hash, that no person is there twice). `None` if any of that fails.
pub(super) fn live_digests(db: &Path, pinned: &Head, key: &[u8; 32], columns: &[Vec<String>]) -> Result<Option<Sums>> {
    let Some(live) = open_pinned(db, pinned)? else {
        return Ok(None);
    };
    let mut hasher = RowHasher::new(key);
    let mut sums = Sums::default();
    for (t, table) in DIGESTED.iter().enumerate() {
        let key_names = DERIVED_TABLES.iter().find(|(n, _)| n == table).map_or("", |(_, k)| k);
        let expected = &columns[t];
        let key_cols: Vec<usize> =
            key_names.split(',').filter_map(|k| expected.iter().position(|c| c == k.trim())).collect();
        let mut ordered = !key_cols.is_empty();
        let mut last: Option<Vec<KeyValue>> = None;
        let mut sum = Sum::default();
        let names = live.each_row_in_key_order(table, |row| {
            let n = row.as_ref().column_count();
            if n != expected.len() {
                ordered = false;
                return Ok(());
            }
            let cell = |i: usize| row.get_ref(i).map_err(Error::sqlite("reading a derived table"));
            match &mut last {
                Some(prev) => {
                    let mut order = std::cmp::Ordering::Equal;
                    for (k, &i) in key_cols.iter().enumerate() {
                        order = crate::store::sql_order_ref(prev[k].as_ref(), cell(i)?);
                        if order.is_ne() {
                            break;
                        }
                    }
                    if order.is_ge() {
                        ordered = false;
                    }
                    for (k, &i) in key_cols.iter().enumerate() {
                        prev[k].set(cell(i)?);
                    }
                }
                None => last = Some(key_cols.iter().map(|&i| cell(i).map(KeyValue::of)).collect::<Result<_>>()?),
            }
            // A column that cannot be read hashes as NULL: the digests then differ, and
            // the exact form reports.
            sum.add(&hasher.hash(t, (0..n).map(|i| row.get_ref(i).map_or(Cell::Null, Cell::from))));
            Ok(())
        })?;
        if !ordered && last.is_some() || names != *expected {
            return Ok(None);
        }
        sums[t] = sum;
    }
    Ok(Some(sums))
}
