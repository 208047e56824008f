//! `palisade-api`: the tenant API over the rows the processor lands in ClickHouse.
//!
//! The web page for site owners is [`ui`]: static files built into the binary, served without a
//! token (the page logs in with a project token), with their own strict CSP.
//!
//! Map (data flows down): [`server`] (accept, connection limits, drain) -> [`app`] (route ->
//! [`auth`] -> scope -> endpoint -> JSON, every refusal an [`error::ApiError`]) -> the endpoints
//! in [`violations`] (list, details, mute, delete) and [`proposals`] (resolutions, proposed
//! policy) and [`tokens`] (create, list, revoke), built on the pure cores [`resolution`] (what would allow a group, does it qualify)
//! and [`policy`] (CSP parse / add a source / render) -> [`store`] (every ClickHouse query,
//! bound parameters only). [`routes`] is the route table `openapi.json` is tested against;
//! [`params`] the query parameters, cursor and wire formats; [`config`] the flags; [`metrics`]
//! the metric catalog; [`run`] the wiring.
//!
//! Key management (control plane): [`keys`] (projects, public keys, token rotation) stores in
//! ClickHouse and renders ingest's projects file with [`projects_file`] (written atomically).
//!
//! Depends on `schemas` only among Palisade's crates (for the report kind and blocked-class
//! labels the rows carry).

pub mod alerts;
pub mod app;
pub mod auth;
pub mod config;
pub mod error;
pub mod keys;
pub mod metrics;
pub mod params;
pub mod policy;
pub mod projects_file;
pub mod proposals;
pub mod resolution;
pub mod routes;
pub mod run;
pub mod server;
pub mod store;
pub mod tokens;
pub mod ui;
pub mod violations;

pub use config::Config;
pub use run::{create_token, projects_file, run};
