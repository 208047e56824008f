//! Dedup tests: floods, boundaries, bounds, and the crash/replay property.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use schemas::ReportMessage;

use super::*;

const WINDOW_MS: u64 = 10_000;
const GRACE_MS: u64 = 2_000;

fn config(max_open: usize) -> DedupConfig {
    bounded(max_open, usize::MAX)
}

fn bounded(max_open: usize, max_bytes: usize) -> DedupConfig {
    DedupConfig {
        window: Duration::from_millis(WINDOW_MS),
        grace: Duration::from_millis(GRACE_MS),
        idle_close: Duration::from_secs(3600),
        max_open_windows: NonZeroUsize::new(max_open).unwrap(),
        max_bytes: NonZeroUsize::new(max_bytes).unwrap(),
    }
}

/// Built from JSON so new optional fields in the schema do not break the tests.
fn message(received_at_ms: u64, age_ms: Option<u64>) -> ReportMessage {
    let mut report = serde_json::json!({
        "kind": "csp-violation",
        "wire": "legacy-csp",
        "blocked_class": "inline",
        "details": {"type": "none"},
    });
    if let Some(age) = age_ms {
        report["age_ms"] = age.into();
    }
    serde_json::from_value(serde_json::json!({
        "v": 1,
        "id": format!("m-{received_at_ms}"),
        "received_at_ms": received_at_ms,
        "project_id": 7,
        "fingerprint": "00000000000000aa",
        "report": report,
    }))
    .unwrap()
}

/// A message whose size depends on its key (for the byte bound).
fn sized(key: u64, received_at_ms: u64) -> ReportMessage {
    let mut m = message(received_at_ms, None);
    m.report.document_url = Some("x".repeat(200 * key as usize));
    m
}

#[test]
fn a_flood_becomes_one_row_with_the_exact_count() {
    let t0 = Instant::now();
    let mut dedup = Dedup::new(config(100));
    for i in 0..250 {
        let observed = dedup.observe(0, i, 42, message(20_000 + i as u64 * 10, None), t0);
        assert_eq!(
            observed,
            if i == 0 {
                Observed::Opened
            } else {
                Observed::Merged
            }
        );
    }
    assert!(
        dedup.drain_closed(t0).is_empty(),
        "the window is still open"
    );
    // The watermark passing window end + grace closes it.
    dedup.observe(0, 250, 43, message(30_000 + GRACE_MS + 1, None), t0);
    let closed = dedup.drain_closed(t0);
    assert_eq!(closed.len(), 1);
    let w = &closed[0];
    assert_eq!(
        (w.dedup_key, w.window_start_ms, w.occurrences),
        (42, 20_000, 250)
    );
    assert_eq!((w.first_offset, w.last_offset), (0, 249));
    assert_eq!((w.first_seen_ms, w.last_seen_ms), (20_000, 22_490));
    assert_eq!(w.first.view().id, "m-20000");
    assert_eq!(w.reason, CloseReason::Watermark);
    assert_eq!(w.row_id(), row_id(42, 20_000));
}

#[test]
fn different_keys_and_partitions_stay_separate() {
    let t0 = Instant::now();
    let mut dedup = Dedup::new(config(100));
    dedup.observe(0, 0, 1, message(1_000, None), t0);
    dedup.observe(0, 1, 2, message(1_001, None), t0);
    dedup.observe(1, 0, 1, message(1_002, None), t0);
    dedup.observe(0, 2, 1, message(1_003, None), t0);
    assert_eq!(dedup.open_windows(), 3);
    assert_eq!(dedup.windows_bound(), 200);
    let rows = dedup.drain_closed(t0 + Duration::from_secs(3600));
    let mut counts: Vec<_> = rows
        .iter()
        .map(|w| (w.partition, w.dedup_key, w.occurrences))
        .collect();
    counts.sort();
    assert_eq!(counts, vec![(0, 1, 2), (0, 2, 1), (1, 1, 1)]);
}

#[test]
fn window_boundaries_follow_received_time() {
    let t0 = Instant::now();
    let mut dedup = Dedup::new(config(100));
    dedup.observe(0, 0, 9, message(9_999, None), t0);
    dedup.observe(0, 1, 9, message(10_000, None), t0);
    // Watermark exactly at window end + grace: not passed yet.
    dedup.observe(0, 2, 8, message(10_000 + GRACE_MS, None), t0);
    assert!(dedup.drain_closed(t0).is_empty());
    dedup.observe(0, 3, 8, message(10_000 + GRACE_MS + 1, None), t0);
    assert_eq!(
        dedup.commit_offset(0),
        None,
        "no commit before the closed window is drained"
    );
    let closed = dedup.drain_closed(t0);
    assert_eq!(closed.len(), 1);
    assert_eq!((closed[0].window_start_ms, closed[0].occurrences), (0, 1));
    assert_eq!(
        dedup.commit_offset(0),
        Some(1),
        "the oldest open window starts at offset 1"
    );
}

