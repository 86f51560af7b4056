//! Settings: command-line flags, `HOOKLINE_*` environment variables, and an
//! optional TOML file (`--config`), in that order of precedence.
//!
//! The TOML file is folded into the environment before the command line is
//! parsed (a key `worker_concurrency` becomes `HOOKLINE_WORKER_CONCURRENCY`
//! unless that is already set), so every setting is parsed and validated by
//! one code path and documented once, here.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use ipnet::IpNet;

use crate::db::retention::Retention;
use crate::domain::retry::RetrySchedule;
use crate::secrets::KeyRing;

/// Every setting; each doc comment is the README's description of it.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// PostgreSQL connection URL (falls back to DATABASE_URL).
    #[arg(long, env = "HOOKLINE_DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Address the HTTP API listens on.
    #[arg(long, env = "HOOKLINE_LISTEN", default_value = "127.0.0.1:8080", global = true)]
    pub listen: SocketAddr,

    /// Where this hookline's API is reachable from its workers: sandboxes'
    /// capture URLs are `<this>/sandbox/<token>` (default
    /// `http://<HOOKLINE_LISTEN>`, with 127.0.0.1 for an unspecified address).
    /// A `worker` process delivers to sandboxes only when it is set; `run`
    /// and `dev` deliver to their own listener.
    #[arg(long, env = "HOOKLINE_PUBLIC_URL", global = true, value_parser = parse_public_url)]
    pub public_url: Option<url::Url>,

    /// Also serve `GET /metrics` without a token on this address (for a
    /// scraper on a private network); on the API's address it needs a token.
    #[arg(long, env = "HOOKLINE_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<SocketAddr>,

    /// Largest request body the API accepts, in bytes (larger: 413).
    #[arg(long, env = "HOOKLINE_MAX_BODY_BYTES", default_value_t = 1024 * 1024, global = true)]
    pub max_body_bytes: usize,

    /// An event's payload (its JSON text) in bytes at most, for every
    /// producer, SQL included: `migrate` (and `run`, `dev`) store it in
    /// hookline.settings, where the events trigger reads it (default there
    /// 1 MiB; at least 1 KiB).
    #[arg(long, env = "HOOKLINE_MAX_PAYLOAD_BYTES", global = true,
          value_parser = clap::value_parser!(i32).range(1024..=1_073_741_823))]
    pub max_payload_bytes: Option<i32>,

    /// Endpoints may subscribe only to event types in the catalogue
    /// (`/v1/event-types`): names must exist, and `prefix.*` must match one.
    #[arg(long, env = "HOOKLINE_STRICT_EVENT_TYPES", default_value_t = false, global = true)]
    pub strict_event_types: bool,

    /// Comma-separated origins whose pages may embed the tenant portal in an
    /// iframe (`https://app.example.com`, `https://*.example.com`); by
    /// default only hookline's own pages may.
    #[arg(long, env = "HOOKLINE_PORTAL_FRAME_ANCESTORS", value_delimiter = ',', global = true,
          value_parser = parse_frame_ancestor)]
    pub portal_frame_ancestors: Vec<String>,

    /// Connections in each process's database pool.
    #[arg(long, env = "HOOKLINE_POOL_SIZE", default_value_t = 16, global = true)]
    pub pool_size: usize,

    /// Deliver to private, loopback and link-local addresses too.
    #[arg(long, env = "HOOKLINE_ALLOW_PRIVATE_NETWORKS", default_value_t = false, global = true)]
    pub allow_private_networks: bool,

    /// Comma-separated networks (CIDR) allowed even though they are private.
    #[arg(long, env = "HOOKLINE_ALLOWED_NETWORKS", value_delimiter = ',', global = true)]
    pub allowed_networks: Vec<IpNet>,

    /// Default retry delays in seconds after the first attempt.
    #[arg(long, env = "HOOKLINE_RETRY_SCHEDULE", default_value = "1,5,30,120,600,1800",
          value_parser = RetrySchedule::parse, global = true)]
    pub retry_schedule: RetrySchedule,

    /// Longest wait a `Retry-After` header can impose, in seconds.
    #[arg(long, env = "HOOKLINE_RETRY_AFTER_MAX_S", default_value_t = 3600, global = true)]
    pub retry_after_max_s: u64,

    /// Make workers wait for the WAL flush of every claim and outcome. Off by
    /// default: a PostgreSQL crash may then undo the last fraction of a
    /// second of them, which only sends those deliveries again.
    #[arg(long, env = "HOOKLINE_WORKER_SYNCHRONOUS_COMMIT", default_value_t = false, global = true)]
    pub worker_synchronous_commit: bool,

    /// Requests one worker process keeps in flight at most.
    #[arg(long, env = "HOOKLINE_WORKER_CONCURRENCY", default_value_t = 512, global = true)]
    pub worker_concurrency: usize,

    /// Requests one worker sends to a single endpoint at once at most, so a
    /// slow endpoint cannot take all of its slots (default: half of
    /// HOOKLINE_WORKER_CONCURRENCY).
    #[arg(long, env = "HOOKLINE_WORKER_ENDPOINT_SHARE", global = true)]
    pub worker_endpoint_share: Option<usize>,

    /// Failed attempts in a row (network errors, timeouts, 5xx, 429) that
    /// open an endpoint's circuit: no attempts until a probe succeeds.
    #[arg(long, env = "HOOKLINE_CIRCUIT_FAILURES", default_value_t = 5, global = true)]
    pub circuit_failures: u32,

    /// Seconds an open circuit waits before its first probe; each failed
    /// probe doubles it.
    #[arg(long, env = "HOOKLINE_CIRCUIT_COOLDOWN_S", default_value_t = 10, global = true)]
    pub circuit_cooldown_s: u64,

    /// Longest cool-down between probes, in seconds.
    #[arg(long, env = "HOOKLINE_CIRCUIT_COOLDOWN_MAX_S", default_value_t = 600, global = true)]
    pub circuit_cooldown_max_s: u64,

    /// Deliveries claimed per database round trip at most.
    #[arg(long, env = "HOOKLINE_CLAIM_BATCH", default_value_t = 256, global = true)]
    pub claim_batch: usize,

    /// Fallback poll when no notification arrives, in milliseconds.
    #[arg(long, env = "HOOKLINE_POLL_INTERVAL_MS", default_value_t = 5000, global = true)]
    pub poll_interval_ms: u64,

    /// Upper bound of a lease (request timeout plus 5 s margin), in seconds.
    #[arg(long, env = "HOOKLINE_LEASE_MAX_S", default_value_t = 60, global = true)]
    pub lease_max_s: u64,

    /// Leases a delivery may lose (its worker died holding it) before it is
    /// dead: a payload that kills workers cannot take the fleet down in a loop.
    #[arg(long, env = "HOOKLINE_MAX_WORKER_LOSSES", default_value_t = 3, global = true)]
    pub max_worker_losses: u32,

    /// How long an endpoint's circuit may stay open before the endpoint is
    /// disabled (`5d`, `12h`, `90m`; each endpoint may set its own).
    #[arg(long, env = "HOOKLINE_DISABLE_AFTER_OPEN", default_value = "5d", global = true,
          value_parser = humantime::parse_duration)]
    pub disable_after_open: Duration,

    /// Days of history (events, deliveries, attempts) kept: older partitions
    /// are dropped whole once nothing open is in them. A partition spans a
    /// quarter of this, at most a week, so history stays up to that much longer.
    #[arg(long, env = "HOOKLINE_RETENTION_DAYS", default_value_t = 30, global = true,
          value_parser = clap::value_parser!(i32).range(1..=36_500))]
    pub retention_days: i32,

    /// Days the hourly statistics rollups are kept.
    #[arg(long, env = "HOOKLINE_STATS_RETENTION_DAYS", default_value_t = 400, global = true,
          value_parser = clap::value_parser!(i32).range(1..=36_500))]
    pub stats_retention_days: i32,

    /// On SIGTERM, how long in-flight requests may still finish, in seconds.
    #[arg(long, env = "HOOKLINE_SHUTDOWN_GRACE_S", default_value_t = 30, global = true)]
    pub shutdown_grace_s: u64,

    /// Keys that encrypt endpoint and source secrets at rest: comma-separated, each 32
    /// bytes in base64 (`hookline secrets generate-key`). The first seals,
    /// all open. Required by `serve`, `worker` and `run`; `hookline dev`
    /// keeps one in its data folder.
    #[arg(long, env = "HOOKLINE_SECRET_KEY", global = true, hide_env_values = true)]
    pub secret_key: Option<String>,

    /// Log filter (tracing EnvFilter syntax, e.g. `info,hookline=debug`).
    #[arg(long, env = "HOOKLINE_LOG", default_value = "info", global = true)]
    pub log: String,

    /// Log format: `text` or `json`.
    #[arg(long, env = "HOOKLINE_LOG_FORMAT", default_value = "text", global = true,
          value_parser = ["text", "json"])]
    pub log_format: String,
}

