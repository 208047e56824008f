//! The storage bound of each project (issue 12), read by the retention job on every run from
//! `project_storage` (migration 008, written by `palisade-api`), so a change needs no restart.
//!
//! - **Retention days**: a project's `retention_days` (0 = the global `--retention-days`) and its
//!   `--project-retention` entry, the shorter wins ([`project_days`]); enforced by the existing
//!   per-project delete ([`Writer::delete_project_before_on`]).
//! - **Row cap**: a project's `max_rows` (0 = `--project-max-rows`; both 0 = no cap). The cap
//!   counts `reports` rows (deduplicated windows, exact with `FINAL`). A project over its cap
//!   loses its oldest rows so that exactly `cap` newest remain (newest by the sorting key's
//!   `(window_start, row_id)`, shared by every version of a row), and the rollup rows of the
//!   hours wholly before the cut-off (so the rollups cannot grow without the rows). See
//!   [`Writer::trim_project_on`].
//!
//! Deletes are ClickHouse mutations: asynchronous on 18.16 (they rewrite parts in the
//! background; progress in `system.mutations`), so a project may exceed its cap for one
//! retention interval plus the mutation's time. On a cluster they go `ON CLUSTER` to the
//! `*_local` tables, like every retention statement ([`crate::retention`]).

use std::collections::BTreeMap;
use std::num::{NonZeroU32, NonZeroU64};

use serde::Deserialize;

use crate::config::ProjectRetention;
use crate::migrate::Topology;
use crate::write::{Operation, WriteError, Writer, REPORTS_TABLE, RETAINED_TABLES};

/// The table of per-project storage bounds (`schemas/sql/008_project_storage.sql`).
pub const PROJECT_STORAGE_TABLE: &str = "project_storage";

/// One project's stored bound (latest version); 0 means "the processor's default".
#[derive(Debug, Clone, Copy, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct ProjectStorage {
    pub project_id: u64,
    pub retention_days: u32,
    pub max_rows: u64,
}

/// A project's row count in `reports` before deduplication by `FINAL` (an upper bound of its
/// rows: versions not merged yet count once each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct ProjectRows {
    pub project_id: u64,
    pub rows: u64,
}

/// What one trim did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trimmed {
    /// The project's rows (exact, `FINAL`) before the trim.
    pub rows: u64,
    /// Rows the delete mutation removes (`rows - cap`).
    pub deleted: u64,
}

/// The retention of each project kept for fewer days than `global_days` (0 = for ever): the
/// shorter of its `--project-retention` and its stored `retention_days`, by project id.
/// Longer than the global retention is dropped: partition drops remove those rows anyway.
pub fn project_days(
    configured: &[ProjectRetention],
    stored: &[ProjectStorage],
    global_days: u32,
) -> Vec<(u64, NonZeroU32)> {
    let mut days: BTreeMap<u64, NonZeroU32> = BTreeMap::new();
    let stored = stored
        .iter()
        .filter_map(|s| NonZeroU32::new(s.retention_days).map(|d| (s.project_id, d)));
    let configured = configured.iter().map(|p| (p.project_id, p.days));
    for (project, d) in configured.chain(stored) {
        days.entry(project)
            .and_modify(|current| *current = (*current).min(d))
            .or_insert(d);
    }
    days.into_iter()
        .filter(|(_, d)| global_days == 0 || d.get() < global_days)
        .collect()
}

/// The row cap of `project`: its stored `max_rows`, else `default` (`--project-max-rows`);
/// `None` when both are 0.
pub fn cap_of(
    stored: &BTreeMap<u64, ProjectStorage>,
    project: u64,
    default: u64,
) -> Option<NonZeroU64> {
    let own = stored.get(&project).map_or(0, |s| s.max_rows);
    NonZeroU64::new(own).or_else(|| NonZeroU64::new(default))
}

impl Writer {
    /// Every project's stored bound, by project id (at most `limit`).
    pub async fn project_storage(&self, limit: usize) -> Result<Vec<ProjectStorage>, WriteError> {
        let sql = format!(
            "SELECT project_id, argMax(retention_days, version), argMax(max_rows, version) \
             FROM {PROJECT_STORAGE_TABLE} GROUP BY project_id ORDER BY project_id LIMIT ?"
        );
        let (rows, _) = self
            .retry(Operation::ReadProjectStorage, || {
                self.client.query(&sql).bind(limit as u64).fetch_all()
            })
            .await?;
        Ok(rows)
    }

