//! Sources by name as the receiver needs them, with their verifier parsed.
//! Kept a second, so a busy receiver looks a source up about once a second
//! (unknown names too, so probing for names costs no more); a change made
//! through another process applies within that second.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::verify::{Encoding, Scheme, Settings, Verifier};
use crate::db;

const TTL: Duration = Duration::from_secs(1);
/// Beyond this many names the cache starts over (a scan of random names).
const MAX_ENTRIES: usize = 10_000;

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

/// When a name was looked up, and what it was then.
type Entry = (Instant, Option<Arc<Receiving>>);

#[derive(Default)]
pub struct SourceCache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl SourceCache {
    /// The enabled source called `name`, or `None` (unknown, disabled, or
    /// with settings it cannot verify by, which is logged).
    pub async fn get(&self, db: &impl GenericClient, name: &str) -> db::Result<Option<Arc<Receiving>>> {
        if let Some((at, source)) = self.entries.lock().expect("not poisoned").get(name)
            && at.elapsed() < TTL
        {
            return Ok(source.clone());
        }
        let source = db::sources::by_name(db, name).await?.filter(|s| s.settings.enabled).and_then(|s| receiving(&s));
        let mut entries = self.entries.lock().expect("not poisoned");
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(name.to_owned(), (Instant::now(), source.clone()));
        Ok(source)
    }

    /// Drops what is known of `name` (this process changed it).
    pub fn forget(&self, name: &str) {
        self.entries.lock().expect("not poisoned").remove(name);
    }
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
