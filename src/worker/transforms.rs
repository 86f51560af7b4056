//! The worker's compiled transformations, one per endpoint, compiled again
//! only when the endpoint's template changes (the claim brings its source).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::db::deliveries::Claimed;
use crate::domain::transform::{Event, Rendered, Transformation};

/// Endpoints remembered at most; past that the memory starts over.
const MAX_ENDPOINTS: usize = 10_000;

#[derive(Default)]
pub struct Transforms {
    compiled: Mutex<HashMap<Uuid, (String, Arc<Transformation>)>>,
}

impl Transforms {
    /// [`Transforms::render`] on a thread of the blocking pool: a template
    /// that takes its time never holds up the worker's other requests.
    pub async fn render_apart(self: &Arc<Self>, d: &Claimed, source: &str) -> Result<Rendered, String> {
        let (this, d, source) = (self.clone(), d.clone(), source.to_owned());
        tokio::task::spawn_blocking(move || this.render(&d, &source, super::dispatch::REQUEST_BODY_MAX_BYTES))
            .await
            .unwrap_or_else(|e| Err(format!("rendering stopped: {e}")))
    }

    /// `d`'s body, method and headers as its endpoint's `source` writes them.
    pub fn render(&self, d: &Claimed, source: &str, max_body_bytes: usize) -> Result<Rendered, String> {
        let transformation = self.compiled(d.endpoint_id, source)?;
        let data = serde_json::from_str(&d.payload_json).map_err(|e| format!("the payload is not JSON: {e}"))?;
        let timestamp = super::dispatch::event_timestamp(d);
        let event = Event {
            id: d.event_id,
            event_type: &d.event_type,
            timestamp: &timestamp,
            data,
            tenant: d.tenant.as_deref().unwrap_or_default(),
        };
        transformation.render(&event, max_body_bytes)
    }

    fn compiled(&self, endpoint: Uuid, source: &str) -> Result<Arc<Transformation>, String> {
        if let Some((known, compiled)) = self.compiled.lock().expect("not poisoned").get(&endpoint)
            && known == source
        {
            return Ok(compiled.clone());
        }
        let compiled = Arc::new(Transformation::compile(source)?);
        let mut all = self.compiled.lock().expect("not poisoned");
        if all.len() >= MAX_ENDPOINTS {
            all.clear();
        }
        all.insert(endpoint, (source.to_owned(), compiled.clone()));
        Ok(compiled)
    }
}
