//! Endpoint secrets at rest (see [`crate::secrets`]): which keys sealed the
//! stored ones, and sealing them again — the plaintext ones (SQL-made
//! endpoints, older installations; workers do it every few seconds) or
//! every one the current key did not seal (`hookline secrets rotate-key`).

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::Result;
use crate::secrets::{KeyRing, OpenError, SEALED_PREFIX, StoredSecret};

/// The ids of the keys that sealed the stored secrets.
pub const SECRETS_SEALING_KEY_IDS: &str = "
SELECT DISTINCT split_part(stored, ':', 2)
  FROM hookline.endpoints
 CROSS JOIN LATERAL (VALUES (secret), (previous_secret)) AS s(stored)
 WHERE stored LIKE 'aes256gcm:%'";

/// Endpoints after `$1` with a secret not sealed by the key whose prefix is
/// `$2` (`aes256gcm:<id>:%`), locked, `$3` at most.
pub const SECRETS_NOT_SEALED_BY: &str = "
SELECT id, secret, previous_secret
  FROM hookline.endpoints
 WHERE id > $1 AND (secret NOT LIKE $2 OR previous_secret NOT LIKE $2)
 ORDER BY id
 LIMIT $3
   FOR UPDATE";

/// Endpoints with a plaintext secret, `$1` at most; the partial index
/// `endpoints_unsealed` finds them without a scan, and workers sealing at
/// the same time skip each other's rows.
pub const SECRETS_PLAINTEXT: &str = "
SELECT id, secret, previous_secret
  FROM hookline.endpoints
 WHERE secret NOT LIKE 'aes256gcm:%' OR previous_secret NOT LIKE 'aes256gcm:%'
 LIMIT $1
   FOR UPDATE SKIP LOCKED";

pub const SECRETS_STORE: &str = "UPDATE hookline.endpoints SET secret = $2, previous_secret = $3 WHERE id = $1";

/// What sealing again did.
#[derive(Debug, Default)]
pub struct Resealed {
    /// Endpoints whose secrets were sealed again.
    pub endpoints: u64,
    /// Endpoints left as they were: a secret of theirs could not be opened.
    pub unopened: Vec<(Uuid, OpenError)>,
}

/// The key ids that sealed stored secrets and that `keys` does not hold:
/// a process holding those keys would fail to sign for those endpoints.
pub async fn missing_key_ids(db: &impl GenericClient, keys: &KeyRing) -> Result<Vec<String>> {
    let rows = db.query(SECRETS_SEALING_KEY_IDS, &[]).await?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).filter(|id| !keys.holds(id)).collect())
}

/// Seals up to `batch` endpoints' plaintext secrets, in one transaction.
/// Nothing to do without keys.
pub async fn seal_plaintext(client: &mut deadpool_postgres::Client, keys: &KeyRing, batch: i64) -> Result<u64> {
    if keys.is_empty() {
        return Ok(0);
    }
    let tx = client.transaction().await?;
    let rows = tx.query(SECRETS_PLAINTEXT, &[&batch]).await?;
    let done = reseal(&tx, keys, &rows).await?;
    tx.commit().await?;
    Ok(done.endpoints)
}

/// Seals with the first key every secret it did not seal, `batch` endpoints
/// per transaction, so it can run beside live traffic and be stopped and
/// run again. `keys` must not be empty.
pub async fn reseal_all(client: &mut deadpool_postgres::Client, keys: &KeyRing, batch: i64) -> Result<Resealed> {
    let sealing = keys.sealing_key_id().expect("a key to seal with");
    let pattern = format!("{SEALED_PREFIX}{sealing}:%");
    let mut after = Uuid::nil();
    let mut total = Resealed::default();
    loop {
        let tx = client.transaction().await?;
        let rows = tx.query(SECRETS_NOT_SEALED_BY, &[&after, &pattern, &batch]).await?;
        let done = reseal(&tx, keys, &rows).await?;
        tx.commit().await?;
        total.endpoints += done.endpoints;
        total.unopened.extend(done.unopened);
        match rows.last() {
            Some(last) if rows.len() as i64 == batch => after = last.get("id"),
            _ => return Ok(total),
        }
    }
}

/// Opens and seals again the secrets of `rows` (`id, secret, previous_secret`).
async fn reseal(db: &impl GenericClient, keys: &KeyRing, rows: &[Row]) -> Result<Resealed> {
    let mut done = Resealed::default();
    for row in rows {
        let id: Uuid = row.get("id");
        let secret: StoredSecret = row.get("secret");
        let previous: Option<StoredSecret> = row.get("previous_secret");
        let opened = keys.open(&secret).and_then(|s| Ok((s, previous.as_ref().map(|p| keys.open(p)).transpose()?)));
        match opened {
            Ok((secret, previous)) => {
                let previous = previous.map(|p| keys.seal(&p));
                db.execute(SECRETS_STORE, &[&id, &keys.seal(&secret), &previous]).await?;
                done.endpoints += 1;
            }
            Err(error) => done.unopened.push((id, error)),
        }
    }
    Ok(done)
}
