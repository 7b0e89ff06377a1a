//! The service's HTML pages, rendered on the server with maud.

pub mod form;
pub mod layout;
