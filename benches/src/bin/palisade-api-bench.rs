//! `palisade-api-bench`: latency of the tenant API's read endpoints over a big project, against a
//! real ClickHouse on loopback.
//!
//! 1. ClickHouse: starts `/usr/sbin/clickhouse-server` (18.16 from apt) in a temp dir on free
//!    loopback ports with `system.query_log` on (the config of `deploy/clickhouse/` plus a
//!    `<query_log>` section and `log_queries = 1`), or uses `--clickhouse-url`.
//! 2. Data: drops and migrates `--database` (`processor::migrate`, what `palisade-processor
//!    migrate` runs), then generates `--rows` report rows inside ClickHouse with one
//!    `INSERT ... SELECT ... FROM numbers(N)` (`benches/sql/api-bench-rows.sql`: skewed
//!    fingerprints, directives, blocked origins, document hosts, three policies, clients, 30 days
//!    of windows). `--reuse` keeps a database that already holds `--rows` rows.
//! 3. API: runs the `palisade-api` library (`api::run`, the code the binary runs) in this
//!    process on its own 2-thread runtime and loopback port, creates a project token over HTTP
//!    with the admin token, mutes two groups and applies one resolution; or uses `--api-url`
//!    and `--token` (a running API over the same database).
//! 4. Timing: per endpoint, `--requests` sequential requests and then `--requests` more from
//!    `--concurrency` clients (each phase cut at `--phase-secs`), into HDR histograms; p50,
//!    p99, max and status counts, and ClickHouse's own `read_rows` / `read_bytes` / peak memory
//!    per request from `system.query_log` (phases start on a new second; the queries that
//!    started in each phase's seconds are summed once the log has settled, at the end; on 18.16
//!    a short concurrent phase sometimes shows fewer entries than it ran, and the API's own
//!    background alert loop adds some, so take these columns as indicative). Then
//!    one alert evaluation (`api::alerts::rules::evaluate`, in-process mode only) at the
//!    newest window + 60 s, so the rules see an hour of data even when it was loaded earlier.
//!
//! Everything it starts stops on exit (the API is cancelled and drained, ClickHouse killed and
//! its temp dir removed). Loopback only. Prints a markdown table and one `api_bench_json {...}`
//! line for scripts.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context};
use clap::Parser as _;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// Tenant API latency benchmark (loopback ClickHouse, in-process or loopback API).
#[derive(Debug, clap::Parser)]
struct Args {
    /// Report rows to generate (about 98 % in `--project`). Default 10,000,000.
    #[arg(long, default_value_t = 10_000_000)]
    rows: u64,
    /// Distinct fingerprints (violation groups) of the project, skewed. Default 5,000.
    #[arg(long, default_value_t = 5_000)]
    fingerprints: u64,
    /// The project measured. Default 1.
    #[arg(long, default_value_t = 1)]
    project: u64,
    /// ClickHouse HTTP URL (loopback); without it a server is started in a temp dir.
    #[arg(long)]
    clickhouse_url: Option<String>,
    /// Database the bench drops, migrates and fills. Default `palisade_api_bench`.
    #[arg(long, default_value = "palisade_api_bench")]
    database: String,
    /// Keep the database when it already holds `--rows` rows (with `--clickhouse-url`).
    #[arg(long)]
    reuse: bool,
    /// A running API (loopback) reading `--database`; needs `--token` (a token of `--project`).
    #[arg(long, requires = "token")]
    api_url: Option<String>,
    /// Project token for `--api-url`.
    #[arg(long)]
    token: Option<String>,
    /// Requests per endpoint and phase (sequential, then concurrent). Default 20.
    #[arg(long, default_value_t = 20)]
    requests: u64,
    /// Concurrent clients in the concurrent phase. Default 4.
    #[arg(long, default_value_t = 4)]
    concurrency: u64,
    /// Longest time per endpoint and phase, in seconds (fewer requests are then made; at least
    /// one). Default 60.
    #[arg(long, default_value_t = 60)]
    phase_secs: u64,
    /// The in-process API's `--clickhouse-timeout-ms` (the API's own default is 10,000: slower
    /// queries answer 503). Default 300,000, so slow queries are measured, not cut.
    #[arg(long, default_value_t = 300_000)]
    clickhouse_timeout_ms: u64,
    /// Only the alert evaluation (no endpoint timing).
    #[arg(long)]
    alerts_only: bool,
    /// Only the endpoints whose name (as printed) contains one of these, comma-separated.
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
}

