//! Integration tests, built as one binary.

#[path = "util.rs"]
mod util;

mod analysis;
mod audit;
mod consent;
mod demo;
mod design;
mod hardening;
mod hostile;
mod ledger;
mod outcomes;
mod report;
mod vectors;
