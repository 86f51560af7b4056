//! `/v1/sources`: inbound webhook sources, received at `POST /in/{name}`
//! (see `inbound`). Secrets are write-only: no answer ever shows one.

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
use super::patch::{clearable, required};
use super::problem::Problem;
use super::{ApiTags, AppState, validate};
use crate::db;
use crate::db::audit::Entry;
use crate::inbound::verify;

/// How a source's requests are signed.
#[derive(Enum, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
#[serde(remote = "Self", rename_all = "snake_case")]
pub enum SourceScheme {
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature` (v1 HMAC or v1a ed25519).
    StandardWebhooks,
    /// HMAC-SHA256 of the body in `signature_header` (GitHub, Shopify).
    HmacSha256,
    /// `Stripe-Signature: t=…,v1=…`.
    Stripe,
    /// Not verified: anyone who knows the URL can send.
    None,
}
body::enum_by_name!(SourceScheme);

impl From<SourceScheme> for verify::Scheme {
    fn from(s: SourceScheme) -> Self {
        match s {
            SourceScheme::StandardWebhooks => verify::Scheme::StandardWebhooks,
            SourceScheme::HmacSha256 => verify::Scheme::HmacSha256,
            SourceScheme::Stripe => verify::Scheme::Stripe,
            SourceScheme::None => verify::Scheme::None,
        }
    }
}

impl SourceScheme {
    fn from_db(s: &str) -> Self {
        match verify::Scheme::parse(s) {
            Some(verify::Scheme::StandardWebhooks) => SourceScheme::StandardWebhooks,
            Some(verify::Scheme::HmacSha256) => SourceScheme::HmacSha256,
            Some(verify::Scheme::Stripe) => SourceScheme::Stripe,
            _ => SourceScheme::None,
        }
    }
}

/// How an `hmac_sha256` signature is written: `hex` (default) or `base64`.
#[derive(Enum, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
#[serde(remote = "Self", rename_all = "snake_case")]
pub enum SignatureEncoding {
    Hex,
    Base64,
}
body::enum_by_name!(SignatureEncoding);

impl From<SignatureEncoding> for verify::Encoding {
    fn from(e: SignatureEncoding) -> Self {
        match e {
            SignatureEncoding::Hex => verify::Encoding::Hex,
            SignatureEncoding::Base64 => verify::Encoding::Base64,
        }
    }
}

/// A new source.
#[derive(Object, Deserialize, Debug)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct SourceCreate {
    /// Requests arrive at `POST /in/{name}`: 1 to 100 letters, digits, `_`
    /// and `-`, unique across tenants.
    #[oai(validator(pattern = r"^[A-Za-z0-9_-]{1,100}$"))]
    pub name: String,
    /// What verified payloads are published as.
    #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{1,200}$"))]
    pub event_type: String,
    pub scheme: SourceScheme,
    /// The shared secret (for `standard_webhooks` a `whsec_` secret, or the
    /// sender's `whpk_` public key for v1a); required unless `scheme` is
    /// `none`. Write-only.
    #[oai(validator(min_length = 1, max_length = 1000))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub secret: Option<String>,
    /// The tenant whose endpoints receive the events (default `default`; a
    /// tenant-bound token's own).
    #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{1,100}$"))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub tenant: Option<String>,
    #[oai(validator(max_length = 1000))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub description: Option<String>,
    /// `hmac_sha256`: the header with the signature (default `X-Hub-Signature-256`).
    #[oai(validator(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$"))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub signature_header: Option<String>,
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub signature_encoding: Option<SignatureEncoding>,
    /// The header with the provider's delivery id, so a retry is stored once;
    /// default: `webhook-id`, a Stripe event's `id`, `X-GitHub-Delivery` for
    /// `X-Hub-Signature-256` and `X-Shopify-Webhook-Id` for
    /// `X-Shopify-Hmac-Sha256`; otherwise none (see `warnings`).
    #[oai(validator(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$"))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub id_header: Option<String>,
    /// Signed timestamps further than this from now are refused (default 300).
    #[oai(validator(minimum(value = "1"), maximum(value = "86400")))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub timestamp_tolerance_s: Option<i32>,
    /// Where the event type is taken from instead: a header (`X-GitHub-Event`)
    /// or a JSON pointer into the payload (`/type`). A request without a
    /// usable one (absent, not a string, not an event type) is published as
    /// `event_type`.
    #[oai(validator(min_length = 1, max_length = 200))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub event_type_from: Option<String>,
    /// Put before a type taken from the request (`github.` → `github.push`).
    #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{0,100}$"))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub event_type_prefix: Option<String>,
    /// Request headers kept with the payload, at most 20 (not
    /// `Authorization` or `Cookie`): the event's payload is then
    /// `{"body": <the request's JSON>, "headers": {<name>: <value>}}`.
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub keep_headers: Option<Vec<String>>,
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub enabled: Option<bool>,
    /// Any JSON object, kept for you.
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub metadata: Option<BTreeMap<String, serde_json::Value>>,
}

/// Changes to a source: absent fields stay as they are; `null` returns
/// `signature_header` and `id_header` to their defaults, and makes
/// `event_type` the only type again (`event_type_from`).
#[derive(Object, Deserialize, Debug, Default)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct SourceUpdate {
    #[oai(validator(pattern = r"^[A-Za-z0-9_-]{1,100}$"))]
    #[serde(default)]
    pub name: MaybeUndefined<String>,
    #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{1,200}$"))]
    #[serde(default)]
    pub event_type: MaybeUndefined<String>,
    #[serde(default)]
    pub scheme: MaybeUndefined<SourceScheme>,
    #[oai(validator(min_length = 1, max_length = 1000))]
    #[serde(default)]
    pub secret: MaybeUndefined<String>,
    #[oai(validator(max_length = 1000))]
    #[serde(default)]
    pub description: MaybeUndefined<String>,
    #[oai(validator(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$"), nullable)]
    #[serde(default)]
    pub signature_header: MaybeUndefined<String>,
    #[serde(default)]
    pub signature_encoding: MaybeUndefined<SignatureEncoding>,
    #[oai(validator(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$"), nullable)]
    #[serde(default)]
    pub id_header: MaybeUndefined<String>,
    #[oai(validator(minimum(value = "1"), maximum(value = "86400")))]
    #[serde(default)]
    pub timestamp_tolerance_s: MaybeUndefined<i32>,
    #[oai(validator(min_length = 1, max_length = 200), nullable)]
    #[serde(default)]
    pub event_type_from: MaybeUndefined<String>,
    #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{0,100}$"))]
    #[serde(default)]
    pub event_type_prefix: MaybeUndefined<String>,
    #[serde(default)]
    pub keep_headers: MaybeUndefined<Vec<String>>,
    #[serde(default)]
    pub enabled: MaybeUndefined<bool>,
    #[serde(default)]
    pub metadata: MaybeUndefined<BTreeMap<String, serde_json::Value>>,
}