/// The admin token of the in-process API (loopback only, this process only).
const ADMIN_TOKEN: &str = "palisade-api-bench-admin-token-0123456789";
/// Row generator (see the file's header).
const ROWS_SQL: &str = include_str!("../../sql/api-bench-rows.sql");
const CONFIG_XML: &str = include_str!("../../../deploy/clickhouse/config.xml");
const USERS_XML: &str = include_str!("../../../deploy/clickhouse/users.xml");
const CLICKHOUSE_SERVER: &str = "/usr/sbin/clickhouse-server";
/// The rows' window starts span this many seconds, ending two minutes before the load (inside
/// the API's default 720-hour range, and recent enough for the alert rules to find work).
const SPAN_SECS: u64 = 30 * 86_400 - 3_600;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.rows > 0 && args.fingerprints > 0 && args.requests > 0 && args.concurrency > 0,
        "--rows, --fingerprints, --requests and --concurrency must be positive"
    );
    ensure!(
        schemas::sql::is_identifier(&args.database),
        "--database must be a bare identifier"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let server = match &args.clickhouse_url {
        Some(url) => {
            benches::loopback::ensure(url)?;
            None
        }
        None => Some(runtime.block_on(Server::start())?),
    };
    let url = args
        .clickhouse_url
        .clone()
        .or_else(|| server.as_ref().map(Server::url))
        .context("no ClickHouse")?;
    let result = runtime.block_on(bench(&args, &url));
    drop(server);
    result
}

async fn bench(args: &Args, url: &str) -> anyhow::Result<()> {
    let ch = Ch::new(url, &args.database)?;
    println!("machine           {}", uptime());
    let count = if args.reuse {
        ch.scalar(&format!("SELECT count() FROM {}.reports", args.database))
            .await
            .unwrap_or_default()
    } else {
        String::new()
    };
    if count == args.rows.to_string()
        || (args.reuse && count.parse::<u64>().is_ok_and(|n| n + 1000 >= args.rows))
    {
        println!(
            "data              reusing {count} rows in {}",
            args.database
        );
    } else {
        load(args, &ch).await?;
    }
    let parts = ch
        .scalar(&format!(
            "SELECT concat(toString(count()), ' parts, ', toString(sum(rows)), ' rows, ', \
             formatReadableSize(sum(bytes_on_disk))) FROM system.parts \
             WHERE active AND database = '{}' AND table = 'reports'",
            args.database
        ))
        .await?;
    println!("reports           {parts}");

    let (api, token) = match (&args.api_url, &args.token) {
        (Some(api_url), Some(token)) => {
            benches::loopback::ensure(api_url)?;
            (ApiHandle::External(api_url.clone()), token.clone())
        }
        _ => {
            let api = InProcess::start(args, url).await?;
            let token = api.project_token(args.project).await?;
            (ApiHandle::InProcess(Box::new(api)), token)
        }
    };
    let outcome = measure(args, &ch, &api, &token).await;
    if let ApiHandle::InProcess(api) = api {
        api.stop().await;
    }
    outcome
}

