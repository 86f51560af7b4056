//! Inbound webhooks (SPEC §6 sources): verified receiving per scheme,
//! anti-replay, dedupe on the provider's delivery id, and fan-out.
//! Signatures here are computed with the hmac crate directly, not with
//! hookline's own signing code; the published test vectors are checked in
//! `inbound::verify`'s unit tests.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::api::TestApi;
use crate::support::receiver::TestReceiver;
use crate::support::worker::{RunningWorker, test_settings};
use crate::support::{count, db::TestDb, eventually};

const WAIT: Duration = Duration::from_secs(15);
const EVENTS: &str = "SELECT count(*) FROM hookline.events WHERE source LIKE 'inbound:%'";

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A Standard Webhooks sender for `secret`.
struct Sender {
    key: Vec<u8>,
}

impl Sender {
    fn new(secret: &str) -> Self {
        Sender { key: BASE64.decode(secret.strip_prefix("whsec_").unwrap()).unwrap() }
    }

    fn headers(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<(&'static str, String)> {
        let signature = hmac_sha256(&self.key, &[id.as_bytes(), b".", timestamp.to_string().as_bytes(), b".", body]);
        vec![
            ("content-type", "application/json".into()),
            ("webhook-id", id.into()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", format!("v1,{}", BASE64.encode(signature))),
        ]
    }
}

const SECRET: &str = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=";

async fn create_source(api: &TestApi, body: Value) -> String {
    let created = api.post("/v1/sources", body).await;
    assert_eq!(created.status, 201, "{created:?}");
    created.body["id"].as_str().unwrap().to_owned()
}

async fn source_counts(api: &TestApi, id: &str) -> (i64, i64, i64) {
    let s = api.get(&format!("/v1/sources/{id}")).await.body;
    (s["accepted"].as_i64().unwrap(), s["duplicates"].as_i64().unwrap(), s["failed_verifications"].as_i64().unwrap())
}

#[tokio::test]
async fn a_signed_request_is_stored_once_fanned_out_and_delivered_signed_by_hookline() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let subscriber = TestReceiver::start().await;
    let endpoint = api.post("/v1/endpoints", json!({"url": subscriber.url, "event_types": ["payments.*"]})).await;
    let endpoint_secret = endpoint.body["secret"].as_str().unwrap().to_owned();
    let source = create_source(
        &api,
        json!({"name": "acme-pay", "scheme": "standard_webhooks", "secret": SECRET, "event_type": "payments.received"}),
    )
    .await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    let sender = Sender::new(SECRET);
    let body = br#"{"payment":"pay_1","amount":4200}"#;

    let first = api.inbound("acme-pay", &sender.headers("msg_1", now(), body), body).await;
    assert_eq!(first.status, 202, "{first:?}");
    assert_eq!(first.body["duplicate"], false);
    let event_id = first.body["event_id"].as_str().unwrap().to_owned();

    // The provider retries the same delivery (a new timestamp, so a new signature).
    let retry = api.inbound("acme-pay", &sender.headers("msg_1", now(), body), body).await;
    assert_eq!((retry.status, retry.body["duplicate"].as_bool()), (200, Some(true)), "{retry:?}");
    assert_eq!(retry.body["event_id"], event_id.as_str(), "the first event");
    assert_eq!(count(&db, EVENTS).await, 1, "stored once");

    let got = subscriber.wait_for(1, WAIT).await;
    let delivered = got[0].json();
    assert_eq!(delivered["type"], "payments.received");
    assert_eq!(delivered["data"], json!({"payment": "pay_1", "amount": 4200}));
    assert_eq!(got[0].header("webhook-id"), event_id);
    let key = BASE64.decode(endpoint_secret.strip_prefix("whsec_").unwrap()).unwrap();
    let signed = [got[0].header("webhook-id"), got[0].header("webhook-timestamp"), &got[0].body].join(".");
    let expected = format!("v1,{}", BASE64.encode(hmac_sha256(&key, &[signed.as_bytes()])));
    assert_eq!(got[0].header("webhook-signature"), expected, "re-signed with the endpoint's secret");

    let event = api.get(&format!("/v1/events/{event_id}")).await;
    assert_eq!(event.body["source"], "inbound:acme-pay");
    eventually(WAIT, "the counts to reach the source", || async {
        (source_counts(&api, &source).await == (1, 1, 0)).then_some(())
    })
    .await;
    worker.stop().await;
}

#[tokio::test]
async fn bad_signatures_replays_and_bad_bodies_are_refused_counted_and_not_stored() {
    let db = TestDb::new().await;
    let api = TestApi::start_with_limit(&db, 10_000).await;
    let source = create_source(
        &api,
        json!({"name": "acme", "scheme": "standard_webhooks", "secret": SECRET, "event_type": "a.b"}),
    )
    .await;
    let sender = Sender::new(SECRET);
    let body = br#"{"ok":true}"#;

    let mut forged = sender.headers("msg_1", now(), body);
    forged[3].1 = format!("v1,{}", BASE64.encode([0u8; 32]));
    api.inbound("acme", &forged, body).await.assert_problem(401, None);
    api.inbound("acme", &[("content-type", "application/json".into())], body).await.assert_problem(401, None);
    let tampered = api.inbound("acme", &sender.headers("msg_1", now(), body), br#"{"ok":false}"#).await;
    tampered.assert_problem(401, None);

    let stale = api.inbound("acme", &sender.headers("msg_2", now() - 600, body), body).await;
    stale.assert_problem(400, None);
    assert!(stale.body["detail"].as_str().unwrap().contains("tolerance"), "{stale:?}");
    api.inbound("acme", &sender.headers("msg_3", now() + 600, body), body).await.assert_problem(400, None);
    eventually(WAIT, "five failed verifications to be counted", || async {
        (source_counts(&api, &source).await.2 == 5).then_some(())
    })
    .await;

    let not_json = b"payment=1";
    api.inbound("acme", &sender.headers("msg_4", now(), not_json), not_json).await.assert_problem(400, None);
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(10_001));
    let oversize = api.inbound("acme", &sender.headers("msg_5", now(), big.as_bytes()), big.as_bytes()).await;
    oversize.assert_problem(413, None);
    api.inbound("nobody", &sender.headers("msg_6", now(), body), body).await.assert_problem(404, None);
    api.patch(&format!("/v1/sources/{source}"), json!({"enabled": false})).await;
    api.inbound("acme", &sender.headers("msg_7", now(), body), body).await.assert_problem(404, None);
    assert_eq!(count(&db, EVENTS).await, 0, "nothing refused was stored");

    let metrics = api.get("/metrics").await;
    let text = metrics.body.as_str().unwrap();
    assert!(
        text.contains(r#"hookline_inbound_requests_total{source="acme",outcome="failed_verification"} 5"#),
        "{text}"
    );
    let last = api.get(&format!("/v1/sources/{source}")).await.body;
    assert!(last["last_failure"].as_str().unwrap().contains("tolerance"), "{last}");
}

#[tokio::test]
async fn github_style_hmac_is_verified_and_deduped_on_its_delivery_header() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    create_source(
        &api,
        json!({"name": "github", "scheme": "hmac_sha256", "secret": "It's a Secret to Everybody",
               "id_header": "X-GitHub-Delivery", "event_type": "github.push"}),
    )
    .await;
    let body = br#"{"ref":"refs/heads/main"}"#;
    let signature = format!("sha256={}", hex::encode(hmac_sha256(b"It's a Secret to Everybody", &[body])));
    let headers = |delivery: &str, signature: &str| {
        vec![("x-hub-signature-256", signature.to_owned()), ("x-github-delivery", delivery.to_owned())]
    };
    assert_eq!(api.inbound("github", &headers("d-1", &signature), body).await.status, 202);
    assert_eq!(api.inbound("github", &headers("d-1", &signature), body).await.status, 200, "GitHub's redelivery");
    assert_eq!(api.inbound("github", &headers("d-2", &signature), body).await.status, 202, "a new delivery");
    api.inbound("github", &headers("d-3", "sha256=00"), body).await.assert_problem(401, None);
    api.inbound("github", &[("x-github-delivery", "d-4".into())], body).await.assert_problem(401, None);
    assert_eq!(count(&db, EVENTS).await, 2);
}

#[tokio::test]
async fn shopify_style_base64_hmac_in_its_own_header_is_verified() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    create_source(
        &api,
        json!({"name": "shop", "scheme": "hmac_sha256", "secret": "hush", "signature_header": "X-Shopify-Hmac-Sha256",
               "signature_encoding": "base64", "id_header": "X-Shopify-Webhook-Id", "event_type": "shop.order"}),
    )
    .await;
    let body = br#"{"id":1}"#;
    let signature = BASE64.encode(hmac_sha256(b"hush", &[body]));
    let headers = vec![("x-shopify-hmac-sha256", signature), ("x-shopify-webhook-id", "w-1".to_owned())];
    assert_eq!(api.inbound("shop", &headers, body).await.status, 202);
    api.inbound("shop", &headers, br#"{"id":2}"#).await.assert_problem(401, None);
}

#[tokio::test]
async fn stripe_signatures_are_verified_timed_and_deduped_on_the_event_id() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let secret = "whsec_stripe_test_secret";
    create_source(&api, json!({"name": "stripe", "scheme": "stripe", "secret": secret, "event_type": "stripe.event"}))
        .await;
    let body = br#"{"id":"evt_1","type":"charge.succeeded"}"#;
    let signed = |t: i64| {
        let v1 = hex::encode(hmac_sha256(secret.as_bytes(), &[t.to_string().as_bytes(), b".", body]));
        vec![("stripe-signature", format!("t={t},v1={v1}"))]
    };
    assert_eq!(api.inbound("stripe", &signed(now()), body).await.status, 202);
    let retry = api.inbound("stripe", &signed(now()), body).await;
    assert_eq!((retry.status, retry.body["duplicate"].as_bool()), (200, Some(true)), "Stripe retries evt_1");
    api.inbound("stripe", &signed(now() - 3600), body).await.assert_problem(400, None);
    api.inbound("stripe", &[("stripe-signature", "t=1,v1=00".into())], body).await.assert_problem(401, None);
    assert_eq!(count(&db, EVENTS).await, 1);
}