/// A source (never its secret) and what its receiver saw.
#[derive(Object, Debug, Clone)]
pub struct Source {
    pub id: Uuid,
    pub tenant: String,
    pub name: String,
    /// Where the provider sends: `/in/{name}` on this API.
    pub receive_path: String,
    pub description: String,
    pub scheme: SourceScheme,
    #[oai(nullable)]
    pub signature_header: Option<String>,
    pub signature_encoding: SignatureEncoding,
    #[oai(nullable)]
    pub id_header: Option<String>,
    pub timestamp_tolerance_s: i32,
    pub event_type: String,
    #[oai(nullable)]
    pub event_type_from: Option<String>,
    pub event_type_prefix: String,
    pub keep_headers: Vec<String>,
    pub enabled: bool,
    pub metadata: BTreeMap<String, serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Verified requests stored as new events (counted within about a second).
    pub accepted: i64,
    /// Verified requests whose delivery id was already stored.
    pub duplicates: i64,
    /// Requests refused for their signature or timestamp.
    pub failed_verifications: i64,
    #[oai(nullable)]
    pub last_accepted_at: Option<DateTime<Utc>>,
    #[oai(nullable)]
    pub last_failed_at: Option<DateTime<Utc>>,
    /// Why the last refused request was refused.
    #[oai(nullable)]
    pub last_failure: Option<String>,
    /// What its settings leave open: no verification, or no delivery id to
    /// recognise a provider's retry (or a replayed request) by.
    pub warnings: Vec<String>,
}

