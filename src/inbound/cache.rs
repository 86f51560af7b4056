//! Sources by name as the receiver needs them, with their verifier parsed.
//! Kept a second, so a busy receiver looks a source up about once a second,
//! and a change made through another process applies within that second.
//!
//! Unknown names are remembered as briefly, apart from the known ones and in
//! a bounded set: a scan of random names costs one lookup per name, not one
//! per request, and can only push out other unknown names, never a real
//! source. A request for a remembered name, known or not, is answered
//! without a database connection (a forged one included).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{GenericClient, Pool};
use uuid::Uuid;

use super::verify::{Encoding, Scheme, Settings, Verifier};
use crate::db;

const TTL: Duration = Duration::from_secs(1);
/// Unknown names remembered at most; past this the set starts over.
const UNKNOWN_MAX: usize = 1024;

/// An enabled source, ready to verify requests.
#[derive(Debug)]
pub struct Receiving {
    pub id: Uuid,
    pub tenant: String,
    pub name: String,
    pub event_type: String,
    pub verifier: Verifier,
    /// The events' `source`: `inbound:<name>`.
    pub origin: String,
}

/// What the cache knows of a name.
#[derive(Debug)]
pub enum Cached {
    Source(Arc<Receiving>),
    /// No enabled source that can verify goes by it.
    Unknown,
    /// Not looked up within the last second.
    Miss,
}

#[derive(Default)]
pub struct SourceCache {
    /// Names of sources that existed when looked up: as many as there are sources.
    known: Mutex<HashMap<String, (Instant, Arc<Receiving>)>>,
    unknown: Mutex<HashMap<String, Instant>>,
}

impl SourceCache {
    /// The enabled source called `name`, or `None` (unknown, disabled, or
    /// with settings it cannot verify by, which is logged). Takes a pooled
    /// connection only when the name was not looked up within the TTL.
    pub async fn get(&self, pool: &Pool, name: &str) -> db::Result<Option<Arc<Receiving>>> {
        match self.cached(name) {
            Cached::Source(source) => Ok(Some(source)),
            Cached::Unknown => Ok(None),
            Cached::Miss => {
                let client = pool.get().await?;
                let source = load(&client, name).await?;
                self.store(name, source.clone());
                Ok(source)
            }
        }
    }

    pub fn cached(&self, name: &str) -> Cached {
        if let Some((at, source)) = self.known.lock().expect("not poisoned").get(name)
            && at.elapsed() < TTL
        {
            return Cached::Source(source.clone());
        }
        match self.unknown.lock().expect("not poisoned").get(name) {
            Some(at) if at.elapsed() < TTL => Cached::Unknown,
            _ => Cached::Miss,
        }
    }

    pub fn store(&self, name: &str, source: Option<Arc<Receiving>>) {
        match source {
            Some(source) => {
                self.unknown.lock().expect("not poisoned").remove(name);
                self.known.lock().expect("not poisoned").insert(name.to_owned(), (Instant::now(), source));
            }
            None => {
                self.known.lock().expect("not poisoned").remove(name);
                let mut unknown = self.unknown.lock().expect("not poisoned");
                if unknown.len() >= UNKNOWN_MAX {
                    unknown.retain(|_, at| at.elapsed() < TTL);
                    if unknown.len() >= UNKNOWN_MAX {
                        unknown.clear();
                    }
                }
                unknown.insert(name.to_owned(), Instant::now());
            }
        }
    }

    /// Drops what is known of `name` (this process changed it).
    pub fn forget(&self, name: &str) {
        self.known.lock().expect("not poisoned").remove(name);
        self.unknown.lock().expect("not poisoned").remove(name);
    }
}

async fn load(db: &impl GenericClient, name: &str) -> db::Result<Option<Arc<Receiving>>> {
    Ok(db::sources::by_name(db, name).await?.filter(|s| s.settings.enabled).and_then(|s| receiving(&s)))
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

fn receiving(row: &db::sources::Source) -> Option<Arc<Receiving>> {
    let s = &row.settings;
    match verifier(s) {
        Ok(verifier) => Some(Arc::new(Receiving {
            id: row.id,
            tenant: s.tenant.clone(),
            name: s.name.clone(),
            event_type: s.event_type.clone(),
            verifier,
            origin: format!("inbound:{}", s.name),
        })),
        Err(reason) => {
            tracing::warn!(source = %s.name, %reason, "source cannot verify requests; answering 404");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str) -> Arc<Receiving> {
        let verifier = Verifier::new(Settings {
            scheme: Scheme::None,
            secret: None,
            signature_header: None,
            encoding: Encoding::Hex,
            tolerance_s: 300,
            id_header: None,
        })
        .unwrap();
        Arc::new(Receiving {
            id: Uuid::now_v7(),
            tenant: "default".into(),
            name: name.into(),
            event_type: "x".into(),
            verifier,
            origin: format!("inbound:{name}"),
        })
    }

    #[test]
    fn a_scan_of_unknown_names_never_pushes_out_a_known_source() {
        let cache = SourceCache::default();
        cache.store("real", Some(source("real")));
        for n in 0..(UNKNOWN_MAX * 3) {
            cache.store(&format!("guess-{n}"), None);
        }
        assert!(matches!(cache.cached("real"), Cached::Source(_)));
        assert!(matches!(cache.cached(&format!("guess-{}", UNKNOWN_MAX * 3 - 1)), Cached::Unknown));
        assert!(cache.unknown.lock().unwrap().len() <= UNKNOWN_MAX);
    }

    #[test]
    fn a_name_moves_between_known_and_unknown() {
        let cache = SourceCache::default();
        cache.store("x", None);
        assert!(matches!(cache.cached("x"), Cached::Unknown));
        cache.store("x", Some(source("x")));
        assert!(matches!(cache.cached("x"), Cached::Source(_)));
        cache.forget("x");
        assert!(matches!(cache.cached("x"), Cached::Miss));
    }
}
