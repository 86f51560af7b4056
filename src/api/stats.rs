//! `/v1/stats`: the queue right now, from `hookline.queue_stats`, plus
//! totals; a tenant-bound token gets its tenant's numbers only.

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::auth::{Auth, Scope};
use super::problem::Problem;
use super::{ApiTags, AppState};
use crate::db;

#[derive(Object, Debug)]
pub struct Stats {
    /// Deliveries waiting for their next attempt (not in flight), held ones included.
    pub pending: i64,
    /// Of those, waiting for their endpoint: max_in_flight reached, circuit
    /// not closed, or the endpoint stalled.
    pub held: i64,
    /// Pending deliveries whose next attempt is due.
    pub due_now: i64,
    /// Deliveries a worker is sending.
    pub in_flight: i64,
    /// Deliveries in the dead-letter queue.
    pub dead: i64,
    /// Seconds the longest-waiting due delivery has been due.
    pub oldest_due_age_s: f64,
    pub endpoints: i64,
    pub enabled_endpoints: i64,
    /// Events stored (the planner's estimate: exact counts would scan
    /// everything); null for one tenant's statistics.
    #[oai(nullable)]
    pub events_estimate: Option<i64>,
    /// Deliveries stored (estimate, as above).
    #[oai(nullable)]
    pub deliveries_estimate: Option<i64>,
}

#[derive(Default)]
pub struct StatsApi;

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Stats")]
impl StatsApi {
    /// Queue statistics and totals
    ///
    /// Of every tenant, or of one: the token's own when it is bound to one.
    #[oai(path = "/stats", method = "get", operation_id = "getStats")]
    async fn stats(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        /// Only this tenant's deliveries and endpoints.
        #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{1,100}$"))]
        tenant: Query<Option<String>>,
    ) -> Result<Json<Stats>, Problem> {
        auth.0.require(Scope::Read)?;
        let tenant = auth.0.tenant_filter(tenant.0.as_deref());
        let client = state.client().await?;
        let q = db::stats::queue(&client, tenant).await?;
        let t = db::stats::totals(&client, tenant).await?;
        Ok(Json(Stats {
            pending: q.pending,
            held: q.held,
            due_now: q.due_now,
            in_flight: q.in_flight,
            dead: q.dead,
            oldest_due_age_s: q.oldest_due_age_s,
            endpoints: t.endpoints,
            enabled_endpoints: t.enabled_endpoints,
            events_estimate: t.events_estimate,
            deliveries_estimate: t.deliveries_estimate,
        }))
    }
}