impl Settings {
    /// The keys of HOOKLINE_SECRET_KEY, if set; a bad one is an error that
    /// names its position, never its value.
    pub fn secret_keys(&self) -> Result<Option<KeyRing>, String> {
        match self.secret_key.as_deref() {
            None | Some("") => Ok(None),
            Some(text) => KeyRing::parse(text).map(Some).map_err(|e| format!("HOOKLINE_SECRET_KEY: {e}")),
        }
    }

    /// The configured database URL, HOOKLINE_DATABASE_URL before DATABASE_URL.
    pub fn database_url(&self) -> Option<String> {
        self.database_url.clone().or_else(|| std::env::var("DATABASE_URL").ok()).filter(|u| !u.is_empty())
    }

    /// `HOOKLINE_PUBLIC_URL` (or its default) without a trailing slash.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.as_str().trim_end_matches('/').to_owned(),
            None if self.listen.ip().is_unspecified() => format!("http://127.0.0.1:{}", self.listen.port()),
            None => format!("http://{}", self.listen),
        }
    }

    /// What hookline's own sandbox capture URLs start with.
    pub fn sandbox_prefix(&self) -> String {
        format!("{}{}", self.public_url(), crate::api::SANDBOX_PATH)
    }

    /// How long history and statistics are kept.
    pub fn retention(&self) -> Retention {
        Retention { history_days: self.retention_days, stats_days: self.stats_retention_days }
    }

    /// What a worker runs by; `secret_keys` open the endpoints' secrets.
    pub fn worker(&self, secret_keys: KeyRing) -> WorkerSettings {
        let concurrency = self.worker_concurrency.max(1);
        WorkerSettings {
            retry_schedule: self.retry_schedule.clone(),
            retry_after_max: Duration::from_secs(self.retry_after_max_s),
            concurrency,
            endpoint_share: self.worker_endpoint_share.unwrap_or(concurrency / 2).clamp(1, concurrency),
            circuit: CircuitSettings {
                failures: self.circuit_failures.max(1),
                cooldown: Duration::from_secs(self.circuit_cooldown_s.max(1)),
                cooldown_max: Duration::from_secs(self.circuit_cooldown_max_s.max(self.circuit_cooldown_s).max(1)),
            },
            claim_batch: self.claim_batch.max(1),
            poll_interval: Duration::from_millis(self.poll_interval_ms.max(10)),
            lease_max: Duration::from_secs(self.lease_max_s.max(1)),
            max_worker_losses: self.max_worker_losses.max(1),
            disable_after_open: self.disable_after_open.max(Duration::from_secs(1)),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_s),
            retention: self.retention(),
            secret_keys,
            network: NetworkPolicy {
                allow_private: self.allow_private_networks,
                allowed: self.allowed_networks.clone(),
                // Only where the URL is known to lead to hookline: set, or
                // (`run`, `dev`) this process's own listener.
                sandbox_prefix: self.public_url.as_ref().map(|_| self.sandbox_prefix()),
            },
        }
    }
}

