//! `just bench`: the delivery engine measured end to end on this machine,
//! this build beside the baseline binary (`just baseline`), scenario by
//! scenario, the builds alternating so both see the same machine.
//!
//! Starts a throwaway PostgreSQL (default durability: fsync and synchronous
//! commit on), a fast receiver in this process, and real `hookline worker`
//! processes (release builds), then reports:
//! - drain rate: N events queued via SQL, then workers start; deliveries/s
//!   until the last one is recorded (one and two workers), CPU and WAL;
//! - steady rate while producers keep inserting (two workers);
//! - at 200 events/s: commit → receipt latency p50/p95/p99, CPU seconds of
//!   all processes per 1,000 deliveries, PostgreSQL statement time per
//!   delivery, mean batch sizes, and the top statements;
//! - `hookline.send` throughput from 4 connections, one event per transaction;
//! - a burst of 10,000 one-row INSERTs in one transaction;
//! - noisy neighbour: a healthy endpoint's latency at 200 events/s while an
//!   endpoint that sleeps 10 s per request has 1,000 deliveries queued;
//! - ordered lanes: a drain with the endpoint ordered by key over 1,000
//!   keys, beside the same drain unordered, in one round;
//! - batches: a drain four times as large in batches of 100, beside the
//!   same drain unbatched;
//! - transformations: a drain with a template on the endpoint, beside the
//!   same drain as sent;
//! - brokers: the same drain to NATS, RabbitMQ and Redis, each beside the
//!   drain to HTTP, and RabbitMQ's own rate without hookline;
//!   (these four on each build whose schema has the feature);
//! - retention (this build only): dropping a partition of deliveries that
//!   holds BENCH_RETENTION_ROWS (10 million) rows while producers keep
//!   sending: how long the drop takes, and the longest a producer waited.
//!
//! Sizes: BENCH_DRAIN_N, BENCH_SECONDS, BENCH_ROUNDS; BENCH_BROKERS (of
//! `nats,rabbitmq,redis`) narrows the brokers scenario; BENCH_PROFILE=1 prints
//! each drain's top statements too; BENCH_EXPLAIN=<directory> logs there
//! (as the PostgreSQL user, who must be able to write it) the plans of a
//! sample of all statements, with their actual rows and times
//! (auto_explain: timing every node slows them, so read shapes, not sums).

#[path = "common.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Bench, Build, Report, cpu_seconds, env_or, rounds, selected, stop};
use tokio_postgres::NoTls;

/// The `send` scenario's event type, checked against a schema such as a
/// producer would publish: an object with a required integer, a string
/// and an optional array.
const SEND_TYPE_ENFORCED: &str = r#"
INSERT INTO hookline.event_types (name, schema, validation) VALUES ('bench.send', '{
    "type": "object", "required": ["order_id"], "additionalProperties": false,
    "properties": {"order_id": {"type": "integer", "minimum": 1},
                   "note": {"type": "string", "maxLength": 200},
                   "items": {"type": "array", "items": {"type": "string"}}}}', 'enforce')"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let drain_n = env_or("BENCH_DRAIN_N", 50_000);
    let seconds = env_or("BENCH_SECONDS", 10);
    let bench = Bench::start().await?;
    println!(
        "hookline delivery benchmark ({} cores, {} round(s) per build)\n",
        std::thread::available_parallelism()?.get(),
        rounds()
    );
    let mut report = Report::default();
    let last = rounds() - 1;
    for _ in (0..rounds()).filter(|_| selected("drain")) {
        for (i, build) in bench.builds.iter().enumerate() {
            for workers in [1, 2] {
                bench.drain(build, i, drain_n, workers, &mut report).await?;
            }
        }
    }
    for _ in (0..rounds()).filter(|_| selected("steady")) {
        for (i, build) in bench.builds.iter().enumerate() {
            bench.steady(build, i, seconds, 2, &mut report).await?;
        }
    }
    if selected("light_load") {
        bench.quiet().await?;
    }
    for round in (0..rounds()).filter(|_| selected("light_load")) {
        for (i, build) in bench.builds.iter().enumerate() {
            bench.light_load(build, i, seconds, 200, &mut report, round == last).await?;
        }
    }
    for _ in (0..rounds()).filter(|_| selected("send")) {
        for (i, build) in bench.builds.iter().enumerate() {
            bench.send_throughput(build, i, seconds.min(5), 4, &mut report).await?;
            bench.burst(build, i, 10_000, &mut report).await?;
        }
    }
    for _ in (0..rounds()).filter(|_| selected("noisy_neighbour")) {
        for (i, build) in bench.builds.iter().enumerate() {
            bench.noisy_neighbour(build, i, seconds, 200, &mut report).await?;
        }
    }
    // Features the baseline predates are measured on this build alone.
    for round in (0..rounds()).filter(|_| selected("ordered")) {
        for build in bench.builds_with("ordering").await? {
            bench.ordered_drain(build, drain_n, 1000, 2, &mut report, round == last).await?;
        }
    }
    for round in (0..rounds()).filter(|_| selected("transformed")) {
        for build in bench.builds_with("transformation").await? {
            bench.transformed_drain(build, drain_n, 2, &mut report, round == last).await?;
        }
    }
    for round in (0..rounds()).filter(|_| selected("brokers")) {
        for build in bench.builds_with("transformation").await? {
            bench.broker_drains(build, drain_n, 2, &mut report, round == last).await?;
        }
    }
    for round in (0..rounds()).filter(|_| selected("batched")) {
        for build in bench.builds_with("batch_max_events").await? {
            bench.batched_drain(build, drain_n * 4, 2, &mut report, round == last).await?;
        }
    }
    for _ in (0..rounds()).filter(|_| selected("retention")) {
        bench.retention_drop(&bench.builds[0], env_or("BENCH_RETENTION_ROWS", 10_000_000), &mut report).await?;
    }
    report.print(&bench.builds);
    bench.server.stop()?;
    Ok(())
}

