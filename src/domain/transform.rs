//! Transformations: an endpoint's minijinja template writes the request body
//! from the event — `id`, `type`, `timestamp`, `data`, `tenant` (and all of
//! them as `event`) — and may set the request's `method` and extra `headers`
//! with `{% set %}`. Printed values are written as JSON (auto-escaping), so
//! `{"name": {{ data.name }}}` stays valid JSON whatever the name holds.
//!
//! A template can never hang a worker or fill its memory: fuel bounds the
//! instructions one render runs, and the output stops at the largest body a
//! request may carry. A template is compiled once and kept by whoever holds
//! the [`Transformation`].

use std::io::Write;

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use serde::Serialize;

/// The longest template an endpoint may keep, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;
/// Instructions one render may run: thousands of loop turns over a payload.
const FUEL: u64 = 200_000;
/// Extra headers a template may set.
const MAX_HEADERS: usize = 20;
const NAME: &str = "transformation";

/// What a template reads.
#[derive(Debug, Serialize)]
pub struct Event<'a> {
    pub id: uuid::Uuid,
    #[serde(rename = "type")]
    pub event_type: &'a str,
    /// RFC 3339, as in the envelope.
    pub timestamp: &'a str,
    pub data: serde_json::Value,
    pub tenant: &'a str,
}

/// What a template wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rendered {
    pub body: String,
    /// `POST`, `PUT` or `PATCH` if the template chose one.
    pub method: Option<String>,
    pub headers: Vec<(String, String)>,
}

/// A compiled template.
pub struct Transformation {
    env: Environment<'static>,
}

impl std::fmt::Debug for Transformation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transformation")
    }
}

impl Transformation {
    /// Compiles `source`; a syntax error names its line.
    pub fn compile(source: &str) -> Result<Self, String> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(format!("the template is longer than {MAX_TEMPLATE_BYTES} bytes"));
        }
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Json);
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_fuel(Some(FUEL));
        env.add_template_owned(NAME, source.to_owned()).map_err(|e| describe(&e))?;
        Ok(Transformation { env })
    }

    /// Renders the body (at most `max_body_bytes`) and what the template set.
    pub fn render(&self, event: &Event, max_body_bytes: usize) -> Result<Rendered, String> {
        let template = self.env.get_template(NAME).map_err(|e| describe(&e))?;
        let input = Value::from(Serde(event));
        let context = minijinja::context! { event => input.clone(), ..input };
        let mut body = Limited { bytes: Vec::new(), max: max_body_bytes };
        let captured = template.render_captured_to(context, &mut body).map_err(|e| {
            if body.bytes.len() >= max_body_bytes {
                format!("the body would be larger than {max_body_bytes} bytes")
            } else {
                describe(&e)
            }
        })?;
        let state = captured.state();
        let method = match state.lookup("method") {
            None => None,
            Some(m) if m.is_undefined() || m.is_none() => None,
            Some(m) => match m.as_str().map(str::to_ascii_uppercase).as_deref() {
                Some(m @ ("POST" | "PUT" | "PATCH")) => Some(m.to_owned()),
                _ => return Err(format!("method must be POST, PUT or PATCH, not {m}")),
            },
        };
        let headers = match state.lookup("headers") {
            None => Vec::new(),
            Some(h) if h.is_undefined() || h.is_none() => Vec::new(),
            Some(h) => headers(&h)?,
        };
        let body = String::from_utf8(body.bytes).map_err(|_| "the body is not UTF-8".to_owned())?;
        Ok(Rendered { body, method, headers })
    }
}

/// `headers` as set by a template: a map of names to strings. Names that
/// hookline writes itself (the Standard Webhooks ones) are refused.
fn headers(value: &Value) -> Result<Vec<(String, String)>, String> {
    let names = value.try_iter().map_err(|_| "headers must be a map of names to strings".to_owned())?;
    let mut headers = Vec::new();
    for name in names {
        let Some(text) = name.as_str() else { return Err("header names must be strings".to_owned()) };
        let field = value.get_item(&name).map_err(|e| describe(&e))?;
        let Some(field) = field.as_str() else { return Err(format!("header {text} must be a string")) };
        let lower = text.to_ascii_lowercase();
        // The content type is the template's to choose: it writes the body.
        if lower.starts_with("webhook-") || (super::headers::is_reserved(&lower) && lower != "content-type") {
            return Err(format!("header {text} is hookline's to set (or frames the request)"));
        }
        if field.len() > super::headers::VALUE_MAX_BYTES {
            return Err(format!("header {text} is longer than {} bytes", super::headers::VALUE_MAX_BYTES));
        }
        if http::HeaderName::from_bytes(text.as_bytes()).is_err() || http::HeaderValue::from_str(field).is_err() {
            return Err(format!("header {text} is not a valid header"));
        }
        headers.push((lower, field.to_owned()));
    }
    if headers.len() > MAX_HEADERS {
        return Err(format!("a template sets {MAX_HEADERS} headers at most"));
    }
    Ok(headers)
}

