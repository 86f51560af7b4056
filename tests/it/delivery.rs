//! Delivery on the wire (SPEC §5): envelope, Standard Webhooks headers and
//! signature, custom headers and methods, and the private-address guard.

use std::time::Duration;

use hookline::config::NetworkPolicy;
use hookline::signing::SigningKey;

use crate::support::receiver::TestReceiver;
use crate::support::worker::{RunningWorker, test_settings};
use crate::support::{NewEndpoint, db::TestDb, endpoint_secret, eventually};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_sent_event_arrives_signed_in_the_standard_webhooks_envelope() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    let endpoint = NewEndpoint { url: &receiver.url, ..Default::default() }.insert(&db).await;
    let worker = RunningWorker::start(&db, test_settings()).await;

    let client = db.client().await;
    let event_id: uuid::Uuid = client
        .query_one("SELECT hookline.send('order.created', '{\"order_id\": 42, \"note\": \"ünïcode\"}')", &[])
        .await
        .unwrap()
        .get(0);
    let got = receiver.wait_for(1, WAIT).await;
    let request = &got[0];

    assert_eq!(request.method, "POST");
    assert_eq!(request.header("content-type"), "application/json");
    assert!(request.header("user-agent").starts_with("hookline/"));
    assert_eq!(request.header("webhook-id"), event_id.to_string());
    let envelope = request.json();
    assert_eq!(envelope["id"], event_id.to_string());
    assert_eq!(envelope["type"], "order.created");
    assert_eq!(envelope["data"], serde_json::json!({"order_id": 42, "note": "ünïcode"}));
    chrono::DateTime::parse_from_rfc3339(envelope["timestamp"].as_str().unwrap()).expect("RFC 3339 timestamp");

    let secret = endpoint_secret(&db, endpoint).await;
    let timestamp: i64 = request.header("webhook-timestamp").parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
    let key = SigningKey::from_secret(&secret).unwrap();
    assert!(key.verify(&event_id.to_string(), timestamp, request.body.as_bytes(), request.header("webhook-signature")));

    let delivery = eventually(WAIT, "the delivery to be recorded", || async {
        let row = client
            .query_one(
                "SELECT state::text, attempts, last_status_code, completed_at IS NOT NULL FROM hookline.deliveries",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, String>(0) == "succeeded").then_some(row)
    })
    .await;
    assert_eq!(delivery.get::<_, i32>(1), 1);
    assert_eq!(delivery.get::<_, Option<i32>>(2), Some(200));
    assert!(delivery.get::<_, bool>(3));
    let attempt = client
        .query_one("SELECT attempt, status_code, error_kind::text, response_body FROM hookline.attempts", &[])
        .await
        .unwrap();
    assert_eq!(attempt.get::<_, i32>(0), 1);
    assert_eq!(attempt.get::<_, Option<i32>>(1), Some(200));
    assert_eq!(attempt.get::<_, Option<String>>(2), None);
    assert_eq!(attempt.get::<_, Option<String>>(3).as_deref(), Some("ok"));
    worker.stop().await;
}

#[tokio::test]
async fn during_a_rotation_both_secrets_sign() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    let endpoint = NewEndpoint { url: &receiver.url, ..Default::default() }.insert(&db).await;
    let client = db.client().await;
    let old = endpoint_secret(&db, endpoint).await;
    client
        .execute(
            "UPDATE hookline.endpoints SET previous_secret = secret, previous_secret_expires_at = now() + interval '1 hour',
                    secret = hookline.new_secret() WHERE id = $1",
            &[&endpoint],
        )
        .await
        .unwrap();
    let new = endpoint_secret(&db, endpoint).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    client.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    let request = &receiver.wait_for(1, WAIT).await[0];
    let header = request.header("webhook-signature");
    assert_eq!(header.split(' ').count(), 2);
    let timestamp: i64 = request.header("webhook-timestamp").parse().unwrap();
    for secret in [old, new] {
        let key = SigningKey::from_secret(&secret).unwrap();
        assert!(key.verify(request.header("webhook-id"), timestamp, request.body.as_bytes(), header));
    }
    worker.stop().await;
}

#[tokio::test]
async fn custom_headers_and_method_are_sent_but_cannot_forge_the_signature() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    NewEndpoint {
        url: &receiver.url,
        http_method: "PUT",
        headers: serde_json::json!({"x-tenant-token": "abc", "webhook-signature": "v1,forged"}),
        ..Default::default()
    }
    .insert(&db)
    .await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    let request = &receiver.wait_for(1, WAIT).await[0];
    assert_eq!(request.method, "PUT");
    assert_eq!(request.header("x-tenant-token"), "abc");
    assert!(
        request.header("webhook-signature").starts_with("v1,") && request.header("webhook-signature") != "v1,forged"
    );
    worker.stop().await;
}

