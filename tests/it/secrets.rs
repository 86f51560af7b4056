//! Endpoint secrets at rest (issue 14): sealed in the table, opened only to
//! sign or to show; plaintext from SQL sealed by the workers; keys rotated
//! by `hookline secrets rotate-key`.

use std::time::Duration;

use hookline::secrets::{KeyRing, SEALED_PREFIX, StoredSecret};
use hookline::signing::SigningKey;
use serde_json::json;

use crate::support::api::TestApi;
use crate::support::receiver::TestReceiver;
use crate::support::worker::{RunningWorker, WorkerSettings, test_settings};
use crate::support::{NewEndpoint, TEST_SECRET_KEY, db::TestDb, endpoint_secret, eventually, test_keys};

const WAIT: Duration = Duration::from_secs(10);

async fn stored(db: &TestDb, endpoint: uuid::Uuid) -> (String, Option<String>) {
    let row = db
        .client()
        .await
        .query_one("SELECT secret, previous_secret FROM hookline.endpoints WHERE id = $1", &[&endpoint])
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

fn verifies(secret: &str, request: &crate::support::receiver::Received) -> bool {
    let timestamp: i64 = request.header("webhook-timestamp").parse().unwrap();
    SigningKey::from_secret(secret).unwrap().verify(
        request.header("webhook-id"),
        timestamp,
        request.body.as_bytes(),
        request.header("webhook-signature"),
    )
}

#[tokio::test]
async fn the_table_holds_only_sealed_secrets_and_deliveries_are_signed_with_the_real_one() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let receiver = TestReceiver::start().await;
    let given = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=";
    let created = api.post("/v1/endpoints", json!({"url": receiver.url, "secret": given})).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.body["secret"], given, "shown once, as given");
    let endpoint: uuid::Uuid = created.body["id"].as_str().unwrap().parse().unwrap();

    let (secret, _) = stored(&db, endpoint).await;
    assert!(secret.starts_with(SEALED_PREFIX), "{secret}");
    assert!(!secret.contains("QUJDREVG"), "no trace of the secret");
    let dump = db.client().await.query_one("SELECT row_to_json(e)::text FROM hookline.endpoints e", &[]).await;
    assert!(!dump.unwrap().get::<_, String>(0).contains("QUJDREVG"));

    let rotated = api.post(&format!("/v1/endpoints/{endpoint}/rotate-secret"), json!({})).await;
    assert_eq!(rotated.status, 200, "{rotated:?}");
    let new = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_eq!(rotated.body["previous_secret"], given);
    let (secret, previous) = stored(&db, endpoint).await;
    assert!(secret.starts_with(SEALED_PREFIX) && previous.unwrap().starts_with(SEALED_PREFIX));
    let read = api.get(&format!("/v1/endpoints/{endpoint}/secret")).await;
    assert_eq!((read.body["secret"].as_str(), read.body["previous_secret"].as_str()), (Some(&*new), Some(given)));

    let worker = RunningWorker::start(&db, test_settings()).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    let request = &receiver.wait_for(1, WAIT).await[0];
    assert_eq!(request.header("webhook-signature").split(' ').count(), 2);
    assert!(verifies(&new, request) && verifies(given, request), "both secrets sign during the overlap");
    worker.stop().await;
}

#[tokio::test]
async fn workers_seal_the_plaintext_secrets_sql_writes() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    let endpoint = NewEndpoint { url: &receiver.url, ..Default::default() }.insert(&db).await;
    let (plaintext, _) = stored(&db, endpoint).await;
    assert!(plaintext.starts_with("whsec_"), "SQL writes what it generates");

    let worker = RunningWorker::start(&db, test_settings()).await;
    let sealed = eventually(WAIT, "the worker to seal the secret", || async {
        Some(stored(&db, endpoint).await.0).filter(|s| s.starts_with(SEALED_PREFIX))
    })
    .await;
    assert_eq!(test_keys().open(&StoredSecret::from_stored(sealed)).unwrap(), plaintext);
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    let request = &receiver.wait_for(1, WAIT).await[0];
    assert!(verifies(&plaintext, request), "the secret the producer saw still signs");
    worker.stop().await;
}

