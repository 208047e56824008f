//! Per-partition dedup windows: redelivered messages are counted once, and floods of the same
//! violation from the same client become one row per (dedup key, window) with an exact count.
//!
//! # Model
//! Ingest keys every Kafka message by its dedup key, so all reports of a group live on one
//! partition and each partition is deduplicated on its own, in offset order. A message belongs to
//! the window `floor(received_at_ms / window) * window` of its RECEIVED time (set by ingest, not
//! the processor's clock), so a replay of the same offsets yields the same windows.
//!
//! Each partition keeps a watermark `W` (max `received_at_ms` seen) and a closing horizon `H`
//! (aligned on the window): every window starting before `H` is closed, every window at or after
//! `H` is open. `H` only moves forward, for three reasons:
//! - watermark: a window closes once `W > window_end + grace`;
//! - idle: no message on the partition for `idle_close` (wall clock, passed to
//!   [`Dedup::drain_closed`]) closes all its windows, so a quiet partition still emits and commits;
//! - bound: opening a window beyond `max_open_windows` force-closes the oldest window AND every
//!   other window up to its end (moving `H`), so closed windows never interleave with open ones.
//!
//! A message whose window is already behind `H` (late: out of order by more than the grace, or
//! after an early close) is counted in the window at `H`, the oldest one still open for its key.
//! Counts stay exact (every message is counted in exactly one row) at the price of a late report
//! landing in a later window than its received time says. The alternative, re-opening the closed
//! window, would emit the same row id with a partial count that a restart cannot reproduce.
//!
//! # Commit and replay
//! [`Dedup::commit_point`] is the offset to commit for a partition: the first offset of its oldest
//! open window (else the last seen offset + 1), with `(H, W, horizon_since)` encoded in the commit
//! metadata ([`CommitPoint::metadata`]). After a crash or rebalance, [`Dedup::resume`] restores
//! them and the consumer replays from the committed offset. A replayed message before
//! `horizon_since` whose window is behind `H` was counted in a row already written (its window
//! closed before the commit), so it is skipped; every other message is processed as the first time.
//! The restored state therefore equals the original one after the last message the commit point
//! covered, and the replay emits exactly the rows (same row id, same count) the uninterrupted run
//! would have: the tests below check this at every crash position.
//!
//! Kafka keeps the metadata with the committed offset; tansu 0.6 answers OffsetFetch with empty
//! metadata, so there the points must be stored elsewhere (e.g. a checkpoint row written to
//! ClickHouse before the offset commit, looked up by the committed offset).
//!
//! Without the metadata (first start, metadata lost, or window size changed), replay starts from a
//! blank horizon: a window that straddled the commit offset is re-emitted with a partial count
//! under the same row id, which `ReplacingMergeTree(version = occurrences)` discards in favour of
//! the full row; but a late message that was counted in a later window lands in its own window
//! again, so counts are exact only with the metadata (the fallback is off by the late messages
//! of the replayed range, which the grace keeps rare).
//!
//! Known trade-offs:
//! - A crash between a write and its commit re-emits the same rows (same id, same count): the
//!   `reports` table absorbs that, anything counting inserts (a materialized view) does not.
//! - An idle close depends on wall-clock gaps, which a replay does not reproduce: if a crash
//!   loses the commit that followed an idle close, the replay may build that window with more
//!   messages; it is re-emitted under the same row id with a higher count, which wins the merge.
//!   This holds as long as no later batch of the partition was written before the crash, so the
//!   loop must not write the next batch until the previous commit succeeded.
//! - Adding partitions to the topic moves keys between partitions: during that change a window
//!   can be counted on two partitions under one row id, and the merge keeps the larger part.
//! - `received_at_ms` comes from ingest's clock: a host with a clock far ahead pushes the
//!   watermark and closes windows early (counts stay exact, windows get fuller later).
//!
//! - bytes: opening a window whose first message would take the partition's held bytes past
//!   `max_bytes` force-closes the oldest windows the same way, until it fits (or none is left).
//!
//! Memory: per assigned partition, at most `max_open_windows` open windows holding at most
//! `max_bytes` (plus the one message that opened the newest window, if it alone is bigger).
//! A window holds its first message ([`Held`]: a binary payload as its bytes, a JSON one
//! decoded); what it holds is counted with [`Incoming::held_bytes`] (the payload's length, or
//! [`schemas::ReportMessage::heap_bytes`], an estimate that counts a JSON tree node by node, so
//! a message already in Kafka with a huge unknown-field tree, written before ingest's
//! per-report cap or by a hostile producer, closes windows early instead of exhausting memory)
//! plus the window's own share of its hash table. The count is a function of the message alone, so the bound
//! closes the same windows on a replay. Closed windows wait in a queue until the next
//! [`Dedup::drain_closed`], which the consume loop calls after every poll.
//!
//! Layout: per partition, the open windows are grouped by window start (a `BTreeMap`, ordered so
//! closing by horizon is a split; only a few starts are open at once), each start holding its
//! windows in a `HashMap` by dedup key. A message that joins an open window costs one small
//! `BTreeMap` lookup and one hash lookup, and moves nothing but counters.

