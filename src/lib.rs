//! Pemba: an authorization database. Zanzibar-style relationships evaluated through a SpiceDB
//! schema, with run-time conditions written in rhai.
//!
//! The layers, from the bottom: [`text`] (bounded reading of user text), [`model`] (value types), [`conditions`] (rhai), [`schema`]
//! (language and compiler). See ARCHITECTURE.md for the code map.

#![forbid(unsafe_code)]

pub mod bench;
#[cfg(feature = "cli")]
pub mod cli;
pub mod conditions;
pub mod db;
pub mod engine;
pub mod index;
pub mod model;
pub mod query;
pub mod scc;
pub mod schema;
#[cfg(feature = "server")]
pub mod server;
pub mod store;
pub mod text;
#[cfg(feature = "validation")]
pub mod validation;