#[tokio::test]
async fn a_secret_sealed_by_a_key_the_worker_lacks_fails_its_attempt_instead_of_sending_unsigned() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    let endpoint =
        NewEndpoint { url: &receiver.url, retry_schedule: Some(vec![]), ..Default::default() }.insert(&db).await;
    let elsewhere = KeyRing::parse(&KeyRing::generate_key()).unwrap();
    let foreign = elsewhere.seal(&endpoint_secret(&db, endpoint).await);
    let client = db.client().await;
    client.execute("UPDATE hookline.endpoints SET secret = $2 WHERE id = $1", &[&endpoint, &foreign]).await.unwrap();

    let worker = RunningWorker::start(&db, test_settings()).await;
    client.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    let error = eventually(WAIT, "the attempt to fail", || async {
        client
            .query_opt("SELECT error_kind::text, error FROM hookline.attempts", &[])
            .await
            .unwrap()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
    })
    .await;
    assert_eq!(error.0, "invalid_secret");
    assert!(error.1.contains(elsewhere.sealing_key_id().unwrap()), "names the missing key: {}", error.1);
    assert!(receiver.received().is_empty(), "nothing sent unsigned");
    worker.stop().await;
}

fn hookline(args: &[&str], db: &TestDb, key: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hookline"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOOKLINE_DATABASE_URL", &db.url)
        .env("HOOKLINE_SECRET_KEY", key)
        .env("HOOKLINE_LOG", "warn")
        .output()
        .expect("run hookline")
}

#[tokio::test]
async fn rotate_key_reseals_every_secret_under_the_new_key_in_batches() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let receiver = TestReceiver::start().await;
    let mut secrets = Vec::new();
    for _ in 0..5 {
        let created = api.post("/v1/endpoints", json!({"url": receiver.url})).await;
        let id: uuid::Uuid = created.body["id"].as_str().unwrap().parse().unwrap();
        secrets.push((id, created.body["secret"].as_str().unwrap().to_owned()));
    }
    let (plain, _) = (NewEndpoint { url: &receiver.url, ..Default::default() }.insert(&db).await, ());
    secrets.push((plain, stored(&db, plain).await.0));
    let source = api
        .post(
            "/v1/sources",
            json!({"name": "acme", "scheme": "hmac_sha256", "secret": "s3cret-acme", "event_type": "acme.event"}),
        )
        .await;
    assert_eq!(source.status, 201, "{source:?}");

    let new_key = KeyRing::generate_key();
    let new_only = KeyRing::parse(&new_key).unwrap();
    let refused = hookline(&["worker"], &db, &new_key);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(test_keys().sealing_key_id().unwrap()), "names the key it lacks: {stderr}");

    let both = format!("{new_key},{TEST_SECRET_KEY}");
    let out = hookline(&["secrets", "rotate-key", "--batch", "2"], &db, &both);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("secrets of 7 endpoints and sources"), "{out:?}");
    for (id, secret) in &secrets {
        let (stored, _) = stored(&db, *id).await;
        assert_eq!(StoredSecret::from_stored(stored.clone()).key_id(), new_only.sealing_key_id());
        assert_eq!(&new_only.open(&StoredSecret::from_stored(stored)).unwrap(), secret);
    }
    let source_secret: String =
        db.client().await.query_one("SELECT secret FROM hookline.sources", &[]).await.unwrap().get(0);
    assert!(!source_secret.contains("s3cret"), "sources' secrets are sealed too");
    assert_eq!(new_only.open(&StoredSecret::from_stored(source_secret)).unwrap(), "s3cret-acme");
    let again = hookline(&["secrets", "rotate-key"], &db, &both);
    assert!(String::from_utf8_lossy(&again.stdout).contains("secrets of 0 endpoints"), "{again:?}");

    // Only the new key is needed now.
    let worker = RunningWorker::start(&db, WorkerSettings { secret_keys: new_only, ..test_settings() }).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    let got = receiver.wait_for(secrets.len(), WAIT).await;
    for request in &got {
        assert!(secrets.iter().any(|(_, secret)| verifies(secret, request)), "signed by its endpoint's secret");
    }
    worker.stop().await;
}

