//! The portal's views, as fragments the portal's page swaps in: the
//! tenant's endpoints, one endpoint with its deliveries, a delivery with
//! its attempts, and the forms that change them. Every change goes through
//! the API's operations as the portal's principal, so tenant, scope and
//! audit are the API's; the link's capabilities and endpoint list are
//! checked here first.

use maud::{Markup, html};
use poem::handler;
use poem::web::{Data, Form, Path};
use serde::Deserialize;
use uuid::Uuid;

use super::session::PortalViewer;
use crate::api::AppState;
use crate::api::deliveries::{self as deliveries_api, Delivery, DeliveryState};
use crate::api::endpoints::{self as api, Endpoint, EndpointCreate, EndpointUpdate, RotateSecret, TestEvent};
use crate::api::portal::PortalCapability;
use crate::api::problem::Problem;
use crate::db;
use crate::db::dashboard::{EndpointSearch, HealthFilter};
use crate::db::deliveries::DeliveryFilter;
use crate::ui::deliveries::attempt;
use crate::ui::page::{self, UiError};

/// Endpoints the portal lists at most (a tenant's customer has a few).
const ENDPOINTS_SHOWN: i64 = 200;

/// The branding header, then `content`.
fn frame(viewer: &PortalViewer, content: Markup) -> Markup {
    let branding = &viewer.link.branding;
    let product = branding["product_name"].as_str().unwrap_or("Webhooks");
    html! {
        @if let Some(colour) = branding["accent_color"].as_str() {
            link rel="stylesheet" href={ "/portal/accent/" (colour.trim_start_matches('#')) ".css" };
        }
        header.portal-top {
            @if let Some(logo) = branding["logo_url"].as_str() { img.logo src=(logo) alt=""; }
            a.brand href="#" hx-get="/portal/home" hx-target="#portal" { (product) }
        }
        (content)
    }
}

fn link(path: &str, text: Markup) -> Markup {
    html! { a href="#" hx-get=(path) hx-target="#portal" { (text) } }
}

#[handler]
pub async fn home(viewer: PortalViewer, Data(state): Data<&AppState>) -> Result<Markup, UiError> {
    home_with(&viewer, state, html! {}).await
}

async fn home_with(viewer: &PortalViewer, state: &AppState, notice: Markup) -> Result<Markup, UiError> {
    let search = EndpointSearch {
        tenant: Some(&viewer.link.tenant),
        after: None,
        limit: ENDPOINTS_SHOWN,
        text: None,
        health: HealthFilter::All,
        only: viewer.link.endpoint_ids.as_deref(),
    };
    let client = state.client().await?;
    let rows = db::dashboard::endpoints(&client, &search).await?;
    let types = catalogue(viewer, state).await?;
    Ok(frame(
        viewer,
        html! {
            (notice)
            h1 { "Endpoints" }
            p.muted { "Where we send your webhooks, and how each one is doing." }
            @if viewer.may_add_endpoints() {
                p { a.button href="#" hx-get="/portal/endpoints/new" hx-target="#portal" { "Add endpoint" } }
            }
            @if rows.is_empty() { p.muted { "No endpoints yet." } } @else {
                table {
                    thead { tr { th { "Endpoint" } th { "Event types" } th { "Status" } th.num { "Success 24 h" } } }
                    tbody {
                        @for row in &rows {
                            @let e = Endpoint::from(&row.endpoint);
                            tr {
                                td {
                                    (link(&format!("/portal/endpoints/{}", e.id), html! { (e.url) }))
                                    @if !e.description.is_empty() { br; span.muted { (e.description) } }
                                }
                                td { (event_types(&e.event_types)) }
                                td { (page::badge(if e.enabled { &row.circuit_state } else { "disabled" })) }
                                td.num { (page::percent(row.success_rate_24h)) }
                            }
                        }
                    }
                }
            }
            h2 { "Event types" }
            @if types.is_empty() { p.muted { "No event types are described yet." } }
            @for t in &types {
                details.event-type {
                    summary { code { (t.settings.name) } @if !t.settings.description.is_empty() { " — " (t.settings.description) } }
                    @if let Some(example) = &t.settings.example {
                        p.muted { "Example payload:" }
                        pre.payload { (serde_json::to_string_pretty(example).unwrap_or_default()) }
                    }
                    @if let Some(schema) = &t.settings.schema {
                        p.muted { "JSON Schema of the payload:" }
                        pre.payload { (serde_json::to_string_pretty(schema).unwrap_or_default()) }
                    }
                }
            }
        },
    ))
}

