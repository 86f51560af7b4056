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

/// A regular expression of the schema as the database will run it
/// ([`translate`]d), for the database to compile.
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
    let mut found = Found::default();
    walk(schema, "", &mut found)?;
    // A `$ref` must land on a subschema the walk checked: anywhere else
    // (under an unknown keyword, inside `properties` itself) it would
    // apply what nothing checked, and the database would meet it on every
    // insert.
    for (at, reference) in &found.refs {
        if !found.schemas.contains(&reference[1..]) {
            return Err(refused(at, format!("`{reference}` does not point at a subschema")));
        }
    }
    expanded_size(schema, schema, "", &mut Default::default(), &mut Vec::new())?;
    Ok(found.patterns)
}

/// What a walk over a schema finds.
#[derive(Default)]
struct Found {
    patterns: Vec<Pattern>,
    /// The pointers of every subschema walked (`""` is the root).
    schemas: std::collections::HashSet<String>,
    /// `(where, the reference)` of each `$ref`.
    refs: Vec<(String, String)>,
}

fn walk(schema: &Value, at: &str, found: &mut Found) -> Result<(), Refused> {
    found.schemas.insert(at.to_owned());
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
            "$ref" => {
                let reference = value.as_str().unwrap_or_default();
                check_ref(reference, &here)?;
                found.refs.push((here.clone(), reference.to_owned()));
            }
            "pattern" => add_pattern(&mut found.patterns, &here, value.as_str().unwrap_or_default())?,
            _ => {}
        }
        if keyword == "patternProperties" {
            for name in value.as_object().into_iter().flatten().map(|(name, _)| name) {
                add_pattern(&mut found.patterns, &format!("{here}/{}", pointer_token(name)), name)?;
            }
        }
        for (there, sub) in subschemas(keyword, value, &here) {
            walk(sub, &there, found)?;
        }
    }
    Ok(())
}

/// How a keyword holds subschemas.
enum Holds {
    One,
    List,
    Map,
    Nothing,
}

fn holds(keyword: &str) -> Holds {
    if SCHEMA_VALUED.contains(&keyword) {
        Holds::One
    } else if SCHEMA_LISTS.contains(&keyword) {
        Holds::List
    } else if SCHEMA_MAPS.contains(&keyword) {
        Holds::Map
    } else {
        Holds::Nothing
    }
}

/// The subschemas a keyword holds, with their pointers.
fn subschemas<'a>(keyword: &str, value: &'a Value, here: &str) -> Vec<(String, &'a Value)> {
    match holds(keyword) {
        Holds::One => vec![(here.to_owned(), value)],
        Holds::List => {
            value.as_array().into_iter().flatten().enumerate().map(|(i, sub)| (format!("{here}/{i}"), sub)).collect()
        }
        Holds::Map => {
            let entries = value.as_object().into_iter().flatten();
            entries.map(|(name, sub)| (format!("{here}/{}", pointer_token(name)), sub)).collect()
        }
        Holds::Nothing => Vec::new(),
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
    let pointer = reference.strip_prefix('#').unwrap_or(reference);
    let Some(target) = root.pointer(pointer) else {
        return Err(refused(at, format!("`{reference}` points at nothing in this schema")));
    };
    expanding.push(reference.to_owned());
    let size = expanded_size(root, target, pointer, sizes, expanding)?;
    expanding.pop();
    sizes.insert(reference.to_owned(), size);
    Ok(size)
}

/// A `$ref` must point into this schema: `#` or `#/json/pointer`.
/// Where it points is checked once the walk knows every subschema.
fn check_ref(reference: &str, at: &str) -> Result<(), Refused> {
    let Some(pointer) = reference.strip_prefix('#') else {
        return Err(refused(at, "only references within the schema (`#/$defs/name`) are supported"));
    };
    if !(pointer.is_empty() || pointer.starts_with('/')) || pointer.contains('%') {
        return Err(refused(at, "only JSON-pointer references (`#/$defs/name`) are supported"));
    }
    Ok(())
}

fn add_pattern(patterns: &mut Vec<Pattern>, at: &str, pattern: &str) -> Result<(), Refused> {
    let translated = translate(pattern).map_err(|reason| refused(at, reason))?;
    patterns.push(Pattern { pointer: at.to_owned(), pattern: translated });
    Ok(())
}

/// A JSON object key as one token of a JSON pointer (RFC 6901).
pub fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A pattern as PostgreSQL must read it to mean what ECMA-262 (JSON
/// Schema's regular expressions) means: `.` matches no line break, `\d` and
/// `\w` only ASCII, `\xHH` two hex digits. What cannot be said so is
/// refused: `\b`/`\B` (a backspace and a backslash to PostgreSQL), `\D`/`\W`
/// inside a class, ECMA's empty class `[]`, inline options.
pub fn translate(pattern: &str) -> Result<String, &'static str> {
    if pattern.starts_with("***") || (pattern.starts_with("(?") && pattern[2..].starts_with(char::is_alphabetic)) {
        return Err("inline options (`***`, `(?i)`) are not regular expressions of JSON Schema");
    }
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('b' | 'B') if !in_class => {
                    return Err("`\\b` and `\\B` mean something else to PostgreSQL: use `\\y` and `\\Y`");
                }
                Some('d') => out.push_str(if in_class { "0-9" } else { "[0-9]" }),
                Some('w') => out.push_str(if in_class { "A-Za-z0-9_" } else { "[A-Za-z0-9_]" }),
                Some('D' | 'W') if in_class => return Err("`\\D` and `\\W` inside a class are not supported"),
                Some('D') => out.push_str("[^0-9]"),
                Some('W') => out.push_str("[^A-Za-z0-9_]"),
                Some('x') => {
                    let digits: String = chars.by_ref().take(2).collect();
                    if digits.len() != 2 || !digits.chars().all(|d| d.is_ascii_hexdigit()) {
                        return Err("`\\x` takes two hex digits");
                    }
                    out.push_str("\\u00");
                    out.push_str(&digits);
                }
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    return Err("an empty class (`[]`, `[^]`) is not supported");
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '.' if !in_class => out.push_str("[^\\n\\r\\u2028\\u2029]"),
            other => out.push(other),
        }
    }
    Ok(out)
}

