//! The stages of writing one batch (insert rows -> refresh rollups -> write checkpoints ->
//! commit offsets), retried from where they failed, and the back-pressure they drive.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::ports::{LetterSink, RecordSource, RowSink};
use super::{time_now, RunError, Worker};
use crate::batch::{Batch, RowSource};
use crate::deadletter::{DeadLetter, REJECTED_BY_CLICKHOUSE};
use crate::metrics;
use crate::row::{ReportRow, RowBinaryError, RowKey};
use crate::write::{Checkpoint, ErrorClass, Touched, WriteError};

/// A batch being written: which stage comes next and when to try again.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) batch: Batch,
    stage: Stage,
    touched: Touched,
    pub(super) retry_at: Instant,
    started: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Insert,
    Rollups,
    Checkpoints,
    Commit,
}

impl<S: RecordSource, W: RowSink, L: LetterSink> Worker<S, W, L> {
    /// Run the pending batch's stages from where it stopped; on failure park it and pause.
    /// An error is a Kafka call on the resume that failed for good.
    pub(super) async fn advance_pending(&mut self) -> Result<(), RunError> {
        let Some(mut pending) = self.pending.take() else {
            return Ok(());
        };
        match self.run_stages(&mut pending).await {
            Ok(()) => {
                self.batch_blocked = false;
                self.set_write_blocked(false);
                self.update_paused().await
            }
            Err(error) => {
                let class = error.class();
                metrics::write_error(class.as_str());
                if let StageError::Write(WriteError::WhollyRejected { evidence, .. }) = &error {
                    metrics::insert_wholly_rejected(evidence.as_str());
                }
                self.set_write_blocked(class == ErrorClass::Misconfigured);
                let delay = match (&error, class) {
                    (StageError::DeadLetter(_), _) => self.letter_backoff.current(),
                    (_, ErrorClass::Misconfigured) => self.config.misconfigured_retry,
                    _ => self.config.max_backoff,
                };
                tracing::error!(
                    %error,
                    class = class.as_str(),
                    rows = pending.batch.rows.len(),
                    retry_in_ms = delay.as_millis() as u64,
                    "batch not written, consumption paused"
                );
                pending.retry_at = time_now() + delay;
                self.pending = Some(pending);
                self.batch_blocked = true;
                self.update_paused().await
            }
        }
    }

    fn set_write_blocked(&self, blocked: bool) {
        self.status.write_blocked.store(blocked, Ordering::Relaxed);
        metrics::write_blocked(blocked);
    }

    /// Pause while the pending batch fails or dead letters are parked; resume otherwise.
    pub(super) async fn update_paused(&mut self) -> Result<(), RunError> {
        let pause = self.batch_blocked || !self.parked_letters.is_empty();
        if pause != self.paused_since.is_some() {
            self.set_paused(pause).await?;
        }
        Ok(())
    }

    /// Pause or resume every assigned partition. A resume first rewinds each partition (see
    /// the module docs of `run`); a seek that keeps failing is an error, since resuming without
    /// it could skip records.
    async fn set_paused(&mut self, pause: bool) -> Result<(), RunError> {
        let partitions: Vec<i32> = self.pipeline.assigned().collect();
        if !pause {
            self.rewind_before_resume(&partitions).await?;
        }
        let operation = if pause { "pause" } else { "resume" };
        let result = self
            .retry_kafka(operation, || async {
                self.consumer.set_paused(&partitions, pause)
            })
            .await;
        if let Err(error) = result {
            // Rebalances re-apply the flag on every assignment (see `handle_events`).
            tracing::error!(%error, pause, "cannot pause or resume partitions");
        }
        match (pause, self.paused_since) {
            (true, None) => self.paused_since = Some(time_now()),
            (false, Some(since)) => {
                self.pipeline
                    .discount_idle(time_now().saturating_duration_since(since));
                self.paused_since = None;
            }
            _ => {}
        }
        self.status.paused.store(pause, Ordering::Relaxed);
        metrics::paused(pause);
        Ok(())
    }

    /// Seek each partition `resume_rewind` records before the next offset the loop expects
    /// (nothing to do with no rewind: Kafka answers a fetch inside a batch with the whole batch).
    /// A partition that handed out nothing since its assignment keeps the assignment's position.
    async fn rewind_before_resume(&self, partitions: &[i32]) -> Result<(), RunError> {
        if self.config.resume_rewind == 0 {
            return Ok(());
        }
        for partition in partitions.iter().copied() {
            let Some(next) = self.next_offsets.get(&partition) else {
                continue;
            };
            let from = next.saturating_sub(self.config.resume_rewind).max(0);
            self.retry_kafka("seek", || self.consumer.seek(partition, from))
                .await?;
        }
        Ok(())
    }

