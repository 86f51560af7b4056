//! The page around every view, the small pieces views share, and errors as
//! pages. maud escapes every value it prints: what came from a payload, a
//! header or a receiver's response is text, never markup.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use poem::http::StatusCode;
use poem::web::Redirect;
use poem::{IntoResponse, Request, Response};

use super::assets;
use super::guard::CSRF_FIELD;
use super::session::Viewer;
use crate::api::auth::Scope;
use crate::api::problem::Problem;

/// The dashboard's sections, in the order the navigation lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Endpoints,
    Deliveries,
    DeadLetters,
    Events,
    Sources,
    Tokens,
    Audit,
}

impl Section {
    const ALL: [Section; 8] = [
        Section::Overview,
        Section::Endpoints,
        Section::Deliveries,
        Section::DeadLetters,
        Section::Events,
        Section::Sources,
        Section::Tokens,
        Section::Audit,
    ];

    fn title(self) -> &'static str {
        match self {
            Section::Overview => "Overview",
            Section::Endpoints => "Endpoints",
            Section::Deliveries => "Deliveries",
            Section::DeadLetters => "Dead letters",
            Section::Events => "Events",
            Section::Sources => "Sources",
            Section::Tokens => "Tokens",
            Section::Audit => "Audit log",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Section::Overview => "/ui",
            Section::Endpoints => "/ui/endpoints",
            Section::Deliveries => "/ui/deliveries",
            Section::DeadLetters => "/ui/dead-letters",
            Section::Events => "/ui/events",
            Section::Sources => "/ui/sources",
            Section::Tokens => "/ui/tokens",
            Section::Audit => "/ui/audit",
        }
    }

    /// The scope a token needs to see the section at all.
    fn needs(self) -> Scope {
        match self {
            Section::Tokens | Section::Audit => Scope::Admin,
            _ => Scope::Read,
        }
    }
}

/// A signed-in page.
pub fn shell(viewer: &Viewer, section: Section, title: &str, content: Markup) -> Markup {
    let who = &viewer.principal;
    document(
        title,
        html! {
            header.top {
                a.brand href="/ui" { "hookline" }
                nav aria-label="Sections" {
                    @for s in Section::ALL.into_iter().filter(|s| viewer.may(s.needs())) {
                        a href=(s.path()) aria-current=[(s == section).then_some("page")] { (s.title()) }
                    }
                }
                div.who {
                    span title="The API token this session acts as" {
                        (who.name) " · " (who.scope.as_str())
                        @if let Some(tenant) = &who.tenant { " · tenant " (tenant) }
                    }
                    form method="post" action="/ui/sign-out" {
                        (csrf(viewer))
                        button.link type="submit" { "Sign out" }
                    }
                }
            }
            main {
                h1 { (title) }
                (content)
            }
        },
    )
}

/// A page outside a session (sign-in, errors).
pub fn bare(title: &str, content: Markup) -> Markup {
    document(title, html! { main.bare { (content) } })
}

fn document(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=(assets::HTMX_CONFIG);
                title { (title) " · hookline" }
                link rel="stylesheet" href=(*assets::STYLE);
                script src=(*assets::HTMX) defer {}
            }
            body hx-boost="true" { (body) }
        }
    }
}

/// The hidden field every changing form carries.
pub fn csrf(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(viewer.csrf()); }
}

/// A one-button form posting to `action`, shown only to tokens that may
/// write; `confirm` asks first (with JavaScript on).
pub fn action_button(viewer: &Viewer, action: &str, label: &str, confirm: Option<&str>) -> Markup {
    html! {
        @if viewer.may(Scope::Write) {
            form.inline method="post" action=(action) hx-confirm=[confirm] {
                (csrf(viewer))
                button type="submit" { (label) }
            }
        }
    }
}

/// A time, shown relative to now with the exact UTC time on hover.
pub fn when(at: DateTime<Utc>) -> Markup {
    let exact = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    html! { time datetime=(exact) title=(exact) { (ago(Utc::now() - at)) } }
}

pub fn maybe_when(at: Option<DateTime<Utc>>) -> Markup {
    html! { @match at { Some(at) => (when(at)), None => span.muted { "—" } } }
}

fn ago(elapsed: chrono::TimeDelta) -> String {
    let s = elapsed.num_seconds();
    match s {
        i64::MIN..0 => format!("in {}", ago(-elapsed).trim_end_matches(" ago")),
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..86400 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86400),
    }
}

/// A state (delivery state, circuit state) as a coloured label.
pub fn badge(state: &str) -> Markup {
    html! { span class={ "badge " (state) } { (state.replace('_', " ")) } }
}

