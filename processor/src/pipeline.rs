//! The synchronous core of the consume loop: record -> decode -> dedup -> (on tick) enrich ->
//! batch, plus the partition bookkeeping of rebalances. No I/O and no clock: the async loop in
//! [`crate::run`] feeds it records and `now`, writes the batches it hands out, and commits.
//!
//! Order within a tick: drain the closed windows, push their rows, THEN record each partition's
//! commit point, so a point always travels in the same batch as (or after) the rows it depends
//! on (see [`crate::batch`]). Commit points are only computed on a tick (not per record): the
//! point scans a partition's open windows.

use std::collections::BTreeSet;
use std::time::Instant;

use crate::batch::{Batch, BatchLimits, Batcher, RowSource};
use crate::consume::Record;
use crate::decode::{decode, DecodeFailure};
use crate::dedup::{CloseReason, CommitPoint, Dedup, DedupConfig};
use crate::enrich::Enricher;
use crate::metrics::{self, PollTally};

/// What the pipeline did with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Counted (or recognised as a redelivery/replay) by dedup.
    Observed,
    /// The partition is not assigned to this instance (any more): ignored; its owner reads it.
    NotAssigned,
    /// Undecodable: dead-letter it, then call [`Pipeline::skip`].
    Undecodable(DecodeFailure),
}

/// Dedup, enrichment and batching of the assigned partitions.
#[derive(Debug)]
pub struct Pipeline {
    dedup: Dedup,
    enricher: Enricher,
    batcher: Batcher,
    assigned: BTreeSet<i32>,
    tally: PollTally,
}

impl Pipeline {
    pub fn new(dedup: DedupConfig, limits: BatchLimits, enricher: Enricher) -> Self {
        Self {
            dedup: Dedup::new(dedup),
            enricher,
            batcher: Batcher::new(limits),
            assigned: BTreeSet::new(),
            tally: PollTally::default(),
        }
    }

    /// A partition was assigned: restore its dedup state from its commit point, if any.
    pub fn assign(&mut self, partition: i32, from: Option<CommitPoint>) {
        self.dedup.resume(partition, from);
        self.assigned.insert(partition);
    }

    /// A partition was revoked: drop its state and its uncommitted offsets. Rows of it already
    /// batched are still written (harmless: the next owner re-emits the same row ids).
    pub fn revoke(&mut self, partition: i32) {
        self.dedup.revoke(partition);
        self.batcher.forget_partition(partition);
        self.assigned.remove(&partition);
    }

    /// The enricher (its cache statistics, for the benchmarks).
    pub fn enricher(&self) -> &Enricher {
        &self.enricher
    }

    pub fn assigned(&self) -> impl Iterator<Item = i32> + '_ {
        self.assigned.iter().copied()
    }

    pub fn is_assigned(&self, partition: i32) -> bool {
        self.assigned.contains(&partition)
    }

    /// Decode and count one record.
    pub fn record(&mut self, record: &Record, now: Instant) -> Handled {
        if !self.assigned.contains(&record.partition) {
            return Handled::NotAssigned;
        }
        self.tally.consumed += 1;
        match decode(record.payload.as_deref(), record.key.as_deref()) {
            Ok(decoded) => {
                self.tally.decoded += 1;
                let observed = self.dedup.observe(
                    record.partition,
                    record.offset,
                    decoded.dedup_key,
                    decoded.message.into_incoming(),
                    now,
                );
                self.tally.observed(observed);
                Handled::Observed
            }
            Err(failure) => Handled::Undecodable(failure),
        }
    }

    /// A dead-lettered record is consumed without being counted.
    pub fn skip(&mut self, partition: i32, offset: i64, now: Instant) {
        if self.assigned.contains(&partition) {
            self.dedup.skip(partition, offset, now);
        }
    }

    /// Close due windows, turn them into rows, record commit points, record metrics.
    pub fn tick(&mut self, now: Instant) {
        let closed = self.dedup.drain_closed(now);
        let (mut rows, mut occurrences) = (0u64, 0u64);
        let mut by_reason = [0u64; 3];
        for window in closed {
            rows += 1;
            occurrences += window.occurrences;
            by_reason[reason_index(window.reason)] += 1;
            let source = RowSource::from(&window);
            let enricher = &mut self.enricher;
            self.batcher
                .push(source, now, |rows| enricher.write_row(&window, rows));
        }
        for partition in &self.assigned {
            if let Some(point) = self.dedup.commit_point(*partition) {
                self.batcher.record_commit(*partition, point, now);
            }
        }
        if rows > 0 {
            metrics::rows_emitted(rows, occurrences);
            for (reason, n) in REASONS.into_iter().zip(by_reason) {
                metrics::windows_closed(reason, n);
            }
        }
        self.tally.record();
        metrics::windows(self.dedup.open_windows(), self.dedup.windows_bound());
        metrics::window_bytes(self.dedup.held_bytes(), self.dedup.bytes_bound());
        let (hits, misses) = self.enricher.ua_cache_stats();
        metrics::ua_cache(hits, misses);
        let (hits, misses) = self.enricher.url_cache_stats();
        metrics::url_cache(hits, misses);
    }

    /// The loop did not consume for `by` (see [`Dedup::discount_idle`]).
    pub fn discount_idle(&mut self, by: std::time::Duration) {
        self.dedup.discount_idle(by);
    }

    /// Whether the current batch is due (call after [`Pipeline::tick`]).
    pub fn should_flush(&self, now: Instant) -> bool {
        self.batcher.should_flush(now)
    }

    /// When the current batch becomes due by age.
    pub fn deadline(&self) -> Option<Instant> {
        self.batcher.deadline()
    }

    /// Hand over the current batch (possibly empty).
    pub fn take(&mut self) -> Batch {
        self.batcher.take()
    }

    pub fn open_windows(&self) -> usize {
        self.dedup.open_windows()
    }
}

