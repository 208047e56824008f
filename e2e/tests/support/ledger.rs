//! The loss ledger of a fault scenario: what the load driver saw accepted against what
//! ClickHouse's `reports FINAL` holds, report by report (every load report has a unique document
//! URL, so it is one row with `occurrences = 1` when counted exactly once).
//!
//! One line per scenario, in a fixed format the docs quote:
//!
//! `LEDGER scenario=<name> offered=N accepted=N refused=N unanswered=N stored=N rows=N lost=N
//! duplicated=N unconfirmed_stored=N peak_rss_mib=X`
//!
//! - `lost`: reports answered 2xx with no occurrence in ClickHouse.
//! - `duplicated`: occurrences beyond the first, of any report (a double count).
//! - `unconfirmed_stored`: reports answered 503 or not answered that are stored anyway (allowed:
//!   the body may have reached Kafka before the answer failed; a browser would retry it).
//! - `stored = accepted - lost + duplicated + unconfirmed_stored`, the `sum(occurrences)`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use super::load::{Tally, HOST};

/// How long the totals must stay unchanged before the ledger is read: longer than the
/// processor's idle close (1 s) plus its batch age, so a late duplicate would show.
const SETTLE: Duration = Duration::from_secs(4);

/// One scenario's reconciliation.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    pub scenario: String,
    pub offered: u64,
    pub accepted: u64,
    pub refused: u64,
    pub unanswered: u64,
    pub stored: u64,
    pub rows: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub unconfirmed_stored: u64,
    /// Peak resident memory of the process the scenario watches, if any.
    pub peak_rss_mib: Option<f64>,
    /// A few lost markers, for the failure message.
    pub lost_examples: Vec<String>,
}

impl fmt::Display for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LEDGER scenario={} offered={} accepted={} refused={} unanswered={} stored={} rows={} \
             lost={} duplicated={} unconfirmed_stored={} peak_rss_mib=",
            self.scenario,
            self.offered,
            self.accepted,
            self.refused,
            self.unanswered,
            self.stored,
            self.rows,
            self.lost,
            self.duplicated,
            self.unconfirmed_stored,
        )?;
        match self.peak_rss_mib {
            Some(mib) => write!(f, "{mib:.1}"),
            None => write!(f, "-"),
        }
    }
}

impl Ledger {
    /// Print the line and assert nothing was lost or double counted.
    pub fn assert_exact(&self) {
        println!("{self}");
        assert_eq!(self.lost, 0, "{self}; lost e.g. {:?}", self.lost_examples);
        assert_eq!(self.duplicated, 0, "{self}");
        assert!(self.accepted > 0, "nothing was accepted: {self}");
    }
}

/// `(occurrences, rows)` of every load report of `scenario` in `reports FINAL`, by document URL;
/// `None` while ClickHouse does not answer.
pub async fn stored(
    client: &clickhouse::Client,
    scenario: &str,
) -> Option<BTreeMap<String, (u64, u64)>> {
    let sql = format!(
        "SELECT document_url, sum(occurrences), count() FROM reports FINAL \
         WHERE document_url LIKE 'https://{HOST}/{scenario}/%' GROUP BY document_url"
    );
    let bytes = client
        .clone()
        .with_database(super::DATABASE)
        .query_raw(&sql)
        .fetch_bytes("TabSeparated")
        .ok()?
        .collect()
        .await
        .ok()?;
    let text = String::from_utf8(bytes.to_vec()).ok()?;
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let mut cells = line.split('\t');
        let (Some(url), Some(sum), Some(rows)) = (cells.next(), cells.next(), cells.next()) else {
            return None;
        };
        counts.insert(url.to_owned(), (sum.parse().ok()?, rows.parse().ok()?));
    }
    Some(counts)
}

