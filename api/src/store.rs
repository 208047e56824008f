//! Every ClickHouse query of the API, with bound parameters only (`?` rendered by the
//! `clickhouse` client as escaped literals: ClickHouse 18.16 has no server-side parameters).
//!
//! Exactness (see `schemas/sql/README.md`, "Exact counts"): `reports` is read with `FINAL` or
//! with `argMax(x, version)` per `(window_start, row_id)` (the same row FINAL keeps), filtered
//! only on columns every version of a row shares (`project_id`, `fingerprint`, `window_start`,
//! `kind`, `effective_directive`, `document_host`, the URLs and the sample). The listing, a
//! group's details and its samples and series avoid `FINAL`: on ClickHouse 18.16 a `FINAL`
//! read merges every selected column before any filter applies, and always reads the last
//! granule of every part whatever the key range (measured with `palisade-api-bench`, see
//! `benches/README.md`); they filter on `fingerprint` first and deduplicate only those rows.
//! The API's own tables (migration 005) are read with `argMax(x, version)` grouped by their key,
//! because their filters (`revoked`, `muted`) are on columns that change between versions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::error::ApiError;
use crate::params::GroupFilter;

mod alerts;
mod projects;
mod tokens;

pub use alerts::{AlertRow, AlertSettingsRow, CandidateRow, DeliveryRow, NewAlert};
pub use projects::{KeyRow, ProjectRow, StorageRow};
pub use tokens::TokenRow;

/// The client network of a report, for "distinct client networks": the /24 of an IPv4
/// address, the /48 of an IPv6 address, else the stored value (a salted hash or empty, when
/// the project's privacy settings keep no address; then every client counts as its own value,
/// or all as one).
const CLIENT_NETWORK: &str = "multiIf(\
     IPv4StringToNum(client_ip) != 0, toString(bitAnd(IPv4StringToNum(client_ip), 4294967040)), \
     position(client_ip, ':') > 0, cutIPv6(IPv6StringToNum(client_ip), 10, 0), \
     client_ip)";

/// One violation group, aggregated over the rows of one fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct GroupRow {
    pub fingerprint: u64,
    pub kind: String,
    pub effective_directive: String,
    pub blocked_origin: String,
    pub blocked_class: String,
    pub document_host: String,
    pub disposition: String,
    pub noise: String,
    /// One sample of the group (any), and how many distinct samples it has.
    pub sample: String,
    pub sample_variants: u64,
    pub first_seen: u32,
    pub last_seen: u32,
    pub occurrences: u64,
    pub distinct_pages: u64,
    pub distinct_clients: u64,
    /// First and last `window_start` (Unix seconds): the group's span in the sorting key.
    pub first_window: u32,
    pub last_window: u32,
    pub distinct_client_networks: u64,
}

/// The aggregate of [`GroupRow`], in its field order (RowBinary is positional).
const GROUP_COLUMNS: &str =
    "fingerprint, any(kind), any(effective_directive), any(blocked_origin), \
     any(blocked_class), any(document_host), any(disposition), any(noise), any(sample), \
     uniqExact(sample), toUInt32(min(first_seen)) AS g_first, toUInt32(max(last_seen)) AS g_last, \
     sum(occurrences) AS g_occurrences, uniqExact(document_origin, document_path), \
     uniqExact(client_ip), toUInt32(min(window_start)), toUInt32(max(window_start))";

/// The columns of [`GROUP_COLUMNS`] every version of a row shares, then the distinct client
/// networks ([`SharedRow`]'s field order).
const SHARED_COLUMNS: &str =
    "fingerprint, any(kind), any(effective_directive), any(blocked_origin), \
     any(blocked_class), any(document_host), any(disposition), any(noise), any(sample), \
     uniqExact(sample), uniqExact(document_origin, document_path), uniqExact(client_ip), \
     toUInt32(min(window_start)), toUInt32(max(window_start))";

/// A group's columns that do not depend on which version of a row is read.
#[derive(Debug, Clone, clickhouse::Row, Deserialize)]
struct SharedRow {
    fingerprint: u64,
    kind: String,
    effective_directive: String,
    blocked_origin: String,
    blocked_class: String,
    document_host: String,
    disposition: String,
    noise: String,
    sample: String,
    sample_variants: u64,
    distinct_pages: u64,
    distinct_clients: u64,
    first_window: u32,
    last_window: u32,
    distinct_client_networks: u64,
}

