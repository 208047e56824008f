//! Catalog of every metric the processor emits, with one typed helper each. Names follow
//! `processor_<subject>_<unit>[_total]` in base units; labels come from bounded enums or
//! `&'static str` reasons. Per-message outcomes are tallied in a [`PollTally`] and recorded once
//! per poll, not per event.

use std::time::Duration;

use crate::dedup::{CloseReason, Observed};

/// Kafka records received.
pub const MESSAGES_CONSUMED_TOTAL: &str = "processor_messages_consumed_total";
/// Records decoded into a report message.
pub const MESSAGES_DECODED_TOTAL: &str = "processor_messages_decoded_total";
/// Records sent to the dead-letter topic, by reason (decode reasons and `rejected_by_clickhouse`).
pub const MESSAGES_DEAD_LETTERED_TOTAL: &str = "processor_messages_dead_lettered_total";
/// Records at or below an offset already seen on their partition, ignored.
pub const MESSAGES_REDELIVERED_TOTAL: &str = "processor_messages_redelivered_total";
/// Records replayed after a restart that a written row already counts, ignored.
pub const MESSAGES_REPLAYED_TOTAL: &str = "processor_messages_replayed_total";
/// Records whose window had closed, counted in the oldest open window of their key.
pub const MESSAGES_LATE_TOTAL: &str = "processor_messages_late_total";
/// Open dedup windows over the assigned partitions.
pub const WINDOWS_OPEN: &str = "processor_windows_open";
/// Bound on open dedup windows (`max_open_windows` x assigned partitions).
pub const WINDOWS_BOUND: &str = "processor_windows_bound";
/// Estimated bytes held by the open dedup windows (`Dedup::held_bytes`).
pub const WINDOWS_BYTES: &str = "processor_windows_bytes";
/// Bound on those bytes (`--dedup-max-bytes` x assigned partitions).
pub const WINDOWS_BYTES_BOUND: &str = "processor_windows_bytes_bound";
/// Windows closed, by reason (`watermark`, `idle`, `forced`).
pub const WINDOWS_CLOSED_TOTAL: &str = "processor_windows_closed_total";
/// Rows emitted (one per closed window).
pub const ROWS_EMITTED_TOTAL: &str = "processor_rows_emitted_total";
/// Reports represented by the emitted rows (sum of occurrences).
pub const OCCURRENCES_TOTAL: &str = "processor_occurrences_total";
/// Rows per insert.
pub const BATCH_ROWS: &str = "processor_batch_rows";
/// Estimated bytes per insert.
pub const BATCH_BYTES: &str = "processor_batch_bytes";
/// Time an insert took until ClickHouse acknowledged it (including retries).
pub const WRITE_DURATION_SECONDS: &str = "processor_write_duration_seconds";
/// Failed batch attempts (after the writer's own retries), by class (`transient`,
/// `misconfigured`), and rows ClickHouse rejected (`permanent`).
pub const WRITE_ERRORS_TOTAL: &str = "processor_write_errors_total";
/// Offset commits, by result (`ok`, `error`).
pub const COMMITS_TOTAL: &str = "processor_commits_total";
/// Messages between the committed offset and the partition's high watermark.
pub const CONSUMER_LAG_MESSAGES: &str = "processor_consumer_lag_messages";
/// Times this instance left its consumer group and joined again because partitions were left
/// to nobody (see `processor::group`).
pub const GROUP_REJOINS_TOTAL: &str = "processor_group_rejoins_total";
/// 1 while consumption is paused because ClickHouse refuses the pending batch (back-pressure).
pub const PAUSED: &str = "processor_paused";
/// Retention job passes, by job (`drop_partitions`, `read_project_storage`, `delete_project`,
/// `trim_project`) and result (`ok`, `error`).
pub const RETENTION_RUNS_TOTAL: &str = "processor_retention_runs_total";
/// Items handled by the retention job, by job: partitions dropped, storage bounds read,
/// projects purged or trimmed.
pub const RETENTION_ITEMS_TOTAL: &str = "processor_retention_items_total";
/// `reports` rows deleted (mutations scheduled) because their project was over its row cap.
pub const RETENTION_ROWS_TRIMMED_TOTAL: &str = "processor_retention_rows_trimmed_total";
/// User-agent cache lookups, by result (`hit`, `miss`).
pub const UA_CACHE_LOOKUPS_TOTAL: &str = "processor_ua_cache_lookups_total";
/// URL parts cache lookups, by result (`hit`, `miss`).
pub const URL_CACHE_LOOKUPS_TOTAL: &str = "processor_url_cache_lookups_total";

