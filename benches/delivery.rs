//! `just bench`: the delivery engine measured end to end on this machine.
//!
//! Starts a throwaway PostgreSQL (default durability: fsync and synchronous
//! commit on), a fast receiver in this process, and real `hookline worker`
//! processes (release build), then prints:
//! - drain rate: N events queued via SQL, then workers start; deliveries/s
//!   until the last one is recorded (one and two workers);
//! - steady rate while producers keep inserting (two workers);
//! - commit→receipt latency p50/p95/p99 at 200 events/s;
//! - `hookline.send` throughput from 4 connections, one event per transaction;
//! - CPU seconds of hookline + PostgreSQL per 1,000 deliveries, and WAL bytes
//!   per delivery (fan-out insert, claim, completion, attempt);
//! - noisy neighbour: a healthy endpoint's latency at 200 events/s while an
//!   endpoint that sleeps 10 s per request has 1,000 deliveries queued.
//!
//! Sizes can be changed with BENCH_DRAIN_N, BENCH_SECONDS.

#[path = "common.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Bench, cpu_seconds, env_or, stop};
use tokio_postgres::NoTls;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let drain_n = env_or("BENCH_DRAIN_N", 50_000);
    let seconds = env_or("BENCH_SECONDS", 10);
    let bench = Bench::start().await?;
    println!("hookline delivery benchmark ({} cores)\n", std::thread::available_parallelism()?.get());

    for workers in [1, 2] {
        bench.drain(drain_n, workers).await?;
    }
    bench.steady(seconds, 2).await?;
    bench.latency(seconds, 200).await?;
    bench.send_throughput(seconds.min(5), 4).await?;
    bench.burst(10_000).await?;
    bench.noisy_neighbour(seconds, 200).await?;
    bench.server.stop()?;
    Ok(())
}

impl Bench {
    async fn drain(&self, n: u64, workers: usize) -> anyhow::Result<()> {
        let wal_before = self.wal_lsn().await?;
        self.client
            .execute(
                "INSERT INTO hookline.events (event_type, payload)
                 SELECT 'bench.drain', jsonb_build_object('n', n, 'padding', repeat('x', 100))
                   FROM generate_series(1, $1::bigint) AS n",
                &[&(n as i64)],
            )
            .await?;
        let received_before = self.received.load(Ordering::Relaxed);
        let pg_cpu_before = self.postgres_cpu();
        let started = Instant::now();
        let mut children = self.spawn_workers(workers);
        self.settled().await?;
        let elapsed = started.elapsed();
        let worker_cpu: f64 = children.iter().map(|c| cpu_seconds(c.id(), false)).sum();
        let pg_cpu = self.postgres_cpu() - pg_cpu_before;
        let wal = self.wal_lsn().await? - wal_before;
        stop(&mut children);
        let delivered = self.received.load(Ordering::Relaxed) - received_before;
        println!(
            "drain, {workers} worker(s): {n} deliveries in {:.2} s = {:.0} deliveries/s (receiver saw {delivered})",
            elapsed.as_secs_f64(),
            n as f64 / elapsed.as_secs_f64()
        );
        println!(
            "  CPU per 1,000 deliveries: {:.3} s (hookline {:.3} + PostgreSQL {:.3}); WAL per delivery: {} bytes",
            (worker_cpu + pg_cpu) / n as f64 * 1000.0,
            worker_cpu / n as f64 * 1000.0,
            pg_cpu / n as f64 * 1000.0,
            wal / n as i64
        );
        Ok(())
    }

