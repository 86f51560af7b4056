//! `just bench` (API part): the HTTP API measured the way users feel it, with
//! PostgreSQL, `hookline serve`, workers and the receiver on this machine,
//! this build beside the baseline binary (`just baseline`), alternating:
//! (a) events accepted per second through `POST /v1/events` from 16
//! keep-alive connections with no workers running, and its p99;
//! (b) a closed loop of 16 connections posting while two workers deliver:
//! deliveries/s, answer → receipt latency of every delivery, mean claim and
//! completion batch sizes, for one endpoint and for a fan-out of 10;
//! (c) at 200 events/s: answer → receipt and call → receipt latency, CPU of
//! all processes and PostgreSQL statement time per delivery;
//! (d) inbound: verified requests per second through `POST /in/{source}`
//! (Standard Webhooks signatures), each stored and fanned out to one
//! subscriber, from 16 connections with no workers running;
//! (e) dashboard: with a million deliveries and a million attempts of the
//! last 24 hours over 1,000 endpoints (and their rollups), the server time
//! of the dashboard's pages, median and worst of 20 loads (this build only:
//! the baseline has no dashboard).

#[path = "common.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Bench, Build, Latencies, Report, Statements, cpu_seconds, env_or, rounds, selected, stop};

const CONNECTIONS: usize = 16;

#[derive(Clone)]
struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
    /// The `serve` process.
    pid: u32,
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
    let mut apis = Vec::new();
    let mut guards = Vec::new();
    for build in &bench.builds {
        let (api, guard) = Api::start(build).await?;
        apis.push(api);
        guards.push(guard);
    }
    println!(
        "hookline API benchmark ({} cores, {CONNECTIONS} connections, {} round(s) per build)\n",
        std::thread::available_parallelism()?.get(),
        rounds()
    );
    let mut report = Report::default();
    let last = rounds() - 1;
    for _ in 0..rounds() {
        for (i, build) in bench.builds.iter().enumerate() {
            if selected("ingest") {
                ingest(build, i, &apis[i], seconds, &mut report).await?;
            }
        }
    }
    for fan_out in [1, 10].into_iter().filter(|_| selected("closed_loop")) {
        for build in &bench.builds {
            build
                .client
                .execute(
                    "INSERT INTO hookline.endpoints (url, description)
                     SELECT url, 'bench fan-out ' || n FROM hookline.endpoints, generate_series(2, $1::int) AS n",
                    &[&fan_out],
                )
                .await?;
        }
        for round in 0..rounds() {
            for (i, build) in bench.builds.iter().enumerate() {
                closed_loop(&bench, build, i, &apis[i], seconds, fan_out, &mut report, round == last).await?;
            }
        }
        for build in &bench.builds {
            build
                .client
                .execute("DELETE FROM hookline.endpoints WHERE description LIKE 'bench fan-out %'", &[])
                .await?;
        }
    }
    if selected("call_to_receipt") {
        bench.quiet().await?;
    }
    for round in (0..rounds()).filter(|_| selected("call_to_receipt")) {
        for (i, build) in bench.builds.iter().enumerate() {
            call_to_receipt(&bench, build, i, &apis[i], seconds, 200, &mut report, round == last).await?;
        }
    }
    for build in &bench.builds {
        build
            .client
            .execute(
                "INSERT INTO hookline.sources (name, scheme, secret, event_type) VALUES ($1, 'standard_webhooks', $2, 'bench.inbound')",
                &[&INBOUND_SOURCE, &INBOUND_SECRET],
            )
            .await?;
    }
    for _ in (0..rounds()).filter(|_| selected("inbound")) {
        for (i, build) in bench.builds.iter().enumerate() {
            inbound(build, i, &apis[i], seconds, &mut report).await?;
        }
    }
    if selected("dashboard") {
        dashboard(&bench.builds[0], &apis[0], &mut report).await?;
    }
    report.print(&bench.builds);
    drop(guards);
    bench.server.stop()?;
    Ok(())
}

