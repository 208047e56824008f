//! The ClickHouse cluster variant of the schema: the numbered migrations of `schemas/sql/`,
//! written for one node, rendered for a cluster (`--clickhouse-cluster NAME`).
//!
//! Per statement of a migration (see `schemas/sql/README.md`, "Cluster variant"):
//! - `CREATE TABLE IF NOT EXISTS t (...) ENGINE = XMergeTree(args) ...` becomes a local table
//!   `db.t_local ON CLUSTER c` with `ENGINE = ReplicatedXMergeTree('/clickhouse/tables/{shard}/db/t',
//!   '{replica}', args)` and the same columns, `PARTITION BY` and `ORDER BY`, then
//!   `db.t ON CLUSTER c AS db.t_local ENGINE = Distributed(c, db, t_local, key)` under the name
//!   the processor and the analysts' queries already use; `key` comes from [`SHARDING_KEYS`];
//! - `ALTER TABLE t ADD|DROP|MATERIALIZE|CLEAR INDEX ...` runs on `db.t_local ON CLUSTER c`
//!   (indices live with the data);
//! - `DROP TABLE IF EXISTS t` drops `db.t` then `db.t_local`, `ON CLUSTER c`.
//!
//! Anything else is refused with a [`RenderError`] rather than guessed: a new migration that
//! needs another shape extends this module (and its snapshot tests). Notably `ALTER TABLE ...
//! ADD COLUMN` is refused: ClickHouse 18.16 cannot `ALTER ... ON CLUSTER` a Distributed table
//! whose shards use `internal_replication` (checked: "Table reports isn't replicated, but shard
//! #1 is replicated according to its cluster definition").
//!
//! The single-node rendering is the file's statements verbatim ([`super::split_statements`]).

use std::fmt;
use std::str::FromStr;

use super::{is_identifier, split_statements};

/// Suffix of the replicated table that holds a shard's rows under a Distributed table.
pub const LOCAL_SUFFIX: &str = "_local";

/// The sharding key of each Distributed table: which shard a row is inserted into.
///
/// The rule: ReplacingMergeTree only collapses versions of a row that sit on the same shard
/// (and partition), so the key must be a function of columns every version shares.
/// - `reports`: `row_id` (already an xxh3 hash, so it spreads evenly). Every version of a row has
///   the same `row_id`, so it collapses on its shard and `reports FINAL` through the Distributed
///   table is exact (each shard merges its own rows, the initiator adds the shards' partial
///   aggregates). Rollup recomputation (`INSERT INTO rollup_x SELECT ... FROM reports FINAL ...
///   GROUP BY`) therefore stays exact; it reads every shard. Sharding by `project_id` would keep a
///   project on one shard but make a big tenant a hot shard, and it is not needed for exactness.
/// - rollups: a hash of `(project_id, hour)`, part of every rollup's sorting key, so every
///   recomputation of one group replaces the previous one on the same shard.
/// - `processor_checkpoints`: a hash of `(consumer_group, topic, kafka_partition)`: all commit
///   points of a partition on one shard, the latest found by `ORDER BY version DESC LIMIT 1`.
/// - `schema_migrations`: `version` (plain MergeTree; read through the Distributed table).
pub const SHARDING_KEYS: &[(&str, &str)] = &[
    ("reports", "row_id"),
    ("rollup_hourly", "cityHash64(project_id, hour)"),
    ("rollup_nel_hourly", "cityHash64(project_id, hour)"),
    ("rollup_policy_hourly", "cityHash64(project_id, hour)"),
    (
        "processor_checkpoints",
        "cityHash64(consumer_group, topic, kafka_partition)",
    ),
    ("schema_migrations", "version"),
    // The tenant API's state (005): each row's versions share the sharding key.
    ("api_tokens", "cityHash64(token_hash)"),
    ("violation_mutes", "cityHash64(project_id, fingerprint)"),
    ("resolutions", "cityHash64(project_id, fingerprint)"),
    ("api_audit", "project_id"),
    // The tenant API's alerts (006): each row's versions share the sharding key.
    ("alert_settings", "project_id"),
    ("alerts", "cityHash64(project_id, kind, subject)"),
    ("alert_deliveries", "project_id"),
    // Projects and public keys (007).
    ("api_projects", "project_id"),
    ("api_keys", "cityHash64(public_key)"),
    // Each project's storage bound (008): every version of a project's row on one shard.
    ("project_storage", "project_id"),
];

