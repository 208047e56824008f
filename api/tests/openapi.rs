//! `api/openapi.json` documents exactly the implemented routes: every (method, path) of the
//! route table the router dispatches from is in the file, and every operation of the file is
//! in the table.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

#[test]
fn openapi_file_and_route_table_are_the_same_set() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap();
    let document: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let implemented: BTreeSet<(String, String)> = api::routes::ROUTES
        .iter()
        .map(|(method, path, _)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    let undocumented: Vec<_> = implemented.difference(&documented).collect();
    let unimplemented: Vec<_> = documented.difference(&implemented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.json: {undocumented:?}"
    );
    assert!(
        unimplemented.is_empty(),
        "documented but not implemented: {unimplemented:?}"
    );
    // Every path parameter a route uses is declared by the operation.
    for (method, path) in &implemented {
        let operation = &document["paths"][path][method.to_lowercase()];
        let declared: BTreeSet<&str> = operation["parameters"]
            .as_array()
            .map(|params| {
                params
                    .iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        let used: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        assert_eq!(declared, used, "{method} {path}");
    }
}

/// The documented storage bound (issue 12) is what the server accepts: the request and the
/// answer name the same `Storage` schema, its fields are the body's, and its maxima are the
/// defaults of `--max-project-retention-days` and `--max-project-max-rows`.
#[test]
fn openapi_storage_bound_matches_the_server_defaults() {
    use clap::Parser as _;
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap();
    let document: serde_json::Value = serde_json::from_str(&text).unwrap();
    let schemas = &document["components"]["schemas"];
    let reference = serde_json::json!({ "$ref": "#/components/schemas/Storage" });
    assert_eq!(
        schemas["ProjectSettings"]["properties"]["storage"],
        reference
    );
    assert_eq!(schemas["Project"]["properties"]["storage"], reference);
    let storage = &schemas["Storage"];
    assert_eq!(storage["additionalProperties"], false);
    let fields: BTreeSet<&str> = storage["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, BTreeSet::from(["max_rows", "retention_days"]));
    let defaults = api::Config::try_parse_from(["palisade-api"])
        .unwrap()
        .projects;
    assert_eq!(
        storage["properties"]["retention_days"]["maximum"],
        defaults.max_project_retention_days
    );
    assert_eq!(
        storage["properties"]["max_rows"]["maximum"],
        defaults.max_project_max_rows
    );
}
