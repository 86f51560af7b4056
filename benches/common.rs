//! What the benchmarks share: a throwaway PostgreSQL (with
//! pg_stat_statements), one database per build under test — this one, and a
//! baseline binary when there is one (`just baseline`) — each migrated by
//! its own binary with one endpoint, a fast receiver in this process that
//! records when each webhook arrived, release `hookline` processes, CPU
//! accounting, and a report that sets each figure of this build beside the
//! baseline's, measured alternately in the same run.

#![allow(dead_code)] // each benchmark uses part of it

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookline::pg_local::LocalPostgres;

/// HOOKLINE_SECRET_KEY for the processes a bench starts (serve and worker need one).
pub const SECRET_KEY: &str = "aG9va2xpbmUgYmVuY2gga2V5OiBub3QgYSBzZWNyZXQ=";
use poem::{Endpoint, Request, Response, Route};
use tokio_postgres::NoTls;

/// Every arrival of each `webhook-id`.
pub type Receipts = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

/// The commit the baseline binary is built from (`just baseline`).
pub const BASELINE_COMMIT: &str = "6ddd2c9";

/// One binary under test, with a database its own `migrate` made.
pub struct Build {
    pub name: String,
    /// Its column in the report.
    pub index: usize,
    pub bin: PathBuf,
    pub url: String,
    pub client: tokio_postgres::Client,
    /// Its endpoint's URL (the shared receiver).
    pub endpoint_url: String,
}

pub struct Bench {
    pub server: LocalPostgres,
    pub builds: Vec<Build>,
    /// A receiver that answers after 10 s.
    pub slow_url: String,
    pub received: Arc<AtomicU64>,
    pub receipts: Receipts,
    pub admin: tokio_postgres::Client,
}

pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Rounds each scenario runs per build (alternating builds), `BENCH_ROUNDS`.
pub fn rounds() -> usize {
    env_or("BENCH_ROUNDS", 2).max(1) as usize
}

/// Whether scenario `name` runs: all of them, unless `BENCH_ONLY` names some
/// (comma-separated), to iterate on one.
pub fn selected(name: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|n| n.trim() == name))
}

/// The baseline binary: `HOOKLINE_BASELINE_BIN`, else what `just baseline` builds.
fn baseline_bin() -> Option<PathBuf> {
    let path = std::env::var_os("HOOKLINE_BASELINE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/baseline/release/hookline")));
    path.exists().then_some(path)
}

