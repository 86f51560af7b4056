//! `hookline dev`: the one-command first run. Uses the configured database,
//! or starts a throwaway PostgreSQL from the local binaries; migrates; starts
//! a small echo receiver and a demo endpoint pointing at it; sends a demo
//! event every few seconds so deliveries show in the log.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use poem::{Route, handler, http::HeaderMap};
use tokio::sync::watch;

use crate::db;
use crate::pg_local::LocalPostgres;
use crate::secrets::KeyRing;

pub const DEMO_ENDPOINT_DESCRIPTION: &str = "hookline dev: demo endpoint (built-in echo receiver)";
const DEMO_EVENT_EVERY: Duration = Duration::from_secs(5);

/// Where `hookline dev` keeps its throwaway cluster: `HOOKLINE_DEV_DIR`, or
/// `.hookline-dev` in the current folder (`/var/tmp/hookline-dev` for root,
/// whose home the `postgres` user cannot enter).
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HOOKLINE_DEV_DIR") {
        return dir.into();
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/var/tmp/hookline-dev")
    } else {
        PathBuf::from(".hookline-dev")
    }
}

/// The key that seals this installation's endpoint and source secrets, kept in the
/// data folder (`secret-key`, readable by its owner only) so a restart
/// opens what the last run sealed; made on the first run.
pub fn secret_keys() -> anyhow::Result<KeyRing> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    let dir = data_dir();
    let path = dir.join("secret-key");
    if !path.exists() {
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        writeln!(file, "{}", KeyRing::generate_key())?;
        tracing::info!(path = %path.display(), "made a key for the secrets at rest");
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    KeyRing::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Starts the throwaway cluster and returns it with the URL of its `hookline` database.
pub async fn start_local_database() -> anyhow::Result<(LocalPostgres, String)> {
    let dir = data_dir();
    tracing::info!(dir = %dir.display(), "no database configured: starting a throwaway PostgreSQL");
    let dir_for_start = dir.clone();
    let server = tokio::task::spawn_blocking(move || LocalPostgres::start(&dir_for_start, &[])).await??;
    let (admin, connection) = tokio_postgres::connect(&server.url("postgres"), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    if admin.query_opt("SELECT 1 FROM pg_database WHERE datname = 'hookline'", &[]).await?.is_none() {
        admin.batch_execute("CREATE DATABASE hookline").await?;
    }
    let url = server.url("hookline");
    Ok((server, url))
}

/// Serves the echo receiver on 127.0.0.1 and returns its address.
pub async fn start_echo_receiver(shutdown: watch::Receiver<bool>) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Route::new().at("/*path", echo);
    let mut shutdown = shutdown;
    tokio::spawn(async move {
        let server = poem::Server::new_with_acceptor(poem::listener::TcpAcceptor::from_tokio(listener).expect("bound"));
        let _ = server
            .run_with_graceful_shutdown(
                app,
                async move {
                    let _ = shutdown.changed().await;
                },
                None,
            )
            .await;
    });
    Ok(addr)
}

#[handler]
fn echo(headers: &HeaderMap, body: String) -> poem::http::StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    tracing::info!(
        webhook_id = %header("webhook-id"),
        signature = %header("webhook-signature").chars().take(12).collect::<String>(),
        body = %body.chars().take(200).collect::<String>(),
        "echo receiver got a webhook"
    );
    poem::http::StatusCode::NO_CONTENT
}

/// Points the demo endpoint at the echo receiver.
pub async fn create_demo_endpoint(pool: &deadpool_postgres::Pool, receiver: SocketAddr) -> anyhow::Result<uuid::Uuid> {
    let client = pool.get().await?;
    let url = format!("http://{receiver}/webhooks");
    Ok(db::endpoints::upsert_by_description(&client, DEMO_ENDPOINT_DESCRIPTION, &url, &[]).await?)
}

/// Sends `dev.ping` through `hookline.send` until shutdown.
pub async fn send_demo_events(pool: deadpool_postgres::Pool, mut shutdown: watch::Receiver<bool>) {
    let mut n: i64 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(DEMO_EVENT_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        n += 1;
        let sent = async {
            let client = pool.get().await.context("pool")?;
            let payload = serde_json::json!({ "n": n, "hello": "from hookline dev" });
            client.execute("SELECT hookline.send('dev.ping', $1)", &[&payload]).await.context("hookline.send")?;
            anyhow::Ok(())
        };
        if let Err(error) = sent.await {
            tracing::warn!(error = %format!("{error:#}"), "demo event not sent");
        }
    }
}

const DEV_TOKEN_NAME: &str = "hookline dev";

/// A fresh admin token for this run (the previous run's is deleted).
pub async fn admin_token(pool: &deadpool_postgres::Pool) -> anyhow::Result<String> {
    let client = pool.get().await?;
    client.execute("DELETE FROM hookline.api_tokens WHERE name = $1", &[&DEV_TOKEN_NAME]).await?;
    let (token, _) =
        crate::api::auth::create_token(&client, DEV_TOKEN_NAME, crate::api::auth::Scope::Admin, None).await?;
    Ok(token)
}