#[tokio::test]
async fn sources_are_managed_by_field_and_never_show_their_secret() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let id = create_source(
        &api,
        json!({"name": "acme", "scheme": "standard_webhooks", "secret": SECRET, "event_type": "a.b", "tenant": "acme"}),
    )
    .await;
    let got = api.get(&format!("/v1/sources/{id}")).await;
    assert_eq!(
        (got.body["receive_path"].as_str(), got.body["timestamp_tolerance_s"].as_i64()),
        (Some("/in/acme"), Some(300))
    );
    let list = api.get("/v1/sources").await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    let changed =
        api.patch(&format!("/v1/sources/{id}"), json!({"timestamp_tolerance_s": 60, "id_header": "x-id"})).await;
    assert_eq!(
        (changed.body["timestamp_tolerance_s"].as_i64(), changed.body["id_header"].as_str()),
        (Some(60), Some("x-id"))
    );
    let cleared = api.patch(&format!("/v1/sources/{id}"), json!({"id_header": null})).await;
    assert!(cleared.body["id_header"].is_null(), "{cleared:?}");
    let audit = api.get("/v1/audit-log").await.body.to_string();
    for text in [got.body.to_string(), list.body.to_string(), changed.body.to_string(), audit] {
        assert!(!text.contains("c2VjcmV0"), "a secret leaked: {text}");
    }

    let refusals = [
        (json!({"name": "x", "scheme": "standard_webhooks", "secret": "plain", "event_type": "a.b"}), 400, "secret"),
        (json!({"name": "x", "scheme": "stripe", "event_type": "a.b"}), 400, "secret"),
        (json!({"name": "no spaces", "scheme": "none", "event_type": "a.b"}), 400, "name"),
        (json!({"name": "x", "scheme": "rot13", "event_type": "a.b"}), 400, "scheme"),
        (json!({"name": "x", "scheme": "none", "event_type": "a b"}), 400, "event_type"),
        (json!({"name": "acme", "scheme": "none", "event_type": "a.b"}), 409, "name"),
        (json!({"name": "x", "scheme": "hmac_sha256", "secret": "s".repeat(1001), "event_type": "a.b"}), 400, "secret"),
        (json!({"name": "x", "scheme": "none", "event_type": "a.b", "id_header": "h".repeat(101)}), 400, "id_header"),
    ];
    for (body, status, field) in refusals {
        api.post("/v1/sources", body).await.assert_problem(status, Some(field));
    }
    // The same limits on a change (schemathesis found a PATCH accepting a 1,001-character secret).
    let long_secret = json!({"scheme": "hmac_sha256", "secret": format!("__main__{}", "*".repeat(1000))});
    api.patch(&format!("/v1/sources/{id}"), long_secret).await.assert_problem(400, Some("secret"));
    let other_tenant = TestApi::token(&db, "other", "write", Some("other")).await;
    let hidden = api.call(Method::GET, &format!("/v1/sources/{id}"), Some(&other_tenant), None).await;
    hidden.assert_problem(404, None);
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.sources").await, 1, "nothing refused was written");

    assert_eq!(api.delete(&format!("/v1/sources/{id}")).await.status, 204);
    api.get(&format!("/v1/sources/{id}")).await.assert_problem(404, None);
}

