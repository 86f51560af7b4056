//! `/ui/events`: what producers sent, and an event with its deliveries.

use maud::{Markup, html};
use poem::handler;
use poem::web::{Data, Path, Query};
use serde::Deserialize;
use uuid::Uuid;

use super::endpoints::delivery_rows;
use super::form;
use super::page::{self, Section, UiError};
use super::session::Viewer;
use crate::api::AppState;
use crate::api::events as api;
use crate::db::events::EventFilter;

#[derive(Deserialize)]
pub struct ListQuery {
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
    let event_type = form::pattern("event_type", &query.event_type, 200)?;
    let since = form::time("since", &query.since)?;
    let until = form::time("until", &query.until)?;
    let filter = EventFilter {
        after: page.after,
        limit: page.fetch(),
        tenant: None,
        event_type: event_type.as_deref(),
        since,
        until,
    };
    let mut rows = api::list_events(&viewer.principal, state, filter).await?;
    let next = page.finish(&mut rows, |e| e.id);
    let content = html! {
        form.filters method="get" action="/ui/events" {
            label { "Event type" input type="text" name="event_type" value=[event_type.as_deref()]; }
            label { "Since (UTC)" input type="datetime-local" name="since" value=[since.map(form::local_input)]; }
            label { "Until (UTC)" input type="datetime-local" name="until" value=[until.map(form::local_input)]; }
            button type="submit" { "Filter" }
        }
        @if rows.is_empty() { p.muted { "No events." } } @else {
            table {
                thead { tr { th { "Created" } th { "Event type" } th { "Tenant" } th { "From" } th { "Schema" } } }
                tbody {
                    @for e in &rows {
                        tr {
                            td { a href={ "/ui/events/" (e.id) } { (page::when(e.created_at)) } }
                            td { code { (e.event_type) } }
                            td { (e.tenant) }
                            td { (e.source) }
                            td { @if let Some(w) = &e.schema_warning { span.error title=(w.message) { "warning at " code { (w.pointer) } } } }
                        }
                    }
                }
            }
        }
        @if let Some(cursor) = next {
            a.more href={ "/ui/events?" (form::query(&[("event_type", event_type.as_deref()), ("since", form::given(&query.since)),
                ("until", form::given(&query.until)), ("cursor", Some(&cursor))])) } { "Older events →" }
        }
    };
    Ok(page::shell(&viewer, Section::Events, "Events", content))
}

#[handler]
pub async fn show(viewer: Viewer, Data(state): Data<&AppState>, Path(id): Path<Uuid>) -> Result<Markup, UiError> {
    let found = api::get_event(&viewer.principal, state, id).await?;
    let e = &found.event;
    let content = html! {
        dl.settings {
            dt { "Id" } dd { code { (e.id) } }
            dt { "Event type" } dd { code { (e.event_type) } }
            dt { "Tenant" } dd { (e.tenant) }
            dt { "From" } dd { (e.source) }
            dt { "Created" } dd { (page::when(e.created_at)) }
            @if let Some(key) = &e.idempotency_key { dt { "Idempotency key" } dd { code { (key) } } }
            @if let Some(key) = &e.ordering_key { dt { "Ordering key" } dd { code { (key) } } }
            @if let Some(w) = &e.schema_warning { dt { "Schema warning" } dd.error { code { (w.pointer) } " " (w.message) } }
        }
        h2 { "Payload" }
        pre.payload { (serde_json::to_string_pretty(&e.payload).unwrap_or_default()) }
        h2 { "Deliveries" }
        (delivery_rows(&found.deliveries))
    };
    Ok(page::shell(&viewer, Section::Events, "Event", content))
}
