//! What a verified request is published as: its event type — the source's
//! own, or taken from a header (`X-GitHub-Event`) or a JSON pointer into
//! the payload (`/type`, as Stripe sends it), behind a prefix — and its
//! payload: the body, or, when the source keeps request headers, the body
//! with them. A pointer reads the body as sent. No IO.

use poem::http::{HeaderMap, HeaderName};
use serde_json::{Map, Value};

use crate::domain::names::{is_event_type, is_name_char};

/// Request headers a source may keep at most.
pub const KEEP_HEADERS_MAX: usize = 20;
/// A kept header's value is cut to this many bytes: kept headers add at
/// most 20 KiB to a payload.
const KEPT_VALUE_MAX_BYTES: usize = 1024;
/// Headers whose names say they carry credentials or signatures: never
/// kept with a payload nor made an event type (a kept signature would let
/// any receiver downstream replay the request to the source).
const CREDENTIAL_WORDS: &[&str] = &["auth", "cookie", "token", "secret", "signature", "password", "key"];

#[derive(Debug, Clone, PartialEq)]
enum TypeFrom {
    Header(HeaderName),
    /// An RFC 6901 pointer into the payload.
    Pointer(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    /// The source's event type: used as it is without `type_from`, and when
    /// the request does not carry a usable type.
    fallback: String,
    type_from: Option<TypeFrom>,
    prefix: String,
    keep_headers: Vec<HeaderName>,
}

/// A setting that cannot work, with the field it is in.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub field: String,
    pub reason: String,
}

impl Mapping {
    pub fn new(
        event_type: &str,
        event_type_from: Option<&str>,
        prefix: &str,
        keep_headers: &[String],
    ) -> Result<Mapping, Invalid> {
        let invalid = |field: String, reason: &str| Invalid { field, reason: reason.to_owned() };
        let type_from = match event_type_from {
            None => None,
            Some(pointer) if pointer.starts_with('/') => {
                if !valid_pointer(pointer) {
                    return Err(invalid(
                        "event_type_from".into(),
                        "is not a valid JSON pointer (`~` only as `~0` or `~1`, no control characters)",
                    ));
                }
                Some(TypeFrom::Pointer(pointer.to_owned()))
            }
            Some(header) => {
                let header = HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                    invalid("event_type_from".into(), "is neither a header name nor a JSON pointer (`/type`)")
                })?;
                if carries_credentials(&header) {
                    return Err(invalid("event_type_from".into(), "names a header that carries credentials"));
                }
                Some(TypeFrom::Header(header))
            }
        };
        if !prefix.chars().all(is_name_char) {
            return Err(invalid("event_type_prefix".into(), "may contain only letters, digits, `_`, `.`, `:` and `-`"));
        }
        // A sender must not be able to publish `endpoint.disabled`, or any
        // of the application's own event types.
        if type_from.is_some() && prefix.is_empty() {
            return Err(invalid(
                "event_type_prefix".into(),
                "is required with `event_type_from` (say `github.`): a sender must not choose any event type",
            ));
        }
        if prefix.starts_with("endpoint.") {
            return Err(invalid("event_type_prefix".into(), "`endpoint.` is hookline's own"));
        }
        if keep_headers.len() > KEEP_HEADERS_MAX {
            return Err(invalid("keep_headers".into(), "at most 20 headers"));
        }
        let mut kept = Vec::new();
        for (i, name) in keep_headers.iter().enumerate() {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("keep_headers[{i}]"), "is not a valid HTTP header name"))?;
            if carries_credentials(&header) {
                return Err(invalid(format!("keep_headers[{i}]"), "carries credentials and is never kept"));
            }
            kept.push(header);
        }
        Ok(Mapping { fallback: event_type.to_owned(), type_from, prefix: prefix.to_owned(), keep_headers: kept })
    }

    /// The event type of a request: the prefix and the value its header or
    /// pointer holds, when that is a string that makes an event type (1 to
    /// 200 of letters, digits, `_`, `.`, `:`, `-` in all); otherwise the
    /// source's own.
    pub fn event_type(&self, headers: &HeaderMap, payload: &Value) -> String {
        let found = match &self.type_from {
            None => None,
            Some(TypeFrom::Header(name)) => headers.get(name).and_then(|v| v.to_str().ok()),
            Some(TypeFrom::Pointer(pointer)) => payload.pointer(pointer).and_then(Value::as_str),
        };
        match found {
            Some(value) if !value.is_empty() => {
                let event_type = format!("{}{value}", self.prefix);
                if is_event_type(&event_type) { event_type } else { self.fallback.clone() }
            }
            _ => self.fallback.clone(),
        }
    }

    /// The event payload: the body, or with headers kept
    /// `{"body": …, "headers": {name: value}}` (names lowercase, headers
    /// the request lacks left out, a repeated header's first value).
    pub fn payload(&self, headers: &HeaderMap, body: Value) -> Value {
        if self.keep_headers.is_empty() {
            return body;
        }
        let kept: Map<String, Value> = self
            .keep_headers
            .iter()
            .filter_map(|name| {
                let value = headers.get(name)?.as_bytes();
                let value = String::from_utf8_lossy(&value[..value.len().min(KEPT_VALUE_MAX_BYTES)]).into_owned();
                Some((name.as_str().to_owned(), Value::String(value)))
            })
            .collect();
        serde_json::json!({ "body": body, "headers": kept })
    }
}