/// Drops, migrates and fills the database.
async fn load(args: &Args, ch: &Ch) -> anyhow::Result<()> {
    ch.exec(&format!("DROP DATABASE IF EXISTS {}", args.database))
        .await?;
    let config = processor::Config::try_parse_from([
        "palisade-processor",
        "--clickhouse-url",
        &ch.url,
        "--clickhouse-database",
        &args.database,
    ])?;
    processor::migrate::migrate(&config.clickhouse_client(), &args.database)
        .await
        .context("migrations failed")?;
    let now = unix_now();
    let base = now - SPAN_SECS - 120;
    let sql: String = ROWS_SQL
        .lines()
        .filter(|line| !line.starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("{DB}", &args.database)
        .replace("{ROWS}", &args.rows.to_string())
        .replace("{PROJECT}", &args.project.to_string())
        .replace("{FINGERPRINTS}", &args.fingerprints.to_string())
        .replace("{BASE}", &base.to_string())
        .replace("{SPAN}", &SPAN_SECS.to_string());
    let started = Instant::now();
    ch.exec(&sql).await.context("generating rows")?;
    let inserted = ch
        .scalar(&format!(
            "SELECT concat(toString(count()), ' rows, ', toString(uniqExact(fingerprint)), \
             ' fingerprints') FROM {}.reports WHERE project_id = {}",
            args.database, args.project
        ))
        .await?;
    println!(
        "data              generated {} rows in {:.1} s (project {}: {inserted})",
        args.rows,
        started.elapsed().as_secs_f64(),
        args.project
    );
    Ok(())
}

/// One endpoint measured.
struct Target {
    name: &'static str,
    path: String,
    method: reqwest::Method,
}

async fn measure(args: &Args, ch: &Ch, api: &ApiHandle, token: &str) -> anyhow::Result<()> {
    let base = api.url();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.clickhouse_timeout_ms / 1000 + 60))
        .build()?;
    let project = args.project;
    let prefix = format!("{base}/v1/projects/{project}");
    let get = |path: String| {
        let http = http.clone();
        let token = token.to_owned();
        async move {
            let answer = http.get(&path).bearer_auth(token).send().await?;
            let status = answer.status();
            let body: Value = answer.json().await.unwrap_or(Value::Null);
            anyhow::Ok((status, body))
        }
    };
    // Inputs of the later endpoints: the first page (a cursor, the newest group) and the
    // group with the most rows (the worst case of the group endpoints).
    let (status, first) = get(format!("{prefix}/violations")).await?;
    ensure!(status.is_success(), "first page: {status} {first}");
    let cursor = first["next_cursor"].as_str().unwrap_or_default().to_owned();
    let newest = first["groups"][0]["fingerprint"]
        .as_str()
        .unwrap_or("0000000000000000")
        .to_owned();
    let biggest = ch
        .scalar(&format!(
            "SELECT lower(hex(fingerprint)) FROM {}.reports WHERE project_id = {project} \
             GROUP BY fingerprint ORDER BY count() DESC, fingerprint LIMIT 1",
            args.database
        ))
        .await?;
    let biggest = format!("{biggest:0>16}");
    let targets = [
        ("violations", format!("{prefix}/violations")),
        (
            "violations?kind",
            format!("{prefix}/violations?kind=network-error"),
        ),
        (
            "violations?directive",
            format!("{prefix}/violations?directive=img-src"),
        ),
        ("violations?q", format!("{prefix}/violations?q=vendor3.com")),
        (
            "violations?cursor",
            format!("{prefix}/violations?cursor={cursor}"),
        ),
        (
            "violations/{fp} newest",
            format!("{prefix}/violations/{newest}"),
        ),
        (
            "violations/{fp} biggest",
            format!("{prefix}/violations/{biggest}"),
        ),
        (
            "violations/{fp}/resolution",
            format!("{prefix}/violations/{biggest}/resolution"),
        ),
        ("resolutions", format!("{prefix}/resolutions")),
        ("policy/proposed", format!("{prefix}/policy/proposed")),
    ]
    .map(|(name, path)| Target {
        name,
        path,
        method: reqwest::Method::GET,
    });

    println!(
        "timing            {} requests per endpoint sequentially, then {} from {} clients (each phase at most {} s)",
        args.requests, args.requests, args.concurrency, args.phase_secs
    );
    let mut phases = Vec::new();
    let chosen = |target: &&Target| {
        !args.alerts_only
            && (args.endpoints.is_empty()
                || args
                    .endpoints
                    .iter()
                    .any(|e| target.name.contains(e.as_str())))
    };
    for target in targets.iter().filter(chosen) {
        for concurrency in [1, args.concurrency] {
            let from = next_second().await;
            let phase = run_phase(&http, target, token, args, concurrency).await?;
            phases.push((target.name, concurrency, phase, from, unix_now()));
        }
    }
    let alerts = match api {
        ApiHandle::InProcess(api) => {
            // As if evaluated a minute after the newest window (the data may be older than
            // now when reused): the rules then look at the last hour of data.
            let newest: u64 = ch
                .scalar(&format!(
                    "SELECT toUInt32(max(window_start)) + 60 FROM {}.reports",
                    args.database
                ))
                .await?
                .parse()?;
            let from = next_second().await;
            let started = Instant::now();
            let fired = api.evaluate_alerts(u32::try_from(newest)?).await;
            let elapsed = started.elapsed();
            let until = unix_now();
            ch.settle_log().await?;
            let log = ch.query_log(from, until).await.unwrap_or_default();
            let fired = match fired {
                Ok(n) => n.to_string(),
                Err(error) => format!("error: {error:#}"),
            };
            Some(json!({
                "seconds": elapsed.as_secs_f64(),
                "fired": fired,
                "clickhouse": log,
            }))
        }
        ApiHandle::External(_) => None,
    };
    // query_log of each phase, read once every entry is surely written (phases are whole
    // seconds apart, so their windows do not overlap).
    ch.settle_log().await?;
    let mut rows = Vec::new();
    for (name, concurrency, phase, from, until) in &phases {
        let log = ch.query_log(*from, *until).await.unwrap_or_default();
        rows.push(phase.row(name, *concurrency, &log));
    }
    print_table(&rows, alerts.as_ref());
    println!(
        "api_bench_json {}",
        json!({"rows": args.rows, "endpoints": rows, "alert_evaluation": alerts})
    );
    Ok(())
}

