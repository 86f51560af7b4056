//! `/ui/endpoints`: the list with health, search and filter; an endpoint
//! with its chart, settings, recent deliveries and what can be done to it.

use maud::{Markup, html};
use poem::web::{Data, Form, Path, Query, Redirect};
use poem::{IntoResponse, Response, handler};
use serde::Deserialize;
use uuid::Uuid;

use super::form;
use super::overview::deliveries_chart;
use super::page::{self, Section, UiError};
use super::session::Viewer;
use crate::api::AppState;
use crate::api::auth::Scope;
use crate::api::deliveries::{self as deliveries_api, Delivery};
use crate::api::endpoints::{self as api, Endpoint, EndpointSecret, EndpointStats, RotateSecret, TestEvent};
use crate::api::problem::Problem;
use crate::db;
use crate::db::dashboard::{EndpointSearch, HealthFilter};
use crate::db::deliveries::DeliveryFilter;

#[derive(Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    health: Option<String>,
    cursor: Option<String>,
}

#[handler]
pub async fn list(
    viewer: Viewer,
    Data(state): Data<&AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Markup, UiError> {
    viewer.principal.require(Scope::Read)?;
    let page = form::page(&query.cursor)?;
    let health = HealthFilter::parse(form::given(&query.health).unwrap_or("all"));
    let text = form::given(&query.q);
    if text.is_some_and(|t| t.len() > 200) {
        return Err(Problem::field("q", "at most 200 characters").into());
    }
    let search = EndpointSearch {
        tenant: viewer.principal.tenant.as_deref(),
        after: page.after,
        limit: page.fetch(),
        text,
        health,
        only: None,
    };
    let client = state.client().await?;
    let mut rows = db::dashboard::endpoints(&client, &search).await?;
    let next = page.finish(&mut rows, |e| e.endpoint.id);
    let content = html! {
        form.filters method="get" action="/ui/endpoints" role="search"
            hx-get="/ui/endpoints" hx-trigger="input changed delay:300ms from:#q, change" hx-target="#endpoints"
            hx-select="#endpoints" hx-swap="outerHTML" hx-push-url="true" {
            label { "Search" input #q type="search" name="q" value=[text] placeholder="URL, description or id"; }
            label { "Health"
                select name="health" {
                    @for option in [HealthFilter::All, HealthFilter::Enabled, HealthFilter::Failing, HealthFilter::Disabled] {
                        option value=(option.as_str()) selected[option == health] { (option.as_str()) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        div #endpoints {
            @if rows.is_empty() { p.muted { "No endpoints match." } } @else {
                table {
                    thead { tr {
                        th { "Endpoint" } th { "Tenant" } th { "Event types" } th { "Circuit" }
                        th.num { "Success 24 h" } th.num { "Deliveries 24 h" } th.num { "Failure run" }
                    } }
                    tbody {
                        @for row in &rows {
                            @let e = Endpoint::from(&row.endpoint);
                            tr {
                                td {
                                    a href={ "/ui/endpoints/" (e.id) } { (e.url) }
                                    @if !e.description.is_empty() { br; span.muted { (e.description) } }
                                    @if let Some(reason) = &e.disabled_reason { br; span.error { "Disabled: " (reason) } }
                                }
                                td { (e.tenant) }
                                td { (event_types(&e.event_types)) }
                                td { (page::badge(&row.circuit_state)) }
                                td.num { (page::percent(row.success_rate_24h)) }
                                td.num { (row.deliveries_24h) }
                                td.num { (row.consecutive_failures) }
                            }
                        }
                    }
                }
            }
            @if let Some(cursor) = next {
                a.more href={ "/ui/endpoints?" (form::query(&[("q", text), ("health", Some(health.as_str())), ("cursor", Some(&cursor))])) } { "Older endpoints →" }
            }
        }
    };
    Ok(page::shell(&viewer, Section::Endpoints, "Endpoints", content))
}

#[handler]
pub async fn show(
    viewer: Viewer,
    Data(state): Data<&AppState>,
    Path(id): Path<Uuid>,
    Query(done): Query<page::Done>,
) -> Result<Markup, UiError> {
    endpoint_page(&viewer, state, id, done.notice(), None).await
}

/// An endpoint's page; `secret` is shown once, right after a rotation.
async fn endpoint_page(
    viewer: &Viewer,
    state: &AppState,
    id: Uuid,
    notice: Markup,
    secret: Option<EndpointSecret>,
) -> Result<Markup, UiError> {
    let row = api::get_endpoint(&viewer.principal, state, id).await?;
    let stats = api::stats(&viewer.principal, state, id).await?;
    let filter = DeliveryFilter { endpoint_id: Some(id), limit: 20, ..Default::default() };
    let recent = deliveries_api::list_deliveries(&viewer.principal, state, filter).await?;
    let hours = db::dashboard::hours(&state.client().await?, None, Some(id)).await?;
    let e = Endpoint::from(&row);
    let content = html! {
        (notice)
        @if let Some(secret) = secret { (revealed(&secret)) }
        p.subtitle { (e.url) @if !e.description.is_empty() { " — " (e.description) } }
        (health(&stats))
        (deliveries_chart(&hours))
        (actions(viewer, &e))
        h2 { "Recent deliveries" }
        (delivery_rows(&recent))
        p { a href={ "/ui/deliveries?endpoint_id=" (e.id) } { "All of this endpoint's deliveries →" } }
        h2 { "Settings" }
        (settings(&e))
    };
    Ok(page::shell(viewer, Section::Endpoints, "Endpoint", content))
}

fn health(s: &EndpointStats) -> Markup {
    html! {
        section.cards {
            div.card {
                h2 { "Health" }
                dl {
                    dt { "Circuit" } dd { (page::badge(&s.circuit_state)) }
                    dt { "State" } dd { @if s.enabled { "enabled" } @else { span.error { "disabled" } } }
                    @if let Some(reason) = &s.disabled_reason { dt { "Why" } dd { (reason) } }
                    dt { "Failed deliveries in a row" } dd { (s.consecutive_failures) }
                    dt { "Failed attempts in a row" } dd { (s.failed_attempts) }
                    dt { "Last success" } dd { (page::maybe_when(s.last_success_at)) }
                    dt { "Last failure" } dd { (page::maybe_when(s.last_failure_at)) }
                }
            }
            div.card {
                h2 { "Last 24 hours" }
                dl {
                    dt { "Success rate" } dd { (page::percent(s.success_rate)) }
                    dt { "Deliveries" } dd { (s.total) }
                    dt { "Succeeded" } dd { (s.succeeded) }
                    dt { "Dead" } dd { (s.dead) }
                    dt { "Waiting" } dd { (s.pending) }
                    dt { "p50 / p95 / p99" } dd { (page::millis(s.p50_ms)) " / " (page::millis(s.p95_ms)) " / " (page::millis(s.p99_ms)) }
                }
            }
        }
    }
}

fn actions(viewer: &Viewer, e: &Endpoint) -> Markup {
    let base = format!("/ui/endpoints/{}", e.id);
    html! {
        @if viewer.may(Scope::Write) {
            section.actions aria-label="Actions" {
                @if e.enabled {
                    form.inline method="post" action={ (base) "/disable" } hx-confirm="Disable this endpoint? Its waiting deliveries move to the dead letters." {
                        (page::csrf(viewer))
                        input type="text" name="reason" placeholder="Why (optional)" maxlength="500";
                        button type="submit" { "Disable" }
                    }
                    form.inline method="post" action={ (base) "/test" } {
                        (page::csrf(viewer))
                        input type="text" name="event_type" placeholder="hookline.test" pattern="[A-Za-z0-9_.:-]{1,200}";
                        button type="submit" { "Send test event" }
                    }
                    form.inline method="post" action={ (base) "/recover" } {
                        (page::csrf(viewer))
                        label { "Recover since (UTC) " input type="datetime-local" name="since" required; }
                        button type="submit" { "Recover" }
                    }
                } @else {
                    (page::action_button(viewer, &format!("{base}/enable"), "Enable", None))
                }
                (page::action_button(viewer, &format!("{base}/rotate-secret"), "Rotate secret",
                    Some("Rotate the signing secret? The old one keeps signing for 24 hours.")))
            }
        }
    }
}

/// The new secret, once: it is not in any URL and the page is not cached.
fn revealed(secret: &EndpointSecret) -> Markup {
    html! {
        div.notice.secret role="status" {
            p { "New signing secret — copy it now, this page will not show it again:" }
            code.reveal { (secret.secret) }
            @if let Some(until) = secret.previous_secret_expires_at {
                p.muted { "The previous secret keeps signing until " (page::when(until)) "." }
            }
        }
    }
}

fn settings(e: &Endpoint) -> Markup {
    html! {
        dl.settings {
            dt { "Id" } dd { code { (e.id) } }
            dt { "Tenant" } dd { (e.tenant) }
            dt { "URL" } dd { code { (e.url) } }
            dt { "Event types" } dd { (event_types(&e.event_types)) }
            dt { "Method" } dd { (e.http_method.as_str()) }
            dt { "Timeout" } dd { (e.timeout_ms) " ms" }
            dt { "Rate limit" } dd { @match e.rate_limit_per_s { Some(n) => { (n) " /s" }, None => "none" } }
            dt { "Max in flight" } dd { @match e.max_in_flight { Some(n) => (n), None => "no limit" } }
            dt { "Retry schedule" } dd { @match &e.retry_schedule { Some(s) => { (format!("{s:?}")) " s" }, None => "default" } }
            dt { "Signature" } dd { (e.signature.as_str()) }
            dt { "Ordering" } dd { (e.ordering.as_str()) }
            dt { "Batching" } dd { @match &e.batch { Some(b) => { "up to " (b.max_events) " events, " (b.max_wait_ms) " ms" }, None => "off" } }
            dt { "Transformation" } dd { @if e.transformation.is_some() { "yes" } @else { "none" } }
            dt { "Custom headers" } dd {
                @if e.headers.is_empty() { "none" }
                @for (header, value) in &e.headers { code { (header) ": " (value) } " " }
            }
            dt { "Created" } dd { (page::when(e.created_at)) }
            dt { "Updated" } dd { (page::when(e.updated_at)) }
        }
    }
}

fn event_types(types: &[String]) -> Markup {
    html! {
        @if types.is_empty() { span.muted { "all" } }
        @for t in types { code.tag { (t) } " " }
    }
}

/// Deliveries as a table (shared with the deliveries and dead-letter lists).
pub fn delivery_rows(rows: &[Delivery]) -> Markup {
    html! {
        @if rows.is_empty() { p.muted { "None." } } @else {
            table {
                thead { tr { th { "Created" } th { "Event type" } th { "State" } th.num { "Attempts" } th { "Last answer" } } }
                tbody {
                    @for d in rows {
                        tr {
                            td { a href={ "/ui/deliveries/" (d.id) } { (page::when(d.created_at)) } }
                            td { code { (d.event_type) } }
                            td { (page::badge(d.state.as_str())) }
                            td.num { (d.attempts) }
                            td {
                                @if let Some(code) = d.last_status_code { "HTTP " (code) " " }
                                @if let Some(error) = &d.last_error { span.muted { (error) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct ActionForm {
    reason: Option<String>,
    event_type: Option<String>,
    since: Option<String>,
}

#[handler]
pub async fn act(
    viewer: Viewer,
    Data(state): Data<&AppState>,
    Path((id, action)): Path<(Uuid, String)>,
    Form(input): Form<ActionForm>,
) -> Result<Response, UiError> {
    let who = &viewer.principal;
    let done = match action.as_str() {
        "enable" => api::enable(who, state, id).await.map(|_| ("enabled", None))?,
        "disable" => api::disable(who, state, id, form::given(&input.reason).map(str::to_owned))
            .await
            .map(|_| ("disabled", None))?,
        "test" => {
            let test = TestEvent { event_type: form::given(&input.event_type).map(str::to_owned), payload: None };
            api::send_test(who, state, id, test).await.map(|_| ("tested", None))?
        }
        "recover" => {
            let since = form::time("since", &input.since)?.ok_or_else(|| Problem::field("since", "required"))?;
            let recovered = api::recover(who, state, id, since).await?;
            ("recovered", Some(recovered.requeued + recovered.queued))
        }
        "rotate-secret" => {
            let secret = api::rotate_secret(who, state, id, RotateSecret::default()).await?;
            return Ok(endpoint_page(&viewer, state, id, html! {}, Some(secret)).await?.into_response());
        }
        _ => return Err(Problem::not_found("action").into()),
    };
    let count = done.1.map(|n| format!("&count={n}")).unwrap_or_default();
    Ok(Redirect::see_other(format!("/ui/endpoints/{id}?done={}{count}", done.0)).into_response())
}
