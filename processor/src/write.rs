//! Writes to ClickHouse: report rows (bounded retries with backoff, isolation of rows the server
//! rejects), exact rollup refresh, and retention by partition drop.
//!
//! Delivery: every write here is idempotent (rows carry a deterministic `row_id` into a
//! ReplacingMergeTree; rollups are recomputed, not incremented), so the caller may retry a batch,
//! or replay it after a restart, without changing any count. The caller commits Kafka offsets only
//! after [`Writer::insert_rows`] and [`Writer::refresh_rollups`] both returned `Ok`.
//!
//! Errors are classified before acting ([`ErrorClass`]): transient ones are retried here up to
//! [`RetryPolicy::max_attempts`] and then returned, so the caller can stop polling Kafka
//! (back-pressure) and try again later; permanent ones (the server rejects the data) are isolated
//! to the offending rows, which the caller dead-letters; misconfiguration (unknown table, bad
//! credentials) is returned at once, never dead-lettered.

use std::collections::BTreeSet;
use std::future::Future;
use std::num::{NonZeroU32, NonZeroUsize};
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;

use crate::migrate::is_identifier;
use crate::row::ReportRow;

/// The table of deduplicated report rows (`schemas/sql/001_reports.sql`).
pub const REPORTS_TABLE: &str = "reports";

/// Every table partitioned by `day` and keyed by `project_id`: what retention applies to.
pub const RETAINED_TABLES: [&str; 4] = [
    REPORTS_TABLE,
    "rollup_hourly",
    "rollup_nel_hourly",
    "rollup_policy_hourly",
];

const SECONDS_PER_HOUR: u32 = 3600;

/// Writer settings; the binary's `Config` fills them (units and defaults documented there).
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Database holding the tables (a bare identifier).
    pub database: String,
    /// Retries of transient errors.
    pub retry: RetryPolicy,
    /// Deadline of one attempt (one INSERT including the server's work, or one statement).
    pub attempt_timeout: Duration,
    /// Most (project, hour) groups one rollup statement recomputes; bounds the statement size.
    pub rollup_groups_per_statement: NonZeroUsize,
}

/// Exponential backoff for transient errors, bounded in attempts and in wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per operation, the first included.
    pub max_attempts: NonZeroU32,
    /// Wait after the first failure; doubled after each further failure.
    pub initial_backoff: Duration,
    /// Upper bound of one wait.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based): `initial * 2^(attempt-1)`,
    /// capped at `max_backoff`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }
}

/// What to do about a failed ClickHouse call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Server down, network, timeout, overload ("too many parts", memory): retry later, keep
    /// the offsets, stop polling while it lasts.
    Transient,
    /// The server rejects the data itself (parse or type errors): dead-letter the rows.
    Permanent,
    /// The deployment is wrong (unknown table or column, authentication, our SQL): retrying or
    /// dead-lettering will not help; keep the offsets and alert.
    Misconfigured,
}

impl ErrorClass {
    /// Stable metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
            Self::Misconfigured => "misconfigured",
        }
    }
}

/// Which writer operation failed (a bounded metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Insert,
    RefreshRollups,
    ListPartitions,
    DropPartition,
    DeleteProject,
}

impl Operation {
    /// Stable metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Insert => "insert",
            Self::RefreshRollups => "refresh_rollups",
            Self::ListPartitions => "list_partitions",
            Self::DropPartition => "drop_partition",
            Self::DeleteProject => "delete_project",
        }
    }
}

/// Why a write failed, after retries.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("invalid database name {0:?}: expected [A-Za-z_][A-Za-z0-9_]*")]
    InvalidDatabaseName(String),
    #[error("clickhouse {} failed ({}) after {attempts} attempt(s)", operation.as_str(), class.as_str())]
    ClickHouse {
        operation: Operation,
        class: ErrorClass,
        attempts: u32,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error("clickhouse {} timed out after {timeout:?} ({attempts} attempt(s))", operation.as_str())]
    TimedOut {
        operation: Operation,
        timeout: Duration,
        attempts: u32,
    },
    #[error("system.parts returned an unexpected partition id {0:?}")]
    UnexpectedPartitionId(String),
}