/// What one phase of one endpoint measured.
struct Phase {
    histogram: Histogram<u64>,
    statuses: std::collections::BTreeMap<String, u64>,
    wall: Duration,
}

impl Phase {
    fn row(&self, name: &str, concurrency: u64, log: &Value) -> Value {
        let ms = |q: f64| self.histogram.value_at_quantile(q) as f64 / 1000.0;
        let n = self.histogram.len();
        json!({
            "endpoint": name,
            "concurrency": concurrency,
            "requests": n,
            "statuses": self.statuses,
            "p50_ms": ms(0.5),
            "p99_ms": ms(0.99),
            "max_ms": self.histogram.max() as f64 / 1000.0,
            "requests_per_s": n as f64 / self.wall.as_secs_f64().max(f64::EPSILON),
            "clickhouse_per_request": per_request(log, n),
        })
    }
}

/// `query_log` sums divided by the requests of the phase (the peak is the largest query's).
fn per_request(log: &Value, requests: u64) -> Value {
    let n = requests.max(1) as f64;
    let field = |name: &str| log[name].as_f64().unwrap_or(0.0);
    json!({
        "queries": field("queries") / n,
        "read_rows": field("read_rows") / n,
        "read_bytes": field("read_bytes") / n,
        "peak_memory_bytes": field("peak_memory_bytes"),
    })
}