#[handler]
pub async fn endpoint(
    viewer: PortalViewer,
    Data(state): Data<&AppState>,
    Path(id): Path<Uuid>,
) -> Result<Markup, UiError> {
    endpoint_with(&viewer, state, id, html! {}).await
}

async fn endpoint_with(viewer: &PortalViewer, state: &AppState, id: Uuid, notice: Markup) -> Result<Markup, UiError> {
    viewer.endpoint(id)?;
    let who = &viewer.principal;
    let e = Endpoint::from(&api::get_endpoint(who, state, id).await?);
    let stats = api::stats(who, state, id).await?;
    let filter = DeliveryFilter { endpoint_id: Some(id), limit: 25, ..Default::default() };
    let recent = deliveries_api::list_deliveries(who, state, filter).await?;
    let base = format!("/portal/endpoints/{id}");
    let subscriptions = match viewer.can(PortalCapability::ManageEndpoints) {
        true => Some(subscriptions(viewer, state, &e).await?),
        false => None,
    };
    Ok(frame(
        viewer,
        html! {
            p { (link("/portal/home", html! { "← Endpoints" })) }
            (notice)
            h1 { (e.url) }
            @if !e.description.is_empty() { p.subtitle { (e.description) } }
            section.cards {
                div.card {
                    h2 { "Status" }
                    dl {
                        dt { "Delivering" } dd { (page::badge(if e.enabled { &stats.circuit_state } else { "disabled" })) }
                        @if let Some(reason) = &e.disabled_reason { dt { "Why" } dd { (reason) } }
                        dt { "Last success" } dd { (page::maybe_when(stats.last_success_at)) }
                        dt { "Last failure" } dd { (page::maybe_when(stats.last_failure_at)) }
                    }
                }
                div.card {
                    h2 { "Last 24 hours" }
                    dl {
                        dt { "Success rate" } dd { (page::percent(stats.success_rate)) }
                        dt { "Delivered" } dd { (stats.succeeded) }
                        dt { "Failed" } dd { (stats.dead) }
                        dt { "Waiting" } dd { (stats.pending) }
                    }
                }
            }
            @if let Some(subscriptions) = subscriptions {
                (subscriptions)
                form.inline hx-post={ (base) "/test" } hx-target="#portal" {
                    button type="submit" { "Send a test event" }
                }
            } @else {
                p { "Event types: " (event_types(&e.event_types)) }
            }
            @if viewer.can(PortalCapability::RevealSecrets) {
                form.inline hx-post={ (base) "/secret" } hx-target="#portal" { button type="submit" { "Show signing secret" } }
                form.inline hx-post={ (base) "/rotate-secret" } hx-target="#portal"
                    hx-confirm="Rotate the signing secret? The old one keeps signing for 24 hours." {
                    button type="submit" { "Rotate signing secret" }
                }
            }
            h2 { "Recent deliveries" }
            (delivery_rows(&recent))
        },
    ))
}

/// The event types the endpoint receives, to tick from the tenant's catalogue.
async fn subscriptions(viewer: &PortalViewer, state: &AppState, e: &Endpoint) -> Result<Markup, UiError> {
    let catalogue = catalogue(viewer, state).await?;
    let mut names: Vec<String> = catalogue.into_iter().map(|t| t.settings.name).collect();
    for own in &e.event_types {
        if !names.contains(own) {
            names.push(own.clone());
        }
    }
    Ok(html! {
        form.subscriptions hx-post={ "/portal/endpoints/" (e.id) "/event-types" } hx-target="#portal" {
            fieldset {
                legend { "Event types (none ticked: all of them)" }
                @for name in &names {
                    label { input type="checkbox" name="event_type" value=(name) checked[e.event_types.contains(name)]; " " code { (name) } }
                }
            }
            button type="submit" { "Save event types" }
        }
    })
}

#[handler]
pub async fn new_endpoint(viewer: PortalViewer) -> Result<Markup, UiError> {
    if !viewer.may_add_endpoints() {
        return Err(Problem::forbidden("this portal link does not allow adding endpoints").into());
    }
    Ok(frame(&viewer, new_endpoint_form(None)))
}

