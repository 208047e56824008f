//! The consume loop: poll -> [`Pipeline`] -> write the batch -> rollups -> checkpoints -> Kafka
//! commit, with dead letters, back-pressure and graceful shutdown.
//!
//! The loop only sees three traits ([`ports`]): a [`RecordSource`] (Kafka), a [`RowSink`]
//! (ClickHouse) and a [`LetterSink`] (the dead-letter topic). The composition root
//! ([`crate::root`], called by `main.rs`) builds the real ones and passes them in [`Deps`] with
//! the [`LoopConfig`] it needs; the unit tests (`tests.rs`) pass in-memory fakes and drive the
//! clock with `tokio::time::pause()`. The loop reads the time only through tokio's clock.
//!
//! One batch is in flight at a time (`stages::Pending`), and the next one is not taken until the
//! previous one is committed: the dedup replay argument needs it (see [`crate::dedup`]). A batch
//! goes through four stages, each retried from where it failed:
//! insert rows -> refresh rollups -> write checkpoints -> commit offsets.
//!
//! Back-pressure: when a stage fails after the writer's own retries, the batch is parked, every
//! assigned partition is paused (`processor_paused` = 1), and the loop keeps calling `recv` so
//! the consumer stays in its group (heartbeats, rebalances). Records already prefetched still
//! arrive and are counted into the next batch, bounded by `--kafka-prefetch-kbytes` and the
//! dedup window bound; nothing new is fetched. The parked batch is retried every
//! `--clickhouse-max-backoff-ms` (`--misconfigured-retry-ms` for a misconfiguration), and the
//! partitions resume once it is committed.
//!
//! A resume never skips a record. librdkafka drops what it prefetched on a pause and fetches
//! again from the record after the last one it handed out, and tansu 0.6 answers a fetch that
//! starts inside a record batch from the NEXT batch: the rest of the batch was lost, and the
//! next commit passed it (RELIABILITY.md, the `clickhouse_down_under_load` finding). So, as on an
//! assignment, each partition is sought `--kafka-resume-rewind` records before the next offset
//! the loop expects before it is resumed, and records below that offset are dropped. A record
//! past it (offsets skipped, whatever the cause) is counted in
//! `processor_offsets_skipped_total` and logged.
//!
//! Dead letters: a record that cannot be decoded is committed past only after its dead letter
//! is acknowledged. When a delivery fails (the dead-letter topic is away), the letter is parked
//! in memory (bounded by what librdkafka prefetched), every partition is paused, no window is
//! closed (so no commit point can pass the record) and `/readyz` answers 503; the delivery is
//! retried after `--dead-letter-backoff-ms`, doubled per failure up to
//! `--dead-letter-max-backoff-ms` (`processor_dead_letter_failures_total`,
//! `processor_dead_letter_backoff_seconds`). The loop keeps polling meanwhile, so the consumer
//! stays in its group. Letters of a revoked partition are dropped: its next owner re-reads them.
//!
//! Kafka calls made on a rebalance (committed offsets, seek, pause/resume) are retried with
//! `--kafka-retry-backoff-ms` backoff up to `--kafka-retry-attempts` times
//! (`processor_kafka_retries_total`): a transient broker error is not a process exit; a lasting
//! one still is, so the orchestrator restarts the processor.
//!
//! Shutdown (the token is cancelled): stop polling -> finish the parked batch and write what
//! the windows closed so far -> commit -> leave the group, all within `--shutdown-timeout-ms`.
//! Open windows are not flushed: their offsets are not committed, so the next owner rebuilds them.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::{Config, ConfigError};
use crate::consume::{ConsumeError, Event, Record, LAG_INTERVAL};
use crate::deadletter::{DeadLetter, DeadLetterError};
use crate::dedup::CommitPoint;
use crate::enrich::GeoError;
use crate::group::GroupCheck;
use crate::metrics;
use crate::migrate::MigrateError;
use crate::pipeline::{Handled, Pipeline};
use crate::write::WriteError;

pub mod ports;
mod stages;
#[cfg(test)]
mod tests;

pub use ports::{LetterSink, RecordSource, RowSink};
use stages::Pending;

/// How often windows are closed, rows emitted and commit points recorded without a record.
pub const TICK: Duration = Duration::from_millis(100);
/// Wait between two tries of a checkpoint lookup; least time between two consumer error logs.
const KAFKA_RETRY: Duration = Duration::from_secs(1);

