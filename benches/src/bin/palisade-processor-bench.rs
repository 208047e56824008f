//! `palisade-processor-bench`: the processor's throughput from Kafka records to ClickHouse rows,
//! without Kafka, against a real ClickHouse on loopback.
//!
//! Generates `--reports` realistic messages in memory first (real report bodies from
//! [`benches::samples`] parsed by `schemas`, fingerprinted and keyed as ingest does, spread over
//! `--keys` distinct dedup keys and `--partitions` partitions, received at `--simulated-rate`
//! reports per simulated second), then times only the processor's own work: the library's
//! [`processor::pipeline::Pipeline`] (decode -> dedup -> enrich -> batch) driven like the consume
//! loop drives it (a tick every [`processor::run::TICK`], a batch written when due), and each
//! batch written in the loop's order through [`processor::write::Writer`] (insert in chunks of
//! `--batch-rows`, rollup refresh, checkpoints). Prints reports/s of wall clock and reports per
//! CPU-second of this process (utime + stime from `/proc/self/stat`, so ClickHouse's own CPU is
//! excluded), then checks that `sum(occurrences)` in ClickHouse equals `--reports`.
//!
//! Processor settings (window, batch size and age, UA cache...) are the processor's own flags
//! and defaults: pass them after `--`, e.g. `-- --batch-rows 20000`.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context};
use clap::Parser as _;
use processor::batch::Batch;
use processor::consume::Record;
use processor::enrich::{Enricher, Geo};
use processor::pipeline::{Handled, Pipeline};
use processor::write::{Checkpoint, Touched, Writer};

/// The processor binary's allocator, so the bench measures what the processor runs.
#[global_allocator]
static ALLOCATOR: processor::Allocator = processor::Allocator;

/// Processor throughput benchmark (in-memory source, real ClickHouse on loopback).
#[derive(Debug, clap::Parser)]
struct Args {
    /// ClickHouse HTTP URL (loopback only), e.g. `http://127.0.0.1:8123`.
    #[arg(long)]
    clickhouse_url: String,
    /// Database the bench drops, migrates and fills. Default `palisade_bench`.
    #[arg(long, default_value = "palisade_bench")]
    database: String,
    /// Reports (Kafka records) to process. Default 1,000,000.
    #[arg(long, default_value_t = 1_000_000)]
    reports: u64,
    /// Distinct dedup keys (violation x client) the reports are spread over. Default 100,000.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Distinct violations (fingerprints) among the keys; the rest is the client. Default 2,000.
    #[arg(long, default_value_t = 2_000)]
    fingerprints: u64,
    /// Kafka partitions the records are spread over by key. Default 4.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Reports per simulated second (`received_at_ms` advances by this rate), which decides how
    /// many dedup windows the run spans. Default 10,000.
    #[arg(long, default_value_t = 10_000)]
    simulated_rate: u64,
    /// Kafka payload layout of the generated messages: `binary` (`schemas::binary`, what
    /// ingest writes by default) or `json` (ingest's `--kafka-message-format json`). Default
    /// binary.
    #[arg(long, default_value = "binary")]
    message_format: schemas::MessageFormat,
    /// Processor flags (`palisade-processor --help`), after `--`.
    #[arg(last = true)]
    processor_args: Vec<String>,
}

/// User agents of the simulated clients (woothee classifies each; the LRU caches them).
const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
];

const PROJECT_ID: u64 = 1;
const GROUP: &str = "palisade-processor-bench";
const TOPIC: &str = "bench";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.partitions > 0, "--partitions must be positive");
    ensure!(
        args.keys > 0 && args.fingerprints > 0 && args.simulated_rate > 0,
        "--keys, --fingerprints and --simulated-rate must be positive"
    );
    benches::loopback::ensure(&args.clickhouse_url)?;
    let config = processor::Config::try_parse_from(
        [
            "palisade-processor",
            "--clickhouse-url",
            &args.clickhouse_url,
        ]
        .into_iter()
        .map(str::to_owned)
        .chain(["--clickhouse-database".to_owned(), args.database.clone()])
        .chain(args.processor_args.iter().cloned()),
    )
    .context("invalid processor flags after --")?;
    // One thread, like the processor's consume loop (a current-thread runtime on its thread).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build the runtime")?;
    runtime.block_on(bench(&args, &config))
}