/// What a worker needs to know, decoupled from how it was configured.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub retry_schedule: RetrySchedule,
    pub retry_after_max: Duration,
    pub concurrency: usize,
    /// Requests sent to one endpoint at once at most (of `concurrency`).
    pub endpoint_share: usize,
    pub circuit: CircuitSettings,
    pub claim_batch: usize,
    pub poll_interval: Duration,
    pub lease_max: Duration,
    pub max_worker_losses: u32,
    /// How long an endpoint's circuit may stay open before it is disabled.
    pub disable_after_open: Duration,
    pub shutdown_grace: Duration,
    pub retention: Retention,
    /// Open the endpoints' sealed secrets (empty: secrets are plaintext).
    pub secret_keys: KeyRing,
    pub network: NetworkPolicy,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            retry_schedule: RetrySchedule::standard(),
            retry_after_max: Duration::from_secs(3600),
            concurrency: 512,
            endpoint_share: 256,
            circuit: CircuitSettings::default(),
            claim_batch: 256,
            poll_interval: Duration::from_secs(5),
            lease_max: Duration::from_secs(60),
            max_worker_losses: 3,
            disable_after_open: Duration::from_secs(5 * 86_400),
            shutdown_grace: Duration::from_secs(30),
            retention: Retention::default(),
            secret_keys: KeyRing::default(),
            network: NetworkPolicy::default(),
        }
    }
}