mod held;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

pub use held::{FirstMessage, Held, HeldJson, Incoming};

/// Reports older than this (Reporting API `age`) are treated as this old: bounds event times.
pub const MAX_REPORT_AGE_MS: u64 = 24 * 60 * 60 * 1000;

/// When the report was generated: received minus its bounded `age`.
pub fn event_time_ms(received_at_ms: u64, age_ms: Option<u64>) -> u64 {
    let age = age_ms.unwrap_or(0).min(MAX_REPORT_AGE_MS);
    received_at_ms.saturating_sub(age)
}

/// The deterministic ClickHouse row id of a (dedup key, window start) pair.
pub fn row_id(dedup_key: u64, window_start_ms: u64) -> u64 {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&dedup_key.to_le_bytes());
    bytes[8..].copy_from_slice(&window_start_ms.to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// Dedup settings; see `Config` for units and defaults.
#[derive(Debug, Clone)]
pub struct DedupConfig {
    /// Window length (non-zero whole milliseconds).
    pub window: Duration,
    /// How far the watermark must pass a window's end before it closes.
    pub grace: Duration,
    /// Wall-clock silence on a partition after which all its windows close.
    pub idle_close: Duration,
    /// Open windows allowed per assigned partition.
    pub max_open_windows: NonZeroUsize,
    /// Estimated bytes the open windows of one partition may hold.
    pub max_bytes: NonZeroUsize,
}

/// Bytes counted for a window besides what it holds: its key and counters in the hash table,
/// twice (a table grows by doubling, so up to half its slots are empty), and the allocator's
/// header of the held message.
const WINDOW_OVERHEAD_BYTES: usize = 2 * (std::mem::size_of::<(u64, OpenWindow)>() + 1) + 16;

/// Why a window was closed (a bounded metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Watermark,
    Idle,
    Forced,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Watermark => "watermark",
            Self::Idle => "idle",
            Self::Forced => "forced",
        }
    }
}

/// What [`Dedup::observe`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Counted in a new window.
    Opened,
    /// Counted in an existing window.
    Merged,
    /// Its window was closed: counted in the oldest open window of its key instead.
    Late,
    /// Offset at or below the last one seen on the partition: ignored.
    Redelivered,
    /// Replayed after a restore and already counted in a written row: ignored.
    Replayed,
}

/// A window that will not change any more: one output row.
#[derive(Debug, Clone)]
pub struct ClosedWindow {
    pub partition: i32,
    pub dedup_key: u64,
    pub window_start_ms: u64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub occurrences: u64,
    /// Min and max event time of the window's messages, Unix milliseconds.
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    /// The window's first message (lowest offset): the row's descriptive fields come from it.
    pub first: Held,
    pub reason: CloseReason,
}

impl ClosedWindow {
    pub fn row_id(&self) -> u64 {
        row_id(self.dedup_key, self.window_start_ms)
    }
}

/// The offset to commit for a partition and the dedup state needed to replay from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitPoint {
    /// Next offset to consume (Kafka commit semantics).
    pub offset: i64,
    pub window_ms: u64,
    pub horizon_ms: u64,
    pub watermark_ms: u64,
    /// First offset processed under the current horizon.
    pub horizon_since: i64,
}

const METADATA_TAG: &str = "palisade-dedup-v1";

impl CommitPoint {
    /// The Kafka commit metadata string carrying the dedup state.
    pub fn metadata(&self) -> String {
        format!(
            "{METADATA_TAG};{};{};{};{}",
            self.window_ms, self.horizon_ms, self.watermark_ms, self.horizon_since
        )
    }

