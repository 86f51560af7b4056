//! The rules an endpoint's settings must follow, shared by create and
//! update; each failure names its field.

use std::collections::BTreeMap;

use super::{
    BatchFormat, BatchSettings, EndpointCreate, EndpointUpdate, HttpMethod, Ordering, OrderingOnDead, SignatureHash,
    SignatureScheme,
};
use crate::api::auth::Principal;
use crate::api::patch::{clearable, required};
use crate::api::problem::Problem;
use crate::api::validate;
use crate::db;
use crate::domain::headers;
use crate::domain::transform::Transformation;
use crate::secrets::KeyRing;
use crate::signing::{PrivateKey, SigningKey, new_private_key, new_secret};
use poem_openapi::types::MaybeUndefined;

/// Custom headers an endpoint may have at most.
const HEADERS_MAX: usize = 50;
/// The endpoint to insert, its secret (given, or generated) sealed by `keys`.
pub(super) fn new_endpoint(
    principal: &Principal,
    c: EndpointCreate,
    keys: &KeyRing,
) -> Result<db::endpoints::NewEndpoint, Problem> {
    if let Some(tenant) = &c.tenant {
        validate::tenant("tenant", tenant)?;
    }
    let tenant = principal.tenant_for_create(c.tenant.as_deref())?;
    validate::url("url", &c.url)?;
    if validate::shows_redacted_credential(&c.url) {
        return Err(Problem::field("url", "`********` stands for a stored credential: give the credential itself"));
    }
    let signature = c.signature.unwrap_or(SignatureScheme::V1).as_str();
    if let Some(secret) = &c.secret {
        check_secret("secret", secret, signature)?;
    }
    let new = db::endpoints::NewEndpoint {
        tenant,
        // A credential in the URL is a secret: sealed like the signing one.
        url: keys.seal_url(&c.url),
        description: c.description.unwrap_or_default(),
        event_types: c.event_types.unwrap_or_default(),
        secret: keys.seal(&c.secret.unwrap_or_else(|| new_secret_for(signature))),
        http_method: c.http_method.unwrap_or(HttpMethod::Post).as_str().to_owned(),
        headers: headers_json(c.headers.unwrap_or_default()),
        timeout_ms: c.timeout_ms.unwrap_or(10_000),
        rate_limit_per_s: c.rate_limit_per_s,
        max_in_flight: c.max_in_flight,
        retry_schedule: c.retry_schedule,
        disable_after_failures: c.disable_after_failures.unwrap_or(5),
        disable_after_open_s: c.disable_after_open_s,
        ordering: c.ordering.unwrap_or(Ordering::None).as_str().to_owned(),
        ordering_on_dead: c.ordering_on_dead.unwrap_or(OrderingOnDead::Wait).as_str().to_owned(),
        batch: c.batch.map(|b| batch(b, None)),
        signature: signature.to_owned(),
        signature_header: c.signature_header,
        signature_hash: crate::signing::BodyHash::from(c.signature_hash.unwrap_or(SignatureHash::Sha256))
            .as_str()
            .to_owned(),
        transformation: c.transformation,
        enabled: c.enabled.unwrap_or(true),
        metadata: serde_json::Value::Object(c.metadata.unwrap_or_default().into_iter().collect()),
    };
    check_settings(&Settings {
        description: &new.description,
        event_types: &new.event_types,
        headers: &new.headers,
        timeout_ms: new.timeout_ms,
        rate_limit_per_s: new.rate_limit_per_s,
        max_in_flight: new.max_in_flight,
        retry_schedule: new.retry_schedule.as_deref(),
        disable_after_failures: new.disable_after_failures,
        disable_after_open_s: new.disable_after_open_s,
        batch: new.batch.as_ref(),
        signature_header: signature_header(&new.signature, new.signature_header.as_deref()),
        transformation: new.transformation.as_deref(),
    })?;
    Ok(new)
}

