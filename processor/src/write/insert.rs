//! Inserting report rows: retries of transient errors, isolation of the rows the server rejects.
//!
//! # When a rejected insert is split (and when it is not)
//! A permanent error (the server refuses the data: parse or type errors, codes 6, 27, 33, ...)
//! can mean one bad row, or a table that no longer matches the rows (schema drift, a column
//! whose DEFAULT always fails): then every row is refused, and splitting 10,000 rows down to
//! single rows would send ~20,000 inserts and dead-letter all of them. So a refused chunk is
//! split into rows to dead-letter only once the server has shown it still accepts rows:
//! - probe: the last row this writer inserted successfully (after a restart: any one row of the
//!   table, `SELECT ... LIMIT 1`) is inserted again (idempotent: same `row_id`, same count;
//!   `ReplacingMergeTree` keeps one); if it is accepted, the chunk's own rows are at fault and
//!   are isolated by halving (at most `2 * len - 1` inserts);
//! - without a probe row (the table is empty, or cannot be read), the chunk is split blind,
//!   level by level, down to an eighth of it (at most 14 more inserts); at the first level where
//!   some row is written, isolation continues in the refused ranges;
//! - otherwise (the probe row is refused too, or no row of the blind splits is written, which
//!   includes a one-row chunk without a probe row) the chunk is [`WriteError::WhollyRejected`],
//!   classed [`ErrorClass::Misconfigured`]: nothing is dead-lettered, the offsets are kept, the
//!   batch is retried every `--misconfigured-retry-ms` and the processor pauses and alerts
//!   (`processor_write_blocked`, `/readyz` 503) until the table is fixed. At most 15 inserts are
//!   spent per try, whatever the chunk size.

use std::future::Future;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::sync::LazyLock;

use bytes::Bytes;

use super::{ErrorClass, Operation, WriteError, Writer, REPORTS_TABLE};
use crate::row::{ReportRow, Rows, COLUMNS};

/// `INSERT INTO reports(<every column>) FORMAT RowBinary`: the statement the `clickhouse`
/// crate's typed insert of [`ReportRow`] sends with validation off (ClickHouse 18.16), for rows
/// that are already RowBinary.
static INSERT_SQL: LazyLock<String> = LazyLock::new(|| {
    let columns: Vec<String> = COLUMNS.iter().map(|c| format!("`{c}`")).collect();
    format!(
        "INSERT INTO `{REPORTS_TABLE}`({}) FORMAT RowBinary",
        columns.join(",")
    )
});

/// Rows are sent in chunks of about this many bytes, each ending at a row boundary (as the
/// typed insert does: 256 KiB buffers flushed after a whole row).
const CHUNK_BYTES: usize = 256 * 1024 - 2048;

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

impl Writer {
    /// Insert `rows` into `reports`. Transient errors are retried per the [`RetryPolicy`] and
    /// then returned; on a permanent error the batch is split in halves until the rejected rows
    /// are isolated (at most `2 * rows.len() - 1` requests), the others are written, and the
    /// rejected ones are listed in [`Inserted::rejected`].
    ///
    /// In RowBinary a row layout that does not match the table also looks like bad data (every
    /// row rejected): `tests/clickhouse.rs` round-trips [`ReportRow`] through the real table so
    /// that cannot ship unnoticed; a caller seeing a whole batch rejected should alert.
    ///
    /// A chunk the server refuses as a whole is [`WriteError::WhollyRejected`] instead (see the
    /// module docs for the rule).
    pub async fn insert_encoded(&self, rows: &Rows) -> Result<Inserted, WriteError> {
        self.insert_range(rows, 0..rows.len()).await
    }

    /// [`Writer::insert_encoded`] of typed rows (tests, replays).
    pub async fn insert_rows(&self, rows: &[ReportRow]) -> Result<Inserted, WriteError> {
        self.insert_encoded(&Rows::from(rows)).await
    }