#[tokio::test]
async fn private_addresses_are_refused_unless_allowed() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    NewEndpoint { url: &receiver.url, retry_schedule: Some(vec![]), ..Default::default() }.insert(&db).await;
    NewEndpoint { url: &by_name, retry_schedule: Some(vec![]), ..Default::default() }.insert(&db).await;
    let strict = hookline::config::WorkerSettings { network: NetworkPolicy::default(), ..test_settings() };
    let worker = RunningWorker::start(&db, strict).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();

    let client = db.client().await;
    let kinds: Vec<String> = eventually(WAIT, "both deliveries to die", || async {
        let rows = client
            .query("SELECT a.error_kind::text FROM hookline.attempts a JOIN hookline.deliveries d ON d.id = a.delivery_id WHERE d.state = 'dead'", &[])
            .await
            .unwrap();
        (rows.len() == 2).then(|| rows.iter().map(|r| r.get(0)).collect())
    })
    .await;
    assert_eq!(kinds, vec!["blocked_address", "blocked_address"], "literal IP and a name resolving to loopback");
    assert!(receiver.received().is_empty());
    worker.stop().await;
}

/// The HMAC of `body` keyed by an endpoint's secret as written, as hex: what
/// a receiver of the older convention computes with the secret pasted in.
fn body_hmac_hex(secret: &str, hash: &str, body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let key = secret.as_bytes();
    match hash {
        "sha256" => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
        _ => {
            let mut mac = Hmac::<sha2::Sha512>::new_from_slice(key).unwrap();
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
    }
}

#[tokio::test]
async fn an_hmac_header_endpoint_gets_the_bodys_hmac_in_its_header() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    let github_style =
        NewEndpoint { url: &receiver.url, event_types: &["a.*"], ..Default::default() }.insert(&db).await;
    let custom = NewEndpoint { url: &receiver.url, event_types: &["b.*"], ..Default::default() }.insert(&db).await;
    let client = db.client().await;
    client
        .execute("UPDATE hookline.endpoints SET signature = 'hmac_header' WHERE id = $1", &[&github_style])
        .await
        .unwrap();
    client
        .execute(
            "UPDATE hookline.endpoints
                SET signature = 'hmac_header', signature_header = 'X-Seed-Sig', signature_hash = 'sha512'
              WHERE id = $1",
            &[&custom],
        )
        .await
        .unwrap();
    let worker = RunningWorker::start(&db, test_settings()).await;
    client.execute("SELECT hookline.send('a.x', '{\"n\": 1}')", &[]).await.unwrap();
    client.execute("SELECT hookline.send('b.x', '{\"n\": 2}')", &[]).await.unwrap();
    let got = receiver.wait_for(2, WAIT).await;
    worker.stop().await;

    let a = got.iter().find(|r| r.json()["type"] == "a.x").unwrap();
    let secret = endpoint_secret(&db, github_style).await;
    assert_eq!(
        a.header("x-hookline-signature"),
        format!("sha256={}", body_hmac_hex(&secret, "sha256", a.body.as_bytes()))
    );
    assert_eq!(a.header("webhook-signature"), "", "one signature, in its own header");
    assert!(!a.header("webhook-id").is_empty());
    let b = got.iter().find(|r| r.json()["type"] == "b.x").unwrap();
    let secret = endpoint_secret(&db, custom).await;
    assert_eq!(b.header("x-seed-sig"), format!("sha512={}", body_hmac_hex(&secret, "sha512", b.body.as_bytes())));
    assert_eq!(b.header("x-hookline-signature"), "");
}

#[tokio::test]
async fn during_a_rotations_overlap_an_hmac_header_endpoint_is_signed_with_the_previous_secret() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    let api = crate::support::api::TestApi::start(&db).await;
    let created = api.post("/v1/endpoints", serde_json::json!({"url": receiver.url, "signature": "hmac_header"})).await;
    let (id, old) =
        (created.body["id"].as_str().unwrap().to_owned(), created.body["secret"].as_str().unwrap().to_owned());
    let rotated = api.post(&format!("/v1/endpoints/{id}/rotate-secret"), serde_json::json!({})).await;
    let new = rotated.body["secret"].as_str().unwrap().to_owned();
    let worker = RunningWorker::start(&db, test_settings()).await;
    db.client().await.execute("SELECT hookline.send('a.x', '{}')", &[]).await.unwrap();
    let during = receiver.wait_for(1, WAIT).await.remove(0);
    assert_eq!(
        during.header("x-hookline-signature"),
        format!("sha256={}", body_hmac_hex(&old, "sha256", during.body.as_bytes()))
    );

    api.post(&format!("/v1/endpoints/{id}/rotate-secret"), serde_json::json!({"secret": new, "overlap_s": 0})).await;
    db.client().await.execute("SELECT hookline.send('a.y', '{}')", &[]).await.unwrap();
    let after = receiver.wait_for(2, WAIT).await.remove(1);
    worker.stop().await;
    assert_eq!(
        after.header("x-hookline-signature"),
        format!("sha256={}", body_hmac_hex(&new, "sha256", after.body.as_bytes()))
    );
}