async fn run_phase(
    http: &reqwest::Client,
    target: &Target,
    token: &str,
    args: &Args,
    concurrency: u64,
) -> anyhow::Result<Phase> {
    let deadline = Instant::now() + Duration::from_secs(args.phase_secs);
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let http = http.clone();
        let (path, method, token) = (target.path.clone(), target.method.clone(), token.to_owned());
        let (next, requests) = (Arc::clone(&next), args.requests);
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
            let mut statuses = std::collections::BTreeMap::<String, u64>::new();
            // Each client takes the next request number; the first request always runs.
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < requests
                && (histogram.is_empty() || Instant::now() < deadline)
            {
                let sent = Instant::now();
                let status = match http
                    .request(method.clone(), &path)
                    .bearer_auth(&token)
                    .send()
                    .await
                {
                    Ok(answer) => {
                        let status = answer.status().as_u16().to_string();
                        let _ = answer.bytes().await;
                        status
                    }
                    Err(error) if error.is_timeout() => "timeout".to_owned(),
                    Err(_) => "transport".to_owned(),
                };
                histogram.saturating_record(sent.elapsed().as_micros() as u64);
                *statuses.entry(status).or_default() += 1;
            }
            anyhow::Ok((histogram, statuses))
        }));
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    let mut statuses = std::collections::BTreeMap::new();
    for task in tasks {
        let (h, s) = task.await??;
        histogram.add(h)?;
        for (status, n) in s {
            *statuses.entry(status).or_default() += n;
        }
    }
    Ok(Phase {
        histogram,
        statuses,
        wall: started.elapsed(),
    })
}

fn print_table(rows: &[Value], alerts: Option<&Value>) {
    println!();
    println!("| endpoint | clients | requests | statuses | p50 ms | p99 ms | max ms | CH queries / req | CH rows read / req | CH bytes read / req | CH peak memory |");
    println!("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let ch = &row["clickhouse_per_request"];
        let statuses: Vec<String> = row["statuses"]
            .as_object()
            .map(|o| o.iter().map(|(k, v)| format!("{k}: {v}")).collect())
            .unwrap_or_default();
        println!(
            "| `{}` | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} |",
            row["endpoint"].as_str().unwrap_or_default(),
            row["concurrency"],
            row["requests"],
            statuses.join(", "),
            row["p50_ms"].as_f64().unwrap_or_default(),
            row["p99_ms"].as_f64().unwrap_or_default(),
            row["max_ms"].as_f64().unwrap_or_default(),
            ch["queries"].as_f64().unwrap_or_default(),
            grouped(ch["read_rows"].as_f64().unwrap_or_default()),
            bytes(ch["read_bytes"].as_f64().unwrap_or_default()),
            bytes(ch["peak_memory_bytes"].as_f64().unwrap_or_default()),
        );
    }
    if let Some(alerts) = alerts {
        let ch = &alerts["clickhouse"];
        println!(
            "\none alert evaluation: {:.2} s, fired {}, {} ClickHouse queries, {} rows / {} read, peak memory {}",
            alerts["seconds"].as_f64().unwrap_or_default(),
            alerts["fired"].as_str().unwrap_or_default(),
            ch["queries"],
            grouped(ch["read_rows"].as_f64().unwrap_or_default()),
            bytes(ch["read_bytes"].as_f64().unwrap_or_default()),
            bytes(ch["peak_memory_bytes"].as_f64().unwrap_or_default()),
        );
    }
    println!();
}