// --- Issue 10, items 6 and 8: dead letters, refused inserts, Kafka retries, admin ---
/// Dead-letter deliveries that failed (each one backs off and keeps consumption paused).
pub const DEAD_LETTER_FAILURES_TOTAL: &str = "processor_dead_letter_failures_total";
/// The wait before the next dead-letter delivery after failures; 0 while deliveries succeed.
pub const DEAD_LETTER_BACKOFF_SECONDS: &str = "processor_dead_letter_backoff_seconds";
/// Dead letters of undecodable records waiting for the dead-letter topic.
pub const DEAD_LETTERS_PARKED: &str = "processor_dead_letters_parked";
/// Dead letters whose value was cut to `--dead-letter-max-bytes`.
pub const DEAD_LETTERS_TRUNCATED_TOTAL: &str = "processor_dead_letters_truncated_total";
/// Inserts ClickHouse refused as a whole (schema drift), by evidence (`probe_refused`,
/// `both_halves_refused`, `no_probe`): nothing dead-lettered, batch parked.
pub const INSERTS_WHOLLY_REJECTED_TOTAL: &str = "processor_inserts_wholly_rejected_total";
/// 1 while the pending batch is parked as misconfigured (alert on it).
pub const WRITE_BLOCKED: &str = "processor_write_blocked";
/// Retries of Kafka calls made on a rebalance or a pause, by operation.
pub const KAFKA_RETRIES_TOTAL: &str = "processor_kafka_retries_total";
/// Offsets missing between two records the consumer received from a partition (a fetch that
/// skipped records); 0 on a topic without transactions or compaction, as ingest writes it.
pub const OFFSETS_SKIPPED_TOTAL: &str = "processor_offsets_skipped_total";
/// Open connections on the admin listener.
pub const ADMIN_CONNECTIONS: &str = "processor_admin_connections";
/// ClickHouse pings made for `/readyz` (answers are cached `--readyz-cache-ms`).
pub const READYZ_PROBES_TOTAL: &str = "processor_readyz_probes_total";

pub fn dead_letter_failed(next_wait: Duration) {
    metrics::counter!(DEAD_LETTER_FAILURES_TOTAL).increment(1);
    dead_letter_backoff(next_wait);
}

pub fn dead_letter_backoff(wait: Duration) {
    metrics::gauge!(DEAD_LETTER_BACKOFF_SECONDS).set(wait.as_secs_f64());
}

pub fn dead_letters_parked(n: usize) {
    metrics::gauge!(DEAD_LETTERS_PARKED).set(n as f64);
}

pub fn dead_letter_truncated() {
    metrics::counter!(DEAD_LETTERS_TRUNCATED_TOTAL).increment(1);
}

pub fn insert_wholly_rejected(evidence: &'static str) {
    metrics::counter!(INSERTS_WHOLLY_REJECTED_TOTAL, "evidence" => evidence).increment(1);
}

pub fn write_blocked(blocked: bool) {
    metrics::gauge!(WRITE_BLOCKED).set(if blocked { 1.0 } else { 0.0 });
}

pub fn kafka_retry(operation: &'static str) {
    metrics::counter!(KAFKA_RETRIES_TOTAL, "operation" => operation).increment(1);
}

pub fn offsets_skipped(n: i64) {
    metrics::counter!(OFFSETS_SKIPPED_TOTAL).increment(u64::try_from(n).unwrap_or(0));
}

pub fn admin_connections(open: usize) {
    metrics::gauge!(ADMIN_CONNECTIONS).set(open as f64);
}

pub fn readyz_probe() {
    metrics::counter!(READYZ_PROBES_TOTAL).increment(1);
}
// --- end of issue 10 items 6 and 8 ---

/// Every per-message outcome of one poll, recorded in one go by [`PollTally::record`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PollTally {
    pub consumed: u64,
    pub decoded: u64,
    pub redelivered: u64,
    pub replayed: u64,
    pub late: u64,
}

impl PollTally {
    /// Counts what dedup did with a decoded message.
    pub fn observed(&mut self, observed: Observed) {
        match observed {
            Observed::Opened | Observed::Merged => {}
            Observed::Late => self.late += 1,
            Observed::Redelivered => self.redelivered += 1,
            Observed::Replayed => self.replayed += 1,
        }
    }

    /// Records the tally and resets it.
    pub fn record(&mut self) {
        let tally = std::mem::take(self);
        for (name, n) in [
            (MESSAGES_CONSUMED_TOTAL, tally.consumed),
            (MESSAGES_DECODED_TOTAL, tally.decoded),
            (MESSAGES_REDELIVERED_TOTAL, tally.redelivered),
            (MESSAGES_REPLAYED_TOTAL, tally.replayed),
            (MESSAGES_LATE_TOTAL, tally.late),
        ] {
            if n > 0 {
                metrics::counter!(name).increment(n);
            }
        }
    }
}

pub fn dead_lettered(reason: &'static str, n: u64) {
    metrics::counter!(MESSAGES_DEAD_LETTERED_TOTAL, "reason" => reason).increment(n);
}

pub fn windows(open: usize, bound: usize) {
    metrics::gauge!(WINDOWS_OPEN).set(open as f64);
    metrics::gauge!(WINDOWS_BOUND).set(bound as f64);
}

pub fn window_bytes(held: usize, bound: usize) {
    metrics::gauge!(WINDOWS_BYTES).set(held as f64);
    metrics::gauge!(WINDOWS_BYTES_BOUND).set(bound as f64);
}

