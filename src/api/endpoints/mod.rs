//! `/v1/endpoints`: subscribers. Secrets appear only in the create and
//! rotate answers and at `GET /v1/endpoints/{id}/secret`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::{Auth, Principal, Scope};
use super::body::{self, Body};
use super::page::PageRequest;
use super::problem::Problem;
use super::{ApiTags, AppState, validate};
use rules::{apply_update, check_secret, new_endpoint, new_secret_for};

mod rules;
use crate::db;
use crate::db::audit::Entry;
use crate::domain::transform::{Event as TransformInput, Transformation};
use crate::secrets::{KeyRing, OpenError};
use crate::signing::{shown, suits};

/// Default overlap during which a rotated-out secret keeps signing.
const DEFAULT_ROTATION_OVERLAP_S: i64 = 24 * 3600;

/// The request method of deliveries: POST (default), PUT or PATCH.
#[derive(Enum, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "UPPERCASE")]
#[serde(remote = "Self", rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Post,
    Put,
    Patch,
}
body::enum_by_name!(HttpMethod);

impl HttpMethod {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
        }
    }
}

/// Whether deliveries go in order: `none` (default), `endpoint` (all of the
/// endpoint's in event order) or `key` (in order per event `ordering_key`;
/// events without a key are not ordered). One delivery of a lane is in
/// flight at a time; the next goes once it succeeded, died or was cancelled.
/// A change applies from then on: deliveries already queued keep their lanes.
#[derive(Enum, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
#[serde(remote = "Self", rename_all = "snake_case")]
pub enum Ordering {
    None,
    Endpoint,
    Key,
}
body::enum_by_name!(Ordering);

/// What a dead delivery does to its ordered lane: `wait` (default) holds
/// the lane until it is replayed or cancelled; `skip` lets the lane go on.
#[derive(Enum, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
#[serde(remote = "Self", rename_all = "snake_case")]
pub enum OrderingOnDead {
    Wait,
    Skip,
}
body::enum_by_name!(OrderingOnDead);

impl Ordering {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Ordering::None => "none",
            Ordering::Endpoint => "endpoint",
            Ordering::Key => "key",
        }
    }

    fn parse(stored: &str) -> Self {
        match stored {
            "endpoint" => Ordering::Endpoint,
            "key" => Ordering::Key,
            _ => Ordering::None,
        }
    }
}

impl OrderingOnDead {
    fn as_str(self) -> &'static str {
        match self {
            OrderingOnDead::Wait => "wait",
            OrderingOnDead::Skip => "skip",
        }
    }

    fn parse(stored: &str) -> Self {
        if stored == "skip" { OrderingOnDead::Skip } else { OrderingOnDead::Wait }
    }
}

/// How requests are signed: `v1` (default), Standard Webhooks HMAC; `v1a`,
/// Standard Webhooks ed25519 (hookline holds the private key; answers show
/// the `whpk_` public key as the secret); or
/// `hmac_header`, for receivers built for the older convention: the HMAC of
/// the body alone, `sha256=<hex>` (or `sha512=`), in `signature_header`
/// (default `X-Hookline-Signature`), keyed by the secret as written
/// (`whsec_…`); during a rotation's overlap the previous secret signs.
#[derive(Enum, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
#[serde(remote = "Self", rename_all = "snake_case")]
pub enum SignatureScheme {
    V1,
    V1a,
    HmacHeader,
}
body::enum_by_name!(SignatureScheme);

impl SignatureScheme {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SignatureScheme::V1 => "v1",
            SignatureScheme::V1a => "v1a",
            SignatureScheme::HmacHeader => "hmac_header",
        }
    }

    fn parse(stored: &str) -> Self {
        [SignatureScheme::V1a, SignatureScheme::HmacHeader]
            .into_iter()
            .find(|scheme| scheme.as_str() == stored)
            .unwrap_or(SignatureScheme::V1)
    }
}

/// The hash of an `hmac_header` signature: `sha256` (default) or `sha512`.
#[derive(Enum, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
#[serde(remote = "Self", rename_all = "snake_case")]
pub enum SignatureHash {
    Sha256,
    Sha512,
}
body::enum_by_name!(SignatureHash);

impl From<SignatureHash> for crate::signing::BodyHash {
    fn from(hash: SignatureHash) -> Self {
        match hash {
            SignatureHash::Sha256 => Self::Sha256,
            SignatureHash::Sha512 => Self::Sha512,
        }
    }
}

impl From<crate::signing::BodyHash> for SignatureHash {
    fn from(hash: crate::signing::BodyHash) -> Self {
        match hash {
            crate::signing::BodyHash::Sha256 => Self::Sha256,
            crate::signing::BodyHash::Sha512 => Self::Sha512,
        }
    }
}

/// How a batch's body is written: `json` (default), a JSON array of
/// envelopes; `ndjson`, one envelope per line.
#[derive(Enum, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
#[serde(remote = "Self", rename_all = "snake_case")]
pub enum BatchFormat {
    Json,
    Ndjson,
}
body::enum_by_name!(BatchFormat);

impl From<BatchFormat> for crate::domain::batch::BatchFormat {
    fn from(format: BatchFormat) -> Self {
        match format {
            BatchFormat::Json => Self::Json,
            BatchFormat::Ndjson => Self::Ndjson,
        }
    }
}

