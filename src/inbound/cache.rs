//! Sources by name as the receiver needs them, with their verifier parsed,
//! remembered for a second (known and unknown names alike, see
//! [`crate::remembered`]): a busy receiver looks a source up about once a
//! second, a change made through another process applies within that
//! second, and a request for a remembered name — a forged one included —
//! is answered without a database connection.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use uuid::Uuid;

use super::mapping::{Invalid, Mapping};
use super::verify::{Encoding, Scheme, Settings, Verifier};
use crate::db;
use crate::remembered::{Recall, Remembered};
use crate::secrets::KeyRing;

const TTL: Duration = Duration::from_secs(1);
/// Unknown names remembered at most; past this the set starts over.
const UNKNOWN_MAX: usize = 1024;

/// An enabled source, ready to verify requests.
#[derive(Debug)]
pub struct Receiving {
    pub id: Uuid,
    pub tenant: String,
    pub name: String,
    /// What a request is published as.
    pub mapping: Mapping,
    pub verifier: Verifier,
    /// The events' `source`: `inbound:<name>`.
    pub origin: String,
}

pub struct SourceCache(Remembered<String, Arc<Receiving>>);

impl Default for SourceCache {
    fn default() -> Self {
        SourceCache(Remembered::new(TTL, UNKNOWN_MAX))
    }
}

impl SourceCache {
    /// The enabled source called `name`, or `None` (unknown, disabled, or
    /// with settings it cannot verify by, which is logged). Takes a pooled
    /// connection only when the name was not looked up within the TTL.
    pub async fn get(&self, pool: &Pool, keys: &KeyRing, name: &str) -> db::Result<Option<Arc<Receiving>>> {
        match self.0.recall(name) {
            Recall::Known(source) => Ok(Some(source)),
            Recall::Unknown => Ok(None),
            Recall::Forgotten => {
                let source = load(&pool.get().await?, keys, name).await?;
                self.0.remember(name.to_owned(), source.clone());
                Ok(source)
            }
        }
    }

    /// Forgets every source (sources changed elsewhere, see
    /// [`crate::api::changes`]).
    pub fn forget_all(&self) {
        self.0.forget_all();
    }

    /// Drops what is known of `name` (this process changed it).
    pub fn forget(&self, name: &str) {
        self.0.forget(name);
    }
}

async fn load(db: &impl GenericClient, keys: &KeyRing, name: &str) -> db::Result<Option<Arc<Receiving>>> {
    Ok(db::sources::by_name(db, keys, name).await?.filter(|s| s.settings.enabled).and_then(|s| receiving(&s)))
}

/// The verifier a source's settings describe, or why there is none.
pub fn verifier(s: &db::sources::SourceSettings) -> Result<Verifier, String> {
    let scheme = Scheme::parse(&s.scheme).ok_or_else(|| format!("unknown scheme `{}`", s.scheme))?;
    let encoding = Encoding::parse(&s.signature_encoding)
        .ok_or_else(|| format!("unknown signature encoding `{}`", s.signature_encoding))?;
    Verifier::new(Settings {
        scheme,
        secret: s.secret.as_deref(),
        signature_header: s.signature_header.as_deref(),
        encoding,
        tolerance_s: s.timestamp_tolerance_s.into(),
        id_header: s.id_header.as_deref(),
    })
}

/// How a source's requests are published, or what keeps them from it.
pub fn mapping(s: &db::sources::SourceSettings) -> Result<Mapping, Invalid> {
    Mapping::new(&s.event_type, s.event_type_from.as_deref(), &s.event_type_prefix, &s.keep_headers)
}

fn receiving(row: &db::sources::Source) -> Option<Arc<Receiving>> {
    let s = &row.settings;
    let mapped = mapping(s).map_err(|invalid| format!("{}: {}", invalid.field, invalid.reason));
    match verifier(s).and_then(|verifier| Ok((verifier, mapped?))) {
        Ok((verifier, mapping)) => Some(Arc::new(Receiving {
            id: row.id,
            tenant: s.tenant.clone(),
            name: s.name.clone(),
            mapping,
            verifier,
            origin: format!("inbound:{}", s.name),
        })),
        Err(reason) => {
            tracing::warn!(source = %s.name, %reason, "source cannot verify requests; answering 404");
            None
        }
    }
}