async fn stored_url(db: &TestDb, endpoint: uuid::Uuid) -> String {
    let client = db.client().await;
    client.query_one("SELECT url FROM hookline.endpoints WHERE id = $1", &[&endpoint]).await.unwrap().get(0)
}

/// A credential in an endpoint's URL is a secret like the signing one:
/// sealed in the table whether the API or SQL wrote it, opened only to send
/// (the broker tests deliver through sealed ones), kept when an update sends
/// back the shown `********`, and resealed by a key rotation.
#[tokio::test]
async fn a_urls_credential_is_sealed_at_rest_and_still_reaches_the_receiver() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let receiver = TestReceiver::start().await;
    let broker = "amqp://app:pa%24%24word@rabbit.internal:5672/%2f?exchange=events";
    let created = api.post("/v1/endpoints", json!({"url": broker, "event_types": ["broker.only"]})).await;
    assert_eq!(created.status, 201, "{created:?}");
    let id: uuid::Uuid = created.body["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(created.body["url"], "amqp://app:********@rabbit.internal:5672/%2f?exchange=events");
    let at_rest = stored_url(&db, id).await;
    assert!(at_rest.contains("aes256gcm%3A") && !at_rest.contains("pa%24%24word"), "{at_rest}");
    let kept = api.patch(&format!("/v1/endpoints/{id}"), json!({"url": created.body["url"]})).await;
    assert_eq!(kept.status, 200, "{kept:?}");
    assert_eq!(test_keys().open_url(&stored_url(&db, id).await).unwrap(), broker);
    // A sealed value copied from a dump is not a credential a client may give:
    // the worker would open it and send it to that URL's host.
    let copied = stored_url(&db, id).await.replace("rabbit.internal", "evil.example");
    api.post("/v1/endpoints", json!({"url": copied})).await.assert_problem(400, Some("url"));
    let moved =
        api.patch(&format!("/v1/endpoints/{id}"), json!({"url": "amqp://app:********@elsewhere.example/"})).await;
    moved.assert_problem(400, Some("url"));

    // From SQL in the clear (SQL may give an http URL credentials): a worker seals it.
    let from_sql = receiver.url.replace("http://", "http://sql:t0p@");
    let plain = NewEndpoint { url: &from_sql, ..Default::default() }.insert(&db).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    let sealed = eventually(WAIT, "the worker to seal the URL", || async {
        Some(stored_url(&db, plain).await).filter(|url| url.contains("aes256gcm%3A"))
    })
    .await;
    assert!(!sealed.contains("t0p"), "{sealed}");
    api.post("/v1/events", json!({"event_type": "a.b", "payload": {}})).await;
    let got = receiver.wait_for(1, WAIT).await;
    worker.stop().await;
    let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "sql:t0p");
    assert_eq!(got[0].header("authorization"), format!("Basic {basic}"), "the receiver gets the credential");

    let new_key = KeyRing::generate_key();
    let both = format!("{new_key},{TEST_SECRET_KEY}");
    let out = hookline(&["secrets", "rotate-key"], &db, &both);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let new_only = KeyRing::parse(&new_key).unwrap();
    assert_eq!(new_only.open_url(&stored_url(&db, plain).await).unwrap(), from_sql, "resealed under the new key");
    assert_eq!(new_only.open_url(&stored_url(&db, id).await).unwrap(), broker);
}
