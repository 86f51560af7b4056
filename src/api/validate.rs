//! Field rules the JSON schema states and the handlers enforce (the body is
//! parsed by serde, which checks types but not these). Each failure names
//! its field.

use super::problem::Problem;

pub const NAME_CHARS: &str = "letters, digits, `_`, `.`, `:` and `-`";

pub fn text(field: &str, value: &str, min: usize, max: usize) -> Result<(), Problem> {
    let len = value.chars().count();
    if len < min || len > max {
        return Err(Problem::field(field, format!("must be {min} to {max} characters long, not {len}")));
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
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
    name(field, value, 200)
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

/// An absolute http(s) URL with a host.
pub fn url(field: &str, value: &str) -> Result<(), Problem> {
    text(field, value, 1, 2000)?;
    let parsed = url::Url::parse(value).map_err(|e| Problem::field(field, format!("not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(Problem::field(field, "must be an http:// or https:// URL with a host"));
    }
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
        for bad in ["ftp://example.com", "example.com", "http://", "mailto:a@b.c", ""] {
            assert!(url("url", bad).is_err(), "{bad}");
        }
    }
}