pub(super) fn apply_update(
    row: &mut db::endpoints::Endpoint,
    u: EndpointUpdate,
    keys: &KeyRing,
) -> Result<(), Problem> {
    if let Some(url) = required("url", u.url)? {
        validate::url("url", &url)?;
        let url = validate::keep_password(&url, &row.url);
        if validate::shows_redacted_credential(&url) {
            return Err(Problem::field(
                "url",
                "`********` stands for the stored credential only at the same host and user",
            ));
        }
        row.url = keys.seal_url(&url);
    }
    if let Some(description) = required("description", u.description)? {
        row.description = description;
    }
    if let Some(event_types) = required("event_types", u.event_types)? {
        row.event_types = event_types;
    }
    if let Some(method) = required("http_method", u.http_method)? {
        row.http_method = method.as_str().to_owned();
    }
    if let Some(headers) = required("headers", u.headers)? {
        row.headers = headers_json(keep_redacted(headers, &row.headers));
    }
    if let Some(timeout_ms) = required("timeout_ms", u.timeout_ms)? {
        row.timeout_ms = timeout_ms;
    }
    clearable(u.rate_limit_per_s, &mut row.rate_limit_per_s);
    clearable(u.max_in_flight, &mut row.max_in_flight);
    clearable(u.retry_schedule, &mut row.retry_schedule);
    clearable(u.disable_after_open_s, &mut row.disable_after_open_s);
    if let Some(n) = required("disable_after_failures", u.disable_after_failures)? {
        row.disable_after_failures = n;
    }
    if let Some(ordering) = required("ordering", u.ordering)? {
        row.ordering = ordering.as_str().to_owned();
    }
    if let Some(on_dead) = required("ordering_on_dead", u.ordering_on_dead)? {
        row.ordering_on_dead = on_dead.as_str().to_owned();
    }
    if let Some(signature) = required("signature", u.signature)? {
        // To or from v1a the secret changes kind: a new one, no overlap.
        let v1a = SignatureScheme::V1a.as_str();
        if (row.signature == v1a) != (signature.as_str() == v1a) {
            row.secret = keys.seal(&new_secret_for(signature.as_str()));
            row.previous_secret = None;
            row.previous_secret_expires_at = None;
        }
        row.signature = signature.as_str().to_owned();
    }
    clearable(u.signature_header, &mut row.signature_header);
    if let Some(hash) = required("signature_hash", u.signature_hash)? {
        row.signature_hash = crate::signing::BodyHash::from(hash).as_str().to_owned();
    }
    match u.batch {
        MaybeUndefined::Undefined => {}
        MaybeUndefined::Null => row.batch = None,
        MaybeUndefined::Value(change) => row.batch = Some(batch(change, row.batch.as_ref())),
    }
    clearable(u.transformation, &mut row.transformation);
    if let Some(enabled) = required("enabled", u.enabled)? {
        if enabled != row.enabled {
            row.disabled_reason = (!enabled).then(|| "disabled".to_owned());
        }
        row.enabled = enabled;
    }
    if let Some(metadata) = required("metadata", u.metadata)? {
        row.metadata = serde_json::Value::Object(metadata.into_iter().collect());
    }
    check_settings(&Settings {
        description: &row.description,
        event_types: &row.event_types,
        headers: &row.headers,
        timeout_ms: row.timeout_ms,
        rate_limit_per_s: row.rate_limit_per_s,
        max_in_flight: row.max_in_flight,
        retry_schedule: row.retry_schedule.as_deref(),
        disable_after_failures: row.disable_after_failures,
        disable_after_open_s: row.disable_after_open_s,
        batch: row.batch.as_ref(),
        signature_header: signature_header(&row.signature, row.signature_header.as_deref()),
        transformation: row.transformation.as_deref(),
    })
}

/// The header an endpoint's signature goes in, when it has one of its own
/// to check: the one it names, or `hmac_header`'s default.
fn signature_header<'a>(signature: &str, named: Option<&'a str>) -> Option<&'a str> {
    named.or((signature == "hmac_header").then_some(crate::signing::DEFAULT_SIGNATURE_HEADER))
}

/// Batch settings: those given, else those `kept`, else the defaults.
fn batch(given: BatchSettings, kept: Option<&db::endpoints::Batch>) -> db::endpoints::Batch {
    let format = match (given.format, kept) {
        (Some(format), _) => format,
        (None, Some(kept)) if kept.format == "ndjson" => BatchFormat::Ndjson,
        (None, _) => BatchFormat::Json,
    };
    db::endpoints::Batch {
        max_events: given.max_events.or(kept.map(|k| k.max_events)).unwrap_or(100),
        max_bytes: given.max_bytes.or(kept.map(|k| k.max_bytes)).unwrap_or(1 << 20),
        max_wait_ms: given.max_wait_ms.or(kept.map(|k| k.max_wait_ms)).unwrap_or(0),
        format: crate::domain::batch::BatchFormat::from(format).as_str().to_owned(),
    }
}

/// The settings both create and update must leave valid.
struct Settings<'a> {
    description: &'a str,
    event_types: &'a [String],
    headers: &'a serde_json::Value,
    timeout_ms: i32,
    rate_limit_per_s: Option<i32>,
    max_in_flight: Option<i32>,
    retry_schedule: Option<&'a [f64]>,
    disable_after_failures: i32,
    disable_after_open_s: Option<i32>,
    batch: Option<&'a db::endpoints::Batch>,
    signature_header: Option<&'a str>,
    transformation: Option<&'a str>,
}

/// The longest an endpoint's `disable_after_open_s` may be: a year.
const DISABLE_AFTER_OPEN_MAX_S: i64 = 365 * 86_400;

