//! Reading the dashboard's query strings and forms: an empty input is no
//! filter, and a bad one is a 400 page naming its field, as in the API.

use chrono::{DateTime, NaiveDateTime, Utc};
use uuid::Uuid;

use crate::api::page::PageRequest;
use crate::api::problem::Problem;

/// Rows per list page.
pub const PAGE_SIZE: u32 = 50;

/// A filled-in input, trimmed.
pub fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

pub fn uuid(field: &str, value: &Option<String>) -> Result<Option<Uuid>, Problem> {
    given(value).map(|v| Uuid::parse_str(v).map_err(|_| Problem::field(field, "not an id"))).transpose()
}

/// A time from a `datetime-local` input (read as UTC) or RFC 3339.
pub fn time(field: &str, value: &Option<String>) -> Result<Option<DateTime<Utc>>, Problem> {
    let Some(v) = given(value) else {
        return Ok(None);
    };
    if let Ok(at) = DateTime::parse_from_rfc3339(v) {
        return Ok(Some(at.with_timezone(&Utc)));
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(v, format).ok())
        .map(|at| Some(at.and_utc()))
        .ok_or_else(|| Problem::field(field, "not a time: use YYYY-MM-DDTHH:MM (UTC)"))
}

/// A text filter within the API's rules for that field.
pub fn pattern(field: &str, value: &Option<String>, max: usize) -> Result<Option<String>, Problem> {
    let Some(v) = given(value) else {
        return Ok(None);
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_.:-".contains(c);
    if v.len() > max || !v.chars().all(allowed) {
        return Err(Problem::field(field, "letters, digits and _ . : - only"));
    }
    Ok(Some(v.to_owned()))
}

/// The page a `cursor` input asks for.
pub fn page(cursor: &Option<String>) -> Result<PageRequest, Problem> {
    PageRequest::parse(Some(PAGE_SIZE), given(cursor))
}

/// `datetime-local`'s value for a time (UTC, to the minute).
pub fn local_input(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M").to_string()
}

/// A query string of the non-empty pairs, for links that keep the filters.
pub fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            serializer.append_pair(key, value);
        }
    }
    serializer.finish()
}