fn new_endpoint_form(error: Option<&str>) -> Markup {
    html! {
        p { (link("/portal/home", html! { "← Endpoints" })) }
        h1 { "Add endpoint" }
        @if let Some(error) = error { p.notice.error role="alert" { (error) } }
        form.stacked hx-post="/portal/endpoints" hx-target="#portal" {
            label { "URL" input type="url" name="url" required placeholder="https://example.com/webhooks"; }
            label { "Description" input type="text" name="description" maxlength="500"; }
            button.primary type="submit" { "Add" }
        }
    }
}

#[derive(Deserialize)]
pub struct NewEndpointForm {
    url: String,
    description: Option<String>,
}

#[handler]
pub async fn create_endpoint(
    viewer: PortalViewer,
    Data(state): Data<&AppState>,
    Form(input): Form<NewEndpointForm>,
) -> Result<Markup, UiError> {
    if !viewer.may_add_endpoints() {
        return Err(Problem::forbidden("this portal link does not allow adding endpoints").into());
    }
    let create = EndpointCreate {
        url: input.url.trim().to_owned(),
        description: input.description.filter(|d| !d.trim().is_empty()),
        ..Default::default()
    };
    let created = match api::create_endpoint(&viewer.principal, state, create).await {
        Ok(created) => created,
        // A bad URL is the customer's to fix: the form again, saying why.
        Err(problem) if problem.details().status == 400 => {
            return Ok(frame(&viewer, new_endpoint_form(Some(&problem.details().detail))));
        }
        Err(problem) => return Err(problem.into()),
    };
    let notice = html! {
        div.notice role="status" {
            p { "Endpoint added." }
            @if viewer.can(PortalCapability::RevealSecrets) {
                p { "Its signing secret — keep it to verify our signatures:" }
                code.reveal { (created.secret) }
            }
        }
    };
    endpoint_with(&viewer, state, created.endpoint.id, notice).await
}

#[derive(Deserialize)]
pub struct SubscriptionsForm {
    /// Repeated: one per ticked box.
    #[serde(default)]
    event_type: Vec<String>,
}

#[handler]
pub async fn set_event_types(
    viewer: PortalViewer,
    Data(state): Data<&AppState>,
    Path(id): Path<Uuid>,
    body: String,
) -> Result<Markup, UiError> {
    viewer.allows(PortalCapability::ManageEndpoints, id)?;
    // Repeated fields: read as pairs, not as a map.
    let input = SubscriptionsForm {
        event_type: url::form_urlencoded::parse(body.as_bytes())
            .filter(|(k, _)| k == "event_type")
            .map(|(_, v)| v.into_owned())
            .collect(),
    };
    let changes = EndpointUpdate {
        event_types: poem_openapi::types::MaybeUndefined::Value(input.event_type),
        ..Default::default()
    };
    api::update_endpoint(&viewer.principal, state, id, changes).await?;
    endpoint_with(&viewer, state, id, html! { p.notice role="status" { "Event types saved." } }).await
}

#[handler]
pub async fn send_test(
    viewer: PortalViewer,
    Data(state): Data<&AppState>,
    Path(id): Path<Uuid>,
) -> Result<Markup, UiError> {
    viewer.allows(PortalCapability::ManageEndpoints, id)?;
    api::send_test(&viewer.principal, state, id, TestEvent::default()).await?;
    endpoint_with(&viewer, state, id, html! { p.notice role="status" { "Test event sent." } }).await
}

#[handler]
pub async fn reveal_secret(
    viewer: PortalViewer,
    Data(state): Data<&AppState>,
    Path(id): Path<Uuid>,
) -> Result<Markup, UiError> {
    viewer.allows(PortalCapability::RevealSecrets, id)?;
    let secret = api::secret(&viewer.principal, state, id).await?;
    let notice = html! { div.notice.secret role="status" { p { "Signing secret:" } code.reveal { (secret.secret) } } };
    endpoint_with(&viewer, state, id, notice).await
}

#[handler]
pub async fn rotate_secret(
    viewer: PortalViewer,
    Data(state): Data<&AppState>,
    Path(id): Path<Uuid>,
) -> Result<Markup, UiError> {
    viewer.allows(PortalCapability::RevealSecrets, id)?;
    let secret = api::rotate_secret(&viewer.principal, state, id, RotateSecret::default()).await?;
    let notice = html! {
        div.notice.secret role="status" {
            p { "New signing secret (the previous one keeps signing for 24 hours):" }
            code.reveal { (secret.secret) }
        }
    };
    endpoint_with(&viewer, state, id, notice).await
}