fn grouped(value: f64) -> String {
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn bytes(value: f64) -> String {
    if value >= 1e9 {
        format!("{:.2} GB", value / 1e9)
    } else if value >= 1e6 {
        format!("{:.1} MB", value / 1e6)
    } else {
        format!("{:.0} kB", value / 1e3)
    }
}

/// ClickHouse over HTTP (TabSeparated answers).
struct Ch {
    url: String,
    database: String,
    http: reqwest::Client,
}

impl Ch {
    fn new(url: &str, database: &str) -> anyhow::Result<Self> {
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            database: database.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(3_600))
                .build()?,
        })
    }

    async fn exec(&self, sql: &str) -> anyhow::Result<String> {
        let answer = self
            .http
            .post(&self.url)
            .body(sql.to_owned())
            .send()
            .await
            .context("ClickHouse unreachable")?;
        let status = answer.status();
        let text = answer.text().await?;
        ensure!(status.is_success(), "ClickHouse {status}: {text}");
        Ok(text)
    }

    async fn scalar(&self, sql: &str) -> anyhow::Result<String> {
        Ok(self.exec(sql).await?.trim().to_owned())
    }

    /// The finished queries of the API (unqualified table names) that started between two Unix
    /// seconds, summed.
    /// Waits until the query_log holds every finished query: an entry is queued when the
    /// query's pipeline ends (possibly after the answer reached the API) and written within
    /// the configured 1 s flush interval; `SYSTEM FLUSH LOGS` alone missed some on 18.16.
    async fn settle_log(&self) -> anyhow::Result<()> {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        self.exec("SYSTEM FLUSH LOGS").await?;
        Ok(())
    }

    async fn query_log(&self, from: u64, until: u64) -> anyhow::Result<Value> {
        let line = self
            .scalar(&format!(
                "SELECT count(), sum(read_rows), sum(read_bytes), max(memory_usage) \
                 FROM system.query_log WHERE type = 2 \
                 AND query_start_time >= toDateTime({from}) \
                 AND query_start_time <= toDateTime({until}) \
                 AND (position(lower(query), 'from reports') > 0 \
                      OR position(lower(query), 'from resolutions') > 0 \
                      OR position(lower(query), 'from violation_mutes') > 0 \
                      OR position(lower(query), 'from alert') > 0) \
                 AND position(lower(query), 'system.query_log') = 0 \
                 AND position(lower(query), '{}.reports') = 0",
                self.database
            ))
            .await?;
        let cells: Vec<f64> = line
            .split('\t')
            .map(|cell| cell.parse().unwrap_or(0.0))
            .collect();
        ensure!(cells.len() == 4, "unexpected query_log answer {line:?}");
        Ok(json!({
            "queries": cells[0],
            "read_rows": cells[1],
            "read_bytes": cells[2],
            "peak_memory_bytes": cells[3],
        }))
    }
}

enum ApiHandle {
    InProcess(Box<InProcess>),
    External(String),
}

impl ApiHandle {
    fn url(&self) -> String {
        match self {
            Self::InProcess(api) => api.url.clone(),
            Self::External(url) => url.trim_end_matches('/').to_owned(),
        }
    }
}

