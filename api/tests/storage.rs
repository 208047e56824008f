//! A project's storage bound (issue 12: "storage bound per tenant") through the real API on a
//! real ClickHouse 18.16: `storage.retention_days` and `storage.max_rows` set on create and
//! update round-trip through `project_storage` (the table the processor's retention job reads),
//! an update keeps what it does not name, bad values answer 400 in the `{"error","detail"}`
//! shape and change nothing, and only admin tokens may set them.
#![allow(clippy::unwrap_used)]

mod common;

use common::{migrate, scalar, Api, ADMIN_TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testbed::clickhouse::ClickHouse;

/// What the processor's retention job reads for `project` (argMax by version, as it does).
async fn stored(server: &ClickHouse, project: u64) -> String {
    scalar(
        server,
        &format!(
            "SELECT argMax(retention_days, version), argMax(max_rows, version) \
             FROM {{db}}.project_storage WHERE project_id = {project}"
        ),
    )
    .await
}

fn refused(status: StatusCode, body: &Value, error: &str, detail_has: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], error, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains(detail_has), "{detail}");
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_bounds_round_trip_and_are_validated() {
    let Some(server) = ClickHouse::start().await else {
        return;
    };
    migrate(&server).await;
    let api = Api::start(&server, &["--max-project-max-rows", "1000000"]).await;
    let admin = Some(ADMIN_TOKEN);

    // Created with a bound: answered and stored.
    let (status, created) = api
        .send(
            Method::POST,
            "/v1/projects",
            admin,
            Some(json!({ "id": 5, "storage": { "retention_days": 7, "max_rows": 500 } })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["project"]["storage"],
        json!({ "retention_days": 7, "max_rows": 500 })
    );
    assert_eq!(stored(&server, 5).await, "7\t500");
    let token = created["token"].as_str().unwrap().to_owned();

    // Created without: both 0 (the processor's defaults), nothing stored.
    let (status, plain) = api
        .send(
            Method::POST,
            "/v1/projects",
            admin,
            Some(json!({ "id": 6 })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{plain}");
    assert_eq!(
        plain["project"]["storage"],
        json!({ "retention_days": 0, "max_rows": 0 })
    );
    assert_eq!(stored(&server, 6).await, "0\t0");

    // An update names one field and keeps the other.
    let (status, updated) = api
        .send(
            Method::PATCH,
            "/v1/projects/5",
            admin,
            Some(json!({ "storage": { "max_rows": 10000 } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        updated["storage"],
        json!({ "retention_days": 7, "max_rows": 10000 })
    );
    assert_eq!(stored(&server, 5).await, "7\t10000");
    // An update of something else keeps the bound.
    let (status, renamed) = api
        .send(
            Method::PATCH,
            "/v1/projects/5",
            admin,
            Some(json!({ "name": "shop" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["storage"]["max_rows"], 10000);

    // Read back by the project's own token and in the admin's list.
    let own = api.get("/v1/projects/5", &token).await;
    assert_eq!(
        own["storage"],
        json!({ "retention_days": 7, "max_rows": 10000 })
    );
    let list = api.get("/v1/projects", ADMIN_TOKEN).await;
    let storages: Vec<(u64, Value)> = list["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_u64().unwrap(), p["storage"].clone()))
        .collect();
    assert_eq!(
        storages,
        vec![
            (5, json!({ "retention_days": 7, "max_rows": 10000 })),
            (6, json!({ "retention_days": 0, "max_rows": 0 })),
        ]
    );

    // Back to the defaults with 0.
    let (status, reset) = api
        .send(
            Method::PATCH,
            "/v1/projects/5",
            admin,
            Some(json!({ "storage": { "retention_days": 0 } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    assert_eq!(stored(&server, 5).await, "0\t10000");

    // Out of range, of the wrong type, or unknown: 400, nothing changed.
    let bad = [
        (
            json!({ "storage": { "retention_days": 3651 } }),
            "invalid_parameter",
            "storage.retention_days",
        ),
        (
            json!({ "storage": { "max_rows": 1_000_001 } }),
            "invalid_parameter",
            "storage.max_rows",
        ),
        (
            json!({ "storage": { "max_rows": -1 } }),
            "invalid_body",
            "invalid JSON body",
        ),
        (
            json!({ "storage": { "max_rows": "many" } }),
            "invalid_body",
            "invalid JSON body",
        ),
        (
            json!({ "storage": { "rows": 5 } }),
            "invalid_body",
            "unknown field",
        ),
        // One bad value refuses the whole update, the valid name included.
        (
            json!({ "name": "renamed", "storage": { "retention_days": 100000 } }),
            "invalid_parameter",
            "0 (the server default) to 3650 days",
        ),
    ];
    for (body, error, detail) in bad {
        let (status, answer) = api
            .send(Method::PATCH, "/v1/projects/5", admin, Some(body))
            .await;
        refused(status, &answer, error, detail);
    }
    let (status, answer) = api
        .send(
            Method::POST,
            "/v1/projects",
            admin,
            Some(json!({ "id": 7, "storage": { "max_rows": 2_000_000 } })),
        )
        .await;
    refused(status, &answer, "invalid_parameter", "storage.max_rows");
    let (status, _) = api.call(Method::GET, "/v1/projects/7", admin).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a refused create leaves nothing"
    );
    assert_eq!(stored(&server, 5).await, "0\t10000");
    assert_eq!(api.get("/v1/projects/5", ADMIN_TOKEN).await["name"], "shop");

    // A project token may read its bound but not change it.
    let (status, answer) = api
        .send(
            Method::PATCH,
            "/v1/projects/5",
            Some(&token),
            Some(json!({ "storage": { "max_rows": 1 } })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["error"], "admin_required");
    assert_eq!(stored(&server, 5).await, "0\t10000");

    api.stop().await;
}
