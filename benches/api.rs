//! `just bench` (API part): the HTTP API measured the way users feel it, with
//! PostgreSQL, `hookline serve`, workers and the receiver on this machine:
//! (a) events accepted per second through `POST /v1/events` from 16
//! keep-alive connections with no workers running, and its p99;
//! (b) a closed loop of 16 connections posting while two workers deliver, in
//! deliveries/s, for one endpoint and for a fan-out of 10;
//! (c) at 200 events/s, the time from the start of the API call to receipt;
//! (d) inbound: verified requests per second through `POST /in/{source}`
//! (Standard Webhooks signatures), each stored and fanned out to one
//! subscriber, from 16 connections with no workers running.

#[path = "common.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Bench, env_or, stop};

const CONNECTIONS: usize = 16;

#[derive(Clone)]
struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// The inbound source of scenario (d) and its Standard Webhooks key.
const INBOUND_SOURCE: &str = "bench-in";
const INBOUND_SECRET: &str = "whsec_YmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtMTI=";

/// What the connections of `hammer` send.
#[derive(Clone, Copy)]
enum Load {
    Events,
    Inbound,
}

struct ChildGuard(Vec<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        stop(&mut self.0);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let seconds = env_or("BENCH_SECONDS", 10);
    let bench = Bench::start().await?;
    let (api, server) = Api::start(&bench).await?;
    println!(
        "hookline API benchmark ({} cores, {CONNECTIONS} connections)\n",
        std::thread::available_parallelism()?.get()
    );

    ingest(&bench, &api, seconds).await?;
    closed_loop(&bench, &api, seconds, 1).await?;
    bench
        .client
        .execute(
            "INSERT INTO hookline.endpoints (url, description)
             SELECT url, 'bench fan-out ' || n FROM hookline.endpoints, generate_series(2, 10) AS n",
            &[],
        )
        .await?;
    closed_loop(&bench, &api, seconds, 10).await?;
    bench.client.execute("DELETE FROM hookline.endpoints WHERE description LIKE 'bench fan-out %'", &[]).await?;
    call_to_receipt(&bench, &api, seconds, 200).await?;
    inbound(&bench, &api, seconds).await?;
    drop(server);
    bench.server.stop()?;
    Ok(())
}

impl Api {
    async fn start(bench: &Bench) -> anyhow::Result<(Self, ChildGuard)> {
        let bin = env!("CARGO_BIN_EXE_hookline");
        let token = Command::new(bin)
            .args(["token", "create", "--name", "bench", "--scope", "admin"])
            .env("HOOKLINE_DATABASE_URL", &bench.url)
            .output()?;
        let token = String::from_utf8(token.stdout)?.trim().to_owned();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let base = format!("http://127.0.0.1:{port}");
        let server = Command::new(bin)
            .arg("serve")
            .env("HOOKLINE_DATABASE_URL", &bench.url)
            .env("HOOKLINE_LISTEN", format!("127.0.0.1:{port}"))
            .env("HOOKLINE_POOL_SIZE", "32")
            .env("HOOKLINE_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?;
        let http = reqwest::Client::builder().pool_max_idle_per_host(CONNECTIONS).tcp_nodelay(true).build()?;
        let (api, guard) = (Api { base, token, http }, ChildGuard(vec![server]));
        let deadline = Instant::now() + Duration::from_secs(20);
        while api.http.get(format!("{}/readyz", api.base)).send().await.map(|r| r.status() != 200).unwrap_or(true) {
            anyhow::ensure!(Instant::now() < deadline, "hookline serve did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok((api, guard))
    }

    /// Posts one signed webhook to the inbound source, a new delivery id each.
    async fn post_inbound(&self, n: u64) -> anyhow::Result<()> {
        use base64::Engine as _;
        use hmac::{KeyInit, Mac};
        let body = serde_json::json!({"n": n, "hello": "world"}).to_string();
        let (id, timestamp) = (format!("msg_{n}"), chrono::Utc::now().timestamp().to_string());
        let key = base64::engine::general_purpose::STANDARD.decode(&INBOUND_SECRET[6..])?;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key)?;
        mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
        let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let response = self
            .http
            .post(format!("{}/in/{INBOUND_SOURCE}", self.base))
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp)
            .header("webhook-signature", format!("v1,{signature}"))
            .body(body)
            .send()
            .await?;
        anyhow::ensure!(response.status() == 202, "POST /in/{INBOUND_SOURCE} answered {}", response.status());
        Ok(())
    }

    /// Posts one event; returns its id.
    async fn post_event(&self, n: u64) -> anyhow::Result<String> {
        let response = self
            .http
            .post(format!("{}/v1/events", self.base))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({"event_type": "bench.api", "payload": {"n": n, "hello": "world"}}))
            .send()
            .await?;
        anyhow::ensure!(response.status() == 202, "POST /v1/events answered {}", response.status());
        let body: serde_json::Value = response.json().await?;
        Ok(body["id"].as_str().unwrap_or_default().to_owned())
    }
}