/// A group's occurrences, first and last seen from the highest version of each row.
type VersionedRow = (u64, u64, u32, u32);

/// The WHERE conditions of a listing (columns every version of a row shares) and their values.
fn group_conditions(project: u64, filter: &GroupFilter) -> (String, Vec<Value>) {
    let mut sql = "project_id = ? AND window_start >= toDateTime(?)".to_owned();
    let mut values = vec![Value::U64(project), Value::U64(filter.since.into())];
    if let Some(until) = filter.until {
        sql.push_str(" AND window_start < toDateTime(?)");
        values.push(Value::U64(until.into()));
    }
    for (column, value) in [
        ("kind", &filter.kind),
        ("effective_directive", &filter.directive),
        ("document_host", &filter.host),
    ] {
        if let Some(value) = value {
            sql.push_str(&format!(" AND {column} = ?"));
            values.push(Value::Str(value.clone()));
        }
    }
    if let Some(q) = &filter.q {
        sql.push_str(" AND (");
        let columns = ["blocked_url", "document_url", "source_file", "sample"];
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                sql.push_str(" OR ");
            }
            sql.push_str(&format!("position(lowerUTF8({column}), ?) > 0"));
            values.push(Value::Str(q.to_lowercase()));
        }
        sql.push(')');
    }
    if !filter.include_muted {
        sql.push_str(&format!(" AND fingerprint NOT IN ({MUTED_SUBQUERY})"));
        values.push(Value::U64(project));
    }
    (sql, values)
}

/// A recent row of a group.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize, serde::Serialize)]
pub struct SampleRow {
    /// Answered as `last_seen_unix` next to the RFC 3339 `last_seen`.
    #[serde(rename(serialize = "last_seen_unix"))]
    pub last_seen: u32,
    pub occurrences: u32,
    pub disposition: String,
    pub document_url: String,
    pub blocked_url: String,
    pub source_file: String,
    pub line_number: u32,
    pub column_number: u32,
    pub sample: String,
    pub ua_family: String,
    pub ua_major: String,
    pub os_family: String,
}

/// An applied resolution.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct ResolutionRow {
    pub fingerprint: u64,
    pub directive: String,
    /// Space-separated source expressions.
    pub sources: String,
    pub disposition: String,
    /// JSON of `resolution::Evidence` at the time it was applied.
    pub evidence: String,
    pub applied_at: u32,
    pub applied_by: String,
}

impl ResolutionRow {
    /// A withdrawn resolution is recorded as a newer row without sources (and without a
    /// directive): the group is neither applied nor proposed as qualifying any more.
    pub fn withdrawn(&self) -> bool {
        self.sources.is_empty()
    }
}

/// Occurrences in one UTC hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct HourRow {
    /// Unix seconds of the hour.
    pub hour: u32,
    pub occurrences: u64,
}

/// An observed policy and the disposition it was delivered with.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct PolicyRow {
    pub original_policy: String,
    pub disposition: String,
}

/// A bound value of a query built at run time.
#[derive(Debug, Clone)]
enum Value {
    U64(u64),
    Str(String),
}

/// A recorded resolution at its newest version ([`ResolutionRow`]'s field order), grouped by
/// fingerprint.
const RESOLUTION_COLUMNS: &str = "fingerprint, argMax(directive, version), \
     argMax(sources, version), argMax(disposition, version), argMax(evidence, version), \
     toUInt32(argMax(applied_at, version)) AS at, argMax(applied_by, version)";

/// How far before the newest window with a policy [`Store::latest_policy`] looks for the
/// newest row: a day, far more than a dedup window plus its grace.
const LATEST_POLICY_SPAN_SECS: u32 = 86_400;

/// The cluster the schema lives on (`--clickhouse-cluster`, as the processor's): reads and
/// inserts use the Distributed tables under the usual names, but a mutation (`ALTER TABLE ...
/// DELETE`) must go `ON CLUSTER` to the replicated `*_local` tables of every shard (18.16 cannot
/// mutate a Distributed table). Both names are bare identifiers (`Config::validate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnCluster {
    pub database: String,
    pub cluster: String,
}

/// Suffix of the replicated table under a Distributed table (the processor's cluster
/// variant of the migrations, `processor/src/migrate/cluster.rs`).
const LOCAL_SUFFIX: &str = "_local";

