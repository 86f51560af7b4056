//! RFC 9110 wants a 405 to list the allowed methods in `Allow`; poem answers
//! 405 without it. This middleware derives the list from the OpenAPI
//! document's paths.

use std::sync::{Arc, OnceLock};

use poem::http::{HeaderValue, StatusCode, header};
use poem::{Endpoint, Request, Response};

/// `(path segments, methods)` of every documented path.
fn routes() -> &'static [(Vec<String>, String)] {
    static ROUTES: OnceLock<Vec<(Vec<String>, String)>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let document: serde_json::Value =
            serde_json::from_str(&super::openapi_service().spec()).expect("the document is JSON");
        let mut routes = Vec::new();
        for (path, operations) in document["paths"].as_object().into_iter().flatten() {
            let mut methods: Vec<String> =
                operations.as_object().into_iter().flatten().map(|(m, _)| m.to_ascii_uppercase()).collect();
            methods.sort();
            let segments = path.trim_end_matches('/').split('/').map(str::to_owned).collect();
            routes.push((segments, methods.join(", ")));
        }
        routes
    })
}

fn allowed(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    routes()
        .iter()
        .find(|(pattern, _)| {
            pattern.len() == segments.len() && pattern.iter().zip(&segments).all(|(p, s)| p.starts_with('{') || p == s)
        })
        .map(|(_, methods)| methods.as_str())
}

pub async fn add_allow_header<E: Endpoint>(next: Arc<E>, request: Request) -> poem::Result<Response> {
    let path = request.uri().path().to_owned();
    let mut response = next.get_response(request).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && let Some(methods) = allowed(&path)
        && let Ok(value) = HeaderValue::from_str(methods)
    {
        response.headers_mut().insert(header::ALLOW, value);
    }
    Ok(response)
}
