//! ClickHouse schema migrations: the numbered files of `schemas/sql/`, applied idempotently and
//! recorded in a `schema_migrations` table.
//!
//! Rules (see `schemas/sql/README.md`):
//! - a migration file holds one or more statements, each ending with `;` at the end of a line;
//! - every statement is idempotent by itself (`CREATE ... IF NOT EXISTS`), so a migration that
//!   failed half-way, or that two processors run at the same time, can simply be run again;
//! - a migration is recorded only after all its statements succeeded; recorded migrations are
//!   skipped, and a recorded checksum that differs from the embedded file is an error (an applied
//!   migration must never be edited: add a new one);
//! - a file whose header has `-- requires: MAJOR.MINOR` is skipped, and recorded as skipped, on
//!   older servers (`SELECT version()`); it is applied by a later run on a new enough server.
//!
//! On a cluster ([`Topology::Cluster`], `--clickhouse-cluster`) every statement, the database
//! and `schema_migrations` included, is rendered by [`cluster`] (replicated local tables,
//! Distributed tables under the original names, DDL `ON CLUSTER`) before it runs; checksums and
//! `-- requires:` gates are those of the files, whatever the topology.

pub mod cluster;

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

pub use cluster::{ClusterName, InvalidClusterName, RenderError, Topology};

/// One embedded migration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The `NNN` prefix of the file name; migrations run in ascending order.
    pub version: u32,
    /// The file name without prefix and extension.
    pub name: &'static str,
    /// The file text.
    pub sql: &'static str,
}

/// Every migration, in the order it runs. Append only: never edit an applied file.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "reports",
        sql: include_str!("../../schemas/sql/001_reports.sql"),
    },
    Migration {
        version: 2,
        name: "rollups",
        sql: include_str!("../../schemas/sql/002_rollups.sql"),
    },
    Migration {
        version: 3,
        name: "blocked_domain_index",
        sql: include_str!("../../schemas/sql/003_blocked_domain_index.sql"),
    },
    Migration {
        version: 4,
        name: "checkpoints",
        sql: include_str!("../../schemas/sql/004_checkpoints.sql"),
    },
    Migration {
        version: 5,
        name: "api_state",
        sql: include_str!("../../schemas/sql/005_api_state.sql"),
    },
    Migration {
        version: 6,
        name: "api_alerts",
        sql: include_str!("../../schemas/sql/006_api_alerts.sql"),
    },
    Migration {
        version: 7,
        name: "api_projects",
        sql: include_str!("../../schemas/sql/007_api_projects.sql"),
    },
    Migration {
        version: 8,
        name: "project_storage",
        sql: include_str!("../../schemas/sql/008_project_storage.sql"),
    },
];

/// The table recording applied and skipped migrations (created before anything else).
///
/// MergeTree, not Replacing: two processors migrating at once may both record a version, and
/// [`migrate`] reduces the records per version (applied beats skipped) when it reads them.
pub(crate) const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations \
     (version UInt32, name String, applied_at DateTime, checksum String, status String) \
     ENGINE = MergeTree ORDER BY version";

const STATUS_APPLIED: &str = "applied";
const STATUS_SKIPPED: &str = "skipped";

/// What [`migrate`] did with one migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: u32,
    pub name: &'static str,
    pub outcome: Outcome,
}

/// The outcome of one migration in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its statements ran in this run and it was recorded.
    Applied,
    /// A previous run applied it (checksum verified).
    AlreadyApplied,
    /// The server is older than the migration requires; recorded as skipped.
    Skipped { requires: ServerVersion },
}

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("invalid database name {0:?}: expected [A-Za-z_][A-Za-z0-9_]*")]
    InvalidDatabaseName(String),
    #[error("cannot parse the server version {0:?}")]
    ServerVersion(String),
    #[error("migration {version} ({name}) cannot be rendered for the cluster")]
    Render {
        version: u32,
        name: &'static str,
        #[source]
        source: RenderError,
    },
    #[error("database {database} already holds a single-node schema (schema_migrations is {engine}): the cluster variant needs a fresh database")]
    TopologyMismatch { database: String, engine: String },
    #[error("migration {version} has an invalid `-- requires:` header {value:?}")]
    InvalidRequires { version: u32, value: String },
    #[error("clickhouse query failed while {step}")]
    Query {
        step: &'static str,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error("statement {index} of migration {version} ({name}) failed")]
    Statement {
        version: u32,
        name: &'static str,
        index: usize,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error("migration {version} ({name}) was applied with checksum {recorded} but the embedded file has {embedded}: add a new migration instead of editing an applied one")]
    ChecksumMismatch {
        version: u32,
        name: &'static str,
        recorded: String,
        embedded: String,
    },
}