    /// The biggest projects of `reports` by row count (without `FINAL`: an upper bound, cheap),
    /// at most `limit`.
    pub async fn project_row_counts(&self, limit: usize) -> Result<Vec<ProjectRows>, WriteError> {
        let sql = format!(
            "SELECT project_id, count() AS n FROM {REPORTS_TABLE} \
             GROUP BY project_id ORDER BY n DESC, project_id LIMIT ?"
        );
        let (rows, _) = self
            .retry(Operation::CountProjectRows, || {
                self.client.query(&sql).bind(limit as u64).fetch_all()
            })
            .await?;
        Ok(rows)
    }

    /// Keep only the `cap` newest `reports` rows of `project` (single node).
    pub async fn trim_project(
        &self,
        project: u64,
        cap: NonZeroU64,
    ) -> Result<Option<Trimmed>, WriteError> {
        self.trim_project_on(&Topology::SingleNode, project, cap)
            .await
    }

    /// Keep only the `cap` newest `reports` rows of `project`: count its rows (`FINAL`), and
    /// when there are more, find the newest row that goes (`ORDER BY window_start DESC, row_id
    /// DESC LIMIT 1 OFFSET cap`) and delete it and every older row of the project (a mutation),
    /// and the project's rollup rows of the hours before that row's hour. `None` when the
    /// project is within its cap. Rows that arrive meanwhile are newer and not affected.
    pub async fn trim_project_on(
        &self,
        topology: &Topology,
        project: u64,
        cap: NonZeroU64,
    ) -> Result<Option<Trimmed>, WriteError> {
        let count = format!("SELECT count() FROM {REPORTS_TABLE} FINAL WHERE project_id = ?");
        let (rows, _) = self
            .retry(Operation::TrimProject, || {
                self.client.query(&count).bind(project).fetch_one::<u64>()
            })
            .await?;
        if rows <= cap.get() {
            return Ok(None);
        }
        let cutoff = format!(
            "SELECT toUInt32(window_start), row_id FROM {REPORTS_TABLE} FINAL \
             WHERE project_id = ? ORDER BY window_start DESC, row_id DESC LIMIT 1 OFFSET ?"
        );
        let (found, _) = self
            .retry(Operation::TrimProject, || {
                self.client
                    .query(&cutoff)
                    .bind(project)
                    .bind(cap.get())
                    .fetch_optional::<(u32, u64)>()
            })
            .await?;
        // Merged away between the two reads: nothing over the cap any more.
        let Some((window_start, row_id)) = found else {
            return Ok(None);
        };
        let database = &self.config.database;
        let reports = trim_reports_sql(database, topology);
        self.retry(Operation::TrimProject, || {
            self.client
                .query(&reports)
                .bind(project)
                .bind(window_start)
                .bind(window_start)
                .bind(row_id)
                .execute()
        })
        .await?;
        let hour = window_start - window_start % 3600;
        for table in RETAINED_TABLES.iter().filter(|t| **t != REPORTS_TABLE) {
            let rollup = trim_rollup_sql(database, topology, table);
            self.retry(Operation::TrimProject, || {
                self.client
                    .query(&rollup)
                    .bind(project)
                    .bind(hour)
                    .execute()
            })
            .await?;
        }
        Ok(Some(Trimmed {
            rows,
            deleted: rows - cap.get(),
        }))
    }
}

/// `ALTER TABLE <target> DELETE` on `table` (a retained table's usual name): the table itself
/// on a single node, its `*_local` tables on every shard of a cluster.
fn delete_target(database: &str, topology: &Topology, table: &str) -> String {
    match topology.cluster() {
        None => table.to_owned(),
        Some(cluster) => format!(
            "{database}.{local} ON CLUSTER {cluster}",
            local = topology.local_table(table)
        ),
    }
}