#[tokio::test]
async fn a_v1a_endpoint_is_signed_with_ed25519_and_shows_only_its_public_key() {
    use base64::Engine as _;
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    let api = crate::support::api::TestApi::start(&db).await;
    let created = api.post("/v1/endpoints", serde_json::json!({"url": receiver.url, "signature": "v1a"})).await;
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.body["id"].as_str().unwrap().to_owned();
    let public = created.body["secret"].as_str().unwrap().to_owned();
    assert!(public.starts_with("whpk_"), "{public}");
    assert_eq!(api.get(&format!("/v1/endpoints/{id}/secret")).await.body["secret"], public.as_str());
    let stored: String =
        db.client().await.query_one("SELECT secret FROM hookline.endpoints", &[]).await.unwrap().get(0);
    assert!(!stored.contains("whsk_"), "sealed at rest");

    let worker = RunningWorker::start(&db, test_settings()).await;
    db.client().await.execute("SELECT hookline.send('a.x', '{\"n\": 1}')", &[]).await.unwrap();
    let request = receiver.wait_for(1, WAIT).await.remove(0);
    worker.stop().await;
    // Verified as any Standard Webhooks v1a receiver does: ed25519 over
    // "{id}.{timestamp}.{body}" with the whpk_ public key.
    let b64 = base64::engine::general_purpose::STANDARD;
    let key: [u8; 32] = b64.decode(public.strip_prefix("whpk_").unwrap()).unwrap().try_into().unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap();
    let signature = request.header("webhook-signature").strip_prefix("v1a,").expect("a v1a signature").to_owned();
    let signature: [u8; 64] = b64.decode(signature).unwrap().try_into().unwrap();
    let content = format!("{}.{}.{}", request.header("webhook-id"), request.header("webhook-timestamp"), request.body);
    key.verify_strict(content.as_bytes(), &ed25519_dalek::Signature::from_bytes(&signature)).expect("verifies");

    // Back to v1: a new whsec_ secret, the key pair gone.
    let back = api.patch(&format!("/v1/endpoints/{id}"), serde_json::json!({"signature": "v1"})).await;
    assert_eq!(back.body["signature"], "v1");
    let secret = api.get(&format!("/v1/endpoints/{id}/secret")).await.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let wrong = api
        .post(
            &format!("/v1/endpoints/{id}/rotate-secret"),
            serde_json::json!({"secret": format!("whsk_{}", b64.encode([1u8; 32]))}),
        )
        .await;
    wrong.assert_problem(400, Some("secret"));
}

#[tokio::test]
async fn an_endpoint_inserted_from_sql_with_v1a_gets_a_key_pair() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    let id: uuid::Uuid = db
        .client()
        .await
        .query_one("INSERT INTO hookline.endpoints (url, signature) VALUES ($1, 'v1a') RETURNING id", &[&receiver.url])
        .await
        .unwrap()
        .get(0);
    let private = endpoint_secret(&db, id).await;
    assert!(private.starts_with("whsk_"), "the default whsec_ gave way to a key pair");
    let worker = RunningWorker::start(&db, test_settings()).await;
    db.client().await.execute("SELECT hookline.send('a.x', '{}')", &[]).await.unwrap();
    let request = receiver.wait_for(1, WAIT).await.remove(0);
    worker.stop().await;
    assert!(request.header("webhook-signature").starts_with("v1a,"), "{}", request.header("webhook-signature"));
    let public = hookline::signing::shown(&private);
    let verifier = hookline::inbound::verify::Verifier::new(hookline::inbound::verify::Settings {
        scheme: hookline::inbound::verify::Scheme::StandardWebhooks,
        secret: Some(&public),
        signature_header: None,
        encoding: hookline::inbound::verify::Encoding::Hex,
        tolerance_s: 300,
        id_header: None,
    })
    .unwrap();
    verifier
        .verify(&request.headers, request.body.as_bytes(), chrono::Utc::now().timestamp())
        .expect("hookline's own receiver accepts it");

    // Sealed meanwhile or not, a change of kind from SQL brings a new secret
    // of the new kind; a secret of the wrong kind written on purpose is refused.
    let client = db.client().await;
    let sealed = crate::support::test_keys().seal(&private);
    client.execute("UPDATE hookline.endpoints SET secret = $2 WHERE id = $1", &[&id, &sealed]).await.unwrap();
    client.execute("UPDATE hookline.endpoints SET signature = 'v1' WHERE id = $1", &[&id]).await.unwrap();
    assert!(endpoint_secret(&db, id).await.starts_with("whsec_"));
    let wrong = client
        .execute("UPDATE hookline.endpoints SET secret = hookline.new_private_key() WHERE id = $1", &[&id])
        .await
        .unwrap_err();
    assert!(format!("{wrong:?}").contains("does not suit"), "{wrong:?}");
    client
        .execute(
            "UPDATE hookline.endpoints SET signature = 'v1a', previous_secret = secret,
                    previous_secret_expires_at = now() + interval '1 hour', secret = hookline.new_secret_for('v1a')
              WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let row = client.query_one("SELECT previous_secret FROM hookline.endpoints WHERE id = $1", &[&id]).await.unwrap();
    assert_eq!(row.get::<_, Option<String>>(0), None, "a whsec_ cannot sign for v1a: no overlap");
}
