//! Palisade's HTTP edge: receives browser security reports (CSP, Reporting API, NEL, Expect-CT,
//! HPKP, ...), authenticates them with Sentry-style project keys, rate-limits, validates,
//! filters noise, applies the project's privacy rules and publishes one Kafka message per
//! report. It answers 202 only after Kafka acknowledged every accepted report.
//!
//! Map (in data-flow order): [`server`] (accept, connection limits, graceful shutdown; [`tls`]
//! with certificate reload) ->
//! [`routes`] (paths, CORS, the request pipeline; [`client`] says who the client is;
//! [`inflight`] shares of the in-flight budget, [`body_rate`] minimum body rate) ->
//! [`auth`] (key -> project, from the [`projects`] snapshot) -> [`limit`] (per-client and
//! per-project governor limiters) ->
//! [`validate`] (body size, decompression, parsing) -> [`filter`] (host allow-list, noise,
//! ignore lists) -> [`privacy`] -> [`publish`] (Kafka). [`rejection`] maps every refusal to one
//! status and one metric label; [`metrics`] is the catalog of metric names; [`admin`] serves
//! `/healthz`, `/readyz` and `/metrics` on a separate listener; [`config`] is the CLI;
//! [`keyed_hash`] is the hasher of the maps keyed by what a sender picks.

pub mod admin;
pub mod auth;
pub mod body_rate;
pub mod client;
pub mod config;
pub mod filter;
pub mod inflight;
pub mod keyed_hash;
pub mod limit;
pub mod metrics;
pub mod privacy;
pub mod projects;
pub mod publish;
pub mod rejection;
pub mod routes;
pub mod run;
pub mod server;
pub mod tls;
pub mod validate;

/// The global allocator of the ingest binary and of `palisade-baseline` (the floor ingest is
/// measured against, which must pay for its allocations the same way): see `main.rs`.
pub use mimalloc::MiMalloc as Allocator;

pub use config::Config;
pub use run::{run, Listeners, RunError};