/// Deliveries sent together: each request carries up to `max_events`
/// envelopes and `max_bytes` of body, signed as one message with its own
/// `webhook-id`. A new delivery waits up to `max_wait_ms` for others to
/// join it. Absent fields take their defaults (on a change: keep their
/// values).
#[derive(Object, Deserialize, Debug, Default)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct BatchSettings {
    /// Envelopes per request at most, 1 to 1,000 (default 100).
    #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub max_events: Option<i32>,
    /// Body bytes per request at most, 1,024 to 4,194,304 (default
    /// 1,048,576); an envelope larger on its own is sent alone.
    #[oai(validator(minimum(value = "1024"), maximum(value = "4194304")))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub max_bytes: Option<i32>,
    /// How long a new delivery may wait for company, 0 to 60,000 ms
    /// (default 0: what is due together goes together).
    #[oai(validator(minimum(value = "0"), maximum(value = "60000")))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub max_wait_ms: Option<i32>,
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub format: Option<BatchFormat>,
}

/// An endpoint's batches.
#[derive(Object, Debug, Clone)]
pub struct Batch {
    pub max_events: i32,
    pub max_bytes: i32,
    pub max_wait_ms: i32,
    pub format: BatchFormat,
}

impl From<&db::endpoints::Batch> for Batch {
    fn from(b: &db::endpoints::Batch) -> Self {
        Batch {
            max_events: b.max_events,
            max_bytes: b.max_bytes,
            max_wait_ms: b.max_wait_ms,
            format: if b.format == "ndjson" { BatchFormat::Ndjson } else { BatchFormat::Json },
        }
    }
}

/// A new endpoint. Only `url` is required.
#[derive(Object, Deserialize, Debug, Default)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct EndpointCreate {
    /// Where to deliver: an http(s) URL, or a broker: `nats://host:port/subject`
    /// (JetStream), `amqp://user:pass@host:port/vhost?exchange=&routing_key=`
    /// or `redis://host:port/db?stream=&maxlen=`. A password in it is
    /// shown as `********`, and kept when sent back so.
    #[oai(validator(
        min_length = 1,
        max_length = 2000,
        pattern = r"^(?:https?://|(?:nats|amqp|redis)://(?:[A-Za-z0-9._~!$&'()*+,;=%-]+(?::[A-Za-z0-9._~!$&'()*+,;=%-]*)?@)?)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(?::(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(?:/[!-~]*)?$"
    ))]
    pub url: String,
    /// The tenant (default `default`; a tenant-bound token's own).
    #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{1,100}$"))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub tenant: Option<String>,
    #[oai(validator(max_length = 1000))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub description: Option<String>,
    /// Event types to receive: exact names, `prefix.*` or `*`; empty = all.
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub event_types: Option<Vec<String>>,
    /// A Standard Webhooks secret `whsec_<base64>` of 24 to 62 bytes (for
    /// `v1a` a `whsk_` ed25519 private key: a 32-byte seed); generated when
    /// absent.
    #[oai(validator(
        pattern = r"^(?:whsec_(?:[A-Za-z0-9+/]{4}){8,20}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?|whsk_(?:[A-Za-z0-9+/]{43}=|[A-Za-z0-9+/]{86}==))$"
    ))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub secret: Option<String>,
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub http_method: Option<HttpMethod>,
    /// Extra request headers.
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub headers: Option<BTreeMap<String, String>>,
    /// Request timeout, 1 to 300,000 ms (default 10,000).
    #[oai(validator(minimum(value = "1"), maximum(value = "300000")))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub timeout_ms: Option<i32>,
    /// Deliveries per second at most, across all workers.
    #[oai(validator(minimum(value = "1")))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub rate_limit_per_s: Option<i32>,
    /// Requests in flight at most, across all workers.
    #[oai(validator(minimum(value = "1")))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub max_in_flight: Option<i32>,
    /// Seconds to wait before each retry (default: the global schedule).
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub retry_schedule: Option<Vec<f64>>,
    /// Disable after this many consecutive dead deliveries (default 5).
    #[oai(validator(minimum(value = "1"), maximum(value = "10000")))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub disable_after_failures: Option<i32>,
    /// Disable after its circuit has stayed open this many seconds, up to a
    /// year (default: the workers' `HOOKLINE_DISABLE_AFTER_OPEN`, 5 days).
    #[oai(validator(minimum(value = "1"), maximum(value = "31536000")))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub disable_after_open_s: Option<i32>,
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub ordering: Option<Ordering>,
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub ordering_on_dead: Option<OrderingOnDead>,
    /// Send deliveries in batches (with `ordering`, a batch carries each
    /// lane's events in order).
    #[serde(default, deserialize_with = "super::body::object")]
    pub batch: Option<BatchSettings>,
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub signature: Option<SignatureScheme>,
    /// `hmac_header`: the header that carries the signature (default `X-Hookline-Signature`).
    #[oai(validator(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$"))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub signature_header: Option<String>,
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub signature_hash: Option<SignatureHash>,
    /// A minijinja template that writes the request body from the event
    /// (`id`, `type`, `timestamp`, `data`, `tenant`, or all as `event`);
    /// printed values are JSON. `{% set method = "PUT" %}` and
    /// `{% set headers = {"x-kind": type} %}` set the method and headers.
    #[oai(validator(max_length = 65536))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub transformation: Option<String>,
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub enabled: Option<bool>,
    /// Any JSON object, kept for you.
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub metadata: Option<BTreeMap<String, serde_json::Value>>,
}

