//! ketenpoort: a secure per-field data-exchange gateway for the Dutch onderwijs–jeugdhulp chain.
//!
//! One module per stage of a message's path (see ARCHITECTURE.md): `tls` → `identity` → `ratelimit` →
//! `envelope` → `policy` (with `consent`) → `audit` → `delivery`, wired together by `pipeline` and `server`.

pub mod audit;
pub mod certs;
pub mod cli;
pub mod config;
pub mod consent;
pub mod console;
pub mod data;
pub mod delivery;
pub mod domain;
pub mod envelope;
pub mod gateway;
pub mod identity;
pub mod keys;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod problem;
pub mod ratelimit;
pub mod retention;
pub mod server;
pub mod store;
pub mod tls;
