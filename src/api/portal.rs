//! `POST /v1/portal/sessions`: a one-time link to the tenant portal
//! (`/portal`) for one tenant, which an application hands its customer (or
//! puts in an iframe) so they manage their own endpoints.
//!
//! The link's key travels in the URL fragment, which browsers never send to
//! a server or put in a `Referer`; the portal's page exchanges it once for
//! a session that lasts until the link expires.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::{Auth, Principal, Scope, hash_token, random_key};
use super::body::Body;
use super::problem::Problem;
use super::{ApiTags, AppState, validate};
use crate::db;
use crate::db::audit::Entry;

/// Where the portal is served.
pub const PORTAL_PATH: &str = "/portal";

/// A link lives an hour unless asked otherwise, a day at most.
const DEFAULT_LIFETIME_S: i64 = 3600;
const MAX_LIFETIME_S: i64 = 86_400;

/// What a portal session may do besides looking.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum PortalCapability {
    /// Add endpoints, change their event types, send test events.
    ManageEndpoints,
    /// See and rotate endpoints' signing secrets.
    RevealSecrets,
    /// Replay failed deliveries.
    Replay,
}

impl PortalCapability {
    pub fn as_str(self) -> &'static str {
        match self {
            PortalCapability::ManageEndpoints => "manage_endpoints",
            PortalCapability::RevealSecrets => "reveal_secrets",
            PortalCapability::Replay => "replay",
        }
    }

    pub fn parse(s: &str) -> Option<PortalCapability> {
        [PortalCapability::ManageEndpoints, PortalCapability::RevealSecrets, PortalCapability::Replay]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// How the portal presents itself: the customer sees the product it is part of.
#[derive(Object, Deserialize, Debug, Default, Clone)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct PortalBranding {
    /// Shown as the portal's title (default "Webhooks").
    #[oai(validator(min_length = 1, max_length = 100))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub product_name: Option<String>,
    /// `#rrggbb`.
    #[oai(validator(pattern = r"^#[0-9a-fA-F]{6}$"))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub accent_color: Option<String>,
    /// An https URL of an image.
    #[oai(validator(max_length = 2000, pattern = r"^https://"))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub logo_url: Option<String>,
}

/// A portal link to make.
#[derive(Object, Deserialize, Debug, Default)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct PortalSessionCreate {
    /// Whose portal (a tenant-bound token's own; default `default`).
    #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{1,100}$"))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub tenant: Option<String>,
    /// Seconds until the link, and the session made with it, stop working
    /// (1 to 86,400; default 3,600).
    #[oai(validator(minimum(value = "1"), maximum(value = "86400")))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub expires_in_s: Option<i64>,
    /// What the customer may do besides looking (default: only look).
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub capabilities: Option<Vec<PortalCapability>>,
    /// Only these endpoints of the tenant (default: all, and new ones may be
    /// added with `manage_endpoints`).
    #[oai(validator(max_items = 100))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub endpoint_ids: Option<Vec<Uuid>>,
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub branding: Option<PortalBranding>,
}

/// A one-time portal link.
#[derive(Object, Debug)]
pub struct PortalSession {
    pub id: Uuid,
    /// Open this once (or make it an iframe's `src`): its key is after `#`.
    /// Shown only here.
    pub url: String,
    pub tenant: String,
    pub capabilities: Vec<PortalCapability>,
    #[oai(nullable)]
    pub endpoint_ids: Option<Vec<Uuid>>,
    pub expires_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
pub enum CreatePortalSessionResponse {
    /// The link, to use once before `expires_at`.
    #[oai(status = 201)]
    Created(Json<PortalSession>),
}

#[derive(ApiResponse)]
pub enum DeletePortalSessionResponse {
    /// The link no longer opens, and the session made with it has ended.
    #[oai(status = 204)]
    Deleted,
}

#[derive(Default)]
pub struct PortalApi;

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Portal")]
impl PortalApi {
    /// Make a tenant portal link
    ///
    /// Admin tokens may make one for any tenant; a tenant-bound `write`
    /// token for its own tenant.
    #[oai(path = "/portal/sessions", method = "post", operation_id = "createPortalSession")]
    async fn create(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        body: Body<PortalSessionCreate>,
    ) -> Result<CreatePortalSessionResponse, Problem> {
        create_link(&auth.0, &state, body.0).await.map(|s| CreatePortalSessionResponse::Created(Json(s)))
    }

