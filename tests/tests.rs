//! Integration tests, built as one binary.

#[path = "util.rs"]
mod util;

mod audit;
mod demo;
mod ledger;
mod outcomes;