    /// [`Writer::insert_encoded`] of `rows[range]`; rejected indexes are into `rows`.
    async fn insert_range(&self, rows: &Rows, range: Range<usize>) -> Result<Inserted, WriteError> {
        // Lazy: only awaited when the whole chunk is refused.
        let probe = async {
            let row = match self.known_good() {
                Some(row) => row,
                None => Rows::from(std::slice::from_ref(&self.sample_row().await?)),
            };
            Some(self.insert_once(&row, 0..1).await)
        };
        let base = range.start;
        let mut inserted = isolate_rejected(
            range.len(),
            |part: Range<usize>| self.insert_once(rows, part.start + base..part.end + base),
            probe,
        )
        .await?;
        for rejected in &mut inserted.rejected {
            rejected.index += base;
        }
        Ok(inserted)
    }

    /// Any one row of the table (the probe after a restart), `None` when it is empty or
    /// cannot be read.
    async fn sample_row(&self) -> Option<ReportRow> {
        let query = self
            .client
            .query(&format!("SELECT ?fields FROM {REPORTS_TABLE} LIMIT 1"))
            .fetch_optional::<ReportRow>();
        match tokio::time::timeout(self.config.attempt_timeout, query).await {
            Ok(Ok(row)) => row,
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot read a probe row");
                None
            }
            Err(_elapsed) => None,
        }
    }

    /// The last row this writer inserted successfully (the probe of the splitting rule).
    fn known_good(&self) -> Option<Rows> {
        self.known_good
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// [`Writer::insert_encoded`] in inserts of at most `max_rows` rows each (a batch can hold
    /// more: every window that closes at once joins it). Rejected indexes are into `rows`.
    pub async fn insert_encoded_in_chunks(
        &self,
        rows: &Rows,
        max_rows: NonZeroUsize,
    ) -> Result<Inserted, WriteError> {
        let mut total = Inserted::default();
        let mut start = 0;
        while start < rows.len() {
            let end = rows.len().min(start + max_rows.get());
            let inserted = self.insert_range(rows, start..end).await?;
            total.rows += inserted.rows;
            total.requests += inserted.requests;
            total.rejected.extend(inserted.rejected);
            start = end;
        }
        Ok(total)
    }

    /// [`Writer::insert_encoded_in_chunks`] of typed rows.
    pub async fn insert_rows_in_chunks(
        &self,
        rows: &[ReportRow],
        max_rows: NonZeroUsize,
    ) -> Result<Inserted, WriteError> {
        self.insert_encoded_in_chunks(&Rows::from(rows), max_rows)
            .await
    }

    /// One INSERT of `rows[range]` (retried while transient), sent as it is in chunks that end
    /// at row boundaries.
    async fn insert_once(&self, rows: &Rows, range: Range<usize>) -> Result<u32, WriteError> {
        let bytes = rows.bytes_of(range.clone());
        let (_, attempts) = self
            .retry(Operation::Insert, || async {
                let mut insert = self.client.insert_formatted_with(INSERT_SQL.as_str());
                let mut start = 0;
                for end in rows.ends_of(range.clone()) {
                    if end - start >= CHUNK_BYTES {
                        insert
                            .send(Bytes::copy_from_slice(&bytes[start..end]))
                            .await?;
                        start = end;
                    }
                }
                if start < bytes.len() {
                    insert.send(Bytes::copy_from_slice(&bytes[start..])).await?;
                }
                insert.end().await
            })
            .await?;
        if !range.is_empty() {
            *self
                .known_good
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(rows.copy_of(range.end - 1..range.end));
        }
        Ok(attempts)
    }
}