pub fn percent(rate: Option<f64>) -> Markup {
    html! { @match rate { Some(r) => { (format!("{:.1} %", r * 100.0)) }, None => span.muted { "—" } } }
}

pub fn millis(ms: Option<f64>) -> Markup {
    html! { @match ms { Some(ms) => { (format!("{ms:.0} ms")) }, None => span.muted { "—" } } }
}

/// What a change tells the page it redirects to: `?done=<what>&count=<n>`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Done {
    done: Option<String>,
    count: Option<i64>,
}

impl Done {
    pub fn notice(&self) -> Markup {
        notice(self.done.as_deref(), self.count)
    }
}

/// The message a change leaves for the page it returns to (`?done=`); only
/// known keys, so a link cannot make the page say anything.
fn notice(done: Option<&str>, count: Option<i64>) -> Markup {
    let text = match done {
        Some("enabled") => "Enabled.".to_owned(),
        Some("disabled") => "Disabled: its waiting deliveries moved to the dead letters.".to_owned(),
        Some("tested") => "Test event queued.".to_owned(),
        Some("recovered") => format!("Recovered: {} deliveries queued again.", count.unwrap_or(0)),
        Some("retried") => "Queued again, due now.".to_owned(),
        Some("cancelled") => "Cancelled.".to_owned(),
        Some("replayed") => format!("{} dead letter(s) queued again.", count.unwrap_or(1)),
        Some("discarded") => "Discarded.".to_owned(),
        _ => return html! {},
    };
    html! { p.notice role="status" { (text) } }
}

/// A `next` target that stays on the dashboard (no open redirect).
pub fn local_target(next: Option<&str>) -> String {
    match next {
        Some(next) if next.starts_with("/ui") && !next.starts_with("//") && !next.contains('\\') => next.to_owned(),
        _ => "/ui".to_owned(),
    }
}

/// Why a dashboard request failed, answered as a page.
#[derive(Debug)]
pub enum UiError {
    /// No live session: to the sign-in page, and back here after.
    SignIn {
        next: String,
    },
    Problem(Problem),
}

impl UiError {
    pub fn sign_in(req: &Request) -> poem::Error {
        let uri = req.original_uri();
        let next = uri.path_and_query().map_or("/ui", |p| p.as_str()).to_owned();
        poem::Error::from(UiError::SignIn { next })
    }
}

impl std::fmt::Display for UiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UiError::SignIn { .. } => f.write_str("not signed in"),
            UiError::Problem(p) => f.write_str(&p.details().detail),
        }
    }
}

impl std::error::Error for UiError {}

impl poem::error::ResponseError for UiError {
    fn status(&self) -> StatusCode {
        match self {
            UiError::SignIn { .. } => StatusCode::SEE_OTHER,
            UiError::Problem(p) => {
                StatusCode::from_u16(p.details().status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    fn as_response(&self) -> Response {
        match self {
            UiError::SignIn { next } => {
                let query: String =
                    url::form_urlencoded::Serializer::new(String::new()).append_pair("next", next).finish();
                Redirect::see_other(format!("/ui/sign-in?{query}")).into_response()
            }
            UiError::Problem(p) => {
                let details = p.details();
                let mut why = details.detail.clone();
                if let Some(field) = &details.field {
                    why = format!("{field}: {why}");
                }
                refusal(self.status(), &why)
            }
        }
    }
}

impl From<Problem> for UiError {
    fn from(problem: Problem) -> Self {
        UiError::Problem(problem)
    }
}

impl From<crate::db::Error> for UiError {
    fn from(error: crate::db::Error) -> Self {
        UiError::Problem(Problem::from(error))
    }
}

impl From<tokio_postgres::Error> for UiError {
    fn from(error: tokio_postgres::Error) -> Self {
        UiError::Problem(Problem::from(error))
    }
}

/// An error page with this status.
pub fn refusal(status: StatusCode, why: &str) -> Response {
    let page = bare(
        status.canonical_reason().unwrap_or("Error"),
        html! {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p.notice.error { (why) }
            p { a href="/ui" { "Back to the dashboard" } }
        },
    );
    page.with_status(status).into_response()
}

/// Every error under `/ui` as a page (the API's are problem documents).
pub async fn error_response(error: poem::Error) -> Response {
    if error.is::<UiError>() {
        return error.into_response();
    }
    let status = error.status();
    let why = if status.is_server_error() { "Something failed on our side; the log has the details." } else { "" };
    let why = if why.is_empty() { error.to_string() } else { why.to_owned() };
    refusal(status, &why)
}
