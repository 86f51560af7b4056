//! The JSON Schemas of the event-type catalogue: which ones hookline stores.
//!
//! Payloads are checked inside PostgreSQL (`sql/025_event_types.sql`), where
//! SQL producers meet the same rules as the API. That validator implements
//! draft 2020-12's validation keywords, not all of its referencing ones, so
//! a schema is stored only when it is a valid 2020-12 schema (checked
//! against the metaschema by the `jsonschema` crate) and uses nothing the
//! validator would skip silently. Its regular expressions run as
//! PostgreSQL's, which the database compiles before the schema is stored.

use serde_json::Value;

/// Why a schema is not stored, and where in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// A JSON pointer into the schema.
    pub pointer: String,
    pub reason: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pointer.as_str() {
            "" => write!(f, "{}", self.reason),
            pointer => write!(f, "at {pointer}: {}", self.reason),
        }
    }
}

/// A regular expression of the schema, for the database to compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub pointer: String,
    pub pattern: String,
}

const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Keywords whose values are schemas, and how they hold them.
const SCHEMA_VALUED: &[&str] =
    &["not", "if", "then", "else", "items", "contains", "additionalProperties", "propertyNames"];
const SCHEMA_LISTS: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];
const SCHEMA_MAPS: &[&str] = &["$defs", "definitions", "properties", "patternProperties", "dependentSchemas"];

/// Keywords the database's validator does not implement, and keywords of
/// older drafts that 2020-12 would ignore: either would pass payloads the
/// schema's author meant to refuse.
const NOT_CHECKED: &[(&str, &str)] = &[
    ("$dynamicRef", "is not supported"),
    ("$dynamicAnchor", "is not supported"),
    ("$anchor", "is not supported: refer to `#/$defs/...` instead"),
    ("$recursiveRef", "is from draft 2019-09; 2020-12 has $dynamicRef, which is not supported"),
    ("$recursiveAnchor", "is from draft 2019-09 and not supported"),
    ("unevaluatedProperties", "is not supported: use additionalProperties"),
    ("unevaluatedItems", "is not supported: use items"),
    ("dependencies", "is from draft 7: use dependentRequired or dependentSchemas"),
    ("additionalItems", "is from draft 2019-09: use prefixItems and items"),
];

/// Checks a schema; returns its regular expressions, which the database
/// must still compile.
pub fn check(schema: &Value) -> Result<Vec<Pattern>, Refused> {
    if !(schema.is_object() || schema.is_boolean()) {
        return Err(refused("", "must be a JSON Schema: an object, or true or false"));
    }
    if let Some(draft) = schema.get("$schema") {
        let draft = draft.as_str().unwrap_or_default();
        if draft.trim_end_matches('#') != DRAFT_2020_12 {
            return Err(refused("/$schema", format!("only draft 2020-12 ({DRAFT_2020_12}) is supported")));
        }
    }
    jsonschema::draft202012::meta::validate(schema)
        .map_err(|error| refused(error.instance_path().as_str(), error.to_string()))?;
    let mut patterns = Vec::new();
    walk(schema, schema, "", &mut patterns)?;
    expanded_size(schema, schema, "", &mut Default::default(), &mut Vec::new())?;
    Ok(patterns)
}

fn walk(root: &Value, schema: &Value, at: &str, patterns: &mut Vec<Pattern>) -> Result<(), Refused> {
    let Some(keywords) = schema.as_object() else {
        return Ok(()); // true or false
    };
    for (keyword, value) in keywords {
        let here = format!("{at}/{}", pointer_token(keyword));
        if let Some((_, reason)) = NOT_CHECKED.iter().find(|(name, _)| name == keyword) {
            return Err(refused(&here, format!("`{keyword}` {reason}")));
        }
        match keyword.as_str() {
            "$id" if !at.is_empty() => {
                return Err(refused(&here, "`$id` is supported only at the top of the schema"));
            }
            "$ref" => check_ref(root, value.as_str().unwrap_or_default(), &here)?,
            "pattern" => add_pattern(patterns, &here, value.as_str().unwrap_or_default())?,
            _ => {}
        }
        if keyword == "patternProperties" {
            for name in value.as_object().into_iter().flatten().map(|(name, _)| name) {
                add_pattern(patterns, &format!("{here}/{}", pointer_token(name)), name)?;
            }
        }
        for (there, sub) in subschemas(keyword, value, &here) {
            walk(root, sub, &there, patterns)?;
        }
    }
    Ok(())
}

