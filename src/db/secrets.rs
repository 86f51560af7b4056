//! Secrets at rest (see [`crate::secrets`]) — endpoints' signing secrets,
//! the credentials in endpoints' URLs, and inbound sources' secrets: which keys sealed the stored ones, and
//! sealing them again — the plaintext ones (SQL-made endpoints, older
//! installations; workers do it every few seconds) or every one the current
//! key did not seal (`hookline secrets rotate-key`).

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::Result;
use crate::secrets::{KeyRing, OpenError, SEALED_PREFIX, StoredSecret};

/// The ids of the keys that sealed the stored secrets.
pub const SECRETS_SEALING_KEY_IDS: &str = "
SELECT DISTINCT split_part(stored, ':', 2)
  FROM (SELECT secret FROM hookline.endpoints
        UNION ALL SELECT previous_secret FROM hookline.endpoints
        UNION ALL SELECT secret FROM hookline.sources
        UNION ALL SELECT 'aes256gcm:'
                         || (regexp_match(url, '^[^:/?#]+://[^/?#@]*aes256gcm%3A([0-9a-f]{8})%3A[^/?#@]*@'))[1] || ':'
                    FROM hookline.endpoints WHERE url LIKE '%aes256gcm\\%3A%') AS s(stored)
 WHERE stored LIKE 'aes256gcm:%'";

/// Endpoints whose URL carries a credential not sealed yet (written by SQL,
/// or before credentials were sealed), `$1` at most; the partial index
/// `endpoints_url_unsealed` finds them without a scan.
const URL_PLAINTEXT: &str = "
SELECT id, url FROM hookline.endpoints
 WHERE url ~ '^[^:/?#]+://[^/?#@]+@' AND url !~ '^[^:/?#]+://[^/?#@]*aes256gcm%3A'
 LIMIT $1
   FOR UPDATE SKIP LOCKED";

/// Endpoints after `$1` with a URL credential that does not match `$2` (a
/// regular expression naming the sealing key), `$3` at most.
const URL_NOT_SEALED_BY: &str = "
SELECT id, url FROM hookline.endpoints
 WHERE id > $1 AND url ~ '^[^:/?#]+://[^/?#@]+@' AND url !~ $2
 ORDER BY id
 LIMIT $3
   FOR UPDATE";

const URL_STORE: &str = "UPDATE hookline.endpoints SET url = $2 WHERE id = $1";

/// A table that holds secrets, and its statements: rows after `$1` with a
/// secret not sealed by the key whose prefix is `$2` (`aes256gcm:<id>:%`),
/// locked, `$3` at most; rows with a plaintext secret, `$1` at most (the
/// workers sealing at the same time skip each other's rows); and the
/// write-back of `id` `$1`'s secrets.
struct Holder {
    not_sealed_by: &'static str,
    plaintext: &'static str,
    store: &'static str,
}

/// Endpoints: the signing secret, and the rotated-out one. The partial index
/// `endpoints_unsealed` finds the plaintext ones without a scan.
const ENDPOINTS: Holder = Holder {
    not_sealed_by: "
        SELECT id, secret, previous_secret
          FROM hookline.endpoints
         WHERE id > $1 AND (secret NOT LIKE $2 OR previous_secret NOT LIKE $2)
         ORDER BY id
         LIMIT $3
           FOR UPDATE",
    plaintext: "
        SELECT id, secret, previous_secret
          FROM hookline.endpoints
         WHERE secret NOT LIKE 'aes256gcm:%' OR previous_secret NOT LIKE 'aes256gcm:%'
         LIMIT $1
           FOR UPDATE SKIP LOCKED",
    store: "UPDATE hookline.endpoints SET secret = $2, previous_secret = $3 WHERE id = $1",
};

/// Inbound sources: the secret their senders sign with (a few rows).
const SOURCES: Holder = Holder {
    not_sealed_by: "
        SELECT id, secret, NULL::text AS previous_secret
          FROM hookline.sources
         WHERE id > $1 AND secret NOT LIKE $2
         ORDER BY id
         LIMIT $3
           FOR UPDATE",
    plaintext: "
        SELECT id, secret, NULL::text AS previous_secret
          FROM hookline.sources
         WHERE secret NOT LIKE 'aes256gcm:%'
         LIMIT $1
           FOR UPDATE SKIP LOCKED",
    // Sources have no rotated-out secret: `$3` (always NULL) is named only
    // so that one parameter list serves both tables.
    store: "UPDATE hookline.sources SET secret = $2 WHERE id = $1 AND $3::text IS NULL",
};

/// What sealing again did.
#[derive(Debug, Default)]
pub struct Resealed {
    /// Rows (endpoints and sources) whose secrets were sealed again.
    pub rows: u64,
    /// Rows left as they were: a secret of theirs could not be opened.
    pub unopened: Vec<(Uuid, OpenError)>,
}