/// Delete a project's `reports` rows at or before the cut-off row; binds: project,
/// window_start (Unix seconds, twice), row_id.
fn trim_reports_sql(database: &str, topology: &Topology) -> String {
    format!(
        "ALTER TABLE {target} DELETE WHERE project_id = ? AND (window_start < toDateTime(?) \
         OR (window_start = toDateTime(?) AND row_id <= ?))",
        target = delete_target(database, topology, REPORTS_TABLE)
    )
}

/// Delete a project's rollup rows of the hours before the cut-off hour; binds: project, hour
/// (Unix seconds).
fn trim_rollup_sql(database: &str, topology: &Topology, table: &str) -> String {
    format!(
        "ALTER TABLE {target} DELETE WHERE project_id = ? AND hour < toDateTime(?)",
        target = delete_target(database, topology, table)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(project_id: u64, retention_days: u32, max_rows: u64) -> ProjectStorage {
        ProjectStorage {
            project_id,
            retention_days,
            max_rows,
        }
    }

    fn configured(project_id: u64, days: u32) -> ProjectRetention {
        ProjectRetention {
            project_id,
            days: NonZeroU32::new(days).expect("non-zero"),
        }
    }

    fn days(list: &[(u64, NonZeroU32)]) -> Vec<(u64, u32)> {
        list.iter().map(|(p, d)| (*p, d.get())).collect()
    }

    #[test]
    fn the_shorter_retention_wins_and_longer_than_global_is_dropped() {
        let configured = [configured(1, 30), configured(2, 10), configured(5, 120)];
        let stored = [
            stored(1, 7, 0),   // shorter than the file: 7
            stored(2, 20, 0),  // longer than the file: 10
            stored(3, 0, 500), // 0: the global default, nothing to delete per project
            stored(4, 60, 0),  // only stored
            stored(6, 90, 0),  // as long as the global retention: partition drops do it
        ];
        assert_eq!(
            days(&project_days(&configured, &stored, 90)),
            vec![(1, 7), (2, 10), (4, 60)]
        );
        // Global retention 0 keeps everything: every per-project retention applies.
        assert_eq!(
            days(&project_days(&configured, &stored, 0)),
            vec![(1, 7), (2, 10), (4, 60), (5, 120), (6, 90)]
        );
    }

    #[test]
    fn a_stored_cap_overrides_the_default_and_zero_means_default() {
        let stored: BTreeMap<u64, ProjectStorage> = [stored(1, 0, 50), stored(2, 7, 0)]
            .into_iter()
            .map(|s| (s.project_id, s))
            .collect();
        assert_eq!(cap_of(&stored, 1, 1000).map(NonZeroU64::get), Some(50));
        assert_eq!(cap_of(&stored, 2, 1000).map(NonZeroU64::get), Some(1000));
        assert_eq!(cap_of(&stored, 3, 1000).map(NonZeroU64::get), Some(1000));
        assert_eq!(cap_of(&stored, 1, 0).map(NonZeroU64::get), Some(50));
        assert_eq!(cap_of(&stored, 2, 0), None);
    }

    #[test]
    fn trim_statements_on_a_single_node_and_on_a_cluster() {
        assert_eq!(
            trim_reports_sql("palisade", &Topology::SingleNode),
            "ALTER TABLE reports DELETE WHERE project_id = ? AND (window_start < toDateTime(?) \
             OR (window_start = toDateTime(?) AND row_id <= ?))"
        );
        assert_eq!(
            trim_rollup_sql("palisade", &Topology::SingleNode, "rollup_hourly"),
            "ALTER TABLE rollup_hourly DELETE WHERE project_id = ? AND hour < toDateTime(?)"
        );
        let cluster = Topology::Cluster("c1".parse().expect("valid name"));
        assert_eq!(
            trim_reports_sql("palisade", &cluster),
            "ALTER TABLE palisade.reports_local ON CLUSTER c1 DELETE WHERE project_id = ? AND \
             (window_start < toDateTime(?) OR (window_start = toDateTime(?) AND row_id <= ?))"
        );
        assert_eq!(
            trim_rollup_sql("palisade", &cluster, "rollup_policy_hourly"),
            "ALTER TABLE palisade.rollup_policy_hourly_local ON CLUSTER c1 DELETE WHERE \
             project_id = ? AND hour < toDateTime(?)"
        );
    }
}