#[tokio::test]
async fn a_source_without_verification_accepts_what_it_is_sent() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    create_source(&api, json!({"name": "open", "scheme": "none", "event_type": "open.thing"})).await;
    let stored = api.inbound("open", &[], br#"[1, 2, 3]"#).await;
    assert_eq!(stored.status, 202, "{stored:?}");
    let payload: Value = db.client().await.query_one("SELECT payload FROM hookline.events", &[]).await.unwrap().get(0);
    assert_eq!(payload, json!([1, 2, 3]));
}

/// (event_type, payload) of the stored inbound events, oldest first.
async fn stored_events(db: &TestDb) -> Vec<(String, Value)> {
    let rows = db
        .client()
        .await
        .query("SELECT event_type, payload FROM hookline.events WHERE source LIKE 'inbound:%' ORDER BY id", &[])
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

#[tokio::test]
async fn github_events_take_their_type_from_a_header_and_keep_chosen_headers() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let id = create_source(
        &api,
        json!({"name": "gh", "scheme": "none", "event_type": "github.unknown", "event_type_from": "X-GitHub-Event",
               "event_type_prefix": "github.", "keep_headers": ["X-GitHub-Delivery", "X-GitHub-Hook-ID"]}),
    )
    .await;
    let body = br#"{"ref":"refs/heads/main"}"#;
    let push = [("x-github-event", "push".to_owned()), ("x-github-delivery", "d-1".to_owned())];
    assert_eq!(api.inbound("gh", &push, body).await.status, 202);
    assert_eq!(api.inbound("gh", &[("x-github-event", "not a type".to_owned())], body).await.status, 202);
    assert_eq!(
        stored_events(&db).await,
        vec![
            (
                "github.push".to_owned(),
                json!({"body": {"ref": "refs/heads/main"}, "headers": {"x-github-delivery": "d-1"}})
            ),
            ("github.unknown".to_owned(), json!({"body": {"ref": "refs/heads/main"}, "headers": {}})),
        ]
    );

    // Back to one type for all, and the body alone.
    let changed = api.patch(&format!("/v1/sources/{id}"), json!({"event_type_from": null, "keep_headers": []})).await;
    assert_eq!(
        (changed.body["event_type_from"].clone(), changed.body["keep_headers"].clone()),
        (Value::Null, json!([]))
    );
    assert_eq!(api.inbound("gh", &push, body).await.status, 202);
    assert_eq!(stored_events(&db).await[2], ("github.unknown".to_owned(), json!({"ref": "refs/heads/main"})));
}