    async fn steady(&self, seconds: u64, workers: usize) -> anyhow::Result<()> {
        let mut children = self.spawn_workers(workers);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let produced = Arc::new(AtomicU64::new(0));
        let mut producers = Vec::new();
        for _ in 0..2 {
            let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await?;
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
        self.settled().await?;
        stop(&mut children);
        println!(
            "steady, {workers} workers, 2 producers inserting 100-event batches: produced {:.0}/s, delivered {:.0}/s",
            produced.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64(),
            delivered as f64 / elapsed.as_secs_f64()
        );
        Ok(())
    }

    async fn latency(&self, seconds: u64, per_second: u64) -> anyhow::Result<()> {
        let mut children = self.spawn_workers(1);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let committed = self.send_at_rate("bench.latency", seconds, per_second).await?;
        self.settled().await?;
        stop(&mut children);
        let l = self.latencies(&committed);
        println!(
            "latency at {per_second} events/s (1 worker), commit → receipt over {} events: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
            l.count, l.p50, l.p95, l.p99
        );
        Ok(())
    }

    /// A slow endpoint (10 s per request) with 1,000 deliveries queued, and
    /// a healthy one receiving `per_second` events: the healthy endpoint's
    /// commit → receipt latency while the slow one keeps its share busy.
    async fn noisy_neighbour(&self, seconds: u64, per_second: u64) -> anyhow::Result<()> {
        self.client.execute("UPDATE hookline.endpoints SET event_types = '{bench.*}'", &[]).await?;
        let slow: uuid::Uuid = self
            .client
            .query_one(
                "INSERT INTO hookline.endpoints (url, description, event_types, timeout_ms)
                 VALUES ($1, 'bench: sleeps 10 s per request', '{noisy.*}', 30000) RETURNING id",
                &[&self.slow_url],
            )
            .await?
            .get(0);
        let mut children = self.spawn_workers_with(2, &[("HOOKLINE_SHUTDOWN_GRACE_S", "1")]);
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.client
            .execute(
                "INSERT INTO hookline.events (event_type, payload) SELECT 'noisy.x', '{}' FROM generate_series(1, 1000)",
                &[],
            )
            .await?;
        let committed = self.send_at_rate("bench.healthy", seconds, per_second).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let row = self.client.query_one("SELECT in_flight, held FROM hookline.queue_stats", &[]).await?;
        let (in_flight, held): (i64, i64) = (row.get(0), row.get(1));
        stop(&mut children);
        self.client.execute("DELETE FROM hookline.endpoints WHERE id = $1", &[&slow]).await?;
        let l = self.latencies(&committed);
        println!(
            "noisy neighbour: 1,000 deliveries queued for an endpoint sleeping 10 s per request, 2 workers; \
             the healthy endpoint at {per_second} events/s, commit → receipt over {} of {} events: \
             p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms (then {in_flight} slow requests in flight, {held} held)",
            l.count,
            committed.len(),
            l.p50,
            l.p95,
            l.p99
        );
        Ok(())
    }

    /// Sends one `event_type` event per tick, `per_second` a second for
    /// `seconds`; returns each event id with the moment its commit returned.
    async fn send_at_rate(
        &self,
        event_type: &str,
        seconds: u64,
        per_second: u64,
    ) -> anyhow::Result<Vec<(String, Instant)>> {
        self.receipts.lock().unwrap().clear();
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await?;
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

    /// Commit → receipt percentiles (ms) of the events that arrived.
    fn latencies(&self, committed: &[(String, Instant)]) -> Percentiles {
        let receipts = self.receipts.lock().unwrap();
        let mut latencies: Vec<f64> = committed
            .iter()
            .filter_map(|(id, at)| receipts.get(id).map(|r| r.saturating_duration_since(*at).as_secs_f64() * 1000.0))
            .collect();
        latencies.sort_by(f64::total_cmp);
        let pct =
            |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)));
        Percentiles {
            count: latencies.len(),
            p50: pct(0.50).copied().unwrap_or(f64::NAN),
            p95: pct(0.95).copied().unwrap_or(f64::NAN),
            p99: pct(0.99).copied().unwrap_or(f64::NAN),
        }
    }

    /// Events/s from `connections` connections each running `sql` in its own
    /// transaction for `seconds`.
    async fn per_transaction_rate(&self, sql: &str, seconds: u64, connections: usize) -> anyhow::Result<f64> {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let done = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await?;
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

    async fn send_throughput(&self, seconds: u64, connections: usize) -> anyhow::Result<()> {
        self.client
            .batch_execute("CREATE TABLE IF NOT EXISTS bench_plain (id bigserial PRIMARY KEY, payload jsonb)")
            .await?;
        let floor = self
            .per_transaction_rate(
                "INSERT INTO bench_plain (payload) VALUES ('{\"order_id\": 42}')",
                seconds,
                connections,
            )
            .await?;
        let send = "SELECT hookline.send('bench.send', '{\"order_id\": 42}')";
        let quiet = self.per_transaction_rate(send, seconds, connections).await?;
        // An idle worker makes every producer NOTIFY, which serialises commits.
        self.client.execute("INSERT INTO hookline.idle_workers (worker_id) VALUES (gen_random_uuid())", &[]).await?;
        let notifying = self.per_transaction_rate(send, seconds, connections).await?;
        self.client.execute("DELETE FROM hookline.idle_workers", &[]).await?;
        println!(
            "hookline.send from {connections} connections, one event per transaction (fan-out 1): \
             {quiet:.0} events/s while workers are busy, {notifying:.0} events/s while one is idle (NOTIFY); \
             a plain one-row INSERT into a bare table: {floor:.0}/s"
        );
        Ok(())
    }

    /// A burst of 10,000 one-row INSERTs in one transaction wakes workers once.
    async fn burst(&self, n: usize) -> anyhow::Result<()> {
        self.client.execute("INSERT INTO hookline.idle_workers (worker_id) VALUES (gen_random_uuid())", &[]).await?;
        let (mut client, connection) = tokio_postgres::connect(&self.url, NoTls).await?;
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
        self.client.execute("DELETE FROM hookline.idle_workers", &[]).await?;
        self.client.execute("DELETE FROM hookline.delivery_queue", &[]).await?;
        println!(
            "burst: {n} one-row INSERTs in one transaction (one NOTIFY at commit): {:.0} ms, {:.1} µs per event",
            elapsed.as_secs_f64() * 1000.0,
            elapsed.as_secs_f64() * 1e6 / n as f64
        );
        Ok(())
    }
}

struct Percentiles {
    count: usize,
    p50: f64,
    p95: f64,
    p99: f64,
}