impl Bench {
    pub async fn start() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("hookline-bench-{}", std::process::id()));
        let explain_logs = std::env::var("BENCH_EXPLAIN").ok().filter(|dir| !dir.is_empty());
        let mut settings = vec![
            ("shared_buffers", "512MB"),
            ("max_connections", "300"),
            ("max_wal_size", "4GB"),
            ("pg_stat_statements.track", "all"),
            ("pg_stat_statements.track_planning", "on"),
            ("pg_stat_statements.max", "10000"),
        ];
        match &explain_logs {
            // A sample of every statement's plan with its row counts and
            // times, nested ones too, logged where BENCH_EXPLAIN says.
            Some(log_directory) => {
                settings.extend([
                    ("shared_preload_libraries", "pg_stat_statements,auto_explain"),
                    ("auto_explain.log_min_duration", "0"),
                    ("auto_explain.sample_rate", "0.03"),
                    ("auto_explain.log_analyze", "on"),
                    ("auto_explain.log_buffers", "on"),
                    ("auto_explain.log_nested_statements", "on"),
                    ("logging_collector", "on"),
                ]);
                settings.push(("log_directory", log_directory.as_str()));
            }
            None => settings.push(("shared_preload_libraries", "pg_stat_statements")),
        }
        let server = LocalPostgres::start(&dir, &settings)?;
        server.stop_when_process_exits(std::process::id(), &dir)?;
        let (admin, connection) = tokio_postgres::connect(&server.url("postgres"), NoTls).await?;
        tokio::spawn(connection);
        admin.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await?;

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

        let mut candidates = vec![("this build".to_owned(), PathBuf::from(env!("CARGO_BIN_EXE_hookline")))];
        match baseline_bin() {
            Some(bin) => candidates.push((format!("baseline {BASELINE_COMMIT}"), bin)),
            None => println!("(no baseline binary: `just baseline` builds one; figures are for this build alone)\n"),
        }
        let mut builds = Vec::new();
        for (n, (name, bin)) in candidates.into_iter().enumerate() {
            let database = format!("hookline_bench_{n}");
            admin.batch_execute(&format!("CREATE DATABASE {database}")).await?;
            let url = server.url(&database);
            let migrated = Command::new(&bin)
                .arg("migrate")
                .env("HOOKLINE_DATABASE_URL", &url)
                .env("HOOKLINE_LOG", "warn")
                .status()?;
            anyhow::ensure!(migrated.success(), "{} migrate failed", bin.display());
            let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
            tokio::spawn(connection);
            // As many partitions as 30 days of history keep (on builds that
            // have them), so plans meet the partition count of a running site.
            client
                .batch_execute(
                    "DO $$ BEGIN
                       IF to_regproc('hookline.create_partitions') IS NOT NULL THEN
                           PERFORM hookline.create_partitions(42, 7, NULL);
                       END IF;
                     END $$",
                )
                .await?;
            client
                .execute("INSERT INTO hookline.endpoints (url, description) VALUES ($1, 'bench')", &[&receiver_url])
                .await?;
            builds.push(Build { name, index: n, bin, url, client, endpoint_url: receiver_url.clone() });
        }
        Ok(Bench { server, builds, slow_url, received, receipts, admin })
    }

    /// The builds whose schema has `endpoints.<column>`.
    pub async fn builds_with(&self, column: &str) -> anyhow::Result<Vec<&Build>> {
        let mut with = Vec::new();
        for build in &self.builds {
            let has = build
                .client
                .query_one(
                    "SELECT EXISTS (SELECT FROM information_schema.columns
                                     WHERE table_schema = 'hookline' AND table_name = 'endpoints'
                                       AND column_name = $1)",
                    &[&column],
                )
                .await?
                .get::<_, bool>(0);
            if has {
                with.push(build);
            }
        }
        Ok(with)
    }

    pub fn spawn_workers(&self, build: &Build, n: usize) -> Vec<Child> {
        self.spawn_workers_with(build, n, &[])
    }

    pub fn spawn_workers_with(&self, build: &Build, n: usize, env: &[(&str, &str)]) -> Vec<Child> {
        (0..n)
            .map(|_| {
                Command::new(&build.bin)
                    .arg("worker")
                    .env("HOOKLINE_DATABASE_URL", &build.url)
                    .env("HOOKLINE_SECRET_KEY", SECRET_KEY)
                    .env("HOOKLINE_ALLOW_PRIVATE_NETWORKS", "true")
                    .env("HOOKLINE_LOG", "warn")
                    .envs(env.iter().copied())
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("spawn worker")
            })
            .collect()
    }

    /// Vacuums every build's database and checkpoints before a light-load
    /// measurement: the heavy scenarios before it leave autovacuum work that would otherwise
    /// run during whichever build is measured first, and count as its CPU.
    pub async fn quiet(&self) -> anyhow::Result<()> {
        for build in &self.builds {
            build.client.batch_execute("VACUUM (ANALYZE)").await?;
        }
        // And the checkpoint their writes are due, now rather than mid-measurement.
        self.admin.batch_execute("CHECKPOINT").await?;
        Ok(())
    }

    /// Waits until the build's queue holds nothing pending or in flight.
    /// Waits until no delivery is open (dead letters aside). Polls with a
    /// look at the first index entries rather than a count, which on a
    /// large queue would take the CPU the drain is measured by.
    pub async fn settled(&self, build: &Build) -> anyhow::Result<()> {
        // The first pending row, from the claims' index: a scan of the
        // table would wade through the rows the drain deleted, costing
        // PostgreSQL 3–4 ms a look (5–8% of a batched drain's time).
        const ANY_DUE_OR_HELD: &str = "
            SELECT (SELECT min(next_attempt_at) FROM hookline.delivery_queue WHERE state = 'pending') IS NOT NULL
                OR EXISTS (SELECT FROM hookline.delivery_queue WHERE state = 'held')";
        const ANY_IN_A_LANE: &str =
            "SELECT EXISTS (SELECT FROM hookline.delivery_queue WHERE lane IS NOT NULL AND state <> 'dead')";
        // A baseline from before ordered lanes (V12) has no lane column.
        let lanes = build.client.query_one(ANY_IN_A_LANE, &[]).await.is_ok();
        loop {
            let open = build.client.query_one(ANY_DUE_OR_HELD, &[]).await?.get::<_, bool>(0)
                || (lanes && build.client.query_one(ANY_IN_A_LANE, &[]).await?.get::<_, bool>(0));
            if !open {
                return Ok(());
            }
            // Often enough to end within 1% of a multi-second drain.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn wal_lsn(&self) -> anyhow::Result<i64> {
        let row = self.admin.query_one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint", &[]).await?;
        Ok(row.get(0))
    }

    pub fn postgres_cpu(&self) -> f64 {
        self.server.postmaster_pid().map_or(0.0, |pid| cpu_seconds(pid, true))
    }

    pub async fn reset_statements(&self) -> anyhow::Result<()> {
        self.admin.execute("SELECT pg_stat_statements_reset()", &[]).await?;
        Ok(())
    }

    /// What PostgreSQL spent on `build`'s database since the last reset.
    pub async fn statements(&self, build: &Build) -> anyhow::Result<Statements> {
        let database = build.url.rsplit('/').next().unwrap_or_default().to_owned();
        let rows = self
            .admin
            .query(
                "SELECT s.toplevel, s.calls, s.total_exec_time + s.total_plan_time, s.rows, regexp_replace(s.query, '\\s+', ' ', 'g')
                   FROM pg_stat_statements AS s JOIN pg_database AS d ON d.oid = s.dbid
                  WHERE d.datname = $1
                  ORDER BY s.total_exec_time DESC",
                &[&database],
            )
            .await?;
        let all: Vec<Statement> = rows
            .iter()
            .map(|r| Statement {
                toplevel: r.get(0),
                calls: r.get(1),
                total_ms: r.get(2),
                rows: r.get(3),
                query: r.get(4),
            })
            .collect();
        Ok(Statements { all })
    }

    /// Receipt latencies (ms) of every delivery of the given events, from
    /// the instant recorded for each event.
    pub fn latencies(&self, started: &[(String, Instant)]) -> Latencies {
        let receipts = self.receipts.lock().unwrap();
        let mut latencies: Vec<f64> = started
            .iter()
            .flat_map(|(id, at)| {
                receipts.get(id).into_iter().flatten().map(|r| r.saturating_duration_since(*at).as_secs_f64() * 1000.0)
            })
            .collect();
        latencies.sort_by(f64::total_cmp);
        Latencies::of(latencies)
    }
}