/// Changes to an endpoint: absent fields stay as they are; `null` clears the
/// optional limits and the retry schedule.
#[derive(Object, Deserialize, Debug, Default)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct EndpointUpdate {
    #[oai(validator(
        min_length = 1,
        max_length = 2000,
        pattern = r"^(?:https?://|(?:nats|amqp|redis)://(?:[A-Za-z0-9._~!$&'()*+,;=%-]+(?::[A-Za-z0-9._~!$&'()*+,;=%-]*)?@)?)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(?::(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(?:/[!-~]*)?$"
    ))]
    #[serde(default)]
    pub url: MaybeUndefined<String>,
    #[oai(validator(max_length = 1000))]
    #[serde(default)]
    pub description: MaybeUndefined<String>,
    #[serde(default)]
    pub event_types: MaybeUndefined<Vec<String>>,
    #[serde(default)]
    pub http_method: MaybeUndefined<HttpMethod>,
    #[serde(default)]
    pub headers: MaybeUndefined<BTreeMap<String, String>>,
    #[oai(validator(minimum(value = "1"), maximum(value = "300000")))]
    #[serde(default)]
    pub timeout_ms: MaybeUndefined<i32>,
    #[oai(validator(minimum(value = "1")), nullable)]
    #[serde(default)]
    pub rate_limit_per_s: MaybeUndefined<i32>,
    #[oai(validator(minimum(value = "1")), nullable)]
    #[serde(default)]
    pub max_in_flight: MaybeUndefined<i32>,
    #[oai(nullable)]
    #[serde(default)]
    pub retry_schedule: MaybeUndefined<Vec<f64>>,
    #[oai(validator(minimum(value = "1"), maximum(value = "10000")))]
    #[serde(default)]
    pub disable_after_failures: MaybeUndefined<i32>,
    #[oai(validator(minimum(value = "1"), maximum(value = "31536000")), nullable)]
    #[serde(default)]
    pub disable_after_open_s: MaybeUndefined<i32>,
    // No doc comment on an enum field: the generated Python client cannot
    // read a `$ref` wrapped with a description (see the enum's own).
    #[serde(default)]
    pub ordering: MaybeUndefined<Ordering>,
    #[serde(default)]
    pub ordering_on_dead: MaybeUndefined<OrderingOnDead>,
    /// `null` stops batching; deliveries already queued go as they come.
    #[oai(nullable)]
    #[serde(default, deserialize_with = "super::body::maybe_object")]
    pub batch: MaybeUndefined<BatchSettings>,
    #[serde(default)]
    pub signature: MaybeUndefined<SignatureScheme>,
    /// `null`: back to `X-Hookline-Signature`.
    #[oai(validator(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$"), nullable)]
    #[serde(default)]
    pub signature_header: MaybeUndefined<String>,
    #[serde(default)]
    pub signature_hash: MaybeUndefined<SignatureHash>,
    /// `null`: the body is the event's envelope again.
    #[oai(validator(max_length = 65536), nullable)]
    #[serde(default)]
    pub transformation: MaybeUndefined<String>,
    #[serde(default)]
    pub enabled: MaybeUndefined<bool>,
    #[serde(default)]
    pub metadata: MaybeUndefined<BTreeMap<String, serde_json::Value>>,
}

/// An endpoint (never its secret, nor its custom header values).
#[derive(Object, Debug, Clone)]
pub struct Endpoint {
    pub id: Uuid,
    pub tenant: String,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub http_method: HttpMethod,
    /// Custom request headers. Their values are secrets (often credentials
    /// for the receiver): they read `********` here, and in full only at
    /// creation and at `GET /v1/endpoints/{id}/secret`.
    pub headers: BTreeMap<String, String>,
    pub timeout_ms: i32,
    #[oai(nullable)]
    pub rate_limit_per_s: Option<i32>,
    #[oai(nullable)]
    pub max_in_flight: Option<i32>,
    /// Retry delays in seconds; null = the global schedule.
    #[oai(nullable)]
    pub retry_schedule: Option<Vec<f64>>,
    pub disable_after_failures: i32,
    /// Seconds its circuit may stay open before it is disabled; null = the
    /// workers' `HOOKLINE_DISABLE_AFTER_OPEN` (5 days).
    #[oai(nullable)]
    pub disable_after_open_s: Option<i32>,
    pub ordering: Ordering,
    pub ordering_on_dead: OrderingOnDead,
    /// Its batches; null: one delivery per request.
    #[oai(nullable)]
    pub batch: Option<Batch>,
    pub signature: SignatureScheme,
    /// `hmac_header`'s header.
    pub signature_header: String,
    pub signature_hash: SignatureHash,
    /// The template that writes its request bodies; null: the envelope.
    #[oai(nullable)]
    pub transformation: Option<String>,
    pub enabled: bool,
    #[oai(nullable)]
    pub disabled_reason: Option<String>,
    #[oai(nullable)]
    pub disabled_at: Option<DateTime<Utc>>,
    pub metadata: BTreeMap<String, serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new endpoint with its secret and header values, shown this once.
#[derive(Object, Debug)]
pub struct CreatedEndpoint {
    #[oai(flatten)]
    pub endpoint: Endpoint,
    /// What receivers verify with (for `v1a`, the `whpk_` public key).
    pub secret: String,
}

#[derive(Object, Debug)]
pub struct EndpointList {
    pub data: Vec<Endpoint>,
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

/// The secrets that sign deliveries now, and the custom header values.
#[derive(Object, Debug)]
pub struct EndpointSecret {
    /// What receivers verify with: the `whsec_` secret, or for `v1a` the
    /// `whpk_` public key (the private key is never shown).
    pub secret: String,
    /// The custom request headers with their values.
    pub headers: BTreeMap<String, String>,
    /// The rotated-out secret, still signing until `previous_secret_expires_at`.
    #[oai(nullable)]
    pub previous_secret: Option<String>,
    #[oai(nullable)]
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

#[derive(Object, Deserialize, Debug, Default)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// The new secret (`whsec_<base64>`, 24 to 62 bytes; for `v1a` a `whsk_`
    /// private key); generated when absent.
    #[oai(validator(
        pattern = r"^(?:whsec_(?:[A-Za-z0-9+/]{4}){8,20}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?|whsk_(?:[A-Za-z0-9+/]{43}=|[A-Za-z0-9+/]{86}==))$"
    ))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub secret: Option<String>,
    /// Seconds the old secret keeps signing (default 86,400; 0 = none).
    #[oai(validator(minimum(value = "0"), maximum(value = "2592000")))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub overlap_s: Option<i64>,
}

