//! The stack each fault scenario runs on: tansu (or a [`KafkaLink`] in front of it), ClickHouse
//! 18.16 with Palisade's tables, and the ingest and processor binaries as child processes.

use std::time::Duration;

use testbed::clickhouse::ClickHouse;
use testbed::kafka::Tansu;

use crate::support::children::Service;
use crate::support::ledger::{self, Ledger};
use crate::support::load::{Plan, Tally};
use crate::support::{DATABASE, DEAD_LETTER_TOPIC, TOPIC};

/// Partitions of the reports topic (two processors get two each in the rebalance scenario).
pub const PARTITIONS: i32 = 4;
/// Requests per second of the load (1 to 3 reports each, 2 on average).
pub const REQUESTS_PER_SEC: u32 = 20;
/// Longest wait for the ledger to see every accepted report once the fault is over.
pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(120);

pub struct FaultStack {
    pub clickhouse: ClickHouse,
    pub client: clickhouse::Client,
    /// `bootstrap.servers` of ingest and the processor.
    pub brokers: String,
    _tansu: Option<Tansu>,
}

impl FaultStack {
    /// tansu (memory storage) with the topics, and ClickHouse with the tables. `None` when a
    /// server is missing outside CI (testbed's rule).
    pub async fn start() -> Option<Self> {
        let tansu = Tansu::start().await?;
        tansu.create_topic(TOPIC, PARTITIONS).await.unwrap();
        tansu.create_topic(DEAD_LETTER_TOPIC, 1).await.unwrap();
        let brokers = tansu.bootstrap();
        let mut stack = Self::with_brokers(brokers).await?;
        stack._tansu = Some(tansu);
        Some(stack)
    }

    /// ClickHouse with the tables, for clients of `brokers` (whose topics exist).
    pub async fn with_brokers(brokers: String) -> Option<Self> {
        let clickhouse = ClickHouse::start().await?;
        let client = clickhouse::Client::default()
            .with_url(clickhouse.http_url())
            .with_validation(false);
        // The tables exist before anything is posted, so the ledger's queries never race the
        // processor's own `--migrate-on-start`.
        processor::migrate::migrate(&client, DATABASE)
            .await
            .unwrap();
        Some(Self {
            clickhouse,
            client,
            brokers,
            _tansu: None,
        })
    }

    /// `palisade-ingest` publishing to the reports topic; `extra` flags appended.
    pub async fn ingest(&self, extra: &[&str]) -> Option<Service> {
        Service::ingest(&self.brokers, TOPIC, extra).await
    }

