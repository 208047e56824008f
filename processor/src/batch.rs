//! Batch policy: when to write the accumulated rows, and which offsets may be committed after.
//!
//! Commit points travel with the batch: a point recorded after some rows were pushed depends only
//! on those rows (and earlier ones), so committing the points of a batch once its rows are written
//! never skips an unwritten row. The consume loop checks [`Batcher::should_flush`] after every
//! tick; one tick pushes every window closed since the last one, so a batch can exceed
//! `max_rows` / `max_bytes` by what one tick closes (bounded by `max_open_windows` per
//! partition), and the writer splits it into inserts of at most `max_rows` rows.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use crate::dedup::{ClosedWindow, CommitPoint};
use crate::row::{ReportRow, Rows};

/// Batch limits; see `Config` for units and defaults.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_rows: NonZeroUsize,
    /// RowBinary bytes of the rows ([`Rows::byte_len`]).
    pub max_bytes: NonZeroUsize,
    /// Age of the oldest row (or commit point) after which the batch is written anyway.
    pub max_age: Duration,
}

/// Where a row's occurrences came from: one partition (dedup is per partition), the offset of
/// the window's first message (the one the row's descriptive fields come from) and of its last.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowSource {
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

impl From<&ClosedWindow> for RowSource {
    fn from(window: &ClosedWindow) -> Self {
        Self {
            partition: window.partition,
            first_offset: window.first_offset,
            last_offset: window.last_offset,
        }
    }
}

/// Rows to insert, then the offsets to commit once the insert is acknowledged.
#[derive(Debug, Default)]
pub struct Batch {
    /// The rows, already in RowBinary: what the inserts send, retries included.
    pub rows: Rows,
    /// `sources[i]` is where row `i` came from (for dead-lettering a row ClickHouse rejects).
    pub sources: Vec<RowSource>,
    /// Partition -> point to commit (with its dedup metadata).
    pub commits: BTreeMap<i32, CommitPoint>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.commits.is_empty()
    }

    /// RowBinary bytes of the rows.
    pub fn bytes(&self) -> usize {
        self.rows.byte_len()
    }
}

/// Accumulates rows and commit points until a limit is reached.
#[derive(Debug)]
pub struct Batcher {
    limits: BatchLimits,
    current: Batch,
    started: Option<Instant>,
    /// Points handed over in earlier batches: recording the same point again is a no-op, so an
    /// idle partition does not cause a commit-only batch every `max_age`.
    handed_over: BTreeMap<i32, CommitPoint>,
}

impl Batcher {
    pub fn new(limits: BatchLimits) -> Self {
        Self {
            limits,
            current: Batch::default(),
            started: None,
            handed_over: BTreeMap::new(),
        }
    }

    /// Adds the rows `write` appends (the enricher appends one per closed window), all from
    /// `source`.
    pub fn push(&mut self, source: RowSource, now: Instant, write: impl FnOnce(&mut Rows)) {
        let before = self.current.rows.len();
        write(&mut self.current.rows);
        let added = self.current.rows.len() - before;
        if added > 0 {
            self.started.get_or_insert(now);
            self.current
                .sources
                .extend(std::iter::repeat_n(source, added));
        }
    }

    /// Adds a typed row.
    pub fn push_row(&mut self, row: &ReportRow, source: RowSource, now: Instant) {
        self.push(source, now, |rows| rows.push(row));
    }

    /// Records the point a partition may commit once everything pushed so far is written.
    pub fn record_commit(&mut self, partition: i32, point: CommitPoint, now: Instant) {
        let previous = self
            .current
            .commits
            .get(&partition)
            .or(self.handed_over.get(&partition));
        if previous.is_some_and(|p| *p == point) {
            return;
        }
        self.started.get_or_insert(now);
        self.current.commits.insert(partition, point);
    }

    /// A revoked partition's offsets must not be committed by this instance any more.
    pub fn forget_partition(&mut self, partition: i32) {
        self.current.commits.remove(&partition);
        self.handed_over.remove(&partition);
    }

    pub fn should_flush(&self, now: Instant) -> bool {
        self.current.rows.len() >= self.limits.max_rows.get()
            || self.current.bytes() >= self.limits.max_bytes.get()
            || self.deadline().is_some_and(|deadline| now >= deadline)
    }

    /// When the current batch becomes due by age (for the loop's timer); `None` when empty.
    pub fn deadline(&self) -> Option<Instant> {
        self.started.map(|started| started + self.limits.max_age)
    }