pub struct Statement {
    pub toplevel: bool,
    pub calls: i64,
    pub total_ms: f64,
    pub rows: i64,
    pub query: String,
}

pub struct Statements {
    pub all: Vec<Statement>,
}

impl Statements {
    /// Time of the statements clients sent (not those run inside functions).
    pub fn toplevel_ms(&self) -> f64 {
        self.all.iter().filter(|s| s.toplevel).map(|s| s.total_ms).sum()
    }

    /// Calls and rows of the top-level statements whose text contains one of `needles`.
    pub fn calls_and_rows(&self, needles: &[&str]) -> (i64, i64) {
        self.all
            .iter()
            .filter(|s| s.toplevel && needles.iter().any(|n| s.query.contains(n)))
            .fold((0, 0), |(c, r), s| (c + s.calls, r + s.rows))
    }

    pub fn print_top(&self, title: &str, n: usize) {
        println!("  top statements by total time, {title} (pg_stat_statements, track = all; * = inside a function):");
        println!("  {:>9} {:>10} {:>9} {:>9}  statement", "calls", "total ms", "mean ms", "rows");
        for s in self.all.iter().take(n) {
            let query: String = s.query.chars().take(110).collect();
            println!(
                "  {:>9} {:>10.1} {:>9.3} {:>9}  {}{query}",
                s.calls,
                s.total_ms,
                s.total_ms / s.calls.max(1) as f64,
                s.rows,
                if s.toplevel { "" } else { "* " }
            );
        }
    }
}

pub struct Latencies {
    pub count: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Latencies {
    pub fn of(sorted: Vec<f64>) -> Self {
        let pct = |p: f64| {
            sorted
                .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
                .copied()
                .unwrap_or(f64::NAN)
        };
        Latencies { count: sorted.len(), p50: pct(0.50), p95: pct(0.95), p99: pct(0.99) }
    }
}

/// Figures of every build, printed side by side with this build's ratio to
/// the baseline (medians over rounds).
#[derive(Default)]
pub struct Report {
    figures: Vec<(String, Vec<Vec<f64>>)>,
}

impl Report {
    pub fn add(&mut self, figure: &str, build: usize, value: f64) {
        let at = match self.figures.iter().position(|(name, _)| name == figure) {
            Some(at) => at,
            None => {
                self.figures.push((figure.to_owned(), Vec::new()));
                self.figures.len() - 1
            }
        };
        let values = &mut self.figures[at].1;
        if values.len() <= build {
            values.resize(build + 1, Vec::new());
        }
        values[build].push(value);
    }

    pub fn print(&self, builds: &[Build]) {
        let names: Vec<&str> = builds.iter().map(|b| b.name.as_str()).collect();
        print!("{:<72}", "figure (median of rounds)");
        for name in &names {
            print!(" {name:>16}");
        }
        println!("{}", if names.len() > 1 { "    ratio" } else { "" });
        for (figure, values) in &self.figures {
            print!("{figure:<72}");
            let medians: Vec<f64> = values.iter().map(|v| median(v)).collect();
            for m in &medians {
                print!(" {:>16}", format_figure(*m));
            }
            if let [this, baseline] = medians[..] {
                print!("    ×{:.2}", this / baseline);
            }
            println!();
        }
        println!();
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn format_figure(value: f64) -> String {
    if value.abs() >= 100.0 { format!("{value:.0}") } else { format!("{value:.3}") }
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
        self.receipts.lock().unwrap().entry(id).or_default().push(at);
        Ok(Response::builder().status(poem::http::StatusCode::NO_CONTENT).finish())
    }
}