    /// `palisade-processor run` with small windows (5 s, 1 s grace, 1 s idle close: every load
    /// report, unique, is one row, and windows rebuilt after a restart close within seconds
    /// instead of waiting for the idle timeout to be replayed) and fast ClickHouse retries; a
    /// flag in `extra` replaces its default.
    pub async fn processor(&self, extra: &[&str]) -> Option<Service> {
        let clickhouse = self.clickhouse.http_url();
        let defaults: [(&str, &str); 17] = [
            ("--kafka-brokers", &self.brokers),
            ("--kafka-topic", TOPIC),
            ("--kafka-group", "faults"),
            ("--dead-letter-topic", DEAD_LETTER_TOPIC),
            ("--clickhouse-url", &clickhouse),
            ("--clickhouse-database", DATABASE),
            ("--window-secs", "5"),
            ("--grace-secs", "1"),
            ("--idle-close-secs", "1"),
            ("--batch-age-ms", "200"),
            ("--retention-interval-secs", "0"),
            ("--kafka-session-timeout-ms", "6000"),
            ("--clickhouse-backoff-ms", "100"),
            ("--clickhouse-max-backoff-ms", "1000"),
            ("--shutdown-timeout-ms", "20000"),
            // tansu 0.6 skips the rest of a record batch when fetching from inside it.
            ("--kafka-resume-rewind", "10000"),
            // Orphaned partitions (a tansu 0.6 coordinator bug) are found within seconds.
            ("--kafka-group-check-secs", "5"),
        ];
        let mut args = vec!["run".to_owned(), "--migrate-on-start".to_owned()];
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                args.extend([flag.to_owned(), value.to_owned()]);
            }
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Service::processor(&args).await
    }

    /// The load plan of `scenario` against `ingest`.
    pub fn plan(scenario: &str, ingest: &Service) -> Plan {
        Plan {
            scenario: scenario.to_owned(),
            ingest_url: ingest.url(),
            requests_per_sec: REQUESTS_PER_SEC,
            max_in_flight: 256,
            first_seq: 0,
        }
    }

    /// Wait for every accepted report of `tally` and reconcile (see `support::ledger`). When
    /// reports are lost, say whether Kafka has them (a processor loss) or not (an ingest or
    /// broker loss) before the caller's assertion fails.
    pub async fn ledger(&self, scenario: &str, tally: &Tally) -> Ledger {
        let ledger = ledger::reconcile(&self.client, scenario, tally, RECOVERY_TIMEOUT).await;
        if ledger.lost > 0 {
            self.locate_lost(scenario, tally).await;
        }
        ledger
    }

    async fn locate_lost(&self, scenario: &str, tally: &Tally) {
        let consumed = testbed::kafka::consume_all(
            &self.brokers,
            TOPIC,
            Duration::from_secs(3),
            Duration::from_secs(30),
        )
        .await;
        let Ok(consumed) = consumed else {
            eprintln!("lost reports: kafka unreadable: {consumed:?}");
            return;
        };
        let in_kafka: std::collections::BTreeSet<String> = consumed
            .iter()
            .filter_map(|record| schemas::ReportMessage::decode(&record.payload).ok())
            .filter_map(|message| message.report.document_url)
            .collect();
        let stored = ledger::stored(&self.client, scenario)
            .await
            .unwrap_or_default();
        let lost: Vec<&String> = tally
            .accepted
            .iter()
            .filter(|marker| !stored.contains_key(*marker))
            .collect();
        let in_kafka_count = lost.iter().filter(|m| in_kafka.contains(**m)).count();
        eprintln!(
            "lost reports: {} accepted reports are not in ClickHouse; {in_kafka_count} of them \
             are in Kafka ({} messages read)",
            lost.len(),
            consumed.len()
        );
    }
}

/// `name`'s value from the environment, else `default` (the fault tests' scale knobs).
pub fn knob(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number")),
        Err(_) => default,
    }
}

/// Print the load's answers by status, and assert none is outside what the scenario allows.
pub fn check_answers(scenario: &str, tally: &Tally, allow_unanswered: bool) {
    eprintln!(
        "{scenario}: answers by status (0 = no answer): {:?}, slowest by status: {:?}",
        tally.statuses, tally.slowest
    );
    assert!(
        tally.violations.is_empty(),
        "{scenario}: answers no scenario allows: {:?}",
        &tally.violations[..tally.violations.len().min(10)]
    );
    if !allow_unanswered {
        assert_eq!(
            tally.unanswered_requests, 0,
            "{scenario}: ingest left requests unanswered"
        );
    }
}

/// Wait (bounded) until `probe` is `Ok`, polling every 200 ms.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let started = std::time::Instant::now();
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(why) => assert!(
                started.elapsed() < timeout,
                "{what}: not within {timeout:?}: {why}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A small deterministic generator (SplitMix64) for the random fault points: the seed is
/// printed, so a failing run can be replayed with `PALISADE_FAULT_SEED`.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `PALISADE_FAULT_SEED`, else from the clock.
    pub fn from_env() -> (Self, u64) {
        let seed = std::env::var("PALISADE_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        (Self(seed), seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A duration uniformly in `[low, high)`.
    pub fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = (high - low).as_millis().max(1) as u64;
        low + Duration::from_millis(self.next() % span)
    }
}