#[test]
fn event_time_is_received_minus_bounded_age() {
    assert_eq!(event_time_ms(50_000, Some(20_000)), 30_000);
    assert_eq!(event_time_ms(MAX_REPORT_AGE_MS + 5, Some(u64::MAX)), 5);
    assert_eq!(event_time_ms(10, Some(1_000)), 0);
    assert_eq!(event_time_ms(10, None), 10);
}

#[test]
fn redelivered_offsets_are_ignored() {
    let t0 = Instant::now();
    let mut dedup = Dedup::new(config(100));
    assert_eq!(
        dedup.observe(0, 5, 1, message(1_000, None), t0),
        Observed::Opened
    );
    assert_eq!(
        dedup.observe(0, 5, 1, message(1_000, None), t0),
        Observed::Redelivered
    );
    assert_eq!(
        dedup.observe(0, 3, 1, message(1_000, None), t0),
        Observed::Redelivered
    );
    dedup.skip(0, 6, t0);
    assert_eq!(
        dedup.observe(0, 6, 1, message(1_000, None), t0),
        Observed::Redelivered
    );
    let rows = dedup.drain_closed(t0 + Duration::from_secs(3600));
    assert_eq!(rows[0].occurrences, 1);
}

#[test]
fn idle_partitions_close_after_the_idle_timeout() {
    let t0 = Instant::now();
    let mut dedup = Dedup::new(config(100));
    dedup.observe(0, 0, 1, message(1_000, None), t0);
    dedup.observe(0, 1, 2, message(5_000, None), t0);
    assert!(dedup
        .drain_closed(t0 + Duration::from_secs(3599))
        .is_empty());
    assert_eq!(dedup.commit_offset(0), Some(0));
    let closed = dedup.drain_closed(t0 + Duration::from_secs(3600));
    assert_eq!(closed.len(), 2);
    assert!(closed.iter().all(|w| w.reason == CloseReason::Idle));
    assert_eq!(dedup.commit_offset(0), Some(2));
    // A message for a closed window is late: it is counted in the next open window.
    assert_eq!(
        dedup.observe(0, 2, 1, message(1_500, None), t0),
        Observed::Late
    );
    let late = dedup.drain_closed(t0 + Duration::from_secs(7200));
    assert_eq!((late[0].window_start_ms, late[0].occurrences), (10_000, 1));
}

#[test]
fn time_spent_not_consuming_is_not_idleness() {
    let t0 = Instant::now();
    let mut dedup = Dedup::new(config(100));
    dedup.observe(0, 0, 1, message(1_000, None), t0);
    // The loop was blocked for 10 minutes (a ClickHouse outage): not idle yet.
    dedup.discount_idle(Duration::from_secs(600));
    assert!(dedup
        .drain_closed(t0 + Duration::from_secs(3600))
        .is_empty());
    let closed = dedup.drain_closed(t0 + Duration::from_secs(4200));
    assert_eq!(closed.len(), 1);
}

#[test]
fn the_bound_force_closes_the_oldest_windows_first() {
    let t0 = Instant::now();
    let mut dedup = Dedup::new(config(2));
    dedup.observe(0, 0, 1, message(1_000, None), t0);
    dedup.observe(0, 1, 2, message(1_500, None), t0);
    dedup.observe(0, 2, 3, message(11_000, None), t0);
    let closed = dedup.drain_closed(t0);
    let mut keys: Vec<_> = closed.iter().map(|w| (w.dedup_key, w.reason)).collect();
    keys.sort_by_key(|k| k.0);
    assert_eq!(
        keys,
        vec![(1, CloseReason::Forced), (2, CloseReason::Forced)]
    );
    assert_eq!(dedup.open_windows(), 1);
    assert_eq!(dedup.commit_offset(0), Some(2));
    // Same key as a force-closed window: late, folded into the open horizon window.
    assert_eq!(
        dedup.observe(0, 3, 1, message(2_000, None), t0),
        Observed::Late
    );
    assert_eq!(dedup.open_windows(), 2);
}

