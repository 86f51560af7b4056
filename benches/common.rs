//! What the benchmarks share: a throwaway PostgreSQL with hookline's schema
//! and one endpoint, a fast receiver in this process that records when each
//! webhook arrived, release `hookline` processes, and CPU accounting.

#![allow(dead_code)] // each benchmark uses part of it

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookline::pg_local::LocalPostgres;
use poem::{Endpoint, Request, Response, Route};
use tokio_postgres::NoTls;

pub type Receipts = Arc<Mutex<HashMap<String, Instant>>>;

pub struct Bench {
    pub url: String,
    /// A receiver that answers after 10 s.
    pub slow_url: String,
    pub server: LocalPostgres,
    pub received: Arc<AtomicU64>,
    pub receipts: Receipts,
    pub client: tokio_postgres::Client,
}

pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

impl Bench {
    pub async fn start() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("hookline-bench-{}", std::process::id()));
        let server = LocalPostgres::start(
            &dir,
            &[("shared_buffers", "512MB"), ("max_connections", "200"), ("max_wal_size", "4GB")],
        )?;
        server.stop_when_process_exits(std::process::id(), &dir)?;
        let (admin, connection) = tokio_postgres::connect(&server.url("postgres"), NoTls).await?;
        tokio::spawn(connection);
        admin.batch_execute("CREATE DATABASE hookline_bench").await?;
        let url = server.url("hookline_bench");
        let (mut client, connection) = tokio_postgres::connect(&url, NoTls).await?;
        tokio::spawn(connection);
        hookline::db::migrate(&mut client).await?;

        let received = Arc::new(AtomicU64::new(0));
        let receipts: Receipts = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let receiver_url = format!("http://{}/hook", listener.local_addr()?);
        let slow_url = format!("http://{}/slow", listener.local_addr()?);
        let app = Route::new().at("/hook", Receiver { received: received.clone(), receipts: receipts.clone() }).at(
            "/slow",
            poem::endpoint::make(|_| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                poem::http::StatusCode::NO_CONTENT
            }),
        );
        tokio::spawn(async move {
            let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
            poem::Server::new_with_acceptor(acceptor).run(app).await
        });
        client
            .execute("INSERT INTO hookline.endpoints (url, description) VALUES ($1, 'bench')", &[&receiver_url])
            .await?;
        Ok(Bench { url, slow_url, server, received, receipts, client })
    }

    pub fn spawn_workers(&self, n: usize) -> Vec<Child> {
        self.spawn_workers_with(n, &[])
    }

    pub fn spawn_workers_with(&self, n: usize, env: &[(&str, &str)]) -> Vec<Child> {
        (0..n)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_hookline"))
                    .arg("worker")
                    .env("HOOKLINE_DATABASE_URL", &self.url)
                    .env("HOOKLINE_ALLOW_PRIVATE_NETWORKS", "true")
                    .env("HOOKLINE_LOG", "warn")
                    .envs(env.iter().copied())
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("spawn worker")
            })
            .collect()
    }

    pub async fn settled(&self) -> anyhow::Result<()> {
        loop {
            let row = self.client.query_one("SELECT pending + in_flight FROM hookline.queue_stats", &[]).await?;
            if row.get::<_, i64>(0) == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn wal_lsn(&self) -> anyhow::Result<i64> {
        let row = self.client.query_one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint", &[]).await?;
        Ok(row.get(0))
    }

    pub fn postgres_cpu(&self) -> f64 {
        self.server.postmaster_pid().map_or(0.0, |pid| cpu_seconds(pid, true))
    }
}

pub fn stop(children: &mut Vec<Child>) {
    for child in children.iter() {
        // SAFETY: plain kill(2) on our own children.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    }
    for mut child in children.drain(..) {
        let _ = child.wait();
    }
}

/// User + system CPU seconds of a process (and, for the postmaster, of its
/// live children and the reaped ones it accounts for).
pub fn cpu_seconds(pid: u32, with_children: bool) -> f64 {
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let fields = |pid: u32| -> Option<Vec<u64>> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after_name = &stat[stat.rfind(')')? + 2..];
        Some(after_name.split(' ').map(|f| f.parse().unwrap_or(0)).collect())
    };
    // Fields after the name start at index 3 (state); utime is field 14.
    let own = fields(pid).map_or(0, |f| f[11] + f[12] + if with_children { f[13] + f[14] } else { 0 });
    let mut total = own;
    if with_children {
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(f) = fields(child)
                && f[1] == pid as u64
            {
                total += f[11] + f[12];
            }
        }
    }
    total as f64 / ticks
}

struct Receiver {
    pub received: Arc<AtomicU64>,
    pub receipts: Receipts,
}

impl Endpoint for Receiver {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let at = Instant::now();
        let id = req.headers().get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let _ = req.into_body().into_bytes().await;
        self.received.fetch_add(1, Ordering::Relaxed);
        self.receipts.lock().unwrap().entry(id).or_insert(at);
        Ok(Response::builder().status(poem::http::StatusCode::NO_CONTENT).finish())
    }
}