/// The ZooKeeper path of a replicated table; `{shard}` and `{replica}` are server macros.
fn zookeeper_path(database: &str, table: &str) -> String {
    format!("/clickhouse/tables/{{shard}}/{database}/{table}")
}

/// A `remote_servers` cluster name, restricted to a bare identifier so it can be spliced into
/// DDL (`ON CLUSTER name`, `Distributed(name, ...)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterName(String);

impl ClusterName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ClusterName {
    type Err = InvalidClusterName;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        if is_identifier(name) {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidClusterName(name.to_owned()))
        }
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A cluster name that is not a bare identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cluster name {0:?}: expected [A-Za-z_][A-Za-z0-9_]*")]
pub struct InvalidClusterName(pub String);

/// Where the schema lives: one server (the default) or a cluster of shards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Topology {
    /// One server: the migrations run verbatim.
    #[default]
    SingleNode,
    /// Replicated local tables on every node of the named `remote_servers` cluster, Distributed
    /// tables over them under the original names, DDL `ON CLUSTER`.
    Cluster(ClusterName),
}

impl Topology {
    /// From an optional cluster name (`--clickhouse-cluster`).
    pub fn new(cluster: Option<ClusterName>) -> Self {
        cluster.map_or(Self::SingleNode, Self::Cluster)
    }

    pub fn cluster(&self) -> Option<&ClusterName> {
        match self {
            Self::SingleNode => None,
            Self::Cluster(name) => Some(name),
        }
    }

    /// The client settings the topology needs. On a cluster, `insert_distributed_sync = 1`:
    /// an INSERT into a Distributed table returns only once every shard has its rows, so
    /// ClickHouse's acknowledgement means what the processor's Kafka commit assumes (by default
    /// the rows would wait in the initiator's send queue). A single node is left untouched.
    pub fn configure(&self, client: clickhouse::Client) -> clickhouse::Client {
        match self {
            Self::SingleNode => client,
            Self::Cluster(_) => client.with_setting("insert_distributed_sync", "1"),
        }
    }

    /// The table that holds the rows of `table` on each node: `table` itself on a single node,
    /// `table_local` on a cluster.
    pub fn local_table(&self, table: &str) -> String {
        match self {
            Self::SingleNode => table.to_owned(),
            Self::Cluster(_) => format!("{table}{LOCAL_SUFFIX}"),
        }
    }
}

/// Why a migration cannot be rendered for a cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("table {0:?} has no sharding key (add it to SHARDING_KEYS)")]
    NoShardingKey(String),
    #[error("engine {engine:?} of table {table:?} has no replicated variant")]
    UnsupportedEngine { table: String, engine: String },
    #[error("statement not supported on a cluster (extend migrate/cluster.rs): {0:?}")]
    UnsupportedStatement(String),
    #[error("malformed statement: {0:?}")]
    Malformed(String),
}

/// The statements to run for one migration file (or one statement) on `topology`: the file's
/// statements verbatim on a single node, rendered for the cluster otherwise.
pub fn render(sql: &str, database: &str, topology: &Topology) -> Result<Vec<String>, RenderError> {
    let statements = split_statements(sql);
    match topology {
        Topology::SingleNode => Ok(statements.into_iter().map(str::to_owned).collect()),
        Topology::Cluster(cluster) => {
            let mut rendered = Vec::with_capacity(statements.len() * 2);
            for statement in statements {
                rendered.extend(render_statement(statement, database, cluster)?);
            }
            Ok(rendered)
        }
    }
}

fn render_statement(
    statement: &str,
    database: &str,
    cluster: &ClusterName,
) -> Result<Vec<String>, RenderError> {
    if let Some(rest) = keywords(statement, &["CREATE", "TABLE", "IF", "NOT", "EXISTS"]) {
        return create_table(rest, database, cluster, statement);
    }
    if let Some(rest) = keywords(statement, &["ALTER", "TABLE"]) {
        return alter_table(rest, database, cluster, statement);
    }
    if let Some(rest) = keywords(statement, &["DROP", "TABLE", "IF", "EXISTS"]) {
        let (table, rest) = identifier(rest).ok_or_else(|| malformed(statement))?;
        if !rest.trim().is_empty() {
            return Err(unsupported(statement));
        }
        let local = format!("{table}{LOCAL_SUFFIX}");
        return Ok(vec![
            format!("DROP TABLE IF EXISTS {database}.{table} ON CLUSTER {cluster}"),
            format!("DROP TABLE IF EXISTS {database}.{local} ON CLUSTER {cluster}"),
        ]);
    }
    Err(unsupported(statement))
}

