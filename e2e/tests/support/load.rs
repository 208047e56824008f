//! The fault tests' load driver: tokio tasks POSTing Reporting API batches to ingest at a steady
//! pace, every report with a unique document URL (`https://load.example/{scenario}/{seq}-{i}`)
//! so that ClickHouse can say, report by report, whether it was stored and how many times.
//!
//! Every answer is recorded: a 2xx counts the body's reports as accepted (and its
//! `{"accepted":n}` must be the number of reports sent), a 503 counts them as refused and must
//! carry `Retry-After`, a transport error counts them as unanswered. Anything else is a
//! violation, which the test asserts is empty.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Project and key every fault scenario posts to.
pub const PROJECT: u64 = 1;
pub const KEY: &str = "fault-key";
/// Host of every load report's document URL.
pub const HOST: &str = "load.example";
/// Longest wait for one answer (ingest answers within its Kafka message timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Projects file for ingest: one tenant with quotas far above the load.
pub const PROJECTS: &str = r#"
[[project]]
id = 1
name = "faults"
quota = { per_second = 1000000, burst = 1000000 }
keys = [{ public_key = "fault-key" }]
"#;

/// What to send.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Scenario name: the document URLs' first path segment, so scenarios sharing a ClickHouse
    /// stay separate.
    pub scenario: String,
    /// `http://127.0.0.1:PORT` of ingest.
    pub ingest_url: String,
    /// Requests started per second (each body holds 1 to 3 reports, 2 on average).
    pub requests_per_sec: u32,
    /// Bound on requests in flight; the pace slows down when it is reached.
    pub max_in_flight: usize,
    /// Sequence number of the first request (markers stay unique when several loads of one
    /// scenario run one after the other).
    pub first_seq: u64,
}

/// Counts of a running or finished load, by outcome.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Reports sent (in all bodies).
    pub offered: u64,
    /// Requests answered 2xx, and their reports' markers.
    pub accepted_requests: u64,
    pub accepted: Vec<String>,
    /// Requests answered 503 (with `Retry-After`), and their reports' markers.
    pub refused_requests: u64,
    pub refused: Vec<String>,
    /// Requests without an answer (connection refused or reset), and their reports' markers.
    pub unanswered_requests: u64,
    pub unanswered: Vec<String>,
    /// Answers no scenario allows (a status other than 2xx/503, 503 without `Retry-After`, a
    /// 2xx whose `accepted` is not the number of reports sent).
    pub violations: Vec<String>,
    /// Answers by status (0 = unanswered).
    pub statuses: BTreeMap<u16, u64>,
    /// The longest wait for an answer, by status (0 = unanswered).
    pub slowest: BTreeMap<u16, Duration>,
}

impl Tally {
    /// Add the counts of `other`, a later load of the same scenario.
    pub fn merge(&mut self, other: Tally) {
        self.offered += other.offered;
        self.accepted_requests += other.accepted_requests;
        self.accepted.extend(other.accepted);
        self.refused_requests += other.refused_requests;
        self.refused.extend(other.refused);
        self.unanswered_requests += other.unanswered_requests;
        self.unanswered.extend(other.unanswered);
        self.violations.extend(other.violations);
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        for (status, took) in other.slowest {
            let slowest = self.slowest.entry(status).or_default();
            *slowest = (*slowest).max(took);
        }
    }
}

/// A running load; [`Load::stop`] ends it and returns the final tally.
pub struct Load {
    stop: CancellationToken,
    task: JoinHandle<()>,
    tally: Arc<Mutex<Tally>>,
    plan: Plan,
}

impl Load {
    /// Start sending at once.
    pub fn start(plan: Plan) -> Self {
        let stop = CancellationToken::new();
        let tally = Arc::new(Mutex::new(Tally::default()));
        let task = tokio::spawn(drive(plan.clone(), stop.clone(), Arc::clone(&tally)));
        Self {
            stop,
            task,
            tally,
            plan,
        }
    }

    /// The tally so far (requests in flight are not in it yet).
    pub fn snapshot(&self) -> Tally {
        self.tally.lock().unwrap().clone()
    }

    /// The plan this load runs.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Stop starting requests, wait for every request in flight to be answered (or time out),
    /// and return the final tally.
    pub async fn stop(self) -> Tally {
        self.stop.cancel();
        self.task.await.unwrap();
        let tally = self.tally.lock().unwrap().clone();
        tally
    }
}

