//! Exact rollups: recompute the touched (project, hour) groups from `reports FINAL`.
//!
//! The same statements serve a cluster (`migrate::cluster`): there `reports` and the rollups are
//! Distributed tables. `reports` is sharded by `row_id`, so every version of a row is on one shard
//! and `FINAL` (applied by each shard to its own rows) plus the initiator's merge of the shards'
//! partial aggregates is exact; each rollup is sharded by `(project_id, hour)`, so a recomputed
//! group replaces its previous version on the same shard.

use std::collections::BTreeSet;
use std::num::NonZeroUsize;

use super::{Operation, WriteError, Writer};
use crate::row::{ReportRow, RowKey};

const SECONDS_PER_HOUR: u32 = 3600;

/// The (project, hour) groups a batch touched: what [`Writer::refresh_rollups`] recomputes.
///
/// Bounded by the batch that fills it (at most one entry per row).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Touched {
    hours: BTreeSet<(u64, u32)>,
}

impl Touched {
    /// The groups of a batch of rows.
    pub fn from_rows(rows: &[ReportRow]) -> Self {
        let mut touched = Self::default();
        for row in rows {
            touched.add(row.project_id, row.window_start);
        }
        touched
    }

    /// The groups of a batch of rows in RowBinary.
    pub fn from_keys(keys: &[RowKey]) -> Self {
        let mut touched = Self::default();
        for key in keys {
            touched.add(key.project_id, key.window_start);
        }
        touched
    }

    /// Record a row of `project_id` whose window starts at `window_start` (unix seconds).
    pub fn add(&mut self, project_id: u64, window_start: u32) {
        let hour = window_start - window_start % SECONDS_PER_HOUR;
        self.hours.insert((project_id, hour));
    }

    /// Number of (project, hour) groups.
    pub fn len(&self) -> usize {
        self.hours.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hours.is_empty()
    }

    /// The groups, ordered by project then hour (unix seconds).
    pub fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.hours.iter().copied()
    }
}

impl Writer {
    /// Recompute the rollups of every touched (project, hour) from `reports FINAL`. Idempotent;
    /// returns the number of statements run.
    pub async fn refresh_rollups(&self, touched: &Touched) -> Result<usize, WriteError> {
        let statements = rollup_statements(touched, self.config.rollup_groups_per_statement);
        for statement in &statements {
            self.retry(Operation::RefreshRollups, || {
                self.client.query_raw(statement).execute()
            })
            .await?;
        }
        Ok(statements.len())
    }
}

/// The rollup statements recomputing `touched`, `per_statement` groups at a time, for every
/// rollup table. Only numbers are spliced in.
///
/// The WHERE clauses use only `project_id` and `window_start`, which every version of a row
/// shares, so `FINAL` still sees the newest version of each row (filtering a ReplacingMergeTree
/// on a column that differs between versions could select an older one).
pub fn rollup_statements(touched: &Touched, per_statement: NonZeroUsize) -> Vec<String> {
    let groups: Vec<(u64, u32)> = touched.iter().collect();
    let mut statements = Vec::new();
    for chunk in groups.chunks(per_statement.get()) {
        let filter = group_filter(chunk);
        statements.push(format!(
            "INSERT INTO rollup_hourly (project_id, day, hour, kind, disposition, \
             directive_family, blocked_origin, noise, third_party, rows, occurrences, first_seen, \
             last_seen) \
             SELECT project_id, day, {HOUR} AS hour_start, kind, disposition, directive_family, \
             blocked_origin, noise, third_party, count(), sum(occurrences), min(first_seen), \
             max(last_seen) \
             FROM reports FINAL WHERE {filter} \
             GROUP BY project_id, day, hour_start, kind, disposition, directive_family, \
             blocked_origin, noise, third_party"
        ));
        statements.push(format!(
            "INSERT INTO rollup_nel_hourly (project_id, day, hour, document_host, nel_phase, \
             nel_type, rows, occurrences, first_seen, last_seen) \
             SELECT project_id, day, {HOUR} AS hour_start, document_host, nel_phase, nel_type, \
             count(), sum(occurrences), min(first_seen), max(last_seen) \
             FROM reports FINAL WHERE {filter} AND kind = 'network-error' \
             GROUP BY project_id, day, hour_start, document_host, nel_phase, nel_type"
        ));
        statements.push(format!(
            "INSERT INTO rollup_policy_hourly (project_id, day, hour, policy_hash, \
             original_policy, rows, occurrences, first_seen, last_seen) \
             SELECT project_id, day, {HOUR} AS hour_start, policy_hash, any(original_policy), \
             count(), sum(occurrences), min(first_seen), max(last_seen) \
             FROM reports FINAL WHERE {filter} AND original_policy != '' \
             GROUP BY project_id, day, hour_start, policy_hash"
        ));
    }
    statements
}

/// The hour of a row, as UTC-aligned unix seconds (independent of the server's time zone).
const HOUR: &str = "toDateTime(intDiv(toUInt32(window_start), 3600) * 3600)";

fn group_filter(groups: &[(u64, u32)]) -> String {
    let projects: BTreeSet<u64> = groups.iter().map(|(project, _)| *project).collect();
    let first = groups.iter().map(|(_, hour)| *hour).min().unwrap_or(0);
    let last = groups.iter().map(|(_, hour)| *hour).max().unwrap_or(0);
    let projects = projects
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let pairs = groups
        .iter()
        .map(|(project, hour)| format!("({project}, {hour})"))
        .collect::<Vec<_>>()
        .join(", ");
    // The coarse bounds let the primary key (project_id, window_start) skip granules; the tuple
    // IN is the exact set.
    format!(
        "project_id IN ({projects}) AND window_start >= toDateTime({first}) \
         AND window_start < toDateTime({end}) \
         AND (project_id, intDiv(toUInt32(window_start), 3600) * 3600) IN ({pairs})",
        end = u64::from(last) + u64::from(SECONDS_PER_HOUR),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touched_groups_by_project_and_utc_hour() {
        let mut touched = Touched::default();
        touched.add(7, 3600 * 5 + 59);
        touched.add(7, 3600 * 5 + 3599);
        touched.add(7, 3600 * 6);
        touched.add(2, 3600 * 5);
        assert_eq!(
            touched.iter().collect::<Vec<_>>(),
            vec![(2, 18_000), (7, 18_000), (7, 21_600)]
        );
    }

    #[test]
    fn rollup_statements_chunk_the_groups() {
        let mut touched = Touched::default();
        for hour in 0..5 {
            touched.add(1, hour * 3600);
        }
        let two = NonZeroUsize::new(2).expect("non-zero");
        let statements = rollup_statements(&touched, two);
        // 3 chunks of groups x 3 rollup tables.
        assert_eq!(statements.len(), 9);
        assert!(
            statements[0].contains("IN ((1, 0), (1, 3600))"),
            "{}",
            statements[0]
        );
        assert!(
            statements[0].contains("window_start < toDateTime(7200)"),
            "{}",
            statements[0]
        );
        assert!(rollup_statements(&Touched::default(), two).is_empty());
    }
}
