//! `POST /in/{source_name}`: the public receiver for third parties'
//! webhooks. Authenticated by the source's signature scheme, not a token.
//!
//! A request is verified on its raw bytes, then stored as an event (source
//! `inbound:<name>`) and fanned out in one statement; only then is it
//! answered 2xx. A provider's retry of a delivery id already stored is
//! answered 200 with the first event and stores nothing.

use chrono::Utc;
use poem::http::HeaderMap;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::body::RawBody;
use super::problem::{Problem, ProblemKind};
use super::{ApiTags, AppState};
use crate::db;

/// Provider delivery ids longer than this are stored by their SHA-256.
const DELIVERY_ID_MAX_CHARS: usize = 200;

#[derive(Object, Debug)]
pub struct Received {
    /// The event the payload is stored as.
    pub event_id: Uuid,
    /// This delivery id was stored before; nothing new was stored.
    pub duplicate: bool,
}

#[derive(ApiResponse)]
pub enum ReceiveResponse {
    /// Verified and stored; its deliveries are queued.
    #[oai(status = 202)]
    Stored(Json<Received>),
    /// Verified; the provider sent this delivery before, and it is stored once.
    #[oai(status = 200)]
    Duplicate(Json<Received>),
}

#[derive(Default)]
pub struct InboundApi;

#[OpenApi(tag = "ApiTags::Inbound")]
impl InboundApi {
    /// Receive a webhook from a third party
    ///
    /// For the providers of `/v1/sources`: the request must be signed as the
    /// source's scheme says (401 if not), with a timestamp within its
    /// tolerance where the scheme signs one (400 if not), and hold JSON (400).
    /// Unknown and disabled sources are 404.
    #[oai(path = "/in/:source_name", method = "post", operation_id = "receiveWebhook")]
    async fn receive(
        &self,
        state: Data<&AppState>,
        /// The source's name.
        source_name: Path<String>,
        headers: &HeaderMap,
        body: RawBody,
    ) -> Result<ReceiveResponse, Problem> {
        // A known or unknown name remembered from the last second, and a
        // forged signature, cost no database connection.
        let Some(source) = state.sources.get(&state.pool, &state.secret_keys, &source_name.0).await? else {
            return Err(Problem::not_found("source"));
        };
        if let Err(rejection) = source.verifier.verify(headers, &body.0, Utc::now().timestamp()) {
            state.inbound_counts.failed(source.id, rejection.to_string());
            let kind =
                if rejection.is_unauthenticated() { ProblemKind::Unauthorized } else { ProblemKind::InvalidRequest };
            return Err(Problem::new(kind, rejection.to_string(), None));
        }
        let body: serde_json::Value = serde_json::from_slice(&body.0)
            .map_err(|e| Problem::new(ProblemKind::InvalidRequest, format!("the body is not JSON: {e}"), None))?;
        let key = source.verifier.delivery_id(headers, &body).map(|id| idempotency_key(source.id, &id));
        let event_type = source.mapping.event_type(headers, &body);
        let payload = source.mapping.payload(headers, body);
        let new = db::events::NewEvent {
            tenant: &source.tenant,
            event_type: &event_type,
            payload: &payload,
            idempotency_key: key.as_deref(),
            source: &source.origin,
            ordering_key: None,
        };
        let client = state.client().await?;
        let (event, stored) = db::events::insert(&client, &new).await?;
        state.inbound_counts.accepted(source.id, !stored);
        let received = Received { event_id: event.id, duplicate: !stored };
        Ok(if stored { ReceiveResponse::Stored(Json(received)) } else { ReceiveResponse::Duplicate(Json(received)) })
    }
}

/// The events' idempotency key for a provider's delivery id: scoped to the
/// source, so two sources (or the application's own keys) never collide.
fn idempotency_key(source: Uuid, delivery_id: &str) -> String {
    if delivery_id.chars().count() <= DELIVERY_ID_MAX_CHARS {
        format!("inbound:{source}:{delivery_id}")
    } else {
        format!("inbound:{source}:sha256:{}", hex::encode(Sha256::digest(delivery_id.as_bytes())))
    }
}
