//! Retention without TTL (ClickHouse 18.16): the job that runs it, and the statements.
//!
//! The job ([`run`]): at start-up and then every `--retention-interval-secs`, drop the day
//! partitions older than `--retention-days` and delete older rows of projects with a shorter
//! `--project-retention`. Failures are logged and counted; the next run tries again. It runs
//! beside the consume loop (the composition root, [`crate::root`], starts and stops it), never
//! inside it.
//!
//! Each run also reads every project's storage bound (`project_storage`, set through
//! `palisade-api`: retention days and a row cap, see [`storage`]) and enforces it: the shorter
//! of a project's stored and `--project-retention` days wins, and a project over its row cap
//! (`max_rows`, else `--project-max-rows`) loses its oldest rows.
//!
//! The statements ([`Writer::drop_expired_partitions`], [`Writer::delete_project_before`]):
//! drop expired day partitions, delete a project's older rows with mutations. On a cluster
//! ([`Topology::Cluster`]) both act on the replicated `*_local` tables of every shard
//! (`ON CLUSTER`), never on the Distributed tables, and the partitions are listed from every
//! shard (`cluster(name, system, parts)`). On a single node the statements are unchanged.

pub mod storage;

use std::collections::BTreeMap;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::ProjectRetention;
use crate::metrics;
use crate::migrate::{is_identifier, Topology};
use crate::write::{Operation, WriteError, Writer, RETAINED_TABLES};

/// What the retention job needs of the configuration (`Config::retention` builds it).
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Between two runs (first run at start-up); zero disables the job.
    pub interval: Duration,
    /// Days every row is kept; 0 keeps rows for ever.
    pub days: u32,
    /// Projects kept for fewer days (`--project-retention`; `project_storage` adds more).
    pub projects: Vec<ProjectRetention>,
    /// Row cap of a project without its own `max_rows` (`--project-max-rows`); 0 = no cap.
    pub default_max_rows: u64,
    /// Most projects read per run from `project_storage` and from the row counts.
    pub max_projects: NonZeroUsize,
    /// Single node or cluster.
    pub topology: Topology,
}

/// Days since the Unix epoch (UTC) today.
pub fn today() -> u16 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u16::try_from(secs / 86_400).unwrap_or(u16::MAX)
}

/// Run the job until `stop` is cancelled. Does nothing when the interval is 0.
pub async fn run(writer: Writer, config: RetentionConfig, stop: CancellationToken) {
    if config.interval.is_zero() {
        return;
    }
    loop {
        run_once(&writer, &config, today()).await;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(config.interval) => {}
        }
    }
}

/// One pass for `today` (days since the epoch).
pub async fn run_once(writer: &Writer, config: &RetentionConfig, today: u16) {
    // On a cluster the partitions of every shard's local tables (see the module docs).
    let topology = &config.topology;
    if let Some(days) = NonZeroU32::new(config.days) {
        match writer
            .drop_expired_partitions_on(topology, days, today)
            .await
        {
            Ok(dropped) => metrics::retention_run("drop_partitions", true, dropped.len()),
            Err(error) => {
                metrics::retention_run("drop_partitions", false, 0);
                tracing::error!(%error, "retention: dropping expired partitions failed");
            }
        }
    }
    // The bounds set through the API; without them (table missing, ClickHouse down) the
    // configured ones still apply.
    let stored = match writer.project_storage(config.max_projects.get()).await {
        Ok(stored) => {
            metrics::retention_run("read_project_storage", true, stored.len());
            stored
        }
        Err(error) => {
            metrics::retention_run("read_project_storage", false, 0);
            tracing::error!(%error, "retention: reading the projects' storage bounds failed");
            Vec::new()
        }
    };
    for (project, days) in storage::project_days(&config.projects, &stored, config.days) {
        let before = u32::from(today).saturating_sub(days.get());
        let before = u16::try_from(before).unwrap_or(0);
        match writer
            .delete_project_before_on(topology, project, before)
            .await
        {
            Ok(()) => metrics::retention_run("delete_project", true, 1),
            Err(error) => {
                metrics::retention_run("delete_project", false, 0);
                tracing::error!(%error, project, "retention: deleting a project's old rows failed");
            }
        }
    }
    trim_over_cap(writer, config, &stored).await;
}

