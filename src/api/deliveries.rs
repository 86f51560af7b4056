//! `/v1/deliveries` and `/v1/dead-letters`. A dead letter is a delivery in
//! state `dead`; its id is the delivery's id.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::{Auth, Principal, Scope};
use super::body::Body;
use super::page::PageRequest;
use super::problem::Problem;
use super::{ApiTags, AppState};
use crate::db;
use crate::db::audit::Entry;
use crate::db::deliveries::DeliveryFilter;

/// pending (waiting for its next attempt), in_flight, succeeded, dead (the
/// dead-letter queue) or cancelled.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    InFlight,
    Succeeded,
    Dead,
    Cancelled,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::InFlight => "in_flight",
            DeliveryState::Succeeded => "succeeded",
            DeliveryState::Dead => "dead",
            DeliveryState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> DeliveryState {
        match s {
            "in_flight" => DeliveryState::InFlight,
            "succeeded" => DeliveryState::Succeeded,
            "dead" => DeliveryState::Dead,
            "cancelled" => DeliveryState::Cancelled,
            _ => DeliveryState::Pending,
        }
    }
}

/// One event to one endpoint.
#[derive(Object, Debug, Clone)]
pub struct Delivery {
    pub id: Uuid,
    pub event_id: Uuid,
    pub endpoint_id: Uuid,
    pub tenant: String,
    pub event_type: String,
    pub state: DeliveryState,
    /// Attempts so far.
    pub attempts: i32,
    /// When the next attempt may start (pending deliveries only).
    #[oai(nullable)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[oai(nullable)]
    pub last_status_code: Option<i32>,
    #[oai(nullable)]
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    #[oai(nullable)]
    pub completed_at: Option<DateTime<Utc>>,
}

/// One HTTP try of a delivery.
#[derive(Object, Debug)]
pub struct Attempt {
    /// 1 for the first try.
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    #[oai(nullable)]
    pub status_code: Option<i32>,
    #[oai(nullable)]
    pub response_headers: Option<serde_json::Value>,
    /// Truncated to 5,000 characters.
    #[oai(nullable)]
    pub response_body: Option<String>,
    /// `dns`, `connect`, `tls`, `timeout`, `http_status`, `invalid_url`,
    /// `blocked_address` or `body_too_large`; null on success.
    #[oai(nullable)]
    pub error_kind: Option<String>,
    #[oai(nullable)]
    pub error: Option<String>,
    /// The worker that made the attempt.
    pub worker: Uuid,
    /// The batched request that made it (its `webhook-id`), if its endpoint
    /// sends batches; the response is that request's.
    #[oai(nullable)]
    pub batch_id: Option<Uuid>,
    /// How many deliveries that request carried.
    #[oai(nullable)]
    pub batch_size: Option<i32>,
}

#[derive(Object, Debug)]
pub struct DeliveryList {
    pub data: Vec<Delivery>,
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

#[derive(Object, Debug)]
pub struct AttemptList {
    pub data: Vec<Attempt>,
}

#[derive(Object, Deserialize, Debug, Default)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct ReplayFilter {
    /// Only this endpoint's dead letters.
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub endpoint_id: Option<Uuid>,
    /// Only dead letters of this event type.
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub event_type: Option<String>,
    /// Only deliveries created at or after this time.
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub since: Option<DateTime<Utc>>,
    /// Only deliveries created before this time.
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub until: Option<DateTime<Utc>>,
}

#[derive(Object, Debug)]
pub struct Replayed {
    /// Dead letters queued again.
    pub replayed: i64,
}

#[derive(ApiResponse)]
pub enum QueuedResponse {
    /// Queued again, due now.
    #[oai(status = 202)]
    Queued(Json<Delivery>),
}

#[derive(ApiResponse)]
pub enum DiscardResponse {
    /// Removed from the dead-letter queue (the delivery is now `cancelled`).
    #[oai(status = 204)]
    Discarded,
}

impl From<db::deliveries::DeliveryView> for Delivery {
    fn from(d: db::deliveries::DeliveryView) -> Self {
        Delivery {
            id: d.id,
            event_id: d.event_id,
            endpoint_id: d.endpoint_id,
            tenant: d.tenant,
            event_type: d.event_type,
            state: DeliveryState::parse(&d.state),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            created_at: d.created_at,
            completed_at: d.completed_at,
        }
    }
}

