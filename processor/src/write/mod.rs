//! Writes to ClickHouse: report rows ([`insert`]: bounded retries with backoff, isolation of rows
//! the server rejects), exact rollup refresh ([`rollup`]) and the commit points of the consume loop ([`checkpoint`]).
//!
//! Delivery: every write here is idempotent (rows carry a deterministic `row_id` into a
//! ReplacingMergeTree; rollups are recomputed, not incremented), so the caller may retry a batch,
//! or replay it after a restart, without changing any count. The caller commits Kafka offsets only
//! after [`Writer::insert_rows`], [`Writer::refresh_rollups`] and [`Writer::write_checkpoints`]
//! all returned `Ok` (see `crate::run`).
//!
//! Errors are classified before acting ([`ErrorClass`]): transient ones are retried here up to
//! [`RetryPolicy::max_attempts`] and then returned, so the caller can stop polling Kafka
//! (back-pressure) and try again later; permanent ones (the server rejects the data) are isolated
//! to the offending rows, which the caller dead-letters; misconfiguration (unknown table, bad
//! credentials) is returned at once, never dead-lettered.

pub mod checkpoint;
pub mod insert;
pub mod rollup;

use std::future::Future;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use crate::migrate::is_identifier;

pub use crate::retention::DroppedPartition;
pub use checkpoint::{Checkpoint, CHECKPOINTS_TABLE};
pub use insert::{Evidence, Inserted, Rejected};
pub use rollup::{rollup_statements, Touched};

/// The table of deduplicated report rows (`schemas/sql/001_reports.sql`).
pub const REPORTS_TABLE: &str = "reports";

/// Every table partitioned by `day` and keyed by `project_id`: what retention applies to.
pub const RETAINED_TABLES: [&str; 4] = [
    REPORTS_TABLE,
    "rollup_hourly",
    "rollup_nel_hourly",
    "rollup_policy_hourly",
];

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
    ReadProjectStorage,
    CountProjectRows,
    TrimProject,
    Checkpoint,
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
            Self::ReadProjectStorage => "read_project_storage",
            Self::CountProjectRows => "count_project_rows",
            Self::TrimProject => "trim_project",
            Self::Checkpoint => "checkpoint",
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
    /// The server refused every row of an insert and showed no sign of accepting any (see
    /// [`insert`]): the table does not match the rows. Never dead-lettered.
    #[error("clickhouse refused all {rows} rows of an insert ({}): the table does not match the rows, fix it; nothing is dead-lettered", evidence.as_str())]
    WhollyRejected {
        rows: usize,
        evidence: Evidence,
        #[source]
        source: Box<WriteError>,
    },
}

impl WriteError {
    /// How the caller should react.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::ClickHouse { class, .. } => *class,
            Self::TimedOut { .. } => ErrorClass::Transient,
            Self::InvalidDatabaseName(_)
            | Self::UnexpectedPartitionId(_)
            | Self::WhollyRejected { .. } => ErrorClass::Misconfigured,
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

/// Writes report rows, rollups and retention to one ClickHouse database.
#[derive(Clone)]
pub struct Writer {
    pub(crate) client: clickhouse::Client,
    pub(crate) config: WriterConfig,
    /// The last row inserted successfully: the probe that tells a bad row from a table that
    /// refuses every row (see [`insert`]). Shared by clones; one row.
    known_good: std::sync::Arc<std::sync::Mutex<Option<crate::row::Rows>>>,
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
        Ok(Self {
            client,
            config,
            known_good: std::sync::Arc::default(),
        })
    }

    pub(crate) async fn retry<T, F, Fut>(
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
}