/// ClickHouse access of the API.
#[derive(Debug)]
pub struct Store {
    client: clickhouse::Client,
    timeout: Duration,
    /// Last `version` written, so versions are strictly increasing within this process.
    last_version: AtomicU64,
    /// `Some` on a cluster: where mutations go.
    cluster: Option<OnCluster>,
}

impl Store {
    pub fn new(client: clickhouse::Client, timeout: Duration) -> Self {
        Self {
            client,
            timeout,
            last_version: AtomicU64::new(0),
            cluster: None,
        }
    }

    /// The same store on a cluster (`None`: a single node).
    pub fn on_cluster(mut self, cluster: Option<OnCluster>) -> Self {
        self.cluster = cluster;
        self
    }

    /// Unix milliseconds now, or one more than the last version if the clock did not move.
    fn next_version(&self) -> u64 {
        let now = now_millis();
        let previous = self
            .last_version
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or(now);
        now.max(previous + 1)
    }

    async fn timed<T>(
        &self,
        step: &'static str,
        work: impl std::future::Future<Output = Result<T, clickhouse::error::Error>>,
    ) -> Result<T, ApiError> {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(ApiError::Storage { step, source }),
            Err(_elapsed) => Err(ApiError::StorageTimeout { step }),
        }
    }

    fn query(&self, sql: &str, values: Vec<Value>) -> clickhouse::query::Query {
        let mut query = self.client.query(sql);
        for value in values {
            query = match value {
                Value::U64(number) => query.bind(number),
                Value::Str(text) => query.bind(text),
            };
        }
        query
    }

    // --- groups

    /// One page of groups, newest first, plus whether more follow (`limit + 1` are read).
    ///
    /// Two steps, so that no query runs `FINAL` over the whole range (on ClickHouse 18.16 a
    /// `FINAL` read merges every column of every row of the range before the filters apply):
    /// 1. candidates without `FINAL`, reading two narrow columns: per group, `hi` = the largest
    ///    `last_seen` of any version (at least the exact value) and `lo` = the largest
    ///    `window_start` (at most the exact value: every version of a row has the same
    ///    `window_start` and a `last_seen` at or after it). The cursor is applied to `lo`, which
    ///    keeps every group the exact cursor keeps; the first `2 x (limit + 1)` by `hi` are kept.
    /// 2. [`Store::group_rows`] of the candidates (exact), then the exact cursor and order.
    ///
    /// Every group left out in step 1 sorts below the last candidate's `(hi, fingerprint)`, so
    /// the page is exact when its `limit + 1`-th group sorts at or above it (always, unless
    /// many stale versions are unmerged); otherwise the single `FINAL` query answers.
    pub async fn groups(
        &self,
        project: u64,
        filter: &GroupFilter,
    ) -> Result<(Vec<GroupRow>, bool), ApiError> {
        let (conditions, values) = group_conditions(project, filter);
        let wanted = filter.limit as usize + 1;
        let kept = wanted * 2;
        let mut sql = format!(
            "SELECT fingerprint, toUInt32(max(last_seen)) AS hi, \
             toUInt32(max(window_start)) AS lo FROM reports WHERE {conditions} \
             GROUP BY fingerprint"
        );
        let mut candidate_values = values.clone();
        if let Some(cursor) = filter.cursor {
            sql.push_str(" HAVING lo < ? OR (lo = ? AND fingerprint < ?)");
            candidate_values.push(Value::U64(cursor.last_seen.into()));
            candidate_values.push(Value::U64(cursor.last_seen.into()));
            candidate_values.push(Value::U64(cursor.fingerprint));
        }
        sql.push_str(" ORDER BY hi DESC, fingerprint DESC LIMIT ?");
        candidate_values.push(Value::U64(kept as u64));
        let candidates: Vec<(u64, u32, u32)> = self
            .timed(
                "listing candidate groups",
                self.query(&sql, candidate_values).fetch_all(),
            )
            .await?;
        let fingerprints: Vec<u64> = candidates.iter().map(|c| c.0).collect();
        let mut rows = self.group_rows(&conditions, values, &fingerprints).await?;
        if let Some(cursor) = filter.cursor {
            rows.retain(|row| {
                (row.last_seen, row.fingerprint) < (cursor.last_seen, cursor.fingerprint)
            });
        }
        rows.sort_by_key(|row| std::cmp::Reverse((row.last_seen, row.fingerprint)));
        if let Some(&(last, hi, _)) = candidates.last() {
            let complete = candidates.len() < kept
                || rows
                    .get(wanted - 1)
                    .is_some_and(|row| (row.last_seen, row.fingerprint) >= (hi, last));
            if !complete {
                crate::metrics::final_fallback("listing");
                return self.groups_final(project, filter).await;
            }
        }
        let more = rows.len() > filter.limit as usize;
        rows.truncate(filter.limit as usize);
        Ok((rows, more))
    }

    /// The listing in one query over `reports FINAL` (what [`Store::groups`] falls back to).
    async fn groups_final(
        &self,
        project: u64,
        filter: &GroupFilter,
    ) -> Result<(Vec<GroupRow>, bool), ApiError> {
        let (conditions, mut values) = group_conditions(project, filter);
        let mut sql = format!(
            "SELECT {GROUP_COLUMNS}, uniqExact({CLIENT_NETWORK}) FROM reports FINAL \
             WHERE {conditions} GROUP BY fingerprint"
        );
        if let Some(cursor) = filter.cursor {
            sql.push_str(" HAVING g_last < ? OR (g_last = ? AND fingerprint < ?)");
            values.push(Value::U64(cursor.last_seen.into()));
            values.push(Value::U64(cursor.last_seen.into()));
            values.push(Value::U64(cursor.fingerprint));
        }
        sql.push_str(" ORDER BY g_last DESC, fingerprint DESC LIMIT ?");
        values.push(Value::U64(u64::from(filter.limit) + 1));
        let mut rows: Vec<GroupRow> = self
            .timed("listing groups", self.query(&sql, values).fetch_all())
            .await?;
        let more = rows.len() > filter.limit as usize;
        rows.truncate(filter.limit as usize);
        Ok((rows, more))
    }

    /// The groups of `fingerprints` over the rows matching `conditions` (bound by `values`),
    /// exact, without `FINAL`, in two queries run together:
    /// - the columns every version of a row shares (labels, distinct counts, window span):
    ///   duplicates change neither `any` nor a distinct count;
    /// - occurrences, first and last seen from the highest version of each row (`argMax` by
    ///   `version` per `(window_start, row_id)`, what `FINAL` keeps; two versions with the same
    ///   number are the same count of the same window).
    ///
    /// Both filter on `fingerprint` before anything is merged, so they read the groups' rows
    /// rather than the whole range. Groups without rows are absent; the order is unspecified.
    async fn group_rows(
        &self,
        conditions: &str,
        values: Vec<Value>,
        fingerprints: &[u64],
    ) -> Result<Vec<GroupRow>, ApiError> {
        if fingerprints.is_empty() {
            return Ok(Vec::new());
        }
        // Numbers only: rendered, not bound (a bound array would be a `has()` per row).
        let list = fingerprints
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let shared = format!(
            "SELECT {SHARED_COLUMNS}, uniqExact({CLIENT_NETWORK}) FROM reports \
             WHERE {conditions} AND fingerprint IN ({list}) GROUP BY fingerprint"
        );
        let versioned = format!(
            "SELECT fp, sum(o), toUInt32(min(f)), toUInt32(max(l)) FROM (\
             SELECT any(fingerprint) AS fp, argMax(occurrences, version) AS o, \
             argMax(first_seen, version) AS f, argMax(last_seen, version) AS l \
             FROM reports WHERE {conditions} AND fingerprint IN ({list}) \
             GROUP BY window_start, row_id) GROUP BY fp"
        );
        let (shared, versioned): (Vec<SharedRow>, Vec<VersionedRow>) = tokio::try_join!(
            self.timed(
                "reading groups",
                self.query(&shared, values.clone()).fetch_all()
            ),
            self.timed(
                "counting groups",
                self.query(&versioned, values).fetch_all()
            ),
        )?;
        let versioned: std::collections::HashMap<u64, (u64, u32, u32)> = versioned
            .into_iter()
            .map(|(fingerprint, occurrences, first, last)| {
                (fingerprint, (occurrences, first, last))
            })
            .collect();
        Ok(shared
            .into_iter()
            .filter_map(|row| {
                let &(occurrences, first_seen, last_seen) = versioned.get(&row.fingerprint)?;
                Some(GroupRow {
                    fingerprint: row.fingerprint,
                    kind: row.kind,
                    effective_directive: row.effective_directive,
                    blocked_origin: row.blocked_origin,
                    blocked_class: row.blocked_class,
                    document_host: row.document_host,
                    disposition: row.disposition,
                    noise: row.noise,
                    sample: row.sample,
                    sample_variants: row.sample_variants,
                    first_seen,
                    last_seen,
                    occurrences,
                    distinct_pages: row.distinct_pages,
                    distinct_clients: row.distinct_clients,
                    first_window: row.first_window,
                    last_window: row.last_window,
                    distinct_client_networks: row.distinct_client_networks,
                })
            })
            .collect())
    }

    /// One group over all its rows (exact, see [`Store::group_rows`]).
    pub async fn group(
        &self,
        project: u64,
        fingerprint: u64,
    ) -> Result<Option<GroupRow>, ApiError> {
        let rows = self
            .group_rows("project_id = ?", vec![Value::U64(project)], &[fingerprint])
            .await?;
        Ok(rows.into_iter().next())
    }

    /// CSP groups seen since `since` whose evidence reaches both thresholds, biggest first,
    /// at most `limit`; exactly those of `reports FINAL`. Read without `FINAL` when it can be
    /// (on 18.16 a FINAL read merges every selected column over the whole range: 4.4 GB read
    /// per call at 10 M rows, `palisade-api-bench`): candidates first, by an upper bound of
    /// their occurrences (every stored version summed: stale versions only add, so no
    /// qualifying group fails the bound) and their exact client networks (every version of a
    /// row has the same client), then the exact evidence of the candidates only
    /// ([`Store::group_rows`]). Candidates are the `2 * limit` biggest by the bound. A group
    /// left out has a bound, hence an exact count, of at most the smallest candidate's bound
    /// `b`; so when fewer than `2 * limit` candidates came back, or the exact `limit`-th group
    /// counts more than `b`, the answer is exact. Otherwise (unmerged versions overstated
    /// enough groups) the same question is asked of `FINAL`.
    pub async fn qualifying_groups(
        &self,
        project: u64,
        since: u32,
        min_occurrences: u64,
        min_networks: u64,
        limit: u32,
    ) -> Result<Vec<GroupRow>, ApiError> {
        let candidates_sql = format!(
            "SELECT fingerprint, sum(occurrences) AS bound FROM reports \
             WHERE project_id = ? AND window_start >= toDateTime(?) AND kind = 'csp-violation' \
             AND fingerprint NOT IN ({MUTED_SUBQUERY}) \
             GROUP BY fingerprint HAVING bound >= ? AND uniqExact({CLIENT_NETWORK}) >= ? \
             ORDER BY bound DESC, fingerprint LIMIT ?"
        );
        let wanted = limit.saturating_mul(2);
        let query = self
            .client
            .query(&candidates_sql)
            .bind(project)
            .bind(since)
            .bind(project)
            .bind(min_occurrences)
            .bind(min_networks)
            .bind(wanted);
        let candidates: Vec<(u64, u64)> = self
            .timed("reading candidate groups", query.fetch_all())
            .await?;
        let smallest_bound = candidates.last().map_or(0, |&(_, bound)| bound);
        let fingerprints: Vec<u64> = candidates.iter().map(|&(fp, _)| fp).collect();
        let mut rows = self
            .group_rows(
                "project_id = ? AND window_start >= toDateTime(?) AND kind = 'csp-violation'",
                vec![Value::U64(project), Value::U64(u64::from(since))],
                &fingerprints,
            )
            .await?;
        rows.retain(|row| {
            row.occurrences >= min_occurrences && row.distinct_client_networks >= min_networks
        });
        rows.sort_by(|a, b| {
            b.occurrences
                .cmp(&a.occurrences)
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        rows.truncate(limit as usize);
        let all_candidates = candidates.len() < wanted as usize;
        let top_exceeds_left_out = rows.len() == limit as usize
            && rows
                .last()
                .is_some_and(|row| row.occurrences > smallest_bound);
        if all_candidates || top_exceeds_left_out {
            return Ok(rows);
        }
        crate::metrics::final_fallback("qualifying_groups");
        self.qualifying_groups_final(project, since, min_occurrences, min_networks, limit)
            .await
    }

    /// [`Store::qualifying_groups`] read from `reports FINAL` (its fallback).
    async fn qualifying_groups_final(
        &self,
        project: u64,
        since: u32,
        min_occurrences: u64,
        min_networks: u64,
        limit: u32,
    ) -> Result<Vec<GroupRow>, ApiError> {
        let sql = format!(
            "SELECT {GROUP_COLUMNS}, uniqExact({CLIENT_NETWORK}) AS g_networks FROM reports FINAL \
             WHERE project_id = ? AND window_start >= toDateTime(?) AND kind = 'csp-violation' \
             AND fingerprint NOT IN ({MUTED_SUBQUERY}) \
             GROUP BY fingerprint HAVING g_occurrences >= ? AND g_networks >= ? \
             ORDER BY g_occurrences DESC, fingerprint LIMIT ?"
        );
        let query = self
            .client
            .query(&sql)
            .bind(project)
            .bind(since)
            .bind(project)
            .bind(min_occurrences)
            .bind(min_networks)
            .bind(limit);
        self.timed("reading qualifying groups", query.fetch_all())
            .await
    }

    /// The newest `limit` rows of a group whose windows start in `[first_window, last_window]`
    /// (exact: the highest version of each row), read over a short span. Without `FINAL`, narrow: `w` = the `limit`-th
    /// newest window start among the group's distinct rows and `d` = the longest
    /// `last_seen - window_start` of any version. At least `limit` rows end at or after `w`, so
    /// each of the newest `limit` ends at or after `w` and starts at or after `w - d`: only
    /// `[w - d, last_window]` is read in full.
    pub async fn samples(
        &self,
        project: u64,
        fingerprint: u64,
        (first_window, last_window): (u32, u32),
        limit: u32,
    ) -> Result<Vec<SampleRow>, ApiError> {
        let bounds = "SELECT toUInt32(min(ws)), toUInt64(count()) FROM (\
                      SELECT DISTINCT window_start AS ws, row_id FROM reports \
                      WHERE project_id = ? AND fingerprint = ? \
                      AND window_start >= toDateTime(?) AND window_start <= toDateTime(?) \
                      ORDER BY ws DESC LIMIT ?)";
        let longest = "SELECT toUInt64(greatest(max(toInt64(toUInt32(last_seen)) \
                       - toInt64(toUInt32(window_start))), 0)) FROM reports \
                       WHERE project_id = ? AND fingerprint = ?";
        let (bounds, longest): ((u32, u64), u64) = tokio::try_join!(
            self.timed(
                "reading a group's newest windows",
                self.client
                    .query(bounds)
                    .bind(project)
                    .bind(fingerprint)
                    .bind(first_window)
                    .bind(last_window)
                    .bind(limit)
                    .fetch_one()
            ),
            self.timed(
                "reading a group's longest window",
                self.client
                    .query(longest)
                    .bind(project)
                    .bind(fingerprint)
                    .fetch_one()
            ),
        )?;
        let from = if bounds.1 < u64::from(limit) {
            first_window
        } else {
            let longest = u32::try_from(longest).unwrap_or(u32::MAX);
            bounds.0.saturating_sub(longest).max(first_window)
        };
        // The highest version of each row (what FINAL keeps), without FINAL: on 18.16 a FINAL
        // read merges the last granule of EVERY part of the table, whatever the key range.
        let sql = "SELECT toUInt32(argMax(last_seen, version)) AS l, \
                   argMax(occurrences, version), argMax(disposition, version), \
                   argMax(document_url, version), argMax(blocked_url, version), \
                   argMax(source_file, version), argMax(line_number, version), \
                   argMax(column_number, version), argMax(sample, version), \
                   argMax(ua_family, version), argMax(ua_major, version), \
                   argMax(os_family, version) FROM reports WHERE project_id = ? \
                   AND window_start >= toDateTime(?) AND window_start <= toDateTime(?) \
                   AND fingerprint = ? GROUP BY window_start, row_id \
                   ORDER BY l DESC, row_id DESC LIMIT ?";
        let query = self
            .client
            .query(sql)
            .bind(project)
            .bind(from)
            .bind(last_window)
            .bind(fingerprint)
            .bind(limit);
        self.timed("reading samples", query.fetch_all()).await
    }

    /// Occurrences per UTC hour (Unix seconds of the hour) of windows starting in
    /// `[from, to]`; hours without rows are absent. Exact without `FINAL`: the highest version
    /// of each `(window_start, row_id)` (see [`Store::group_rows`]), filtered on the
    /// fingerprint before anything is merged.
    pub async fn series(
        &self,
        project: u64,
        fingerprint: u64,
        from: u32,
        to: u32,
    ) -> Result<Vec<HourRow>, ApiError> {
        let sql = "SELECT toUInt32(intDiv(toUInt32(ws), 3600) * 3600) AS hour, sum(o) FROM (\
                   SELECT window_start AS ws, argMax(occurrences, version) AS o FROM reports \
                   WHERE project_id = ? AND fingerprint = ? \
                   AND window_start >= toDateTime(?) AND window_start <= toDateTime(?) \
                   GROUP BY window_start, row_id) GROUP BY hour ORDER BY hour";
        let query = self
            .client
            .query(sql)
            .bind(project)
            .bind(fingerprint)
            .bind(from)
            .bind(to);
        self.timed("reading a time series", query.fetch_all()).await
    }

    /// Schedules the deletion of the group's rows of THIS project (a mutation: asynchronous,
    /// progress in `system.mutations`; on a cluster, of every shard's `reports_local`).
    pub async fn delete_group(&self, project: u64, fingerprint: u64) -> Result<(), ApiError> {
        let sql = delete_group_sql(self.cluster.as_ref());
        let query = self.client.query(&sql).bind(project).bind(fingerprint);
        self.timed("deleting a group", query.execute()).await
    }

    // --- mutes

    /// Which of `fingerprints` are muted in `project`.
    pub async fn muted_among(
        &self,
        project: u64,
        fingerprints: &[u64],
    ) -> Result<Vec<u64>, ApiError> {
        if fingerprints.is_empty() {
            return Ok(Vec::new());
        }
        let sql = "SELECT fingerprint FROM violation_mutes WHERE project_id = ? \
                   AND has(?, fingerprint) GROUP BY fingerprint HAVING argMax(muted, version) = 1";
        let query = self
            .client
            .query(sql)
            .bind(project)
            .bind(fingerprints.to_vec());
        self.timed("reading mutes", query.fetch_all()).await
    }

    pub async fn set_muted(
        &self,
        project: u64,
        fingerprint: u64,
        muted: bool,
        actor: &str,
    ) -> Result<(), ApiError> {
        let sql = "INSERT INTO violation_mutes \
                   (project_id, fingerprint, muted, changed_at, changed_by, version) \
                   SELECT ?, ?, ?, toDateTime(?), ?, ?";
        let query = self
            .client
            .query(sql)
            .bind(project)
            .bind(fingerprint)
            .bind(u8::from(muted))
            .bind(now_secs())
            .bind(actor)
            .bind(self.next_version());
        self.timed("writing a mute", query.execute()).await
    }

    // --- resolutions

    pub async fn apply_resolution(
        &self,
        project: u64,
        row: &ResolutionRow,
    ) -> Result<(), ApiError> {
        let sql = "INSERT INTO resolutions (project_id, fingerprint, directive, sources, \
                   disposition, evidence, applied_at, applied_by, version) \
                   SELECT ?, ?, ?, ?, ?, ?, toDateTime(?), ?, ?";
        let query = self
            .client
            .query(sql)
            .bind(project)
            .bind(row.fingerprint)
            .bind(&row.directive)
            .bind(&row.sources)
            .bind(&row.disposition)
            .bind(&row.evidence)
            .bind(row.applied_at)
            .bind(&row.applied_by)
            .bind(self.next_version());
        self.timed("recording a resolution", query.execute()).await
    }

    /// Recorded resolutions, newest first: applied ones, and withdrawn ones (their newest row
    /// has no sources, see [`ResolutionRow::withdrawn`]).
    pub async fn resolutions(
        &self,
        project: u64,
        limit: u32,
    ) -> Result<Vec<ResolutionRow>, ApiError> {
        let sql = format!(
            "SELECT {RESOLUTION_COLUMNS} FROM resolutions WHERE project_id = ? \
             GROUP BY fingerprint ORDER BY at DESC, fingerprint LIMIT ?"
        );
        let query = self.client.query(&sql).bind(project).bind(limit);
        self.timed("listing resolutions", query.fetch_all()).await
    }

    /// The recorded resolution of one group (applied or withdrawn), if any.
    pub async fn resolution(
        &self,
        project: u64,
        fingerprint: u64,
    ) -> Result<Option<ResolutionRow>, ApiError> {
        let sql = format!(
            "SELECT {RESOLUTION_COLUMNS} FROM resolutions \
             WHERE project_id = ? AND fingerprint = ? GROUP BY fingerprint"
        );
        let query = self.client.query(&sql).bind(project).bind(fingerprint);
        self.timed("reading a resolution", query.fetch_optional())
            .await
    }

    // --- policy

    /// The original policy of the newest CSP row (of `disposition` when given), with its
    /// disposition. Read in two steps so the policy text is read only near the newest windows,
    /// not over every row (one ORDER BY over all rows reads every row's policy: 1.5 GB
    /// uncompressed, 0.4 s, at 10 M rows of `palisade-api-bench`'s 150-byte policies, and
    /// real policies are often ten times longer):
    /// the newest window start with a policy (narrow columns), then the newest row among the
    /// windows of the day before it (a row's `last_seen` is at most a window plus the
    /// processor's grace after its `window_start`).
    pub async fn latest_policy(
        &self,
        project: u64,
        disposition: Option<&str>,
    ) -> Result<Option<PolicyRow>, ApiError> {
        let mut conditions =
            "project_id = ? AND kind = 'csp-violation' AND policy_hash != 0".to_owned();
        let mut values = vec![Value::U64(project)];
        if let Some(disposition) = disposition {
            conditions.push_str(" AND disposition = ?");
            values.push(Value::Str(disposition.to_owned()));
        }
        let newest =
            format!("SELECT toUInt32(max(window_start)), count() FROM reports WHERE {conditions}");
        let (newest_window, rows): (u32, u64) = self
            .timed(
                "finding the latest policy",
                self.query(&newest, values.clone()).fetch_one(),
            )
            .await?;
        if rows == 0 {
            return Ok(None);
        }
        let from = newest_window.saturating_sub(LATEST_POLICY_SPAN_SECS);
        values.push(Value::U64(u64::from(from)));
        let sql = format!(
            "SELECT original_policy, disposition FROM reports WHERE {conditions} \
             AND window_start >= toDateTime(?) ORDER BY last_seen DESC, row_id DESC LIMIT 1"
        );
        self.timed(
            "reading the latest policy",
            self.query(&sql, values).fetch_optional(),
        )
        .await
    }

    // --- audit

    pub async fn audit(
        &self,
        project: u64,
        actor: &str,
        action: &str,
        fingerprint: u64,
        detail: &str,
    ) -> Result<(), ApiError> {
        let sql = "INSERT INTO api_audit (project_id, at, actor, action, fingerprint, detail) \
                   SELECT ?, toDateTime(?), ?, ?, ?, ?";
        let query = self
            .client
            .query(sql)
            .bind(project)
            .bind(now_secs())
            .bind(actor)
            .bind(action)
            .bind(fingerprint)
            .bind(detail);
        self.timed("writing the audit log", query.execute()).await
    }
}

/// The mutation deleting a group's rows (binds: project, fingerprint): `reports` on a single
/// node, `db.reports_local ON CLUSTER c` on a cluster.
fn delete_group_sql(cluster: Option<&OnCluster>) -> String {
    let target = match cluster {
        None => "reports".to_owned(),
        Some(OnCluster { database, cluster }) => {
            format!("{database}.reports{LOCAL_SUFFIX} ON CLUSTER {cluster}")
        }
    };
    format!("ALTER TABLE {target} DELETE WHERE project_id = ? AND fingerprint = ?")
}

/// The fingerprints muted in a project (one bound parameter: the project).
const MUTED_SUBQUERY: &str = "SELECT fingerprint FROM violation_mutes WHERE project_id = ? \
     GROUP BY fingerprint HAVING argMax(muted, version) = 1";

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Unix seconds now (as a `DateTime` value; saturates in 2106).
pub fn now_secs() -> u32 {
    u32::try_from(now_millis() / 1000).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_delete_goes_to_the_local_tables_of_every_shard_on_a_cluster() {
        assert_eq!(
            delete_group_sql(None),
            "ALTER TABLE reports DELETE WHERE project_id = ? AND fingerprint = ?"
        );
        let cluster = OnCluster {
            database: "palisade".to_owned(),
            cluster: "palisade_cluster".to_owned(),
        };
        assert_eq!(
            delete_group_sql(Some(&cluster)),
            "ALTER TABLE palisade.reports_local ON CLUSTER palisade_cluster DELETE \
             WHERE project_id = ? AND fingerprint = ?"
        );
    }
}
