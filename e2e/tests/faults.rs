//! Fault tests with a loss ledger: the whole pipeline (tansu, ClickHouse 18.16, the
//! `palisade-ingest` and `palisade-processor` binaries as child processes) under a steady load
//! of unique reports, while a fault is injected: Kafka unavailable at start and cut mid-load,
//! ClickHouse down, the processor SIGKILLed at random points, SIGTERM to ingest and to the
//! processor, a second processor joining and leaving. After recovery each scenario compares
//! what the load saw accepted with what `reports FINAL` holds and prints one line:
//!
//! `LEDGER scenario=<name> offered=N accepted=N refused=N unanswered=N stored=N rows=N lost=N
//! duplicated=N unconfirmed_stored=N peak_rss_mib=X`
//!
//! and asserts `lost == 0` and `duplicated == 0`.
//!
//! Scale knobs (environment): `PALISADE_FAULT_CLICKHOUSE_DOWN_SECS` (default 20),
//! `PALISADE_FAULT_ROUNDS` (SIGKILL rounds, default 3), `PALISADE_FAULT_SEED` (replay the random
//! kill points of a run; the seed is printed). Needs tansu, ClickHouse and the two binaries
//! (`cargo build -p ingest -p processor`; `cargo test --workspace` builds them): skips when one
//! is missing, panics with `CI=true`. Run: `cargo test -p e2e --test faults -- --nocapture`
//! (about 1.5 minutes). `kafka_unavailable_at_start_then_killed_and_restarted` is ignored: it
//! fails on known bugs (RELIABILITY.md); run it with `-- --ignored`.
//! `PALISADE_FAULT_KEEP_LOGS=1` keeps the children's logs and prints where.
#![allow(clippy::unwrap_used)]

#[path = "faults/clickhouse.rs"]
mod clickhouse_down;
#[path = "faults/ingest.rs"]
mod ingest_sigterm;
#[path = "faults/kafka.rs"]
mod kafka_outage;
#[path = "faults/processor.rs"]
mod processor_faults;
#[path = "faults/stack.rs"]
mod stack;
mod support;