/// `api::run` on its own runtime (2 worker threads, like the binary on this machine).
struct InProcess {
    url: String,
    config: api::Config,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    async fn start(args: &Args, clickhouse_url: &str) -> anyhow::Result<Self> {
        let config = api::Config::try_parse_from([
            "palisade-api",
            "--clickhouse-url",
            clickhouse_url,
            "--clickhouse-database",
            &args.database,
            "--admin-tokens",
            ADMIN_TOKEN,
            "--alert-interval-secs",
            "0",
            "--clickhouse-timeout-ms",
            &args.clickhouse_timeout_ms.to_string(),
        ])?;
        config.validate()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let shutdown = CancellationToken::new();
        let (run_config, cancel) = (config.clone(), shutdown.clone());
        let thread = std::thread::Builder::new()
            .name("palisade-api".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("palisade-api")
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => return eprintln!("api runtime: {error}"),
                };
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => {
                            if let Err(error) = api::run(run_config, listener, None, cancel).await {
                                eprintln!("palisade-api failed: {error}");
                            }
                        }
                        Err(error) => eprintln!("api listener: {error}"),
                    }
                });
            })?;
        let api = Self {
            url,
            config,
            shutdown,
            thread: Some(thread),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while http
            .get(format!("{}/healthz", api.url))
            .send()
            .await
            .map_or(true, |answer| !answer.status().is_success())
        {
            ensure!(Instant::now() < deadline, "the API did not answer /healthz");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(api)
    }

    /// A new project token (`POST /v1/projects/{id}/tokens` with the admin token), then two
    /// muted groups and one applied resolution, as a project in use has.
    async fn project_token(&self, project: u64) -> anyhow::Result<String> {
        let http = reqwest::Client::new();
        let answer: Value = http
            .post(format!("{}/v1/projects/{project}/tokens", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = answer["token"]
            .as_str()
            .context("no token answered")?
            .to_owned();
        let page: Value = http
            .get(format!(
                "{}/v1/projects/{project}/violations?limit=20&kind=csp-violation",
                self.url
            ))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let groups = page["groups"].as_array().cloned().unwrap_or_default();
        for group in groups.iter().skip(5).take(2) {
            let fingerprint = group["fingerprint"].as_str().unwrap_or_default();
            http.post(format!(
                "{}/v1/projects/{project}/violations/{fingerprint}/mute",
                self.url
            ))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?;
        }
        for group in &groups {
            let fingerprint = group["fingerprint"].as_str().unwrap_or_default();
            let applied = http
                .post(format!(
                    "{}/v1/projects/{project}/violations/{fingerprint}/resolution/apply",
                    self.url
                ))
                .bearer_auth(&token)
                .json(&json!({"force": true}))
                .send()
                .await?;
            if applied.status().is_success() {
                break;
            }
        }
        Ok(token)
    }

    /// One evaluation of the alert rules at `now` over every active project, as the API's
    /// evaluator runs it every `--alert-interval-secs`.
    async fn evaluate_alerts(&self, now: u32) -> anyhow::Result<u64> {
        let app = api::app::App::new(self.config.clone(), None);
        let (sender, _receiver) = api::alerts::webhook::queue(self.config.alerts.webhook_queue);
        Ok(api::alerts::rules::evaluate(&app, &sender, now).await?)
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// A ClickHouse server in a temp dir with `system.query_log` on; killed and removed on drop.
struct Server {
    child: Child,
    dir: PathBuf,
    http_port: u16,
}

impl Server {
    async fn start() -> anyhow::Result<Self> {
        let binary = std::env::var_os("PALISADE_CLICKHOUSE_SERVER")
            .map_or_else(|| PathBuf::from(CLICKHOUSE_SERVER), PathBuf::from);
        ensure!(binary.is_file(), "{} not found", binary.display());
        let dir = std::env::temp_dir().join(format!(
            "palisade-api-bench-{}-{}",
            std::process::id(),
            unix_now()
        ));
        for sub in ["data", "tmp", "user_files", "format_schemas", "log"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let http_port = free_port()?;
        let tcp_port = free_port()?;
        let config = CONFIG_XML
            .replace("@DIR@", &dir.display().to_string())
            .replace("@HTTP_PORT@", &http_port.to_string())
            .replace("@TCP_PORT@", &tcp_port.to_string())
            .replace(
                "</yandex>",
                "    <query_log><database>system</database><table>query_log</table>\
                 <flush_interval_milliseconds>1000</flush_interval_milliseconds></query_log>\n</yandex>",
            );
        let users = USERS_XML.replace(
            "<profiles><default></default></profiles>",
            "<profiles><default><log_queries>1</log_queries></default></profiles>",
        );
        ensure!(
            users.contains("log_queries"),
            "deploy/clickhouse/users.xml changed: cannot turn query_log on"
        );
        std::fs::write(dir.join("config.xml"), config)?;
        std::fs::write(dir.join("users.xml"), users)?;
        let log = std::fs::File::create(dir.join("stdout.log"))?;
        let child = Command::new(binary)
            .arg(format!(
                "--config-file={}",
                dir.join("config.xml").display()
            ))
            .current_dir(&dir)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("cannot start clickhouse-server")?;
        let server = Self {
            child,
            dir,
            http_port,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ping = http.get(format!("{}/ping", server.url())).send().await;
            if let Ok(answer) = ping {
                if answer.status().is_success() {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("ClickHouse did not answer /ping within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "clickhouse        {} (temp dir {})",
            server.url(),
            server.dir.display()
        );
        Ok(server)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Sleeps to the start of the next Unix second and returns it: `query_log` times are whole
/// seconds, so every query of the previous phase started before it.
async fn next_second() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    tokio::time::sleep(Duration::from_nanos(
        1_000_000_000 - u64::from(now.subsec_nanos()) + 1_000_000,
    ))
    .await;
    unix_now()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn uptime() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cores} cores, load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}
