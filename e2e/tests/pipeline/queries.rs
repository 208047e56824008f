//! The analyst queries of `schemas/sql/queries/`; their parameter substitution is
//! `testbed::clickhouse::render`, shared with `processor/tests/clickhouse.rs`.

pub use testbed::clickhouse::{render, Param};

/// Every `schemas/sql/queries/*.sql`, sorted by name.
pub fn query_files() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/sql/queries");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files
}