/// `t (columns) ENGINE = E(args) rest` -> the replicated local table and the Distributed one.
fn create_table(
    rest: &str,
    database: &str,
    cluster: &ClusterName,
    statement: &str,
) -> Result<Vec<String>, RenderError> {
    let (table, rest) = identifier(rest).ok_or_else(|| malformed(statement))?;
    let rest = rest.trim_start();
    if !rest.starts_with('(') {
        return Err(malformed(statement));
    }
    let columns_end = closing_paren(rest).ok_or_else(|| malformed(statement))?;
    let columns = &rest[..=columns_end];
    let after =
        keywords(&rest[columns_end + 1..], &["ENGINE"]).ok_or_else(|| malformed(statement))?;
    let after = after
        .trim_start()
        .strip_prefix('=')
        .ok_or_else(|| malformed(statement))?;
    let (engine, after) = identifier(after).ok_or_else(|| malformed(statement))?;
    let after = after.trim_start();
    let (args, tail) = match after.strip_prefix('(') {
        Some(_) => {
            let end = closing_paren(after).ok_or_else(|| malformed(statement))?;
            (Some(after[1..end].trim()), &after[end + 1..])
        }
        None => (None, after),
    };
    if !engine.ends_with("MergeTree") || engine.starts_with("Replicated") {
        return Err(RenderError::UnsupportedEngine {
            table: table.to_owned(),
            engine: engine.to_owned(),
        });
    }
    let key = sharding_key(table)?;
    let local = format!("{table}{LOCAL_SUFFIX}");
    let path = zookeeper_path(database, table);
    let args = match args {
        Some(args) if !args.is_empty() => format!(", {args}"),
        _ => String::new(),
    };
    Ok(vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {database}.{local} ON CLUSTER {cluster}\n{columns}\n\
             ENGINE = Replicated{engine}('{path}', '{{replica}}'{args})\n{tail}",
            tail = tail.trim(),
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {database}.{table} ON CLUSTER {cluster} AS {database}.{local}\n\
             ENGINE = Distributed({cluster}, {database}, {local}, {key})"
        ),
    ])
}

/// `t ADD INDEX ...` (and the other index actions) -> on the local table, on every shard.
fn alter_table(
    rest: &str,
    database: &str,
    cluster: &ClusterName,
    statement: &str,
) -> Result<Vec<String>, RenderError> {
    let (table, action) = identifier(rest).ok_or_else(|| malformed(statement))?;
    let action = action.trim();
    let index_action = ["ADD", "DROP", "MATERIALIZE", "CLEAR"]
        .iter()
        .any(|verb| keywords(action, &[verb, "INDEX"]).is_some());
    if !index_action {
        return Err(unsupported(statement));
    }
    // Only tables this module created are known to have a `_local` twin.
    sharding_key(table)?;
    Ok(vec![format!(
        "ALTER TABLE {database}.{table}{LOCAL_SUFFIX} ON CLUSTER {cluster} {action}"
    )])
}

fn sharding_key(table: &str) -> Result<&'static str, RenderError> {
    SHARDING_KEYS
        .iter()
        .find(|(name, _)| *name == table)
        .map(|(_, key)| *key)
        .ok_or_else(|| RenderError::NoShardingKey(table.to_owned()))
}

fn malformed(statement: &str) -> RenderError {
    RenderError::Malformed(first_line(statement))
}

fn unsupported(statement: &str) -> RenderError {
    RenderError::UnsupportedStatement(first_line(statement))
}

fn first_line(statement: &str) -> String {
    statement.lines().next().unwrap_or_default().to_owned()
}

