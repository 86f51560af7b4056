//! The tenant portal at `/portal` (issue 11): what a tenant's customers see
//! of hookline, inside the tenant's own product — their endpoints, event
//! types, deliveries and secrets, branded, in an iframe of the configured
//! origins. A link from `POST /v1/portal/sessions` opens it.
//!
//! No cookie: the session travels in a header the portal's script adds, so
//! the portal works in a third-party iframe and needs no CSRF token (no
//! other site can make a browser send that header).

mod pages;
mod session;

use maud::{DOCTYPE, Markup, html};
use poem::http::{HeaderValue, StatusCode, header};
use poem::web::Path;
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route, get, handler, post};

use super::assets;
use super::page::UiError;
use crate::api::AppState;

/// htmx for the portal: error pages are swapped in too (they say what is
/// wrong), except a 401, which the portal's script answers.
const PORTAL_HTMX_CONFIG: &str = r#"{"allowEval":false,"includeIndicatorStyles":false,"allowScriptTags":false,"historyCacheSize":0,"responseHandling":[{"code":"204","swap":false},{"code":"[23]..","swap":true},{"code":"401","swap":false,"error":true},{"code":"...","swap":true,"error":true}]}"#;

/// The portal's route tree, nested at `/portal` by the API's.
pub fn app() -> impl Endpoint {
    Route::new()
        .at("/", get(shell))
        .at("/exchange", post(session::exchange))
        .at("/accent/:file", get(accent))
        .at("/home", get(pages::home))
        .at("/endpoints", post(pages::create_endpoint))
        .at("/endpoints/new", get(pages::new_endpoint))
        .at("/endpoints/:id", get(pages::endpoint))
        .at("/endpoints/:id/event-types", post(pages::set_event_types))
        .at("/endpoints/:id/test", post(pages::send_test))
        .at("/endpoints/:id/secret", post(pages::reveal_secret))
        .at("/endpoints/:id/rotate-secret", post(pages::rotate_secret))
        .at("/deliveries/:id", get(pages::delivery))
        .at("/deliveries/:id/replay", post(pages::replay))
        .catch_all_error(error_fragment)
        .around(secured)
}

/// The page the link opens: empty until its script has a session.
#[handler]
fn shell() -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=(PORTAL_HTMX_CONFIG);
                meta name="referrer" content="no-referrer";
                title { "Webhooks" }
                link rel="stylesheet" href=(*assets::STYLE);
                script src=(*assets::HTMX) defer {}
                script src=(*assets::PORTAL) defer {}
            }
            body.portal {
                main #portal aria-live="polite" { p.muted { "Loading…" } }
            }
        }
    }
}

/// The link's accent colour as a stylesheet (no inline style is allowed).
#[handler]
fn accent(Path(file): Path<String>) -> Response {
    let hex = file.strip_suffix(".css").filter(|h| h.len() == 6 && h.chars().all(|c| c.is_ascii_hexdigit()));
    match hex {
        Some(hex) => Response::builder()
            .content_type("text/css; charset=utf-8")
            .header(header::CACHE_CONTROL, "public, max-age=86400")
            .body(format!(":root {{ --accent: #{hex}; }}\n")),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Errors as a fragment to swap in, saying what is wrong.
async fn error_fragment(error: poem::Error) -> Response {
    let status = error.status();
    let why = match error.downcast_ref::<UiError>() {
        Some(UiError::Problem(problem)) => problem.details().detail.clone(),
        _ if status.is_server_error() => "Something failed on our side.".to_owned(),
        _ => error.to_string(),
    };
    html! { p.notice.error role="alert" { (why) } }.with_status(status).into_response()
}

/// Framed only by the configured origins; no inline script or style.
async fn secured<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let ancestors = req.data::<AppState>().map(|s| s.portal_frame_ancestors.clone()).unwrap_or_default();
    // Forms and the exchange are small: nothing larger is read.
    let body = req.take_body().into_bytes_limit(super::guard::FORM_MAX_BYTES).await?;
    req.set_body(body);
    let mut response = next.call(req).await?.into_response();
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; connect-src 'self'; \
         form-action 'self'; frame-ancestors {ancestors}; base-uri 'none'"
    );
    let headers = response.headers_mut();
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}
