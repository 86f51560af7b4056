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

/// Endpoint URLs: http(s), or a broker (`nats`, `amqp`, `redis`, which may
/// carry credentials), a DNS name or IPv4 address, an optional port, and a
/// printable-ASCII path. The OpenAPI document states the same pattern
/// (`URL_PATTERN` is pasted into the `#[oai]` attributes, which take literals).
pub const URL_PATTERN: &str = r"^(?:https?://|(?:nats|amqp|redis)://(?:[A-Za-z0-9._~!$&'()*+,;=%-]+(?::[A-Za-z0-9._~!$&'()*+,;=%-]*)?@)?)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(?::(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(?:/[!-~]*)?$";

/// An endpoint URL (see `URL_PATTERN`), and for a broker what it names
/// within the broker (see `worker::brokers`).
pub fn url(field: &str, value: &str) -> Result<(), Problem> {
    static PATTERN: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(URL_PATTERN).expect("a valid pattern"));
    text(field, value, 1, 2000)?;
    if !PATTERN.is_match(value) {
        return Err(Problem::field(
            field,
            "must be an http://, https://, nats://, amqp:// or redis:// URL with a DNS name or IPv4 address",
        ));
    }
    let url = url::Url::parse(value).map_err(|e| Problem::field(field, format!("not a valid URL: {e}")))?;
    if crate::secrets::KeyRing::url_credential_is_sealed(value) {
        // The worker would open it and send it to this URL's host.
        return Err(Problem::field(field, "a credential may not look like a sealed value (aes256gcm:…)"));
    }
    broker_url(field, &url)
}

fn broker_url(field: &str, url: &url::Url) -> Result<(), Problem> {
    let params: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let allowed: &[&str] = match url.scheme() {
        "nats" => {
            let subject = url.path().trim_start_matches('/');
            if !subject.chars().all(|c| is_name_char(c) && c != ':') || subject.starts_with('.') {
                return Err(Problem::field(
                    field,
                    "a NATS subject is letters, digits, `_`, `-` and `.`-separated tokens",
                ));
            }
            &[]
        }
        "amqp" => &["exchange", "routing_key"],
        "redis" => {
            let db = url.path().trim_start_matches('/');
            if !db.chars().all(|c| c.is_ascii_digit()) || db.len() > 2 {
                return Err(Problem::field(field, "a Redis URL's path is its database number, e.g. `/0`"));
            }
            if params.iter().any(|(k, v)| k == "maxlen" && !v.parse::<u64>().is_ok_and(|n| n > 0)) {
                return Err(Problem::field(field, "`maxlen` must be a whole number above 0"));
            }
            &["stream", "maxlen"]
        }
        _ => return Ok(()),
    };
    if let Some((name, _)) = params.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        let known = if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") };
        return Err(Problem::field(field, format!("unknown parameter `{name}` (known: {known})")));
    }
    Ok(())
}

/// A URL as answers show it: a password replaced by `REDACTED`, and a user
/// name alone too (a NATS token travels there).
pub fn shown_url(value: &str) -> String {
    match url::Url::parse(value) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some(super::REDACTED));
            url.to_string()
        }
        Ok(mut url) if !url.username().is_empty() => {
            let _ = url.set_username(super::REDACTED);
            url.to_string()
        }
        _ => value.to_owned(),
    }
}

/// Whether a URL's credential is the `********` answers show (and so not one
/// to store).
pub fn shows_redacted_credential(value: &str) -> bool {
    url::Url::parse(value).is_ok_and(|u| {
        u.password() == Some(super::REDACTED) || (u.password().is_none() && u.username() == super::REDACTED)
    })
}

/// A URL sent back as answers showed it keeps the stored credentials.
pub fn keep_password(new: &str, stored: &str) -> String {
    let (Ok(mut url), Ok(old)) = (url::Url::parse(new), url::Url::parse(stored)) else {
        return new.to_owned();
    };
    if url.host() != old.host() {
        return new.to_owned();
    }
    if url.password() == Some(super::REDACTED) && url.username() == old.username() {
        let _ = url.set_password(old.password());
    } else if url.username() == super::REDACTED && url.password().is_none() {
        let _ = url.set_username(old.username());
    } else {
        return new.to_owned();
    }
    url.to_string()
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
