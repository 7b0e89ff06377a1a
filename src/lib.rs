//! chancery: randomised controlled trials from a committed seed, with a
//! tamper-evident log, follow-up outcomes and the intention-to-treat analysis.
//!
//! The library does the work; the `chancery` binary is a thin command-line
//! wrapper. A trial is created from a protocol file ([`protocol`]), referrals
//! are screened ([`referral`]) and allocated ([`allocation`]) from a seed whose
//! commitment is published first ([`keys`]), and every change is an event
//! ([`event`]) in a hash-chained log ([`log`]) kept in SQLite ([`store`]).
//! [`ledger`] ties these together for coordinators; [`operations`] names
//! everything a front end (the command line, a service) can do, each as one
//! function with a plain request and result.
//!
//! ```
//! use chancery::protocol::Protocol;
//! let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/work-health-ips.toml")).unwrap();
//! let protocol = Protocol::parse("work-health-ips.toml", &text).unwrap();
//! assert_eq!(protocol.arms[0].id, "ips");
//! ```
#![deny(missing_docs)]

pub mod accounts;
pub mod allocation;
pub mod allocator;
pub mod analysis;
pub mod bounded;
pub mod checkpoint;
pub mod clock;
pub mod dataset;
pub mod demo;
pub mod design;
pub mod error;
pub mod event;
pub mod export;
pub mod followup;
pub mod identity;
pub mod keys;
pub mod ledger;
pub mod log;
pub mod operating;
pub mod operations;
pub mod outcome;
pub mod outfile;
pub mod protocol;
pub mod random;
pub mod referral;
pub mod report;
pub mod service;
pub mod stats;
pub mod store;
pub mod svg;
pub mod table_input;
pub mod text;
pub mod values;
pub mod verify;

pub use error::{Error, Result};
