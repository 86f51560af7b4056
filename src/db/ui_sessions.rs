//! The dashboard's browser sessions: the key's SHA-256 and the token whose
//! rights the session has.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::Result;
use super::tokens::Token;

/// A session unused this long ends.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(8 * 3600);
/// And any session ends this long after sign-in.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 86400);
/// `last_seen_at` is written at most this often per session, not per page.
const TOUCH_EVERY_S: f64 = 60.0;

pub const SESSION_INSERT: &str = "
INSERT INTO hookline.ui_sessions (key_hash, token_id) VALUES ($1, $2)";

/// The session's token if the session is live (`$2` idle, `$3` absolute
/// seconds), and whether its `last_seen_at` is due a write (`$4` seconds).
pub const SESSION_TOKEN: &str = "
SELECT t.id, t.name, t.scope, t.tenant, t.prefix, t.created_at, s.last_seen_at < now() - make_interval(secs => $4)
  FROM hookline.ui_sessions AS s
  JOIN hookline.api_tokens AS t ON t.id = s.token_id
 WHERE s.key_hash = $1
   AND s.last_seen_at > now() - make_interval(secs => $2)
   AND s.created_at > now() - make_interval(secs => $3)";

pub const SESSION_TOUCH: &str = "
UPDATE hookline.ui_sessions SET last_seen_at = now() WHERE key_hash = $1";

pub const SESSION_DELETE: &str = "
DELETE FROM hookline.ui_sessions WHERE key_hash = $1";

pub const SESSION_DELETE_EXPIRED: &str = "
DELETE FROM hookline.ui_sessions
 WHERE last_seen_at < now() - make_interval(secs => $1) OR created_at < now() - make_interval(secs => $2)";

pub async fn insert(db: &impl GenericClient, key_hash: &[u8], token_id: Uuid) -> Result<()> {
    db.execute(&db.prepare_cached(SESSION_INSERT).await?, &[&key_hash, &token_id]).await?;
    Ok(())
}

/// The token of a live session, its `last_seen_at` renewed when due.
pub async fn token(db: &impl GenericClient, key_hash: &[u8]) -> Result<Option<Token>> {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
        [&key_hash, &IDLE_TIMEOUT.as_secs_f64(), &MAX_AGE.as_secs_f64(), &TOUCH_EVERY_S];
    let Some(row) = db.query_opt(&db.prepare_cached(SESSION_TOKEN).await?, &params).await? else {
        return Ok(None);
    };
    if row.get::<_, bool>(6) {
        db.execute(&db.prepare_cached(SESSION_TOUCH).await?, &[&key_hash]).await?;
    }
    Ok(Some(Token::from(row)))
}

pub async fn delete(db: &impl GenericClient, key_hash: &[u8]) -> Result<()> {
    db.execute(&db.prepare_cached(SESSION_DELETE).await?, &[&key_hash]).await?;
    Ok(())
}

pub async fn delete_expired(db: &impl GenericClient) -> Result<i64> {
    let deleted = db.execute(SESSION_DELETE_EXPIRED, &[&IDLE_TIMEOUT.as_secs_f64(), &MAX_AGE.as_secs_f64()]).await?;
    Ok(deleted as i64)
}
