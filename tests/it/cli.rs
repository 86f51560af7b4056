//! The `hookline` binary as a user runs it.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::receiver::TestReceiver;
use crate::support::worker::Process;
use crate::support::{NewEndpoint, db::TestDb, eventually};

fn hookline(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookline"));
    command.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run hookline")
}

#[test]
fn bad_configuration_fails_at_start_with_one_line_naming_it() {
    let out = hookline(
        &["worker"],
        &[("HOOKLINE_DATABASE_URL", "postgres://127.0.0.1:1/x"), ("HOOKLINE_WORKER_CONCURRENCY", "lots")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("lots") && stderr.contains("worker-concurrency"), "{stderr}");

    let out = hookline(&["worker"], &[("HOOKLINE_RETRY_SCHEDULE", "1,soon")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("soon"), "{stderr}");

    let out = hookline(&["worker"], &[("HOOKLINE_DISABLE_AFTER_OPEN", "a while")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!((out.status.code(), stderr.trim().lines().count()), (Some(2), 1), "{stderr}");
    assert!(stderr.contains("a while") && stderr.contains("disable-after-open"), "{stderr}");
}

#[tokio::test]
async fn maintain_makes_the_partitions_ahead_and_a_bad_retention_is_refused() {
    let db = TestDb::new().await;
    let out = hookline(&["maintain"], &[("HOOKLINE_DATABASE_URL", &db.url), ("HOOKLINE_RETENTION_DAYS", "8")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("partitions maintained"), "{stdout}");
    // Eight days kept: partitions of two days.
    let widths = crate::support::count(
        &db,
        "SELECT count(*) FROM hookline.partitions
          WHERE table_name = 'deliveries' AND ends_at - starts_at = interval '2 days'",
    )
    .await;
    assert!(widths >= 3, "{widths}");

    let out = hookline(&["maintain"], &[("HOOKLINE_DATABASE_URL", &db.url), ("HOOKLINE_RETENTION_DAYS", "0")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!((out.status.code(), stderr.trim().lines().count()), (Some(2), 1), "{stderr}");
    assert!(stderr.contains("retention-days"), "{stderr}");
}

#[test]
fn a_missing_database_is_one_clear_line() {
    let out = hookline(&["worker"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("HOOKLINE_DATABASE_URL"), "{stderr}");
}

#[test]
fn serve_and_worker_refuse_to_start_without_a_good_secret_key() {
    let url = ("HOOKLINE_DATABASE_URL", "postgres://127.0.0.1:1/x");
    for command in ["serve", "worker", "run"] {
        let out = hookline(&[command], &[url]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!((out.status.code(), stderr.trim().lines().count()), (Some(1), 1), "{command}: {stderr}");
        assert!(stderr.contains("HOOKLINE_SECRET_KEY is not set"), "{command}: {stderr}");
    }
    let good = hookline::secrets::KeyRing::generate_key();
    let out = hookline(&["worker"], &[url, ("HOOKLINE_SECRET_KEY", &format!("{good},bm90IGEga2V5"))]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim(), "hookline: HOOKLINE_SECRET_KEY: key 2 is not 32 bytes in base64");
}

#[test]
fn generate_key_prints_a_key_the_ring_accepts() {
    let out = hookline(&["secrets", "generate-key"], &[]);
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap();
    assert!(hookline::secrets::KeyRing::parse(key.trim()).is_ok(), "{key}");
}

#[test]
fn a_config_file_supplies_settings_and_rejects_unknown_keys() {
    let dir = std::env::temp_dir().join(format!("hookline-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "worker_concurency = 4\n").unwrap();
    let out = hookline(&["--config", bad.to_str().unwrap(), "worker"], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown setting `worker_concurency`"));

    let good = dir.join("good.toml");
    std::fs::write(&good, "worker_concurrency = \"x\"\n").unwrap();
    let out = hookline(&["--config", good.to_str().unwrap(), "worker"], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("'x'"), "the file's value was used");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn run_serves_health_and_delivers_then_stops_on_sigterm() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    NewEndpoint { url: &receiver.url, ..Default::default() }.insert(&db).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut run = Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_hookline"))
            .arg("run")
            .env("HOOKLINE_DATABASE_URL", &db.url)
            .env("HOOKLINE_SECRET_KEY", crate::support::TEST_SECRET_KEY)
            .env("HOOKLINE_LISTEN", &listen)
            .env("HOOKLINE_ALLOW_PRIVATE_NETWORKS", "true")
            .env("HOOKLINE_LOG", "warn")
            .stdout(Stdio::null()),
    );

    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(20), "/readyz to answer 200", || async {
        let ready = http.get(format!("http://{listen}/readyz")).send().await.ok()?;
        (ready.status() == 200).then_some(())
    })
    .await;
    let health = http.get(format!("http://{listen}/healthz")).send().await.unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");

    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    receiver.wait_for(1, Duration::from_secs(10)).await;

    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(run.id() as i32, libc::SIGTERM) }, 0);
    let status = tokio::task::spawn_blocking(move || run.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
}