    async fn run_stages(&mut self, pending: &mut Pending) -> Result<(), StageError> {
        if pending.stage == Stage::Insert {
            let inserted = self
                .writer
                .insert_rows(&pending.batch.rows, self.config.max_rows)
                .await?;
            let mut rejected = inserted.rejected.iter().map(|r| r.index).peekable();
            let mut touched = Touched::default();
            for (index, key) in pending.batch.rows.keys().iter().enumerate() {
                if rejected.peek() == Some(&index) {
                    rejected.next();
                } else {
                    touched.add(key.project_id, key.window_start);
                }
            }
            for rejected in &inserted.rejected {
                let letter = rejected_row_letter(
                    &pending.batch.rows.row(rejected.index),
                    pending.batch.rows.keys()[rejected.index],
                    pending.batch.sources[rejected.index],
                    &rejected.error,
                );
                self.send_dead_letter(&letter)
                    .await
                    .map_err(StageError::DeadLetter)?;
            }
            if !inserted.rejected.is_empty() {
                let rejected = inserted.rejected.len() as u64;
                metrics::dead_lettered(REJECTED_BY_CLICKHOUSE, rejected);
                metrics::write_errors(ErrorClass::Permanent.as_str(), rejected);
                tracing::error!(rows = rejected, "clickhouse rejected rows, dead-lettered");
            }
            metrics::batch_written(
                inserted.rows,
                pending.batch.bytes(),
                time_now().saturating_duration_since(pending.started),
            );
            pending.touched = touched;
            pending.stage = Stage::Rollups;
        }
        if pending.stage == Stage::Rollups {
            self.writer.refresh_rollups(&pending.touched).await?;
            pending.stage = Stage::Checkpoints;
        }
        let assigned: Vec<i32> = self.pipeline.assigned().collect();
        pending.batch.commits.retain(|p, _| assigned.contains(p));
        if pending.stage == Stage::Checkpoints {
            let (written_at, version) = unix_time();
            let checkpoints: Vec<Checkpoint> = pending
                .batch
                .commits
                .iter()
                .map(|(partition, point)| Checkpoint {
                    consumer_group: self.config.group.clone(),
                    topic: self.consumer.topic().to_owned(),
                    kafka_partition: *partition,
                    kafka_offset: point.offset,
                    metadata: point.metadata(),
                    written_at,
                    version,
                })
                .collect();
            self.writer.write_checkpoints(&checkpoints).await?;
            pending.stage = Stage::Commit;
        }
        let committed = self.consumer.commit(&pending.batch.commits).await;
        metrics::commit(committed.is_ok());
        committed.map_err(|error| StageError::Run(error.into()))?;
        self.committed.extend(
            pending
                .batch
                .commits
                .iter()
                .map(|(partition, point)| (*partition, point.offset)),
        );
        Ok(())
    }
}

/// The dead letter of a row ClickHouse rejected: the row as JSON (`row`, read back from the
/// batch's RowBinary), keyed by its dedup key, with the partition and offsets of the messages it
/// counts. A row that cannot be read back (a bug) is still dead-lettered, the reading error as
/// its payload.
fn rejected_row_letter(
    row: &Result<ReportRow, RowBinaryError>,
    key: RowKey,
    source: RowSource,
    error: &dyn std::error::Error,
) -> DeadLetter {
    // The server's own message is in the sources (`Code: 6. DB::Exception: ...`).
    let detail = schemas::error_chain(error);
    DeadLetter {
        reason: REJECTED_BY_CLICKHOUSE,
        detail,
        partition: source.partition,
        offset: source.first_offset,
        last_offset: Some(source.last_offset),
        key: Some(format!("{:016x}", key.dedup_key).into_bytes()),
        payload: match row {
            Ok(row) => serde_json::to_vec(row).unwrap_or_default(),
            Err(unreadable) => unreadable.to_string().into_bytes(),
        },
    }
}

impl Pending {
    pub(super) fn new(batch: Batch, now: Instant) -> Self {
        Self {
            batch,
            stage: Stage::Insert,
            touched: Touched::default(),
            retry_at: now,
            started: now,
        }
    }
}

/// A failed stage: a ClickHouse error (classified) or a Kafka/shutdown error.
#[derive(Debug, thiserror::Error)]
enum StageError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Run(RunError),
    /// A rejected row's dead letter was not delivered: retried after the dead-letter backoff.
    #[error(transparent)]
    DeadLetter(crate::deadletter::DeadLetterError),
}

impl StageError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Write(error) => error.class(),
            // A failed commit (rebalance in progress, broker away) is retried like an outage.
            Self::Run(_) | Self::DeadLetter(_) => ErrorClass::Transient,
        }
    }
}

/// Now as (Unix seconds, Unix milliseconds).
fn unix_time() -> (u32, u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (
        u32::try_from(now.as_secs()).unwrap_or(u32::MAX),
        u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_rejected_row_names_the_partition_and_offsets_of_its_messages() {
        let row = ReportRow {
            dedup_key: 0xabc,
            occurrences: 3,
            ..ReportRow::default()
        };
        let source = RowSource {
            partition: 2,
            first_offset: 40,
            last_offset: 97,
        };
        let error = WriteError::ClickHouse {
            operation: crate::write::Operation::Insert,
            class: ErrorClass::Permanent,
            attempts: 1,
            source: clickhouse::error::Error::BadResponse(
                "Code: 6. DB::Exception: Cannot parse string 'x'".into(),
            ),
        };
        let letter = rejected_row_letter(&Ok(row.clone()), RowKey::from(&row), source, &error);
        assert_eq!(letter.reason, REJECTED_BY_CLICKHOUSE);
        assert!(
            letter
                .detail
                .starts_with("clickhouse insert failed (permanent) after 1 attempt(s): "),
            "{}",
            letter.detail
        );
        assert!(
            letter
                .detail
                .ends_with("Code: 6. DB::Exception: Cannot parse string 'x'"),
            "the server's message: {}",
            letter.detail
        );
        assert_eq!(
            (letter.partition, letter.offset, letter.last_offset),
            (2, 40, Some(97))
        );
        assert_eq!(letter.key.as_deref(), Some(&b"0000000000000abc"[..]));
        let payload: serde_json::Value = serde_json::from_slice(&letter.payload).unwrap();
        assert_eq!(payload["occurrences"], 3);
    }
}
