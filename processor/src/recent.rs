//! `palisade-processor recent`: a project's recent violation groups, read from ClickHouse and
//! printed as an aligned table (or TSV) for people who do not want to write SQL.
//!
//! The query building ([`group_query`], [`totals_query`]) and the rendering ([`render_table`],
//! [`render_tsv`]) are pure; [`recent`] is the small I/O part between them. Counts are exact:
//! the query reads `reports FINAL`, so re-emitted rows (same `row_id`) count once.
//!
//! ClickHouse 18.16 has no query parameters, so the SQL is built from validated values only:
//! numbers, a database name checked as an identifier and a kind checked against `[a-z0-9-]`
//! (then quoted anyway).

use std::fmt::Write as _;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::migrate::is_identifier;

/// Most hours `--since-hours` accepts (one leap year).
pub const MAX_SINCE_HOURS: u32 = 366 * 24;
/// Most groups `--limit` accepts: the whole answer is held in memory and printed.
pub const MAX_LIMIT: u32 = 1000;
/// Longest cell in the table output, in characters; longer cells end with `…`.
const MAX_CELL_CHARS: usize = 60;

/// Output format of `recent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns under a totals line.
    Table,
    /// Tab-separated, one header line of column names, no totals line.
    Tsv,
}

/// Arguments of `palisade-processor recent`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct RecentArgs {
    /// Project whose violations are listed (its numeric id). Required.
    #[arg(long)]
    pub project: u64,

    /// How far back to look (by a group's last occurrence), in hours, 1 to 8784. Default 24.
    #[arg(long, default_value = "24", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SINCE_HOURS)))]
    pub since_hours: u32,

    /// Most groups printed, 1 to 1000, newest first. Default 20.
    #[arg(long, default_value = "20", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LIMIT)))]
    pub limit: u32,

    /// Only this report kind (`csp-violation`, `network-error`, `deprecation`, ...). Default: all.
    #[arg(long, value_parser = kind_name)]
    pub kind: Option<String>,

    /// Also list reports classified as noise (extensions, injected scripts, ...). Default off.
    #[arg(long)]
    pub include_noise: bool,

    /// Output format. Default `table`.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// A report kind as stored in the `kind` column: 1 to 64 of `[a-z0-9-]`.
fn kind_name(text: &str) -> Result<String, String> {
    let valid = (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "expected a report kind like csp-violation, got {text:?}"
        ))
    }
}

