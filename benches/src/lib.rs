//! Palisade's benchmarks and load generator.
//!
//! - `benches/parse.rs`: criterion micro-benchmarks of the schemas parser, fingerprint and
//!   message encoding on real-world bodies (`cargo bench -p benches`).
//! - `src/bin/palisade-load.rs`: a bounded load generator that POSTs real report bodies to an
//!   ingest on loopback and prints throughput, latency percentiles and status counts.
//!
//! [`samples`] holds the request bodies both use, built from the repository's own fixtures.

pub mod samples;