    /// End a portal link and its session
    ///
    /// Links also end when they expire, and with the token that made them.
    #[oai(path = "/portal/sessions/:session_id", method = "delete", operation_id = "deletePortalSession")]
    async fn delete(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        session_id: Path<Uuid>,
    ) -> Result<DeletePortalSessionResponse, Problem> {
        auth.0.require(if auth.0.tenant.is_some() { Scope::Write } else { Scope::Admin })?;
        let mut client = state.client().await?;
        let tx = client.transaction().await?;
        if !db::portal::delete_link(&tx, session_id.0, auth.0.tenant.as_deref()).await? {
            return Err(Problem::not_found("portal session"));
        }
        let entry = Entry {
            tenant: auth.0.tenant.as_deref(),
            action: "portal_link.delete",
            object_type: "portal_link",
            object_id: Some(session_id.0.to_string()),
            before: None,
            after: None,
        };
        db::audit::record(&tx, &auth.0.actor(), entry).await?;
        tx.commit().await?;
        Ok(DeletePortalSessionResponse::Deleted)
    }
}

async fn create_link(
    principal: &Principal,
    state: &AppState,
    c: PortalSessionCreate,
) -> Result<PortalSession, Problem> {
    principal.require(if principal.tenant.is_some() { Scope::Write } else { Scope::Admin })?;
    if let Some(tenant) = &c.tenant {
        validate::tenant("tenant", tenant)?;
    }
    let tenant = principal.tenant_for_create(c.tenant.as_deref())?;
    let lifetime_s = c.expires_in_s.unwrap_or(DEFAULT_LIFETIME_S);
    validate::range("expires_in_s", lifetime_s, 1, MAX_LIFETIME_S)?;
    let branding = c.branding.unwrap_or_default();
    check_branding(&branding)?;
    let mut capabilities = c.capabilities.unwrap_or_default();
    capabilities.sort_by_key(|c| c.as_str());
    capabilities.dedup();
    let names: Vec<String> = capabilities.iter().map(|c| c.as_str().to_owned()).collect();

    let mut client = state.client().await?;
    let tx = client.transaction().await?;
    if let Some(ids) = &c.endpoint_ids {
        for (i, id) in ids.iter().enumerate() {
            let endpoint = db::endpoints::get(&tx, *id).await?;
            if endpoint.is_none_or(|e| e.tenant != tenant) {
                return Err(Problem::field(format!("endpoint_ids[{i}]"), "no such endpoint in this tenant"));
            }
        }
    }
    let key = random_key();
    let branding_json = serde_json::json!({
        "product_name": branding.product_name, "accent_color": branding.accent_color, "logo_url": branding.logo_url,
    });
    let new = db::portal::NewLink {
        key_hash: &hash_token(&key),
        tenant: &tenant,
        capabilities: &names,
        endpoint_ids: c.endpoint_ids.as_deref(),
        branding: &branding_json,
        created_by: principal.token_id,
        lifetime_s: lifetime_s as f64,
    };
    let link = db::portal::insert_link(&tx, &new).await?;
    let entry = Entry {
        tenant: Some(&tenant),
        action: "portal_link.create",
        object_type: "portal_link",
        object_id: Some(link.id.to_string()),
        before: None,
        after: Some(serde_json::json!({
            "capabilities": names, "endpoint_ids": link.endpoint_ids, "expires_at": link.expires_at,
        })),
    };
    db::audit::record(&tx, &principal.actor(), entry).await?;
    tx.commit().await?;
    Ok(PortalSession {
        id: link.id,
        url: format!("{}{PORTAL_PATH}#key={key}", state.public_url),
        tenant,
        capabilities,
        endpoint_ids: link.endpoint_ids,
        expires_at: link.expires_at,
    })
}

fn check_branding(b: &PortalBranding) -> Result<(), Problem> {
    if let Some(name) = &b.product_name {
        validate::text("branding.product_name", name, 1, 100)?;
    }
    if let Some(colour) = &b.accent_color {
        let hex = colour.strip_prefix('#').filter(|h| h.len() == 6 && h.chars().all(|c| c.is_ascii_hexdigit()));
        if hex.is_none() {
            return Err(Problem::field("branding.accent_color", "a colour as #rrggbb"));
        }
    }
    if let Some(logo) = &b.logo_url {
        let ok = logo.len() <= 2000 && url::Url::parse(logo).is_ok_and(|u| u.scheme() == "https" && u.host().is_some());
        if !ok {
            return Err(Problem::field("branding.logo_url", "an https URL of an image"));
        }
    }
    Ok(())
}