impl WriteError {
    /// How the caller should react.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::ClickHouse { class, .. } => *class,
            Self::TimedOut { .. } => ErrorClass::Transient,
            Self::InvalidDatabaseName(_) | Self::UnexpectedPartitionId(_) => {
                ErrorClass::Misconfigured
            }
        }
    }
}

/// Classify a `clickhouse` crate error. Unknown server errors count as transient: retrying a
/// batch we could have dropped costs time, dead-lettering a batch we could have written loses it.
pub fn classify(error: &clickhouse::error::Error) -> ErrorClass {
    use clickhouse::error::Error as E;
    match error {
        E::Network(_) | E::TimedOut | E::Compression(_) | E::Decompression(_) | E::Other(_) => {
            ErrorClass::Transient
        }
        E::BadResponse(message) => classify_server_message(message),
        // Our own rows failed to serialize: the data is at fault.
        E::Custom(_) | E::SequenceMustHaveLength | E::InvalidUtf8Encoding(_) => {
            ErrorClass::Permanent
        }
        // Responses that do not match our row types, or calls we built wrong.
        E::InvalidParams(_)
        | E::DataFormat(_)
        | E::NotEnoughData
        | E::SchemaMismatch(_)
        | E::Unsupported(_)
        | E::InvalidColumnsHeader(_)
        | E::DeserializeAnyNotSupported
        | E::InvalidTagEncoding(_)
        | E::VariantDiscriminatorIsOutOfBound(_)
        | E::RowNotFound => ErrorClass::Misconfigured,
        _ => ErrorClass::Transient,
    }
}

/// Classify a server error body (`Code: 252, e.displayText() = DB::Exception: ...` on 18.16,
/// `Code: 252. DB::Exception: ...` today) or a bare HTTP status (`503 Service Unavailable`).
pub fn classify_server_message(message: &str) -> ErrorClass {
    if let Some(code) = exception_code(message) {
        return classify_exception_code(code);
    }
    match message
        .split_ascii_whitespace()
        .next()
        .map(str::parse::<u16>)
    {
        Some(Ok(status)) if (400..500).contains(&status) && status != 408 && status != 429 => {
            ErrorClass::Misconfigured
        }
        _ => ErrorClass::Transient,
    }
}