/// The subschemas a keyword holds, with their pointers.
fn subschemas<'a>(keyword: &str, value: &'a Value, here: &str) -> Vec<(String, &'a Value)> {
    if SCHEMA_VALUED.contains(&keyword) {
        vec![(here.to_owned(), value)]
    } else if SCHEMA_LISTS.contains(&keyword) {
        value.as_array().into_iter().flatten().enumerate().map(|(i, sub)| (format!("{here}/{i}"), sub)).collect()
    } else if SCHEMA_MAPS.contains(&keyword) {
        let entries = value.as_object().into_iter().flatten();
        entries.map(|(name, sub)| (format!("{here}/{}", pointer_token(name)), sub)).collect()
    } else {
        Vec::new()
    }
}

/// Subschemas one payload value may meet at most, counting each `$ref` as
/// the schema it points at. Past this a schema is refused: the database
/// checks a schema node by node, and a few `$defs` that each refer twice
/// to the next would otherwise make millions of checks out of a small
/// schema.
pub const MAX_EXPANDED_SUBSCHEMAS: usize = 5_000;

/// Counts what [`MAX_EXPANDED_SUBSCHEMAS`] bounds; refuses a schema that
/// refers to itself, which the database could not check to the end.
fn expanded_size(
    root: &Value,
    schema: &Value,
    at: &str,
    sizes: &mut std::collections::HashMap<String, usize>,
    expanding: &mut Vec<String>,
) -> Result<usize, Refused> {
    let mut size = 1;
    for (keyword, value) in schema.as_object().into_iter().flatten() {
        let here = format!("{at}/{}", pointer_token(keyword));
        if keyword == "$ref" {
            size += ref_size(root, value.as_str().unwrap_or_default(), &here, sizes, expanding)?;
        } else if keyword != "$defs" && keyword != "definitions" {
            for (there, sub) in subschemas(keyword, value, &here) {
                size += expanded_size(root, sub, &there, sizes, expanding)?;
            }
        }
        if size > MAX_EXPANDED_SUBSCHEMAS {
            return Err(refused(
                at,
                format!("expands through its $refs to more than {MAX_EXPANDED_SUBSCHEMAS} subschemas"),
            ));
        }
    }
    Ok(size)
}

fn ref_size(
    root: &Value,
    reference: &str,
    at: &str,
    sizes: &mut std::collections::HashMap<String, usize>,
    expanding: &mut Vec<String>,
) -> Result<usize, Refused> {
    if let Some(size) = sizes.get(reference) {
        return Ok(*size);
    }
    if expanding.iter().any(|r| r == reference) {
        return Err(refused(at, format!("`{reference}` refers back to itself: recursive schemas are not supported")));
    }
    let target = root.pointer(&reference[1..]).expect("checked by walk");
    expanding.push(reference.to_owned());
    let size = expanded_size(root, target, &reference[1..], sizes, expanding)?;
    expanding.pop();
    sizes.insert(reference.to_owned(), size);
    Ok(size)
}

/// A `$ref` must point into this schema: `#` or `#/json/pointer`.
fn check_ref(root: &Value, reference: &str, at: &str) -> Result<(), Refused> {
    let Some(pointer) = reference.strip_prefix('#') else {
        return Err(refused(at, "only references within the schema (`#/$defs/name`) are supported"));
    };
    if !(pointer.is_empty() || pointer.starts_with('/')) || pointer.contains('%') {
        return Err(refused(at, "only JSON-pointer references (`#/$defs/name`) are supported"));
    }
    if root.pointer(pointer).is_none() {
        return Err(refused(at, format!("`{reference}` points at nothing in this schema")));
    }
    Ok(())
}

fn add_pattern(patterns: &mut Vec<Pattern>, at: &str, pattern: &str) -> Result<(), Refused> {
    if let Some(reason) = meaning_differs(pattern) {
        return Err(refused(at, reason));
    }
    patterns.push(Pattern { pointer: at.to_owned(), pattern: pattern.to_owned() });
    Ok(())
}

