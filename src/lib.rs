//! chancery: randomised controlled trials from a committed seed, with a tamper-evident log.
pub mod stats;