/// The number after `Code:` in a ClickHouse exception text.
fn exception_code(message: &str) -> Option<u32> {
    let rest = &message[message.find("Code:")? + "Code:".len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// ClickHouse error codes (`src/Common/ErrorCodes.cpp`) grouped by what the writer should do.
fn classify_exception_code(code: u32) -> ErrorClass {
    match code {
        // CANNOT_PARSE_TEXT, CANNOT_PARSE_QUOTED_STRING, CANNOT_PARSE_INPUT_ASSERTION_FAILED,
        // CANNOT_READ_ALL_DATA, CANNOT_PARSE_DATE, CANNOT_PARSE_DATETIME, TYPE_MISMATCH,
        // ARGUMENT_OUT_OF_BOUND, CANNOT_CONVERT_TYPE, CANNOT_PARSE_NUMBER, INCORRECT_DATA,
        // TOO_LARGE_STRING_SIZE, CANNOT_PARSE_UUID, VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE.
        6 | 26 | 27 | 33 | 38 | 41 | 53 | 69 | 70 | 72 | 117 | 131 | 376 | 321 => {
            ErrorClass::Permanent
        }
        // NOT_FOUND_COLUMN_IN_BLOCK, NO_SUCH_COLUMN_IN_TABLE, UNKNOWN_FUNCTION, UNKNOWN_IDENTIFIER,
        // UNKNOWN_TABLE, SYNTAX_ERROR, UNKNOWN_DATABASE, UNKNOWN_SETTING, READONLY, UNKNOWN_USER,
        // WRONG_PASSWORD, REQUIRED_PASSWORD, IP_ADDRESS_NOT_ALLOWED, ACCESS_DENIED,
        // AUTHENTICATION_FAILED.
        10 | 16 | 46 | 47 | 60 | 62 | 81 | 115 | 164 | 192 | 193 | 194 | 195 | 497 | 516 => {
            ErrorClass::Misconfigured
        }
        // Everything else, notably TIMEOUT_EXCEEDED (159), TOO_MANY_SIMULTANEOUS_QUERIES (202),
        // SOCKET_TIMEOUT (209), NETWORK_ERROR (210), MEMORY_LIMIT_EXCEEDED (241),
        // TABLE_IS_READ_ONLY (242), TOO_MANY_PARTS (252), UNKNOWN_STATUS_OF_INSERT (319).
        _ => ErrorClass::Transient,
    }
}

/// Result of [`Writer::insert_rows`].
#[derive(Debug, Default)]
pub struct Inserted {
    /// Rows the server acknowledged.
    pub rows: usize,
    /// INSERT requests sent, retries and isolation included.
    pub requests: u32,
    /// Rows the server rejected permanently, by index in the input: dead-letter them.
    pub rejected: Vec<Rejected>,
}

/// One row the server rejected permanently.
#[derive(Debug)]
pub struct Rejected {
    pub index: usize,
    pub error: WriteError,
}

/// The (project, hour) groups a batch touched: what [`Writer::refresh_rollups`] recomputes.
///
/// Bounded by the batch that fills it (at most one entry per row).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Touched {
    hours: BTreeSet<(u64, u32)>,
}

impl Touched {
    /// The groups of a batch of rows.
    pub fn from_rows(rows: &[ReportRow]) -> Self {
        let mut touched = Self::default();
        for row in rows {
            touched.add(row.project_id, row.window_start);
        }
        touched
    }

    /// Record a row of `project_id` whose window starts at `window_start` (unix seconds).
    pub fn add(&mut self, project_id: u64, window_start: u32) {
        let hour = window_start - window_start % SECONDS_PER_HOUR;
        self.hours.insert((project_id, hour));
    }

    /// Number of (project, hour) groups.
    pub fn len(&self) -> usize {
        self.hours.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hours.is_empty()
    }

    /// The groups, ordered by project then hour (unix seconds).
    pub fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.hours.iter().copied()
    }
}

/// A partition dropped by [`Writer::drop_expired_partitions`].
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct DroppedPartition {
    pub table: String,
    /// ClickHouse partition id (`YYYYMMDD` for a `Date` key).
    pub partition_id: String,
    /// The partition's newest day, in days since the Unix epoch.
    pub max_day: u16,
}

/// Writes report rows, rollups and retention to one ClickHouse database.
#[derive(Clone)]
pub struct Writer {
    client: clickhouse::Client,
    config: WriterConfig,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// Wrap `client` (URL and credentials set by the caller) for `config.database`.
    ///
    /// Validation is disabled: the `clickhouse` crate's schema check sends a setting ClickHouse
    /// 18.16 rejects. `tests/clickhouse.rs` checks the row layout against the real table instead.
    pub fn new(client: &clickhouse::Client, config: WriterConfig) -> Result<Self, WriteError> {
        if !is_identifier(&config.database) {
            return Err(WriteError::InvalidDatabaseName(config.database));
        }
        let client = client
            .clone()
            .with_database(config.database.as_str())
            .with_validation(false);
        Ok(Self { client, config })
    }

    /// Insert `rows` into `reports`. Transient errors are retried per the [`RetryPolicy`] and
    /// then returned; on a permanent error the batch is split in halves until the rejected rows
    /// are isolated (at most `2 * rows.len() - 1` requests), the others are written, and the
    /// rejected ones are listed in [`Inserted::rejected`].
    ///
    /// In RowBinary a row type that does not match the table also looks like bad data (every
    /// row rejected): `tests/clickhouse.rs` round-trips [`ReportRow`] through the real table so
    /// that cannot ship unnoticed; a caller seeing a whole batch rejected should alert.
    pub async fn insert_rows(&self, rows: &[ReportRow]) -> Result<Inserted, WriteError> {
        isolate_rejected(rows.len(), |range| self.insert_once(&rows[range])).await
    }

