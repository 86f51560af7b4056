//! `/v1/events`: ingest events over HTTP and read them back with their
//! deliveries. Ingestion is recorded in `hookline.events` itself (`source` =
//! `api`), not in the audit log, which would double the cost of every event.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::{Auth, Principal, Scope};
use super::body::Body;
use super::deliveries::Delivery;
use super::page::PageRequest;
use super::problem::Problem;
use super::{ApiTags, AppState, validate};
use crate::db;

#[derive(Object, Deserialize, Debug)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct EventCreate {
    /// The event type, e.g. `order.created`.
    #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{1,200}$"))]
    pub event_type: String,
    /// Any JSON value: becomes `data` in the delivered envelope.
    pub payload: serde_json::Value,
    /// The tenant (default `default`; a tenant-bound token's own).
    #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{1,100}$"))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub tenant: Option<String>,
    /// A second event with the same key in the tenant returns the first and
    /// creates nothing. The `Idempotency-Key` header does the same.
    #[oai(validator(min_length = 1, max_length = 200))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub idempotency_key: Option<String>,
    /// At endpoints with `ordering: key`, events with the same key are
    /// delivered one at a time, in the order they were accepted.
    #[oai(validator(min_length = 1, max_length = 200))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub ordering_key: Option<String>,
}

#[derive(Object, Debug, Clone)]
pub struct Event {
    pub id: Uuid,
    pub tenant: String,
    pub event_type: String,
    pub payload: serde_json::Value,
    #[oai(nullable)]
    pub idempotency_key: Option<String>,
    /// `api`, `sql`, `test` or `inbound:<source name>`.
    pub source: String,
    pub created_at: DateTime<Utc>,
    #[oai(nullable)]
    pub ordering_key: Option<String>,
    /// Set when its event type's `validation` is `warn` and the payload does
    /// not match the type's schema: where, and why. It was accepted anyway.
    #[oai(nullable)]
    pub schema_warning: Option<SchemaWarning>,
}

/// Where a payload fails its event type's schema.
#[derive(Object, Debug, Clone)]
pub struct SchemaWarning {
    /// A JSON pointer into the payload (`""` is the payload itself).
    pub pointer: String,
    pub message: String,
}

#[derive(Object, Debug)]
pub struct EventWithDeliveries {
    #[oai(flatten)]
    pub event: Event,
    pub deliveries: Vec<Delivery>,
}

#[derive(Object, Debug)]
pub struct EventList {
    pub data: Vec<Event>,
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

#[derive(ApiResponse)]
pub enum CreateEventResponse {
    /// Stored and queued for every matching endpoint.
    #[oai(status = 202)]
    Accepted(Json<Event>),
    /// The idempotency key was used before: the first event, nothing created.
    #[oai(status = 200)]
    Existing(Json<Event>),
}

impl From<db::events::Event> for Event {
    fn from(e: db::events::Event) -> Self {
        Event {
            id: e.id,
            tenant: e.tenant,
            event_type: e.event_type,
            payload: e.payload,
            idempotency_key: e.idempotency_key,
            source: e.source,
            created_at: e.created_at,
            ordering_key: e.ordering_key,
            schema_warning: e.schema_warning.map(|w| SchemaWarning { pointer: w.pointer, message: w.message }),
        }
    }
}

#[derive(Default)]
pub struct EventsApi;

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Events")]
impl EventsApi {
    /// Send an event
    #[oai(path = "/events", method = "post", operation_id = "createEvent")]
    async fn create(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        body: Body<EventCreate>,
        /// Same as `idempotency_key` in the body (which wins when both are given).
        #[oai(name = "Idempotency-Key", validator(min_length = 1, max_length = 200))]
        idempotency_key: Header<Option<String>>,
    ) -> Result<CreateEventResponse, Problem> {
        auth.0.require(Scope::Write)?;
        let new = body.0;
        validate::event_type("event_type", &new.event_type)?;
        if let Some(tenant) = &new.tenant {
            validate::tenant("tenant", tenant)?;
        }
        let tenant = auth.0.tenant_for_create(new.tenant.as_deref())?;
        let key = new.idempotency_key.or(idempotency_key.0);
        if let Some(key) = &key {
            validate::text("idempotency_key", key, 1, 200)?;
        }
        if let Some(key) = &new.ordering_key {
            validate::text("ordering_key", key, 1, 200)?;
        }
        let client = state.client().await?;
        let event = db::events::NewEvent {
            tenant: &tenant,
            event_type: &new.event_type,
            payload: &new.payload,
            idempotency_key: key.as_deref(),
            source: "api",
            ordering_key: new.ordering_key.as_deref(),
        };
        let (event, created) = db::events::insert(&client, &event).await?;
        Ok(if created {
            CreateEventResponse::Accepted(Json(event.into()))
        } else {
            CreateEventResponse::Existing(Json(event.into()))
        })
    }