pub fn windows_closed(reason: CloseReason, n: u64) {
    if n > 0 {
        metrics::counter!(WINDOWS_CLOSED_TOTAL, "reason" => reason.as_str()).increment(n);
    }
}

pub fn rows_emitted(rows: u64, occurrences: u64) {
    metrics::counter!(ROWS_EMITTED_TOTAL).increment(rows);
    metrics::counter!(OCCURRENCES_TOTAL).increment(occurrences);
}

pub fn batch_written(rows: usize, bytes: usize, took: Duration) {
    metrics::histogram!(BATCH_ROWS).record(rows as f64);
    metrics::histogram!(BATCH_BYTES).record(bytes as f64);
    metrics::histogram!(WRITE_DURATION_SECONDS).record(took.as_secs_f64());
}

pub fn write_error(class: &'static str) {
    write_errors(class, 1);
}

pub fn write_errors(class: &'static str, n: u64) {
    metrics::counter!(WRITE_ERRORS_TOTAL, "class" => class).increment(n);
}

pub fn commit(ok: bool) {
    metrics::counter!(COMMITS_TOTAL, "result" => if ok { "ok" } else { "error" }).increment(1);
}

pub fn group_rejoin() {
    metrics::counter!(GROUP_REJOINS_TOTAL).increment(1);
}

pub fn paused(paused: bool) {
    metrics::gauge!(PAUSED).set(if paused { 1.0 } else { 0.0 });
}

pub fn retention_run(job: &'static str, ok: bool, items: usize) {
    let result = if ok { "ok" } else { "error" };
    metrics::counter!(RETENTION_RUNS_TOTAL, "job" => job, "result" => result).increment(1);
    metrics::counter!(RETENTION_ITEMS_TOTAL, "job" => job).increment(items as u64);
}

pub fn retention_rows_trimmed(rows: u64) {
    metrics::counter!(RETENTION_ROWS_TRIMMED_TOTAL).increment(rows);
}

/// Per-partition lag; the label is bounded by the topic's partition count.
pub fn consumer_lag(partition: i32, lag: i64) {
    metrics::gauge!(CONSUMER_LAG_MESSAGES, "partition" => partition.to_string())
        .set(lag.max(0) as f64);
}

/// Cumulative URL cache stats (from `Enricher::url_cache_stats`).
pub fn url_cache(hits: u64, misses: u64) {
    metrics::counter!(URL_CACHE_LOOKUPS_TOTAL, "result" => "hit").absolute(hits);
    metrics::counter!(URL_CACHE_LOOKUPS_TOTAL, "result" => "miss").absolute(misses);
}

/// Cumulative UA cache stats (from `Enricher::ua_cache_stats`).
pub fn ua_cache(hits: u64, misses: u64) {
    metrics::counter!(UA_CACHE_LOOKUPS_TOTAL, "result" => "hit").absolute(hits);
    metrics::counter!(UA_CACHE_LOOKUPS_TOTAL, "result" => "miss").absolute(misses);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    use super::*;

    /// Keeps counters (and gauges as f64 bits) by `name{labels}`.
    #[derive(Default)]
    struct Capture(Mutex<BTreeMap<String, Arc<AtomicU64>>>);

    impl Capture {
        fn cell(&self, key: &Key) -> Arc<AtomicU64> {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            self.0.lock().unwrap().entry(name).or_default().clone()
        }
        fn get(&self, name: &str) -> Option<u64> {
            self.0
                .lock()
                .unwrap()
                .get(name)
                .map(|v| v.load(Ordering::Relaxed))
        }
    }

    impl Recorder for Capture {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.cell(key))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.cell(key))
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn a_poll_tally_is_recorded_once_and_reset() {
        let capture = Capture::default();
        metrics::with_local_recorder(&capture, || {
            let mut tally = PollTally {
                consumed: 5,
                decoded: 4,
                ..PollTally::default()
            };
            for observed in [
                Observed::Opened,
                Observed::Late,
                Observed::Redelivered,
                Observed::Replayed,
            ] {
                tally.observed(observed);
            }
            tally.record();
            assert_eq!(tally, PollTally::default());
            dead_lettered("corrupt", 1);
            windows(3, 200);
            windows_closed(CloseReason::Forced, 2);
        });
        assert_eq!(capture.get("processor_messages_consumed_total{}"), Some(5));
        assert_eq!(capture.get("processor_messages_decoded_total{}"), Some(4));
        assert_eq!(capture.get("processor_messages_late_total{}"), Some(1));
        assert_eq!(
            capture.get("processor_messages_redelivered_total{}"),
            Some(1)
        );
        assert_eq!(capture.get("processor_messages_replayed_total{}"), Some(1));
        assert_eq!(
            capture.get("processor_messages_dead_lettered_total{reason=corrupt}"),
            Some(1)
        );
        assert_eq!(
            capture.get("processor_windows_closed_total{reason=forced}"),
            Some(2)
        );
        let bound = capture.get("processor_windows_bound{}").map(f64::from_bits);
        assert_eq!(bound, Some(200.0));
    }
}