    async fn insert_once(&self, rows: &[ReportRow]) -> Result<u32, WriteError> {
        let (_, attempts) = self
            .retry(Operation::Insert, || async {
                let mut insert = self.client.insert::<ReportRow>(REPORTS_TABLE).await?;
                for row in rows {
                    insert.write(row).await?;
                }
                insert.end().await
            })
            .await?;
        Ok(attempts)
    }

    /// Recompute the rollups of every touched (project, hour) from `reports FINAL`. Idempotent;
    /// returns the number of statements run.
    pub async fn refresh_rollups(&self, touched: &Touched) -> Result<usize, WriteError> {
        let statements = rollup_statements(touched, self.config.rollup_groups_per_statement);
        for statement in &statements {
            self.retry(Operation::RefreshRollups, || {
                self.client.query_raw(statement).execute()
            })
            .await?;
        }
        Ok(statements.len())
    }

    /// Drop every partition, of every [`RETAINED_TABLES`] table, whose newest day is more than
    /// `retention_days` before `today` (days since the Unix epoch, UTC: passed in so tests and
    /// replays are deterministic). The global retention: partitions hold every project's rows.
    pub async fn drop_expired_partitions(
        &self,
        retention_days: NonZeroU32,
        today: u16,
    ) -> Result<Vec<DroppedPartition>, WriteError> {
        let cutoff = u32::from(today).saturating_sub(retention_days.get());
        let tables = RETAINED_TABLES
            .iter()
            .map(|table| format!("'{table}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let list = format!(
            "SELECT table, partition_id, toUInt16(max(max_date)) AS max_day \
             FROM system.parts \
             WHERE database = '{database}' AND active AND table IN ({tables}) \
             GROUP BY table, partition_id HAVING max_day < {cutoff} \
             ORDER BY table, partition_id",
            database = self.config.database,
        );
        let (expired, _) = self
            .retry(Operation::ListPartitions, || {
                self.client.query_raw(&list).fetch_all::<DroppedPartition>()
            })
            .await?;
        for partition in &expired {
            // Values from system.parts, spliced into DDL: check them anyway.
            if !partition
                .partition_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                || !is_identifier(&partition.table)
            {
                return Err(WriteError::UnexpectedPartitionId(
                    partition.partition_id.clone(),
                ));
            }
            let drop = format!(
                "ALTER TABLE {} DROP PARTITION ID '{}'",
                partition.table, partition.partition_id
            );
            self.retry(Operation::DropPartition, || {
                self.client.query_raw(&drop).execute()
            })
            .await?;
            tracing::info!(
                table = partition.table,
                partition = partition.partition_id,
                "expired partition dropped"
            );
        }
        Ok(expired)
    }

    /// Per-project retention shorter than the global one: delete `project_id`'s rows older than
    /// `before_day` (days since the Unix epoch) from every retained table, as ClickHouse
    /// mutations (`ALTER TABLE ... DELETE`, available for MergeTree since 1.1.54388, so on
    /// 18.16). Mutations rewrite parts in the background and return before they finish: run this
    /// at most daily per project. A project cannot keep data LONGER than the global retention,
    /// whose partition drops remove every project's rows.
    pub async fn delete_project_before(
        &self,
        project_id: u64,
        before_day: u16,
    ) -> Result<(), WriteError> {
        for table in RETAINED_TABLES {
            let delete = format!(
                "ALTER TABLE {table} DELETE WHERE project_id = {project_id} AND day < toDate({before_day})"
            );
            self.retry(Operation::DeleteProject, || {
                self.client.query_raw(&delete).execute()
            })
            .await?;
        }
        Ok(())
    }

    async fn retry<T, F, Fut>(
        &self,
        operation: Operation,
        attempt: F,
    ) -> Result<(T, u32), WriteError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, clickhouse::error::Error>>,
    {
        retry(
            self.config.retry,
            self.config.attempt_timeout,
            operation,
            attempt,
        )
        .await
    }
}

/// Run `attempt` until it succeeds, fails with a non-transient error, or `policy.max_attempts`
/// is spent; returns the value and the number of attempts.
async fn retry<T, F, Fut>(
    policy: RetryPolicy,
    timeout: Duration,
    operation: Operation,
    mut attempt: F,
) -> Result<(T, u32), WriteError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, clickhouse::error::Error>>,
{
    let mut attempts = 0;
    loop {
        attempts += 1;
        let error = match tokio::time::timeout(timeout, attempt()).await {
            Ok(Ok(value)) => return Ok((value, attempts)),
            Ok(Err(source)) => WriteError::ClickHouse {
                operation,
                class: classify(&source),
                attempts,
                source,
            },
            Err(_elapsed) => WriteError::TimedOut {
                operation,
                timeout,
                attempts,
            },
        };
        if error.class() != ErrorClass::Transient || attempts >= policy.max_attempts.get() {
            return Err(error);
        }
        let wait = policy.backoff(attempts);
        tracing::warn!(
            operation = operation.as_str(),
            attempt = attempts,
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            error = %error,
            "clickhouse call failed, retrying"
        );
        tokio::time::sleep(wait).await;
    }
}

/// Write `0..len` with `try_range`; on a permanent error split the range in halves until single
/// rejected rows are isolated. Other errors abort (rows already written stay written: the
/// caller retries the whole batch, which is idempotent).
async fn isolate_rejected<F, Fut>(len: usize, mut try_range: F) -> Result<Inserted, WriteError>
where
    F: FnMut(Range<usize>) -> Fut,
    Fut: Future<Output = Result<u32, WriteError>>,
{
    let mut inserted = Inserted::default();
    let mut pending: Vec<Range<usize>> = Vec::new();
    if len > 0 {
        pending.push(0..len);
    }
    while let Some(range) = pending.pop() {
        match try_range(range.clone()).await {
            Ok(requests) => {
                inserted.rows += range.len();
                inserted.requests += requests;
            }
            Err(error) if error.class() == ErrorClass::Permanent => {
                inserted.requests += 1;
                if range.len() == 1 {
                    inserted.rejected.push(Rejected {
                        index: range.start,
                        error,
                    });
                } else {
                    let middle = range.start + range.len() / 2;
                    // Pushed right first so the left half is tried first.
                    pending.push(middle..range.end);
                    pending.push(range.start..middle);
                }
            }
            Err(error) => return Err(error),
        }
    }
    inserted.rejected.sort_by_key(|rejected| rejected.index);
    Ok(inserted)
}

/// The rollup statements recomputing `touched`, `per_statement` groups at a time, for every
/// rollup table. Only numbers are spliced in.
///
/// The WHERE clauses use only `project_id` and `window_start`, which every version of a row
/// shares, so `FINAL` still sees the newest version of each row (filtering a ReplacingMergeTree
/// on a column that differs between versions could select an older one).
pub fn rollup_statements(touched: &Touched, per_statement: NonZeroUsize) -> Vec<String> {
    let groups: Vec<(u64, u32)> = touched.iter().collect();
    let mut statements = Vec::new();
    for chunk in groups.chunks(per_statement.get()) {
        let filter = group_filter(chunk);
        statements.push(format!(
            "INSERT INTO rollup_hourly (project_id, day, hour, kind, disposition, \
             directive_family, blocked_origin, noise, third_party, rows, occurrences, first_seen, \
             last_seen) \
             SELECT project_id, day, {HOUR} AS hour_start, kind, disposition, directive_family, \
             blocked_origin, noise, third_party, count(), sum(occurrences), min(first_seen), \
             max(last_seen) \
             FROM reports FINAL WHERE {filter} \
             GROUP BY project_id, day, hour_start, kind, disposition, directive_family, \
             blocked_origin, noise, third_party"
        ));
        statements.push(format!(
            "INSERT INTO rollup_nel_hourly (project_id, day, hour, document_host, nel_phase, \
             nel_type, rows, occurrences, first_seen, last_seen) \
             SELECT project_id, day, {HOUR} AS hour_start, document_host, nel_phase, nel_type, \
             count(), sum(occurrences), min(first_seen), max(last_seen) \
             FROM reports FINAL WHERE {filter} AND kind = 'network-error' \
             GROUP BY project_id, day, hour_start, document_host, nel_phase, nel_type"
        ));
        statements.push(format!(
            "INSERT INTO rollup_policy_hourly (project_id, day, hour, policy_hash, \
             original_policy, rows, occurrences, first_seen, last_seen) \
             SELECT project_id, day, {HOUR} AS hour_start, policy_hash, any(original_policy), \
             count(), sum(occurrences), min(first_seen), max(last_seen) \
             FROM reports FINAL WHERE {filter} AND original_policy != '' \
             GROUP BY project_id, day, hour_start, policy_hash"
        ));
    }
    statements
}

/// The hour of a row, as UTC-aligned unix seconds (independent of the server's time zone).
const HOUR: &str = "toDateTime(intDiv(toUInt32(window_start), 3600) * 3600)";

fn group_filter(groups: &[(u64, u32)]) -> String {
    let projects: BTreeSet<u64> = groups.iter().map(|(project, _)| *project).collect();
    let first = groups.iter().map(|(_, hour)| *hour).min().unwrap_or(0);
    let last = groups.iter().map(|(_, hour)| *hour).max().unwrap_or(0);
    let projects = projects
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let pairs = groups
        .iter()
        .map(|(project, hour)| format!("({project}, {hour})"))
        .collect::<Vec<_>>()
        .join(", ");
    // The coarse bounds let the primary key (project_id, window_start) skip granules; the tuple
    // IN is the exact set.
    format!(
        "project_id IN ({projects}) AND window_start >= toDateTime({first}) \
         AND window_start < toDateTime({end}) \
         AND (project_id, intDiv(toUInt32(window_start), 3600) * 3600) IN ({pairs})",
        end = u64::from(last) + u64::from(SECONDS_PER_HOUR),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn server_error(message: &str) -> clickhouse::error::Error {
        clickhouse::error::Error::BadResponse(message.to_owned())
    }

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts: NonZeroU32::new(max_attempts).expect("test value is non-zero"),
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: NonZeroU32::MIN,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        assert_eq!(policy.backoff(1), Duration::from_millis(100));
        assert_eq!(policy.backoff(2), Duration::from_millis(200));
        assert_eq!(policy.backoff(4), Duration::from_millis(800));
        assert_eq!(policy.backoff(5), Duration::from_secs(1));
        assert_eq!(policy.backoff(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn classifies_server_errors_by_code_and_status() {
        // 18.16's format, then today's.
        let too_many_parts = "Code: 252, e.displayText() = DB::Exception: Too many parts (300)";
        assert_eq!(
            classify_server_message(too_many_parts),
            ErrorClass::Transient
        );
        assert_eq!(
            classify_server_message("Code: 27. DB::Exception: Cannot parse input"),
            ErrorClass::Permanent
        );
        assert_eq!(
            classify_server_message(
                "Code: 60, e.displayText() = DB::Exception: Table x.reports doesn't exist."
            ),
            ErrorClass::Misconfigured
        );
        assert_eq!(
            classify_server_message("Code: 516"),
            ErrorClass::Misconfigured
        );
        assert_eq!(
            classify_server_message("503 Service Unavailable"),
            ErrorClass::Transient
        );
        assert_eq!(
            classify_server_message("404 Not Found"),
            ErrorClass::Misconfigured
        );
        assert_eq!(
            classify_server_message("429 Too Many Requests"),
            ErrorClass::Transient
        );
        assert_eq!(
            classify_server_message("something odd"),
            ErrorClass::Transient
        );
        assert_eq!(
            classify(&clickhouse::error::Error::TimedOut),
            ErrorClass::Transient
        );
        assert_eq!(
            classify(&clickhouse::error::Error::Custom("bad row".into())),
            ErrorClass::Permanent
        );
    }

    #[tokio::test]
    async fn retries_transient_errors_until_success() {
        let calls = AtomicU32::new(0);
        let result = retry(
            policy(5),
            Duration::from_secs(5),
            Operation::Insert,
            || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(server_error(
                        "Code: 252, e.displayText() = DB::Exception: Too many parts",
                    ))
                } else {
                    Ok("done")
                }
            },
        )
        .await;
        assert_eq!(result.expect("third attempt succeeds"), ("done", 3));
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_and_never_retries_permanent_errors() {
        let calls = AtomicU32::new(0);
        let result: Result<((), u32), _> = retry(
            policy(3),
            Duration::from_secs(5),
            Operation::Insert,
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(server_error("503 Service Unavailable"))
            },
        )
        .await;
        let error = result.expect_err("always fails");
        assert!(matches!(
            error,
            WriteError::ClickHouse {
                attempts: 3,
                class: ErrorClass::Transient,
                ..
            }
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        calls.store(0, Ordering::SeqCst);
        let result: Result<((), u32), _> = retry(
            policy(3),
            Duration::from_secs(5),
            Operation::Insert,
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(server_error("Code: 27. DB::Exception: Cannot parse input"))
            },
        )
        .await;
        assert_eq!(
            result.expect_err("permanent").class(),
            ErrorClass::Permanent
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_hung_attempt_times_out_as_transient() {
        let result: Result<((), u32), _> = retry(
            policy(2),
            Duration::from_millis(5),
            Operation::Insert,
            std::future::pending,
        )
        .await;
        assert!(matches!(
            result,
            Err(WriteError::TimedOut { attempts: 2, .. })
        ));
    }

    #[tokio::test]
    async fn isolates_rejected_rows_and_writes_the_rest() {
        let bad = [3usize, 4, 9];
        let written = std::sync::Mutex::new(Vec::new());
        let inserted = isolate_rejected(10, |range: Range<usize>| {
            let rejects = bad.iter().any(|index| range.contains(index));
            if !rejects {
                written.lock().expect("not poisoned").extend(range.clone());
            }
            async move {
                if rejects {
                    Err(WriteError::ClickHouse {
                        operation: Operation::Insert,
                        class: ErrorClass::Permanent,
                        attempts: 1,
                        source: server_error("Code: 27. DB::Exception: Cannot parse input"),
                    })
                } else {
                    Ok(1)
                }
            }
        })
        .await
        .expect("only permanent errors");
        let rejected: Vec<usize> = inserted.rejected.iter().map(|r| r.index).collect();
        assert_eq!(rejected, bad);
        assert_eq!(inserted.rows, 7);
        let mut written = written.into_inner().expect("not poisoned");
        written.sort_unstable();
        assert_eq!(written, vec![0, 1, 2, 5, 6, 7, 8]);
        assert!(inserted.requests < 2 * 10);
    }

    #[tokio::test]
    async fn a_transient_error_aborts_isolation() {
        let result = isolate_rejected(4, |_range| async {
            Err(WriteError::TimedOut {
                operation: Operation::Insert,
                timeout: Duration::from_secs(1),
                attempts: 3,
            })
        })
        .await;
        assert_eq!(
            result.expect_err("transient").class(),
            ErrorClass::Transient
        );
        let empty = isolate_rejected(0, |_range| async { Ok(1) }).await;
        assert_eq!(empty.expect("nothing to do").requests, 0);
    }

    #[test]
    fn touched_groups_by_project_and_utc_hour() {
        let mut touched = Touched::default();
        touched.add(7, 3600 * 5 + 59);
        touched.add(7, 3600 * 5 + 3599);
        touched.add(7, 3600 * 6);
        touched.add(2, 3600 * 5);
        assert_eq!(
            touched.iter().collect::<Vec<_>>(),
            vec![(2, 18_000), (7, 18_000), (7, 21_600)]
        );
    }

    #[test]
    fn rollup_statements_chunk_the_groups() {
        let mut touched = Touched::default();
        for hour in 0..5 {
            touched.add(1, hour * 3600);
        }
        let two = NonZeroUsize::new(2).expect("non-zero");
        let statements = rollup_statements(&touched, two);
        // 3 chunks of groups x 3 rollup tables.
        assert_eq!(statements.len(), 9);
        assert!(
            statements[0].contains("IN ((1, 0), (1, 3600))"),
            "{}",
            statements[0]
        );
        assert!(
            statements[0].contains("window_start < toDateTime(7200)"),
            "{}",
            statements[0]
        );
        assert!(rollup_statements(&Touched::default(), two).is_empty());
    }
}
