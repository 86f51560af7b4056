//! The dashboard's two static files, embedded in the binary. Their names
//! carry their version, so browsers may keep them for good.

use poem::http::{StatusCode, header};
use poem::web::Path;
use poem::{IntoResponse, Response, handler};

/// htmx 2.0.11 (BSD Zero Clause), unmodified from the npm package.
pub const HTMX: &str = "/ui/assets/htmx-2.0.11.min.js";
pub const STYLE: &str = concat!("/ui/assets/style-", env!("CARGO_PKG_VERSION"), ".css");

const HTMX_JS: &str = include_str!("assets/htmx-2.0.11.min.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// htmx as the Content-Security-Policy allows it: no `eval`, no inline
/// indicator style, no scripts from swapped content.
pub const HTMX_CONFIG: &str =
    r#"{"allowEval":false,"includeIndicatorStyles":false,"allowScriptTags":false,"historyCacheSize":0}"#;

#[handler]
pub fn serve(Path(name): Path<String>) -> Response {
    let (content_type, body) = match format!("/ui/assets/{name}") {
        path if path == HTMX => ("text/javascript; charset=utf-8", HTMX_JS),
        path if path == STYLE => ("text/css; charset=utf-8", STYLE_CSS),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    Response::builder()
        .content_type(content_type)
        .header(header::CACHE_CONTROL, "public, max-age=31536000, immutable")
        .body(body)
}