/// A ClickHouse server version, compared on `MAJOR.MINOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
}

impl ServerVersion {
    /// Parse `18.16.1`, `24.3.2.23` or `20.1`: the first two dot-separated numbers.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.trim().parse().ok()?;
        let minor = parts.next()?.trim().parse().ok()?;
        Some(Self { major, minor })
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Apply every pending migration of [`MIGRATIONS`] to `database` (created if missing) on a
/// single node.
///
/// Returns one [`Applied`] per migration, in order. Safe to run concurrently from several
/// processors and to re-run after a failure (see the module doc).
pub async fn migrate(
    client: &clickhouse::Client,
    database: &str,
) -> Result<Vec<Applied>, MigrateError> {
    migrate_to(client, database, &Topology::SingleNode).await
}

/// [`migrate`] on `topology`: a single node, or every node of a cluster (through the node
/// `client` points at).
pub async fn migrate_to(
    client: &clickhouse::Client,
    database: &str,
    topology: &Topology,
) -> Result<Vec<Applied>, MigrateError> {
    apply(client, database, topology, MIGRATIONS).await
}

/// [`migrate`] with an explicit migration list (tests use it to exercise checksums and gates).
pub async fn migrate_with(
    client: &clickhouse::Client,
    database: &str,
    migrations: &[Migration],
) -> Result<Vec<Applied>, MigrateError> {
    apply(client, database, &Topology::SingleNode, migrations).await
}

async fn apply(
    client: &clickhouse::Client,
    database: &str,
    topology: &Topology,
    migrations: &[Migration],
) -> Result<Vec<Applied>, MigrateError> {
    if !is_identifier(database) {
        return Err(MigrateError::InvalidDatabaseName(database.to_owned()));
    }
    // Rendered up front: a migration the cluster variant cannot express fails the run before
    // anything is changed.
    let mut rendered = Vec::with_capacity(migrations.len());
    for migration in migrations {
        let statements = cluster::render(migration.sql, database, topology).map_err(|source| {
            MigrateError::Render {
                version: migration.version,
                name: migration.name,
                source,
            }
        })?;
        rendered.push(statements);
    }
    let create_database = match topology.cluster() {
        None => format!("CREATE DATABASE IF NOT EXISTS {database}"),
        Some(cluster) => format!("CREATE DATABASE IF NOT EXISTS {database} ON CLUSTER {cluster}"),
    };
    // `system` always exists, so this works whatever database the caller's client points at.
    let server = client
        .clone()
        .with_database("system")
        .with_validation(false);
    server
        .query_raw(&create_database)
        .execute()
        .await
        .map_err(|source| query_error("creating the database", source))?;
    let raw_version: String = server
        .query_raw("SELECT version()")
        .fetch_one()
        .await
        .map_err(|source| query_error("reading the server version", source))?;
    let server_version =
        ServerVersion::parse(&raw_version).ok_or(MigrateError::ServerVersion(raw_version))?;

    if topology.cluster().is_some() {
        refuse_single_node_schema(&server, database).await?;
    }

    // On a cluster, records are inserted through the Distributed table synchronously, so the
    // next run reads them from any node.
    let db = topology.configure(
        client
            .clone()
            .with_database(database)
            .with_validation(false),
    );
    let create_records =
        cluster::render(CREATE_MIGRATIONS_TABLE, database, topology).map_err(|source| {
            MigrateError::Render {
                version: 0,
                name: "schema_migrations",
                source,
            }
        })?;
    for statement in &create_records {
        db.query_raw(statement)
            .execute()
            .await
            .map_err(|source| query_error("creating schema_migrations", source))?;
    }
    let recorded = read_records(&db).await?;

    let mut outcomes = Vec::with_capacity(migrations.len());
    for (migration, statements) in migrations.iter().zip(&rendered) {
        let outcome = run_one(
            &db,
            migration,
            statements,
            server_version,
            recorded.get(&migration.version),
        )
        .await?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            outcome = ?outcome,
            "migration"
        );
        outcomes.push(Applied {
            version: migration.version,
            name: migration.name,
            outcome,
        });
    }
    Ok(outcomes)
}