#[derive(Object, Deserialize, Debug, Default)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct TestEvent {
    /// Default `hookline.test`.
    #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{1,200}$"))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub event_type: Option<String>,
    /// Default `{"test": true}`.
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub payload: Option<serde_json::Value>,
}

/// A sample to render a transformation against, without sending.
#[derive(Object, Deserialize, Debug, Default)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct TransformationTest {
    /// The template to try (default: the endpoint's own).
    #[oai(validator(max_length = 65536))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub template: Option<String>,
    /// Default `hookline.test`.
    #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{1,200}$"))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub event_type: Option<String>,
    /// Default `{"test": true}`.
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub payload: Option<serde_json::Value>,
}

/// What a delivery of the sample would send.
#[derive(Object, Debug)]
pub struct TransformationRendered {
    pub body: String,
    pub method: String,
    /// The headers the template sets (beside the endpoint's and hookline's).
    pub headers: BTreeMap<String, String>,
}

#[derive(Object, Debug)]
pub struct TestQueued {
    pub event_id: Uuid,
    pub delivery_id: Uuid,
}

#[derive(Object, Deserialize, Debug)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct Recover {
    /// Re-queue dead deliveries created since then, and queue the matching
    /// events produced since then that the endpoint missed.
    pub since: DateTime<Utc>,
}

#[derive(Object, Debug)]
pub struct Recovered {
    /// Dead deliveries queued again.
    pub requeued: i64,
    /// Missed events queued.
    pub queued: i64,
}

/// Health and the last 24 hours of one endpoint.
#[derive(Object, Debug)]
pub struct EndpointStats {
    pub endpoint_id: Uuid,
    pub enabled: bool,
    #[oai(nullable)]
    pub disabled_reason: Option<String>,
    pub consecutive_failures: i32,
    #[oai(nullable)]
    pub last_success_at: Option<DateTime<Utc>>,
    #[oai(nullable)]
    pub last_failure_at: Option<DateTime<Utc>>,
    /// `closed` (delivering), `open` (disabled, or the breaker tripped) or
    /// `half_open` (one probe in flight).
    pub circuit_state: String,
    /// Failed attempts in a row: what trips the breaker.
    pub failed_attempts: i32,
    /// While the breaker is open: when a probe may go.
    #[oai(nullable)]
    pub circuit_retry_at: Option<DateTime<Utc>>,
    /// Deliveries created in the last 24 hours (whole hours).
    pub total: i64,
    pub succeeded: i64,
    pub dead: i64,
    pub pending: i64,
    #[oai(nullable)]
    pub success_rate: Option<f64>,
    #[oai(nullable)]
    pub p50_ms: Option<f64>,
    #[oai(nullable)]
    pub p95_ms: Option<f64>,
    #[oai(nullable)]
    pub p99_ms: Option<f64>,
}

#[derive(ApiResponse)]
pub enum CreateEndpointResponse {
    #[oai(status = 201)]
    Created(Json<CreatedEndpoint>),
}

#[derive(ApiResponse)]
pub enum DeleteEndpointResponse {
    /// Deleted; its queued deliveries are cancelled, its history stays.
    #[oai(status = 204)]
    Deleted,
}

#[derive(ApiResponse)]
pub enum TestResponse {
    /// Queued for this endpoint alone.
    #[oai(status = 202)]
    Queued(Json<TestQueued>),
}

#[derive(Default)]
pub struct EndpointsApi;

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Endpoints")]
impl EndpointsApi {
    /// Create an endpoint
    #[oai(path = "/endpoints", method = "post", operation_id = "createEndpoint")]
    async fn create(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        body: Body<EndpointCreate>,
    ) -> Result<CreateEndpointResponse, Problem> {
        create_endpoint(&auth.0, &state, body.0).await.map(|created| CreateEndpointResponse::Created(Json(created)))
    }