/// Write `0..len` with `try_range`; on a permanent error split the range in halves until single
/// rejected rows are isolated, but only once the server has shown it accepts rows (`probe`, or
/// a written half; see the module docs). Other errors abort (rows already written stay
/// written: the caller retries the whole batch, which is idempotent).
async fn isolate_rejected<F, Fut, P>(
    len: usize,
    mut try_range: F,
    probe: P,
) -> Result<Inserted, WriteError>
where
    F: FnMut(Range<usize>) -> Fut,
    Fut: Future<Output = Result<u32, WriteError>>,
    P: Future<Output = Option<Result<u32, WriteError>>>,
{
    let mut inserted = Inserted::default();
    if len == 0 {
        return Ok(inserted);
    }
    let refused = match try_range(0..len).await {
        Ok(requests) => {
            inserted.rows = len;
            inserted.requests = requests;
            return Ok(inserted);
        }
        Err(error) if error.class() == ErrorClass::Permanent => error,
        Err(error) => return Err(error),
    };
    inserted.requests += 1;
    let wholly = |evidence, source| WriteError::WhollyRejected {
        rows: len,
        evidence,
        source: Box::new(source),
    };
    let mut pending: Vec<(Range<usize>, WriteError)> = Vec::new();
    match probe.await {
        Some(Ok(requests)) => {
            inserted.requests += requests;
            pending.push((0..len, refused));
        }
        Some(Err(error)) if error.class() == ErrorClass::Permanent => {
            return Err(wholly(Evidence::ProbeRefused, refused));
        }
        Some(Err(error)) => return Err(error),
        None => {
            // Blind splits, breadth first, down to an eighth of the chunk (at most 14 more
            // inserts): stop at the first level where a row was written.
            let mut level = vec![(0..len, refused)];
            for _ in 0..BLIND_SPLIT_LEVELS {
                if level.iter().all(|(range, _)| range.len() == 1) {
                    break;
                }
                let mut next = Vec::new();
                for (range, error) in level {
                    if range.len() == 1 {
                        next.push((range, error));
                        continue;
                    }
                    let middle = range.start + range.len() / 2;
                    for half in [range.start..middle, middle..range.end] {
                        match try_range(half.clone()).await {
                            Ok(requests) => {
                                inserted.rows += half.len();
                                inserted.requests += requests;
                            }
                            Err(error) if error.class() == ErrorClass::Permanent => {
                                inserted.requests += 1;
                                next.push((half, error));
                            }
                            Err(error) => return Err(error),
                        }
                    }
                }
                level = next;
                if inserted.rows > 0 {
                    break;
                }
            }
            if inserted.rows == 0 {
                let (_, first) = level.swap_remove(0);
                return Err(wholly(Evidence::SplitRefused, first));
            }
            // Leftmost range on top, so it is isolated first.
            pending.extend(level.into_iter().rev());
        }
    }
    // Every range in `pending` was refused: isolate its rows.
    while let Some((range, error)) = pending.pop() {
        if range.len() == 1 {
            inserted.rejected.push(Rejected {
                index: range.start,
                error,
            });
            continue;
        }
        let middle = range.start + range.len() / 2;
        let mut failed = Vec::new();
        for half in [range.start..middle, middle..range.end] {
            match try_range(half.clone()).await {
                Ok(requests) => {
                    inserted.rows += half.len();
                    inserted.requests += requests;
                }
                Err(error) if error.class() == ErrorClass::Permanent => {
                    inserted.requests += 1;
                    failed.push((half, error));
                }
                Err(error) => return Err(error),
            }
        }
        pending.extend(failed.into_iter().rev());
    }
    inserted.rejected.sort_by_key(|rejected| rejected.index);
    Ok(inserted)
}

/// Levels of blind splitting (no probe row) before a refused chunk is judged wholly rejected.
const BLIND_SPLIT_LEVELS: u32 = 3;

/// Why a refused chunk was judged wholly rejected (a bounded label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// The last row this writer wrote was refused too.
    ProbeRefused,
    /// No probe row, and no row of the chunk's blind splits (down to an eighth) was written.
    SplitRefused,
}

impl Evidence {
    /// Stable label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProbeRefused => "probe_refused",
            Self::SplitRefused => "split_refused",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn server_error(message: &str) -> clickhouse::error::Error {
        clickhouse::error::Error::BadResponse(message.to_owned())
    }