/// A cluster migration against a database whose `schema_migrations` is a plain table (a
/// single-node schema) would find every migration recorded and change nothing: refuse it.
async fn refuse_single_node_schema(
    server: &clickhouse::Client,
    database: &str,
) -> Result<(), MigrateError> {
    #[derive(Debug, clickhouse::Row, Deserialize)]
    struct EngineRow {
        engine: String,
    }
    let engines: Vec<EngineRow> = server
        .query("SELECT engine FROM system.tables WHERE database = ? AND name = 'schema_migrations'")
        .bind(database)
        .fetch_all()
        .await
        .map_err(|source| query_error("reading the engine of schema_migrations", source))?;
    match engines.into_iter().next() {
        Some(row) if row.engine != "Distributed" => Err(MigrateError::TopologyMismatch {
            database: database.to_owned(),
            engine: row.engine,
        }),
        _ => Ok(()),
    }
}

/// What `schema_migrations` says about one version, reduced over duplicate records.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    applied_checksum: Option<String>,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct RecordRow {
    version: u32,
    checksum: String,
    status: String,
}

async fn read_records(db: &clickhouse::Client) -> Result<BTreeMap<u32, Record>, MigrateError> {
    let rows: Vec<RecordRow> = db
        .query_raw("SELECT version, checksum, status FROM schema_migrations ORDER BY version")
        .fetch_all()
        .await
        .map_err(|source| query_error("reading schema_migrations", source))?;
    let mut records = BTreeMap::new();
    for row in rows {
        let record = records.entry(row.version).or_insert(Record {
            applied_checksum: None,
        });
        if row.status == STATUS_APPLIED {
            record.applied_checksum = Some(row.checksum);
        }
    }
    Ok(records)
}

async fn run_one(
    db: &clickhouse::Client,
    migration: &Migration,
    statements: &[String],
    server_version: ServerVersion,
    record: Option<&Record>,
) -> Result<Outcome, MigrateError> {
    let embedded = checksum(migration.sql);
    if let Some(recorded) = record.and_then(|record| record.applied_checksum.as_ref()) {
        if *recorded != embedded {
            return Err(MigrateError::ChecksumMismatch {
                version: migration.version,
                name: migration.name,
                recorded: recorded.clone(),
                embedded,
            });
        }
        return Ok(Outcome::AlreadyApplied);
    }

    let requires = requires(migration.sql).map_err(|value| MigrateError::InvalidRequires {
        version: migration.version,
        value,
    })?;
    if let Some(requires) = requires.filter(|requires| server_version < *requires) {
        // Recorded once; a later run on a newer server applies it.
        if record.is_none() {
            record_migration(db, migration, &embedded, STATUS_SKIPPED).await?;
        }
        return Ok(Outcome::Skipped { requires });
    }

    for (index, statement) in statements.iter().enumerate() {
        db.query_raw(statement)
            .execute()
            .await
            .map_err(|source| MigrateError::Statement {
                version: migration.version,
                name: migration.name,
                index,
                source,
            })?;
    }
    record_migration(db, migration, &embedded, STATUS_APPLIED).await?;
    Ok(Outcome::Applied)
}

async fn record_migration(
    db: &clickhouse::Client,
    migration: &Migration,
    checksum: &str,
    status: &str,
) -> Result<(), MigrateError> {
    db.query(
        "INSERT INTO schema_migrations (version, name, applied_at, checksum, status) \
         SELECT ?, ?, now(), ?, ?",
    )
    .bind(migration.version)
    .bind(migration.name)
    .bind(checksum)
    .bind(status)
    .execute()
    .await
    .map_err(|source| query_error("recording a migration", source))
}

fn query_error(step: &'static str, source: clickhouse::error::Error) -> MigrateError {
    MigrateError::Query { step, source }
}

/// The checksum recorded for a migration: xxh3-64 of the file text, 16 hex digits.
pub fn checksum(sql: &str) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(sql.as_bytes()))
}

