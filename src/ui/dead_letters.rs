//! `/ui/dead-letters`: deliveries that will not be retried any more; replay
//! or discard one, or replay every one a filter matches after seeing how
//! many that is.

use maud::{Markup, html};
use poem::web::{Data, Form, Path, Query, Redirect};
use poem::{IntoResponse, Response, handler};
use serde::Deserialize;
use uuid::Uuid;

use super::form;
use super::page::{self, Section, UiError};
use super::session::Viewer;
use crate::api::AppState;
use crate::api::auth::Scope;
use crate::api::deliveries::{self as api, DeliveryState, ReplayFilter};
use crate::api::problem::Problem;
use crate::db::deliveries::DeliveryFilter;

/// The filter of the list and of a bulk replay, as the inputs give it.
#[derive(Deserialize)]
pub struct FilterInput {
    endpoint_id: Option<String>,
    event_type: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
}

impl FilterInput {
    fn replay_filter(&self) -> Result<ReplayFilter, Problem> {
        Ok(ReplayFilter {
            endpoint_id: form::uuid("endpoint_id", &self.endpoint_id)?,
            event_type: form::pattern("event_type", &self.event_type, 200)?,
            since: form::time("since", &self.since)?,
            until: form::time("until", &self.until)?,
        })
    }

    /// The same filter as a query string.
    fn query(&self) -> String {
        form::query(&[
            ("endpoint_id", form::given(&self.endpoint_id)),
            ("event_type", form::given(&self.event_type)),
            ("since", form::given(&self.since)),
            ("until", form::given(&self.until)),
        ])
    }
}

#[handler]
pub async fn list(
    viewer: Viewer,
    Data(state): Data<&AppState>,
    Query(input): Query<FilterInput>,
    Query(done): Query<page::Done>,
) -> Result<Markup, UiError> {
    let page = form::page(&input.cursor)?;
    let f = input.replay_filter()?;
    let filter = DeliveryFilter {
        after: page.after,
        limit: page.fetch(),
        endpoint_id: f.endpoint_id,
        event_type: f.event_type.as_deref(),
        since: f.since,
        until: f.until,
        ..Default::default()
    };
    let mut rows = api::list_dead_letters(&viewer.principal, state, filter).await?;
    let next = page.finish(&mut rows, |d| d.id);
    let content = html! {
        (done.notice())
        (filter_form(&f, "/ui/dead-letters", "Filter"))
        @if viewer.may(Scope::Write) && !rows.is_empty() {
            p { a.button href={ "/ui/dead-letters/replay?" (input.query()) } { "Replay all that match…" } }
        }
        @if rows.is_empty() { p.muted { "No dead letters." } } @else {
            table {
                thead { tr { th { "Created" } th { "Event type" } th { "Endpoint" } th.num { "Attempts" } th { "Last answer" } th {} } }
                tbody {
                    @for d in &rows {
                        tr {
                            td { a href={ "/ui/deliveries/" (d.id) } { (page::when(d.created_at)) } }
                            td { code { (d.event_type) } }
                            td { a href={ "/ui/endpoints/" (d.endpoint_id) } { code { (d.endpoint_id.to_string()[..8]) } } }
                            td.num { (d.attempts) }
                            td {
                                @if let Some(code) = d.last_status_code { "HTTP " (code) " " }
                                @if let Some(error) = &d.last_error { span.muted { (error) } }
                            }
                            td.actions {
                                (page::action_button(&viewer, &format!("/ui/dead-letters/{}/replay", d.id), "Replay", None))
                                (page::action_button(&viewer, &format!("/ui/dead-letters/{}/discard", d.id), "Discard", Some("Discard this dead letter for good?")))
                            }
                        }
                    }
                }
            }
        }
        @if let Some(cursor) = next {
            a.more href={ "/ui/dead-letters?" (input.query()) "&" (form::query(&[("cursor", Some(&cursor))])) } { "Older dead letters →" }
        }
    };
    Ok(page::shell(&viewer, Section::DeadLetters, "Dead letters", content))
}

/// How many a bulk replay would queue, and the button that does it.
#[handler]
pub async fn preview(
    viewer: Viewer,
    Data(state): Data<&AppState>,
    Query(input): Query<FilterInput>,
) -> Result<Markup, UiError> {
    viewer.principal.require(Scope::Write)?;
    let f = input.replay_filter()?;
    let count = api::count_replayable(&viewer.principal, state, &f).await?;
    let content = html! {
        (filter_form(&f, "/ui/dead-letters/replay", "Count again"))
        p.preview { strong #replay-count { (count) } " dead letter(s) of enabled endpoints match." }
        @if count > 0 {
            form method="post" action="/ui/dead-letters/replay" {
                (page::csrf(&viewer))
                (hidden_filter(&f))
                button.primary type="submit" { "Replay " (count) }
            }
        }
        p { a href={ "/ui/dead-letters?" (input.query()) } { "Back to the list" } }
    };
    Ok(page::shell(&viewer, Section::DeadLetters, "Replay dead letters", content))
}

#[handler]
pub async fn replay(
    viewer: Viewer,
    Data(state): Data<&AppState>,
    Form(input): Form<FilterInput>,
) -> Result<Response, UiError> {
    let replayed = api::replay_matching(&viewer.principal, state, input.replay_filter()?).await?;
    Ok(Redirect::see_other(format!("/ui/dead-letters?done=replayed&count={replayed}")).into_response())
}

#[handler]
pub async fn act(
    viewer: Viewer,
    Data(state): Data<&AppState>,
    Path((id, action)): Path<(Uuid, String)>,
) -> Result<Response, UiError> {
    let dead = Some(DeliveryState::Dead);
    let done = match action.as_str() {
        "replay" => api::requeue(&viewer.principal, state, id, dead, "dead_letter.replay").await.map(|_| "replayed")?,
        "discard" => {
            api::cancel(&viewer.principal, state, id, dead, "dead_letter.discard").await.map(|_| "discarded")?
        }
        _ => return Err(Problem::not_found("action").into()),
    };
    Ok(Redirect::see_other(format!("/ui/dead-letters?done={done}")).into_response())
}

fn filter_form(f: &ReplayFilter, action: &str, label: &str) -> Markup {
    html! {
        form.filters method="get" action=(action) {
            label { "Endpoint id" input type="text" name="endpoint_id" value=[f.endpoint_id] size="36"; }
            label { "Event type" input type="text" name="event_type" value=[f.event_type.as_deref()]; }
            label { "Since (UTC)" input type="datetime-local" name="since" value=[f.since.map(form::local_input)]; }
            label { "Until (UTC)" input type="datetime-local" name="until" value=[f.until.map(form::local_input)]; }
            button type="submit" { (label) }
        }
    }
}

fn hidden_filter(f: &ReplayFilter) -> Markup {
    html! {
        @if let Some(id) = f.endpoint_id { input type="hidden" name="endpoint_id" value=(id); }
        @if let Some(t) = &f.event_type { input type="hidden" name="event_type" value=(t); }
        @if let Some(at) = f.since { input type="hidden" name="since" value=(at.to_rfc3339()); }
        @if let Some(at) = f.until { input type="hidden" name="until" value=(at.to_rfc3339()); }
    }
}
