//! `just soak`: faults as a project test. On a throwaway PostgreSQL, SQL and
//! API producers write events while three `hookline worker` processes
//! deliver them to a receiver on 127.0.0.1 that fails 20% of requests and
//! hangs 1% (past the endpoint's timeout); every second a random worker is
//! killed with SIGKILL and replaced, and halfway through PostgreSQL crashes
//! and restarts. Then the faults stop, the queue drains, and it prints what
//! happened: events committed, kills, restarts, lost (must be 0),
//! duplicates, the leases cut short, and the recovery after the restart.
//! Exits 1 if any committed event was never delivered. Last, a network
//! partition (see `partition`): a worker cut off mid-flight, whose late
//! completions the lease check refuses.
//!
//! Bounded: SOAK_SECONDS of faults (default 120; CI runs 40), then at most
//! DRAIN_LIMIT to drain. Only 127.0.0.1 is used.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookline::pg_local::LocalPostgres;
use poem::{Endpoint, Request, Response, Route};
use tokio_postgres::NoTls;

const WORKERS: usize = 3;
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
/// The endpoint's timeout: a hung request ends as a timeout after it.
const TIMEOUT_MS: i32 = 2000;

/// What producers know of each event, by its number `n`.
#[derive(Default)]
struct Ledger {
    committed: HashSet<u64>,
    /// The commit's answer was lost (the database went away mid-commit):
    /// the event exists or not, the database tells at the end.
    uncertain: HashSet<u64>,
}

/// What the receiver answered 2xx, per event: how often, and first when.
#[derive(Default)]
struct Receipts {
    delivered: HashMap<u64, (u32, Instant)>,
}

struct Receiver(Arc<Mutex<Receipts>>);

impl Endpoint for Receiver {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Response> {
        let body = request.into_body().into_vec().await?;
        let roll: f64 = rand::random();
        if roll < 0.01 {
            tokio::time::sleep(Duration::from_millis(TIMEOUT_MS as u64 * 5)).await;
        }
        if roll < 0.20 {
            return Ok(Response::builder().status(poem::http::StatusCode::INTERNAL_SERVER_ERROR).finish());
        }
        let n = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v["data"]["n"].as_u64());
        if let Some(n) = n {
            self.0.lock().unwrap().delivered.entry(n).or_insert((0, Instant::now())).0 += 1;
        }
        Ok(Response::builder().status(poem::http::StatusCode::NO_CONTENT).finish())
    }
}

struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// HOOKLINE_SECRET_KEY for the soak's processes.
const SECRET_KEY: &str = "aG9va2xpbmUgc29hayBrZXk6IG5vdCBhIHNlY3JldCE=";

/// A `hookline` process that dies with the soak, however the soak ends.
fn hookline(command: &str, url: &str, env: &[(&str, &str)]) -> Child {
    spawn(
        Command::new(env!("CARGO_BIN_EXE_hookline"))
            .arg(command)
            .env("HOOKLINE_DATABASE_URL", url)
            .env("HOOKLINE_SECRET_KEY", SECRET_KEY)
            .env("HOOKLINE_LOG", "error")
            .envs(env.iter().copied())
            .stdout(Stdio::null()),
    )
}

/// Spawns `command` so that it is killed when the soak exits.
fn spawn(command: &mut Command) -> Child {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death signal.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command.spawn().expect("spawn hookline")
}

