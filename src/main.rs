//! The `hookline` command: parses settings, then hands over to the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use deadpool_postgres::Pool;
use tokio::sync::watch;

use hookline::config::{Settings, WorkerSettings};
use hookline::secrets::KeyRing;
use hookline::{api, db, dev, telemetry, worker};

/// glibc's malloc handed the workers' short-lived buffers (claims of a few
/// hundred rows, request bodies) back to the kernel and faulted fresh,
/// zeroed pages in for the next. With mimalloc a worker spends 15% less
/// CPU per delivery in a drain, for about 25 MB more resident memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "hookline", version, about = "Webhook delivery whose whole state lives in PostgreSQL")]
struct Cli {
    /// A TOML file of settings (keys as in the README, e.g. `worker_concurrency = 64`).
    #[arg(long, global = true)]
    config: Option<PathBuf>,

    #[command(flatten)]
    settings: Settings,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the migrations and the SQL objects of sql/.
    Migrate,
    /// Run the HTTP API.
    Serve,
    /// Run a delivery worker.
    Worker,
    /// Migrate, then run the API and one worker in this process.
    Run,
    /// `run` against a throwaway PostgreSQL (unless one is configured), with a demo endpoint.
    Dev,
    /// Create the history's partitions ahead and drop those past retention,
    /// once (workers do it every few minutes).
    Maintain,
    /// Print the OpenAPI document.
    Openapi,
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage the keys that encrypt endpoint and source secrets at rest.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Print a new random key for HOOKLINE_SECRET_KEY.
    GenerateKey,
    /// Re-encrypt every endpoint and source secret with the first key of
    /// HOOKLINE_SECRET_KEY, in batches; safe to stop and run again.
    RotateKey {
        /// Rows per transaction.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        batch: i64,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it (only its hash is stored).
    Create {
        /// A name to recognise it by.
        #[arg(long)]
        name: String,
        /// read, write or admin.
        #[arg(long, value_parser = ["read", "write", "admin"])]
        scope: String,
        /// Bind the token to one tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
}

fn main() {
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(line) => {
            eprintln!("hookline: {line}");
            std::process::exit(2);
        }
    };
    telemetry::init(&cli.settings.log, &cli.settings.log_format);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    if let Err(error) = runtime.block_on(execute(cli)) {
        eprintln!("hookline: {error:#}");
        std::process::exit(1);
    }
}

/// Parses flags, environment and config file; any problem is one line.
fn parse_cli() -> Result<Cli, String> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(path) = config_path(&args) {
        hookline::config::load_file_into_env(&path)?;
    }
    Cli::try_parse_from(&args).map_err(|e| match e.kind() {
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => e.exit(),
        _ => e.to_string().lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ").to_owned(),
    })
}

/// `--config` must be read before clap parses, since it feeds the environment.
fn config_path(args: &[String]) -> Option<PathBuf> {
    let at = args.iter().position(|a| a == "--config" || a.starts_with("--config="))?;
    match args[at].strip_prefix("--config=") {
        Some(path) => Some(path.into()),
        None => args.get(at + 1).map(PathBuf::from),
    }
}

async fn execute(cli: Cli) -> anyhow::Result<()> {
    let settings = cli.settings;
    match cli.command {
        Command::Openapi => {
            println!("{}", api::openapi_document());
            Ok(())
        }
        Command::Migrate => {
            let pool = connect(&required_url(&settings)?, &settings).await?;
            migrate(&pool, &settings).await
        }
        Command::Maintain => {
            let pool = connect(&required_url(&settings)?, &settings).await?;
            maintain(&pool, &settings).await
        }
        Command::Serve => {
            let url = required_url(&settings)?;
            let keys = required_keys(&settings)?;
            let pool = connect(&url, &settings).await?;
            serve(pool, &url, &settings, keys, shutdown_signal()).await
        }
        Command::Worker => {
            let url = required_url(&settings)?;
            work(&url, &settings, settings.worker(required_keys(&settings)?), shutdown_signal()).await
        }
        Command::Run => {
            let url = required_url(&settings)?;
            let keys = required_keys(&settings)?;
            let pool = connect(&url, &settings).await?;
            migrate(&pool, &settings).await?;
            run_all(pool, &url, &settings, keys, shutdown_signal()).await
        }
        Command::Dev => run_dev(settings).await,
        Command::Token { command: TokenCommand::Create { name, scope, tenant } } => {
            let pool = connect(&required_url(&settings)?, &settings).await?;
            let client = pool.get().await?;
            let scope = api::auth::Scope::parse(&scope).expect("clap checked it");
            let (token, _) = api::auth::create_token(&client, &name, scope, tenant.as_deref())
                .await
                .map_err(|e| anyhow::anyhow!(telemetry::error_chain(&e)))?;
            println!("{token}");
            Ok(())
        }
        Command::Secrets { command: SecretsCommand::GenerateKey } => {
            println!("{}", KeyRing::generate_key());
            Ok(())
        }
        Command::Secrets { command: SecretsCommand::RotateKey { batch } } => {
            let keys = required_keys(&settings)?;
            let pool = connect(&required_url(&settings)?, &settings).await?;
            rotate_key(&pool, &keys, batch).await
        }
    }
}

