//! Inserting report rows: retries of transient errors, isolation of the rows the server rejects.

use std::future::Future;
use std::num::NonZeroUsize;
use std::ops::Range;

use super::{ErrorClass, Operation, WriteError, Writer, REPORTS_TABLE};
use crate::row::ReportRow;

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
    /// In RowBinary a row type that does not match the table also looks like bad data (every
    /// row rejected): `tests/clickhouse.rs` round-trips [`ReportRow`] through the real table so
    /// that cannot ship unnoticed; a caller seeing a whole batch rejected should alert.
    pub async fn insert_rows(&self, rows: &[ReportRow]) -> Result<Inserted, WriteError> {
        isolate_rejected(rows.len(), |range| self.insert_once(&rows[range])).await
    }

    /// [`Writer::insert_rows`] in inserts of at most `max_rows` rows each (a batch can hold
    /// more: every window that closes at once joins it). Rejected indexes are into `rows`.
    pub async fn insert_rows_in_chunks(
        &self,
        rows: &[ReportRow],
        max_rows: NonZeroUsize,
    ) -> Result<Inserted, WriteError> {
        let mut total = Inserted::default();
        for (chunk_index, chunk) in rows.chunks(max_rows.get()).enumerate() {
            let inserted = self.insert_rows(chunk).await?;
            let offset = chunk_index * max_rows.get();
            total.rows += inserted.rows;
            total.requests += inserted.requests;
            total
                .rejected
                .extend(inserted.rejected.into_iter().map(|rejected| Rejected {
                    index: rejected.index + offset,
                    error: rejected.error,
                }));
        }
        Ok(total)
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
}