/// A JSON object key as one token of a JSON pointer (RFC 6901).
pub fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// ECMA-262 (what JSON Schema means by a pattern) and PostgreSQL's regular
/// expressions agree on nearly everything; where one escape means something
/// else in each, refuse it rather than check payloads differently.
fn meaning_differs(pattern: &str) -> Option<&'static str> {
    let mut escaped = false;
    for c in pattern.chars() {
        if escaped {
            match c {
                'b' | 'B' => return Some("`\\b` and `\\B` mean something else to PostgreSQL: use `\\y` and `\\Y`"),
                _ => escaped = false,
            }
        } else if c == '\\' {
            escaped = true;
        }
    }
    None
}

fn refused(pointer: &str, reason: impl Into<String>) -> Refused {
    Refused { pointer: pointer.to_owned(), reason: reason.into() }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_plain_schema_is_stored_with_its_patterns() {
        let schema = json!({
            "type": "object",
            "required": ["id"],
            "properties": {"id": {"type": "string", "pattern": "^o_[0-9]+$"}, "a/b": {"$ref": "#/$defs/n"}},
            "patternProperties": {"^x-": true},
            "$defs": {"n": {"type": "integer", "minimum": 0}},
        });
        let patterns = check(&schema).unwrap();
        let pointers: Vec<&str> = patterns.iter().map(|p| p.pointer.as_str()).collect();
        assert_eq!(pointers, ["/patternProperties/^x-", "/properties/id/pattern"]);
        assert_eq!(patterns[1].pattern, "^o_[0-9]+$");
        assert!(check(&json!(true)).unwrap().is_empty());
    }

    #[test]
    fn what_the_database_would_not_check_is_refused_where_it_is() {
        let cases = [
            (json!({"properties": {"a": {"unevaluatedProperties": false}}}), "/properties/a/unevaluatedProperties"),
            (json!({"items": {"$dynamicRef": "#meta"}}), "/items/$dynamicRef"),
            (json!({"$ref": "https://example.com/other.json"}), "/$ref"),
            (json!({"$ref": "#/$defs/missing"}), "/$ref"),
            (json!({"$ref": "#named"}), "/$ref"),
            (json!({"allOf": [{"$id": "inner"}]}), "/allOf/0/$id"),
            (json!({"dependencies": {"a": ["b"]}}), "/dependencies"),
            (json!({"$schema": "http://json-schema.org/draft-07/schema#"}), "/$schema"),
        ];
        for (schema, pointer) in cases {
            let refused = check(&schema).unwrap_err();
            assert_eq!(refused.pointer, pointer, "{schema}: {refused}");
        }
    }

    #[test]
    fn recursive_and_exploding_schemas_are_refused() {
        let recursive = json!({"properties": {"child": {"$ref": "#"}}});
        assert_eq!(check(&recursive).unwrap_err().pointer, "/properties/child/$ref");
        let mutual = json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"items": {"$ref": "#/$defs/a"}}},
                            "$ref": "#/$defs/a"});
        assert!(check(&mutual).unwrap_err().reason.contains("recursive"));
        // Each level refers twice to the next: 2^20 subschemas from 20 small ones.
        let mut defs = serde_json::Map::new();
        for level in 0..20 {
            let next = format!("#/$defs/l{}", level + 1);
            defs.insert(format!("l{level}"), json!({"anyOf": [{"$ref": next}, {"$ref": next}]}));
        }
        defs.insert("l20".into(), json!({"type": "string"}));
        let exploding = json!({"$defs": defs, "$ref": "#/$defs/l0"});
        assert!(check(&exploding).unwrap_err().reason.contains("more than"), "refused for its size");
        // Shared definitions used many times are fine.
        let shared = json!({"$defs": {"id": {"type": "string"}},
                            "properties": {"a": {"$ref": "#/$defs/id"}, "b": {"$ref": "#/$defs/id"}}});
        assert!(check(&shared).is_ok());
    }

    #[test]
    fn an_invalid_schema_is_refused_by_the_metaschema() {
        let refused = check(&json!({"type": "strin"})).unwrap_err();
        assert_eq!(refused.pointer, "/type");
        assert!(check(&json!({"minLength": -1})).is_err());
        assert!(check(&json!([1])).is_err());
    }

    #[test]
    fn word_boundaries_are_refused_in_patterns() {
        assert!(meaning_differs(r"\bword\b").is_some());
        assert!(meaning_differs(r"\\b").is_none());
        assert!(meaning_differs(r"^\d+$").is_none());
        let refused = check(&json!({"properties": {"a": {"pattern": r"\bx"}}})).unwrap_err();
        assert_eq!(refused.pointer, "/properties/a/pattern");
    }
}
