//! The trial as an HTTP service (`chancery serve`).

pub mod pages;
