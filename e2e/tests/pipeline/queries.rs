//! The analyst queries of `schemas/sql/queries/` and their parameter substitution.

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

/// A query parameter value for [`render`].
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    UInt(u64),
    DateTime(u64),
    Str(&'a str),
}

/// Substitute `{name:Type}` placeholders with literals, the convention of
/// `schemas/sql/README.md` (ClickHouse 18.16 has no server-side query parameters), as
/// `processor/tests/clickhouse.rs` does. Unused parameters are fine; a missing one panics.
pub fn render(sql: &str, params: &[(&str, Param<'_>)]) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').unwrap() + open;
        let (name, kind) = rest[open + 1..close].split_once(':').unwrap();
        let value = params
            .iter()
            .find(|(param, _)| *param == name.trim())
            .unwrap_or_else(|| panic!("missing parameter {name}"))
            .1;
        let literal = match (kind.trim(), value) {
            ("UInt64" | "UInt32", Param::UInt(number)) => number.to_string(),
            ("DateTime", Param::DateTime(secs)) => format!("toDateTime({secs})"),
            ("String", Param::Str(text)) => {
                format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
            }
            (kind, value) => panic!("parameter {name}: {value:?} does not fit {kind}"),
        };
        out.push_str(&literal);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}