impl Api {
    async fn start(build: &Build) -> anyhow::Result<(Self, ChildGuard)> {
        let bin = &build.bin;
        let token = Command::new(bin)
            .args(["token", "create", "--name", "bench", "--scope", "admin"])
            .env("HOOKLINE_DATABASE_URL", &build.url)
            .output()?;
        let token = String::from_utf8(token.stdout)?.trim().to_owned();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let base = format!("http://127.0.0.1:{port}");
        let server = Command::new(bin)
            .arg("serve")
            .env("HOOKLINE_DATABASE_URL", &build.url)
            .env("HOOKLINE_SECRET_KEY", common::SECRET_KEY)
            .env("HOOKLINE_LISTEN", format!("127.0.0.1:{port}"))
            .env("HOOKLINE_POOL_SIZE", "32")
            .env("HOOKLINE_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?;
        let http = reqwest::Client::builder().pool_max_idle_per_host(CONNECTIONS).tcp_nodelay(true).build()?;
        let (api, guard) = (Api { base, token, http, pid: server.id() }, ChildGuard(vec![server]));
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
        // Unique across rounds, or a later round's requests would be duplicates.
        let (id, timestamp) =
            (format!("msg_{}_{n}", uuid::Uuid::now_v7().simple()), chrono::Utc::now().timestamp().to_string());
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
/// the request latencies in ms and each event's id with the moment its
/// answer arrived.
async fn hammer(api: &Arc<Api>, deadline: Instant, load: Load) -> anyhow::Result<(Vec<f64>, Vec<(String, Instant)>)> {
    let sequence = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (api, sequence) = (api.clone(), sequence.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut answered = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                let n = sequence.fetch_add(1, Ordering::Relaxed);
                match load {
                    Load::Events => {
                        let id = api.post_event(n).await?;
                        answered.push((id, Instant::now()));
                    }
                    Load::Inbound => api.post_inbound(n).await?,
                }
                latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok((latencies, answered))
        }));
    }
    let (mut all, mut answered) = (Vec::new(), Vec::new());
    for task in tasks {
        let (latencies, ids) = task.await??;
        all.extend(latencies);
        answered.extend(ids);
    }
    all.sort_by(f64::total_cmp);
    Ok((all, answered))
}

async fn ingest(build: &Build, i: usize, api: &Api, seconds: u64, report: &mut Report) -> anyhow::Result<()> {
    let api = Arc::new(api.clone());
    let started = Instant::now();
    let (latencies, _) = hammer(&api, started + Duration::from_secs(seconds), Load::Events).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let l = Latencies::of(latencies);
    report.add("(a) POST /v1/events, no workers: events/s", i, l.count as f64 / elapsed);
    report.add("(a) its latency p99 ms", i, l.p99);
    // Leave an empty queue for the next scenario.
    build.client.execute("DELETE FROM hookline.delivery_queue", &[]).await?;
    Ok(())
}

/// Mean deliveries per claim and per completion statement.
fn batch_sizes(statements: &Statements, deliveries: f64) -> (f64, f64) {
    // This build's statements name themselves in a leading comment; the baseline calls functions.
    let (claims, claimed) = statements.calls_and_rows(&["hookline: claim", "claim_deliveries("]);
    let (completions, _) = statements.calls_and_rows(&["hookline: complete", "complete_deliveries("]);
    (claimed as f64 / claims.max(1) as f64, deliveries / completions.max(1) as f64)
}