    /// List endpoints, newest first
    #[oai(path = "/endpoints", method = "get", operation_id = "listEndpoints")]
    async fn list(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        /// Page size, 1 to 250 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "250")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Only this tenant's endpoints.
        #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{1,100}$"))]
        tenant: Query<Option<String>>,
    ) -> Result<Json<EndpointList>, Problem> {
        auth.0.require(Scope::Read)?;
        let page = PageRequest::parse(limit.0, cursor.0.as_deref())?;
        let client = state.client().await?;
        let tenant = auth.0.tenant_filter(tenant.0.as_deref());
        let rows = db::endpoints::list_page(&client, page.after, page.fetch(), tenant).await?;
        let mut data: Vec<Endpoint> = rows.iter().map(Endpoint::from).collect();
        let next_cursor = page.finish(&mut data, |e| e.id);
        Ok(Json(EndpointList { data, next_cursor }))
    }

    /// Get an endpoint
    #[oai(path = "/endpoints/:endpoint_id", method = "get", operation_id = "getEndpoint")]
    async fn get(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        endpoint_id: Path<Uuid>,
    ) -> Result<Json<Endpoint>, Problem> {
        Ok(Json(Endpoint::from(&get_endpoint(&auth.0, &state, endpoint_id.0).await?)))
    }

    /// Change an endpoint
    #[oai(path = "/endpoints/:endpoint_id", method = "patch", operation_id = "updateEndpoint")]
    async fn update(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        endpoint_id: Path<Uuid>,
        body: Body<EndpointUpdate>,
    ) -> Result<Json<Endpoint>, Problem> {
        update_endpoint(&auth.0, &state, endpoint_id.0, body.0).await.map(Json)
    }

    /// Delete an endpoint
    #[oai(path = "/endpoints/:endpoint_id", method = "delete", operation_id = "deleteEndpoint")]
    async fn delete(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        endpoint_id: Path<Uuid>,
    ) -> Result<DeleteEndpointResponse, Problem> {
        auth.0.require(Scope::Write)?;
        let mut client = state.client().await?;
        let tx = client.transaction().await?;
        let row = visible(&auth.0, db::endpoints::get_for_update(&tx, endpoint_id.0).await?)?;
        db::endpoints::delete(&tx, row.id).await?;
        let before = Endpoint::from(&row);
        audit(&tx, &auth.0, "endpoint.delete", &before, Some(&before), None).await?;
        tx.commit().await?;
        Ok(DeleteEndpointResponse::Deleted)
    }

    /// Enable an endpoint
    #[oai(path = "/endpoints/:endpoint_id/enable", method = "post", operation_id = "enableEndpoint")]
    async fn enable(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        endpoint_id: Path<Uuid>,
    ) -> Result<Json<Endpoint>, Problem> {
        enable(&auth.0, &state, endpoint_id.0).await.map(Json)
    }

    /// Disable an endpoint
    ///
    /// Its waiting deliveries move to the dead-letter queue; `recover` can
    /// send them, and the events it misses meanwhile, later.
    #[oai(path = "/endpoints/:endpoint_id/disable", method = "post", operation_id = "disableEndpoint")]
    async fn disable(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        endpoint_id: Path<Uuid>,
        /// Why (kept as `disabled_reason`).
        #[oai(validator(min_length = 1, max_length = 500))]
        reason: Query<Option<String>>,
    ) -> Result<Json<Endpoint>, Problem> {
        disable(&auth.0, &state, endpoint_id.0, reason.0).await.map(Json)
    }

    /// Rotate an endpoint's secret
    ///
    /// The old secret keeps signing (a second signature) during the overlap.
    #[oai(path = "/endpoints/:endpoint_id/rotate-secret", method = "post", operation_id = "rotateEndpointSecret")]
    async fn rotate_secret(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        endpoint_id: Path<Uuid>,
        body: Body<RotateSecret>,
    ) -> Result<Json<EndpointSecret>, Problem> {
        rotate_secret(&auth.0, &state, endpoint_id.0, body.0).await.map(Json)
    }

    /// Read an endpoint's signing secret
    #[oai(path = "/endpoints/:endpoint_id/secret", method = "get", operation_id = "getEndpointSecret")]
    async fn secret(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        endpoint_id: Path<Uuid>,
    ) -> Result<Json<EndpointSecret>, Problem> {
        secret(&auth.0, &state, endpoint_id.0).await.map(Json)
    }

    /// Send a test event to this endpoint alone
    #[oai(path = "/endpoints/:endpoint_id/test", method = "post", operation_id = "testEndpoint")]
    async fn test(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        endpoint_id: Path<Uuid>,
        body: Body<TestEvent>,
    ) -> Result<TestResponse, Problem> {
        send_test(&auth.0, &state, endpoint_id.0, body.0).await.map(|queued| TestResponse::Queued(Json(queued)))
    }