const REASONS: [CloseReason; 3] = [
    CloseReason::Watermark,
    CloseReason::Idle,
    CloseReason::Forced,
];

fn reason_index(reason: CloseReason) -> usize {
    match reason {
        CloseReason::Watermark => 0,
        CloseReason::Idle => 1,
        CloseReason::Forced => 2,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::num::NonZeroUsize;
    use std::time::Duration;

    use super::*;
    use crate::enrich::Geo;

    fn pipeline() -> Pipeline {
        let dedup = DedupConfig {
            window: Duration::from_secs(60),
            grace: Duration::from_secs(5),
            idle_close: Duration::from_secs(1),
            max_open_windows: NonZeroUsize::new(100).unwrap(),
            max_bytes: NonZeroUsize::new(usize::MAX).unwrap(),
        };
        let limits = BatchLimits {
            max_rows: NonZeroUsize::new(1000).unwrap(),
            max_bytes: NonZeroUsize::new(1 << 20).unwrap(),
            max_age: Duration::from_millis(100),
        };
        let enricher = Enricher::new(
            NonZeroUsize::new(10).unwrap(),
            NonZeroUsize::new(10).unwrap(),
            Geo::open(None).unwrap(),
        );
        Pipeline::new(dedup, limits, enricher)
    }

    fn record(partition: i32, offset: i64, payload: &[u8]) -> Record {
        Record {
            partition,
            offset,
            key: Some(b"00000000000000ff".to_vec()),
            payload: Some(payload.to_vec()),
        }
    }

    fn report(id: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "v": 1, "id": id, "received_at_ms": 1_700_000_000_000u64, "project_id": 3,
            "fingerprint": "00000000000000aa",
            "report": {"kind": "csp-violation", "wire": "legacy-csp", "blocked_class": "inline",
                       "effective_directive": "script-src-elem", "details": {"type": "none"}}
        }))
        .unwrap()
    }

    #[test]
    fn a_flood_becomes_one_row_and_its_commit_point_follows_it() {
        let t0 = Instant::now();
        let mut pipeline = pipeline();
        pipeline.assign(0, None);
        for offset in 0..5 {
            let handled = pipeline.record(&record(0, offset, &report(&format!("m{offset}"))), t0);
            assert_eq!(handled, Handled::Observed);
        }
        pipeline.tick(t0);
        assert!(pipeline.take().rows.is_empty(), "the window is still open");

        let later = t0 + Duration::from_secs(2);
        pipeline.tick(later);
        assert!(pipeline.should_flush(later + Duration::from_millis(100)));
        let batch = pipeline.take();
        assert_eq!(batch.rows.len(), 1);
        let row = batch.rows.row(0).unwrap();
        assert_eq!(
            (row.occurrences, row.dedup_key, row.message_id.as_str()),
            (5, 0xff, "m0")
        );
        assert_eq!(row.directive_family, "script-src");
        assert_eq!(
            batch.sources,
            [RowSource {
                partition: 0,
                first_offset: 0,
                last_offset: 4
            }],
            "the row knows the messages it counts"
        );
        assert_eq!(
            batch.commits[&0].offset, 5,
            "everything up to the end is covered"
        );
    }

    #[test]
    fn undecodable_and_unassigned_records_are_classified() {
        let t0 = Instant::now();
        let mut pipeline = pipeline();
        pipeline.assign(0, None);
        assert_eq!(
            pipeline.record(&record(1, 0, &report("x")), t0),
            Handled::NotAssigned
        );
        let Handled::Undecodable(failure) = pipeline.record(&record(0, 0, b"{not json"), t0) else {
            panic!("corrupt payload accepted");
        };
        assert_eq!(failure.reason, "corrupt");
        pipeline.skip(0, 0, t0);
        pipeline.tick(t0);
        let batch = pipeline.take();
        assert!(batch.rows.is_empty());
        assert_eq!(
            batch.commits[&0].offset, 1,
            "the dead-lettered record is committed past"
        );
    }

    #[test]
    fn a_revoked_partition_commits_nothing_more() {
        let t0 = Instant::now();
        let mut pipeline = pipeline();
        pipeline.assign(0, None);
        pipeline.record(&record(0, 0, &report("a")), t0);
        pipeline.revoke(0);
        pipeline.tick(t0 + Duration::from_secs(5));
        assert!(pipeline.take().is_empty());
        assert_eq!(pipeline.assigned().count(), 0);
    }
}