/// `text` after the whitespace-separated `words` (ASCII case-insensitive), or `None`.
fn keywords<'a>(text: &'a str, words: &[&str]) -> Option<&'a str> {
    let mut rest = text;
    for word in words {
        let trimmed = rest.trim_start();
        let head = trimmed.get(..word.len())?;
        if !head.eq_ignore_ascii_case(word) {
            return None;
        }
        rest = &trimmed[word.len()..];
        // A keyword ends at whitespace, a parenthesis or `=`: `TABLES` is not `TABLE`.
        if rest
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return None;
        }
    }
    Some(rest)
}

/// A bare identifier at the start of `text` (after whitespace), and the text after it.
fn identifier(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    let name = &text[..end];
    is_identifier(name).then_some((name, &text[end..]))
}

/// The index of the `)` closing the `(` at the start of `text`, skipping quoted strings and
/// backquoted identifiers.
fn closing_paren(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (index, c) in text.char_indices() {
        if let Some(open) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == open {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '`' | '"' => quote = Some(c),
            '(' => depth += 1,
            ')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(index);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::{CREATE_MIGRATIONS_TABLE, MIGRATIONS};

    fn cluster() -> Topology {
        Topology::Cluster("palisade_cluster".parse().expect("valid name"))
    }

    fn rendered(sql: &str) -> String {
        render(sql, "palisade", &cluster())
            .expect("renders")
            .join(";\n\n")
    }

    #[test]
    fn single_node_runs_every_migration_verbatim() {
        // The default deployment must not change: the statements are the file's, byte for byte.
        for migration in MIGRATIONS {
            let statements =
                render(migration.sql, "palisade", &Topology::SingleNode).expect("renders");
            assert_eq!(
                statements,
                split_statements(migration.sql),
                "{}",
                migration.name
            );
        }
        assert_eq!(
            render(CREATE_MIGRATIONS_TABLE, "palisade", &Topology::SingleNode).expect("renders"),
            vec![CREATE_MIGRATIONS_TABLE.to_owned()]
        );
    }

    #[test]
    fn every_migration_renders_for_a_cluster() {
        for migration in MIGRATIONS {
            insta::assert_snapshot!(
                format!("{:03}_{}", migration.version, migration.name),
                rendered(migration.sql)
            );
        }
        insta::assert_snapshot!("schema_migrations", rendered(CREATE_MIGRATIONS_TABLE));
    }

    #[test]
    fn every_created_table_is_replicated_and_distributed_under_its_name() {
        let cluster = cluster();
        for migration in MIGRATIONS {
            let statements = render(migration.sql, "db", &cluster).expect("renders");
            for statement in &statements {
                assert!(
                    statement.contains(" ON CLUSTER palisade_cluster"),
                    "{statement}"
                );
                assert!(!statement.contains("ENGINE = MergeTree"), "{statement}");
                assert!(
                    !statement.contains("ENGINE = ReplacingMergeTree"),
                    "{statement}"
                );
            }
            for pair in statements.chunks(2) {
                let [local, distributed] = pair else { continue };
                if !local.starts_with("CREATE TABLE") {
                    continue;
                }
                let (_, name) = distributed
                    .split_once("IF NOT EXISTS db.")
                    .expect("distributed table");
                let name = name.split_whitespace().next().expect("table name");
                assert!(
                    local.contains(&format!("db.{name}_local ON CLUSTER")),
                    "{local}"
                );
                assert!(
                    local.contains(&format!("'/clickhouse/tables/{{shard}}/db/{name}'")),
                    "{local}"
                );
                assert!(
                    distributed
                        .contains(&format!("Distributed(palisade_cluster, db, {name}_local, ")),
                    "{distributed}"
                );
            }
        }
    }

    #[test]
    fn keeps_the_engine_arguments_and_the_sorting_key() {
        let sql = "CREATE TABLE IF NOT EXISTS reports (a UInt8 DEFAULT ')', version UInt64)\n\
                   ENGINE = ReplacingMergeTree(version)\nPARTITION BY a\nORDER BY (a, version);";
        let statements = render(sql, "db", &cluster()).expect("renders");
        assert_eq!(
            statements,
            vec![
                "CREATE TABLE IF NOT EXISTS db.reports_local ON CLUSTER palisade_cluster\n\
                 (a UInt8 DEFAULT ')', version UInt64)\n\
                 ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/reports', \
                 '{replica}', version)\nPARTITION BY a\nORDER BY (a, version)"
                    .to_owned(),
                "CREATE TABLE IF NOT EXISTS db.reports ON CLUSTER palisade_cluster AS \
                 db.reports_local\nENGINE = Distributed(palisade_cluster, db, reports_local, row_id)"
                    .to_owned(),
            ]
        );
        let plain = render(
            "create table if not exists schema_migrations (version UInt32) engine = MergeTree order by version",
            "db",
            &cluster(),
        )
        .expect("renders");
        assert!(
            plain[0].contains(
                "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/db/schema_migrations', '{replica}')\norder by version"
            ),
            "{}",
            plain[0]
        );
    }

    #[test]
    fn index_alters_and_drops_go_to_the_local_tables() {
        assert_eq!(
            render(
                "ALTER TABLE reports ADD INDEX IF NOT EXISTS i x TYPE minmax GRANULARITY 4;",
                "db",
                &cluster()
            )
            .expect("renders"),
            vec![
                "ALTER TABLE db.reports_local ON CLUSTER palisade_cluster ADD INDEX IF NOT EXISTS \
                 i x TYPE minmax GRANULARITY 4"
                    .to_owned()
            ]
        );
        assert_eq!(
            render("DROP TABLE IF EXISTS rollup_hourly;", "db", &cluster()).expect("renders"),
            vec![
                "DROP TABLE IF EXISTS db.rollup_hourly ON CLUSTER palisade_cluster".to_owned(),
                "DROP TABLE IF EXISTS db.rollup_hourly_local ON CLUSTER palisade_cluster"
                    .to_owned(),
            ]
        );
    }

    #[test]
    fn refuses_what_it_cannot_render_safely() {
        let cluster = cluster();
        let render = |sql| render(sql, "db", &cluster);
        assert_eq!(
            render("CREATE TABLE IF NOT EXISTS unknown (a UInt8) ENGINE = MergeTree ORDER BY a;"),
            Err(RenderError::NoShardingKey("unknown".to_owned()))
        );
        assert!(matches!(
            render("CREATE TABLE IF NOT EXISTS reports (a UInt8) ENGINE = Log;"),
            Err(RenderError::UnsupportedEngine { .. })
        ));
        assert!(matches!(
            render("ALTER TABLE reports ADD COLUMN x UInt8;"),
            Err(RenderError::UnsupportedStatement(_))
        ));
        assert!(matches!(
            render("ALTER TABLE unknown ADD INDEX i x TYPE minmax GRANULARITY 1;"),
            Err(RenderError::NoShardingKey(_))
        ));
        // Not idempotent, so not a valid migration anyway.
        assert!(matches!(
            render("CREATE TABLE reports (a UInt8) ENGINE = MergeTree ORDER BY a;"),
            Err(RenderError::UnsupportedStatement(_))
        ));
        assert!(matches!(
            render("CREATE TABLE IF NOT EXISTS reports (a UInt8 ENGINE = MergeTree;"),
            Err(RenderError::Malformed(_))
        ));
        assert!(matches!(
            render("INSERT INTO reports VALUES (1);"),
            Err(RenderError::UnsupportedStatement(_))
        ));
    }

    #[test]
    fn cluster_names_are_identifiers_and_set_synchronous_inserts() {
        assert!("palisade".parse::<ClusterName>().is_ok());
        assert_eq!(
            "a b".parse::<ClusterName>(),
            Err(InvalidClusterName("a b".to_owned()))
        );
        assert!("x; DROP".parse::<ClusterName>().is_err());
        assert_eq!(Topology::new(None), Topology::SingleNode);
        assert_eq!(Topology::SingleNode.local_table("reports"), "reports");
        assert_eq!(cluster().local_table("reports"), "reports_local");
        assert_eq!(
            cluster().cluster().map(ClusterName::as_str),
            Some("palisade_cluster")
        );
    }

    #[test]
    fn keywords_match_whole_words_case_insensitively() {
        assert_eq!(
            keywords("create  Table x", &["CREATE", "TABLE"]),
            Some(" x")
        );
        assert_eq!(keywords("CREATE TABLES", &["CREATE", "TABLE"]), None);
        assert_eq!(closing_paren("(a ')' (b) `)`) c"), Some(14));
        assert_eq!(closing_paren("(a"), None);
    }
}