/// The `-- requires: MAJOR.MINOR` header of a migration, looked for in the leading comment
/// block. `Err` carries the unparsable value.
pub fn requires(sql: &str) -> Result<Option<ServerVersion>, String> {
    for line in sql.lines().map(str::trim) {
        if line.is_empty() {
            continue;
        }
        let Some(comment) = line.strip_prefix("--") else {
            break; // the header ends at the first statement line
        };
        if let Some(value) = comment.trim().strip_prefix("requires:") {
            return ServerVersion::parse(value)
                .map(Some)
                .ok_or_else(|| value.trim().to_owned());
        }
    }
    Ok(None)
}

/// Split a migration into statements: a statement ends with `;` at the end of a line (so a `;`
/// inside a string literal in the middle of a line is safe). Comment-only and blank lines between
/// statements are dropped; the trailing `;` is removed (the HTTP interface takes one statement).
pub fn split_statements(sql: &str) -> Vec<&str> {
    let mut statements = Vec::new();
    let mut start: Option<usize> = None;
    let mut offset = 0;
    for line in sql.split_inclusive('\n') {
        let line_start = offset;
        offset += line.len();
        let trimmed = line.trim();
        if start.is_none() && (trimmed.is_empty() || trimmed.starts_with("--")) {
            continue;
        }
        let begin = *start.get_or_insert(line_start);
        if trimmed.ends_with(';') {
            let end = line_start + line.trim_end().len() - 1;
            statements.push(sql[begin..end].trim());
            start = None;
        }
    }
    if let Some(begin) = start {
        let rest = sql[begin..].trim();
        if !rest.is_empty() {
            statements.push(rest);
        }
    }
    statements
}

/// A bare ClickHouse identifier, safe to splice into DDL (the rule lives with the DDL).
pub(crate) use schemas::sql::is_identifier;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_on_line_final_semicolons() {
        let sql = "-- header\n\nCREATE TABLE a (x String DEFAULT 'a;b')\nENGINE = Log;\n\
                   -- between\nCREATE TABLE b (y UInt8) ENGINE = Log;\n  \nSELECT 1\n";
        assert_eq!(
            split_statements(sql),
            vec![
                "CREATE TABLE a (x String DEFAULT 'a;b')\nENGINE = Log",
                "CREATE TABLE b (y UInt8) ENGINE = Log",
                "SELECT 1",
            ]
        );
        assert!(split_statements("-- only a comment\n\n").is_empty());
    }

    #[test]
    fn reads_the_requires_header() {
        assert_eq!(
            requires("-- 003: x\n-- requires: 20.1\nALTER TABLE t;"),
            Ok(Some(ServerVersion {
                major: 20,
                minor: 1
            }))
        );
        assert_eq!(requires("-- no gate\nCREATE TABLE t;"), Ok(None));
        // A `requires:` after the first statement is not a header.
        assert_eq!(requires("SELECT 1;\n-- requires: 99.1\n"), Ok(None));
        assert_eq!(requires("-- requires: soon\n"), Err("soon".to_owned()));
    }

    #[test]
    fn compares_server_versions_on_major_minor() {
        let old = ServerVersion::parse("18.16.1").expect("valid");
        let new = ServerVersion::parse("24.3.2.23").expect("valid");
        assert!(old < new);
        assert!(ServerVersion::parse("20.1").expect("valid") > old);
        assert_eq!(
            ServerVersion::parse("18.16.1"),
            ServerVersion::parse("18.16")
        );
        assert_eq!(ServerVersion::parse("garbage"), None);
    }

    #[test]
    fn embedded_migrations_are_numbered_in_order_and_not_empty() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version, "{pair:?}");
        }
        for migration in MIGRATIONS {
            assert!(!split_statements(migration.sql).is_empty(), "{migration:?}");
            assert!(requires(migration.sql).is_ok(), "{migration:?}");
        }
    }

    #[test]
    fn checksums_change_with_the_text() {
        assert_eq!(checksum("a"), checksum("a"));
        assert_ne!(checksum("a"), checksum("a "));
        assert_eq!(checksum("a").len(), 16);
    }

    #[test]
    fn identifiers_reject_injection() {
        assert!(is_identifier("palisade"));
        assert!(is_identifier("_test_1"));
        assert!(!is_identifier("1abc"));
        assert!(!is_identifier("a; DROP DATABASE b"));
        assert!(!is_identifier(""));
    }
}