/// Trims every project over its row cap (see [`storage`]), biggest first.
async fn trim_over_cap(
    writer: &Writer,
    config: &RetentionConfig,
    stored: &[storage::ProjectStorage],
) {
    let stored: BTreeMap<u64, storage::ProjectStorage> =
        stored.iter().map(|s| (s.project_id, *s)).collect();
    if config.default_max_rows == 0 && stored.values().all(|s| s.max_rows == 0) {
        return; // no cap anywhere
    }
    let counts = match writer.project_row_counts(config.max_projects.get()).await {
        Ok(counts) => counts,
        Err(error) => {
            metrics::retention_run("trim_project", false, 0);
            tracing::error!(%error, "retention: counting the projects' rows failed");
            return;
        }
    };
    for count in counts {
        let project = count.project_id;
        let Some(cap) = storage::cap_of(&stored, project, config.default_max_rows) else {
            continue;
        };
        // The count is an upper bound: at or under the cap, the project surely is.
        if count.rows <= cap.get() {
            continue;
        }
        match writer.trim_project_on(&config.topology, project, cap).await {
            Ok(None) => {}
            Ok(Some(trimmed)) => {
                metrics::retention_run("trim_project", true, 1);
                metrics::retention_rows_trimmed(trimmed.deleted);
                tracing::info!(
                    project,
                    cap = cap.get(),
                    rows = trimmed.rows,
                    deleted = trimmed.deleted,
                    "retention: project over its row cap trimmed"
                );
            }
            Err(error) => {
                metrics::retention_run("trim_project", false, 0);
                tracing::error!(%error, project, "retention: trimming a project to its row cap failed");
            }
        }
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

impl Writer {
    /// Drop every partition, of every [`RETAINED_TABLES`] table, whose newest day is more than
    /// `retention_days` before `today` (days since the Unix epoch, UTC: passed in so tests and
    /// replays are deterministic). The global retention: partitions hold every project's rows.
    pub async fn drop_expired_partitions(
        &self,
        retention_days: NonZeroU32,
        today: u16,
    ) -> Result<Vec<DroppedPartition>, WriteError> {
        self.drop_expired_partitions_on(&Topology::SingleNode, retention_days, today)
            .await
    }

    /// [`Writer::drop_expired_partitions`] on `topology` (on a cluster: the `*_local` tables of
    /// every shard; the returned `table`s are those).
    pub async fn drop_expired_partitions_on(
        &self,
        topology: &Topology,
        retention_days: NonZeroU32,
        today: u16,
    ) -> Result<Vec<DroppedPartition>, WriteError> {
        let cutoff = u32::from(today).saturating_sub(retention_days.get());
        let list = list_expired_sql(&self.config.database, topology, cutoff);
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
            let drop = drop_partition_sql(
                &self.config.database,
                topology,
                &partition.table,
                &partition.partition_id,
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
        self.delete_project_before_on(&Topology::SingleNode, project_id, before_day)
            .await
    }

    /// [`Writer::delete_project_before`] on `topology` (on a cluster: mutations of the
    /// `*_local` tables of every shard).
    pub async fn delete_project_before_on(
        &self,
        topology: &Topology,
        project_id: u64,
        before_day: u16,
    ) -> Result<(), WriteError> {
        for table in RETAINED_TABLES {
            let delete = delete_project_sql(
                &self.config.database,
                topology,
                table,
                project_id,
                before_day,
            );
            self.retry(Operation::DeleteProject, || {
                self.client.query_raw(&delete).execute()
            })
            .await?;
        }
        Ok(())
    }
}

/// The active partitions of the retained tables whose newest day is before `cutoff`.
fn list_expired_sql(database: &str, topology: &Topology, cutoff: u32) -> String {
    let tables = RETAINED_TABLES
        .iter()
        .map(|table| format!("'{}'", topology.local_table(table)))
        .collect::<Vec<_>>()
        .join(", ");
    let parts = match topology.cluster() {
        None => "system.parts".to_owned(),
        Some(cluster) => format!("cluster('{cluster}', system, parts)"),
    };
    format!(
        "SELECT table, partition_id, toUInt16(max(max_date)) AS max_day \
         FROM {parts} \
         WHERE database = '{database}' AND active AND table IN ({tables}) \
         GROUP BY table, partition_id HAVING max_day < {cutoff} \
         ORDER BY table, partition_id"
    )
}

/// Drop one partition of `table` (as listed: already the local table on a cluster).
fn drop_partition_sql(
    database: &str,
    topology: &Topology,
    table: &str,
    partition_id: &str,
) -> String {
    match topology.cluster() {
        None => format!("ALTER TABLE {table} DROP PARTITION ID '{partition_id}'"),
        Some(cluster) => format!(
            "ALTER TABLE {database}.{table} ON CLUSTER {cluster} DROP PARTITION ID '{partition_id}'"
        ),
    }
}

/// Delete a project's rows before `before_day` from `table` (a retained table's usual name).
fn delete_project_sql(
    database: &str,
    topology: &Topology,
    table: &str,
    project_id: u64,
    before_day: u16,
) -> String {
    let target = match topology.cluster() {
        None => table.to_owned(),
        Some(cluster) => format!(
            "{database}.{local} ON CLUSTER {cluster}",
            local = topology.local_table(table)
        ),
    };
    format!(
        "ALTER TABLE {target} DELETE WHERE project_id = {project_id} AND day < toDate({before_day})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Topology {
        Topology::Cluster("c1".parse().expect("valid name"))
    }

    #[test]
    fn single_node_statements_are_unchanged() {
        assert_eq!(
            list_expired_sql("palisade", &Topology::SingleNode, 19_000),
            "SELECT table, partition_id, toUInt16(max(max_date)) AS max_day \
             FROM system.parts \
             WHERE database = 'palisade' AND active AND table IN ('reports', 'rollup_hourly', \
             'rollup_nel_hourly', 'rollup_policy_hourly') \
             GROUP BY table, partition_id HAVING max_day < 19000 \
             ORDER BY table, partition_id"
        );
        assert_eq!(
            drop_partition_sql("palisade", &Topology::SingleNode, "reports", "20231115"),
            "ALTER TABLE reports DROP PARTITION ID '20231115'"
        );
        assert_eq!(
            delete_project_sql("palisade", &Topology::SingleNode, "reports", 7, 19_000),
            "ALTER TABLE reports DELETE WHERE project_id = 7 AND day < toDate(19000)"
        );
    }

    #[test]
    fn cluster_statements_target_the_local_tables_of_every_shard() {
        let list = list_expired_sql("palisade", &cluster(), 19_000);
        assert!(list.contains("FROM cluster('c1', system, parts)"), "{list}");
        assert!(
            list.contains("table IN ('reports_local', 'rollup_hourly_local', "),
            "{list}"
        );
        assert_eq!(
            drop_partition_sql("palisade", &cluster(), "reports_local", "20231115"),
            "ALTER TABLE palisade.reports_local ON CLUSTER c1 DROP PARTITION ID '20231115'"
        );
        assert_eq!(
            delete_project_sql("palisade", &cluster(), "rollup_hourly", 7, 19_000),
            "ALTER TABLE palisade.rollup_hourly_local ON CLUSTER c1 DELETE WHERE project_id = 7 \
             AND day < toDate(19000)"
        );
    }
}