#[allow(clippy::too_many_arguments)]
async fn closed_loop(
    bench: &Bench,
    build: &Build,
    i: usize,
    api: &Api,
    seconds: u64,
    fan_out: i32,
    report: &mut Report,
    show_statements: bool,
) -> anyhow::Result<()> {
    let mut workers = bench.spawn_workers(build, 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    bench.reset_statements().await?;
    let api = Arc::new(api.clone());
    let received_before = bench.received.load(Ordering::Relaxed);
    let started = Instant::now();
    let (latencies, answered) = hammer(&api, started + Duration::from_secs(seconds), Load::Events).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let delivered = bench.received.load(Ordering::Relaxed) - received_before;
    let backlog: i64 =
        build.client.query_one("SELECT pending + in_flight FROM hookline.queue_stats", &[]).await?.get(0);
    bench.settled(build).await?;
    let statements = bench.statements(build).await?;
    stop(&mut workers);
    let e2e = bench.latencies(&answered);
    let figure = |what: &str| format!("(b) closed loop, fan-out {fan_out}: {what}");
    report.add(&figure("events/s posted"), i, latencies.len() as f64 / elapsed);
    report.add(&figure("deliveries/s received"), i, delivered as f64 / elapsed);
    report.add(&figure("backlog when posting stopped"), i, backlog as f64);
    report.add(&figure("answer → receipt p50 ms"), i, e2e.p50);
    report.add(&figure("answer → receipt p99 ms"), i, e2e.p99);
    let (claim_batch, completion_batch) = batch_sizes(&statements, e2e.count as f64);
    report.add(&figure("mean claim batch"), i, claim_batch);
    report.add(&figure("mean completion batch"), i, completion_batch);
    if show_statements {
        statements.print_top(&format!("{}, closed loop, fan-out {fan_out}", build.name), 12);
        println!();
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn call_to_receipt(
    bench: &Bench,
    build: &Build,
    i: usize,
    api: &Api,
    seconds: u64,
    per_second: u64,
    report: &mut Report,
    show_statements: bool,
) -> anyhow::Result<()> {
    let mut workers = bench.spawn_workers(build, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    bench.reset_statements().await?;
    let cpu = || cpu_seconds(api.pid, false) + workers.iter().map(|c| cpu_seconds(c.id(), false)).sum::<f64>();
    let (cpu_before, pg_cpu_before) = (cpu(), bench.postgres_cpu());
    let mut called: Vec<(String, Instant)> = Vec::new();
    let mut answered: Vec<(String, Instant)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second as f64));
    for n in 0..seconds * per_second {
        tick.tick().await;
        let started = Instant::now();
        let id = api.post_event(n).await?;
        answered.push((id.clone(), Instant::now()));
        called.push((id, started));
    }
    bench.settled(build).await?;
    let cpu_used = cpu() - cpu_before + bench.postgres_cpu() - pg_cpu_before;
    let statements = bench.statements(build).await?;
    stop(&mut workers);
    let n = called.len() as f64;
    let from_call = bench.latencies(&called);
    let from_answer = bench.latencies(&answered);
    let figure = |what: &str| format!("(c) {per_second} events/s through the API: {what}");
    report.add(&figure("answer → receipt p50 ms"), i, from_answer.p50);
    report.add(&figure("answer → receipt p99 ms"), i, from_answer.p99);
    report.add(&figure("call → receipt p50 ms"), i, from_call.p50);
    report.add(&figure("call → receipt p99 ms"), i, from_call.p99);
    report.add(&figure("CPU-s per 1,000 deliveries (serve + worker + PostgreSQL)"), i, cpu_used / n * 1000.0);
    report.add(&figure("PostgreSQL statement ms per delivery (top level)"), i, statements.toplevel_ms() / n);
    if show_statements {
        statements.print_top(&format!("{} at {per_second} events/s through the API", build.name), 12);
        println!();
    }
    Ok(())
}

/// A day of history written straight into the tables (as the retention
/// bench does): 1,000 endpoints, a million succeeded deliveries with an
/// attempt each, their hourly rollups, and 10,000 pending ones.
const DASHBOARD_HISTORY: &str = "
INSERT INTO hookline.endpoints (url, description)
SELECT 'https://bench-' || n || '.example.com/hook', 'dashboard bench ' || n FROM generate_series(1, 1000) AS n;
INSERT INTO hookline.deliveries (id, event_id, endpoint_id, tenant, event_type, state, attempts, created_at, completed_at)
SELECT hookline.uuid_v7_floor(now() - interval '23 hours' + n * interval '82 ms'), gen_random_uuid(), e.id, 'default',
       'bench.history', 'succeeded', 1, now() - interval '23 hours' + n * interval '82 ms',
       now() - interval '23 hours' + n * interval '82 ms'
  FROM generate_series(0, 999999) AS n
  JOIN (SELECT id, row_number() OVER () - 1 AS i FROM hookline.endpoints WHERE description LIKE 'dashboard bench %') AS e
    ON e.i = n % 1000;
INSERT INTO hookline.attempts (delivery_id, endpoint_id, attempt, started_at, duration_ms, status_code, worker)
SELECT d.id, d.endpoint_id, 1, d.created_at, 20 + (hashtext(d.id::text) & 127), 200, gen_random_uuid()
  FROM hookline.deliveries AS d WHERE d.event_type = 'bench.history';
INSERT INTO hookline.endpoint_hourly (endpoint_id, hour, succeeded, attempts, latency)
SELECT d.endpoint_id, date_trunc('hour', d.created_at, 'UTC'), count(*), count(*),
       hookline.latency_histogram(array_agg(20 + (hashtext(d.id::text) & 127)))
  FROM hookline.deliveries AS d WHERE d.event_type = 'bench.history'
 GROUP BY 1, 2;
INSERT INTO hookline.events (event_type, payload)
SELECT 'bench.pending', jsonb_build_object('n', n) FROM generate_series(1, 10) AS n";

/// Milliseconds from request to the last byte of each page, 20 loads each
/// (the client, server and PostgreSQL share this machine's two cores).
async fn dashboard(build: &Build, api: &Api, report: &mut Report) -> anyhow::Result<()> {
    let filled = Instant::now();
    build.client.batch_execute(DASHBOARD_HISTORY).await?;
    build.client.batch_execute("VACUUM ANALYZE").await?;
    println!("  dashboard: a day of history written in {:.0} s", filled.elapsed().as_secs_f64());
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let signed_in = http.post(format!("{}/ui/sign-in", api.base)).form(&[("token", &api.token)]).send().await?;
    let cookie = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.strip_prefix("hookline_ui=").map(|v| format!("hookline_ui={}", v.split(';').next().unwrap_or("")))
        })
        .ok_or_else(|| anyhow::anyhow!("no session cookie"))?;
    let endpoint: uuid::Uuid = build
        .client
        .query_one("SELECT id FROM hookline.endpoints WHERE description = 'dashboard bench 500'", &[])
        .await?
        .get(0);
    let pages = [
        ("overview", "/ui".to_owned()),
        ("endpoints", "/ui/endpoints".to_owned()),
        ("endpoints, failing", "/ui/endpoints?health=failing".to_owned()),
        ("an endpoint", format!("/ui/endpoints/{endpoint}")),
        ("deliveries", "/ui/deliveries".to_owned()),
        ("deliveries of an endpoint", format!("/ui/deliveries?endpoint_id={endpoint}")),
        ("dead letters", "/ui/dead-letters".to_owned()),
    ];
    for (name, path) in pages {
        let mut times = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            let page = http.get(format!("{}{path}", api.base)).header("cookie", &cookie).send().await?;
            anyhow::ensure!(page.status() == 200, "{path}: {}", page.status());
            page.bytes().await?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        report.add(&format!("(e) dashboard {name}: median ms"), 0, times[times.len() / 2]);
        report.add(&format!("(e) dashboard {name}: worst ms"), 0, times[times.len() - 1]);
    }
    Ok(())
}

async fn inbound(build: &Build, i: usize, api: &Api, seconds: u64, report: &mut Report) -> anyhow::Result<()> {
    const QUEUED: &str = "SELECT count(*) FROM hookline.delivery_queue";
    let queued_before: i64 = build.client.query_one(QUEUED, &[]).await?.get(0);
    let api = Arc::new(api.clone());
    let started = Instant::now();
    let (latencies, _) = hammer(&api, started + Duration::from_secs(seconds), Load::Inbound).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let fanned_out = build.client.query_one(QUEUED, &[]).await?.get::<_, i64>(0) - queued_before;
    anyhow::ensure!(fanned_out == latencies.len() as i64, "every verified request fans out once");
    let l = Latencies::of(latencies);
    report.add("(d) POST /in/{source}, no workers: verified requests/s stored", i, l.count as f64 / elapsed);
    report.add("(d) its latency p99 ms", i, l.p99);
    build.client.execute("DELETE FROM hookline.delivery_queue", &[]).await?;
    Ok(())
}
