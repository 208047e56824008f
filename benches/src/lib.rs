//! Benchmarks and the load generator (see `benches/` and `src/bin/`).