    /// Parses a committed offset and its metadata; `None` when the metadata is not ours.
    pub fn from_committed(offset: i64, metadata: &str) -> Option<Self> {
        let mut parts = metadata.split(';');
        if parts.next()? != METADATA_TAG {
            return None;
        }
        let window_ms = parts.next()?.parse().ok()?;
        let horizon_ms = parts.next()?.parse().ok()?;
        let watermark_ms = parts.next()?.parse().ok()?;
        let horizon_since = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Self {
            offset,
            window_ms,
            horizon_ms,
            watermark_ms,
            horizon_since,
        })
    }
}

#[derive(Debug)]
struct OpenWindow {
    first_offset: i64,
    last_offset: i64,
    occurrences: u64,
    first_seen_ms: u64,
    last_seen_ms: u64,
    first: Held,
}

/// The open windows of one window start. They close together (a horizon is aligned on the
/// window), so their bytes and oldest offset are kept per start, not per window.
#[derive(Debug)]
struct Start {
    by_key: HashMap<u64, OpenWindow>,
    /// What these windows are counted for in their partition's `bytes`.
    bytes: usize,
    /// The `first_offset` of the window opened first here, which is their minimum: offsets only
    /// grow on a partition, and no window leaves a start before the others.
    oldest_first_offset: i64,
}

#[derive(Debug, Default)]
struct PartitionState {
    /// Open windows by window start, then dedup key.
    windows: BTreeMap<u64, Start>,
    /// Number of open windows (over every start).
    open: usize,
    /// Sum of the starts' `bytes`.
    bytes: usize,
    /// The smallest `first_offset` of the open windows (`None` when there are none), kept up to
    /// date so [`Dedup::commit_point`], called for every partition on every tick, does not scan
    /// every open window: that scan was a quarter of the processor's instructions with 1,000,000
    /// keys (benches/README.md, issue 13). A window opens at the partition's newest offset, so
    /// opening one never lowers it; only [`advance`] (closing windows) recomputes it.
    oldest_first_offset: Option<i64>,
    last_offset: Option<i64>,
    watermark_ms: u64,
    horizon_ms: u64,
    horizon_since: i64,
    last_activity: Option<Instant>,
}

/// Dedup state of every assigned partition.
#[derive(Debug)]
pub struct Dedup {
    config: DedupConfig,
    window_ms: u64,
    grace_ms: u64,
    partitions: HashMap<i32, PartitionState>,
    closed: Vec<ClosedWindow>,
}

