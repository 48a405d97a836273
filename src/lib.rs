//! ketenpoort: a secure per-field data-exchange gateway for the Dutch onderwijs–jeugdhulp chain.
//!
//! `http` is the only module that speaks HTTP (axum): listeners, routers, extractors, handlers, problem+json and the
//! console. Below it, domain modules with typed errors: `exchange` (send, fetch and ack, consents), `oversight` (the
//! privacy officer's questions), `audit` (the log itself), `policy` (the pure decision), `identity`, `ratelimit`,
//! `envelope`, `store`; `push` delivers messages to partners' endpoints (its `wire` is the one outbound HTTP client).
//! ARCHITECTURE.md gives the path of a message and which module may import which.

pub mod audit;
pub mod certs;
pub mod cli;
pub mod config;
pub mod data;
pub mod domain;
pub mod envelope;
pub mod exchange;
pub mod gateway;
pub mod http;
pub mod identity;
pub mod keys;
pub mod metrics;
pub mod oversight;
pub mod policy;
pub mod push;
pub mod ratelimit;
pub mod refusal;
pub mod retention;
pub mod store;
pub mod tls;
pub mod trace;
