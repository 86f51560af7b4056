//! `/ui/deliveries`: the log with filters, and a delivery with its event
//! and every attempt: what was sent where, and what came back.

use maud::{Markup, html};
use poem::web::{Data, Path, Query, Redirect};
use poem::{IntoResponse, Response, handler};
use serde::Deserialize;
use uuid::Uuid;

use super::endpoints::delivery_rows;
use super::form;
use super::page::{self, Section, UiError};
use super::session::Viewer;
use crate::api::AppState;
use crate::api::auth::Scope;
use crate::api::deliveries::{self as api, Attempt, DeliveryState};
use crate::api::endpoints::{Endpoint, SignatureScheme};
use crate::api::problem::Problem;
use crate::db::deliveries::DeliveryFilter;

const STATES: [DeliveryState; 5] = [
    DeliveryState::Pending,
    DeliveryState::InFlight,
    DeliveryState::Succeeded,
    DeliveryState::Dead,
    DeliveryState::Cancelled,
];

#[derive(Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    endpoint_id: Option<String>,
    event_type: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
}

#[handler]
pub async fn list(
    viewer: Viewer,
    Data(state): Data<&AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Markup, UiError> {
    let page = form::page(&query.cursor)?;
    let wanted_state = form::given(&query.state)
        .map(|s| STATES.into_iter().find(|k| k.as_str() == s).ok_or_else(|| Problem::field("state", "no such state")))
        .transpose()?;
    let endpoint_id = form::uuid("endpoint_id", &query.endpoint_id)?;
    let event_type = form::pattern("event_type", &query.event_type, 200)?;
    let since = form::time("since", &query.since)?;
    let until = form::time("until", &query.until)?;
    let filter = DeliveryFilter {
        after: page.after,
        limit: page.fetch(),
        endpoint_id,
        event_type: event_type.as_deref(),
        since,
        until,
        state: wanted_state.map(DeliveryState::as_str),
        tenant: None,
    };
    let mut rows = api::list_deliveries(&viewer.principal, state, filter).await?;
    let next = page.finish(&mut rows, |d| d.id);
    let keep = |cursor: Option<&str>| {
        form::query(&[
            ("state", wanted_state.map(DeliveryState::as_str)),
            ("endpoint_id", form::given(&query.endpoint_id)),
            ("event_type", event_type.as_deref()),
            ("since", form::given(&query.since)),
            ("until", form::given(&query.until)),
            ("cursor", cursor),
        ])
    };
    let content = html! {
        form.filters method="get" action="/ui/deliveries" {
            label { "State"
                select name="state" {
                    option value="" { "any" }
                    @for s in STATES { option value=(s.as_str()) selected[Some(s) == wanted_state] { (s.as_str().replace('_', " ")) } }
                }
            }
            label { "Endpoint id" input type="text" name="endpoint_id" value=[form::given(&query.endpoint_id)] size="36"; }
            label { "Event type" input type="text" name="event_type" value=[event_type.as_deref()]; }
            label { "Since (UTC)" input type="datetime-local" name="since" value=[since.map(form::local_input)]; }
            label { "Until (UTC)" input type="datetime-local" name="until" value=[until.map(form::local_input)]; }
            button type="submit" { "Filter" }
        }
        (delivery_rows(&rows))
        @if let Some(cursor) = next {
            a.more href={ "/ui/deliveries?" (keep(Some(&cursor))) } { "Older deliveries →" }
        }
    };
    Ok(page::shell(&viewer, Section::Deliveries, "Deliveries", content))
}

#[handler]
pub async fn show(
    viewer: Viewer,
    Data(state): Data<&AppState>,
    Path(id): Path<Uuid>,
    Query(done): Query<page::Done>,
) -> Result<Markup, UiError> {
    let d = api::get_delivery(&viewer.principal, state, id).await?;
    let attempts = api::attempts_of(&viewer.principal, state, id).await?;
    let event = crate::api::events::find_event(&viewer.principal, state, d.event_id).await?;
    let endpoint = match crate::api::endpoints::get_endpoint(&viewer.principal, state, d.endpoint_id).await {
        Ok(row) => Some(Endpoint::from(&row)),
        Err(problem) if problem.details().status == 404 => None,
        Err(problem) => return Err(problem.into()),
    };
    let base = format!("/ui/deliveries/{id}");
    let section = if d.state == DeliveryState::Dead { Section::DeadLetters } else { Section::Deliveries };
    let content = html! {
        (done.notice())
        dl.settings {
            dt { "Id" } dd { code { (d.id) } }
            dt { "State" } dd { (page::badge(d.state.as_str())) }
            dt { "Endpoint" } dd {
                a href={ "/ui/endpoints/" (d.endpoint_id) } {
                    @match &endpoint { Some(e) => (e.url), None => { "deleted endpoint " (d.endpoint_id) } }
                }
            }
            dt { "Event type" } dd { code { (d.event_type) } }
            dt { "Tenant" } dd { (d.tenant) }
            dt { "Created" } dd { (page::when(d.created_at)) }
            dt { "Attempts" } dd { (d.attempts) }
            @if let Some(next) = d.next_attempt_at { dt { "Next attempt" } dd { (page::when(next)) } }
            @if let Some(done) = d.completed_at { dt { "Finished" } dd { (page::when(done)) } }
        }
        @if viewer.may(Scope::Write) {
            section.actions aria-label="Actions" {
                @if d.state == DeliveryState::Dead {
                    (page::action_button(&viewer, &format!("/ui/dead-letters/{id}/replay"), "Replay", None))
                    (page::action_button(&viewer, &format!("/ui/dead-letters/{id}/discard"), "Discard", Some("Discard this dead letter for good?")))
                } @else if d.state != DeliveryState::InFlight {
                    (page::action_button(&viewer, &format!("{base}/retry"), "Retry now", None))
                }
                @if d.state == DeliveryState::Pending {
                    (page::action_button(&viewer, &format!("{base}/cancel"), "Cancel", Some("Cancel this delivery?")))
                }
            }
        }
        h2 { "Attempts" }
        @if attempts.is_empty() { p.muted { "No attempt yet." } }
        @for a in &attempts { (attempt(a, d.event_id, endpoint.as_ref())) }
        h2 { "Event" }
        @match event {
            Some(e) => {
                p { "Id " code { (e.id) } " from " (e.source) ", " (page::when(e.created_at)) }
                pre.payload { (serde_json::to_string_pretty(&e.payload).unwrap_or_default()) }
            }
            None => p.muted { "Its event is no longer kept." }
        }
    };
    Ok(page::shell(&viewer, section, "Delivery", content))
}

/// One attempt: what was sent where, and what came back. The request is
/// shown as hookline builds it from the endpoint's settings now; its
/// signature and timestamp are not kept.
pub(crate) fn attempt(a: &Attempt, event_id: Uuid, endpoint: Option<&Endpoint>) -> Markup {
    let outcome = if a.error_kind.is_none() { "succeeded" } else { "failed" };
    html! {
        details.attempt open[a.error_kind.is_some()] {
            summary {
                "#" (a.attempt) " " (page::badge(outcome)) " "
                @if let Some(code) = a.status_code { "HTTP " (code) " " }
                @if let Some(kind) = &a.error_kind { code { (kind) } " " }
                (a.duration_ms) " ms, " (page::when(a.started_at))
                @if let Some(size) = a.batch_size { " — one of " (size) " in batch " code { (a.batch_id.map(|b| b.to_string()).unwrap_or_default()) } }
            }
            @if let Some(error) = &a.error { p.error { (error) } }
            @if let Some(e) = endpoint { (request(a, event_id, e)) }
            @if let Some(headers) = a.response_headers.as_ref().and_then(|h| h.as_object()) {
                h3 { "Response headers" }
                table.headers { tbody { @for (name, value) in headers { tr { th { (name) } td { (value.as_str().map_or_else(|| value.to_string(), str::to_owned)) } } } } }
            }
            @if let Some(body) = &a.response_body {
                h3 { "Response body" }
                pre.payload { (body) }
            }
        }
    }
}

fn request(a: &Attempt, event_id: Uuid, e: &Endpoint) -> Markup {
    let webhook_id = a.batch_id.unwrap_or(event_id);
    let standard = !matches!(e.signature, SignatureScheme::HmacHeader);
    html! {
        h3 { "Request" }
        table.headers { tbody {
            tr { th { "method, URL" } td { code { (e.http_method.as_str()) " " (e.url) } } }
            tr { th { "webhook-id" } td { code { (webhook_id) } } }
            tr { th { "webhook-timestamp" } td { (a.started_at.timestamp()) span.muted { " (the attempt's start, to the second)" } } }
            @if standard {
                tr { th { "webhook-signature" } td.muted { (e.signature.as_str()) " signature(s) of the body; not kept" } }
            } @else {
                tr { th { (e.signature_header) } td.muted { "HMAC of the body; not kept" } }
            }
            @for header in e.headers.keys() { tr { th { (header) } td { "********" } } }
            @if e.transformation.is_some() { tr { th {} td.muted { "and what the endpoint's transformation sets" } } }
        } }
    }
}

#[handler]
pub async fn act(
    viewer: Viewer,
    Data(state): Data<&AppState>,
    Path((id, action)): Path<(Uuid, String)>,
) -> Result<Response, UiError> {
    let done = match action.as_str() {
        "retry" => api::requeue(&viewer.principal, state, id, None, "delivery.retry").await.map(|_| "retried")?,
        "cancel" => api::cancel(&viewer.principal, state, id, None, "delivery.cancel").await.map(|_| "cancelled")?,
        _ => return Err(Problem::not_found("action").into()),
    };
    Ok(Redirect::see_other(format!("/ui/deliveries/{id}?done={done}")).into_response())
}