impl Dedup {
    pub fn new(config: DedupConfig) -> Self {
        let window_ms = u64::try_from(config.window.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let grace_ms = u64::try_from(config.grace.as_millis()).unwrap_or(u64::MAX);
        Self {
            config,
            window_ms,
            grace_ms,
            partitions: HashMap::new(),
            closed: Vec::new(),
        }
    }

    /// Starts (or restarts) a partition, from a committed point when there is one.
    pub fn resume(&mut self, partition: i32, from: Option<CommitPoint>) {
        let mut state = PartitionState::default();
        if let Some(point) = from.filter(|p| p.window_ms == self.window_ms) {
            state.last_offset = Some(point.offset.saturating_sub(1));
            state.watermark_ms = point.watermark_ms;
            state.horizon_ms = point.horizon_ms;
            state.horizon_since = point.horizon_since;
        }
        self.partitions.insert(partition, state);
    }

    /// Drops a revoked partition's state; its open windows will be rebuilt by the next owner.
    pub fn revoke(&mut self, partition: i32) {
        self.partitions.remove(&partition);
        self.closed.retain(|w| w.partition != partition);
    }

    /// Marks an offset consumed without counting it (a dead-lettered message).
    pub fn skip(&mut self, partition: i32, offset: i64, now: Instant) {
        let state = self.partitions.entry(partition).or_default();
        if state.last_offset.is_none_or(|last| offset > last) {
            state.last_offset = Some(offset);
            state.last_activity = Some(now);
        }
    }

    /// Counts one message of a partition, in offset order.
    pub fn observe<'a>(
        &mut self,
        partition: i32,
        offset: i64,
        dedup_key: u64,
        message: impl Into<Incoming<'a>>,
        now: Instant,
    ) -> Observed {
        let message = message.into();
        let (window_ms, grace_ms, bound, max_bytes) = (
            self.window_ms,
            self.grace_ms,
            self.config.max_open_windows.get(),
            self.config.max_bytes.get(),
        );
        let state = self.partitions.entry(partition).or_default();
        if state.last_offset.is_some_and(|last| offset <= last) {
            return Observed::Redelivered;
        }
        state.last_offset = Some(offset);
        state.last_activity = Some(now);

        let window_start = message.received_at_ms / window_ms * window_ms;
        state.watermark_ms = state.watermark_ms.max(message.received_at_ms);
        let by_watermark = align_up(
            state.watermark_ms.saturating_sub(window_ms + grace_ms),
            window_ms,
        );
        advance(
            state,
            partition,
            by_watermark,
            offset,
            CloseReason::Watermark,
            &mut self.closed,
        );

        if window_start < state.horizon_ms && offset < state.horizon_since {
            return Observed::Replayed;
        }
        let event_ms = event_time_ms(message.received_at_ms, message.age_ms);
        let observed = |late: bool, opened: bool| match (late, opened) {
            (true, _) => Observed::Late,
            (false, true) => Observed::Opened,
            (false, false) => Observed::Merged,
        };
        // Most messages join an open window: one lookup, nothing held.
        let start = window_start.max(state.horizon_ms);
        if let Some(window) = state
            .windows
            .get_mut(&start)
            .and_then(|s| s.by_key.get_mut(&dedup_key))
        {
            window.merge(offset, event_ms);
            return observed(window_start < state.horizon_ms, false);
        }
        // Force-close the oldest windows while a new window would pass either bound. Each
        // round closes at least the oldest window, so this ends; the message then joins the
        // window at the (possibly moved) horizon.
        let bytes = message.held_bytes() + WINDOW_OVERHEAD_BYTES;
        let start = loop {
            let start = window_start.max(state.horizon_ms);
            let exists = || {
                state
                    .windows
                    .get(&start)
                    .is_some_and(|s| s.by_key.contains_key(&dedup_key))
            };
            if state.open == 0 || exists() {
                break start;
            }
            let full = state.open >= bound;
            if !full && state.bytes.saturating_add(bytes) <= max_bytes {
                break start;
            }
            let oldest = state.windows.keys().next().copied().unwrap_or(0);
            advance(
                state,
                partition,
                oldest.saturating_add(window_ms),
                offset,
                CloseReason::Forced,
                &mut self.closed,
            );
        };
        let late = window_start < state.horizon_ms;
        let windows = state.windows.entry(start).or_insert_with(|| Start {
            by_key: HashMap::new(),
            bytes: 0,
            // Opened just below: its first window opens at this offset.
            oldest_first_offset: offset,
        });
        match windows.by_key.entry(dedup_key) {
            Entry::Occupied(mut window) => {
                window.get_mut().merge(offset, event_ms);
                observed(late, false)
            }
            Entry::Vacant(slot) => {
                windows.bytes += bytes;
                state.bytes += bytes;
                state.open += 1;
                // Offsets only grow on a partition, so an existing minimum stays the minimum.
                state.oldest_first_offset.get_or_insert(offset);
                slot.insert(OpenWindow {
                    first_offset: offset,
                    last_offset: offset,
                    occurrences: 1,
                    first_seen_ms: event_ms,
                    last_seen_ms: event_ms,
                    first: message.hold(),
                });
                observed(late, true)
            }
        }
    }

    /// Closes idle partitions' windows and returns every window closed since the last call.
    pub fn drain_closed(&mut self, now: Instant) -> Vec<ClosedWindow> {
        let (window_ms, idle) = (self.window_ms, self.config.idle_close);
        for (&partition, state) in &mut self.partitions {
            let idle_for = state
                .last_activity
                .map(|at| now.saturating_duration_since(at));
            if state.windows.is_empty() || idle_for.is_none_or(|d| d < idle) {
                continue;
            }
            let newest = state.windows.keys().next_back().copied().unwrap_or(0);
            let since = state.last_offset.map_or(0, |o| o + 1);
            let horizon = newest.saturating_add(window_ms);
            advance(
                state,
                partition,
                horizon,
                since,
                CloseReason::Idle,
                &mut self.closed,
            );
        }
        std::mem::take(&mut self.closed)
    }