/// The keys of HOOKLINE_SECRET_KEY, which every production command needs:
/// without one, secrets would be stored as plaintext.
fn required_keys(settings: &Settings) -> anyhow::Result<KeyRing> {
    settings.secret_keys().map_err(anyhow::Error::msg)?.context(
        "HOOKLINE_SECRET_KEY is not set: endpoint and source secrets are stored encrypted, under a key you keep \
         (make one with `hookline secrets generate-key`)",
    )
}

/// Refuses to start when stored secrets were sealed by keys this process
/// lacks: it could not sign for those endpoints, nor verify those sources.
async fn check_keys(pool: &Pool, keys: &KeyRing) -> anyhow::Result<()> {
    let missing = db::secrets::missing_key_ids(&pool.get().await?, keys)
        .await
        .map_err(|e| anyhow::anyhow!(telemetry::error_chain(&e)))?;
    anyhow::ensure!(
        missing.is_empty(),
        "stored secrets are sealed with key(s) {} that HOOKLINE_SECRET_KEY does not hold",
        missing.join(", ")
    );
    Ok(())
}

async fn rotate_key(pool: &Pool, keys: &KeyRing, batch: i64) -> anyhow::Result<()> {
    let mut client = pool.get().await?;
    let done = db::secrets::reseal_all(&mut client, keys, batch)
        .await
        .map_err(|e| anyhow::anyhow!(telemetry::error_chain(&e)))?;
    let key = keys.sealing_key_id().expect("parsed rings hold a key");
    println!("re-encrypted the secrets of {} endpoints and sources with key {key}", done.rows);
    for (holder, reason) in &done.unopened {
        println!("left {holder} as it was: its secret is {reason}");
    }
    anyhow::ensure!(
        done.unopened.is_empty(),
        "{} secrets could not be opened: add the keys that sealed them to HOOKLINE_SECRET_KEY and run this again",
        done.unopened.len()
    );
    Ok(())
}

fn required_url(settings: &Settings) -> anyhow::Result<String> {
    settings
        .database_url()
        .context("no database configured: set HOOKLINE_DATABASE_URL (or DATABASE_URL), or try `hookline dev`")
}

async fn connect(url: &str, settings: &Settings) -> anyhow::Result<Pool> {
    checked(db::pool(url, settings.pool_size)?, url).await
}

/// The pool, once it has made a connection.
async fn checked(pool: Pool, url: &str) -> anyhow::Result<Pool> {
    let client = pool.get().await.with_context(|| format!("cannot connect to the database at {}", redact(url)))?;
    drop(client);
    Ok(pool)
}

/// The schema, then the settings the database keeps (`hookline.settings`).
async fn migrate(pool: &Pool, settings: &Settings) -> anyhow::Result<()> {
    let mut client = pool.get().await?;
    db::migrate(&mut client).await.map_err(|e| anyhow::anyhow!(telemetry::error_chain(&e)))?;
    db::settings::store(&client, settings.max_payload_bytes)
        .await
        .map_err(|e| anyhow::anyhow!(telemetry::error_chain(&e)))?;
    db::retention::create_ahead(&mut client, settings.retention())
        .await
        .map_err(|e| anyhow::anyhow!(telemetry::error_chain(&e)))?;
    tracing::info!("database schema is up to date");
    Ok(())
}

/// One round of retention, reported in the log.
async fn maintain(pool: &Pool, settings: &Settings) -> anyhow::Result<()> {
    let mut client = pool.get().await?;
    match db::retention::maintain(&mut client, settings.retention(), None)
        .await
        .map_err(|e| anyhow::anyhow!(telemetry::error_chain(&e)))?
    {
        Some(done) => {
            tracing::info!(created = done.created, dropped = ?done.dropped, kept_for_open_work = ?done.kept,
                           rollup_rows_deleted = done.rollup_rows_deleted,
                           sandboxes_deleted = done.sandboxes_deleted,
                           ui_sessions_deleted = done.ui_sessions_deleted, "partitions maintained");
        }
        None => tracing::info!("another process is maintaining the partitions right now"),
    }
    Ok(())
}