#[derive(Object, Debug)]
pub struct SourceList {
    pub data: Vec<Source>,
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

#[derive(ApiResponse)]
pub enum CreateSourceResponse {
    #[oai(status = 201)]
    Created(Json<Source>),
}

#[derive(ApiResponse)]
pub enum DeleteSourceResponse {
    /// Deleted; its receiver answers 404 within a second everywhere. Its events stay.
    #[oai(status = 204)]
    Deleted,
}

/// What a source's settings leave open.
fn warnings(settings: &db::sources::SourceSettings) -> Vec<String> {
    let Ok(verifier) = crate::inbound::cache::verifier(settings) else {
        return vec!["its secret does not suit its scheme: the receiver answers 404".to_owned()];
    };
    let mut warnings = Vec::new();
    if settings.scheme == verify::Scheme::None.as_str() {
        warnings.push("scheme `none`: anyone who knows the URL can send".to_owned());
    }
    if !verifier.dedupes() {
        warnings.push(
            "no id_header: a provider's retry, or a replay of a captured request, is stored again; \
             set id_header to the header carrying the provider's delivery id"
                .to_owned(),
        );
    }
    warnings
}

impl From<db::sources::Source> for Source {
    fn from(row: db::sources::Source) -> Self {
        let warnings = warnings(&row.settings);
        let s = row.settings;
        Source {
            id: row.id,
            receive_path: format!("/in/{}", s.name),
            tenant: s.tenant,
            name: s.name,
            description: s.description,
            scheme: SourceScheme::from_db(&s.scheme),
            signature_header: s.signature_header,
            signature_encoding: if s.signature_encoding == "base64" {
                SignatureEncoding::Base64
            } else {
                SignatureEncoding::Hex
            },
            id_header: s.id_header,
            timestamp_tolerance_s: s.timestamp_tolerance_s,
            event_type: s.event_type,
            event_type_from: s.event_type_from,
            event_type_prefix: s.event_type_prefix,
            keep_headers: s.keep_headers,
            enabled: s.enabled,
            metadata: s.metadata.as_object().cloned().unwrap_or_default().into_iter().collect(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            accepted: row.counts.accepted,
            duplicates: row.counts.duplicates,
            failed_verifications: row.counts.failed_verifications,
            last_accepted_at: row.counts.last_accepted_at,
            last_failed_at: row.counts.last_failed_at,
            last_failure: row.counts.last_failure,
            warnings,
        }
    }
}

#[derive(Default)]
pub struct SourcesApi;

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Sources")]
impl SourcesApi {
    /// Create an inbound source
    #[oai(path = "/sources", method = "post", operation_id = "createSource")]
    async fn create(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        body: Body<SourceCreate>,
    ) -> Result<CreateSourceResponse, Problem> {
        auth.0.require(Scope::Write)?;
        let c = body.0;
        if let Some(tenant) = &c.tenant {
            validate::tenant("tenant", tenant)?;
        }
        let settings = db::sources::SourceSettings {
            tenant: auth.0.tenant_for_create(c.tenant.as_deref())?,
            name: c.name,
            description: c.description.unwrap_or_default(),
            scheme: verify::Scheme::from(c.scheme).as_str().to_owned(),
            secret: c.secret,
            signature_header: c.signature_header,
            signature_encoding: verify::Encoding::from(c.signature_encoding.unwrap_or(SignatureEncoding::Hex))
                .as_str()
                .to_owned(),
            id_header: c.id_header,
            timestamp_tolerance_s: c.timestamp_tolerance_s.unwrap_or(300),
            event_type: c.event_type,
            enabled: c.enabled.unwrap_or(true),
            metadata: serde_json::Value::Object(c.metadata.unwrap_or_default().into_iter().collect()),
            event_type_from: c.event_type_from,
            event_type_prefix: c.event_type_prefix.unwrap_or_default(),
            keep_headers: c.keep_headers.unwrap_or_default(),
        };
        check(&settings)?;
        let mut client = state.pool.get().await?;
        let tx = client.transaction().await?;
        let row = db::sources::insert(&tx, &state.secret_keys, &settings).await.map_err(name_taken)?;
        audit(&tx, &auth.0, "source.create", None, Some(&row)).await?;
        tx.commit().await?;
        state.sources.forget(&row.settings.name);
        let source = Source::from(row);
        for warning in &source.warnings {
            tracing::warn!(source = %source.name, "{warning}");
        }
        Ok(CreateSourceResponse::Created(Json(source)))
    }

