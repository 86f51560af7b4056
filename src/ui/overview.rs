//! `/ui`: the queue now, the last 24 hours of deliveries, latency, endpoint
//! health and inbound counts, for the token's tenant or all of them.

use maud::{Markup, html};
use poem::handler;
use poem::web::Data;

use super::chart::{self, Bar};
use super::page::{self, Section, UiError};
use super::session::Viewer;
use crate::api::AppState;
use crate::api::auth::Scope;
use crate::db;
use crate::db::dashboard::Hour;

#[handler]
pub async fn show(viewer: Viewer, Data(state): Data<&AppState>) -> Result<Markup, UiError> {
    viewer.principal.require(Scope::Read)?;
    let tenant = viewer.principal.tenant.as_deref();
    let client = state.client().await?;
    // One connection, the queries pipelined.
    let (queue, hours, latency, circuits, inbound) = tokio::try_join!(
        db::stats::queue(&client, tenant),
        db::dashboard::hours(&client, tenant, None),
        db::dashboard::latency(&client, tenant),
        db::dashboard::circuits(&client, tenant),
        db::dashboard::inbound(&client, tenant),
    )?;
    let circuit = |state: &str| circuits.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
    let content = html! {
        section.cards {
            div.card {
                h2 { "Queue" }
                dl {
                    dt { "Waiting" } dd { (queue.pending) }
                    dt { "Due now" } dd { (queue.due_now) }
                    dt { "In flight" } dd { (queue.in_flight) }
                    dt { "Held" } dd { (queue.held) }
                    dt { "Oldest due" } dd { (format!("{:.1} s", queue.oldest_due_age_s)) }
                    dt { "Dead letters" } dd { a href="/ui/dead-letters" { (queue.dead) } }
                }
            }
            div.card {
                h2 { "Attempt latency, 24 h" }
                dl {
                    dt { "p50" } dd { (page::millis(latency.map(|l| l[0]))) }
                    dt { "p95" } dd { (page::millis(latency.map(|l| l[1]))) }
                    dt { "p99" } dd { (page::millis(latency.map(|l| l[2]))) }
                }
            }
            div.card {
                h2 { "Endpoints by circuit" }
                dl {
                    dt { (page::badge("closed")) } dd { (circuit("closed")) }
                    dt { (page::badge("half_open")) } dd { (circuit("half_open")) }
                    dt { (page::badge("open")) } dd { a href="/ui/endpoints?health=failing" { (circuit("open")) } }
                }
            }
            div.card {
                h2 { "Inbound" }
                dl {
                    dt { "Sources" } dd { (inbound.sources) }
                    dt { "Accepted" } dd { (inbound.accepted) }
                    dt { "Duplicates" } dd { (inbound.duplicates) }
                    dt { "Failed verifications" } dd { (inbound.failed_verifications) }
                }
            }
        }
        (deliveries_chart(&hours))
    };
    Ok(page::shell(&viewer, Section::Overview, "Overview", content))
}

/// Deliveries per minute by outcome, an hourly average per bar (the
/// rollups are hourly), by the hour the deliveries were created.
pub fn deliveries_chart(hours: &[Hour]) -> Markup {
    let bars: Vec<Bar> = hours
        .iter()
        .map(|h| Bar {
            label: h.hour.format("%H:00").to_string(),
            values: [h.succeeded, h.dead, h.cancelled].map(|n| n as f64 / 60.0).to_vec(),
        })
        .collect();
    chart::stacked_bars(
        "Deliveries per minute by outcome, last 24 h (UTC hours)",
        &["succeeded", "dead", "cancelled"],
        &bars,
        3,
        "/min",
    )
}
