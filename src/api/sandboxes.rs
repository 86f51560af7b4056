//! `/v1/sandboxes` and their capture URLs, `/sandbox/{token}`: a receiver
//! served by hookline itself, with an endpoint delivering to it, so a
//! developer can see what hookline sends — headers, body, whether the
//! signature verifies — without a receiver of their own.
//!
//! The endpoint is an ordinary one (`endpoint_id`): change its event types,
//! transformation or signature like any other. Workers reach the capture
//! URL through `HOOKLINE_PUBLIC_URL`, exempt from the private-address check
//! because it leads only here (`NetworkPolicy::is_own_sandbox`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use poem::http::HeaderMap;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::{Auth, Principal, Scope};
use super::body::{Body, RawBody};
use super::endpoints::{EndpointCreate, create_in};
use super::page::PageRequest;
use super::problem::Problem;
use super::{ApiTags, AppState, SANDBOX_PATH};
use crate::db;
use crate::db::audit::Entry;
use crate::inbound::verify;
use crate::signing::{PrivateKey, Signing};

/// A new sandbox.
#[derive(Object, Deserialize, Debug, Default)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct SandboxCreate {
    /// Whose events it receives (default `default`; a tenant-bound token's own).
    #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{1,100}$"))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub tenant: Option<String>,
    /// Event types to receive, as for an endpoint; empty = all.
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub event_types: Option<Vec<String>>,
}

#[derive(Object, Debug)]
pub struct Sandbox {
    pub id: Uuid,
    pub tenant: String,
    /// Where hookline captures requests: its endpoint delivers here, and
    /// anything else may send here too.
    pub url: String,
    /// The endpoint that delivers the tenant's events to `url` (`null`
    /// once it was deleted: the URL still records what else is sent).
    #[oai(nullable)]
    pub endpoint_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    /// It answers 404 after this, and is deleted with its endpoint.
    pub expires_at: DateTime<Utc>,
}

#[derive(Object, Debug)]
pub struct SandboxList {
    pub data: Vec<Sandbox>,
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

/// A request the sandbox received.
#[derive(Object, Debug)]
pub struct SandboxRequest {
    pub id: Uuid,
    pub received_at: DateTime<Utc>,
    pub method: String,
    /// Header names (lower case) and values.
    pub headers: serde_json::Value,
    /// The body as text (bytes that are not UTF-8 replaced).
    pub body: String,
    /// Whether the signature verifies with the endpoint's current secret.
    pub signature_valid: bool,
    /// Why not.
    #[oai(nullable)]
    pub signature_error: Option<String>,
}

#[derive(Object, Debug)]
pub struct SandboxRequestList {
    pub data: Vec<SandboxRequest>,
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

#[derive(ApiResponse)]
pub enum CreateSandboxResponse {
    #[oai(status = 201)]
    Created(Json<Sandbox>),
}

#[derive(ApiResponse)]
pub enum DeleteSandboxResponse {
    /// Deleted, with its endpoint and requests.
    #[oai(status = 204)]
    Deleted,
}

#[derive(ApiResponse)]
pub enum CaptureResponse {
    /// Recorded.
    #[oai(status = 204)]
    Captured,
}

#[derive(Default)]
pub struct SandboxesApi;

#[OpenApi(tag = "ApiTags::Sandboxes")]
impl SandboxesApi {
    /// Create a sandbox
    ///
    /// A capture URL and an endpoint delivering the tenant's events to it;
    /// both live 24 hours.
    #[oai(path = "/v1/sandboxes", method = "post", operation_id = "createSandbox")]
    async fn create(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        body: Body<SandboxCreate>,
    ) -> Result<CreateSandboxResponse, Problem> {
        auth.0.require(Scope::Write)?;
        let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>());
        let url = format!("{}{SANDBOX_PATH}{token}", state.public_url);
        // The endpoint is made by the rules of POST /v1/endpoints, from the
        // body that request would have.
        let mut endpoint = serde_json::json!({"url": url, "description": "sandbox"});
        if let Some(tenant) = body.0.tenant {
            endpoint["tenant"] = tenant.into();
        }
        if let Some(event_types) = body.0.event_types {
            endpoint["event_types"] = event_types.into();
        }
        let endpoint: EndpointCreate = serde_json::from_value(endpoint).expect("an endpoint's fields");
        let mut client = state.client().await?;
        let tx = client.transaction().await?;
        let (row, _) = create_in(&tx, &auth.0, &state, endpoint).await?;
        let sandbox = db::sandboxes::insert(&tx, &row.tenant, &token, row.id).await?;
        audit(&tx, &auth.0, "sandbox.create", &sandbox).await?;
        tx.commit().await?;
        Ok(CreateSandboxResponse::Created(Json(shown(&state, sandbox))))
    }

