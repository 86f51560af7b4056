//! `/v1/audit-log`: every mutation made through the API (admin only).

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use uuid::Uuid;

use super::auth::{Auth, Principal, Scope};
use super::page::PageRequest;
use super::problem::Problem;
use super::{ApiTags, AppState};
use crate::db;

/// One mutation: who, what, when, and the object before and after (without secrets).
#[derive(Object, Debug)]
pub struct AuditEntry {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    #[oai(nullable)]
    pub token_id: Option<Uuid>,
    pub token_name: String,
    #[oai(nullable)]
    pub tenant: Option<String>,
    /// e.g. `endpoint.create`, `endpoint.rotate_secret`, `delivery.retry`.
    pub action: String,
    pub object_type: String,
    #[oai(nullable)]
    pub object_id: Option<String>,
    #[oai(nullable)]
    pub before: Option<serde_json::Value>,
    #[oai(nullable)]
    pub after: Option<serde_json::Value>,
}

#[derive(Object, Debug)]
pub struct AuditList {
    pub data: Vec<AuditEntry>,
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

#[derive(Default)]
pub struct AuditApi;

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Audit")]
impl AuditApi {
    /// List the audit log, newest first
    #[oai(path = "/audit-log", method = "get", operation_id = "listAuditLog")]
    async fn list(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        /// Page size, 1 to 250 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "250")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<AuditList>, Problem> {
        let page = PageRequest::parse(limit.0, cursor.0.as_deref())?;
        let mut data = list_audit(&auth.0, &state, page).await?;
        let next_cursor = page.finish(&mut data, |e| e.id);
        Ok(Json(AuditList { data, next_cursor }))
    }
}

/// A page of the log: an admin's, or a tenant admin's own tenant's.
pub(crate) async fn list_audit(
    principal: &Principal,
    state: &AppState,
    page: PageRequest,
) -> Result<Vec<AuditEntry>, Problem> {
    principal.require(Scope::Admin)?;
    let client = state.client().await?;
    let rows = db::audit::list_page(&client, page.after, page.fetch(), principal.tenant.as_deref()).await?;
    Ok(rows
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            at: r.at,
            token_id: r.token_id,
            token_name: r.token_name,
            tenant: r.tenant,
            action: r.action,
            object_type: r.object_type,
            object_id: r.object_id,
            before: r.before,
            after: r.after,
        })
        .collect())
}