/// When an endpoint's circuit opens and how long it stays open.
#[derive(Debug, Clone, Copy)]
pub struct CircuitSettings {
    /// Failed attempts in a row that open it.
    pub failures: u32,
    /// The first cool-down; doubled after each failed probe.
    pub cooldown: Duration,
    pub cooldown_max: Duration,
}

impl Default for CircuitSettings {
    fn default() -> Self {
        Self { failures: 5, cooldown: Duration::from_secs(10), cooldown_max: Duration::from_secs(600) }
    }
}

/// Which destination addresses deliveries may reach.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    pub allow_private: bool,
    pub allowed: Vec<IpNet>,
    /// hookline's own sandbox capture URLs start with this: they reach only
    /// hookline's listener, which records what it is sent, so they are
    /// exempt from the address check (`HOOKLINE_PUBLIC_URL` + `/sandbox/`).
    pub sandbox_prefix: Option<String>,
}

/// An http(s) URL with nothing after its path.
fn parse_public_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("must be an http:// or https:// URL".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".to_owned());
    }
    Ok(url)
}

/// An origin for CSP `frame-ancestors`: scheme, host (a leading `*.` allowed)
/// and port, nothing else, so it cannot add to the policy.
fn parse_frame_ancestor(text: &str) -> Result<String, String> {
    let text = text.trim().trim_end_matches('/');
    let (scheme, rest) = text.split_once("://").ok_or("must be an origin such as https://app.example.com")?;
    let host_ok = |h: &str| {
        let h = h.strip_prefix("*.").unwrap_or(h);
        !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
    };
    if !matches!(scheme, "http" | "https") || !host_ok(rest) {
        return Err(format!("`{text}` is not an origin such as https://app.example.com"));
    }
    Ok(text.to_owned())
}

/// Folds a TOML settings file into the environment (see the module docs).
/// Returns one line naming the problem when the file is unusable.
pub fn load_file_into_env(path: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("config file {} is not valid TOML: {}", path.display(), e.message()))?;
    for (key, value) in table {
        let var = format!("HOOKLINE_{}", key.to_uppercase());
        if !KNOWN_KEYS.contains(&key.as_str()) {
            return Err(format!("config file {}: unknown setting `{key}`", path.display()));
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Array(items) => items.iter().map(toml_scalar).collect::<Vec<_>>().join(","),
            other => toml_scalar(&other),
        };
        if std::env::var_os(&var).is_none() {
            // SAFETY: called at start-up before any other thread exists.
            unsafe { std::env::set_var(var, value) };
        }
    }
    Ok(())
}

fn toml_scalar(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

const KNOWN_KEYS: &[&str] = &[
    "database_url",
    "listen",
    "metrics_listen",
    "public_url",
    "max_body_bytes",
    "max_payload_bytes",
    "strict_event_types",
    "portal_frame_ancestors",
    "pool_size",
    "allow_private_networks",
    "allowed_networks",
    "retry_schedule",
    "retry_after_max_s",
    "worker_synchronous_commit",
    "worker_concurrency",
    "worker_endpoint_share",
    "circuit_failures",
    "circuit_cooldown_s",
    "circuit_cooldown_max_s",
    "claim_batch",
    "poll_interval_ms",
    "lease_max_s",
    "max_worker_losses",
    "disable_after_open",
    "shutdown_grace_s",
    "secret_key",
    "log",
    "log_format",
];

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    fn disable_after_open(value: &str) -> Result<Duration, clap::Error> {
        Cli::try_parse_from(["hookline", "--disable-after-open", value])
            .map(|cli| cli.settings.worker(KeyRing::default()).disable_after_open)
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(disable_after_open("5d").unwrap(), Duration::from_secs(5 * 86_400));
        assert_eq!(disable_after_open("12h 30m").unwrap(), Duration::from_secs(45_000));
        assert!(disable_after_open("5").is_err(), "a unit is required");
    }
}