    /// List sandboxes
    #[oai(path = "/v1/sandboxes", method = "get", operation_id = "listSandboxes")]
    async fn list(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        /// Page size, 1 to 250 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "250")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Only this tenant's sandboxes.
        tenant: Query<Option<String>>,
    ) -> Result<Json<SandboxList>, Problem> {
        auth.0.require(Scope::Read)?;
        let page = PageRequest::parse(limit.0, cursor.0.as_deref())?;
        let client = state.client().await?;
        let tenant = auth.0.tenant_filter(tenant.0.as_deref());
        let mut rows = db::sandboxes::list_page(&client, page.after, page.fetch(), tenant).await?;
        let next_cursor = page.finish(&mut rows, |s| s.id);
        Ok(Json(SandboxList { data: rows.into_iter().map(|s| shown(&state, s)).collect(), next_cursor }))
    }

    /// Get a sandbox
    #[oai(path = "/v1/sandboxes/:sandbox_id", method = "get", operation_id = "getSandbox")]
    async fn get(&self, auth: Auth, state: Data<&AppState>, sandbox_id: Path<Uuid>) -> Result<Json<Sandbox>, Problem> {
        auth.0.require(Scope::Read)?;
        let client = state.client().await?;
        let sandbox = visible(&auth.0, db::sandboxes::get(&client, sandbox_id.0).await?)?;
        Ok(Json(shown(&state, sandbox)))
    }

    /// List the requests a sandbox received, newest first (the last 100)
    #[oai(path = "/v1/sandboxes/:sandbox_id/requests", method = "get", operation_id = "listSandboxRequests")]
    async fn requests(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        sandbox_id: Path<Uuid>,
        /// Page size, 1 to 250 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "250")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<SandboxRequestList>, Problem> {
        auth.0.require(Scope::Read)?;
        let page = PageRequest::parse(limit.0, cursor.0.as_deref())?;
        let client = state.client().await?;
        let sandbox = visible(&auth.0, db::sandboxes::get(&client, sandbox_id.0).await?)?;
        let mut rows = db::sandboxes::requests_page(&client, sandbox.id, page.after, page.fetch()).await?;
        let next_cursor = page.finish(&mut rows, |r| r.id);
        let data = rows
            .into_iter()
            .map(|r| SandboxRequest {
                id: r.id,
                received_at: r.received_at,
                method: r.method,
                headers: r.headers,
                body: r.body,
                signature_valid: r.signature_valid,
                signature_error: r.signature_error,
            })
            .collect();
        Ok(Json(SandboxRequestList { data, next_cursor }))
    }

    /// Delete a sandbox, with its endpoint and requests
    #[oai(path = "/v1/sandboxes/:sandbox_id", method = "delete", operation_id = "deleteSandbox")]
    async fn delete(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        sandbox_id: Path<Uuid>,
    ) -> Result<DeleteSandboxResponse, Problem> {
        auth.0.require(Scope::Write)?;
        let mut client = state.client().await?;
        let tx = client.transaction().await?;
        let sandbox = visible(&auth.0, db::sandboxes::get(&tx, sandbox_id.0).await?)?;
        db::sandboxes::delete(&tx, &sandbox).await?;
        audit(&tx, &auth.0, "sandbox.delete", &sandbox).await?;
        tx.commit().await?;
        Ok(DeleteSandboxResponse::Deleted)
    }

    /// Capture a POST to a sandbox
    ///
    /// The capture URL of `/v1/sandboxes`: records the request, authenticated
    /// by nothing but the unguessable token. An unknown or expired one is 404.
    #[oai(path = "/sandbox/:token", method = "post", operation_id = "captureSandboxPost")]
    async fn capture_post(
        &self,
        state: Data<&AppState>,
        token: Path<String>,
        headers: &HeaderMap,
        body: RawBody,
    ) -> Result<CaptureResponse, Problem> {
        capture(&state, "POST", &token.0, headers, &body.0).await
    }

    /// Capture a PUT to a sandbox
    #[oai(path = "/sandbox/:token", method = "put", operation_id = "captureSandboxPut")]
    async fn capture_put(
        &self,
        state: Data<&AppState>,
        token: Path<String>,
        headers: &HeaderMap,
        body: RawBody,
    ) -> Result<CaptureResponse, Problem> {
        capture(&state, "PUT", &token.0, headers, &body.0).await
    }