fn carries_credentials(header: &HeaderName) -> bool {
    CREDENTIAL_WORDS.iter().any(|word| header.as_str().contains(word))
}

/// RFC 6901: `~` escapes only `~0` and `~1`; and nothing PostgreSQL or a
/// log would choke on.
fn valid_pointer(pointer: &str) -> bool {
    let mut chars = pointer.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_control() || (c == '~' && !matches!(chars.next(), Some('0' | '1'))) {
            return false;
        }
    }
    pointer.len() <= 200
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().map(|(n, v)| (HeaderName::from_bytes(n.as_bytes()).unwrap(), v.parse().unwrap())).collect()
    }

    #[test]
    fn the_type_comes_from_a_header_behind_a_prefix() {
        let m = Mapping::new("github.unknown", Some("X-GitHub-Event"), "github.", &[]).unwrap();
        assert_eq!(m.event_type(&headers(&[("x-github-event", "push")]), &json!({})), "github.push");
        assert_eq!(m.event_type(&headers(&[]), &json!({})), "github.unknown", "absent: the source's own");
        assert_eq!(m.event_type(&headers(&[("x-github-event", "no spaces")]), &json!({})), "github.unknown");
    }

    #[test]
    fn the_type_comes_from_a_json_pointer() {
        let m = Mapping::new("stripe.event", Some("/type"), "stripe.", &[]).unwrap();
        let event = json!({"type": "charge.succeeded", "data": {}});
        assert_eq!(m.event_type(&HeaderMap::new(), &event), "stripe.charge.succeeded");
        assert_eq!(m.event_type(&HeaderMap::new(), &json!({"type": 3})), "stripe.event", "not a string");
        let nested = Mapping::new("x", Some("/meta/kind"), "n.", &[]).unwrap();
        assert_eq!(nested.event_type(&HeaderMap::new(), &json!({"meta": {"kind": "a.b"}})), "n.a.b");
        let escaped = Mapping::new("x", Some("/a~1b"), "n.", &[]).unwrap();
        assert_eq!(escaped.event_type(&HeaderMap::new(), &json!({"a/b": "c"})), "n.c");
    }

    #[test]
    fn kept_headers_travel_with_the_body() {
        let m = Mapping::new("t", None, "", &["X-GitHub-Delivery".into(), "X-Missing".into()]).unwrap();
        let long = "v".repeat(5000);
        let cut = m.payload(&headers(&[("x-github-delivery", &long)]), json!(1));
        assert_eq!(cut["headers"]["x-github-delivery"].as_str().unwrap().len(), KEPT_VALUE_MAX_BYTES);
        let payload = m.payload(&headers(&[("x-github-delivery", "d-1"), ("x-other", "no")]), json!({"a": 1}));
        assert_eq!(payload, json!({"body": {"a": 1}, "headers": {"x-github-delivery": "d-1"}}));
        let plain = Mapping::new("t", None, "", &[]).unwrap();
        assert_eq!(plain.payload(&HeaderMap::new(), json!({"a": 1})), json!({"a": 1}));
    }

    #[test]
    fn settings_that_cannot_work_name_their_field() {
        let field = |r: Result<Mapping, Invalid>| r.unwrap_err().field;
        assert_eq!(field(Mapping::new("t", Some("not a header"), "", &[])), "event_type_from");
        assert_eq!(field(Mapping::new("t", None, "git hub.", &[])), "event_type_prefix");
        assert_eq!(field(Mapping::new("t", None, "", &["Authorization".into()])), "keep_headers[0]");
        for credential in ["X-Gitlab-Token", "X-Api-Key", "X-Hub-Signature-256", "Stripe-Signature", "Cookie"] {
            assert_eq!(field(Mapping::new("t", None, "", &[credential.into()])), "keep_headers[0]", "{credential}");
        }
        assert_eq!(field(Mapping::new("t", Some("X-Gitlab-Token"), "gl.", &[])), "event_type_from");
        assert_eq!(field(Mapping::new("t", Some("/a~2b"), "x.", &[])), "event_type_from");
        assert_eq!(field(Mapping::new("t", Some("/a\u{1}"), "x.", &[])), "event_type_from");
        assert_eq!(field(Mapping::new("t", Some("X-GitHub-Event"), "", &[])), "event_type_prefix");
        assert_eq!(field(Mapping::new("t", Some("/type"), "endpoint.", &[])), "event_type_prefix");
        assert_eq!(field(Mapping::new("t", None, "", &vec!["x-a".to_owned(); 21])), "keep_headers");
    }
}