/// The schema as the database checks it: every pattern translated (see
/// [`translate`]). Stored beside the schema as given, which is what users see.
pub fn for_database(schema: &Value) -> Value {
    let mut checked = schema.clone();
    translate_in(&mut checked);
    checked
}

fn translate_in(schema: &mut Value) {
    let Some(keywords) = schema.as_object_mut() else { return };
    for (keyword, value) in keywords.iter_mut() {
        match keyword.as_str() {
            "pattern" => {
                if let Some(translated) = value.as_str().and_then(|p| translate(p).ok()) {
                    *value = Value::String(translated);
                }
            }
            "patternProperties" => {
                if let Some(map) = value.as_object_mut() {
                    let entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
                    for (name, mut sub) in entries {
                        translate_in(&mut sub);
                        map.insert(translate(&name).unwrap_or(name), sub);
                    }
                }
                continue;
            }
            _ => {}
        }
        match holds(keyword) {
            Holds::One => translate_in(value),
            Holds::List => value.as_array_mut().into_iter().flatten().for_each(translate_in),
            Holds::Map => value.as_object_mut().into_iter().flatten().for_each(|(_, sub)| translate_in(sub)),
            Holds::Nothing => {}
        }
    }
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
            (json!({"properties": {"required": {}}, "$ref": "#/properties"}), "/$ref"),
            (json!({"$ref": "#/x", "x": {"unevaluatedProperties": false}}), "/$ref"),
            (json!({"$ref": "#/x", "x": {"$ref": ""}}), "/$ref"),
            (json!({"$ref": "#/"}), "/$ref"),
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
    fn patterns_are_translated_to_mean_what_ecma_means() {
        assert_eq!(translate(r"^a.b$").unwrap(), r"^a[^\n\r\u2028\u2029]b$");
        assert_eq!(translate(r"^\d+[\w-]$").unwrap(), r"^[0-9]+[A-Za-z0-9_-]$");
        assert_eq!(translate(r"[.]\.\x41B").unwrap(), r"[.]\.\u0041B");
        assert_eq!(translate(r"\\b").unwrap(), r"\\b");
        for refused in [r"\bword", r"(?i)a", "***=a", r"[^]", r"[\D]", r"\x4"] {
            assert!(translate(refused).is_err(), "{refused}");
        }
        let schema = json!({"properties": {"a": {"pattern": "^.$"}}, "patternProperties": {"^\\d$": true}});
        let checked = for_database(&schema);
        assert_eq!(checked["properties"]["a"]["pattern"], r"^[^\n\r\u2028\u2029]$");
        assert_eq!(checked["patternProperties"]["^[0-9]$"], true);
        let refused = check(&json!({"properties": {"a": {"pattern": r"\bx"}}})).unwrap_err();
        assert_eq!(refused.pointer, "/properties/a/pattern");
    }
}