    /// Render a transformation against a sample, without sending
    ///
    /// Renders `template`, or the endpoint's own transformation, as a
    /// delivery of the sample event to this endpoint would. A template that
    /// does not compile or fails to render is a 400 naming `template`.
    #[oai(
        path = "/endpoints/:endpoint_id/transformation/test",
        method = "post",
        operation_id = "testEndpointTransformation"
    )]
    async fn test_transformation(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        endpoint_id: Path<Uuid>,
        body: Body<TransformationTest>,
    ) -> Result<Json<TransformationRendered>, Problem> {
        // Rendering costs CPU: those who may set a template may try one.
        auth.0.require(Scope::Write)?;
        let sample = body.0;
        let event_type = sample.event_type.unwrap_or_else(|| "hookline.test".to_owned());
        validate::event_type("event_type", &event_type)?;
        let client = state.client().await?;
        let row = visible(&auth.0, db::endpoints::get(&client, endpoint_id.0).await?)?;
        let Some(source) = sample.template.or(row.transformation) else {
            return Err(Problem::field("template", "the endpoint has no transformation: give one to try"));
        };
        let template = |e: String| Problem::field("template", e);
        let transformation = Transformation::compile(&source).map_err(template)?;
        let timestamp = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let data = sample.payload.unwrap_or_else(|| serde_json::json!({"test": true}));
        let tenant = row.tenant.clone();
        // On the blocking pool, as workers render: not on the API's threads.
        let rendered = tokio::task::spawn_blocking(move || {
            let event = TransformInput {
                id: Uuid::now_v7(),
                event_type: &event_type,
                timestamp: &timestamp,
                data,
                tenant: &tenant,
            };
            transformation.render(&event, crate::worker::dispatch::REQUEST_BODY_MAX_BYTES)
        })
        .await
        .map_err(|e| Problem::internal(&e))?
        .map_err(template)?;
        Ok(Json(TransformationRendered {
            body: rendered.body,
            method: rendered.method.unwrap_or(row.http_method),
            headers: rendered.headers.into_iter().collect(),
        }))
    }

    /// Recover an endpoint
    ///
    /// Re-queues its dead deliveries since a time and queues the matching
    /// events it missed while disabled. The endpoint must be enabled.
    #[oai(path = "/endpoints/:endpoint_id/recover", method = "post", operation_id = "recoverEndpoint")]
    async fn recover(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        endpoint_id: Path<Uuid>,
        body: Body<Recover>,
    ) -> Result<Json<Recovered>, Problem> {
        recover(&auth.0, &state, endpoint_id.0, body.0.since).await.map(Json)
    }

    /// An endpoint's health and last 24 hours
    #[oai(path = "/endpoints/:endpoint_id/stats", method = "get", operation_id = "getEndpointStats")]
    async fn stats(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        endpoint_id: Path<Uuid>,
    ) -> Result<Json<EndpointStats>, Problem> {
        stats(&auth.0, &state, endpoint_id.0).await.map(Json)
    }
}

// What the API's handlers and the dashboard's pages do alike: one rule,
// scope check included, for both.

/// Creates an endpoint; the answer shows its secret and header values.
pub(crate) async fn create_endpoint(
    principal: &Principal,
    state: &AppState,
    create: EndpointCreate,
) -> Result<CreatedEndpoint, Problem> {
    principal.require(Scope::Write)?;
    let mut client = state.client().await?;
    let tx = client.transaction().await?;
    let (row, endpoint) = create_in(&tx, principal, state, create).await?;
    tx.commit().await?;
    let endpoint = Endpoint { headers: header_values(&row.headers), ..endpoint };
    let secret = shown(&state.secret_keys.open(&row.secret)?);
    Ok(CreatedEndpoint { endpoint, secret })
}

pub(crate) async fn update_endpoint(
    principal: &Principal,
    state: &AppState,
    id: Uuid,
    changes: EndpointUpdate,
) -> Result<Endpoint, Problem> {
    principal.require(Scope::Write)?;
    let keys = state.secret_keys.clone();
    change_endpoint(principal, state, id, "endpoint.update", move |row| apply_update(row, changes, &keys)).await
}

/// An endpoint this caller may see.
pub(crate) async fn get_endpoint(
    principal: &Principal,
    state: &AppState,
    id: Uuid,
) -> Result<db::endpoints::Endpoint, Problem> {
    principal.require(Scope::Read)?;
    let client = state.client().await?;
    visible(principal, db::endpoints::get(&client, id).await?)
}

pub(crate) async fn enable(principal: &Principal, state: &AppState, id: Uuid) -> Result<Endpoint, Problem> {
    principal.require(Scope::Write)?;
    change_endpoint(principal, state, id, "endpoint.enable", |row| {
        row.enabled = true;
        row.disabled_reason = None;
        Ok(())
    })
    .await
}

/// Disables with `reason`, by default who did it.
pub(crate) async fn disable(
    principal: &Principal,
    state: &AppState,
    id: Uuid,
    reason: Option<String>,
) -> Result<Endpoint, Problem> {
    principal.require(Scope::Write)?;
    let reason = reason.unwrap_or_else(|| format!("disabled by {}", principal.name));
    validate::text("reason", &reason, 1, 500)?;
    change_endpoint(principal, state, id, "endpoint.disable", move |row| {
        if row.enabled {
            row.enabled = false;
            row.disabled_reason = Some(reason);
        }
        Ok(())
    })
    .await
}