/// Now, on tokio's clock (which `tokio::time::pause()` controls in tests), as a std `Instant`
/// for the [`Pipeline`].
fn time_now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// What the admin endpoints read: updated by the loop.
#[derive(Debug, Default)]
pub struct Status {
    assigned: AtomicUsize,
    paused: AtomicBool,
    write_blocked: AtomicBool,
    dead_letters_failing: AtomicBool,
}

impl Status {
    /// Partitions currently assigned.
    pub fn assigned(&self) -> usize {
        self.assigned.load(Ordering::Relaxed)
    }

    /// Whether consumption is paused because ClickHouse refuses the batch.
    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// Whether the pending batch is parked as misconfigured (e.g. a table that refuses every
    /// row): it will not be written until someone fixes the deployment.
    pub fn write_blocked(&self) -> bool {
        self.write_blocked.load(Ordering::Relaxed)
    }

    /// Whether dead-letter deliveries are failing (letters parked, consumption paused).
    pub fn dead_letters_failing(&self) -> bool {
        self.dead_letters_failing.load(Ordering::Relaxed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Consume(#[from] ConsumeError),
    #[error(transparent)]
    DeadLetter(#[from] DeadLetterError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("migrations failed")]
    Migrate(#[from] MigrateError),
    #[error("cannot open the GeoIP database")]
    Geo(#[from] GeoError),
    #[error("shutdown did not finish within {0:?}; the last batch is written again on restart")]
    ShutdownTimedOut(Duration),
    #[error("shutdown while {0}")]
    Interrupted(&'static str),
    #[error("cannot start the processor thread or runtime")]
    Runtime(#[source] std::io::Error),
    #[error("the processor thread panicked")]
    Panicked,
}

/// What the loop is given: the outside world behind its traits, the synchronous pipeline and
/// the status it reports to the admin endpoints.
#[derive(Debug)]
pub struct Deps<S, W, L> {
    pub source: S,
    pub sink: W,
    pub letters: L,
    pub pipeline: Pipeline,
    pub status: Arc<Status>,
}

/// The settings the loop uses (`Config::loop_config` builds them; units and defaults are
/// documented on `Config`).
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// The consumer group (checkpoint rows and group checks).
    pub group: String,
    /// Messages re-read before a committed offset on assignment (`--kafka-resume-rewind`).
    pub resume_rewind: i64,
    /// Most rows per insert (`--batch-rows`).
    pub max_rows: NonZeroUsize,
    /// Retry delay of a parked batch (`--clickhouse-max-backoff-ms`).
    pub max_backoff: Duration,
    /// Retry delay of a misconfigured batch (`--misconfigured-retry-ms`).
    pub misconfigured_retry: Duration,
    /// Backoff of dead-letter deliveries.
    pub dead_letter_backoff: Backoff,
    /// Dead-letter value cap (`--dead-letter-max-bytes`), for the truncation metric.
    pub dead_letter_max_bytes: NonZeroUsize,
    /// Backoff of Kafka rebalance calls, and the most attempts per call.
    pub kafka_retry_backoff: Backoff,
    pub kafka_retry_attempts: u32,
    /// Interval of the group check (`--kafka-group-check-ms`; zero disables it).
    pub group_check: Duration,
    /// Bound of the shutdown drain (`--shutdown-timeout-ms`).
    pub shutdown_timeout: Duration,
}

impl Config {
    /// The settings of the consume loop.
    pub fn loop_config(&self) -> LoopConfig {
        LoopConfig {
            group: self.kafka_group.clone(),
            resume_rewind: i64::try_from(self.kafka_resume_rewind).unwrap_or(i64::MAX),
            max_rows: self.batch_rows,
            max_backoff: self.clickhouse_max_backoff,
            misconfigured_retry: self.misconfigured_retry,
            dead_letter_backoff: self.dead_letter_backoff(),
            dead_letter_max_bytes: self.dead_letter_max_bytes,
            kafka_retry_backoff: self.kafka_retry_backoff(),
            kafka_retry_attempts: self.kafka_retry_attempts.get(),
            group_check: self.kafka_group_check,
            shutdown_timeout: self.shutdown_timeout,
        }
    }
}

/// Consume until `shutdown` is cancelled, then write and commit the last batch (within
/// `config.shutdown_timeout`) and leave the group.
pub async fn run<S: RecordSource, W: RowSink, L: LetterSink>(
    deps: Deps<S, W, L>,
    config: LoopConfig,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    metrics::paused(false);
    let Deps {
        source,
        sink,
        letters,
        pipeline,
        status,
    } = deps;
    let start = time_now();
    let shutdown_timeout = config.shutdown_timeout;
    let mut worker = Worker {
        consumer: source,
        writer: sink,
        dead_letters: letters,
        pipeline,
        pending: None,
        batch_blocked: false,
        parked_letters: VecDeque::new(),
        letter_backoff: config.dead_letter_backoff,
        letter_retry_at: start,
        paused_since: None,
        next_tick: start,
        next_lag_report: start,
        committed: BTreeMap::new(),
        next_offsets: BTreeMap::new(),
        next_error_log: start,
        group_check: GroupCheck::new(config.group_check, start),
        config,
        status,
        shutdown: shutdown.clone(),
    };
    let consumed = worker.consume().await;
    tracing::info!("processor stopping: writing the last batch");
    let drained = match tokio::time::timeout(shutdown_timeout, worker.drain()).await {
        Ok(result) => result,
        Err(_) => {
            tracing::error!(
                timeout_ms = shutdown_timeout.as_millis() as u64,
                "shutdown timed out before the last batch was committed"
            );
            Err(RunError::ShutdownTimedOut(shutdown_timeout))
        }
    };
    worker.consumer.close();
    consumed.and(drained)
}

enum Wake {
    Shutdown,
    Record(Result<Record, KafkaError>),
    Timer,
}

struct Worker<S, W, L> {
    consumer: S,
    writer: W,
    dead_letters: L,
    pipeline: Pipeline,
    pending: Option<Pending>,
    /// The pending batch failed its last attempt (one of the two reasons to pause).
    batch_blocked: bool,
    /// Dead letters of undecodable records whose delivery failed, in arrival order; their
    /// records are not skipped yet (the other reason to pause).
    parked_letters: VecDeque<DeadLetter>,
    /// Backoff of dead-letter deliveries (parked letters and a batch's rejected rows).
    letter_backoff: Backoff,
    letter_retry_at: Instant,
    /// When consumption was paused (back-pressure); `None` while consuming.
    paused_since: Option<Instant>,
    next_tick: Instant,
    next_lag_report: Instant,
    /// The last offset committed (or found committed on assignment) of each assigned
    /// partition: what consumer lag is measured from.
    committed: BTreeMap<i32, i64>,
    /// The offset after the last record of each assigned partition handed to the pipeline
    /// since the assignment: a resume fetches again from before it (see the module docs), and
    /// a record below it was handed over already.
    next_offsets: BTreeMap<i32, i64>,
    next_error_log: Instant,
    group_check: GroupCheck,
    config: LoopConfig,
    status: Arc<Status>,
    shutdown: CancellationToken,
}

impl<S: RecordSource, W: RowSink, L: LetterSink> Worker<S, W, L> {
    async fn consume(&mut self) -> Result<(), RunError> {
        loop {
            self.handle_events().await?;
            let now = time_now();
            // While paused nothing is emitted (no batch can be taken before the parked one is
            // committed), and idle windows must not close: their messages wait in Kafka.
            if now >= self.next_tick && self.paused_since.is_none() {
                self.pipeline.tick(now);
                self.next_tick = now + TICK;
            }
            if self.pending.is_none() && self.pipeline.should_flush(now) {
                self.pending = Some(Pending::new(self.pipeline.take(), now));
            }
            if !self.parked_letters.is_empty() && self.letter_retry_at <= now {
                self.deliver_parked().await?;
            }
            if self.pending.as_ref().is_some_and(|p| p.retry_at <= now) {
                // The attempt blocked the loop; a pause is discounted as a whole on resume.
                let was_paused = self.paused_since.is_some();
                self.advance_pending().await?;
                if !was_paused {
                    self.pipeline
                        .discount_idle(time_now().saturating_duration_since(now));
                }
            }
            // A rejoin drops the partitions' windows: only between batches, and not while
            // paused (the parked batch's commits need the partitions).
            if self.pending.is_none()
                && self.paused_since.is_none()
                && self
                    .group_check
                    .due(self.pipeline.assigned().count(), time_now())
            {
                // Its describe calls block the loop (up to seconds on a busy broker): not
                // idleness, or every partition but the next one read would idle-close its
                // windows mid-stream and split them (RELIABILITY.md, the rebalance finding).
                let started = time_now();
                self.check_group().await?;
                self.pipeline
                    .discount_idle(time_now().saturating_duration_since(started));
            }
            // Also while paused: that is when lag grows.
            if self.next_lag_report <= time_now() {
                self.next_lag_report = time_now() + LAG_INTERVAL;
                let committed = self.committed.iter().map(|(p, o)| (*p, *o)).collect();
                self.consumer.report_lag(committed);
            }
            if self.paused_since.is_some() {
                self.next_tick = time_now() + TICK;
            }
            let mut wake = self.next_tick;
            if let Some(pending) = &self.pending {
                wake = wake.min(pending.retry_at);
            }
            if !self.parked_letters.is_empty() {
                wake = wake.min(self.letter_retry_at);
            }
            let woke = tokio::select! {
                biased;
                () = self.shutdown.clone().cancelled_owned() => Wake::Shutdown,
                record = self.consumer.recv() => Wake::Record(record),
                () = tokio::time::sleep_until(wake.into()) => Wake::Timer,
            };
            match woke {
                Wake::Shutdown => return Ok(()),
                Wake::Timer => {}
                Wake::Record(Ok(record)) => {
                    self.handle_events().await?;
                    self.handle_record(record).await?;
                }
                Wake::Record(Err(error)) => {
                    // librdkafka reconnects on its own; log at most once per KAFKA_RETRY.
                    let now = time_now();
                    if self.next_error_log <= now {
                        self.next_error_log = now + KAFKA_RETRY;
                        tracing::warn!(%error, "kafka consumer error");
                    }
                }
            }
        }
    }

    /// Write everything closed so far and commit, without polling any more.
    ///
    /// Windows are closed as they were when consumption stopped (the shutdown, or the start of
    /// a pause): the drain does not poll, so the time it takes is not idleness. Otherwise a
    /// drain slower than `--idle-close-secs` would close the open windows, commit past them,
    /// and their next owner would count their later messages as late, in other windows.
    async fn drain(&mut self) -> Result<(), RunError> {
        let stopped = self.paused_since.unwrap_or_else(time_now);
        self.deliver_parked().await?;
        // A parked letter's record must not be committed past: write only the pending batch
        // (its commit points predate the record); the record is read again on restart.
        let closing = self.parked_letters.is_empty();
        if !closing {
            tracing::warn!(
                letters = self.parked_letters.len(),
                "dead letters not delivered at shutdown; their records are read again on restart"
            );
        }
        loop {
            let now = time_now();
            if self.pending.is_none() {
                if !closing {
                    return Ok(());
                }
                self.pipeline.tick(stopped);
                let batch = self.pipeline.take();
                if batch.is_empty() {
                    return Ok(());
                }
                self.pending = Some(Pending::new(batch, now));
            }
            if let Some(retry_at) = self.pending.as_ref().map(|p| p.retry_at) {
                tokio::time::sleep_until(retry_at.into()).await;
            }
            self.advance_pending().await?;
        }
    }

    /// Apply the queued rebalance events. The lookups of an assignment (committed offsets,
    /// checkpoints, seeks) block the loop: that time is not idleness of the other partitions
    /// (a pause is discounted as a whole on resume).
    async fn handle_events(&mut self) -> Result<(), RunError> {
        let started = time_now();
        let result = self.apply_events().await;
        if self.paused_since.is_none() {
            self.pipeline
                .discount_idle(time_now().saturating_duration_since(started));
        }
        result
    }

    async fn apply_events(&mut self) -> Result<(), RunError> {
        while let Some(event) = self.consumer.next_event() {
            match event {
                Event::Revoked(partitions) => {
                    tracing::info!(?partitions, "partitions revoked");
                    for partition in partitions {
                        self.pipeline.revoke(partition);
                        self.committed.remove(&partition);
                        self.next_offsets.remove(&partition);
                        self.parked_letters
                            .retain(|letter| letter.partition != partition);
                        if let Some(pending) = &mut self.pending {
                            pending.batch.commits.remove(&partition);
                        }
                    }
                }
                Event::Assigned(partitions) => {
                    let committed = self
                        .retry_kafka("committed_offsets", || self.consumer.committed(&partitions))
                        .await?;
                    for partition in partitions.iter().copied() {
                        // The assignment's own seek (or committed offset) says where it starts.
                        self.next_offsets.remove(&partition);
                        let (offset, metadata) = match committed.get(&partition) {
                            Some((Some(offset), metadata)) => (Some(*offset), metadata.clone()),
                            _ => (None, String::new()),
                        };
                        let point = match offset {
                            Some(offset) => {
                                self.committed.insert(partition, offset);
                                self.commit_point(partition, offset, &metadata).await?
                            }
                            None => None,
                        };
                        if let (Some(offset), true) = (offset, self.config.resume_rewind > 0) {
                            // Offsets before the committed one are ignored by dedup as
                            // redeliveries; see `Config::kafka_resume_rewind`.
                            let from = offset.saturating_sub(self.config.resume_rewind).max(0);
                            self.retry_kafka("seek", || self.consumer.seek(partition, from))
                                .await?;
                        }
                        tracing::info!(
                            partition,
                            offset = point.map(|p| p.offset),
                            restored = point.is_some(),
                            "partition assigned"
                        );
                        self.pipeline.assign(partition, point);
                    }
                    // Always say which: librdkafka keeps a partition's pause flag across a
                    // revoke and a new assignment, so a partition revoked while paused (a
                    // Kafka outage that timed the session out) would otherwise come back
                    // paused after the parked batch was written, and never be fetched again.
                    let pause = self.paused_since.is_some();
                    self.retry_kafka("set_paused", || async {
                        self.consumer.set_paused(&partitions, pause)
                    })
                    .await?;
                }
            }
            self.status
                .assigned
                .store(self.pipeline.assigned().count(), Ordering::Relaxed);
        }
        Ok(())
    }

    /// Look at the group (see [`crate::group`]); leave it and join again when partitions are
    /// left to nobody.
    async fn check_group(&mut self) -> Result<(), RunError> {
        let owned = self.pipeline.assigned().count();
        let view = match self.consumer.describe_group(&self.config.group).await {
            Ok(view) => Some(view),
            Err(error) => {
                tracing::debug!(%error, "cannot describe the consumer group");
                None
            }
        };
        if !self.group_check.observe(view.as_ref(), owned, time_now()) {
            return Ok(());
        }
        tracing::warn!(
            ?view,
            owned,
            "the only member of the group owns too few partitions: leaving and joining again"
        );
        metrics::group_rejoin();
        let partitions: Vec<i32> = self.pipeline.assigned().collect();
        for partition in partitions {
            self.pipeline.revoke(partition);
        }
        self.committed.clear();
        self.next_offsets.clear();
        self.status.assigned.store(0, Ordering::Relaxed);
        self.consumer.rejoin().await?;
        Ok(())
    }

    /// The commit point of a committed offset: the checkpoint row stored with exactly that
    /// offset, else Kafka's own metadata, else none (replay from a blank horizon).
    async fn commit_point(
        &self,
        partition: i32,
        offset: i64,
        kafka_metadata: &str,
    ) -> Result<Option<CommitPoint>, RunError> {
        loop {
            match self
                .writer
                .read_checkpoint(&self.config.group, self.consumer.topic(), partition, offset)
                .await
            {
                Ok(Some(metadata)) => return Ok(CommitPoint::from_committed(offset, &metadata)),
                Ok(None) => return Ok(CommitPoint::from_committed(offset, kafka_metadata)),
                Err(error) => {
                    tracing::error!(%error, partition, "cannot read the checkpoint, retrying");
                    self.wait(KAFKA_RETRY, "reading a checkpoint").await?;
                }
            }
        }
    }

    async fn handle_record(&mut self, record: Record) -> Result<(), RunError> {
        if !self.in_order(&record) {
            return Ok(());
        }
        let now = time_now();
        let failure = match self.pipeline.record(&record, now) {
            Handled::Observed | Handled::NotAssigned => return Ok(()),
            Handled::Undecodable(failure) => failure,
        };
        tracing::debug!(
            reason = failure.reason,
            partition = record.partition,
            offset = record.offset,
            "undecodable record dead-lettered"
        );
        let letter = DeadLetter {
            reason: failure.reason,
            detail: failure.detail,
            partition: record.partition,
            offset: record.offset,
            last_offset: None,
            key: record.key,
            payload: record.payload.unwrap_or_default(),
        };
        // Letters go out in order: behind a parked one, park.
        self.parked_letters.push_back(letter);
        if self.parked_letters.len() == 1 {
            self.deliver_parked().await?;
        }
        Ok(())
    }

    /// Whether `record` goes to the pipeline: not when it lies below its partition's next
    /// offset (read again after a resume's rewind). A record beyond it means offsets were
    /// skipped: counted and logged (a topic written without transactions or compaction, as
    /// ingest writes it, has none).
    fn in_order(&mut self, record: &Record) -> bool {
        if !self.pipeline.is_assigned(record.partition) {
            return true;
        }
        let next = self
            .next_offsets
            .entry(record.partition)
            .or_insert(record.offset);
        if record.offset < *next {
            return false;
        }
        if record.offset > *next {
            metrics::offsets_skipped(record.offset - *next);
            tracing::error!(
                partition = record.partition,
                expected = *next,
                offset = record.offset,
                "kafka offsets skipped: records between these offsets were never received"
            );
        }
        *next = record.offset + 1;
        true
    }

    /// Deliver the parked letters in order; on the first failure back off, pause and report.
    async fn deliver_parked(&mut self) -> Result<(), RunError> {
        while let Some(letter) = self.parked_letters.pop_front() {
            match self.send_dead_letter(&letter).await {
                Ok(()) => {
                    metrics::dead_lettered(letter.reason, 1);
                    self.pipeline
                        .skip(letter.partition, letter.offset, time_now());
                }
                Err(_) => {
                    self.parked_letters.push_front(letter);
                    self.letter_retry_at = time_now() + self.letter_backoff.current();
                    break;
                }
            }
        }
        metrics::dead_letters_parked(self.parked_letters.len());
        self.update_paused().await
    }

    /// Produce one dead letter (one try, bounded by `--dead-letter-timeout-ms`); a failure
    /// is counted, logged and earns the next backoff step.
    async fn send_dead_letter(&mut self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        if crate::deadletter::cap_payload(&letter.payload, self.config.dead_letter_max_bytes.get())
            .1
        {
            metrics::dead_letter_truncated();
        }
        match self.dead_letters.send(letter).await {
            Ok(()) => {
                if self.letter_backoff.failures() > 0 {
                    tracing::info!("dead-letter deliveries recovered");
                }
                self.letter_backoff.reset();
                metrics::dead_letter_backoff(Duration::ZERO);
                self.status
                    .dead_letters_failing
                    .store(false, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                let wait = self.letter_backoff.fail();
                metrics::dead_letter_failed(wait);
                self.status
                    .dead_letters_failing
                    .store(true, Ordering::Relaxed);
                tracing::error!(
                    %error,
                    failures = self.letter_backoff.failures(),
                    retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "dead-letter delivery failed, consumption paused"
                );
                Err(error)
            }
        }
    }

    /// [`retry_kafka`] with this worker's backoff, attempts and shutdown token.
    async fn retry_kafka<T, F, Fut>(&self, operation: &'static str, call: F) -> Result<T, RunError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ConsumeError>>,
    {
        retry_kafka(
            self.config.kafka_retry_backoff,
            self.config.kafka_retry_attempts,
            &self.shutdown,
            operation,
            call,
        )
        .await
    }

    async fn wait(&self, delay: Duration, what: &'static str) -> Result<(), RunError> {
        tokio::select! {
            () = self.shutdown.clone().cancelled_owned() => Err(RunError::Interrupted(what)),
            () = tokio::time::sleep(delay) => Ok(()),
        }
    }
}

/// Run a Kafka call until it succeeds, waiting `backoff` (doubling) between tries, at most
/// `attempts` tries (then its error is returned, and ends the run) or until `shutdown`.
async fn retry_kafka<T, F, Fut>(
    mut backoff: Backoff,
    attempts: u32,
    shutdown: &CancellationToken,
    operation: &'static str,
    mut call: F,
) -> Result<T, RunError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ConsumeError>>,
{
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if backoff.failures() + 1 >= attempts => return Err(error.into()),
            Err(error) => {
                let wait = backoff.fail();
                metrics::kafka_retry(operation);
                tracing::warn!(
                    %error,
                    operation,
                    attempt = backoff.failures(),
                    retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "kafka call failed, retrying"
                );
                tokio::select! {
                    () = shutdown.cancelled() => return Err(RunError::Interrupted(operation)),
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}
