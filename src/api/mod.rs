//! The HTTP API (SPEC §6). The OpenAPI service is built without any IO, so
//! `hookline openapi` prints the document with no database around; handlers
//! reach the pool through `Data<&AppState>`.
//!
//! A resource module reads: types → handlers. Errors are [`problem::Problem`].

mod allow;
pub(crate) mod audit;
pub mod auth;
pub mod body;
pub mod changes;
pub(crate) mod deliveries;
pub(crate) mod endpoints;
pub(crate) mod event_types;
pub(crate) mod events;
mod inbound;
mod ops;
pub mod page;
mod patch;
pub mod portal;
pub mod problem;
mod sandboxes;
pub(crate) mod sources;
mod stats;
pub(crate) mod tokens;
mod validate;

use std::sync::Arc;

use deadpool_postgres::Pool;
use poem::{Endpoint, EndpointExt, Route};
use poem_openapi::{OpenApiService, Tags};

pub use ops::metrics_app;

use crate::inbound::cache as inbound_cache;
use crate::inbound::counters::Counters;
use crate::secrets::KeyRing;

/// What a secret value reads as where it is not shown (custom header values).
pub const REDACTED: &str = "********";

/// Where sandboxes capture requests: `<HOOKLINE_PUBLIC_URL>/sandbox/<token>`.
pub const SANDBOX_PATH: &str = "/sandbox/";

/// The API version in the OpenAPI document; bumped by hand on contract changes.
pub const API_VERSION: &str = "1.0.0";

#[derive(Tags)]
pub enum ApiTags {
    /// Subscribers: where events are delivered.
    Endpoints,
    /// Events to deliver.
    Events,
    /// The catalogue of event types, with the JSON Schemas of their payloads.
    EventTypes,
    /// One event to one endpoint, and its attempts.
    Deliveries,
    /// Deliveries that will not be retried any more.
    DeadLetters,
    /// Inbound webhook sources: third parties that send to `/in/{name}`.
    Sources,
    /// The public receiver of inbound webhooks, authenticated by signature.
    Inbound,
    /// Capture URLs served by hookline, to see what it sends.
    Sandboxes,
    /// Links to the tenant portal, where a tenant's customers manage their endpoints.
    Portal,
    /// Queue and endpoint statistics.
    Stats,
    /// API tokens (admin).
    Tokens,
    /// The record of every mutation (admin).
    Audit,
    /// Liveness, readiness and metrics.
    Operations,
}

/// Every route group; nested, as `Default` stops at tuples of twelve.
pub type Api = (
    (
        endpoints::EndpointsApi,
        events::EventsApi,
        event_types::EventTypesApi,
        deliveries::DeliveriesApi,
        deliveries::DeadLettersApi,
        sources::SourcesApi,
        inbound::InboundApi,
        sandboxes::SandboxesApi,
    ),
    (stats::StatsApi, tokens::TokensApi, audit::AuditApi, portal::PortalApi, ops::OpsApi, ops::MetricsApi),
);

/// What handlers share.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub pool: Pool,
    pub tokens: auth::TokenCache,
    pub max_body_bytes: usize,
    /// Endpoints may subscribe only to types in the catalogue.
    pub strict_event_types: bool,
    /// `HOOKLINE_PUBLIC_URL`: the base of the sandboxes' capture URLs and
    /// of portal links.
    pub public_url: String,
    /// The portal's CSP `frame-ancestors` sources.
    pub portal_frame_ancestors: String,
    pub sources: inbound_cache::SourceCache,
    pub inbound_counts: Arc<Counters>,
    /// Seals endpoint and source secrets for storage, opens them to use or show.
    pub secret_keys: KeyRing,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The settings of `serve` that the API's handlers apply.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    pub strict_event_types: bool,
    /// Where workers reach this API, without a trailing slash.
    pub public_url: String,
    /// Origins that may frame the tenant portal (HOOKLINE_PORTAL_FRAME_ANCESTORS).
    pub portal_frame_ancestors: Vec<String>,
}

impl AppState {
    /// Also starts adding the inbound receivers' counts to the database
    /// every second, for as long as the state lives.
    pub fn new(pool: Pool, settings: ApiSettings, secret_keys: KeyRing) -> Self {
        let inbound_counts = Arc::new(Counters::default());
        Counters::spawn_flusher(&inbound_counts, pool.clone());
        AppState(Arc::new(Shared {
            pool,
            tokens: auth::TokenCache::default(),
            max_body_bytes: settings.max_body_bytes,
            strict_event_types: settings.strict_event_types,
            public_url: settings.public_url,
            portal_frame_ancestors: std::iter::once("'self'".to_owned())
                .chain(settings.portal_frame_ancestors)
                .collect::<Vec<_>>()
                .join(" "),
            sources: inbound_cache::SourceCache::default(),
            inbound_counts,
            secret_keys,
        }))
    }

    /// Writes the inbound counts not yet written (at shutdown).
    pub async fn flush_counts(&self) {
        if let Err(error) = self.inbound_counts.flush(&self.pool).await {
            tracing::warn!(error = %crate::telemetry::error_chain(&error), "inbound counts not recorded");
        }
    }

    /// A pooled connection; failing to get one is a 500 problem.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, problem::Problem> {
        Ok(self.pool.get().await?)
    }
}

/// Request bodies whose unknown fields are refused: the document says so
/// (`additionalProperties: false`), which poem-openapi does not write itself.
const CLOSED_REQUEST_SCHEMAS: &[&str] = &[
    "EndpointCreate",
    "EndpointUpdate",
    "RotateSecret",
    "TestEvent",
    "Recover",
    "EventCreate",
    "EventTypeCreate",
    "EventTypeUpdate",
    "ReplayFilter",
    "TokenCreate",
    "SourceCreate",
    "SourceUpdate",
    "SandboxCreate",
    "PortalSessionCreate",
    "PortalBranding",
];

/// The OpenAPI document as served at `/openapi.json` and printed by `hookline openapi`.
pub fn openapi_document() -> String {
    let mut document: serde_json::Value =
        serde_json::from_str(&openapi_service().spec()).expect("poem-openapi writes JSON");
    for name in CLOSED_REQUEST_SCHEMAS {
        if let Some(schema) = document["components"]["schemas"].get_mut(*name) {
            schema["additionalProperties"] = serde_json::Value::Bool(false);
        }
    }
    serde_json::to_string_pretty(&document).expect("serialisable")
}

pub fn openapi_service() -> OpenApiService<Api, ()> {
    OpenApiService::new(Api::default(), "hookline", API_VERSION)
        .description("Webhook delivery whose whole state lives in PostgreSQL.")
}

/// The route tree served by `hookline serve`.
pub fn app(state: AppState) -> impl Endpoint {
    let service = openapi_service();
    let docs = service.swagger_ui();
    let document = openapi_document();
    let spec = poem::endpoint::make_sync(move |_| {
        poem::Response::builder().content_type("application/json").body(document.clone())
    });
    let limit = body::BodyLimit(state.max_body_bytes);
    Route::new()
        .nest("/", service)
        .nest("/docs", docs)
        .nest(crate::ui::PREFIX, crate::ui::app())
        .nest(portal::PORTAL_PATH, crate::ui::portal::app())
        .at("/openapi.json", spec)
        .data(state)
        .data(limit)
        .catch_all_error(problem::catch_all)
        .around(allow::add_allow_header)
}