async fn serve(
    pool: Pool,
    url: &str,
    settings: &Settings,
    keys: KeyRing,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    check_keys(&pool, &keys).await?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {} (HOOKLINE_LISTEN)", settings.listen))?;
    tracing::info!(listen = %settings.listen, "API listening");
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener)?;
    let api_settings = api::ApiSettings {
        max_body_bytes: settings.max_body_bytes,
        strict_event_types: settings.strict_event_types,
        public_url: settings.public_url(),
        portal_frame_ancestors: settings.portal_frame_ancestors.clone(),
    };
    let state = api::AppState::new(pool, api_settings, keys);
    let follower = tokio::spawn(api::changes::follow(state.clone(), url.parse()?, shutdown.clone()));
    let metrics = match settings.metrics_listen {
        Some(address) => Some(tokio::spawn(serve_metrics(address, state.clone(), shutdown.clone()).await?)),
        None => None,
    };
    poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(
            api::app(state.clone()),
            async move {
                let _ = shutdown.changed().await;
            },
            None,
        )
        .await?;
    state.flush_counts().await;
    let _ = follower.await;
    if let Some(metrics) = metrics {
        metrics.await??;
    }
    Ok(())
}

/// Binds HOOKLINE_METRICS_LISTEN (failing at start if it cannot) and returns
/// the server to run until shutdown.
async fn serve_metrics(
    address: std::net::SocketAddr,
    state: api::AppState,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} (HOOKLINE_METRICS_LISTEN)"))?;
    tracing::info!(listen = %address, "metrics listening");
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener)?;
    Ok(poem::Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
        api::metrics_app(state),
        async move {
            let _ = shutdown.changed().await;
        },
        None,
    ))
}

/// A worker, on a pool of its own (see `db::worker_pool`).
async fn work(
    url: &str,
    settings: &Settings,
    worker_settings: WorkerSettings,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let pool = checked(db::worker_pool(url, settings.pool_size, settings.worker_synchronous_commit)?, url).await?;
    check_keys(&pool, &worker_settings.secret_keys).await?;
    let listen_config: tokio_postgres::Config = url.parse()?;
    worker::run(pool, listen_config, worker_settings, shutdown).await
}

async fn run_all(
    pool: Pool,
    url: &str,
    settings: &Settings,
    keys: KeyRing,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // The API is in this process: its sandboxes are this worker's to reach.
    let mut worker_settings = settings.worker(keys.clone());
    worker_settings.network.sandbox_prefix = Some(settings.sandbox_prefix());
    let (api, worker) = tokio::join!(
        serve(pool, url, settings, keys, shutdown.clone()),
        work(url, settings, worker_settings, shutdown)
    );
    api.and(worker)
}

async fn run_dev(mut settings: Settings) -> anyhow::Result<()> {
    let keys = match settings.secret_keys().map_err(anyhow::Error::msg)? {
        Some(keys) => keys,
        None => dev::secret_keys()?,
    };
    let (local, url) = match settings.database_url() {
        Some(url) => (None, url),
        None => {
            let (server, url) = dev::start_local_database().await?;
            (Some(server), url)
        }
    };
    // The demo receiver lives on loopback.
    settings.allow_private_networks = true;
    let pool = connect(&url, &settings).await?;
    migrate(&pool, &settings).await?;
    let shutdown = shutdown_signal();
    let receiver = dev::start_echo_receiver(shutdown.clone()).await?;
    let endpoint = dev::create_demo_endpoint(&pool, receiver).await?;
    let token = dev::admin_token(&pool).await?;
    println!(
        "\nhookline dev is running.\n\
         \x20 database:      {url}\n\
         \x20 connect:       psql '{url}'\n\
         \x20 API:           http://{listen}  (docs at /docs)\n\
         \x20 dashboard:     http://{listen}/ui  (sign in with the admin token)\n\
         \x20 admin token:   {token}\n\
         \x20 try:           curl -H 'Authorization: Bearer {token}' http://{listen}/v1/endpoints\n\
         \x20 demo endpoint: {endpoint} -> http://{receiver}/webhooks\n\
         \x20 send an event: psql '{url}' -c \"SELECT hookline.send('order.created', '{{\\\"order_id\\\": 42}}')\"\n\
         A demo event `dev.ping` is sent every 5 s. Ctrl-C stops everything.\n",
        listen = settings.listen
    );
    let demo = tokio::spawn(dev::send_demo_events(pool.clone(), shutdown.clone()));
    let result = run_all(pool, &url, &settings, keys, shutdown).await;
    let _ = demo.await;
    if let Some(server) = local {
        server.stop()?;
    }
    result
}

/// Turns true on SIGTERM or Ctrl-C.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: shutting down"),
        }
        let _ = tx.send(true);
        // Keep the sender alive so receivers see `true`, not a closed channel.
        std::future::pending::<()>().await;
    });
    rx
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match url.parse::<url::Url>() {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
