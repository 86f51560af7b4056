//! Field rules the JSON schema states and the handlers enforce (the body is
//! parsed by serde, which checks types but not these). Each failure names
//! its field.

use super::problem::Problem;
use crate::domain::names::{EVENT_TYPE_MAX, is_name_char};

pub const NAME_CHARS: &str = "letters, digits, `_`, `.`, `:` and `-`";

pub fn text(field: &str, value: &str, min: usize, max: usize) -> Result<(), Problem> {
    let len = value.chars().count();
    if len < min || len > max {
        return Err(Problem::field(field, format!("must be {min} to {max} characters long, not {len}")));
    }
    Ok(())
}

/// Tenants and event types: 1–100 / 1–200 of `[A-Za-z0-9_.:-]`.
pub fn name(field: &str, value: &str, max: usize) -> Result<(), Problem> {
    text(field, value, 1, max)?;
    if !value.chars().all(is_name_char) {
        return Err(Problem::field(field, format!("may contain only {NAME_CHARS}")));
    }
    Ok(())
}

pub fn tenant(field: &str, value: &str) -> Result<(), Problem> {
    name(field, value, 100)
}

pub fn event_type(field: &str, value: &str) -> Result<(), Problem> {
    name(field, value, EVENT_TYPE_MAX)
}

/// An endpoint filter: an event type, `prefix.*`, or `*`.
pub fn event_type_pattern(field: &str, value: &str) -> Result<(), Problem> {
    if value == "*" {
        return Ok(());
    }
    let stem = value.strip_suffix(".*").unwrap_or(value);
    name(field, stem, 198)
        .map_err(|_| Problem::field(field, format!("`{value}` is not an event type, `prefix.*` or `*` ({NAME_CHARS})")))
}

/// Endpoint URLs: http(s), a DNS name or IPv4 address, an optional port,
/// and a printable-ASCII path. The OpenAPI document states the same pattern
/// (`URL_PATTERN` is pasted into the `#[oai]` attributes, which take literals).
pub const URL_PATTERN: &str = r"^https?://[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(?::(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(?:/[!-~]*)?$";

/// An endpoint URL (see `URL_PATTERN`).
pub fn url(field: &str, value: &str) -> Result<(), Problem> {
    static PATTERN: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(URL_PATTERN).expect("a valid pattern"));
    text(field, value, 1, 2000)?;
    if !PATTERN.is_match(value) {
        return Err(Problem::field(field, "must be an http:// or https:// URL with a DNS name or IPv4 address"));
    }
    url::Url::parse(value).map_err(|e| Problem::field(field, format!("not a valid URL: {e}")))?;
    Ok(())
}

pub fn range(field: &str, value: i64, min: i64, max: i64) -> Result<(), Problem> {
    if value < min || value > max {
        return Err(Problem::field(field, format!("must be between {min} and {max}, not {value}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_accept_names_prefixes_and_star() {
        for ok in ["order.created", "order.*", "*", "a:b-c_d"] {
            assert!(event_type_pattern("event_types", ok).is_ok(), "{ok}");
        }
        for bad in ["", "order.**", "or der", "*.created", "order*"] {
            assert!(event_type_pattern("event_types", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert!(url("url", "https://example.com/hook").is_ok());
        assert!(url("url", "http://10.0.0.1:65535/a?b=c").is_ok());
        for bad in ["ftp://example.com", "example.com", "http://", "mailto:a@b.c", "", "http://a:65536", "http://a b"] {
            assert!(url("url", bad).is_err(), "{bad}");
        }
    }
}
