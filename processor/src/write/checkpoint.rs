//! Commit points in ClickHouse (`processor_checkpoints`, `schemas/sql/004_checkpoints.sql`):
//! tansu 0.6 drops Kafka commit metadata, so the dedup state that goes with a committed offset
//! is written here before the Kafka commit and looked up by that exact offset on assignment.
//! On a cluster the table is Distributed, sharded by (group, topic, partition): all points of a
//! partition on one shard, so `ORDER BY version DESC LIMIT 1` still finds the latest.

use serde::{Deserialize, Serialize};

use super::{Operation, WriteError, Writer};

/// The table of commit points.
pub const CHECKPOINTS_TABLE: &str = "processor_checkpoints";

/// One commit point of one partition, as stored.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct Checkpoint {
    pub consumer_group: String,
    pub topic: String,
    pub kafka_partition: i32,
    /// The committed offset (next offset to consume).
    pub kafka_offset: i64,
    /// `CommitPoint::metadata()`.
    pub metadata: String,
    /// Unix seconds, for people reading the table.
    pub written_at: u32,
    /// Unix milliseconds of the write: the latest point of an offset wins.
    pub version: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct MetadataRow {
    metadata: String,
}

impl Writer {
    /// Store commit points; idempotent (same key: the highest `version` wins).
    pub async fn write_checkpoints(&self, checkpoints: &[Checkpoint]) -> Result<(), WriteError> {
        if checkpoints.is_empty() {
            return Ok(());
        }
        self.retry(Operation::Checkpoint, || async {
            let mut insert = self.client.insert::<Checkpoint>(CHECKPOINTS_TABLE).await?;
            for checkpoint in checkpoints {
                insert.write(checkpoint).await?;
            }
            insert.end().await
        })
        .await?;
        Ok(())
    }

    /// The metadata last stored with exactly `offset` of a partition, if any.
    pub async fn read_checkpoint(
        &self,
        consumer_group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<Option<String>, WriteError> {
        let (rows, _) = self
            .retry(Operation::Checkpoint, || {
                self.client
                    .query(
                        "SELECT metadata FROM processor_checkpoints \
                         WHERE consumer_group = ? AND topic = ? AND kafka_partition = ? \
                         AND kafka_offset = ? ORDER BY version DESC LIMIT 1",
                    )
                    .bind(consumer_group)
                    .bind(topic)
                    .bind(partition)
                    .bind(offset)
                    .fetch_all::<MetadataRow>()
            })
            .await?;
        Ok(rows.into_iter().next().map(|row| row.metadata))
    }

    /// `SELECT 1`, once, within the attempt timeout: readiness.
    pub async fn ping(&self) -> bool {
        let query = self.client.query("SELECT 1").execute();
        matches!(
            tokio::time::timeout(self.config.attempt_timeout, query).await,
            Ok(Ok(()))
        )
    }
}