/// `CONNECTIONS` tasks posting as fast as they can until `deadline`; returns
/// the request latencies in ms.
async fn hammer(api: &Arc<Api>, deadline: Instant, load: Load) -> anyhow::Result<Vec<f64>> {
    let sequence = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (api, sequence) = (api.clone(), sequence.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                let n = sequence.fetch_add(1, Ordering::Relaxed);
                match load {
                    Load::Events => {
                        api.post_event(n).await?;
                    }
                    Load::Inbound => api.post_inbound(n).await?,
                }
                latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort_by(f64::total_cmp);
    Ok(all)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted.get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1))).copied().unwrap_or(f64::NAN)
}

async fn ingest(bench: &Bench, api: &Api, seconds: u64) -> anyhow::Result<()> {
    let api = Arc::new(api.clone());
    let started = Instant::now();
    let latencies = hammer(&api, started + Duration::from_secs(seconds), Load::Events).await?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "(a) POST /v1/events, no workers: {:.0} events/s accepted; latency p50 {:.2} ms, p99 {:.2} ms",
        latencies.len() as f64 / elapsed,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    // Leave an empty queue for the next scenario.
    bench.client.execute("DELETE FROM hookline.delivery_queue", &[]).await?;
    Ok(())
}

async fn closed_loop(bench: &Bench, api: &Api, seconds: u64, fan_out: usize) -> anyhow::Result<()> {
    let mut workers = bench.spawn_workers(2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let api = Arc::new(api.clone());
    let received_before = bench.received.load(Ordering::Relaxed);
    let started = Instant::now();
    let latencies = hammer(&api, started + Duration::from_secs(seconds), Load::Events).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let delivered = bench.received.load(Ordering::Relaxed) - received_before;
    bench.settled().await?;
    stop(&mut workers);
    println!(
        "(b) closed loop, fan-out {fan_out}, 2 workers: {:.0} events/s posted, {:.0} deliveries/s received",
        latencies.len() as f64 / elapsed,
        delivered as f64 / elapsed
    );
    Ok(())
}

async fn call_to_receipt(bench: &Bench, api: &Api, seconds: u64, per_second: u64) -> anyhow::Result<()> {
    let mut workers = bench.spawn_workers(1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    bench.receipts.lock().unwrap().clear();
    let mut sent: Vec<(String, Instant)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second as f64));
    for n in 0..seconds * per_second {
        tick.tick().await;
        let started = Instant::now();
        let id = api.post_event(n).await?;
        sent.push((id, started));
    }
    bench.settled().await?;
    stop(&mut workers);
    let receipts = bench.receipts.lock().unwrap();
    let mut latencies: Vec<f64> = sent
        .iter()
        .filter_map(|(id, at)| receipts.get(id).map(|r| r.saturating_duration_since(*at).as_secs_f64() * 1000.0))
        .collect();
    latencies.sort_by(f64::total_cmp);
    println!(
        "(c) {per_second} events/s through the API, call start → receipt over {} events: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99)
    );
    Ok(())
}

async fn inbound(bench: &Bench, api: &Api, seconds: u64) -> anyhow::Result<()> {
    bench
        .client
        .execute(
            "INSERT INTO hookline.sources (name, scheme, secret, event_type) VALUES ($1, 'standard_webhooks', $2, 'bench.inbound')",
            &[&INBOUND_SOURCE, &INBOUND_SECRET],
        )
        .await?;
    const QUEUED: &str = "SELECT count(*) FROM hookline.delivery_queue";
    let queued_before: i64 = bench.client.query_one(QUEUED, &[]).await?.get(0);
    let api = Arc::new(api.clone());
    let started = Instant::now();
    let latencies = hammer(&api, started + Duration::from_secs(seconds), Load::Inbound).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let fanned_out = bench.client.query_one(QUEUED, &[]).await?.get::<_, i64>(0) - queued_before;
    println!(
        "(d) POST /in/{{source}}, Standard Webhooks signatures, no workers: {:.0} verified requests/s stored \
         ({fanned_out} deliveries queued for {} requests); latency p50 {:.2} ms, p99 {:.2} ms",
        latencies.len() as f64 / elapsed,
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    Ok(())
}
