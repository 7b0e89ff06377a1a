//! Integration tests, built as one binary.

#[path = "util.rs"]
mod util;

mod analysis;
mod audit;
mod demo;
mod design;
mod hardening;
mod hostile;
mod ledger;
mod operating;
mod outcomes;
mod report;
mod vectors;