    /// Capture a PATCH to a sandbox
    #[oai(path = "/sandbox/:token", method = "patch", operation_id = "captureSandboxPatch")]
    async fn capture_patch(
        &self,
        state: Data<&AppState>,
        token: Path<String>,
        headers: &HeaderMap,
        body: RawBody,
    ) -> Result<CaptureResponse, Problem> {
        capture(&state, "PATCH", &token.0, headers, &body.0).await
    }
}

async fn capture(
    state: &AppState,
    method: &str,
    token: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<CaptureResponse, Problem> {
    let client = state.client().await?;
    let sandbox = db::sandboxes::by_token(&client, token).await?.ok_or_else(|| Problem::not_found("sandbox"))?;
    let endpoint = match sandbox.endpoint_id {
        Some(id) => db::endpoints::get(&client, id).await?,
        None => None,
    };
    let signature_error = match endpoint {
        Some(endpoint) => signature_error(state, &endpoint, headers, body)?,
        None => Some("no signature to check: the sandbox's endpoint was deleted".to_owned()),
    };
    let header_json: serde_json::Map<String, serde_json::Value> = headers
        .keys()
        .map(|name| {
            let values: Vec<&str> = headers.get_all(name).iter().map(|v| v.to_str().unwrap_or("(not text)")).collect();
            (name.as_str().to_owned(), serde_json::Value::String(values.join(", ")))
        })
        .collect();
    let request = db::sandboxes::NewRequest {
        method,
        headers: &serde_json::Value::Object(header_json),
        body: &String::from_utf8_lossy(body),
        signature_valid: signature_error.is_none(),
        signature_error: signature_error.as_deref(),
    };
    db::sandboxes::capture(&client, sandbox.id, &request).await?;
    Ok(CaptureResponse::Captured)
}

/// What is wrong with the request's signature for the sandbox's endpoint,
/// checked as a Standard Webhooks receiver would.
fn signature_error(
    state: &AppState,
    endpoint: &db::endpoints::Endpoint,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<String>, Problem> {
    let secret = state.secret_keys.open(&endpoint.secret)?;
    let secret = match Signing::from_columns(
        Some(&endpoint.signature),
        endpoint.signature_header.as_deref(),
        Some(&endpoint.signature_hash),
    ) {
        Signing::V1 => secret,
        Signing::V1a => match PrivateKey::parse(&secret) {
            Ok(key) => key.public_key(),
            Err(e) => return Ok(Some(format!("the endpoint's key cannot sign: {e}"))),
        },
        Signing::HmacHeader { .. } => {
            return Ok(Some("the sandbox checks Standard Webhooks signatures (v1, v1a) only".to_owned()));
        }
    };
    let settings = verify::Settings {
        scheme: verify::Scheme::StandardWebhooks,
        secret: Some(&secret),
        signature_header: None,
        encoding: verify::Encoding::Base64,
        tolerance_s: 300,
        id_header: None,
    };
    let verifier = match verify::Verifier::new(settings) {
        Ok(verifier) => verifier,
        Err(reason) => return Ok(Some(reason)),
    };
    Ok(verifier.verify(headers, body, Utc::now().timestamp()).err().map(|rejection| rejection.to_string()))
}

fn shown(state: &AppState, s: db::sandboxes::Sandbox) -> Sandbox {
    Sandbox {
        id: s.id,
        url: format!("{}{SANDBOX_PATH}{}", state.public_url, s.token),
        tenant: s.tenant,
        endpoint_id: s.endpoint_id,
        created_at: s.created_at,
        expires_at: s.expires_at,
    }
}

/// Another tenant's sandbox, or an expired one, is a 404.
fn visible(principal: &Principal, row: Option<db::sandboxes::Sandbox>) -> Result<db::sandboxes::Sandbox, Problem> {
    row.filter(|s| principal.sees(&s.tenant)).ok_or_else(|| Problem::not_found("sandbox"))
}

async fn audit(
    tx: &impl deadpool_postgres::GenericClient,
    principal: &Principal,
    action: &str,
    sandbox: &db::sandboxes::Sandbox,
) -> Result<(), Problem> {
    let state = serde_json::json!({
        "id": sandbox.id, "tenant": sandbox.tenant, "endpoint_id": sandbox.endpoint_id,
        "expires_at": sandbox.expires_at,
    });
    let deleted = action.ends_with(".delete");
    let entry = Entry {
        tenant: Some(&sandbox.tenant),
        action,
        object_type: "sandbox",
        object_id: Some(sandbox.id.to_string()),
        before: deleted.then(|| state.clone()),
        after: (!deleted).then_some(state),
    };
    Ok(db::audit::record(tx, &principal.actor(), entry).await?)
}