/// Why `recent` could not answer.
#[derive(Debug, thiserror::Error)]
pub enum RecentError {
    #[error("invalid ClickHouse database name {0:?}")]
    InvalidDatabaseName(String),
    #[error("cannot query ClickHouse at {url}")]
    Query {
        url: String,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error("ClickHouse at {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
}

/// One violation group: (directive or kind, blocked origin, page) with its exact count.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct Group {
    /// The effective directive, or the report kind for reports without one.
    pub what: String,
    pub blocked_origin: String,
    /// Document host and path.
    pub page: String,
    pub occurrences: u64,
    /// Unix seconds.
    pub first_seen: u32,
    /// Unix seconds.
    pub last_seen: u32,
    /// The browser family with the most occurrences in the group.
    pub top_browser: String,
}

/// Totals over every group in range, not only the printed ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clickhouse::Row, serde::Deserialize)]
pub struct Totals {
    pub occurrences: u64,
    pub groups: u64,
}

/// The `WHERE` clause shared by both queries: `now` and the filters, as literals.
fn filter(args: &RecentArgs, now: u32) -> String {
    let since = now.saturating_sub(args.since_hours.saturating_mul(3600));
    let mut sql = format!(
        "project_id = {} AND last_seen >= toDateTime({since})",
        args.project
    );
    if let Some(kind) = &args.kind {
        let _ = write!(sql, " AND kind = {}", quote(kind));
    }
    if !args.include_noise {
        sql.push_str(" AND noise = ''");
    }
    sql
}

/// The grouping columns, as expressions over `reports`.
const GROUP_COLUMNS: &str = "if(effective_directive != '', effective_directive, kind) AS what, \
     blocked_origin, concat(document_host, document_path) AS page";

/// The query for the groups, newest first then biggest. The inner query sums per browser so the
/// outer one can pick the top browser by occurrences (ClickHouse 18.16 has no weighted topK).
pub fn group_query(database: &str, args: &RecentArgs, now: u32) -> Result<String, RecentError> {
    if !is_identifier(database) {
        return Err(RecentError::InvalidDatabaseName(database.to_owned()));
    }
    Ok(format!(
        "SELECT what, blocked_origin, page, sum(n) AS occurrences, min(first) AS first_seen, \
         max(last) AS last_seen, argMax(ua_family, n) AS top_browser \
         FROM (SELECT {GROUP_COLUMNS}, ua_family, sum(occurrences) AS n, \
         min(first_seen) AS first, max(last_seen) AS last \
         FROM {database}.reports FINAL WHERE {filter} \
         GROUP BY what, blocked_origin, page, ua_family) \
         GROUP BY what, blocked_origin, page \
         ORDER BY last_seen DESC, occurrences DESC, what, blocked_origin, page \
         LIMIT {limit}",
        filter = filter(args, now),
        limit = args.limit,
    ))
}

/// The query for the totals line: all occurrences and groups in range.
pub fn totals_query(database: &str, args: &RecentArgs, now: u32) -> Result<String, RecentError> {
    if !is_identifier(database) {
        return Err(RecentError::InvalidDatabaseName(database.to_owned()));
    }
    Ok(format!(
        "SELECT sum(occurrences) AS occurrences, uniqExact(what, blocked_origin, page) AS groups \
         FROM (SELECT {GROUP_COLUMNS}, occurrences FROM {database}.reports FINAL WHERE {filter})",
        filter = filter(args, now),
    ))
}

/// A ClickHouse string literal.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Query `client` (URL and credentials set) and return the printed answer.
pub async fn recent(
    client: &clickhouse::Client,
    url: &str,
    database: &str,
    args: &RecentArgs,
    now: u32,
    timeout: Duration,
) -> Result<String, RecentError> {
    let groups_sql = group_query(database, args, now)?;
    let totals_sql = totals_query(database, args, now)?;
    let query = async {
        let groups = client.query(&groups_sql).fetch_all::<Group>().await?;
        let totals = client.query(&totals_sql).fetch_one::<Totals>().await?;
        Ok::<_, clickhouse::error::Error>((groups, totals))
    };
    let (groups, totals) = tokio::time::timeout(timeout, query)
        .await
        .map_err(|_| RecentError::Timeout {
            url: url.to_owned(),
            timeout,
        })?
        .map_err(|source| RecentError::Query {
            url: url.to_owned(),
            source,
        })?;
    Ok(match args.format {
        Format::Table => render_table(args, totals, &groups),
        Format::Tsv => render_tsv(&groups),
    })
}

const HEADERS: [&str; 7] = [
    "LAST SEEN (UTC)",
    "FIRST SEEN (UTC)",
    "COUNT",
    "DIRECTIVE/KIND",
    "BLOCKED",
    "PAGE",
    "BROWSER",
];

fn cells(group: &Group) -> [String; 7] {
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    [
        utc(group.last_seen),
        utc(group.first_seen),
        group.occurrences.to_string(),
        or_dash(&group.what),
        or_dash(&group.blocked_origin),
        or_dash(&group.page),
        or_dash(&group.top_browser),
    ]
}

/// The table: a totals line, then the column names and one aligned line per group; the count
/// column is right-aligned, the last column is not padded. Empty: one "no violations" line.
pub fn render_table(args: &RecentArgs, totals: Totals, groups: &[Group]) -> String {
    if groups.is_empty() {
        return format!("no violations in the last {} hours\n", args.since_hours);
    }
    let mut out = format!(
        "project {}: {} violations in {} groups in the last {} hours{}{}, showing {}\n",
        args.project,
        totals.occurrences,
        totals.groups,
        args.since_hours,
        args.kind
            .as_deref()
            .map(|k| format!(" ({k})"))
            .unwrap_or_default(),
        if args.include_noise {
            " including noise"
        } else {
            ""
        },
        groups.len(),
    );
    let rows: Vec<[String; 7]> = groups
        .iter()
        .map(|g| cells(g).map(|c| truncate(&c)))
        .collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = HEADERS.map(str::to_owned);
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let _ = match i {
                2 => write!(line, "{cell:>width$}"),
                _ => write!(line, "{cell:<width$}"),
            };
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// TSV: the column names, then one line per group; tabs, newlines and backslashes in cells are
/// escaped the way ClickHouse's TabSeparated does.
pub fn render_tsv(groups: &[Group]) -> String {
    let mut out = String::from(
        "last_seen\tfirst_seen\toccurrences\twhat\tblocked_origin\tpage\ttop_browser\n",
    );
    for group in groups {
        let row = cells(group).map(|c| tsv_escape(&c));
        out.push_str(&row.join("\t"));
        out.push('\n');
    }
    out
}

fn tsv_escape(cell: &str) -> String {
    cell.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
}

fn truncate(cell: &str) -> String {
    if cell.chars().count() <= MAX_CELL_CHARS {
        return cell.to_owned();
    }
    let mut short: String = cell.chars().take(MAX_CELL_CHARS - 1).collect();
    short.push('…');
    short
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, from Unix seconds (days to civil date: Howard Hinnant's
/// `civil_from_days`, <https://howardhinnant.github.io/date_algorithms.html>).
pub fn utc(unix: u32) -> String {
    let secs = i64::from(unix);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The current time in Unix seconds, for [`recent`]'s `now` (saturates past 2106).
pub fn now_unix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> RecentArgs {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: RecentArgs,
        }
        use clap::Parser as _;
        Wrapper::try_parse_from(
            ["recent", "--project", "7"]
                .into_iter()
                .chain(extra.iter().copied()),
        )
        .unwrap()
        .args
    }

    fn group(what: &str, occurrences: u64, last_seen: u32) -> Group {
        Group {
            what: what.to_owned(),
            blocked_origin: "https://cdn.example".to_owned(),
            page: "shop.example/checkout".to_owned(),
            occurrences,
            first_seen: 1_700_006_405,
            last_seen,
            top_browser: "Chrome".to_owned(),
        }
    }

    #[test]
    fn defaults_and_bounds() {
        let a = args(&[]);
        assert_eq!(
            (a.since_hours, a.limit, a.format, a.include_noise),
            (24, 20, Format::Table, false)
        );
        assert!(a.kind.is_none());
        use clap::Parser as _;
        #[derive(clap::Parser, Debug)]
        struct W {
            #[command(flatten)]
            _a: RecentArgs,
        }
        for bad in [
            &["--limit", "0"][..],
            &["--limit", "1001"],
            &["--since-hours", "0"],
            &["--kind", "csp'; DROP"],
            &["--kind", ""],
            &["--format", "json"],
        ] {
            let argv = ["recent", "--project", "1"]
                .into_iter()
                .chain(bad.iter().copied());
            assert!(W::try_parse_from(argv).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn group_query_has_the_literals_and_excludes_noise_by_default() {
        let sql = group_query(
            "palisade",
            &args(&["--since-hours", "2", "--limit", "5"]),
            10_000,
        )
        .unwrap();
        assert!(sql.contains("FROM palisade.reports FINAL"), "{sql}");
        assert!(
            sql.contains("project_id = 7 AND last_seen >= toDateTime(2800) AND noise = ''"),
            "{sql}"
        );
        assert!(sql.ends_with("LIMIT 5"), "{sql}");
        assert!(!sql.contains("kind ="), "{sql}");
        let sql = group_query(
            "palisade",
            &args(&["--kind", "network-error", "--include-noise"]),
            10_000,
        )
        .unwrap();
        assert!(sql.contains("AND kind = 'network-error'"), "{sql}");
        assert!(!sql.contains("noise = ''"), "{sql}");
        // `now` earlier than the range saturates instead of wrapping.
        assert!(group_query("palisade", &args(&[]), 5)
            .unwrap()
            .contains("toDateTime(0)"));
    }

    #[test]
    fn rejects_a_database_that_is_not_an_identifier() {
        assert!(matches!(
            group_query("x; DROP TABLE y", &args(&[]), 0),
            Err(RecentError::InvalidDatabaseName(_))
        ));
        assert!(totals_query("a.b", &args(&[]), 0).is_err());
        let sql = totals_query("db", &args(&[]), 3600 * 24).unwrap();
        assert!(
            sql.contains(
                "FROM db.reports FINAL WHERE project_id = 7 AND last_seen >= toDateTime(0)"
            ),
            "{sql}"
        );
    }

    #[test]
    fn quote_escapes_backslashes_and_quotes() {
        assert_eq!(quote(r"a'b\c"), r"'a\'b\\c'");
    }

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_006_405), "2023-11-15 00:00:05");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(u32::MAX), "2106-02-07 06:28:15");
    }

    #[test]
    fn table_aligns_columns_under_a_totals_line() {
        let groups = [
            group("script-src-elem", 12, 1_700_006_450),
            Group {
                blocked_origin: String::new(),
                top_browser: "Firefox".to_owned(),
                ..group("network-error", 3, 1_700_006_420)
            },
        ];
        let totals = Totals {
            occurrences: 20,
            groups: 3,
        };
        let text = render_table(&args(&["--limit", "2"]), totals, &groups);
        let expected = "\
project 7: 20 violations in 3 groups in the last 24 hours, showing 2
LAST SEEN (UTC)      FIRST SEEN (UTC)     COUNT  DIRECTIVE/KIND   BLOCKED              PAGE                   BROWSER
2023-11-15 00:00:50  2023-11-15 00:00:05     12  script-src-elem  https://cdn.example  shop.example/checkout  Chrome
2023-11-15 00:00:20  2023-11-15 00:00:05      3  network-error    -                    shop.example/checkout  Firefox
";
        assert_eq!(text, expected);
    }

    #[test]
    fn table_names_the_filters_and_truncates_long_cells() {
        let long = group(&"x".repeat(100), 1, 1_700_006_450);
        let text = render_table(
            &args(&["--kind", "csp-violation", "--include-noise"]),
            Totals {
                occurrences: 1,
                groups: 1,
            },
            &[long],
        );
        assert!(text.starts_with(
            "project 7: 1 violations in 1 groups in the last 24 hours (csp-violation) including noise, showing 1\n"
        ), "{text}");
        assert!(text.contains(&format!("{}…", "x".repeat(59))), "{text}");
        assert!(!text.contains(&"x".repeat(60)), "{text}");
    }

    #[test]
    fn empty_answer_says_so() {
        assert_eq!(
            render_table(&args(&["--since-hours", "6"]), Totals::default(), &[]),
            "no violations in the last 6 hours\n"
        );
    }

    #[test]
    fn tsv_escapes_cells() {
        let g = Group {
            page: "a\tb\\c\nd".to_owned(),
            ..group("script-src", 2, 1_700_006_450)
        };
        assert_eq!(
            render_tsv(&[g]),
            "last_seen\tfirst_seen\toccurrences\twhat\tblocked_origin\tpage\ttop_browser\n\
             2023-11-15 00:00:50\t2023-11-15 00:00:05\t2\tscript-src\thttps://cdn.example\ta\\tb\\\\c\\nd\tChrome\n"
        );
    }
}
