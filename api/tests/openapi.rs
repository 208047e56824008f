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