#[handler]
pub async fn delivery(
    viewer: PortalViewer,
    Data(state): Data<&AppState>,
    Path(id): Path<Uuid>,
) -> Result<Markup, UiError> {
    delivery_with(&viewer, state, id, html! {}).await
}

async fn delivery_with(viewer: &PortalViewer, state: &AppState, id: Uuid, notice: Markup) -> Result<Markup, UiError> {
    let d = deliveries_api::get_delivery(&viewer.principal, state, id).await?;
    if !viewer.sees_endpoint(d.endpoint_id) {
        return Err(Problem::not_found("delivery").into());
    }
    let attempts = deliveries_api::attempts_of(&viewer.principal, state, id).await?;
    let event = crate::api::events::find_event(&viewer.principal, state, d.event_id).await?;
    // What the endpoint was sent is the transformation's output, not the event.
    let receiver = Endpoint::from(&api::get_endpoint(&viewer.principal, state, d.endpoint_id).await?);
    let transformed = receiver.transformation.is_some();
    Ok(frame(
        viewer,
        html! {
            p { (link(&format!("/portal/endpoints/{}", d.endpoint_id), html! { "← Endpoint" })) }
            (notice)
            h1 { code { (d.event_type) } " " (page::badge(d.state.as_str())) }
            p.muted { "Created " (page::when(d.created_at)) ", " (d.attempts) " attempt(s)." }
            @if viewer.can(PortalCapability::Replay) && d.state == DeliveryState::Dead {
                form.inline hx-post={ "/portal/deliveries/" (d.id) "/replay" } hx-target="#portal" {
                    button type="submit" { "Send again" }
                }
            }
            h2 { "Attempts" }
            @if attempts.is_empty() { p.muted { "No attempt yet." } }
            @for a in &attempts { (attempt(a, d.event_id, Some(&receiver))) }
            @if let Some(e) = event.filter(|_| !transformed) {
                h2 { "Payload" }
                pre.payload { (serde_json::to_string_pretty(&e.payload).unwrap_or_default()) }
            }
        },
    ))
}

#[handler]
pub async fn replay(
    viewer: PortalViewer,
    Data(state): Data<&AppState>,
    Path(id): Path<Uuid>,
) -> Result<Markup, UiError> {
    viewer.require(PortalCapability::Replay)?;
    let d = deliveries_api::get_delivery(&viewer.principal, state, id).await?;
    if !viewer.sees_endpoint(d.endpoint_id) {
        return Err(Problem::not_found("delivery").into());
    }
    // Failed deliveries only: not a succeeded one again, nor one an operator cancelled.
    deliveries_api::requeue(&viewer.principal, state, id, Some(DeliveryState::Dead), "dead_letter.replay").await?;
    delivery_with(&viewer, state, id, html! { p.notice role="status" { "Queued to be sent again." } }).await
}

/// The event types the tenant's customers may subscribe to: the shared ones
/// and the tenant's own, not deprecated.
async fn catalogue(viewer: &PortalViewer, state: &AppState) -> Result<Vec<db::event_types::EventType>, Problem> {
    let page = crate::api::page::PageRequest::parse(Some(crate::api::page::MAX_LIMIT), None)?;
    crate::api::event_types::list_event_types(&viewer.principal, state, page, None, Some(false)).await
}

fn event_types(types: &[String]) -> Markup {
    html! {
        @if types.is_empty() { span.muted { "all" } }
        @for t in types { code.tag { (t) } " " }
    }
}

fn delivery_rows(rows: &[Delivery]) -> Markup {
    html! {
        @if rows.is_empty() { p.muted { "None yet." } } @else {
            table {
                thead { tr { th { "Sent" } th { "Event type" } th { "Status" } th { "Last answer" } } }
                tbody {
                    @for d in rows {
                        tr {
                            td { (link(&format!("/portal/deliveries/{}", d.id), page::when(d.created_at))) }
                            td { code { (d.event_type) } }
                            td { (page::badge(d.state.as_str())) }
                            td { @if let Some(code) = d.last_status_code { "HTTP " (code) } }
                        }
                    }
                }
            }
        }
    }
}