/// The single number `sql` answers in the test database; `None` while ClickHouse fails.
pub async fn scalar(client: &clickhouse::Client, sql: &str) -> Option<u64> {
    let bytes = client
        .clone()
        .with_database(super::DATABASE)
        .query_raw(sql)
        .fetch_bytes("TabSeparated")
        .ok()?
        .collect()
        .await
        .ok()?;
    String::from_utf8(bytes.to_vec()).ok()?.trim().parse().ok()
}

/// Wait (bounded by `timeout`) until every accepted report of `tally` is stored and the totals
/// stayed unchanged for [`SETTLE`], then reconcile. Returns the ledger even on timeout: its
/// `lost` then says what never arrived.
pub async fn reconcile(
    client: &clickhouse::Client,
    scenario: &str,
    tally: &Tally,
    timeout: Duration,
) -> Ledger {
    let started = Instant::now();
    let mut last: Option<(u64, u64)> = None;
    let mut unchanged_since = Instant::now();
    let counts = loop {
        let counts = stored(client, scenario).await;
        if let Some(counts) = counts {
            let totals = counts
                .values()
                .fold((0, 0), |(s, r), (sum, rows)| (s + sum, r + rows));
            if last != Some(totals) {
                last = Some(totals);
                unchanged_since = Instant::now();
            }
            let complete = tally.accepted.iter().all(|m| counts.contains_key(m));
            if (complete && unchanged_since.elapsed() >= SETTLE) || started.elapsed() > timeout {
                if !complete {
                    eprintln!(
                        "ledger {scenario}: timed out after {timeout:?} with reports missing"
                    );
                }
                break counts;
            }
        } else if started.elapsed() > timeout {
            panic!("ledger {scenario}: ClickHouse did not answer within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    ledger(scenario, tally, &counts)
}

/// The ledger of `tally` against stored `counts` (pure, so it is tested below).
pub fn ledger(scenario: &str, tally: &Tally, counts: &BTreeMap<String, (u64, u64)>) -> Ledger {
    let mut ledger = Ledger {
        scenario: scenario.to_owned(),
        offered: tally.offered,
        accepted: tally.accepted.len() as u64,
        refused: tally.refused.len() as u64,
        unanswered: tally.unanswered.len() as u64,
        ..Ledger::default()
    };
    for (occurrences, rows) in counts.values() {
        ledger.stored += occurrences;
        ledger.rows += rows;
        ledger.duplicated += occurrences.saturating_sub(1);
    }
    for marker in &tally.accepted {
        if !counts.contains_key(marker) {
            ledger.lost += 1;
            if ledger.lost_examples.len() < 5 {
                ledger.lost_examples.push(marker.clone());
            }
        }
    }
    ledger.unconfirmed_stored = tally
        .refused
        .iter()
        .chain(&tally.unanswered)
        .filter(|marker| counts.contains_key(*marker))
        .count() as u64;
    ledger
}

#[cfg(test)]
mod tests {
    use super::*;

    // Guards the ledger arithmetic itself: a lost, a doubled and an unconfirmed report are each
    // seen, and the identity `stored = accepted - lost + duplicated + unconfirmed` holds.
    #[test]
    fn ledger_counts_lost_duplicated_and_unconfirmed() {
        let tally = Tally {
            offered: 5,
            accepted: vec!["a".into(), "b".into(), "c".into()],
            refused: vec!["d".into()],
            unanswered: vec!["e".into()],
            ..Tally::default()
        };
        let counts: BTreeMap<String, (u64, u64)> = [
            ("a".to_owned(), (1, 1)),
            ("b".to_owned(), (2, 2)),
            ("e".to_owned(), (1, 1)),
        ]
        .into_iter()
        .collect();
        let l = ledger("t", &tally, &counts);
        assert_eq!((l.lost, l.duplicated, l.unconfirmed_stored), (1, 1, 1));
        assert_eq!((l.stored, l.rows), (4, 4));
        assert_eq!(
            l.stored,
            l.accepted - l.lost + l.duplicated + l.unconfirmed_stored
        );
        assert!(l
            .to_string()
            .starts_with("LEDGER scenario=t offered=5 accepted=3 "));
    }
}
