//! Integration tests, built as one binary.

#[path = "util.rs"]
mod util;

mod demo;
mod ledger;
mod outcomes;
