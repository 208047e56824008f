//! Palisade's benchmarks and load generator.
//!
//! - `benches/parse.rs`: criterion micro-benchmarks of the schemas parser, fingerprint and
//!   message encoding on real-world bodies (`cargo bench -p benches`).
//! - `src/bin/palisade-load.rs` ([`load`]): a bounded load generator that POSTs real report
//!   bodies to an ingest on loopback (HTTP/1.1 keep-alive or new connections, h2c; closed or open
//!   loop) and prints throughput, latency percentiles, status counts and the CPU and memory of
//!   the processes it watches.
//! - `src/bin/palisade-baseline.rs`: a minimal hyper server that reads the body and answers 204,
//!   the floor ingest's CPU per request is compared with (`deploy/scripts/baseline.sh`).
//!
//! [`corpus`] classifies the repository's real-world bodies and mixes them into load profiles;
//! [`samples`] holds two hand-written bodies for the micro-benchmarks; [`loopback`] is the
//! loopback-only check every tool applies to the addresses it is given.

pub mod corpus;
pub mod load;
pub mod loopback;
pub mod samples;