/// Workers as the soak runs them: a short lease for the endpoint's timeout,
/// a circuit that the receiver's 20% failures do not trip, and no limit on
/// lost leases (a delivery cut off by a kill once a second is retried, not
/// given up: what is measured is at-least-once, not the give-up rule).
fn worker(url: &str) -> Child {
    hookline(
        "worker",
        url,
        &[
            ("HOOKLINE_ALLOW_PRIVATE_NETWORKS", "true"),
            ("HOOKLINE_CIRCUIT_FAILURES", "50"),
            ("HOOKLINE_MAX_WORKER_LOSSES", "1000"),
            ("HOOKLINE_POOL_SIZE", "4"),
        ],
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let seconds = std::env::var("SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(120u64);
    let dir = std::env::temp_dir().join(format!("hookline-soak-{}", std::process::id()));
    let server = LocalPostgres::start(&dir, &[("max_connections", "200")])?;
    server.stop_when_process_exits(std::process::id(), &dir)?;
    let (admin, connection) = tokio_postgres::connect(&server.url("postgres"), NoTls).await?;
    tokio::spawn(connection);
    admin.batch_execute("CREATE DATABASE soak").await?;
    let url = server.url("soak");
    anyhow::ensure!(hookline("migrate", &url, &[]).wait()?.success(), "migrate failed");

    let receipts = Arc::new(Mutex::new(Receipts::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver_url = format!("http://{}/hook", listener.local_addr()?);
    let app = Route::new().at("/hook", Receiver(receipts.clone()));
    tokio::spawn(async move {
        let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).expect("bound");
        poem::Server::new_with_acceptor(acceptor).run(app).await
    });
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
    tokio::spawn(connection);
    client
        .execute(
            "INSERT INTO hookline.endpoints (url, timeout_ms, retry_schedule)
             VALUES ($1, $2, '{0.1, 0.2, 0.5, 1, 1, 2, 2, 3, 3, 5, 5, 5, 10, 10}')",
            &[&receiver_url, &TIMEOUT_MS],
        )
        .await?;
    let token = String::from_utf8(
        Command::new(env!("CARGO_BIN_EXE_hookline"))
            .args(["token", "create", "--name", "soak", "--scope", "write"])
            .env("HOOKLINE_DATABASE_URL", &url)
            .output()?
            .stdout,
    )?
    .trim()
    .to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let api_base = format!("http://127.0.0.1:{port}");
    let serve = hookline("serve", &url, &[("HOOKLINE_LISTEN", &format!("127.0.0.1:{port}"))]);
    let mut processes = Processes(vec![serve]);
    processes.0.extend((0..WORKERS).map(|_| worker(&url)));

    println!("hookline soak: {seconds} s of faults, {WORKERS} workers, receiver failing 20% and hanging 1%\n");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let sequence = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let producers = [
        tokio::spawn(produce_sql(url.clone(), ledger.clone(), sequence.clone(), deadline)),
        tokio::spawn(produce_api(api_base, token, ledger.clone(), sequence.clone(), deadline)),
    ];

    let started = Instant::now();
    // When PostgreSQL came back, and the first event number produced after.
    let (mut kills, mut restarted) = (0u32, None);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let victim = 1 + rand::random_range(0..WORKERS);
        let _ = processes.0[victim].kill();
        let _ = processes.0[victim].wait();
        processes.0[victim] = worker(&url);
        kills += 1;
        // A worker started while PostgreSQL was down gave up at once: start another.
        for slot in 1..=WORKERS {
            if matches!(processes.0[slot].try_wait(), Ok(Some(_))) {
                processes.0[slot] = worker(&url);
            }
        }
        if restarted.is_none() && started.elapsed() >= Duration::from_secs(seconds / 2) {
            let server = &server;
            tokio::task::block_in_place(|| server.crash_and_restart())?;
            restarted = Some((Instant::now(), sequence.load(Ordering::Relaxed)));
        }
    }
    for producer in producers {
        producer.await??;
    }
    let (restarted_at, first_after) = restarted.expect("the run restarts PostgreSQL once");

    // Drain: no more faults; wait until nothing is waiting or in flight.
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
    tokio::spawn(connection);
    let drain_started = Instant::now();
    loop {
        let open: i64 = client.query_one("SELECT pending + in_flight FROM hookline.queue_stats", &[]).await?.get(0);
        if open == 0 || drain_started.elapsed() > DRAIN_LIMIT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (mut committed, uncertain) = {
        let ledger = ledger.lock().unwrap();
        (ledger.committed.clone(), ledger.uncertain.iter().map(|n| *n as i64).collect::<Vec<i64>>())
    };
    let rows = client
        .query(
            "SELECT (payload->>'n')::bigint FROM hookline.events WHERE (payload->>'n')::bigint = ANY ($1)",
            &[&uncertain],
        )
        .await?;
    committed.extend(rows.iter().map(|r| r.get::<_, i64>(0) as u64));
    let delivered = std::mem::take(&mut receipts.lock().unwrap().delivered);
    let lost: Vec<u64> = committed.iter().filter(|n| !delivered.contains_key(n)).copied().collect();
    let duplicates: u32 = delivered.values().map(|(c, _)| c - 1).sum();
    let count = |sql: &'static str| {
        let client = &client;
        async move { client.query_one(sql, &[]).await.map(|r| r.get::<_, i64>(0)) }
    };
    let cut_short = count("SELECT count(*) FROM hookline.attempts WHERE error_kind = 'worker_lost'").await?;
    let dead = count("SELECT count(*) FROM hookline.deliveries WHERE state = 'dead'").await?;
    // Recovery: from PostgreSQL's return to the first delivery of an event produced after it.
    let recovery = delivered.iter().filter(|(n, _)| **n >= first_after).map(|(_, (_, at))| *at).min();

    println!("events committed            {}", committed.len());
    println!("  of which the commit's answer was lost   {}", rows.len());
    println!("worker kills (SIGKILL)      {kills}");
    println!("PostgreSQL crash-restarts   1");
    println!("lost (committed, never delivered)   {}", lost.len());
    println!("duplicates (delivered twice or more) {duplicates}");
    println!("leases cut short (worker_lost attempts) {cut_short}");
    println!("dead deliveries             {dead}");
    println!("drain after the faults      {:.1} s", drain_started.elapsed().as_secs_f64());
    match recovery {
        Some(at) => println!(
            "recovery after the restart  {:.2} s to the first delivery of an event produced after it",
            at.saturating_duration_since(restarted_at).as_secs_f64()
        ),
        None => println!("recovery after the restart  none: nothing produced after it was delivered"),
    }
    if !lost.is_empty() {
        let sample: Vec<_> = lost.iter().take(10).collect();
        println!("\nLOST: {sample:?}");
        std::process::exit(1);
    }

    // The network partition: every worker so far stops; one in a network
    // namespace of its own takes a batch and loses its link.
    drop(processes);
    client.execute("UPDATE hookline.endpoints SET event_types = '{soak.sql, soak.api}'", &[]).await?;
    match partition::Namespace::create() {
        Ok(namespace) => partition::run(&namespace, &server, &client, &url).await?,
        Err(why) => println!("\npartition                   skipped: {why}"),
    }
    Ok(())
}

/// A worker cut off from the network mid-flight (`ip netns`, a veth pair;
/// this machine only): its leases expire, another worker delivers, and when
/// the link returns its late completions are refused by the lease check.
mod partition {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use hookline::pg_local::LocalPostgres;
    use poem::{Route, handler};

    const EVENTS: i64 = 100;
    /// The endpoint's timeout: with its 5 s margin, the lease is 8 s.
    const TIMEOUT_MS: i32 = 3000;

    pub struct Namespace {
        name: String,
        host_if: String,
        inner_if: String,
        pub host_ip: String,
    }

    fn ip(args: &[&str]) -> anyhow::Result<()> {
        let out = Command::new("ip").args(args).output()?;
        anyhow::ensure!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        Ok(())
    }

    impl Namespace {
        /// A namespace joined to this one by a veth pair, 10.231.x.1 here
        /// and 10.231.x.2 there; gone again when dropped.
        pub fn create() -> anyhow::Result<Namespace> {
            let id = std::process::id() % 250;
            let namespace = Namespace {
                name: format!("hl-soak-{}", std::process::id()),
                host_if: format!("hls{id}a"),
                inner_if: format!("hls{id}b"),
                host_ip: format!("10.231.{id}.1"),
            };
            ip(&["netns", "add", &namespace.name])?;
            ip(&["link", "add", &namespace.host_if, "type", "veth", "peer", "name", &namespace.inner_if])?;
            ip(&["link", "set", &namespace.inner_if, "netns", &namespace.name])?;
            ip(&["addr", "add", &format!("{}/30", namespace.host_ip), "dev", &namespace.host_if])?;
            ip(&["link", "set", &namespace.host_if, "up"])?;
            let inner_ip = format!("10.231.{id}.2/30");
            namespace.inside(&["addr", "add", &inner_ip, "dev", &namespace.inner_if])?;
            namespace.inside(&["link", "set", "lo", "up"])?;
            namespace.link(true)?;
            Ok(namespace)
        }

        fn inside(&self, args: &[&str]) -> anyhow::Result<()> {
            let mut all = vec!["netns", "exec", &self.name, "ip"];
            all.extend_from_slice(args);
            ip(&all)
        }

        /// Takes the namespace's end of the link down or up: this side keeps
        /// its address, so workers here still reach the receiver on it.
        pub fn link(&self, up: bool) -> anyhow::Result<()> {
            self.inside(&["link", "set", &self.inner_if, if up { "up" } else { "down" }])
        }
    }

    impl Drop for Namespace {
        fn drop(&mut self) {
            let _ = ip(&["link", "del", &self.host_if]);
            let _ = ip(&["netns", "del", &self.name]);
        }
    }

    /// Forwards `listen_ip`:(a free port) to PostgreSQL on 127.0.0.1, so the
    /// namespace reaches it over the veth pair; returns the port.
    async fn proxy_to(listen_ip: &str, server: &LocalPostgres) -> anyhow::Result<u16> {
        let listener = tokio::net::TcpListener::bind((listen_ip, 0)).await?;
        let port = listener.local_addr()?.port();
        let target = format!("127.0.0.1:{}", server.port);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(port)
    }

    /// Answers every request after a second, so requests are in flight when the link goes.
    #[handler]
    async fn slow() -> poem::http::StatusCode {
        SEEN.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(1)).await;
        poem::http::StatusCode::NO_CONTENT
    }

    static SEEN: AtomicU64 = AtomicU64::new(0);

    pub async fn run(
        namespace: &Namespace,
        server: &LocalPostgres,
        client: &tokio_postgres::Client,
        url: &str,
    ) -> anyhow::Result<()> {
        let proxy_port = proxy_to(&namespace.host_ip, server).await?;
        let listener = tokio::net::TcpListener::bind((namespace.host_ip.as_str(), 0)).await?;
        let receiver = format!("http://{}/slow", listener.local_addr()?);
        tokio::spawn(async move {
            let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).expect("bound");
            poem::Server::new_with_acceptor(acceptor).run(Route::new().at("/slow", slow)).await
        });
        client
            .execute(
                "INSERT INTO hookline.endpoints (url, event_types, timeout_ms) VALUES ($1, '{soak.partition}', $2)",
                &[&receiver, &TIMEOUT_MS],
            )
            .await?;

        // The cut-off worker logs JSON (to its standard output); its refused
        // completions are counted from it.
        let inner_url = format!("postgres://postgres@{}:{proxy_port}/soak", namespace.host_ip);
        let mut cut_off = super::Processes(vec![super::spawn(
            Command::new("ip")
                .args(["netns", "exec", &namespace.name, env!("CARGO_BIN_EXE_hookline"), "worker"])
                .env("HOOKLINE_DATABASE_URL", &inner_url)
                .env("HOOKLINE_SECRET_KEY", super::SECRET_KEY)
                .env("HOOKLINE_ALLOW_PRIVATE_NETWORKS", "true")
                .env("HOOKLINE_LOG", "warn")
                .env("HOOKLINE_LOG_FORMAT", "json")
                .stdout(Stdio::piped()),
        )]);
        let refused = Arc::new(AtomicI64::new(0));
        let log = cut_off.0[0].stdout.take().expect("piped");
        let counted = refused.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(log).lines().map_while(Result::ok) {
                let fields = serde_json::from_str::<serde_json::Value>(&line).unwrap_or_default()["fields"].clone();
                if let Some(n) = fields["not_ours"].as_i64() {
                    counted.fetch_add(n, Ordering::Relaxed);
                }
            }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        client
            .execute(
                "INSERT INTO hookline.events (event_type, payload)
                 SELECT 'soak.partition', jsonb_build_object('p', n) FROM generate_series(1, $1::bigint) AS n",
                &[&EVENTS],
            )
            .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while SEEN.load(Ordering::Relaxed) == 0 {
            anyhow::ensure!(Instant::now() < deadline, "the cut-off worker sent nothing");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        namespace.link(false)?;
        let cut_at = Instant::now();
        let held: i64 = client
            .query_one("SELECT count(*) FROM hookline.delivery_queue WHERE lease_owner IS NOT NULL", &[])
            .await?
            .get(0);
        let rescuer = super::worker(url);
        let _rescuer = super::Processes(vec![rescuer]);
        let succeeded =
            "SELECT count(*) FROM hookline.deliveries WHERE event_type = 'soak.partition' AND state = 'succeeded'";
        let deadline = Instant::now() + Duration::from_secs(60);
        while client.query_one(succeeded, &[]).await?.get::<_, i64>(0) < EVENTS {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the other worker did not deliver the cut-off worker's deliveries"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let delivered_after = cut_at.elapsed();

        namespace.link(true)?;
        let restored_at = Instant::now();
        while refused.load(Ordering::Relaxed) < held && restored_at.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(cut_off);
        let lost = "SELECT count(*) FROM hookline.attempts WHERE error_kind = 'worker_lost'
                     AND delivery_id IN (SELECT id FROM hookline.deliveries WHERE event_type = 'soak.partition')";
        let taken_over: i64 = client.query_one(lost, &[]).await?.get(0);

        println!("\npartition: a worker cut off (ip netns) holding {held} deliveries");
        println!(
            "  delivered by another worker {:.1} s after the cut ({taken_over} leases taken over)",
            delivered_after.as_secs_f64()
        );
        println!(
            "  late completions refused by the lease check when the link came back   {}",
            refused.load(Ordering::Relaxed)
        );
        Ok(())
    }
}

/// One event per transaction through `hookline.send`, reconnecting when the
/// database goes away.
async fn produce_sql(
    url: String,
    ledger: Arc<Mutex<Ledger>>,
    sequence: Arc<AtomicU64>,
    deadline: Instant,
) -> anyhow::Result<()> {
    while Instant::now() < deadline {
        let Ok((mut client, connection)) = tokio_postgres::connect(&url, NoTls).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        tokio::spawn(connection);
        while Instant::now() < deadline {
            let n = sequence.fetch_add(1, Ordering::Relaxed);
            let outcome = async {
                let tx = client.transaction().await?;
                tx.execute("SELECT hookline.send('soak.sql', jsonb_build_object('n', $1::bigint))", &[&(n as i64)])
                    .await?;
                tx.commit().await
            }
            .await;
            match outcome {
                Ok(()) => ledger.lock().unwrap().committed.insert(n),
                Err(_) => ledger.lock().unwrap().uncertain.insert(n),
            };
            if client.is_closed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    Ok(())
}

/// One event per `POST /v1/events`; an answer other than 202 (or none)
/// leaves the event uncertain.
async fn produce_api(
    base: String,
    token: String,
    ledger: Arc<Mutex<Ledger>>,
    sequence: Arc<AtomicU64>,
    deadline: Instant,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    while Instant::now() < deadline {
        let n = sequence.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::json!({"event_type": "soak.api", "payload": {"n": n}});
        let answer = http.post(format!("{base}/v1/events")).bearer_auth(&token).json(&body).send().await;
        match answer {
            Ok(response) if response.status() == 202 => ledger.lock().unwrap().committed.insert(n),
            _ => ledger.lock().unwrap().uncertain.insert(n),
        };
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}
