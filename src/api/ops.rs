//! Operations: liveness, readiness and Prometheus metrics. Metrics come from
//! the database (the same views dashboards read), so every `serve` process
//! reports the whole system, workers included. They cover every tenant, so
//! on the API's listener they need a token that is bound to none; on the
//! metrics listener (HOOKLINE_METRICS_LISTEN, for a private network) they
//! need none.

use poem::web::Data;
use poem::{Endpoint, EndpointExt, IntoResponse, Route};
use poem_openapi::{ApiResponse, OpenApi, payload::PlainText};

use super::auth::{Auth, Scope};
use super::problem::Problem;
use super::{ApiTags, AppState};
use crate::db;

#[derive(Default)]
pub struct OpsApi;

#[derive(ApiResponse)]
enum ReadyResponse {
    /// The database answers.
    #[oai(status = 200)]
    Ready(PlainText<&'static str>),
    /// The database does not answer.
    #[oai(status = 503)]
    NotReady(PlainText<&'static str>),
}

#[OpenApi(tag = "ApiTags::Operations")]
impl OpsApi {
    /// The process is up.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> PlainText<&'static str> {
        PlainText("ok")
    }

    /// The process can reach its database.
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self, state: Data<&AppState>) -> ReadyResponse {
        let ready = match state.pool.get().await {
            Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        };
        if ready {
            ReadyResponse::Ready(PlainText("ready"))
        } else {
            ReadyResponse::NotReady(PlainText("database unavailable"))
        }
    }
}

/// Attempts of this window feed the latency histogram and attempt counts.
const METRICS_WINDOW_S: f64 = 300.0;

#[derive(ApiResponse)]
enum MetricsResponse {
    /// Prometheus text exposition format 0.0.4.
    #[oai(status = 200, content_type = "text/plain; version=0.0.4")]
    Metrics(PlainText<String>),
    /// The database does not answer.
    #[oai(status = 503)]
    Unavailable(PlainText<&'static str>),
}

#[OpenApi(tag = "ApiTags::Operations")]
impl MetricsApi {
    /// Prometheus metrics
    ///
    /// Queue depth and age, deliveries of the last 24 hours by outcome, and
    /// attempts of the last 5 minutes with a latency histogram, of every
    /// tenant: a `read` token bound to no tenant. (HOOKLINE_METRICS_LISTEN
    /// serves them without a token on a listener of their own.)
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self, auth: Auth, state: Data<&AppState>) -> Result<MetricsResponse, Problem> {
        auth.0.require(Scope::Read)?;
        if auth.0.tenant.is_some() {
            return Err(Problem::forbidden("metrics cover every tenant: use a token bound to none"));
        }
        Ok(metrics_response(&state).await)
    }
}

async fn metrics_response(state: &AppState) -> MetricsResponse {
    match render_metrics(state).await {
        Ok(text) => MetricsResponse::Metrics(PlainText(text)),
        Err(error) => {
            tracing::warn!(error = %crate::telemetry::error_chain(&error), "metrics unavailable");
            MetricsResponse::Unavailable(PlainText("database unavailable"))
        }
    }
}

/// `GET /metrics` alone, without a token: what HOOKLINE_METRICS_LISTEN serves.
pub fn metrics_app(state: AppState) -> impl Endpoint {
    let handler = poem::endpoint::make(|request: poem::Request| async move {
        let state = request.data::<AppState>().expect("the route carries the state").clone();
        metrics_response(&state).await.into_response()
    });
    Route::new().at("/metrics", poem::get(handler)).data(state)
}

#[derive(Default)]
pub struct MetricsApi;

