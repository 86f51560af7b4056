//! The HTTP API. The OpenAPI service is built without any IO, so
//! `hookline openapi` prints the document with no database around.

mod ops;

use deadpool_postgres::Pool;
use poem::{EndpointExt, Route};
use poem_openapi::OpenApiService;

/// The API version in the OpenAPI document; bumped by hand on contract changes.
pub const API_VERSION: &str = "1.0.0";

pub type Api = ops::OpsApi;

pub fn openapi_service() -> OpenApiService<Api, ()> {
    OpenApiService::new(ops::OpsApi, "hookline", API_VERSION)
        .description("Webhook delivery whose whole state lives in PostgreSQL.")
}

/// The route tree served by `hookline serve`.
pub fn app(pool: Pool) -> impl poem::Endpoint {
    let service = openapi_service();
    let docs = service.swagger_ui();
    let spec = service.spec_endpoint();
    Route::new().nest("/", service).nest("/docs", docs).at("/openapi.json", spec).data(pool)
}