async fn bench(args: &Args, config: &processor::Config) -> anyhow::Result<()> {
    let client = config.clickhouse_client();
    client
        .query(&format!("DROP DATABASE IF EXISTS {}", args.database))
        .execute()
        .await
        .context("cannot drop the bench database")?;
    processor::migrate::migrate(&client, &args.database)
        .await
        .context("migrations failed")?;
    let writer = Writer::new(&client, config.writer())?;

    let generate_started = Instant::now();
    let input = generate(args, config.window)?;
    println!(
        "generated         {} records ({} distinct dedup keys, {} partitions, {:.1} MiB of payload) in {:.1} s",
        input.records.len(),
        input.distinct_keys,
        args.partitions,
        input.payload_bytes as f64 / (1 << 20) as f64,
        generate_started.elapsed().as_secs_f64()
    );
    println!(
        "settings          window {} s, batch {} rows / {} ms, ua cache {}, url cache {}, insert chunk {} rows",
        config.window.as_secs(),
        config.batch_rows,
        config.batch_age.as_millis(),
        config.ua_cache_size,
        config.url_cache_size,
        config.batch_rows
    );

    let enricher = Enricher::new(
        config.ua_cache_size,
        config.url_cache_size,
        Geo::open(config.geoip_db.as_deref())?,
    );
    let mut pipeline = Pipeline::new(config.dedup(), config.batch_limits(), enricher);
    for partition in 0..args.partitions {
        pipeline.assign(partition, None);
    }

    let cpu_before = cpu_seconds()?;
    let started = Instant::now();
    let mut stats = Stats::default();
    let mut next_tick = started;
    for record in &input.records {
        let now = Instant::now();
        let stage = Instant::now();
        if let Handled::Undecodable(failure) = pipeline.record(record, now) {
            bail!("generated record {} undecodable: {failure}", record.offset);
        }
        if now >= next_tick {
            pipeline.tick(now);
            next_tick = now + processor::run::TICK;
        }
        stats.pipeline += stage.elapsed();
        if pipeline.should_flush(now) {
            let batch = pipeline.take();
            write_batch(&writer, config, batch, &mut stats).await?;
        }
    }
    // End of input: a partition idle for `--idle-close-secs` closes every window (what the
    // consume loop does once the topic is drained), then everything closed is written.
    let end = Instant::now() + config.idle_close + Duration::from_secs(1);
    let stage = Instant::now();
    pipeline.tick(end);
    stats.pipeline += stage.elapsed();
    loop {
        let batch = pipeline.take();
        if batch.rows.is_empty() {
            break;
        }
        write_batch(&writer, config, batch, &mut stats).await?;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()? - cpu_before;

    let reports = input.records.len() as f64;
    println!(
        "rows written      {} in {} batches ({} inserts; {:.1} reports per row)",
        stats.rows,
        stats.batches,
        stats.inserts,
        reports / stats.rows.max(1) as f64
    );
    println!(
        "wall              {wall:.2} s: {:.0} reports/s ({:.2} s in decode/dedup/enrich/batch, {:.2} s in writes incl. waiting for ClickHouse)",
        reports / wall,
        stats.pipeline.as_secs_f64(),
        stats.write.as_secs_f64()
    );
    println!(
        "cpu (this proc)   {cpu:.2} s: {:.0} reports per CPU-second ({:.0} rows per CPU-second)",
        reports / cpu.max(f64::EPSILON),
        stats.rows as f64 / cpu.max(f64::EPSILON)
    );
    let (ua_hits, ua_misses) = pipeline.enricher().ua_cache_stats();
    let (url_hits, url_misses) = pipeline.enricher().url_cache_stats();
    println!(
        "caches            ua {ua_hits} hits / {ua_misses} misses, url {url_hits} hits / {url_misses} misses"
    );
    println!(
        "peak rss          {} MiB (includes the pre-generated input)",
        peak_rss_kib()? / 1024
    );

    let sum: u64 = client
        .query(&format!(
            "SELECT toUInt64(sum(occurrences)) FROM {}.reports FINAL",
            args.database
        ))
        .fetch_one()
        .await
        .context("cannot read sum(occurrences)")?;
    println!(
        "check             sum(occurrences) in ClickHouse = {sum}, reports = {}",
        input.records.len()
    );
    ensure!(
        sum == input.records.len() as u64,
        "MISMATCH: ClickHouse counts {sum} occurrences for {} reports",
        input.records.len()
    );
    Ok(())
}

#[derive(Debug, Default)]
struct Stats {
    batches: u64,
    inserts: u64,
    rows: u64,
    pipeline: Duration,
    write: Duration,
}

/// One batch, in the consume loop's order (`processor::run`): insert rows in chunks, refresh
/// the touched rollup hours, write the checkpoints. (The loop then commits to Kafka; there is
/// no Kafka here.)
async fn write_batch(
    writer: &Writer,
    config: &processor::Config,
    batch: Batch,
    stats: &mut Stats,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let inserted = writer
        .insert_encoded_in_chunks(&batch.rows, config.batch_rows)
        .await?;
    ensure!(
        inserted.rejected.is_empty(),
        "clickhouse rejected {} rows: {:?}",
        inserted.rejected.len(),
        inserted.rejected.first().map(|r| r.error.to_string())
    );
    writer
        .refresh_rollups(&Touched::from_keys(batch.rows.keys()))
        .await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let checkpoints: Vec<Checkpoint> = batch
        .commits
        .iter()
        .map(|(partition, point)| Checkpoint {
            consumer_group: GROUP.to_owned(),
            topic: TOPIC.to_owned(),
            kafka_partition: *partition,
            kafka_offset: point.offset,
            metadata: point.metadata(),
            written_at: u32::try_from(now.as_secs()).unwrap_or(u32::MAX),
            version: u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
        })
        .collect();
    writer.write_checkpoints(&checkpoints).await?;
    stats.batches += 1;
    stats.inserts += u64::from(inserted.requests);
    stats.rows += inserted.rows as u64;
    stats.write += started.elapsed();
    Ok(())
}

struct Input {
    records: Vec<Record>,
    distinct_keys: usize,
    payload_bytes: usize,
}

/// `args.reports` records as ingest would publish them: `ReportMessage` payloads (JSON or binary) keyed by
/// their dedup key, on partition `key % partitions`.
fn generate(args: &Args, window: Duration) -> anyhow::Result<Input> {
    let templates = templates()?;
    // Start on a window boundary, so a run spans the same windows (and rows) every time.
    let window_ms = u64::try_from(window.as_millis())?.max(1);
    let now_ms = u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    let base_ms = now_ms / window_ms * window_ms;
    let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
    let mut keys = HashSet::new();
    let mut records = Vec::with_capacity(usize::try_from(args.reports)?);
    let mut payload_bytes = 0;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..args.reports {
        // A fixed-seed xorshift: the same run every time, keys in no particular order.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let key_index = state % args.keys;
        let violation = key_index % args.fingerprints;
        let client = key_index / args.fingerprints;
        let mut report = templates[(violation as usize) % templates.len()].clone();
        report.document_url = Some(format!(
            "https://shop.example.com/page-{violation}?session={i}"
        ));
        let user_agent = USER_AGENTS[(client as usize) % USER_AGENTS.len()];
        report.user_agent = Some(user_agent.to_owned());
        let client_ip = format!(
            "10.{}.{}.{}",
            (client >> 16) & 0xff,
            (client >> 8) & 0xff,
            client & 0xff
        );
        let fingerprint = schemas::fingerprint(PROJECT_ID, &report);
        let dedup_key = schemas::dedup_key(fingerprint, &client_ip);
        keys.insert(dedup_key);
        let message = schemas::ReportMessage {
            v: schemas::MESSAGE_VERSION,
            id: format!("0193a000-0000-7000-8000-{i:012x}"),
            received_at_ms: base_ms + i * 1000 / args.simulated_rate,
            project_id: PROJECT_ID,
            environment: Some("production".to_owned()),
            release: None,
            client_ip: Some(client_ip),
            request_user_agent: Some(user_agent.to_owned()),
            fingerprint: format!("{fingerprint:016x}"),
            noise: None,
            report,
        };
        let mut payload = Vec::with_capacity(1024);
        message.encode_as(args.message_format, &mut payload);
        payload_bytes += payload.len();
        let partition = i32::try_from(dedup_key % args.partitions as u64)?;
        let offset = offsets.entry(partition).or_default();
        records.push(Record {
            partition,
            offset: *offset,
            key: Some(format!("{dedup_key:016x}").into_bytes()),
            payload: Some(payload),
        });
        *offset += 1;
    }
    Ok(Input {
        records,
        distinct_keys: keys.len(),
        payload_bytes,
    })
}

/// Every report of the sample bodies, parsed as ingest parses them.
fn templates() -> anyhow::Result<Vec<schemas::Report>> {
    let mut parser = schemas::Parser::new(schemas::ParseLimits::default());
    let mut reports = Vec::new();
    for (name, body) in benches::samples::ALL {
        let mut bytes = body.as_bytes().to_vec();
        let parsed = parser
            .parse(&mut bytes)
            .with_context(|| format!("sample {name} does not parse"))?;
        for item in parsed.items {
            reports.push(item.with_context(|| format!("sample {name} has a bad report"))?);
        }
    }
    ensure!(!reports.is_empty(), "no sample reports");
    Ok(reports)
}

/// CPU seconds (user + system) this process has used so far, all threads.
fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("cannot read /proc/self/stat")?;
    // Fields after the `(comm)`, which may contain spaces: state is field 3, utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unexpected /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(index - 3)
            .context("short /proc/self/stat")?
            .parse::<f64>()?)
    };
    // USER_HZ is 100 on every Linux architecture we run on (x86_64, aarch64).
    Ok((ticks(14)? + ticks(15)?) / 100.0)
}

/// Peak resident memory (VmHWM) of this process, in KiB.
fn peak_rss_kib() -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}