/// Regression (RELIABILITY.md, the processor memory attack): windows whose first messages hold
/// huge JSON trees close once their estimated bytes pass `max_bytes`, whatever their number.
#[test]
fn the_byte_bound_closes_windows_holding_big_trees() {
    let t0 = Instant::now();
    let big = |received_at_ms: u64| {
        let mut m = message(received_at_ms, None);
        let numbers = serde_json::Value::Array(vec![0.into(); 10_000]);
        let fields = serde_json::json!({ "x": numbers });
        m.report.details = schemas::Details::Fields(fields.as_object().cloned().unwrap());
        m
    };
    let one = big(0).heap_bytes();
    assert!(one > 10_000 * 8, "the tree is counted node by node: {one}");
    let mut dedup = Dedup::new(bounded(1_000, 3 * one));
    for key in 0..10u64 {
        dedup.observe(0, key as i64, key, big(1_000 + key), t0);
        assert!(dedup.held_bytes() <= 3 * one + 3 * WINDOW_OVERHEAD_BYTES);
    }
    let closed = dedup.drain_closed(t0);
    assert!(closed.len() >= 7, "{}", closed.len());
    assert!(closed.iter().all(|w| w.reason == CloseReason::Forced));
    let rest = dedup.drain_closed(far(t0));
    let counted: u64 = closed.iter().chain(&rest).map(|w| w.occurrences).sum();
    assert_eq!(counted, 10, "counts stay exact");
    assert_eq!(dedup.held_bytes(), 0);
}

#[test]
fn commit_metadata_round_trips_and_rejects_foreign_strings() {
    let point = CommitPoint {
        offset: 12,
        window_ms: 60_000,
        horizon_ms: 120_000,
        watermark_ms: 185_000,
        horizon_since: 9,
    };
    assert_eq!(
        CommitPoint::from_committed(12, &point.metadata()),
        Some(point)
    );
    assert_eq!(CommitPoint::from_committed(12, ""), None);
    assert_eq!(
        CommitPoint::from_committed(12, "palisade-dedup-v1;1;2;3"),
        None
    );
    assert_eq!(
        CommitPoint::from_committed(12, "palisade-dedup-v1;1;2;3;4;5"),
        None
    );
    assert_eq!(CommitPoint::from_committed(12, "other;1;2;3;4"), None);
}

#[test]
fn revoke_drops_the_partition() {
    let t0 = Instant::now();
    let mut dedup = Dedup::new(config(10));
    dedup.observe(3, 0, 1, message(1_000, None), t0);
    dedup.revoke(3);
    assert_eq!(dedup.open_windows(), 0);
    assert_eq!(dedup.commit_offset(3), None);
    assert!(dedup
        .drain_closed(t0 + Duration::from_secs(7200))
        .is_empty());
}

// ---- crash / replay property -------------------------------------------------------------

/// (partition, offset, dedup key, received_at_ms), in consumption order.
type Input = Vec<(i32, i64, u64, u64)>;

/// A deterministic pseudo-random sequence with out-of-order received times around window
/// boundaries, a handful of keys and two partitions.
fn sequence(seed: u64, len: usize) -> Input {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    let mut offsets = [0i64; 2];
    (0..len)
        .map(|i| {
            // Ingest keys messages by dedup key: a key always lives on one partition.
            let key = next() % 5;
            let partition = (key % 2) as i32;
            let jitter = next() % 6_000;
            let received = 100_000 + i as u64 * 400 + jitter;
            let offset = offsets[partition as usize];
            offsets[partition as usize] += 1;
            (partition, offset, key, received)
        })
        .collect()
}

/// What identifies a row's content in the comparison.
type RowSig = (i32, u64, u64, i64, i64, u64, u64);

fn sig(w: &ClosedWindow) -> (u64, RowSig) {
    let row = (
        w.partition,
        w.dedup_key,
        w.window_start_ms,
        w.first_offset,
        w.last_offset,
        w.occurrences,
        w.first_seen_ms,
    );
    (w.row_id(), row)
}

fn far(t0: Instant) -> Instant {
    t0 + Duration::from_secs(36_000)
}

fn uninterrupted(input: &Input, bound: (usize, usize)) -> Vec<(u64, RowSig)> {
    let t0 = Instant::now();
    let mut dedup = Dedup::new(bounded(bound.0, bound.1));
    let mut rows = Vec::new();
    for &(p, offset, key, received) in input {
        dedup.observe(p, offset, key, sized(key, received), t0);
        rows.extend(dedup.drain_closed(t0).iter().map(sig));
    }
    rows.extend(dedup.drain_closed(far(t0)).iter().map(sig));
    rows
}