#[derive(Default)]
pub struct DeliveriesApi;

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Deliveries")]
impl DeliveriesApi {
    /// List deliveries, newest first
    #[oai(path = "/deliveries", method = "get", operation_id = "listDeliveries")]
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
        /// Only deliveries in this state.
        #[oai(name = "state")]
        delivery_state: Query<Option<DeliveryState>>,
        /// Only this endpoint's deliveries.
        endpoint_id: Query<Option<Uuid>>,
        /// Only deliveries of this event type.
        #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{1,200}$"))]
        event_type: Query<Option<String>>,
        /// Only deliveries created at or after this time.
        since: Query<Option<DateTime<Utc>>>,
        /// Only deliveries created before this time.
        until: Query<Option<DateTime<Utc>>>,
        /// Only this tenant's deliveries.
        #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{1,100}$"))]
        tenant: Query<Option<String>>,
    ) -> Result<Json<DeliveryList>, Problem> {
        let page = PageRequest::parse(limit.0, cursor.0.as_deref())?;
        let filter = DeliveryFilter {
            after: page.after,
            limit: page.fetch(),
            tenant: tenant.0.as_deref(),
            endpoint_id: endpoint_id.0,
            event_type: event_type.0.as_deref(),
            since: since.0,
            until: until.0,
            state: delivery_state.0.map(DeliveryState::as_str),
        };
        let mut data = list_deliveries(&auth.0, &state, filter).await?;
        let next_cursor = page.finish(&mut data, |d| d.id);
        Ok(Json(DeliveryList { data, next_cursor }))
    }

    /// Get a delivery
    #[oai(path = "/deliveries/:delivery_id", method = "get", operation_id = "getDelivery")]
    async fn get(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        delivery_id: Path<Uuid>,
    ) -> Result<Json<Delivery>, Problem> {
        get_delivery(&auth.0, &state, delivery_id.0).await.map(Json)
    }

    /// List a delivery's attempts, first to last
    #[oai(path = "/deliveries/:delivery_id/attempts", method = "get", operation_id = "listDeliveryAttempts")]
    async fn attempts(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        delivery_id: Path<Uuid>,
    ) -> Result<Json<AttemptList>, Problem> {
        let data = attempts_of(&auth.0, &state, delivery_id.0).await?;
        Ok(Json(AttemptList { data }))
    }

    /// Retry a delivery now
    ///
    /// Queues it due now, whatever its state, unless a worker is sending it.
    #[oai(path = "/deliveries/:delivery_id/retry", method = "post", operation_id = "retryDelivery")]
    async fn retry(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        delivery_id: Path<Uuid>,
    ) -> Result<QueuedResponse, Problem> {
        requeue(&auth.0, &state, delivery_id.0, None, "delivery.retry").await.map(|d| QueuedResponse::Queued(Json(d)))
    }

    /// Cancel a delivery
    ///
    /// A pending or dead delivery leaves the queue for good.
    #[oai(path = "/deliveries/:delivery_id/cancel", method = "post", operation_id = "cancelDelivery")]
    async fn cancel(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        delivery_id: Path<Uuid>,
    ) -> Result<Json<Delivery>, Problem> {
        cancel(&auth.0, &state, delivery_id.0, None, "delivery.cancel").await.map(Json)
    }
}

#[derive(Default)]
pub struct DeadLettersApi;

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::DeadLetters")]
impl DeadLettersApi {
    /// List dead letters, newest first
    #[oai(path = "/dead-letters", method = "get", operation_id = "listDeadLetters")]
    #[allow(clippy::too_many_arguments)] // one argument per query parameter
    async fn list(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        /// Page size, 1 to 250 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "250")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Only this endpoint's dead letters.
        endpoint_id: Query<Option<Uuid>>,
        /// Only dead letters of this event type.
        #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{1,200}$"))]
        event_type: Query<Option<String>>,
        /// Only this tenant's dead letters.
        #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{1,100}$"))]
        tenant: Query<Option<String>>,
    ) -> Result<Json<DeliveryList>, Problem> {
        let page = PageRequest::parse(limit.0, cursor.0.as_deref())?;
        let filter = DeliveryFilter {
            after: page.after,
            limit: page.fetch(),
            tenant: tenant.0.as_deref(),
            endpoint_id: endpoint_id.0,
            event_type: event_type.0.as_deref(),
            ..Default::default()
        };
        let mut data = list_dead_letters(&auth.0, &state, filter).await?;
        let next_cursor = page.finish(&mut data, |d| d.id);
        Ok(Json(DeliveryList { data, next_cursor }))
    }