fn check_settings(s: &Settings<'_>) -> Result<(), Problem> {
    validate::text("description", s.description, 0, 1000)?;
    if s.event_types.len() > 100 {
        return Err(Problem::field("event_types", "at most 100 patterns"));
    }
    for (i, pattern) in s.event_types.iter().enumerate() {
        validate::event_type_pattern(&format!("event_types[{i}]"), pattern)?;
    }
    let headers = s.headers.as_object();
    if headers.is_some_and(|h| h.len() > HEADERS_MAX) {
        return Err(Problem::field("headers", format!("at most {HEADERS_MAX} custom headers")));
    }
    for (name, value) in headers.into_iter().flatten() {
        let field = format!("headers.{name}");
        if headers::is_reserved(name) {
            return Err(Problem::field(field, "is set by hookline (or frames the request) and cannot be set"));
        }
        if value.as_str().is_some_and(|v| v.len() > headers::VALUE_MAX_BYTES) {
            return Err(Problem::field(field, format!("at most {} bytes", headers::VALUE_MAX_BYTES)));
        }
        let valid_name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok();
        let valid_value = value.as_str().is_some_and(|v| reqwest::header::HeaderValue::from_str(v).is_ok());
        if !valid_name || !valid_value {
            return Err(Problem::field(field, "is not a valid HTTP header"));
        }
    }
    validate::range("timeout_ms", s.timeout_ms.into(), 1, 300_000)?;
    if let Some(rate) = s.rate_limit_per_s {
        validate::range("rate_limit_per_s", rate.into(), 1, 100_000)?;
    }
    if let Some(max) = s.max_in_flight {
        validate::range("max_in_flight", max.into(), 1, 100_000)?;
    }
    if let Some(schedule) = s.retry_schedule {
        if schedule.len() > 50 {
            return Err(Problem::field("retry_schedule", "at most 50 retries"));
        }
        if let Some(i) = schedule.iter().position(|d| !d.is_finite() || *d < 0.0 || *d > 7.0 * 86400.0) {
            return Err(Problem::field(format!("retry_schedule[{i}]"), "must be 0 to 604,800 seconds"));
        }
    }
    if let Some(seconds) = s.disable_after_open_s {
        validate::range("disable_after_open_s", seconds.into(), 1, DISABLE_AFTER_OPEN_MAX_S)?;
    }
    if let Some(header) = s.signature_header {
        validate::text("signature_header", header, 1, 100)?;
        if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
            return Err(Problem::field("signature_header", "is not a valid HTTP header name"));
        }
        if headers::is_reserved(header) {
            return Err(Problem::field("signature_header", "is set by hookline (or frames the request)"));
        }
        if headers.into_iter().flatten().any(|(name, _)| name.eq_ignore_ascii_case(header)) {
            return Err(Problem::field("signature_header", "is one of the endpoint's own `headers`"));
        }
    }
    if let Some(batch) = s.batch {
        validate::range("batch.max_events", batch.max_events.into(), 1, 1000)?;
        validate::range("batch.max_bytes", batch.max_bytes.into(), 1024, 4 * 1024 * 1024)?;
        validate::range("batch.max_wait_ms", batch.max_wait_ms.into(), 0, 60_000)?;
    }
    if let Some(source) = s.transformation {
        Transformation::compile(source).map_err(|e| Problem::field("transformation", e))?;
    }
    validate::range("disable_after_failures", s.disable_after_failures.into(), 1, 10_000)
}

/// A given secret suits the endpoint's `signature`: a `whsk_` private key
/// for `v1a`, a `whsec_` secret for the others.
pub(super) fn check_secret(field: &str, secret: &str, signature: &str) -> Result<(), Problem> {
    let checked = if signature == SignatureScheme::V1a.as_str() {
        PrivateKey::parse(secret).map(|_| ())
    } else {
        SigningKey::from_secret(secret).map(|_| ())
    };
    checked.map_err(|e| Problem::field(field, e.to_string()))
}

/// A new secret for an endpoint that signs with `signature`.
pub(super) fn new_secret_for(signature: &str) -> String {
    if signature == SignatureScheme::V1a.as_str() { new_private_key() } else { new_secret() }
}

/// New header values, where one reads `********` (as every answer but the
/// secret's shows them) the value stored for that name: a read, edited and
/// written back, keeps the credentials it could not see.
fn keep_redacted(mut headers: BTreeMap<String, String>, stored: &serde_json::Value) -> BTreeMap<String, String> {
    for (name, value) in headers.iter_mut().filter(|(_, v)| v.as_str() == crate::api::REDACTED) {
        let kept = stored.as_object().into_iter().flatten().find(|(n, _)| n.eq_ignore_ascii_case(name));
        if let Some(kept) = kept.and_then(|(_, v)| v.as_str()) {
            *value = kept.to_owned();
        }
    }
    headers
}

fn headers_json(headers: BTreeMap<String, String>) -> serde_json::Value {
    serde_json::Value::Object(headers.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect())
}