impl Bench {
    /// The same drain unordered, then ordered by key over `keys` keys; the
    /// rates and their ratio (issue 13's target: at least 0.5).
    async fn ordered_drain(
        &self,
        build: &Build,
        n: u64,
        keys: i64,
        workers: usize,
        report: &mut Report,
        profile: bool,
    ) -> anyhow::Result<()> {
        let insert = format!(
            "INSERT INTO hookline.events (event_type, payload, ordering_key)
             SELECT 'bench.ordered', jsonb_build_object('n', n, 'padding', repeat('x', 100)), 'key-' || n % {keys}
               FROM generate_series(1, {n}) AS n"
        );
        let settings = [
            (
                format!("drain {n} queued over {keys} keys, {workers} workers, ordering none"),
                "ordering = 'none'".into(),
            ),
            (format!("drain {n} queued over {keys} keys, {workers} workers, ordering key"), "ordering = 'key'".into()),
        ];
        self.drain_pair(build, &insert, workers, settings, "ordered by key / unordered (target ≥ 0.5)", report, profile)
            .await
    }

    /// Fills one partition of deliveries (a week ahead, so nothing else
    /// writes there) with `rows` rows, then drops it while two producers
    /// send events one transaction at a time: the drop's time, and the
    /// slowest `hookline.send` during it against the slowest before it.
    async fn retention_drop(&self, build: &Build, rows: u64, report: &mut Report) -> anyhow::Result<()> {
        let client = &build.client;
        let partition: String = client
            .query_one(
                "SELECT partition_name FROM hookline.partitions
                  WHERE table_name = 'deliveries' AND starts_at > now() + interval '7 days'
                  ORDER BY starts_at LIMIT 1",
                &[],
            )
            .await?
            .get(0);
        let filled = Instant::now();
        client
            .execute(
                "INSERT INTO hookline.deliveries (id, event_id, endpoint_id, tenant, event_type, state, attempts)
                 SELECT hookline.uuid_v7_floor(p.starts_at + n * interval '1 ms'), gen_random_uuid(),
                        gen_random_uuid(), 'default', 'bench.old', 'succeeded', 1
                   FROM hookline.partitions AS p, generate_series(0, $2::bigint - 1) AS n
                  WHERE p.partition_name = $1",
                &[&partition, &(rows as i64)],
            )
            .await?;
        client.batch_execute(&format!("VACUUM ANALYZE hookline.{partition}")).await?;
        println!("  retention: {rows} rows into {partition} in {:.0} s", filled.elapsed().as_secs_f64());

        let sending = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let mut producers = Vec::new();
        for _ in 0..2 {
            let (producer, connection) = tokio_postgres::connect(&build.url, NoTls).await?;
            tokio::spawn(connection);
            let sending = sending.clone();
            producers.push(tokio::spawn(async move {
                let mut waits = Vec::new();
                while sending.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    producer.execute("SELECT hookline.send('bench.retention', '{}')", &[]).await?;
                    waits.push((started, started.elapsed()));
                }
                anyhow::Ok(waits)
            }));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (drop_started, dropped, locked) = {
            let mut tx_client = tokio_postgres::connect(&build.url, NoTls).await?;
            tokio::spawn(tx_client.1);
            let tx = tx_client.0.transaction().await?;
            tx.batch_execute("SET LOCAL lock_timeout = '200ms'").await?;
            let started = Instant::now();
            let detached: bool = tx.query_one("SELECT hookline.detach_partition($1)", &[&partition]).await?.get(0);
            tx.commit().await?;
            let locked = started.elapsed();
            tx_client.0.execute("SELECT hookline.drop_expired_tables()", &[]).await?;
            (started, (detached, started.elapsed()), locked)
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        sending.store(false, Ordering::Relaxed);
        let mut before = Duration::ZERO;
        let mut during = Duration::ZERO;
        for producer in producers {
            for (started, waited) in producer.await?? {
                if started + waited < drop_started {
                    before = before.max(waited);
                } else if started < drop_started + dropped.1 {
                    during = during.max(waited);
                }
            }
        }
        anyhow::ensure!(dropped.0, "{partition} was not dropped");
        let figure = |what: &str| format!("retention: drop of a {rows}-row partition while sending: {what}");
        report.add(&figure("drop ms"), 0, dropped.1.as_secs_f64() * 1000.0);
        report.add(&figure("  of which the table was locked, ms"), 0, locked.as_secs_f64() * 1000.0);
        report.add(&figure("slowest send during it, ms"), 0, during.as_secs_f64() * 1000.0);
        report.add(&figure("slowest send in the 2 s before, ms"), 0, before.as_secs_f64() * 1000.0);
        Ok(())
    }

    /// The same drain as sent, then with a transformation on the endpoint;
    /// the ratio (issue 12's target: at least 0.8).
    async fn transformed_drain(
        &self,
        build: &Build,
        n: u64,
        workers: usize,
        report: &mut Report,
        profile: bool,
    ) -> anyhow::Result<()> {
        let insert = format!(
            "INSERT INTO hookline.events (event_type, payload)
             SELECT 'bench.transformed', jsonb_build_object('n', n, 'customer', jsonb_build_object('name', 'c' || n),
                                                           'padding', repeat('x', 100))
               FROM generate_series(1, {n}) AS n"
        );
        let template = r#"'{% set headers = {"x-kind": type} %}{"text": {{ "Order " ~ data.n ~ " for " ~ data.customer.name }}, "at": {{ timestamp }}}'"#;
        let settings = [
            (format!("drain {n} queued, {workers} workers, as sent"), "transformation = NULL".to_owned()),
            (format!("drain {n} queued, {workers} workers, transformed"), format!("transformation = {template}")),
        ];
        self.drain_pair(build, &insert, workers, settings, "transformed / as sent (target ≥ 0.8)", report, profile)
            .await
    }

    /// The same drain to the HTTP receiver, then to each broker the machine
    /// runs (issue 12's target: each at least the HTTP rate). The brokers
    /// keep what they are sent capped, and drop it after.
    async fn broker_drains(
        &self,
        build: &Build,
        n: u64,
        workers: usize,
        report: &mut Report,
        profile: bool,
    ) -> anyhow::Result<()> {
        let insert = format!(
            "INSERT INTO hookline.events (event_type, payload)
             SELECT 'bench.broker', jsonb_build_object('n', n, 'padding', repeat('x', 100))
               FROM generate_series(1, {n}) AS n"
        );
        let jetstream = async_nats::jetstream::new(async_nats::connect("nats://127.0.0.1:4222").await?);
        let _ = jetstream.delete_stream("HL_BENCH").await;
        jetstream
            .create_stream(async_nats::jetstream::stream::Config {
                name: "HL_BENCH".into(),
                subjects: vec!["hl_bench.>".into()],
                storage: async_nats::jetstream::stream::StorageType::Memory,
                max_messages: 100_000,
                ..Default::default()
            })
            .await?;
        let amqp = lapin::Connection::connect("amqp://guest:guest@127.0.0.1:5672", Default::default()).await?;
        let channel = amqp.create_channel().await?;
        let mut arguments = lapin::types::FieldTable::default();
        arguments.insert("x-max-length".into(), lapin::types::AMQPValue::LongInt(100_000));
        let options = lapin::options::QueueDeclareOptions { auto_delete: true, ..Default::default() };
        channel.queue_declare("hl_bench".into(), options, arguments).await?;
        let bind = lapin::options::QueueBindOptions::default();
        let no_arguments = lapin::types::FieldTable::default();
        channel.queue_bind("hl_bench".into(), "amq.topic".into(), "bench.#".into(), bind, no_arguments).await?;

        let http = format!("url = '{}'", build.endpoint_url);
        let brokers = [
            ("nats", "NATS JetStream", "nats://127.0.0.1:4222/hl_bench.events"),
            ("rabbitmq", "RabbitMQ", "amqp://guest:guest@127.0.0.1:5672"),
            ("redis", "Redis stream", "redis://127.0.0.1:6379/0?stream=hl_bench&maxlen=100000"),
        ];
        let wanted = std::env::var("BENCH_BROKERS").unwrap_or_default();
        let wanted = |name: &str| wanted.is_empty() || wanted.split(',').any(|w| w.trim() == name);
        for (_, broker, url) in brokers.into_iter().filter(|(name, ..)| wanted(name)) {
            let settings = [
                (format!("drain {n} queued, {workers} workers, HTTP"), http.clone()),
                (format!("drain {n} queued, {workers} workers, {broker}"), format!("url = '{url}'")),
            ];
            let ratio = format!("{broker} / HTTP (target ≥ 1)");
            self.drain_pair(build, &insert, workers, settings, &ratio, report, profile).await?;
        }
        if wanted("rabbitmq") {
            amqp_ceiling(&amqp, n, build.index, report).await?;
        }
        jetstream.delete_stream("HL_BENCH").await?;
        channel.queue_delete("hl_bench".into(), Default::default()).await?;
        let redis = redis::Client::open("redis://127.0.0.1:6379/0")?;
        let _: () =
            redis::cmd("DEL").arg("hl_bench").query_async(&mut redis.get_multiplexed_async_connection().await?).await?;
        Ok(())
    }

    /// The same drain one delivery per request, then in batches of 100.
    async fn batched_drain(
        &self,
        build: &Build,
        n: u64,
        workers: usize,
        report: &mut Report,
        profile: bool,
    ) -> anyhow::Result<()> {
        let insert = format!(
            "INSERT INTO hookline.events (event_type, payload)
             SELECT 'bench.batched', jsonb_build_object('n', n, 'padding', repeat('x', 100))
               FROM generate_series(1, {n}) AS n"
        );
        let settings = [
            (
                format!("drain {n} queued, {workers} workers, unbatched"),
                "batch_max_events = NULL, batch_max_bytes = NULL, batch_max_wait_ms = NULL, batch_format = NULL".into(),
            ),
            (
                format!("drain {n} queued, {workers} workers, batches of 100 (target ≥ 50,000)"),
                "batch_max_events = 100, batch_max_bytes = 1048576, batch_max_wait_ms = 0, batch_format = 'json'"
                    .into(),
            ),
        ];
        self.drain_pair(build, &insert, workers, settings, "batched / unbatched", report, profile).await
    }

    /// For each (figure, endpoint setting): sets it, queues events with
    /// `insert`, vacuums, and measures the drain's deliveries/s; profiles
    /// the second. Then sets the first back and reports the second rate
    /// over the first as `ratio`.
    #[allow(clippy::too_many_arguments)]
    async fn drain_pair(
        &self,
        build: &Build,
        insert: &str,
        workers: usize,
        settings: [(String, String); 2],
        ratio: &str,
        report: &mut Report,
        profile: bool,
    ) -> anyhow::Result<()> {
        let mut rates = Vec::new();
        for (nth, (figure, setting)) in settings.iter().enumerate() {
            build.client.execute(&format!("UPDATE hookline.endpoints SET {setting}"), &[]).await?;
            let n = build.client.execute(insert, &[]).await?;
            // What the drain before left to vacuum would land on this one.
            self.quiet().await?;
            self.reset_statements().await?;
            let pg_cpu_before = self.postgres_cpu();
            let destination = destination_pid(setting);
            let destination_cpu_before = destination.map_or(0.0, |pid| cpu_seconds(pid, false));
            let started = Instant::now();
            let mut children = self.spawn_workers(build, workers);
            self.settled(build).await?;
            let rate = n as f64 / started.elapsed().as_secs_f64();
            let worker_cpu: f64 = children.iter().map(|c| cpu_seconds(c.id(), false)).sum();
            let pg_cpu = self.postgres_cpu() - pg_cpu_before;
            let destination_cpu = destination.map_or(0.0, |pid| cpu_seconds(pid, false)) - destination_cpu_before;
            stop(&mut children);
            if profile && nth == settings.len() - 1 {
                self.statements(build).await?.print_top(&format!("{}: {figure}", build.name), 12);
            }
            report.add(&format!("{figure}: deliveries/s"), build.index, rate);
            let per_1000 = |cpu: f64| cpu / n as f64 * 1000.0;
            report.add(&format!("{figure}: PostgreSQL CPU-s per 1,000"), build.index, per_1000(pg_cpu));
            report.add(&format!("{figure}: workers' CPU-s per 1,000"), build.index, per_1000(worker_cpu));
            if destination.is_some() {
                report.add(&format!("{figure}: receiver's CPU-s per 1,000"), build.index, per_1000(destination_cpu));
            }
            rates.push(rate);
        }
        build.client.execute(&format!("UPDATE hookline.endpoints SET {}", settings[0].1), &[]).await?;
        report.add(ratio, build.index, rates[1] / rates[0]);
        Ok(())
    }

    async fn drain(&self, build: &Build, i: usize, n: u64, workers: usize, report: &mut Report) -> anyhow::Result<()> {
        let wal_before = self.wal_lsn().await?;
        build
            .client
            .execute(
                "INSERT INTO hookline.events (event_type, payload)
                 SELECT 'bench.drain', jsonb_build_object('n', n, 'padding', repeat('x', 100))
                   FROM generate_series(1, $1::bigint) AS n",
                &[&(n as i64)],
            )
            .await?;
        let profile = std::env::var_os("BENCH_PROFILE").is_some();
        if profile {
            self.reset_statements().await?;
        }
        let pg_cpu_before = self.postgres_cpu();
        let started = Instant::now();
        let mut children = self.spawn_workers(build, workers);
        self.settled(build).await?;
        let elapsed = started.elapsed();
        if profile {
            self.statements(build).await?.print_top(&format!("{}: drain, {workers} worker(s)", build.name), 8);
        }
        let worker_cpu: f64 = children.iter().map(|c| cpu_seconds(c.id(), false)).sum();
        let pg_cpu = self.postgres_cpu() - pg_cpu_before;
        let wal = self.wal_lsn().await? - wal_before;
        stop(&mut children);
        report.add(
            &format!("drain {n} queued, {workers} worker(s): deliveries/s"),
            i,
            n as f64 / elapsed.as_secs_f64(),
        );
        report.add(
            &format!("drain, {workers} worker(s): CPU-s per 1,000 deliveries (all processes)"),
            i,
            (worker_cpu + pg_cpu) / n as f64 * 1000.0,
        );
        report.add(
            &format!("drain, {workers} worker(s): WAL bytes per delivery (with the event)"),
            i,
            (wal / n as i64) as f64,
        );
        Ok(())
    }

    async fn steady(
        &self,
        build: &Build,
        i: usize,
        seconds: u64,
        workers: usize,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let mut children = self.spawn_workers(build, workers);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let produced = Arc::new(AtomicU64::new(0));
        let mut producers = Vec::new();
        for _ in 0..2 {
            let (client, connection) = tokio_postgres::connect(&build.url, NoTls).await?;
            tokio::spawn(connection);
            let produced = produced.clone();
            producers.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    client
                        .execute(
                            "INSERT INTO hookline.events (event_type, payload)
                             SELECT 'bench.steady', jsonb_build_object('n', n) FROM generate_series(1, 100) AS n",
                            &[],
                        )
                        .await
                        .expect("produce");
                    produced.fetch_add(100, Ordering::Relaxed);
                }
            }));
        }
        let received_before = self.received.load(Ordering::Relaxed);
        let started = Instant::now();
        for p in producers {
            p.await?;
        }
        let elapsed = started.elapsed();
        let delivered = self.received.load(Ordering::Relaxed) - received_before;
        self.settled(build).await?;
        stop(&mut children);
        report.add(
            "steady, 2 workers, 2 producers of 100-event batches: produced/s",
            i,
            produced.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64(),
        );
        report.add("steady: delivered/s", i, delivered as f64 / elapsed.as_secs_f64());
        Ok(())
    }

    /// 200 events/s (one `hookline.send` per transaction) to one worker:
    /// latency, CPU and PostgreSQL's statement time per delivery.
    async fn light_load(
        &self,
        build: &Build,
        i: usize,
        seconds: u64,
        per_second: u64,
        report: &mut Report,
        show_statements: bool,
    ) -> anyhow::Result<()> {
        let mut children = self.spawn_workers(build, 1);
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.reset_statements().await?;
        let pg_cpu_before = self.postgres_cpu();
        let worker_cpu_before: f64 = children.iter().map(|c| cpu_seconds(c.id(), false)).sum();
        let committed = self.send_at_rate(build, "bench.latency", seconds, per_second).await?;
        self.settled(build).await?;
        let worker_cpu = children.iter().map(|c| cpu_seconds(c.id(), false)).sum::<f64>() - worker_cpu_before;
        let pg_cpu = self.postgres_cpu() - pg_cpu_before;
        let statements = self.statements(build).await?;
        stop(&mut children);
        let n = committed.len() as f64;
        let l = self.latencies(&committed);
        let figure = |what: &str| format!("{per_second} events/s, 1 worker: {what}");
        report.add(&figure("commit → receipt p50 ms"), i, l.p50);
        report.add(&figure("commit → receipt p95 ms"), i, l.p95);
        report.add(&figure("commit → receipt p99 ms"), i, l.p99);
        report.add(&figure("CPU-s per 1,000 deliveries (worker + PostgreSQL)"), i, (worker_cpu + pg_cpu) / n * 1000.0);
        report.add(&figure("  of which the worker"), i, worker_cpu / n * 1000.0);
        report.add(&figure("PostgreSQL statement ms per delivery (top level)"), i, statements.toplevel_ms() / n);
        report.add(
            &figure("top-level statements per delivery"),
            i,
            statements.all.iter().filter(|s| s.toplevel).map(|s| s.calls).sum::<i64>() as f64 / n,
        );
        if show_statements {
            statements.print_top(&format!("{} at {per_second} events/s", build.name), 12);
            println!();
        }
        Ok(())
    }

    /// A slow endpoint (10 s per request) with 1,000 deliveries queued, and
    /// a healthy one receiving `per_second` events: the healthy endpoint's
    /// commit → receipt latency while the slow one keeps its share busy.
    async fn noisy_neighbour(
        &self,
        build: &Build,
        i: usize,
        seconds: u64,
        per_second: u64,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let client = &build.client;
        client.execute("UPDATE hookline.endpoints SET event_types = '{bench.*}'", &[]).await?;
        let slow: uuid::Uuid = client
            .query_one(
                "INSERT INTO hookline.endpoints (url, description, event_types, timeout_ms)
                 VALUES ($1, 'bench: sleeps 10 s per request', '{noisy.*}', 30000) RETURNING id",
                &[&self.slow_url],
            )
            .await?
            .get(0);
        let mut children = self.spawn_workers_with(build, 2, &[("HOOKLINE_SHUTDOWN_GRACE_S", "1")]);
        tokio::time::sleep(Duration::from_millis(500)).await;
        client
            .execute(
                "INSERT INTO hookline.events (event_type, payload) SELECT 'noisy.x', '{}' FROM generate_series(1, 1000)",
                &[],
            )
            .await?;
        let committed = self.send_at_rate(build, "bench.healthy", seconds, per_second).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop(&mut children);
        client.execute("DELETE FROM hookline.endpoints WHERE id = $1", &[&slow]).await?;
        client.execute("UPDATE hookline.endpoints SET event_types = '{}'", &[]).await?;
        let l = self.latencies(&committed);
        report.add("noisy neighbour (1,000 queued for a 10 s endpoint), healthy p50 ms", i, l.p50);
        report.add("noisy neighbour: healthy p99 ms", i, l.p99);
        Ok(())
    }

    /// Sends one `event_type` event per tick, `per_second` a second for
    /// `seconds`; returns each event id with the moment its commit returned.
    async fn send_at_rate(
        &self,
        build: &Build,
        event_type: &str,
        seconds: u64,
        per_second: u64,
    ) -> anyhow::Result<Vec<(String, Instant)>> {
        let (client, connection) = tokio_postgres::connect(&build.url, NoTls).await?;
        tokio::spawn(connection);
        let send = client.prepare("SELECT hookline.send($1, '{\"hello\": \"world\"}')").await?;
        let mut committed = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second as f64));
        for _ in 0..seconds * per_second {
            tick.tick().await;
            let id: uuid::Uuid = client.query_one(&send, &[&event_type]).await?.get(0);
            committed.push((id.to_string(), Instant::now()));
        }
        Ok(committed)
    }

    /// Events/s from `connections` connections each running `sql` in its own
    /// transaction for `seconds`.
    async fn per_transaction_rate(
        &self,
        build: &Build,
        sql: &str,
        seconds: u64,
        connections: usize,
    ) -> anyhow::Result<f64> {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let done = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (client, connection) = tokio_postgres::connect(&build.url, NoTls).await?;
            tokio::spawn(connection);
            let (done, sql) = (done.clone(), sql.to_owned());
            tasks.push(tokio::spawn(async move {
                let statement = client.prepare(&sql).await.expect("prepare");
                while Instant::now() < deadline {
                    client.execute(&statement, &[]).await.expect("execute");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        let started = Instant::now();
        for t in tasks {
            t.await?;
        }
        Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
    }

    async fn send_throughput(
        &self,
        build: &Build,
        i: usize,
        seconds: u64,
        connections: usize,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        build
            .client
            .batch_execute("CREATE TABLE IF NOT EXISTS bench_plain (id bigserial PRIMARY KEY, payload jsonb)")
            .await?;
        let floor = self
            .per_transaction_rate(
                build,
                "INSERT INTO bench_plain (payload) VALUES ('{\"order_id\": 42}')",
                seconds,
                connections,
            )
            .await?;
        let send = "SELECT hookline.send('bench.send', '{\"order_id\": 42}')";
        let quiet = self.per_transaction_rate(build, send, seconds, connections).await?;
        // An idle worker makes every producer NOTIFY, which serialises commits.
        build.client.execute("INSERT INTO hookline.idle_workers (worker_id) VALUES (gen_random_uuid())", &[]).await?;
        let notifying = self.per_transaction_rate(build, send, seconds, connections).await?;
        build.client.execute("DELETE FROM hookline.idle_workers", &[]).await?;
        build.client.execute("DELETE FROM hookline.delivery_queue", &[]).await?;
        report.add(&format!("hookline.send, {connections} connections, workers busy: events/s"), i, quiet);
        report.add("hookline.send, a worker idle (NOTIFY): events/s", i, notifying);
        report.add("(floor) a plain one-row INSERT into a bare table: /s", i, floor);
        if i == 0 {
            // This build only (the catalogue is new): the same sends, their
            // type enforcing a schema of a few keywords that they pass.
            build.client.batch_execute(SEND_TYPE_ENFORCED).await?;
            let enforced = self.per_transaction_rate(build, send, seconds, connections).await?;
            build.client.batch_execute("DELETE FROM hookline.event_types").await?;
            build.client.execute("DELETE FROM hookline.delivery_queue", &[]).await?;
            report.add("hookline.send, its type enforcing a schema: events/s", i, enforced);
            report.add("  enforcing / not checked", i, enforced / quiet);
        }
        Ok(())
    }

    /// A burst of 10,000 one-row INSERTs in one transaction wakes workers once.
    async fn burst(&self, build: &Build, i: usize, n: usize, report: &mut Report) -> anyhow::Result<()> {
        build.client.execute("INSERT INTO hookline.idle_workers (worker_id) VALUES (gen_random_uuid())", &[]).await?;
        let (mut client, connection) = tokio_postgres::connect(&build.url, NoTls).await?;
        tokio::spawn(connection);
        let started = Instant::now();
        let tx = client.transaction().await?;
        let insert =
            tx.prepare("INSERT INTO hookline.events (event_type, payload) VALUES ('bench.burst', '{}')").await?;
        for _ in 0..n {
            tx.execute(&insert, &[]).await?;
        }
        tx.commit().await?;
        let elapsed = started.elapsed();
        build.client.execute("DELETE FROM hookline.idle_workers", &[]).await?;
        build.client.execute("DELETE FROM hookline.delivery_queue", &[]).await?;
        report.add(
            &format!("burst of {n} one-row INSERTs in one transaction: µs per event"),
            i,
            elapsed.as_secs_f64() * 1e6 / n as f64,
        );
        Ok(())
    }
}

/// The process that receives what an endpoint `setting` points at: the
/// broker's server, or this process (the HTTP receiver) when `setting`
/// names no broker; `None` if the server is not found on this machine.
fn destination_pid(setting: &str) -> Option<u32> {
    let server = ["nats://", "amqp://", "redis://"]
        .into_iter()
        .zip(["nats-server", "beam.smp", "redis-server"])
        .find_map(|(scheme, server)| setting.contains(scheme).then_some(server));
    match server {
        Some(server) => process_named(server),
        None => Some(std::process::id()),
    }
}

/// The first process whose command name is `name`.
fn process_named(name: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid = entry.file_name().to_str()?.parse().ok()?;
        let command = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (command.trim() == name).then_some(pid)
    })
}

/// What RabbitMQ takes on this machine without hookline: `n` publishes as
/// hookline makes them (persistent, mandatory, confirmed, with its
/// headers), 512 awaiting their confirm at once on one channel; and the
/// CPU RabbitMQ spends on them.
async fn amqp_ceiling(amqp: &lapin::Connection, n: u64, index: usize, report: &mut Report) -> anyhow::Result<()> {
    use lapin::types::{AMQPValue, FieldTable};

    let channel = amqp.create_channel().await?;
    channel.confirm_select(Default::default()).await?;
    let body = vec![b'x'; 200];
    let in_flight = Arc::new(tokio::sync::Semaphore::new(512));
    let mut tasks = tokio::task::JoinSet::new();
    let rabbitmq = process_named("beam.smp");
    let cpu_before = rabbitmq.map_or(0.0, |pid| cpu_seconds(pid, false));
    let started = Instant::now();
    for _ in 0..n {
        let permit = in_flight.clone().acquire_owned().await?;
        let (channel, body) = (channel.clone(), body.clone());
        tasks.spawn(async move {
            let id = uuid::Uuid::now_v7().to_string();
            let mut headers = FieldTable::default();
            for (name, value) in [
                ("content-type", "application/json".to_owned()),
                ("webhook-id", id.clone()),
                ("webhook-timestamp", "1764990000".to_owned()),
                ("webhook-signature", format!("v1,{}", "A".repeat(43) + "=")),
            ] {
                headers.insert(name.into(), AMQPValue::LongString(value.as_str().into()));
            }
            let properties = lapin::BasicProperties::default()
                .with_headers(headers)
                .with_message_id(id.as_str().into())
                .with_content_type("application/json".into())
                .with_delivery_mode(2);
            let options = lapin::options::BasicPublishOptions { mandatory: true, ..Default::default() };
            let confirm = channel.basic_publish("amq.topic".into(), "bench.broker".into(), options, &body, properties);
            let confirmed = confirm.await?.await;
            drop(permit);
            confirmed.map(|_| ())
        });
        while let Some(done) = tasks.try_join_next() {
            done??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    report.add(&format!("RabbitMQ alone: {n} confirmed publishes/s, 512 in flight"), index, rate);
    if let Some(pid) = rabbitmq {
        let per_1000 = (cpu_seconds(pid, false) - cpu_before) / n as f64 * 1000.0;
        report.add("RabbitMQ alone: its CPU-s per 1,000", index, per_1000);
    }
    channel.close(0, "done".into()).await?;
    Ok(())
}
