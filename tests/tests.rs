//! Integration tests, built as one binary.

#[path = "util.rs"]
mod util;

mod ledger;
mod outcomes;
