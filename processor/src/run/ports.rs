//! What the consume loop needs of the outside world, as three traits, and their real
//! implementations: [`RecordSource`] (the Kafka group consumer, [`Consumer`]), [`RowSink`]
//! (ClickHouse, [`Writer`]) and [`LetterSink`] (the dead-letter producer, [`DeadLetters`]).
//! The unit tests of `crate::run` implement them in memory.
//!
//! Dead letters are a third trait rather than part of the source: they go through a different
//! client (a producer, not the group consumer), fail on their own (the dead-letter topic can be
//! away while the reports topic is not) and have their own backoff; the loop treats a failed
//! delivery like a failed batch (park, pause), not like a failed rebalance call.
//!
//! The traits use `async fn`: the loop runs on one thread (see `crate::root`), so their
//! futures need not be `Send`.
#![allow(async_fn_in_trait)]

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use rdkafka::error::KafkaError;

use crate::consume::{ConsumeError, Consumer, Event, Record};
use crate::deadletter::{DeadLetter, DeadLetterError, DeadLetters};
use crate::dedup::CommitPoint;
use crate::group::GroupView;
use crate::row::Rows;
use crate::write::{Checkpoint, Inserted, Touched, WriteError, Writer};

/// Kafka's committed offset (`None`: nothing committed) and metadata, by partition.
pub type Committed = BTreeMap<i32, (Option<i64>, String)>;

/// The records of the reports topic and the group's bookkeeping (a Kafka group consumer).
pub trait RecordSource {
    /// The reports topic.
    fn topic(&self) -> &str;
    /// The next record (must be cancellation safe). Rebalances happen in here: their events
    /// are queued before the first record of a newly assigned partition is returned.
    async fn recv(&mut self) -> Result<Record, KafkaError>;
    /// The next queued rebalance event, if any.
    fn next_event(&mut self) -> Option<Event>;
    /// Committed offsets and metadata of `partitions`.
    async fn committed(&self, partitions: &[i32]) -> Result<Committed, ConsumeError>;
    /// Move a partition's fetch position (after its assignment, before its first record).
    async fn seek(&self, partition: i32, offset: i64) -> Result<(), ConsumeError>;
    /// Stop (`pause = true`) or restart fetching `partitions`.
    fn set_paused(&self, partitions: &[i32], pause: bool) -> Result<(), ConsumeError>;
    /// Commit `points` (offset and dedup metadata) synchronously.
    async fn commit(&self, points: &BTreeMap<i32, CommitPoint>) -> Result<(), ConsumeError>;
    /// Measure consumer lag from these committed offsets (in the background, best effort).
    fn report_lag(&self, committed: Vec<(i32, i64)>);
    /// The group as the coordinator describes it.
    async fn describe_group(&self, group: &str) -> Result<GroupView, ConsumeError>;
    /// Leave the group and join it again as a new member (see [`crate::group`]).
    async fn rejoin(&mut self) -> Result<(), ConsumeError>;
    /// Leave the group cleanly (no commit).
    fn close(&self);
}

/// Where rows, rollups and commit points are written (ClickHouse). Every write is idempotent.
pub trait RowSink {
    /// Insert `rows`, at most `max_rows` per request; rows the server rejects permanently are
    /// returned in [`Inserted::rejected`].
    async fn insert_rows(
        &self,
        rows: &Rows,
        max_rows: NonZeroUsize,
    ) -> Result<Inserted, WriteError>;
    /// Recompute the rollups of the touched (project, hour) groups.
    async fn refresh_rollups(&self, touched: &Touched) -> Result<(), WriteError>;
    /// Store commit points.
    async fn write_checkpoints(&self, checkpoints: &[Checkpoint]) -> Result<(), WriteError>;
    /// The metadata last stored with exactly `offset` of a partition, if any.
    async fn read_checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<Option<String>, WriteError>;
}

/// The dead-letter topic.
pub trait LetterSink {
    /// Produce one letter and wait for its acknowledgement (one try, bounded).
    async fn send(&self, letter: &DeadLetter) -> Result<(), DeadLetterError>;
}

impl RecordSource for Consumer {
    fn topic(&self) -> &str {
        Consumer::topic(self)
    }

    async fn recv(&mut self) -> Result<Record, KafkaError> {
        Consumer::recv(self).await
    }

    fn next_event(&mut self) -> Option<Event> {
        Consumer::next_event(self)
    }

    async fn committed(&self, partitions: &[i32]) -> Result<Committed, ConsumeError> {
        Consumer::committed(self, partitions).await
    }

    async fn seek(&self, partition: i32, offset: i64) -> Result<(), ConsumeError> {
        Consumer::seek(self, partition, offset).await
    }

    fn set_paused(&self, partitions: &[i32], pause: bool) -> Result<(), ConsumeError> {
        Consumer::set_paused(self, partitions, pause)
    }

    async fn commit(&self, points: &BTreeMap<i32, CommitPoint>) -> Result<(), ConsumeError> {
        Consumer::commit(self, points).await
    }

    fn report_lag(&self, committed: Vec<(i32, i64)>) {
        Consumer::report_lag(self, committed);
    }

    async fn describe_group(&self, group: &str) -> Result<GroupView, ConsumeError> {
        Consumer::describe_group(self, group).await
    }

    async fn rejoin(&mut self) -> Result<(), ConsumeError> {
        Consumer::rejoin(self).await
    }

    fn close(&self) {
        Consumer::close(self);
    }
}

impl RowSink for Writer {
    async fn insert_rows(
        &self,
        rows: &Rows,
        max_rows: NonZeroUsize,
    ) -> Result<Inserted, WriteError> {
        self.insert_encoded_in_chunks(rows, max_rows).await
    }

    async fn refresh_rollups(&self, touched: &Touched) -> Result<(), WriteError> {
        Writer::refresh_rollups(self, touched).await.map(|_| ())
    }

    async fn write_checkpoints(&self, checkpoints: &[Checkpoint]) -> Result<(), WriteError> {
        Writer::write_checkpoints(self, checkpoints).await
    }

    async fn read_checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<Option<String>, WriteError> {
        Writer::read_checkpoint(self, group, topic, partition, offset).await
    }
}

impl LetterSink for DeadLetters {
    async fn send(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        DeadLetters::send(self, letter).await
    }
}
