//! The database's JSON Schema validator (sql/025_event_types.sql) against
//! the JSON Schema Test Suite (tests/data/json-schema-test-suite): every
//! case whose schema hookline would store must come out as the suite says.

use std::path::Path;

use hookline::db::event_types;
use serde_json::Value;

use crate::support::db::TestDb;

/// Files of keywords the validator implements: none of their schemas may be
/// refused, except the groups named in `REFUSED_GROUPS`.
const FULLY_SUPPORTED: &[&str] = &[
    "additionalProperties",
    "allOf",
    "anyOf",
    "boolean_schema",
    "const",
    "contains",
    "dependentRequired",
    "dependentSchemas",
    "enum",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "if-then-else",
    "items",
    "maxContains",
    "maxItems",
    "maxLength",
    "maxProperties",
    "maximum",
    "minContains",
    "minItems",
    "minLength",
    "minProperties",
    "minimum",
    "multipleOf",
    "not",
    "oneOf",
    "pattern",
    "patternProperties",
    "prefixItems",
    "properties",
    "propertyNames",
    "required",
    "type",
    "uniqueItems",
];

/// Groups in those files that use what hookline refuses to store:
/// `unevaluatedProperties`, and Unicode property escapes (`\p{Letter}`),
/// which PostgreSQL's regular expressions lack.
const REFUSED_GROUPS: &[&str] = &[
    "collect annotations inside a 'not', even if collection is disabled",
    "pattern with Unicode property escape requires unicode mode",
    "patternProperties with Unicode property escape",
];

#[tokio::test]
async fn the_validator_passes_the_json_schema_test_suite() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let statement = client.prepare("SELECT (hookline.schema_violation($1, $2)).pointer IS NULL").await.unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/json-schema-test-suite/draft2020-12");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    files.sort();

    let (mut checked, mut refused_groups, mut wrong) = (0, Vec::new(), Vec::new());
    for file in &files {
        let name = file.file_stem().unwrap().to_str().unwrap().to_owned();
        let groups: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        for group in groups {
            let description = group["description"].as_str().unwrap().to_owned();
            if let Err(refused) = event_types::check_schema(&client, &group["schema"]).await.unwrap() {
                refused_groups.push((name.clone(), description, refused.to_string()));
                continue;
            }
            for case in group["tests"].as_array().unwrap() {
                if holds_nul(&group["schema"]) || holds_nul(&case["data"]) {
                    continue; // PostgreSQL's jsonb cannot hold one, so no event can
                }
                let valid: bool =
                    client.query_one(&statement, &[&group["schema"], &case["data"]]).await.unwrap().get(0);
                checked += 1;
                if valid != case["valid"].as_bool().unwrap() {
                    wrong.push(format!("{name}: {description}: {}", case["description"]));
                }
            }
        }
    }

    assert!(wrong.is_empty(), "the validator disagrees with the suite on:\n{}", wrong.join("\n"));
    let unexpected: Vec<_> = refused_groups
        .iter()
        .filter(|(file, group, _)| {
            FULLY_SUPPORTED.contains(&file.as_str()) && !REFUSED_GROUPS.contains(&group.as_str())
        })
        .collect();
    assert!(unexpected.is_empty(), "schemas of supported keywords refused: {unexpected:#?}");
    assert!(checked > 900, "only {checked} cases checked");
    eprintln!("{checked} cases checked; {} groups refused", refused_groups.len());
}

fn holds_nul(value: &Value) -> bool {
    value.to_string().contains("\\u0000")
}