    /// Replay one dead letter
    #[oai(path = "/dead-letters/:delivery_id/replay", method = "post", operation_id = "replayDeadLetter")]
    async fn replay(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        delivery_id: Path<Uuid>,
    ) -> Result<QueuedResponse, Problem> {
        requeue(&auth.0, &state, delivery_id.0, Some(DeliveryState::Dead), "dead_letter.replay")
            .await
            .map(|d| QueuedResponse::Queued(Json(d)))
    }

    /// Discard one dead letter
    #[oai(path = "/dead-letters/:delivery_id", method = "delete", operation_id = "discardDeadLetter")]
    async fn discard(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        delivery_id: Path<Uuid>,
    ) -> Result<DiscardResponse, Problem> {
        cancel(&auth.0, &state, delivery_id.0, Some(DeliveryState::Dead), "dead_letter.discard").await?;
        Ok(DiscardResponse::Discarded)
    }

    /// Replay every dead letter matching a filter
    #[oai(path = "/dead-letters/replay", method = "post", operation_id = "replayDeadLetters")]
    async fn replay_matching(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        body: Body<ReplayFilter>,
    ) -> Result<Json<Replayed>, Problem> {
        replay_matching(&auth.0, &state, body.0).await.map(|replayed| Json(Replayed { replayed }))
    }
}

// What the API's handlers and the dashboard's pages do alike, scope check
// included.

pub(crate) async fn get_delivery(principal: &Principal, state: &AppState, id: Uuid) -> Result<Delivery, Problem> {
    principal.require(Scope::Read)?;
    let client = state.client().await?;
    visible(principal, db::deliveries::get(&client, id).await?)
}

/// A delivery's attempts, first to last.
pub(crate) async fn attempts_of(principal: &Principal, state: &AppState, id: Uuid) -> Result<Vec<Attempt>, Problem> {
    principal.require(Scope::Read)?;
    let client = state.client().await?;
    let delivery = visible(principal, db::deliveries::get(&client, id).await?)?;
    Ok(db::deliveries::attempts(&client, delivery.id)
        .await?
        .into_iter()
        .map(|a| Attempt {
            attempt: a.attempt,
            started_at: a.started_at,
            duration_ms: a.duration_ms,
            status_code: a.status_code,
            response_headers: a.response_headers,
            response_body: a.response_body,
            error_kind: a.error_kind,
            error: a.error,
            worker: a.worker,
            batch_id: a.batch_id,
            batch_size: a.batch_size,
        })
        .collect())
}

/// Queues every dead letter matching `f` again; how many.
pub(crate) async fn replay_matching(principal: &Principal, state: &AppState, f: ReplayFilter) -> Result<i64, Problem> {
    principal.require(Scope::Write)?;
    let filter = replay_filter(principal, &f);
    let mut client = state.client().await?;
    let tx = client.transaction().await?;
    let replayed = db::deliveries::replay_dead_letters(&tx, &filter).await?;
    let entry = Entry {
        tenant: principal.tenant.as_deref(),
        action: "dead_letter.replay_matching",
        object_type: "dead_letters",
        object_id: None,
        before: None,
        after: Some(serde_json::json!({
            "endpoint_id": f.endpoint_id, "event_type": f.event_type, "since": f.since, "until": f.until,
            "replayed": replayed,
        })),
    };
    db::audit::record(&tx, &principal.actor(), entry).await?;
    tx.commit().await?;
    Ok(replayed)
}

/// How many dead letters [`replay_matching`] would replay now.
pub(crate) async fn count_replayable(
    principal: &Principal,
    state: &AppState,
    f: &ReplayFilter,
) -> Result<i64, Problem> {
    principal.require(Scope::Read)?;
    let client = state.client().await?;
    Ok(db::deliveries::count_dead_letters(&client, &replay_filter(principal, f)).await?)
}

/// A page of deliveries (`filter.tenant` narrowed to the caller's).
pub(crate) async fn list_deliveries(
    principal: &Principal,
    state: &AppState,
    filter: DeliveryFilter<'_>,
) -> Result<Vec<Delivery>, Problem> {
    principal.require(Scope::Read)?;
    let filter = DeliveryFilter { tenant: principal.tenant_filter(filter.tenant), ..filter };
    let client = state.client().await?;
    Ok(db::deliveries::list_page(&client, &filter).await?.into_iter().map(Delivery::from).collect())
}