/// The key ids that sealed stored secrets and that `keys` does not hold:
/// a process holding those keys would fail to sign or verify for them.
pub async fn missing_key_ids(db: &impl GenericClient, keys: &KeyRing) -> Result<Vec<String>> {
    let rows = db.query(SECRETS_SEALING_KEY_IDS, &[]).await?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).filter(|id| !keys.holds(id)).collect())
}

/// Seals up to `batch` rows' plaintext secrets of each table, in one
/// transaction. Nothing to do without keys.
pub async fn seal_plaintext(client: &mut deadpool_postgres::Client, keys: &KeyRing, batch: i64) -> Result<u64> {
    if keys.is_empty() {
        return Ok(0);
    }
    let tx = client.transaction().await?;
    let mut sealed = 0;
    for holder in [&ENDPOINTS, &SOURCES] {
        let rows = tx.query(holder.plaintext, &[&batch]).await?;
        sealed += reseal(&tx, holder, keys, &rows).await?.rows;
    }
    let rows = tx.query(URL_PLAINTEXT, &[&batch]).await?;
    sealed += reseal_urls(&tx, keys, &rows).await?.rows;
    tx.commit().await?;
    Ok(sealed)
}

/// Seals with the first key every secret it did not seal, `batch` rows per
/// transaction, so it can run beside live traffic and be stopped and run
/// again. `keys` must not be empty.
pub async fn reseal_all(client: &mut deadpool_postgres::Client, keys: &KeyRing, batch: i64) -> Result<Resealed> {
    let sealing = keys.sealing_key_id().expect("a key to seal with");
    let pattern = format!("{SEALED_PREFIX}{sealing}:%");
    let mut total = Resealed::default();
    for holder in [&ENDPOINTS, &SOURCES] {
        let mut after = Uuid::nil();
        loop {
            let tx = client.transaction().await?;
            let rows = tx.query(holder.not_sealed_by, &[&after, &pattern, &batch]).await?;
            let done = reseal(&tx, holder, keys, &rows).await?;
            tx.commit().await?;
            total.rows += done.rows;
            total.unopened.extend(done.unopened);
            match rows.last() {
                Some(last) if rows.len() as i64 == batch => after = last.get("id"),
                _ => break,
            }
        }
    }
    let sealed_by_current = format!("^[^:/?#]+://[^/?#@]*aes256gcm%3A{sealing}%3A");
    let mut after = Uuid::nil();
    loop {
        let tx = client.transaction().await?;
        let rows = tx.query(URL_NOT_SEALED_BY, &[&after, &sealed_by_current, &batch]).await?;
        let done = reseal_urls(&tx, keys, &rows).await?;
        tx.commit().await?;
        total.rows += done.rows;
        total.unopened.extend(done.unopened);
        match rows.last() {
            Some(last) if rows.len() as i64 == batch => after = last.get("id"),
            _ => break,
        }
    }
    Ok(total)
}

/// Opens and seals again the URL credentials of `rows` (`id, url`).
async fn reseal_urls(db: &impl GenericClient, keys: &KeyRing, rows: &[Row]) -> Result<Resealed> {
    let mut done = Resealed::default();
    for row in rows {
        let (id, url): (Uuid, String) = (row.get("id"), row.get("url"));
        match keys.open_url(&url) {
            Ok(opened) => {
                // A URL the `url` crate cannot read stays as it is (and is not counted).
                let sealed = keys.seal_url(&opened);
                if sealed != url {
                    db.execute(URL_STORE, &[&id, &sealed]).await?;
                    done.rows += 1;
                }
            }
            Err(error) => done.unopened.push((id, error)),
        }
    }
    Ok(done)
}

/// Opens and seals again the secrets of `rows` (`id, secret, previous_secret`).
async fn reseal(db: &impl GenericClient, holder: &Holder, keys: &KeyRing, rows: &[Row]) -> Result<Resealed> {
    let mut done = Resealed::default();
    for row in rows {
        let id: Uuid = row.get("id");
        let secret: StoredSecret = row.get("secret");
        let previous: Option<StoredSecret> = row.get("previous_secret");
        let opened = keys.open(&secret).and_then(|s| Ok((s, previous.as_ref().map(|p| keys.open(p)).transpose()?)));
        match opened {
            Ok((secret, previous)) => {
                let previous = previous.map(|p| keys.seal(&p));
                db.execute(holder.store, &[&id, &keys.seal(&secret), &previous]).await?;
                done.rows += 1;
            }
            Err(error) => done.unopened.push((id, error)),
        }
    }
    Ok(done)
}
