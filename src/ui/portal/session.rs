//! A portal session: exchanged once for a link's key, sent back by the
//! portal's script as `X-Portal-Session`, and acting as a principal bound
//! to the link's tenant with only the link's capabilities.

use poem::http::StatusCode;
use poem::web::{Data, Json};
use poem::{FromRequest, Request, RequestBody, handler};
use serde::Deserialize;
use uuid::Uuid;

use crate::api::AppState;
use crate::api::auth::{Principal, Scope, hash_token, random_key};
use crate::api::portal::PortalCapability;
use crate::api::problem::Problem;
use crate::db;
use crate::db::portal::Link;
use crate::ui::page::UiError;

pub const SESSION_HEADER: &str = "x-portal-session";

/// Who is looking at the portal: one tenant's customer.
pub struct PortalViewer {
    pub link: Link,
    /// The link's tenant, with `write` scope when it may change anything:
    /// what the API's operations check.
    pub principal: Principal,
}

impl PortalViewer {
    pub fn can(&self, capability: PortalCapability) -> bool {
        self.link.capabilities.iter().any(|c| c == capability.as_str())
    }

    pub fn require(&self, capability: PortalCapability) -> Result<(), Problem> {
        if self.can(capability) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!("this portal link does not allow `{}`", capability.as_str())))
        }
    }

    /// Whether the link lets this endpoint be seen (others are "no such endpoint").
    pub fn sees_endpoint(&self, id: Uuid) -> bool {
        self.link.endpoint_ids.as_ref().is_none_or(|ids| ids.contains(&id))
    }

    pub fn endpoint(&self, id: Uuid) -> Result<(), Problem> {
        if self.sees_endpoint(id) { Ok(()) } else { Err(Problem::not_found("endpoint")) }
    }

    /// Both: the capability, on an endpoint the link shows.
    pub fn allows(&self, capability: PortalCapability, endpoint: Uuid) -> Result<(), Problem> {
        self.require(capability)?;
        self.endpoint(endpoint)
    }

    /// Whether new endpoints may be added: only when not limited to listed ones.
    pub fn may_add_endpoints(&self) -> bool {
        self.can(PortalCapability::ManageEndpoints) && self.link.endpoint_ids.is_none()
    }
}

impl<'a> FromRequest<'a> for PortalViewer {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let state = req.data::<AppState>().expect("the portal is served inside the API");
        let ended = || poem::Error::from_string("this portal session has ended", StatusCode::UNAUTHORIZED);
        let key = req.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).ok_or_else(ended)?;
        let client = state.client().await.map_err(UiError::from)?;
        let link =
            db::portal::session_link(&client, &hash_token(key)).await.map_err(UiError::from)?.ok_or_else(ended)?;
        let scope = if link.capabilities.is_empty() { Scope::Read } else { Scope::Write };
        let principal = Principal {
            // Who made the link answers for it; the audit log names the session's link.
            token_id: link.created_by,
            name: format!("portal link {}", link.id),
            scope,
            tenant: Some(link.tenant.clone()),
        };
        Ok(PortalViewer { link, principal })
    }
}

#[derive(Deserialize)]
pub struct Exchange {
    key: String,
}

#[derive(serde::Serialize)]
pub struct Exchanged {
    session: String,
    expires_at: chrono::DateTime<chrono::Utc>,
}

/// Uses a link up: its key for a session key (401 when the link is
/// unknown, used or expired).
#[handler]
pub async fn exchange(Data(state): Data<&AppState>, Json(input): Json<Exchange>) -> poem::Result<Json<Exchanged>> {
    let session = random_key();
    let mut client = state.client().await.map_err(UiError::from)?;
    let tx = client.transaction().await.map_err(UiError::from)?;
    let link =
        db::portal::exchange(&tx, &hash_token(&input.key), &hash_token(&session)).await.map_err(UiError::from)?;
    let Some(link) = link else {
        return Err(poem::Error::from_string("this portal link does not work any more", StatusCode::UNAUTHORIZED));
    };
    tx.commit().await.map_err(UiError::from)?;
    Ok(Json(Exchanged { session, expires_at: link.expires_at }))
}