/// A page of dead letters (`filter.tenant` narrowed to the caller's).
pub(crate) async fn list_dead_letters(
    principal: &Principal,
    state: &AppState,
    filter: DeliveryFilter<'_>,
) -> Result<Vec<Delivery>, Problem> {
    principal.require(Scope::Read)?;
    let filter = DeliveryFilter { tenant: principal.tenant_filter(filter.tenant), ..filter };
    let client = state.client().await?;
    Ok(db::deliveries::dead_letters_page(&client, &filter).await?.into_iter().map(Delivery::from).collect())
}

fn replay_filter<'a>(principal: &'a Principal, f: &'a ReplayFilter) -> DeliveryFilter<'a> {
    DeliveryFilter {
        tenant: principal.tenant.as_deref(),
        endpoint_id: f.endpoint_id,
        event_type: f.event_type.as_deref(),
        since: f.since,
        until: f.until,
        ..Default::default()
    }
}

/// The delivery, if it exists for this caller (and is in `required` state).
fn visible(principal: &Principal, row: Option<db::deliveries::DeliveryView>) -> Result<Delivery, Problem> {
    row.filter(|d| principal.sees(&d.tenant)).map(Delivery::from).ok_or_else(|| Problem::not_found("delivery"))
}

fn in_state(delivery: Delivery, required: Option<DeliveryState>) -> Result<Delivery, Problem> {
    match required {
        Some(state) if delivery.state != state => Err(Problem::not_found("dead letter")),
        _ => Ok(delivery),
    }
}

/// Queues a delivery (in state `required`, if given) due now.
pub(crate) async fn requeue(
    principal: &Principal,
    state: &AppState,
    id: Uuid,
    required: Option<DeliveryState>,
    action: &str,
) -> Result<Delivery, Problem> {
    principal.require(Scope::Write)?;
    let mut client = state.client().await?;
    let tx = client.transaction().await?;
    let before = in_state(visible(principal, db::deliveries::get(&tx, id).await?)?, required)?;
    use db::deliveries::Requeued;
    match db::deliveries::requeue(&tx, id).await? {
        Requeued::Queued => {}
        Requeued::Leased => return Err(Problem::conflict("a worker is sending this delivery right now")),
        Requeued::EndpointDeleted => return Err(Problem::conflict("its endpoint was deleted")),
        Requeued::EndpointDisabled => {
            return Err(Problem::conflict("its endpoint is disabled: enable it (or recover it) first"));
        }
        Requeued::EventDeleted => return Err(Problem::conflict("its event was deleted")),
        Requeued::Missing => return Err(Problem::not_found("delivery")),
    }
    let after = visible(principal, db::deliveries::get(&tx, id).await?)?;
    audit(&tx, principal, action, &before, &after).await?;
    tx.commit().await?;
    Ok(after)
}

/// Takes a pending or dead delivery (in state `required`, if given) out of the queue.
pub(crate) async fn cancel(
    principal: &Principal,
    state: &AppState,
    id: Uuid,
    required: Option<DeliveryState>,
    action: &str,
) -> Result<Delivery, Problem> {
    principal.require(Scope::Write)?;
    let mut client = state.client().await?;
    let tx = client.transaction().await?;
    let before = in_state(visible(principal, db::deliveries::get(&tx, id).await?)?, required)?;
    match before.state {
        DeliveryState::Succeeded | DeliveryState::Cancelled => {
            return Err(Problem::conflict(format!("the delivery is already {}", before.state.as_str())));
        }
        DeliveryState::InFlight => return Err(Problem::conflict("a worker is sending this delivery right now")),
        DeliveryState::Pending | DeliveryState::Dead => {}
    }
    let reason = format!("cancelled by {}", principal.name);
    if !db::deliveries::cancel(&tx, id, &reason).await? {
        return Err(Problem::conflict("a worker is sending this delivery right now"));
    }
    let after = visible(principal, db::deliveries::get(&tx, id).await?)?;
    audit(&tx, principal, action, &before, &after).await?;
    tx.commit().await?;
    Ok(after)
}

async fn audit(
    db: &impl deadpool_postgres::GenericClient,
    principal: &Principal,
    action: &str,
    before: &Delivery,
    after: &Delivery,
) -> Result<(), Problem> {
    use poem_openapi::types::ToJSON;
    let entry = Entry {
        tenant: Some(&after.tenant),
        action,
        object_type: "delivery",
        object_id: Some(after.id.to_string()),
        before: before.to_json(),
        after: after.to_json(),
    };
    Ok(db::audit::record(db, &principal.actor(), entry).await?)
}
