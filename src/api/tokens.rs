//! `/v1/tokens`: API tokens (admin only). A token is shown once, at creation.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::{Auth, Principal, Scope};
use super::body::{self, Body};
use super::page::PageRequest;
use super::problem::Problem;
use super::{ApiTags, AppState, validate};
use crate::db;
use crate::db::audit::Entry;

/// What a token may do: read < write < admin.
#[derive(Enum, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
#[serde(remote = "Self", rename_all = "snake_case")]
pub enum TokenScope {
    Read,
    Write,
    Admin,
}
body::enum_by_name!(TokenScope);

impl From<TokenScope> for Scope {
    fn from(s: TokenScope) -> Self {
        match s {
            TokenScope::Read => Scope::Read,
            TokenScope::Write => Scope::Write,
            TokenScope::Admin => Scope::Admin,
        }
    }
}

#[derive(Object, Deserialize, Debug)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    /// A name to recognise the token by.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    pub scope: TokenScope,
    /// Bind the token to one tenant.
    #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{1,100}$"))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub tenant: Option<String>,
}

/// A token as listed: never the token itself.
#[derive(Object, Debug)]
pub struct Token {
    pub id: Uuid,
    pub name: String,
    pub scope: String,
    #[oai(nullable)]
    pub tenant: Option<String>,
    /// The token's first characters.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
}

/// A new token: `token` is shown this once.
#[derive(Object, Debug)]
pub struct CreatedToken {
    #[oai(flatten)]
    pub info: Token,
    /// The bearer token. Store it now: only its hash is kept.
    pub token: String,
}

#[derive(Object, Debug)]
pub struct TokenList {
    pub data: Vec<Token>,
    /// Pass as `cursor` for the next page; null on the last.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

#[derive(ApiResponse)]
pub enum CreateTokenResponse {
    #[oai(status = 201)]
    Created(Json<CreatedToken>),
}

#[derive(ApiResponse)]
pub enum DeleteTokenResponse {
    /// Deleted; it stops working within 10 seconds everywhere.
    #[oai(status = 204)]
    Deleted,
}

impl From<db::tokens::Token> for Token {
    fn from(t: db::tokens::Token) -> Self {
        Token { id: t.id, name: t.name, scope: t.scope, tenant: t.tenant, prefix: t.prefix, created_at: t.created_at }
    }
}

#[derive(Default)]
pub struct TokensApi;

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Tokens")]
impl TokensApi {
    /// Create an API token
    #[oai(path = "/tokens", method = "post", operation_id = "createToken")]
    async fn create(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        body: Body<TokenCreate>,
    ) -> Result<CreateTokenResponse, Problem> {
        auth.0.require(Scope::Admin)?;
        let new = body.0;
        validate::text("name", &new.name, 1, 200)?;
        if let Some(tenant) = &new.tenant {
            validate::tenant("tenant", tenant)?;
        }
        if auth.0.tenant.is_some() && new.tenant != auth.0.tenant {
            return Err(Problem::field("tenant", "a tenant-bound token can only create tokens for its own tenant"));
        }
        let mut client = state.pool.get().await?;
        let tx = client.transaction().await?;
        let (token, row) = super::auth::create_token(&tx, &new.name, new.scope.into(), new.tenant.as_deref()).await?;
        let info = Token::from(row);
        let entry = Entry {
            tenant: info.tenant.as_deref(),
            action: "token.create",
            object_type: "token",
            object_id: Some(info.id.to_string()),
            before: None,
            after: Some(token_json(&info)),
        };
        db::audit::record(&tx, &auth.0.actor(), entry).await?;
        tx.commit().await?;
        Ok(CreateTokenResponse::Created(Json(CreatedToken { info, token })))
    }

    /// List API tokens
    #[oai(path = "/tokens", method = "get", operation_id = "listTokens")]
    async fn list(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        /// Page size, 1 to 250 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "250")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<TokenList>, Problem> {
        let page = PageRequest::parse(limit.0, cursor.0.as_deref())?;
        let mut rows = list_tokens(&auth.0, &state, page).await?;
        let next_cursor = page.finish(&mut rows, |t| t.id);
        Ok(Json(TokenList { data: rows, next_cursor }))
    }

    /// Delete an API token
    #[oai(path = "/tokens/:token_id", method = "delete", operation_id = "deleteToken")]
    async fn delete(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        token_id: Path<Uuid>,
    ) -> Result<DeleteTokenResponse, Problem> {
        auth.0.require(Scope::Admin)?;
        let mut client = state.pool.get().await?;
        let tx = client.transaction().await?;
        let Some(row) = db::tokens::delete(&tx, token_id.0).await? else {
            return Err(Problem::not_found("token"));
        };
        if !row.tenant.as_deref().map_or(auth.0.tenant.is_none(), |t| auth.0.sees(t)) {
            return Err(Problem::not_found("token")); // the transaction rolls back
        }
        let info = Token::from(row);
        let entry = Entry {
            tenant: info.tenant.as_deref(),
            action: "token.delete",
            object_type: "token",
            object_id: Some(info.id.to_string()),
            before: Some(token_json(&info)),
            after: None,
        };
        db::audit::record(&tx, &auth.0.actor(), entry).await?;
        tx.commit().await?;
        state.tokens.forget(info.id);
        Ok(DeleteTokenResponse::Deleted)
    }
}

/// A page of tokens: an admin's, or a tenant admin's own tenant's.
pub(crate) async fn list_tokens(
    principal: &Principal,
    state: &AppState,
    page: PageRequest,
) -> Result<Vec<Token>, Problem> {
    principal.require(Scope::Admin)?;
    let client = state.client().await?;
    // Filtered in the query, so pages are full however many other tokens there are.
    let rows = db::tokens::list_page(&client, page.after, page.fetch(), principal.tenant.as_deref()).await?;
    Ok(rows.into_iter().map(Token::from).collect())
}

fn token_json(t: &Token) -> serde_json::Value {
    serde_json::json!({
        "id": t.id, "name": t.name, "scope": t.scope, "tenant": t.tenant, "prefix": t.prefix,
    })
}
