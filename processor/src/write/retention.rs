//! Retention without TTL (ClickHouse 18.16): drop expired day partitions, delete a project's
//! older rows with mutations.

use std::num::NonZeroU32;

use serde::Deserialize;

use super::{Operation, WriteError, Writer, RETAINED_TABLES};
use crate::migrate::is_identifier;

/// A partition dropped by [`Writer::drop_expired_partitions`].
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct DroppedPartition {
    pub table: String,
    /// ClickHouse partition id (`YYYYMMDD` for a `Date` key).
    pub partition_id: String,
    /// The partition's newest day, in days since the Unix epoch.
    pub max_day: u16,
}

impl Writer {
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
}
