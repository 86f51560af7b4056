//! Changes made elsewhere reach a running `hookline serve` at once: it
//! remembers tokens for 10 s, but a token deleted or created by another
//! process (here: SQL) is taken into account as soon as it commits.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::api::TestApi;
use crate::support::db::TestDb;
use crate::support::eventually;
use crate::support::worker::Process;

/// Well under the 10 s that tokens are remembered for.
const AT_ONCE: Duration = Duration::from_secs(2);

fn serve(db: &TestDb) -> (Process, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let process = Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_hookline"))
            .arg("serve")
            .env("HOOKLINE_DATABASE_URL", &db.url)
            .env("HOOKLINE_SECRET_KEY", crate::support::TEST_SECRET_KEY)
            .env("HOOKLINE_LISTEN", format!("127.0.0.1:{port}"))
            .env("HOOKLINE_LOG", "warn")
            .stdout(Stdio::null()),
    );
    (process, base)
}

async fn status(http: &reqwest::Client, base: &str, token: &str) -> Option<u16> {
    let response = http.get(format!("{base}/v1/endpoints")).bearer_auth(token).send().await.ok()?;
    Some(response.status().as_u16())
}

#[tokio::test]
async fn a_token_deleted_or_created_elsewhere_counts_at_once_on_a_running_server() {
    let db = TestDb::new().await;
    let (_serve, base) = serve(&db);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let token = TestApi::token(&db, "soon deleted", "read", None).await;
    // Used once, so the server remembers it as valid.
    eventually(Duration::from_secs(20), "the server to accept the token", || async {
        (status(&http, &base, &token).await? == 200).then_some(())
    })
    .await;

    let deleted = db.client().await.execute("DELETE FROM hookline.api_tokens WHERE name = 'soon deleted'", &[]).await;
    assert_eq!(deleted.unwrap(), 1);
    eventually(AT_ONCE, "the deleted token to be refused", || async {
        (status(&http, &base, &token).await? == 401).then_some(())
    })
    .await;

    // A token tried before it exists is remembered as unknown, until one is created.
    let early = "hl_tried_before_it_existed";
    assert_eq!(status(&http, &base, early).await, Some(401));
    let hash = hookline::api::auth::hash_token(early);
    db.client()
        .await
        .execute(
            "INSERT INTO hookline.api_tokens (name, scope, token_hash, prefix) VALUES ('late', 'read', $1, 'hl_tried')",
            &[&hash],
        )
        .await
        .unwrap();
    eventually(AT_ONCE, "the new token to be accepted", || async {
        (status(&http, &base, early).await? == 200).then_some(())
    })
    .await;
}