    pub fn len(&self) -> usize {
        self.current.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }

    /// Hands over the current batch and starts a new one.
    pub fn take(&mut self) -> Batch {
        self.started = None;
        let batch = std::mem::take(&mut self.current);
        self.handed_over
            .extend(batch.commits.iter().map(|(p, c)| (*p, *c)));
        batch
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn limits(rows: usize, bytes: usize) -> BatchLimits {
        BatchLimits {
            max_rows: NonZeroUsize::new(rows).unwrap(),
            max_bytes: NonZeroUsize::new(bytes).unwrap(),
            max_age: Duration::from_secs(1),
        }
    }

    fn point(offset: i64) -> CommitPoint {
        CommitPoint {
            offset,
            window_ms: 60_000,
            horizon_ms: 0,
            watermark_ms: 0,
            horizon_since: 0,
        }
    }

    #[test]
    fn flushes_on_row_count() {
        let t0 = Instant::now();
        let mut batcher = Batcher::new(limits(3, usize::MAX));
        for _ in 0..2 {
            batcher.push_row(&ReportRow::default(), RowSource::default(), t0);
        }
        assert!(!batcher.should_flush(t0));
        batcher.push_row(&ReportRow::default(), RowSource::default(), t0);
        assert!(batcher.should_flush(t0));
        assert_eq!(batcher.take().rows.len(), 3);
        assert!(batcher.is_empty() && !batcher.should_flush(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn flushes_on_rowbinary_bytes() {
        let t0 = Instant::now();
        let row = ReportRow {
            original_policy: "p".repeat(500),
            ..ReportRow::default()
        };
        let row_bytes = Rows::from(std::slice::from_ref(&row)).byte_len();
        let mut batcher = Batcher::new(limits(1000, row_bytes * 2));
        batcher.push_row(&row, RowSource::default(), t0);
        assert!(!batcher.should_flush(t0));
        batcher.push_row(&row, RowSource::default(), t0);
        assert!(batcher.should_flush(t0));
        assert_eq!(batcher.take().bytes(), row_bytes * 2);
    }

    #[test]
    fn flushes_on_age_of_the_oldest_entry() {
        let t0 = Instant::now();
        let mut batcher = Batcher::new(limits(1000, usize::MAX));
        assert_eq!(batcher.deadline(), None);
        batcher.push_row(&ReportRow::default(), RowSource::default(), t0);
        batcher.push_row(
            &ReportRow::default(),
            RowSource::default(),
            t0 + Duration::from_millis(900),
        );
        assert_eq!(batcher.deadline(), Some(t0 + Duration::from_secs(1)));
        assert!(!batcher.should_flush(t0 + Duration::from_millis(999)));
        assert!(batcher.should_flush(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn commit_points_travel_with_the_batch_even_without_rows() {
        let t0 = Instant::now();
        let mut batcher = Batcher::new(limits(1000, usize::MAX));
        batcher.record_commit(0, point(5), t0);
        batcher.record_commit(0, point(9), t0);
        batcher.record_commit(1, point(3), t0);
        batcher.record_commit(2, point(4), t0);
        batcher.forget_partition(2);
        assert!(
            batcher.should_flush(t0 + Duration::from_secs(1)),
            "commits alone age out"
        );
        let batch = batcher.take();
        assert!(batch.rows.is_empty() && !batch.is_empty());
        let offsets: Vec<_> = batch.commits.iter().map(|(p, c)| (*p, c.offset)).collect();
        assert_eq!(offsets, vec![(0, 9), (1, 3)]);
        assert!(batcher.take().is_empty(), "points are handed over once");
    }

    #[test]
    fn an_unchanged_point_is_not_committed_again() {
        let t0 = Instant::now();
        let mut batcher = Batcher::new(limits(1000, usize::MAX));
        batcher.record_commit(0, point(5), t0);
        let _ = batcher.take();
        batcher.record_commit(0, point(5), t0);
        assert!(batcher.is_empty() && batcher.deadline().is_none());
        batcher.record_commit(0, point(6), t0);
        assert_eq!(batcher.take().commits[&0].offset, 6);
        // After a revoke and re-assign the same point is committed again.
        batcher.forget_partition(0);
        batcher.record_commit(0, point(6), t0);
        assert!(!batcher.is_empty());
    }
}