pub(crate) async fn rotate_secret(
    principal: &Principal,
    state: &AppState,
    id: Uuid,
    rotate: RotateSecret,
) -> Result<EndpointSecret, Problem> {
    principal.require(Scope::Write)?;
    let overlap_s = rotate.overlap_s.unwrap_or(DEFAULT_ROTATION_OVERLAP_S);
    validate::range("overlap_s", overlap_s, 0, 30 * 86400)?;
    let mut client = state.client().await?;
    let tx = client.transaction().await?;
    let mut row = visible(principal, db::endpoints::get_for_update(&tx, id).await?)?;
    if let Some(secret) = &rotate.secret {
        check_secret("secret", secret, &row.signature)?;
    }
    let new_secret = state.secret_keys.seal(&rotate.secret.unwrap_or_else(|| new_secret_for(&row.signature)));
    let old = std::mem::replace(&mut row.secret, new_secret);
    row.previous_secret = (overlap_s > 0).then_some(old);
    row.previous_secret_expires_at = (overlap_s > 0).then(|| Utc::now() + chrono::Duration::seconds(overlap_s));
    let row = db::endpoints::update(&tx, &row).await?;
    let endpoint = Endpoint::from(&row);
    audit(&tx, principal, "endpoint.rotate_secret", &endpoint, None, None).await?;
    tx.commit().await?;
    Ok(secret_of(&state.secret_keys, row)?)
}

pub(crate) async fn secret(principal: &Principal, state: &AppState, id: Uuid) -> Result<EndpointSecret, Problem> {
    principal.require(Scope::Write)?;
    let client = state.client().await?;
    let row = visible(principal, db::endpoints::get(&client, id).await?)?;
    Ok(secret_of(&state.secret_keys, row)?)
}

/// Queues a test event for this endpoint alone.
pub(crate) async fn send_test(
    principal: &Principal,
    state: &AppState,
    id: Uuid,
    test: TestEvent,
) -> Result<TestQueued, Problem> {
    principal.require(Scope::Write)?;
    let event_type = test.event_type.unwrap_or_else(|| "hookline.test".to_owned());
    validate::event_type("event_type", &event_type)?;
    let payload = test.payload.unwrap_or_else(|| serde_json::json!({"test": true}));
    let mut client = state.client().await?;
    let tx = client.transaction().await?;
    let row = visible(principal, db::endpoints::get(&tx, id).await?)?;
    if !row.enabled {
        return Err(Problem::conflict("the endpoint is disabled: enable it first"));
    }
    let new_event = db::events::NewEvent {
        tenant: &row.tenant,
        event_type: &event_type,
        payload: &payload,
        idempotency_key: None,
        source: "test",
        ordering_key: None,
    };
    let (event, _) = db::events::insert(&tx, &new_event).await?;
    let one = db::deliveries::OneDelivery {
        event_id: event.id,
        endpoint_id: row.id,
        tenant: &row.tenant,
        event_type: &event_type,
    };
    let delivery_id = db::deliveries::queue_one(&tx, &one).await?;
    tx.commit().await?;
    Ok(TestQueued { event_id: event.id, delivery_id })
}

pub(crate) async fn recover(
    principal: &Principal,
    state: &AppState,
    id: Uuid,
    since: DateTime<Utc>,
) -> Result<Recovered, Problem> {
    principal.require(Scope::Write)?;
    let mut client = state.client().await?;
    let tx = client.transaction().await?;
    let row = visible(principal, db::endpoints::get_for_update(&tx, id).await?)?;
    if !row.enabled {
        return Err(Problem::conflict("the endpoint is disabled: enable it first"));
    }
    let filter = db::deliveries::DeliveryFilter { endpoint_id: Some(row.id), since: Some(since), ..Default::default() };
    let requeued = db::deliveries::replay_dead_letters(&tx, &filter).await?;
    let queued = db::deliveries::queue_missed(&tx, row.id, since).await? as i64;
    let endpoint = Endpoint::from(&row);
    let after = serde_json::json!({"since": since, "requeued": requeued, "queued": queued});
    let entry = Entry {
        tenant: Some(&row.tenant),
        action: "endpoint.recover",
        object_type: "endpoint",
        object_id: Some(endpoint.id.to_string()),
        before: None,
        after: Some(after),
    };
    db::audit::record(&tx, &principal.actor(), entry).await?;
    tx.commit().await?;
    Ok(Recovered { requeued, queued })
}

pub(crate) async fn stats(principal: &Principal, state: &AppState, id: Uuid) -> Result<EndpointStats, Problem> {
    principal.require(Scope::Read)?;
    let client = state.client().await?;
    let row = visible(principal, db::endpoints::get(&client, id).await?)?;
    let s = db::stats::endpoint(&client, row.id).await?.ok_or_else(|| Problem::not_found("endpoint"))?;
    Ok(EndpointStats {
        endpoint_id: row.id,
        enabled: s.enabled,
        disabled_reason: s.disabled_reason,
        consecutive_failures: s.consecutive_failures,
        last_success_at: s.last_success_at,
        last_failure_at: s.last_failure_at,
        circuit_state: s.circuit_state,
        failed_attempts: s.failed_attempts,
        circuit_retry_at: s.circuit_retry_at,
        total: s.total,
        succeeded: s.succeeded,
        dead: s.dead,
        pending: s.pending,
        success_rate: s.success_rate,
        p50_ms: s.p50_ms,
        p95_ms: s.p95_ms,
        p99_ms: s.p99_ms,
    })
}