    #[tokio::test]
    async fn isolates_rejected_rows_and_writes_the_rest() {
        let bad = [3usize, 4, 9];
        let written = std::sync::Mutex::new(Vec::new());
        let inserted = isolate_rejected(
            10,
            |range: Range<usize>| {
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
            },
            no_probe(),
        )
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
        let result = isolate_rejected(
            4,
            |_range| async {
                Err(WriteError::TimedOut {
                    operation: Operation::Insert,
                    timeout: Duration::from_secs(1),
                    attempts: 3,
                })
            },
            no_probe(),
        )
        .await;
        assert_eq!(
            result.expect_err("transient").class(),
            ErrorClass::Transient
        );
        let empty = isolate_rejected(0, |_range| async { Ok(1) }, no_probe()).await;
        assert_eq!(empty.expect("nothing to do").requests, 0);
    }

    type Probe = std::future::Ready<Option<Result<u32, WriteError>>>;

    fn no_probe() -> Probe {
        std::future::ready(None)
    }

    fn refused() -> WriteError {
        WriteError::ClickHouse {
            operation: Operation::Insert,
            class: ErrorClass::Permanent,
            attempts: 1,
            source: server_error("Code: 6. DB::Exception: Cannot parse string 'x'"),
        }
    }

    fn probe(accepted: bool) -> Probe {
        std::future::ready(Some(if accepted { Ok(1) } else { Err(refused()) }))
    }

    /// Regression (issue 10, item 8): a table that refuses every row must not turn a chunk
    /// into 2n-1 inserts and n dead letters.
    #[tokio::test]
    async fn a_chunk_refused_as_a_whole_is_misconfigured_not_dead_lettered() {
        let tries = std::sync::atomic::AtomicU32::new(0);
        let refuse_all = |_range: Range<usize>| {
            tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Err::<u32, _>(refused()) }
        };
        // The last good row is refused too.
        let error = isolate_rejected(10_000, refuse_all, probe(false))
            .await
            .expect_err("wholly rejected");
        assert!(matches!(
            error,
            WriteError::WhollyRejected {
                rows: 10_000,
                evidence: Evidence::ProbeRefused,
                ..
            }
        ));
        assert_eq!(error.class(), ErrorClass::Misconfigured);
        assert_eq!(tries.swap(0, std::sync::atomic::Ordering::SeqCst), 1);
        // No probe row: three levels of blind splits (2 + 4 + 8 inserts), then it stops.
        let error = isolate_rejected(10_000, refuse_all, no_probe())
            .await
            .expect_err("wholly rejected");
        assert!(matches!(
            error,
            WriteError::WhollyRejected {
                evidence: Evidence::SplitRefused,
                ..
            }
        ));
        assert_eq!(tries.swap(0, std::sync::atomic::Ordering::SeqCst), 15);
        let error = isolate_rejected(1, refuse_all, no_probe())
            .await
            .expect_err("wholly rejected");
        assert!(matches!(
            error,
            WriteError::WhollyRejected {
                evidence: Evidence::SplitRefused,
                ..
            }
        ));
        assert_eq!(tries.swap(0, std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn rows_are_isolated_once_the_server_shows_it_accepts_rows() {
        // The probe row is accepted: every row of this chunk is bad data, dead-letter them.
        let inserted =
            isolate_rejected(4, |_range| async { Err::<u32, _>(refused()) }, probe(true))
                .await
                .expect("isolated");
        assert_eq!(inserted.rows, 0);
        assert_eq!(inserted.rejected.len(), 4);
        // No probe, but one half is written: the other half is isolated.
        let inserted = isolate_rejected(
            4,
            |range: Range<usize>| async move {
                if range.contains(&3) {
                    Err(refused())
                } else {
                    Ok(1)
                }
            },
            no_probe(),
        )
        .await
        .expect("isolated");
        assert_eq!(inserted.rows, 3);
        let rejected: Vec<usize> = inserted.rejected.iter().map(|r| r.index).collect();
        assert_eq!(rejected, [3]);
    }
}