/// Runs `input[..crash]`, committing the points computed after `input[..commit]`, then restarts
/// from those points with fresh state and replays each partition from its committed offset.
/// Returns (rows emitted before the commit, rows emitted after it, rows emitted by the replay)
/// and how many replayed messages were skipped as already written.
fn crashed(
    input: &Input,
    bound: (usize, usize),
    commit: usize,
    crash: usize,
) -> ([Vec<(u64, RowSig)>; 3], usize) {
    let t0 = Instant::now();
    let mut dedup = Dedup::new(bounded(bound.0, bound.1));
    let (mut committed_rows, mut uncommitted_rows) = (Vec::new(), Vec::new());
    let mut points = HashMap::new();
    for (i, &(p, offset, key, received)) in input[..crash].iter().enumerate() {
        if i == commit {
            points = (0..2)
                .filter_map(|p| Some((p, dedup.commit_point(p)?)))
                .collect();
        }
        dedup.observe(p, offset, key, sized(key, received), t0);
        let rows = dedup.drain_closed(t0);
        let sink = if i < commit {
            &mut committed_rows
        } else {
            &mut uncommitted_rows
        };
        sink.extend(rows.iter().map(sig));
    }
    if commit == crash {
        points = (0..2)
            .filter_map(|p| Some((p, dedup.commit_point(p)?)))
            .collect();
    }

    let mut restarted = Dedup::new(bounded(bound.0, bound.1));
    let mut from = HashMap::new();
    for p in 0..2 {
        // Through the metadata string, as Kafka stores it.
        let point = points
            .get(&p)
            .and_then(|pt: &CommitPoint| CommitPoint::from_committed(pt.offset, &pt.metadata()));
        from.insert(p, point.map_or(0, |pt| pt.offset));
        restarted.resume(p, point);
    }
    let mut replayed = Vec::new();
    let mut skipped = 0;
    for &(p, offset, key, received) in input.iter().filter(|m| m.1 >= from[&m.0]) {
        let observed = restarted.observe(p, offset, key, sized(key, received), t0);
        skipped += usize::from(observed == Observed::Replayed);
        replayed.extend(restarted.drain_closed(t0).iter().map(sig));
    }
    replayed.extend(restarted.drain_closed(far(t0)).iter().map(sig));
    ([committed_rows, uncommitted_rows, replayed], skipped)
}

fn check_crash_property(seed: u64, bound: (usize, usize)) {
    let input = sequence(seed, 240);
    let reference = uninterrupted(&input, bound);
    let by_id: BTreeMap<u64, RowSig> = reference.iter().copied().collect();
    assert_eq!(by_id.len(), reference.len(), "one row per row id");
    let total: u64 = reference.iter().map(|r| r.1 .5).sum();
    assert_eq!(
        total,
        input.len() as u64,
        "every message counted exactly once"
    );

    let mut skipped_total = 0;
    for crash in (0..=input.len()).step_by(7) {
        for commit in (0..=crash).step_by(5) {
            let ([committed, uncommitted, replayed], skipped) =
                crashed(&input, bound, commit, crash);
            skipped_total += skipped;
            for row in committed.iter().chain(&uncommitted).chain(&replayed) {
                assert_eq!(
                    by_id.get(&row.0),
                    Some(&row.1),
                    "seed {seed} commit {commit} crash {crash}"
                );
            }
            let seen: BTreeMap<u64, RowSig> = committed
                .iter()
                .chain(&uncommitted)
                .chain(&replayed)
                .copied()
                .collect();
            assert_eq!(
                seen.len(),
                by_id.len(),
                "no row lost: commit {commit} crash {crash}"
            );
            for row in &committed {
                assert!(
                    !replayed.contains(row),
                    "a committed row is not emitted again"
                );
            }
        }
    }
    // Windows straddling the commit offset occur: the restored horizon is what keeps this exact.
    assert!(
        skipped_total > 0,
        "seed {seed}: no replayed message was skipped"
    );
}

#[test]
fn replay_after_a_crash_emits_the_same_rows_as_an_uninterrupted_run() {
    for seed in [1, 2, 3] {
        check_crash_property(seed, (1_000, usize::MAX));
    }
}

#[test]
fn replay_is_exact_when_the_bound_force_closes_windows() {
    for seed in [4, 5] {
        check_crash_property(seed, (3, usize::MAX));
    }
}