    /// List events, newest first
    #[oai(path = "/events", method = "get", operation_id = "listEvents")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        /// Page size, 1 to 250 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "250")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Only this tenant's events.
        #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{1,100}$"))]
        tenant: Query<Option<String>>,
        /// Only events of this type.
        #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{1,200}$"))]
        event_type: Query<Option<String>>,
        /// Only events created at or after this time.
        since: Query<Option<DateTime<Utc>>>,
        /// Only events created before this time.
        until: Query<Option<DateTime<Utc>>>,
    ) -> Result<Json<EventList>, Problem> {
        let page = PageRequest::parse(limit.0, cursor.0.as_deref())?;
        let filter = db::events::EventFilter {
            after: page.after,
            limit: page.fetch(),
            tenant: tenant.0.as_deref(),
            event_type: event_type.0.as_deref(),
            since: since.0,
            until: until.0,
        };
        let mut data = list_events(&auth.0, &state, filter).await?;
        let next_cursor = page.finish(&mut data, |e| e.id);
        Ok(Json(EventList { data, next_cursor }))
    }

    /// Get an event with its deliveries
    #[oai(path = "/events/:event_id", method = "get", operation_id = "getEvent")]
    async fn get(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        event_id: Path<Uuid>,
    ) -> Result<Json<EventWithDeliveries>, Problem> {
        get_event(&auth.0, &state, event_id.0).await.map(Json)
    }
}

/// A page of events (`filter.tenant` narrowed to the caller's).
pub(crate) async fn list_events(
    principal: &Principal,
    state: &AppState,
    filter: db::events::EventFilter<'_>,
) -> Result<Vec<Event>, Problem> {
    principal.require(Scope::Read)?;
    let filter = db::events::EventFilter { tenant: principal.tenant_filter(filter.tenant), ..filter };
    let client = state.client().await?;
    Ok(db::events::list_page(&client, &filter).await?.into_iter().map(Event::from).collect())
}

/// An event this caller may see, if it is still kept.
pub(crate) async fn find_event(principal: &Principal, state: &AppState, id: Uuid) -> Result<Option<Event>, Problem> {
    principal.require(Scope::Read)?;
    let client = state.client().await?;
    Ok(db::events::get(&client, id).await?.filter(|e| principal.sees(&e.tenant)).map(Event::from))
}

pub(crate) async fn get_event(
    principal: &Principal,
    state: &AppState,
    id: Uuid,
) -> Result<EventWithDeliveries, Problem> {
    principal.require(Scope::Read)?;
    let client = state.client().await?;
    let event = db::events::get(&client, id)
        .await?
        .filter(|e| principal.sees(&e.tenant))
        .ok_or_else(|| Problem::not_found("event"))?;
    let deliveries = db::deliveries::of_event(&client, event.id).await?.into_iter().map(Delivery::from).collect();
    Ok(EventWithDeliveries { event: event.into(), deliveries })
}
