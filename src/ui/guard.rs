//! What every dashboard request passes: changes only from this origin with
//! the session's CSRF token, and every answer with headers that keep what
//! it shows from running script or being framed.

use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};

use super::page;
use super::session;
use crate::api::AppState;

/// No inline script or style anywhere: a payload or a receiver's response
/// that slipped past escaping still could not run.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Forms are a few fields; a larger body is not one of ours.
pub const FORM_MAX_BYTES: usize = 64 * 1024;

/// The form field (and, for scripts, the header) carrying the CSRF token.
pub const CSRF_FIELD: &str = "_csrf";
const CSRF_HEADER: &str = "x-csrf-token";

pub async fn guard<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
    if changes {
        if !same_origin(&req) {
            return Ok(secured(page::refusal(StatusCode::FORBIDDEN, "This request came from another site.")));
        }
        let body = req.take_body().into_bytes_limit(FORM_MAX_BYTES).await?;
        // Signing in has no session yet: its form carries the token instead.
        let signing_in = req.original_uri().path() == format!("{}/sign-in", super::PREFIX);
        if !signing_in && !csrf_ok(&req, &body) {
            let why = "This form has expired or did not come from this dashboard: reload the page and try again.";
            return Ok(secured(page::refusal(StatusCode::FORBIDDEN, why)));
        }
        req.set_body(body);
    }
    let response = next.call(req).await?.into_response();
    Ok(secured(response))
}

/// A browser names the site a change came from in `Origin`: it must be
/// hookline's (`HOOKLINE_PUBLIC_URL`, which a proxy in front keeps), or the
/// host the request was sent to. (No `Origin`: not a browser's cross-site
/// request.)
fn same_origin(req: &Request) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let Some(origin) = origin.to_str().ok().and_then(|o| url::Url::parse(o).ok()) else {
        return false; // `null`: a sandboxed or opaque origin
    };
    let public = req.data::<AppState>().and_then(|s| url::Url::parse(&s.public_url).ok());
    if public.is_some_and(|p| p.origin() == origin.origin()) {
        return true;
    }
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let origin_host = match origin.port() {
        Some(port) => format!("{}:{port}", origin.host_str().unwrap_or_default()),
        None => origin.host_str().unwrap_or_default().to_owned(),
    };
    origin_host.eq_ignore_ascii_case(host)
}

fn csrf_ok(req: &Request, body: &[u8]) -> bool {
    let Some(key) = session::session_key(req) else {
        return false;
    };
    let from_header = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let from_form = || url::form_urlencoded::parse(body).find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v.into_owned());
    from_header.or_else(from_form).is_some_and(|given| session::csrf_matches(&key, &given))
}

fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut poem::http::HeaderMap, name, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "same-origin");
    // Pages show secrets once and data that changes: never from a cache.
    // The assets set their own (their names carry their version).
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    response
}