    /// List inbound sources
    #[oai(path = "/sources", method = "get", operation_id = "listSources")]
    async fn list(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        /// Page size, 1 to 250 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "250")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Only this tenant's sources.
        tenant: Query<Option<String>>,
    ) -> Result<Json<SourceList>, Problem> {
        let page = PageRequest::parse(limit.0, cursor.0.as_deref())?;
        let mut rows = list_sources(&auth.0, &state, page, tenant.0.as_deref()).await?;
        let next_cursor = page.finish(&mut rows, |s| s.id);
        Ok(Json(SourceList { data: rows, next_cursor }))
    }

    /// Get an inbound source
    #[oai(path = "/sources/:source_id", method = "get", operation_id = "getSource")]
    async fn get(&self, auth: Auth, state: Data<&AppState>, source_id: Path<Uuid>) -> Result<Json<Source>, Problem> {
        auth.0.require(Scope::Read)?;
        let client = state.client().await?;
        let row = visible(&auth.0, db::sources::get(&client, &state.secret_keys, source_id.0).await?)?;
        Ok(Json(row.into()))
    }

    /// Change an inbound source
    #[oai(path = "/sources/:source_id", method = "patch", operation_id = "updateSource")]
    async fn update(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        source_id: Path<Uuid>,
        body: Body<SourceUpdate>,
    ) -> Result<Json<Source>, Problem> {
        auth.0.require(Scope::Write)?;
        let mut client = state.pool.get().await?;
        let tx = client.transaction().await?;
        let before = visible(&auth.0, db::sources::get_for_update(&tx, &state.secret_keys, source_id.0).await?)?;
        let mut settings = before.settings.clone();
        apply(&mut settings, body.0)?;
        check(&settings)?;
        let after = db::sources::update(&tx, &state.secret_keys, before.id, &settings).await.map_err(name_taken)?;
        audit(&tx, &auth.0, "source.update", Some(&before), Some(&after)).await?;
        tx.commit().await?;
        state.sources.forget(&before.settings.name);
        state.sources.forget(&after.settings.name);
        Ok(Json(after.into()))
    }

    /// Delete an inbound source
    #[oai(path = "/sources/:source_id", method = "delete", operation_id = "deleteSource")]
    async fn delete(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        source_id: Path<Uuid>,
    ) -> Result<DeleteSourceResponse, Problem> {
        auth.0.require(Scope::Write)?;
        let mut client = state.pool.get().await?;
        let tx = client.transaction().await?;
        let row = visible(&auth.0, db::sources::get_for_update(&tx, &state.secret_keys, source_id.0).await?)?;
        db::sources::delete(&tx, row.id).await?;
        audit(&tx, &auth.0, "source.delete", Some(&row), None).await?;
        tx.commit().await?;
        state.sources.forget(&row.settings.name);
        Ok(DeleteSourceResponse::Deleted)
    }
}

/// A source of another tenant is a 404 to a tenant-bound token.
fn visible(principal: &Principal, row: Option<db::sources::Source>) -> Result<db::sources::Source, Problem> {
    row.filter(|s| principal.sees(&s.settings.tenant)).ok_or_else(|| Problem::not_found("source"))
}

fn apply(s: &mut db::sources::SourceSettings, u: SourceUpdate) -> Result<(), Problem> {
    if let Some(name) = required("name", u.name)? {
        s.name = name;
    }
    if let Some(event_type) = required("event_type", u.event_type)? {
        s.event_type = event_type;
    }
    if let Some(scheme) = required("scheme", u.scheme)? {
        s.scheme = verify::Scheme::from(scheme).as_str().to_owned();
    }
    if let Some(secret) = required("secret", u.secret)? {
        s.secret = Some(secret);
    }
    if let Some(description) = required("description", u.description)? {
        s.description = description;
    }
    clearable(u.signature_header, &mut s.signature_header);
    if let Some(encoding) = required("signature_encoding", u.signature_encoding)? {
        s.signature_encoding = verify::Encoding::from(encoding).as_str().to_owned();
    }
    clearable(u.id_header, &mut s.id_header);
    if let Some(tolerance) = required("timestamp_tolerance_s", u.timestamp_tolerance_s)? {
        s.timestamp_tolerance_s = tolerance;
    }
    clearable(u.event_type_from, &mut s.event_type_from);
    if let Some(prefix) = required("event_type_prefix", u.event_type_prefix)? {
        s.event_type_prefix = prefix;
    }
    if let Some(headers) = required("keep_headers", u.keep_headers)? {
        s.keep_headers = headers;
    }
    if let Some(enabled) = required("enabled", u.enabled)? {
        s.enabled = enabled;
    }
    if let Some(metadata) = required("metadata", u.metadata)? {
        s.metadata = serde_json::Value::Object(metadata.into_iter().collect());
    }
    Ok(())
}

/// The rules create and update must both leave true; each names its field.
fn check(s: &db::sources::SourceSettings) -> Result<(), Problem> {
    validate::text("name", &s.name, 1, 100)?;
    if !s.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(Problem::field("name", "may contain only letters, digits, `_` and `-`"));
    }
    validate::event_type("event_type", &s.event_type)?;
    validate::text("description", &s.description, 0, 1000)?;
    // The document's limits, which the body parser does not apply itself.
    if let Some(secret) = &s.secret {
        validate::text("secret", secret, 1, 1000)?;
    }
    for (field, header) in [("signature_header", &s.signature_header), ("id_header", &s.id_header)] {
        if let Some(header) = header {
            validate::text(field, header, 1, 100)?;
            if poem::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return Err(Problem::field(field, "is not a valid HTTP header name"));
            }
        }
    }
    validate::range("timestamp_tolerance_s", s.timestamp_tolerance_s.into(), 1, 86_400)?;
    if let Some(from) = &s.event_type_from {
        validate::text("event_type_from", from, 1, 200)?;
    }
    validate::text("event_type_prefix", &s.event_type_prefix, 0, 100)?;
    crate::inbound::cache::mapping(s).map_err(|invalid| Problem::field(invalid.field, invalid.reason))?;
    crate::inbound::cache::verifier(s).map(|_| ()).map_err(|reason| Problem::field("secret", reason))
}

