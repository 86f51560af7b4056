//! The committed OpenAPI document must be what the code generates.

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/hookline.json");

#[test]
fn committed_openapi_document_matches_the_code() {
    let generated = hookline::api::openapi_document();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, format!("{generated}\n")).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).ok();
    assert!(
        parse(&committed).is_some() && parse(&committed) == parse(&generated),
        "openapi/hookline.json is stale: run `just openapi` (or UPDATE_OPENAPI=1 cargo test openapi)"
    );
}

#[test]
fn every_operation_has_an_operation_id_and_a_summary() {
    let document: serde_json::Value = serde_json::from_str(&hookline::api::openapi_document()).unwrap();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            assert!(operation["operationId"].is_string(), "{method} {path} has no operationId");
            assert!(operation["summary"].is_string(), "{method} {path} has no summary");
        }
    }
}