/// The byte bound closes windows as deterministically as the count bound: messages of
/// different sizes (by key), a bound of a few of them.
#[test]
fn replay_is_exact_when_the_byte_bound_force_closes_windows() {
    let budget = 3 * (sized(4, 0).heap_bytes() + WINDOW_OVERHEAD_BYTES);
    for seed in [6, 7] {
        check_crash_property(seed, (1_000, budget));
    }
}

#[test]
fn the_sequences_exercise_late_and_forced_paths() {
    // Guards the property tests above against testing only the easy path.
    let t0 = Instant::now();
    let mut dedup = Dedup::new(config(3));
    let mut late = 0;
    let mut forced = 0;
    for (p, offset, key, received) in sequence(4, 240) {
        late +=
            usize::from(dedup.observe(p, offset, key, sized(key, received), t0) == Observed::Late);
        forced += dedup
            .drain_closed(t0)
            .iter()
            .filter(|w| w.reason == CloseReason::Forced)
            .count();
    }
    assert!(late > 0 && forced > 0, "late {late} forced {forced}");
    let mut dedup = Dedup::new(config(1_000));
    let late = sequence(1, 240)
        .into_iter()
        .filter(|&(p, o, k, r)| dedup.observe(p, o, k, message(r, None), t0) == Observed::Late)
        .count();
    assert!(late > 0, "out-of-order beyond the grace happens");
}

/// One consumer lifetime: resumes each partition from its point in `from` (from offset 0 when
/// absent), consumes the partitions' streams up to `crash` messages (`None`: to the end, then
/// an idle close) and returns the rows and the points Kafka holds afterwards: those taken after
/// `commit` messages, or the old ones for partitions that had nothing new to commit.
fn lifetime(
    input: &Input,
    bound: (usize, usize),
    from: &HashMap<i32, CommitPoint>,
    commit: usize,
    crash: Option<usize>,
) -> (Vec<(u64, RowSig)>, HashMap<i32, CommitPoint>) {
    let t0 = Instant::now();
    let mut dedup = Dedup::new(bounded(bound.0, bound.1));
    for p in 0..2 {
        let point = from.get(&p);
        dedup.resume(
            p,
            point.and_then(|pt| CommitPoint::from_committed(pt.offset, &pt.metadata())),
        );
    }
    let start = |p: i32| from.get(&p).map_or(0, |pt| pt.offset);
    let stream: Vec<_> = input.iter().filter(|m| m.1 >= start(m.0)).collect();
    let end = crash.unwrap_or(stream.len()).min(stream.len());
    let mut rows = Vec::new();
    let mut points = from.clone();
    for (i, &&(p, offset, key, received)) in stream[..end].iter().enumerate() {
        if i == commit {
            points.extend((0..2).filter_map(|p| Some((p, dedup.commit_point(p)?))));
        }
        dedup.observe(p, offset, key, sized(key, received), t0);
        rows.extend(dedup.drain_closed(t0).iter().map(sig));
    }
    if crash.is_none() {
        rows.extend(dedup.drain_closed(far(t0)).iter().map(sig));
    }
    if commit >= end {
        points.extend((0..2).filter_map(|p| Some((p, dedup.commit_point(p)?))));
    }
    (rows, points)
}

#[test]
fn replay_stays_exact_across_two_crashes_in_a_row() {
    let budget = 3 * (sized(4, 0).heap_bytes() + WINDOW_OVERHEAD_BYTES);
    for (seed, bound) in [
        (6, (1_000, usize::MAX)),
        (7, (3, usize::MAX)),
        (8, (1_000, budget)),
    ] {
        let input = sequence(seed, 200);
        let by_id: BTreeMap<u64, RowSig> = uninterrupted(&input, bound).into_iter().collect();
        for crash1 in (0..=input.len()).step_by(23) {
            for commit1 in (0..=crash1).step_by(17) {
                let (rows1, points1) =
                    lifetime(&input, bound, &HashMap::new(), commit1, Some(crash1));
                for crash2 in (0..=input.len()).step_by(29) {
                    for commit2 in (0..=crash2).step_by(19) {
                        let (rows2, points2) =
                            lifetime(&input, bound, &points1, commit2, Some(crash2));
                        let (rows3, _) = lifetime(&input, bound, &points2, 0, None);
                        let mut seen = BTreeMap::new();
                        for row in rows1.iter().chain(&rows2).chain(&rows3) {
                            let at = (seed, commit1, crash1, commit2, crash2);
                            assert_eq!(by_id.get(&row.0), Some(&row.1), "{at:?}");
                            seen.insert(row.0, row.1);
                        }
                        assert_eq!(seen.len(), by_id.len(), "no row lost");
                    }
                }
            }
        }
    }
}