/// The document URL of report `i` of request `seq`.
pub fn marker(scenario: &str, seq: u64, i: u64) -> String {
    format!("https://{HOST}/{scenario}/{seq}-{i}")
}

/// A Reporting API batch of `count` CSP violations with the given document URLs.
pub fn body(markers: &[String]) -> String {
    let reports: Vec<String> = markers
        .iter()
        .map(|url| {
            format!(
                r#"{{"type":"csp-violation","age":0,"url":"{url}","user_agent":"palisade-fault-load/1.0","body":{{"documentURL":"{url}","blockedURL":"https://cdn.example/lib.js","effectiveDirective":"script-src-elem","originalPolicy":"script-src 'self'","disposition":"enforce","statusCode":200}}}}"#
            )
        })
        .collect();
    format!("[{}]", reports.join(","))
}

async fn drive(plan: Plan, stop: CancellationToken, tally: Arc<Mutex<Tally>>) {
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap();
    let url = format!(
        "{}/api/{PROJECT}/security/?sentry_key={KEY}",
        plan.ingest_url
    );
    let in_flight = Arc::new(Semaphore::new(plan.max_in_flight));
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / plan.requests_per_sec.max(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let tasks = tokio_util::task::TaskTracker::new();
    let mut seq = plan.first_seq;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let permit = tokio::select! {
            () = stop.cancelled() => break,
            permit = Arc::clone(&in_flight).acquire_owned() => permit.unwrap(),
        };
        let markers: Vec<String> = (0..1 + seq % 3)
            .map(|i| marker(&plan.scenario, seq, i))
            .collect();
        seq += 1;
        let (client, url, tally) = (client.clone(), url.clone(), Arc::clone(&tally));
        tasks.spawn(async move {
            let started = std::time::Instant::now();
            let outcome = send(&client, &url, &markers).await;
            record(&tally, markers, outcome, started.elapsed());
            drop(permit);
        });
    }
    tasks.close();
    tasks.wait().await;
}

/// How one request ended.
enum Outcome {
    Accepted { status: u16, reported: Option<u64> },
    Refused { retry_after: Option<String> },
    Unanswered(String),
    Other { status: u16, body: String },
}

async fn send(client: &reqwest::Client, url: &str, markers: &[String]) -> Outcome {
    let response = client
        .post(url)
        .header("content-type", "application/reports+json")
        .body(body(markers))
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(error) => return Outcome::Unanswered(format!("{error:?}")),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let text = match response.text().await {
        Ok(text) => text,
        // Headers arrived, the body did not: the answer was not seen whole.
        Err(error) => return Outcome::Unanswered(format!("body: {error:?}")),
    };
    match status {
        200..=299 => {
            let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            Outcome::Accepted {
                status,
                reported: json["accepted"].as_u64(),
            }
        }
        503 => Outcome::Refused { retry_after },
        _ => Outcome::Other { status, body: text },
    }
}

fn record(tally: &Mutex<Tally>, markers: Vec<String>, outcome: Outcome, took: Duration) {
    let mut tally = tally.lock().unwrap();
    let count = markers.len() as u64;
    tally.offered += count;
    let status = match outcome {
        Outcome::Accepted { status, reported } => {
            if reported != Some(count) {
                tally.violations.push(format!(
                    "2xx with accepted={reported:?} for {count} reports"
                ));
            }
            tally.accepted_requests += 1;
            tally.accepted.extend(markers);
            status
        }
        Outcome::Refused { retry_after } => {
            if retry_after
                .as_deref()
                .and_then(|v| v.parse::<u64>().ok())
                .is_none()
            {
                tally
                    .violations
                    .push(format!("503 without a valid Retry-After ({retry_after:?})"));
            }
            tally.refused_requests += 1;
            tally.refused.extend(markers);
            503
        }
        Outcome::Unanswered(error) => {
            // Kept short: the first few errors are enough to diagnose.
            if tally.unanswered_requests < 3 {
                eprintln!("load: unanswered request: {error}");
            }
            tally.unanswered_requests += 1;
            tally.unanswered.extend(markers);
            0
        }
        Outcome::Other { status, body } => {
            tally.violations.push(format!("status {status}: {body}"));
            status
        }
    };
    *tally.statuses.entry(status).or_default() += 1;
    let slowest = tally.slowest.entry(status).or_default();
    *slowest = (*slowest).max(took);
}