#[tokio::test]
async fn stripe_events_take_their_type_from_the_payload() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let secret = "whsec_stripe_test_secret";
    create_source(
        &api,
        json!({"name": "stripe", "scheme": "stripe", "secret": secret, "event_type": "stripe.event",
               "event_type_from": "/type", "event_type_prefix": "stripe."}),
    )
    .await;
    let body = br#"{"id":"evt_1","type":"charge.succeeded"}"#;
    let t = now();
    let v1 = hex::encode(hmac_sha256(secret.as_bytes(), &[t.to_string().as_bytes(), b".", body]));
    let stored = api.inbound("stripe", &[("stripe-signature", format!("t={t},v1={v1}"))], body).await;
    assert_eq!(stored.status, 202, "{stored:?}");
    let events = stored_events(&db).await;
    assert_eq!(events[0].0, "stripe.charge.succeeded");
    assert_eq!(events[0].1, json!({"id": "evt_1", "type": "charge.succeeded"}), "the payload as sent");
}

#[tokio::test]
async fn mapping_settings_that_cannot_work_are_refused_by_field() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let base = |extra: Value| {
        let mut body = json!({"name": "m", "scheme": "none", "event_type": "a.b"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let refusals = [
        (json!({"event_type_from": "not a header"}), "event_type_from"),
        (json!({"event_type_from": ""}), "event_type_from"),
        (json!({"event_type_prefix": "git hub."}), "event_type_prefix"),
        (json!({"keep_headers": ["Authorization"]}), "keep_headers[0]"),
        (json!({"keep_headers": ["ok", "bad header"]}), "keep_headers[1]"),
        (json!({"keep_headers": vec!["x-a"; 21]}), "keep_headers"),
        (json!({"keep_headers": "x-a"}), "keep_headers"),
    ];
    for (extra, field) in refusals {
        let body = base(extra);
        let reply = api.post("/v1/sources", body.clone()).await;
        assert_eq!(reply.status, 400, "{body} → {reply:?}");
        assert_eq!(reply.body["field"], field, "{body} → {reply:?}");
    }
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.sources").await, 0);
}
