//! The listing reads candidates without FINAL and aggregates only them (`store::groups`): its
//! pages must still be exactly those of `reports FINAL`, even when unmerged stale versions
//! carry a later `last_seen` than the version FINAL keeps (then the candidates are not enough
//! and the listing answers from FINAL). The proposed policy's qualifying groups likewise.
#![allow(clippy::unwrap_used)]

mod common;

use common::{migrate, scalar, unix_now, Api, ADMIN_TOKEN, DATABASE};
use testbed::clickhouse::ClickHouse;

/// One row (`row_id`, `version`) of group `fingerprint`, window `window`, ending `end` seconds
/// after it, with `occurrences = version`.
fn row(fingerprint: u64, row_id: u64, version: u64, window: u32, end: u32) -> String {
    format!(
        "({row_id}, {version}, 1, toDate(toDateTime({window})), toDateTime({window}), \
         toDateTime({window}), toDateTime({}), {version}, {fingerprint}, 'csp-violation', \
         'enforce', 'https://shop.example/p', 'https://shop.example', 'shop.example', '/p', \
         'https://cdn.example/x.js', 'url', 'https://cdn.example', 'script-src-elem', \
         '192.0.2.{row_id}', 'script-src ''self''')",
        window + end
    )
}

/// A migrated ClickHouse whose `reports` never merges, so stale versions stay beside the
/// versions FINAL keeps (`None` when the server cannot start outside CI).
async fn unmerged_reports() -> Option<ClickHouse> {
    let server = ClickHouse::start().await?;
    migrate(&server).await;
    server
        .query(&format!("SYSTEM STOP MERGES {DATABASE}.reports"))
        .unwrap();
    Some(server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_those_of_final_despite_stale_versions() {
    let Some(server) = unmerged_reports().await else {
        return;
    };
    let now = unix_now();
    let base = now / 60 * 60 - 7_200;
    // Groups 1-4: old rows (version 2, ending 30 s in) whose stale version 1 claims to end an
    // hour later than everything else. Groups 5 and 6: newer rows, no stale version.
    // Exact order (FINAL): 6, 5, 4, 3, 2, 1. By the largest `last_seen` of any version: 1-4
    // first, so the first candidates of a 1-group page are all stale-inflated.
    let mut rows = Vec::new();
    for group in 1..=4u64 {
        let window = base + u32::try_from(group).unwrap() * 60;
        rows.push(row(group, group, 2, window, 30));
    }
    rows.push(row(5, 5, 2, base + 3_000, 30));
    rows.push(row(6, 6, 2, base + 3_600, 30));
    // Stale versions in their own part (a later insert), as between merges.
    let insert = format!(
        "INSERT INTO {DATABASE}.reports (row_id, version, project_id, day, window_start, \
         first_seen, last_seen, occurrences, fingerprint, kind, disposition, document_url, \
         document_origin, document_host, document_path, blocked_url, blocked_class, \
         blocked_origin, effective_directive, client_ip, original_policy) VALUES "
    );
    server
        .query(&format!("{insert}{}", rows.join(", ")))
        .unwrap();
    let stale: Vec<String> = (1..=4u64)
        .map(|group| {
            let window = base + u32::try_from(group).unwrap() * 60;
            row(group, group, 1, window, 7_000)
        })
        .collect();
    server
        .query(&format!("{insert}{}", stale.join(", ")))
        .unwrap();
    assert_eq!(
        scalar(&server, "SELECT count() FROM {db}.reports").await,
        "10"
    );

    let api = Api::start(&server, &[]).await;
    let mut order = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = api
            .get(
                &format!("/v1/projects/1/violations?limit=1{cursor}"),
                ADMIN_TOKEN,
            )
            .await;
        let groups = page["groups"].as_array().unwrap();
        assert!(groups.len() <= 1, "{page}");
        for group in groups {
            order.push(group["fingerprint"].as_str().unwrap().to_owned());
            assert_eq!(group["occurrences"], 2, "FINAL's version: {group}");
            let last = group["last_seen_unix"].as_u64().unwrap();
            let first = group["first_seen_unix"].as_u64().unwrap();
            assert_eq!(last, first + 30, "FINAL's last_seen: {group}");
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
        assert!(order.len() <= 6, "pages never end: {order:?}");
    }
    let expected: Vec<String> = [6u64, 5, 4, 3, 2, 1]
        .iter()
        .map(|fp| format!("{fp:016x}"))
        .collect();
    assert_eq!(order, expected);
    // Bigger pages: the same order at once.
    let page = api
        .get("/v1/projects/1/violations?limit=4", ADMIN_TOKEN)
        .await;
    let first_four: Vec<&str> = page["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(
        first_four,
        expected[..4].iter().map(String::as_str).collect::<Vec<_>>()
    );
    api.stop().await;
}

/// One row of group `fingerprint` (blocked origin `https://cdn{fingerprint}.example`, client
/// `198.51.{client}.7`, a /24 network each) with `occurrences = version`, the policy hashed as the processor does.
fn policy_row(fingerprint: u64, row_id: u64, version: u64, window: u32, client: u64) -> String {
    format!(
        "({row_id}, {version}, 1, toDate(toDateTime({window})), toDateTime({window}), \
         toDateTime({window}), toDateTime({}), {version}, {fingerprint}, 'csp-violation', \
         'enforce', 'https://shop.example/p', 'https://shop.example', 'shop.example', '/p', \
         'https://cdn{fingerprint}.example/x.js', 'url', 'https://cdn{fingerprint}.example', \
         'script-src-elem', '198.51.{client}.7', 'script-src ''self''', \
         cityHash64('script-src ''self'''))",
        window + 30
    )
}

/// The proposed policy's qualifying groups are read without FINAL too (`store::
/// qualifying_groups`): unmerged stale versions may lift a group over the thresholds by their
/// sum, but only FINAL's counts may qualify it, and when the candidates cannot prove the top
/// `--max-resolutions` exact the answer comes from FINAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposed_policy_qualifies_by_final_counts() {
    let Some(server) = unmerged_reports().await else {
        return;
    };
    let now = unix_now();
    let window = now / 60 * 60 - 3_600;
    // Three clients each. Group 1: 3 x 5 = 15 (qualifies at 10). Groups 2 and 4: 3 x 3 = 9
    // (they do not), with stale versions of 2 and 1 for each row: the sum of all, 18, passes
    // and ranks them first. Group 3: 3 x 4 = 12.
    let mut rows = Vec::new();
    let mut stale = Vec::new();
    for client in 1..=3u64 {
        rows.push(policy_row(1, 10 + client, 5, window, client));
        rows.push(policy_row(3, 30 + client, 4, window, client));
        for group in [2, 4] {
            rows.push(policy_row(group, group * 10 + client, 3, window, client));
            for version in [1, 2] {
                stale.push(policy_row(
                    group,
                    group * 10 + client,
                    version,
                    window,
                    client,
                ));
            }
        }
    }
    let insert = format!(
        "INSERT INTO {DATABASE}.reports (row_id, version, project_id, day, window_start, \
         first_seen, last_seen, occurrences, fingerprint, kind, disposition, document_url, \
         document_origin, document_host, document_path, blocked_url, blocked_class, \
         blocked_origin, effective_directive, client_ip, original_policy, policy_hash) VALUES "
    );
    for part in [&rows, &stale] {
        server
            .query(&format!("{insert}{}", part.join(", ")))
            .unwrap();
    }

    let included = |proposed: &serde_json::Value| -> Vec<String> {
        let mut origins: Vec<String> = proposed["included"]
            .as_array()
            .unwrap_or_else(|| panic!("{proposed}"))
            .iter()
            .flat_map(|i| i["sources"].as_array().unwrap().clone())
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        origins.sort();
        origins
    };

    // Room for every candidate: the stale-lifted groups 2 and 4 are candidates and are dropped.
    let api = Api::start(&server, &[]).await;
    let proposed = api.get("/v1/projects/1/policy/proposed", ADMIN_TOKEN).await;
    assert_eq!(
        included(&proposed),
        ["https://cdn1.example", "https://cdn3.example"],
        "{proposed}"
    );
    api.stop().await;

    // One resolution: the two candidates are groups 2 and 4 (bounded at 18), and neither
    // qualifies; group 1 was left out, so FINAL answers: group 1.
    let api = Api::start(&server, &["--max-resolutions", "1"]).await;
    let proposed = api.get("/v1/projects/1/policy/proposed", ADMIN_TOKEN).await;
    assert_eq!(included(&proposed), ["https://cdn1.example"], "{proposed}");
    api.stop().await;
}