async fn render_metrics(state: &AppState) -> Result<String, db::Error> {
    use std::fmt::Write as _;
    let client = state.pool.get().await?;
    let queue = db::stats::queue(&client, None).await?;
    let day = db::metrics::deliveries_24h(&client).await?;
    let recent = db::metrics::recent_attempts(&client, METRICS_WINDOW_S).await?;
    let circuits = db::metrics::circuits(&client).await?;
    let sources = db::sources::counts(&client).await?;
    let warnings = db::metrics::schema_warnings(&client).await?;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    gauge("hookline_queue_pending", "Deliveries waiting for their next attempt.", &[("", queue.pending as f64)]);
    gauge("hookline_queue_due", "Pending deliveries whose next attempt is due.", &[("", queue.due_now as f64)]);
    gauge("hookline_queue_in_flight", "Deliveries a worker is sending.", &[("", queue.in_flight as f64)]);
    gauge("hookline_queue_dead", "Deliveries in the dead-letter queue.", &[("", queue.dead as f64)]);
    gauge(
        "hookline_queue_held",
        "Pending deliveries waiting for their endpoint (max_in_flight, circuit, stalled).",
        &[("", queue.held as f64)],
    );
    gauge(
        "hookline_queue_oldest_due_age_seconds",
        "How long the longest-waiting due delivery has been due.",
        &[("", queue.oldest_due_age_s)],
    );
    gauge(
        "hookline_deliveries_24h",
        "Deliveries created in the last 24 hours, by state.",
        &[
            ("{state=\"succeeded\"}", day.succeeded as f64),
            ("{state=\"dead\"}", day.dead as f64),
            ("{state=\"pending\"}", day.pending as f64),
            ("{state=\"all\"}", day.total as f64),
        ],
    );
    let circuit_samples: Vec<(String, f64)> =
        circuits.iter().map(|(state, n)| (format!("{{circuit_state=\"{state}\"}}"), *n as f64)).collect();
    let circuit_samples: Vec<(&str, f64)> = circuit_samples.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    gauge(
        "hookline_endpoints",
        "Endpoints by circuit state (open: tripped or disabled; half_open: probing).",
        &circuit_samples,
    );
    // Event types and tenants are of `[A-Za-z0-9_.:-]`: nothing to escape.
    let warning_samples: Vec<(String, f64)> = warnings
        .iter()
        .map(|(name, tenant, n)| (format!("{{event_type=\"{name}\",tenant=\"{tenant}\"}}"), *n as f64))
        .collect();
    let warning_samples: Vec<(&str, f64)> = warning_samples.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    gauge(
        "hookline_schema_warnings_24h",
        "Events accepted in the last 24 hours although their payload fails the schema of their type \
         (validation `warn`; tenant empty for a shared type).",
        &warning_samples,
    );
    gauge(
        "hookline_attempts_5m",
        "Attempts in the last 5 minutes, by outcome.",
        &[("{outcome=\"success\"}", recent.succeeded as f64), ("{outcome=\"failure\"}", recent.failed as f64)],
    );
    let _ = writeln!(
        out,
        "# HELP hookline_inbound_requests_total Requests to /in/{{source}}: accepted (stored), duplicate \
         (stored before), failed_verification (bad or missing signature, timestamp out of tolerance).\n\
         # TYPE hookline_inbound_requests_total counter"
    );
    for (name, accepted, duplicates, failed) in &sources {
        for (outcome, n) in [("accepted", accepted), ("duplicate", duplicates), ("failed_verification", failed)] {
            let _ = writeln!(out, "hookline_inbound_requests_total{{source=\"{name}\",outcome=\"{outcome}\"}} {n}");
        }
    }
    let _ = writeln!(
        out,
        "# HELP hookline_attempt_duration_5m_ms Attempt durations of the last 5 minutes (a histogram of that window).\n\
         # TYPE hookline_attempt_duration_5m_ms histogram"
    );
    for (le, count) in &recent.buckets {
        let _ = writeln!(out, "hookline_attempt_duration_5m_ms_bucket{{le=\"{le}\"}} {count}");
    }
    let _ = writeln!(out, "hookline_attempt_duration_5m_ms_bucket{{le=\"+Inf\"}} {}", recent.count);
    let _ = writeln!(out, "hookline_attempt_duration_5m_ms_sum {}", recent.sum_ms);
    let _ = writeln!(out, "hookline_attempt_duration_5m_ms_count {}", recent.count);
    Ok(out)
}