/// A minijinja error as one line, with its line number when it has one.
fn describe(error: &minijinja::Error) -> String {
    let detail = error.detail().map(|d| format!(": {d}")).unwrap_or_default();
    match error.line() {
        Some(line) => format!("line {line}: {}{detail}", error.kind()),
        None => format!("{}{detail}", error.kind()),
    }
}

/// A sink that refuses to grow past `max` bytes: the render stops there.
struct Limited {
    bytes: Vec<u8>,
    max: usize,
}

impl Write for Limited {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.max {
            self.bytes.resize(self.max, 0);
            return Err(std::io::Error::other("output limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: serde_json::Value) -> Event<'static> {
        Event {
            id: uuid::Uuid::nil(),
            event_type: "order.paid",
            timestamp: "2026-12-04T10:00:00.000000Z",
            data,
            tenant: "acme",
        }
    }

    fn render(source: &str, data: serde_json::Value) -> Result<Rendered, String> {
        Transformation::compile(source)?.render(&event(data), 1024)
    }

    #[test]
    fn values_print_as_json_so_the_body_stays_json() {
        let rendered = render(
            r#"{"text": {{ "Paid: " ~ data.name }}, "kind": {{ type }}, "who": {{ event.tenant }}, "n": {{ data.n }}}"#,
            serde_json::json!({"name": "Bobby \"Tables\" </script>", "n": 3}),
        )
        .unwrap();
        let body: serde_json::Value = serde_json::from_str(&rendered.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"text": "Paid: Bobby \"Tables\" </script>", "kind": "order.paid", "who": "acme", "n": 3})
        );
        assert_eq!((rendered.method, rendered.headers), (None, vec![]));
    }

    #[test]
    fn a_template_sets_the_method_and_headers() {
        let rendered = render(
            r#"{% set method = "put" %}{% set headers = {"X-Kind": type} %}{{ data }}"#,
            serde_json::json!({"a": 1}),
        )
        .unwrap();
        assert_eq!(rendered.body, r#"{"a":1}"#);
        assert_eq!(rendered.method.as_deref(), Some("PUT"));
        assert_eq!(rendered.headers, vec![("x-kind".to_owned(), "order.paid".to_owned())]);
    }

    #[test]
    fn bad_templates_and_outputs_are_errors_that_say_why() {
        let syntax = Transformation::compile("{{ data.name ").unwrap_err();
        assert!(syntax.starts_with("line 1:"), "{syntax}");
        for (source, says) in [
            (r#"{% set method = "DELETE" %}"#, "method must be"),
            (r#"{% set headers = {"webhook-id": "x"} %}"#, "hookline's to set"),
            (r#"{% set headers = {"Transfer-Encoding": "chunked"} %}"#, "frames the request"),
            (r#"{% set headers = {"X-A": 1} %}"#, "must be a string"),
            ("{% for i in range(100000) %}{% for j in range(100) %}{% endfor %}{% endfor %}", "fuel"),
            ("{% for i in range(1000) %}{{ data }}{% endfor %}", "larger than 1024 bytes"),
            ("{{ 1 / 0 }}", "line 1"),
        ] {
            let error = render(source, serde_json::json!({"pad": "x".repeat(100)})).unwrap_err();
            assert!(error.contains(says), "{source}: {error}");
        }
        let long = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        assert!(Transformation::compile(&long).unwrap_err().contains("longer than"));
    }

    #[test]
    fn missing_fields_are_null_rather_than_an_error() {
        let rendered = render(r#"{"a": {{ data.missing.deeper }}}"#, serde_json::json!({})).unwrap();
        assert_eq!(rendered.body, r#"{"a": null}"#);
    }
}
