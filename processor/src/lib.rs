//! Palisade's processor: consumes report messages from Kafka, deduplicates them into one row per
//! (violation, client, window) with an exact count, enriches the rows and batch-writes them into
//! ClickHouse, committing offsets only after the rows they depend on are written.
//!
//! Map, in data-flow order: [`consume`] (Kafka group consumer, rebalance events, commits) ->
//! [`mod@decode`] (payload and key, or a dead-letter reason, see [`deadletter`]) -> [`dedup`]
//! (per-partition windows, commit points) -> [`enrich`] (UA, URLs, directive family, GeoIP: one
//! `reports` row, written in RowBinary into the batch's [`row::Rows`]) -> [`batch`] (rows plus
//! the offsets to commit after them) -> [`mod@write`]
//! (ClickHouse inserts, rollups, checkpoints, retries) -> commit. [`pipeline`] is the
//! synchronous core of that flow and [`mod@run`] the async loop around it (back-pressure,
//! shutdown), which sees Kafka and ClickHouse only through the traits of [`run::ports`];
//! [`root`] is the composition root that builds the real ones (`main.rs` calls it).
//! [`migrate`] applies the SQL in `schemas/sql/`; [`mod@retention`] drops expired data (the job
//! and its statements);
//! [`admin`] serves `/metrics`, `/healthz`, `/readyz`; [`recent`] prints a project's recent
//! violations for `palisade-processor recent`; [`replay`] re-publishes (or re-inserts) the
//! dead-letter topic for `palisade-processor replay-dead-letters`; [`backoff`] is the retry
//! wait of dead-letter and Kafka calls; [`config`] and [`metrics`] are the binary's settings
//! and metric catalog.

pub mod admin;
pub mod backoff;
pub mod batch;
pub mod config;
pub mod consume;
pub mod deadletter;
pub mod decode;
pub mod dedup;
pub mod enrich;
pub mod group;
pub mod kcat;
pub mod metrics;
pub mod migrate;
pub mod pipeline;
pub mod recent;
pub mod replay;
pub mod retention;
pub mod root;
pub mod row;
pub mod run;
pub mod write;

/// The global allocator of the processor binary (and of `palisade-processor-bench`, which
/// measures it): see `main.rs`.
pub use mimalloc::MiMalloc as Allocator;

pub use batch::{Batch, BatchLimits, Batcher};
pub use config::{Command, Config};
pub use decode::{decode, DecodeFailure, Decoded, KeySource};
pub use dedup::{CloseReason, ClosedWindow, CommitPoint, Dedup, DedupConfig, Observed};
pub use enrich::{Enricher, Geo, GeoError};
pub use root::run;
pub use row::ReportRow;
pub use run::{RunError, Status};