/// A unique name is taken: a 409 naming the field.
fn name_taken(error: db::Error) -> Problem {
    let taken = matches!(&error, db::Error::Pg(pg) if pg.as_db_error().and_then(|d| d.constraint()) == Some("sources_name_key"));
    if taken {
        return Problem::new(
            super::problem::ProblemKind::Conflict,
            "a source with this name exists",
            Some("name".into()),
        );
    }
    error.into()
}

/// Records a change of a source in the audit log, secret left out.
async fn audit(
    tx: &impl deadpool_postgres::GenericClient,
    principal: &Principal,
    action: &str,
    before: Option<&db::sources::Source>,
    after: Option<&db::sources::Source>,
) -> Result<(), Problem> {
    let source = after.or(before).expect("a source changed");
    let entry = Entry {
        tenant: Some(&source.settings.tenant),
        action,
        object_type: "source",
        object_id: Some(source.id.to_string()),
        before: before.map(audit_json),
        after: after.map(audit_json),
    };
    Ok(db::audit::record(tx, &principal.actor(), entry).await?)
}

fn audit_json(row: &db::sources::Source) -> serde_json::Value {
    let s = &row.settings;
    serde_json::json!({
        "id": row.id, "tenant": s.tenant, "name": s.name, "description": s.description, "scheme": s.scheme,
        "signature_header": s.signature_header, "signature_encoding": s.signature_encoding,
        "id_header": s.id_header, "timestamp_tolerance_s": s.timestamp_tolerance_s,
        "event_type": s.event_type, "event_type_from": s.event_type_from,
        "event_type_prefix": s.event_type_prefix, "keep_headers": s.keep_headers,
        "enabled": s.enabled, "metadata": s.metadata,
    })
}

/// A page of sources (of `tenant`, narrowed to the caller's).
pub(crate) async fn list_sources(
    principal: &Principal,
    state: &AppState,
    page: PageRequest,
    tenant: Option<&str>,
) -> Result<Vec<Source>, Problem> {
    principal.require(Scope::Read)?;
    let client = state.client().await?;
    let tenant = principal.tenant_filter(tenant);
    let rows = db::sources::list_page(&client, &state.secret_keys, page.after, page.fetch(), tenant).await?;
    Ok(rows.into_iter().map(Source::from).collect())
}
