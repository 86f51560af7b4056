//! The operator dashboard at `/ui` (issue 11): server-rendered HTML (maud),
//! htmx for interaction, its two assets embedded in the binary. Pages read
//! and change through the API's own operations (`crate::api::endpoints`,
//! `crate::api::deliveries`) with the signed-in token's scope and tenant,
//! so a rule lives in one place for both.
//!
//! A page module reads: query → handler → markup. Every change is a POST
//! form (CSRF-checked by [`guard`]) answered with a redirect, so the pages
//! work without JavaScript; htmx only makes them quicker.

mod admin;
mod assets;
mod chart;
mod dead_letters;
mod deliveries;
mod endpoints;
mod events;
mod form;
mod guard;
mod overview;
mod page;
pub mod portal;
mod session;

use poem::middleware::CookieJarManager;
use poem::{Endpoint, EndpointExt, Route, get, post};

/// Where the dashboard is served.
pub const PREFIX: &str = "/ui";

/// The dashboard's route tree, nested at [`PREFIX`] by the API's.
pub fn app() -> impl Endpoint {
    Route::new()
        .at("/", get(overview::show))
        .at("/sign-in", get(session::sign_in_page).post(session::sign_in))
        .at("/sign-out", post(session::sign_out))
        .at("/assets/:name", get(assets::serve))
        .at("/endpoints", get(endpoints::list))
        .at("/endpoints/:id", get(endpoints::show))
        .at("/endpoints/:id/:action", post(endpoints::act))
        .at("/deliveries", get(deliveries::list))
        .at("/deliveries/:id", get(deliveries::show))
        .at("/deliveries/:id/:action", post(deliveries::act))
        .at("/dead-letters", get(dead_letters::list))
        .at("/dead-letters/replay", get(dead_letters::preview).post(dead_letters::replay))
        .at("/dead-letters/:id/:action", post(dead_letters::act))
        .at("/events", get(events::list))
        .at("/events/:id", get(events::show))
        .at("/sources", get(admin::sources))
        .at("/tokens", get(admin::tokens))
        .at("/audit", get(admin::audit))
        .catch_all_error(page::error_response)
        .around(guard::guard)
        .with(CookieJarManager::new())
}
