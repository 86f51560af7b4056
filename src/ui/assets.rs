//! The dashboard's and the portal's static files, embedded in the binary.
//! Their names carry a hash of their content, so browsers may keep them
//! for good and still never run an old one.

use std::sync::LazyLock;

use poem::http::{StatusCode, header};
use poem::web::Path;
use poem::{IntoResponse, Response, handler};
use sha2::{Digest, Sha256};

/// htmx 2.0.11 (BSD Zero Clause), unmodified from the npm package.
const HTMX_JS: &str = include_str!("assets/htmx-2.0.11.min.js");
const STYLE_CSS: &str = include_str!("assets/style.css");
const PORTAL_JS: &str = include_str!("assets/portal.js");

pub static HTMX: LazyLock<String> = LazyLock::new(|| path_of("htmx", "js", HTMX_JS));
pub static STYLE: LazyLock<String> = LazyLock::new(|| path_of("style", "css", STYLE_CSS));
pub static PORTAL: LazyLock<String> = LazyLock::new(|| path_of("portal", "js", PORTAL_JS));

/// htmx as the Content-Security-Policy allows it: no `eval`, no inline
/// indicator style, no scripts from swapped content, no copies of pages
/// in local storage.
pub const HTMX_CONFIG: &str =
    r#"{"allowEval":false,"includeIndicatorStyles":false,"allowScriptTags":false,"historyCacheSize":0}"#;

fn path_of(name: &str, extension: &str, content: &str) -> String {
    let digest = hex::encode(Sha256::digest(content.as_bytes()));
    format!("/ui/assets/{name}-{}.{extension}", &digest[..12])
}

#[handler]
pub fn serve(Path(name): Path<String>) -> Response {
    let path = format!("/ui/assets/{name}");
    let (content_type, body) = if path == *HTMX {
        ("text/javascript; charset=utf-8", HTMX_JS)
    } else if path == *STYLE {
        ("text/css; charset=utf-8", STYLE_CSS)
    } else if path == *PORTAL {
        ("text/javascript; charset=utf-8", PORTAL_JS)
    } else {
        return StatusCode::NOT_FOUND.into_response();
    };
    Response::builder()
        .content_type(content_type)
        .header(header::CACHE_CONTROL, "public, max-age=31536000, immutable")
        .body(body)
}