/// Reads, changes with `change`, writes back and audits an endpoint, in one transaction.
async fn change_endpoint(
    principal: &Principal,
    state: &AppState,
    id: Uuid,
    action: &str,
    change: impl FnOnce(&mut db::endpoints::Endpoint) -> Result<(), Problem>,
) -> Result<Endpoint, Problem> {
    let mut client = state.client().await?;
    let tx = client.transaction().await?;
    let mut row = visible(principal, db::endpoints::get_for_update(&tx, id).await?)?;
    let before = Endpoint::from(&row);
    change(&mut row)?;
    if state.strict_event_types {
        super::event_types::check_subscriptions(&tx, &row.tenant, &row.event_types, &before.event_types).await?;
    }
    let after = Endpoint::from(&db::endpoints::update(&tx, &row).await?);
    audit(&tx, principal, action, &after, Some(&before), Some(&after)).await?;
    tx.commit().await?;
    Ok(after)
}

/// Creates an endpoint in `tx` as `principal` asks, by the rules of
/// `POST /v1/endpoints`, audited; also for the sandboxes' endpoints.
pub(super) async fn create_in(
    tx: &deadpool_postgres::Transaction<'_>,
    principal: &Principal,
    state: &AppState,
    create: EndpointCreate,
) -> Result<(db::endpoints::Endpoint, Endpoint), Problem> {
    let new = new_endpoint(principal, create, &state.secret_keys)?;
    if state.strict_event_types {
        super::event_types::check_subscriptions(tx, &new.tenant, &new.event_types, &[]).await?;
    }
    let row = db::endpoints::insert(tx, &new).await?;
    let endpoint = Endpoint::from(&row);
    audit(tx, principal, "endpoint.create", &endpoint, None, Some(&endpoint)).await?;
    Ok((row, endpoint))
}

/// The endpoint, if it exists for this caller (another tenant's is a 404).
fn visible(principal: &Principal, row: Option<db::endpoints::Endpoint>) -> Result<db::endpoints::Endpoint, Problem> {
    row.filter(|r| principal.sees(&r.tenant)).ok_or_else(|| Problem::not_found("endpoint"))
}

fn secret_of(keys: &KeyRing, row: db::endpoints::Endpoint) -> Result<EndpointSecret, OpenError> {
    let current = row.previous_secret_expires_at.is_some_and(|at| at > Utc::now());
    Ok(EndpointSecret {
        headers: header_values(&row.headers),
        secret: shown(&keys.open(&row.secret)?),
        // One that cannot sign for the endpoint's signature does not sign.
        previous_secret: row
            .previous_secret
            .filter(|_| current)
            .map(|s| keys.open(&s))
            .transpose()?
            .filter(|s| suits(s, &row.signature))
            .map(|s| shown(&s)),
        previous_secret_expires_at: row.previous_secret_expires_at.filter(|_| current),
    })
}

async fn audit(
    db: &impl deadpool_postgres::GenericClient,
    principal: &Principal,
    action: &str,
    endpoint: &Endpoint,
    before: Option<&Endpoint>,
    after: Option<&Endpoint>,
) -> Result<(), Problem> {
    let entry = Entry {
        tenant: Some(&endpoint.tenant),
        action,
        object_type: "endpoint",
        object_id: Some(endpoint.id.to_string()),
        before: before.map(endpoint_json),
        after: after.map(endpoint_json),
    };
    Ok(db::audit::record(db, &principal.actor(), entry).await?)
}

/// An endpoint's custom headers with their values.
fn header_values(headers: &serde_json::Value) -> BTreeMap<String, String> {
    headers
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// The audit log's copy of an endpoint: every field but secrets (the
/// header values read `********`, as in every answer but the secret's).
fn endpoint_json(e: &Endpoint) -> serde_json::Value {
    use poem_openapi::types::ToJSON;
    e.to_json().unwrap_or_default()
}

impl From<&db::endpoints::Endpoint> for Endpoint {
    fn from(r: &db::endpoints::Endpoint) -> Self {
        Endpoint {
            id: r.id,
            tenant: r.tenant.clone(),
            url: validate::shown_url(&r.url),
            description: r.description.clone(),
            event_types: r.event_types.clone(),
            http_method: match r.http_method.as_str() {
                "PUT" => HttpMethod::Put,
                "PATCH" => HttpMethod::Patch,
                _ => HttpMethod::Post,
            },
            headers: header_values(&r.headers).into_keys().map(|name| (name, super::REDACTED.to_owned())).collect(),
            timeout_ms: r.timeout_ms,
            rate_limit_per_s: r.rate_limit_per_s,
            max_in_flight: r.max_in_flight,
            retry_schedule: r.retry_schedule.clone(),
            disable_after_failures: r.disable_after_failures,
            disable_after_open_s: r.disable_after_open_s,
            ordering: Ordering::parse(&r.ordering),
            ordering_on_dead: OrderingOnDead::parse(&r.ordering_on_dead),
            batch: r.batch.as_ref().map(Batch::from),
            signature: SignatureScheme::parse(&r.signature),
            signature_header: r
                .signature_header
                .clone()
                .unwrap_or_else(|| crate::signing::DEFAULT_SIGNATURE_HEADER.to_owned()),
            signature_hash: crate::signing::BodyHash::parse(&r.signature_hash)
                .unwrap_or(crate::signing::BodyHash::Sha256)
                .into(),
            transformation: r.transformation.clone(),
            enabled: r.enabled,
            disabled_reason: r.disabled_reason.clone(),
            disabled_at: r.disabled_at,
            metadata: r.metadata.as_object().map(|m| m.clone().into_iter().collect()).unwrap_or_default(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}
