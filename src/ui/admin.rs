//! `/ui/sources`, `/ui/tokens` and `/ui/audit`: inbound sources with their
//! counts, and for admins the API tokens and the audit log.

use maud::{Markup, html};
use poem::handler;
use poem::web::{Data, Query};
use serde::Deserialize;

use super::form;
use super::page::{self, Section, UiError};
use super::session::Viewer;
use crate::api::AppState;

#[derive(Deserialize)]
pub struct PageQuery {
    cursor: Option<String>,
}

fn older(path: &str, cursor: Option<String>) -> Markup {
    html! {
        @if let Some(cursor) = cursor {
            a.more href={ (path) "?" (form::query(&[("cursor", Some(&cursor))])) } { "More →" }
        }
    }
}

#[handler]
pub async fn sources(
    viewer: Viewer,
    Data(state): Data<&AppState>,
    Query(q): Query<PageQuery>,
) -> Result<Markup, UiError> {
    let page = form::page(&q.cursor)?;
    let mut rows = crate::api::sources::list_sources(&viewer.principal, state, page, None).await?;
    let next = page.finish(&mut rows, |s| s.id);
    let content = html! {
        p.muted { "Third parties send to these at " code { "/in/{name}" } "; hookline verifies and stores what they send as events." }
        @if rows.is_empty() { p.muted { "No sources." } } @else {
            table {
                thead { tr {
                    th { "Name" } th { "Tenant" } th { "Event type" } th { "State" }
                    th.num { "Accepted" } th.num { "Duplicates" } th.num { "Failed verifications" } th { "Last failure" }
                } }
                tbody {
                    @for s in &rows {
                        tr {
                            td { code { (s.receive_path) } @if !s.description.is_empty() { br; span.muted { (s.description) } } }
                            td { (s.tenant) }
                            td { code { (s.event_type) } }
                            td { (page::badge(if s.enabled { "enabled" } else { "disabled" })) }
                            td.num { (s.accepted) }
                            td.num { (s.duplicates) }
                            td.num { (s.failed_verifications) }
                            td { (page::maybe_when(s.last_failed_at)) @if let Some(why) = &s.last_failure { br; span.muted { (why) } } }
                        }
                    }
                }
            }
        }
        (older("/ui/sources", next))
    };
    Ok(page::shell(&viewer, Section::Sources, "Sources", content))
}

#[handler]
pub async fn tokens(
    viewer: Viewer,
    Data(state): Data<&AppState>,
    Query(q): Query<PageQuery>,
) -> Result<Markup, UiError> {
    let page = form::page(&q.cursor)?;
    let mut rows = crate::api::tokens::list_tokens(&viewer.principal, state, page).await?;
    let next = page.finish(&mut rows, |t| t.id);
    let content = html! {
        p.muted { "Only a token's first characters are kept in the clear; make and delete tokens with the API or " code { "hookline token" } "." }
        table {
            thead { tr { th { "Name" } th { "Scope" } th { "Tenant" } th { "Starts with" } th { "Created" } } }
            tbody {
                @for t in &rows {
                    tr {
                        td { (t.name) }
                        td { (t.scope) }
                        td { @match &t.tenant { Some(tenant) => (tenant), None => span.muted { "all" } } }
                        td { code { (t.prefix) "…" } }
                        td { (page::when(t.created_at)) }
                    }
                }
            }
        }
        (older("/ui/tokens", next))
    };
    Ok(page::shell(&viewer, Section::Tokens, "API tokens", content))
}

#[handler]
pub async fn audit(
    viewer: Viewer,
    Data(state): Data<&AppState>,
    Query(q): Query<PageQuery>,
) -> Result<Markup, UiError> {
    let page = form::page(&q.cursor)?;
    let mut rows = crate::api::audit::list_audit(&viewer.principal, state, page).await?;
    let next = page.finish(&mut rows, |e| e.id);
    let content = html! {
        table {
            thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Object" } th { "Tenant" } } }
            tbody {
                @for e in &rows {
                    tr {
                        td { (page::when(e.at)) }
                        td { (e.token_name) }
                        td { code { (e.action) } }
                        td { (e.object_type) @if let Some(id) = &e.object_id { " " code { (id) } } }
                        td { @if let Some(tenant) = &e.tenant { (tenant) } }
                    }
                }
            }
        }
        (older("/ui/audit", next))
    };
    Ok(page::shell(&viewer, Section::Audit, "Audit log", content))
}
