//! API tokens: only their SHA-256 is stored.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::Result;

pub const TOKEN_INSERT: &str = "
INSERT INTO hookline.api_tokens (name, scope, tenant, token_hash, prefix)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, name, scope, tenant, prefix, created_at";

pub const TOKEN_BY_HASH: &str = "
SELECT id, name, scope, tenant, prefix, created_at FROM hookline.api_tokens WHERE token_hash = $1";

/// A page of tokens, newest first, after cursor `$1` (an id, or NULL),
/// optionally only those bound to tenant `$3`.
pub const TOKEN_LIST_PAGE: &str = "
SELECT id, name, scope, tenant, prefix, created_at FROM hookline.api_tokens
 WHERE ($1::uuid IS NULL OR id < $1) AND ($3::text IS NULL OR tenant = $3)
 ORDER BY id DESC LIMIT $2";

pub const TOKEN_DELETE: &str = "
DELETE FROM hookline.api_tokens WHERE id = $1
RETURNING id, name, scope, tenant, prefix, created_at";

#[derive(Debug, Clone)]
pub struct Token {
    pub id: Uuid,
    pub name: String,
    pub scope: String,
    pub tenant: Option<String>,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
}

impl From<Row> for Token {
    fn from(r: Row) -> Self {
        Token {
            id: r.get(0),
            name: r.get(1),
            scope: r.get(2),
            tenant: r.get(3),
            prefix: r.get(4),
            created_at: r.get(5),
        }
    }
}

pub struct NewToken<'a> {
    pub name: &'a str,
    pub scope: &'a str,
    pub tenant: Option<&'a str>,
    pub hash: &'a [u8],
    pub prefix: &'a str,
}

pub async fn insert(db: &impl GenericClient, new: &NewToken<'_>) -> Result<Token> {
    Ok(db
        .query_one(
            &db.prepare_cached(TOKEN_INSERT).await?,
            &[&new.name, &new.scope, &new.tenant, &new.hash, &new.prefix],
        )
        .await?
        .into())
}

pub async fn by_hash(db: &impl GenericClient, hash: &[u8]) -> Result<Option<Token>> {
    Ok(db.query_opt(&db.prepare_cached(TOKEN_BY_HASH).await?, &[&hash]).await?.map(Token::from))
}

pub async fn list_page(
    db: &impl GenericClient,
    after: Option<Uuid>,
    limit: i64,
    tenant: Option<&str>,
) -> Result<Vec<Token>> {
    Ok(db.query(TOKEN_LIST_PAGE, &[&after, &limit, &tenant]).await?.into_iter().map(Token::from).collect())
}

pub async fn delete(db: &impl GenericClient, id: Uuid) -> Result<Option<Token>> {
    Ok(db.query_opt(&db.prepare_cached(TOKEN_DELETE).await?, &[&id]).await?.map(Token::from))
}