    /// Time the consume loop spent NOT consuming (a blocking ClickHouse call, a back-pressure
    /// pause, the group check's describe calls, an assignment's lookups) is not idleness: it
    /// moves every partition's last activity forward by `by`, so a stalled loop does not
    /// idle-close windows whose messages are still waiting in Kafka.
    pub fn discount_idle(&mut self, by: Duration) {
        for state in self.partitions.values_mut() {
            state.last_activity = state
                .last_activity
                .map(|at| at.checked_add(by).unwrap_or(at));
        }
    }

    /// The point to commit for a partition once every drained row has been written. `None`
    /// while the partition has closed windows not drained yet: their messages lie before the
    /// point and replay would skip them, so their rows must be in the batch first.
    pub fn commit_point(&self, partition: i32) -> Option<CommitPoint> {
        let state = self.partitions.get(&partition)?;
        if self.closed.iter().any(|w| w.partition == partition) {
            return None;
        }
        let oldest_open = state.oldest_first_offset;
        debug_assert_eq!(
            oldest_open,
            state
                .windows
                .values()
                .flat_map(|s| s.by_key.values())
                .map(|w| w.first_offset)
                .min(),
            "the cached oldest offset is the open windows' minimum"
        );
        let offset = oldest_open.or(state.last_offset.map(|o| o + 1))?;
        Some(CommitPoint {
            offset,
            window_ms: self.window_ms,
            horizon_ms: state.horizon_ms,
            watermark_ms: state.watermark_ms,
            horizon_since: state.horizon_since,
        })
    }

    /// [`Self::commit_point`]'s offset alone.
    pub fn commit_offset(&self, partition: i32) -> Option<i64> {
        self.commit_point(partition).map(|p| p.offset)
    }

    /// Partitions with state, for committing after a batch.
    pub fn partitions(&self) -> impl Iterator<Item = i32> + '_ {
        self.partitions.keys().copied()
    }

    /// Open windows over all partitions (gauge).
    pub fn open_windows(&self) -> usize {
        self.partitions.values().map(|s| s.open).sum()
    }

    /// Estimated bytes held by the open windows over all partitions (gauge).
    pub fn held_bytes(&self) -> usize {
        self.partitions.values().map(|s| s.bytes).sum()
    }

    /// The configured bound on held bytes over all assigned partitions (gauge).
    pub fn bytes_bound(&self) -> usize {
        self.config
            .max_bytes
            .get()
            .saturating_mul(self.partitions.len())
    }

    /// The configured bound on open windows over all assigned partitions (gauge).
    pub fn windows_bound(&self) -> usize {
        self.config
            .max_open_windows
            .get()
            .saturating_mul(self.partitions.len())
    }
}

fn align_up(value: u64, step: u64) -> u64 {
    value.div_ceil(step).saturating_mul(step)
}

/// Moves a partition's horizon forward, closing every window that starts before it.
fn advance(
    state: &mut PartitionState,
    partition: i32,
    horizon: u64,
    since: i64,
    reason: CloseReason,
    closed: &mut Vec<ClosedWindow>,
) {
    if horizon <= state.horizon_ms {
        return;
    }
    state.horizon_ms = horizon;
    state.horizon_since = since;
    let still_open = state.windows.split_off(&horizon);
    let done = std::mem::replace(&mut state.windows, still_open);
    // One pass over the starts that stay open (a handful).
    let (mut bytes, mut open, mut oldest) = (0, 0, None::<i64>);
    for start in state.windows.values() {
        bytes += start.bytes;
        open += start.by_key.len();
        let first = start.oldest_first_offset;
        oldest = Some(oldest.map_or(first, |o| o.min(first)));
    }
    state.bytes = bytes;
    state.open = open;
    state.oldest_first_offset = oldest;
    closed.reserve(done.values().map(|s| s.by_key.len()).sum());
    for (window_start_ms, start) in done {
        closed.extend(start.by_key.into_iter().map(|(dedup_key, w)| ClosedWindow {
            partition,
            dedup_key,
            window_start_ms,
            first_offset: w.first_offset,
            last_offset: w.last_offset,
            occurrences: w.occurrences,
            first_seen_ms: w.first_seen_ms,
            last_seen_ms: w.last_seen_ms,
            first: w.first,
            reason,
        }));
    }
}

impl OpenWindow {
    /// Counts one more message of this window.
    fn merge(&mut self, offset: i64, event_ms: u64) {
        self.last_offset = offset;
        self.occurrences += 1;
        self.first_seen_ms = self.first_seen_ms.min(event_ms);
        self.last_seen_ms = self.last_seen_ms.max(event_ms);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
