//! `/v1/endpoints` over HTTP: CRUD, secrets, rotation, test, recover, stats,
//! scopes, tenants and bad input.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::api::TestApi;
use crate::support::db::TestDb;
use crate::support::receiver::TestReceiver;
use crate::support::worker::{RunningWorker, test_settings};
use crate::support::{count, eventually};

#[tokio::test]
async fn endpoints_are_created_read_changed_listed_and_deleted() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let created = api
        .post(
            "/v1/endpoints",
            json!({"url": "https://example.com/hook", "event_types": ["order.*"], "headers": {"x-team": "blue"},
                   "metadata": {"owner": "ops"}, "retry_schedule": [1, 2]}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(created.body["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(created.body["tenant"], "default");
    assert_eq!(created.body["http_method"], "POST");
    assert_eq!(created.body["timeout_ms"], 10000);

    let got = api.get(&format!("/v1/endpoints/{id}")).await;
    assert_eq!(got.status, 200);
    assert!(got.body.get("secret").is_none(), "reads never show the secret");
    assert_eq!(got.body["headers"]["x-team"], hookline::api::REDACTED, "header values are secrets too");

    let changed = api
        .patch(
            &format!("/v1/endpoints/{id}"),
            json!({"description": "orders", "retry_schedule": null, "timeout_ms": 500}),
        )
        .await;
    assert_eq!(changed.status, 200, "{changed:?}");
    assert_eq!(changed.body["description"], "orders");
    assert_eq!(changed.body["retry_schedule"], serde_json::Value::Null);
    assert_eq!(changed.body["event_types"], json!(["order.*"]), "untouched fields stay");
    api.patch(&format!("/v1/endpoints/{id}"), json!({"url": null})).await.assert_problem(400, Some("url"));

    for n in 0..3 {
        api.post("/v1/endpoints", json!({"url": format!("https://example.com/{n}")})).await;
    }
    let first = api.get("/v1/endpoints?limit=2").await;
    assert_eq!(first.body["data"].as_array().unwrap().len(), 2);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = api.get(&format!("/v1/endpoints?limit=2&cursor={cursor}")).await;
    assert_eq!(second.body["data"].as_array().unwrap().len(), 2);
    assert_eq!(second.body["next_cursor"], serde_json::Value::Null);
    assert_eq!(second.body["data"][1]["id"], id.as_str(), "oldest last");
    assert!(!first.body.to_string().contains("whsec_") && !second.body.to_string().contains("whsec_"));

    assert_eq!(api.delete(&format!("/v1/endpoints/{id}")).await.status, 204);
    api.get(&format!("/v1/endpoints/{id}")).await.assert_problem(404, None);

    let audit = api.get("/v1/audit-log").await;
    let actions: Vec<&str> =
        audit.body["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "endpoint.create").count(), 4);
    assert!(actions.contains(&"endpoint.update") && actions.contains(&"endpoint.delete"));
    assert!(!audit.body.to_string().contains("whsec_"), "the audit log never shows a secret");
}

#[tokio::test]
async fn bad_endpoint_input_is_a_400_naming_the_field_and_writes_nothing() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let cases = [
        (json!({}), "url"),
        (json!({"url": "ftp://example.com"}), "url"),
        (json!({"url": 42}), "url"),
        (json!({"url": "https://x.io", "event_types": ["ok", "not ok"]}), "event_types[1]"),
        (json!({"url": "https://x.io", "event_types": "order.*"}), "event_types"),
        (json!({"url": "https://x.io", "secret": "hunter2"}), "secret"),
        (json!({"url": "https://x.io", "http_method": "GET"}), "http_method"),
        (json!({"url": "https://x.io", "headers": {"webhook-signature": "v1,x"}}), "headers.webhook-signature"),
        (json!({"url": "https://x.io", "headers": {"x": 1}}), "headers.x"),
        (json!({"url": "https://x.io", "timeout_ms": 0}), "timeout_ms"),
        (json!({"url": "https://x.io", "timeout_ms": "fast"}), "timeout_ms"),
        (json!({"url": "https://x.io", "retry_schedule": [1, -5]}), "retry_schedule[1]"),
        (json!({"url": "https://x.io", "disable_after_open_s": 0}), "disable_after_open_s"),
        (json!({"url": "https://x.io", "disable_after_open_s": 31_536_001}), "disable_after_open_s"),
        (json!({"url": "https://x.io", "metadata": [1]}), "metadata"),
        (json!({"url": "https://x.io", "ordering": "sometimes"}), "ordering"),
        (json!({"url": "https://x.io", "ordering_on_dead": "retry"}), "ordering_on_dead"),
        (json!({"url": "https://x.io", "signature": "v2"}), "signature"),
        (json!({"url": "https://x.io", "signature_hash": "md5"}), "signature_hash"),
        (json!({"url": "https://x.io", "signature_header": "no spaces"}), "signature_header"),
        (json!({"url": "https://x.io", "signature_header": "Content-Type"}), "signature_header"),
        (json!({"url": "https://x.io", "headers": {"X-Sig": "a"}, "signature_header": "x-sig"}), "signature_header"),
        (
            json!({"url": "https://x.io", "headers": {"X-Hookline-Signature": "a"}, "signature": "hmac_header"}),
            "signature_header",
        ),
        (json!({"url": "https://x.io", "tenant": "no spaces"}), "tenant"),
        (json!({"url": "https://x.io", "colour": "red"}), "colour"),
    ];
    for (body, field) in cases {
        let reply = api.post("/v1/endpoints", body.clone()).await;
        assert_eq!(reply.status, 400, "{body} → {reply:?}");
        assert_eq!(reply.body["field"], field, "{body} → {reply:?}");
    }
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.endpoints").await, 0);
    api.get("/v1/endpoints/not-a-uuid").await.assert_problem(400, None);
}

#[tokio::test]
async fn scopes_and_tenants_limit_what_a_token_can_do() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let read = TestApi::token(&db, "reader", "read", None).await;
    let acme = TestApi::token(&db, "acme", "write", Some("acme")).await;
    let body = json!({"url": "https://example.com/hook"});

    api.call(Method::POST, "/v1/endpoints", Some(&read), Some(&body)).await.assert_problem(403, None);
    let theirs = api.post("/v1/endpoints", json!({"url": "https://globex.example/hook", "tenant": "globex"})).await;
    let theirs = theirs.body["id"].as_str().unwrap().to_owned();
    let ours = api.call(Method::POST, "/v1/endpoints", Some(&acme), Some(&body)).await;
    assert_eq!(ours.status, 201);
    assert_eq!(ours.body["tenant"], "acme");
    let elsewhere = json!({"url": "https://example.com/hook", "tenant": "globex"});
    api.call(Method::POST, "/v1/endpoints", Some(&acme), Some(&elsewhere)).await.assert_problem(400, Some("tenant"));

    api.call(Method::GET, &format!("/v1/endpoints/{theirs}"), Some(&acme), None).await.assert_problem(404, None);
    api.call(Method::DELETE, &format!("/v1/endpoints/{theirs}"), Some(&acme), None).await.assert_problem(404, None);
    let listed = api.call(Method::GET, "/v1/endpoints?tenant=globex", Some(&acme), None).await;
    let tenants: Vec<&str> =
        listed.body["data"].as_array().unwrap().iter().map(|e| e["tenant"].as_str().unwrap()).collect();
    assert_eq!(tenants, vec!["acme"], "a tenant token sees its tenant only, whatever it asks");
    assert_eq!(api.call(Method::GET, "/v1/endpoints", Some(&read), None).await.status, 200);
}

#[tokio::test]
async fn rotating_a_secret_keeps_the_old_one_signing_during_the_overlap() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let created = api.post("/v1/endpoints", json!({"url": "https://example.com/hook"})).await;
    let (id, old) = (created.body["id"].as_str().unwrap(), created.body["secret"].as_str().unwrap());

    let rotated = api.post(&format!("/v1/endpoints/{id}/rotate-secret"), json!({})).await;
    assert_eq!(rotated.status, 200, "{rotated:?}");
    assert_ne!(rotated.body["secret"], old);
    assert_eq!(rotated.body["previous_secret"], old);
    assert!(rotated.body["previous_secret_expires_at"].is_string());

    let given = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=";
    let again = api.post(&format!("/v1/endpoints/{id}/rotate-secret"), json!({"secret": given, "overlap_s": 0})).await;
    assert_eq!(again.body["secret"], given);
    assert_eq!(again.body["previous_secret"], serde_json::Value::Null);
    let read = api.get(&format!("/v1/endpoints/{id}/secret")).await;
    assert_eq!(read.body["secret"], given);
    api.post(&format!("/v1/endpoints/{id}/rotate-secret"), json!({"secret": "x"}))
        .await
        .assert_problem(400, Some("secret"));
}

#[tokio::test]
async fn test_sends_to_one_endpoint_and_stats_count_it() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let receiver = TestReceiver::start().await;
    let target = api.post("/v1/endpoints", json!({"url": receiver.url})).await;
    let other = TestReceiver::start().await;
    api.post("/v1/endpoints", json!({"url": other.url})).await;
    let id = target.body["id"].as_str().unwrap();
    let worker = RunningWorker::start(&db, test_settings()).await;

    let queued = api.post(&format!("/v1/endpoints/{id}/test"), json!({})).await;
    assert_eq!(queued.status, 202, "{queued:?}");
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json()["type"], "hookline.test");
    let delivery = queued.body["delivery_id"].as_str().unwrap();
    eventually(Duration::from_secs(10), "the test delivery to succeed", || async {
        (api.get(&format!("/v1/deliveries/{delivery}")).await.body["state"] == "succeeded").then_some(())
    })
    .await;
    assert!(other.received().is_empty(), "a test goes to its endpoint alone");

    let stats = api.get(&format!("/v1/endpoints/{id}/stats")).await;
    assert_eq!(stats.status, 200, "{stats:?}");
    assert_eq!((stats.body["total"].as_i64(), stats.body["succeeded"].as_i64()), (Some(1), Some(1)));
    assert_eq!(stats.body["circuit_state"], "closed");
    worker.stop().await;
}

#[tokio::test]
async fn recover_requeues_dead_deliveries_and_queues_what_was_missed_while_disabled() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let receiver = TestReceiver::start().await;
    let created = api.post("/v1/endpoints", json!({"url": receiver.url})).await;
    let id = created.body["id"].as_str().unwrap();
    let since = chrono::Utc::now() - chrono::Duration::seconds(5);

    api.post("/v1/events", json!({"event_type": "a.queued", "payload": {}})).await;
    let disabled = api.post(&format!("/v1/endpoints/{id}/disable?reason=maintenance"), json!({})).await;
    assert_eq!(disabled.body["enabled"], false);
    assert_eq!(disabled.body["disabled_reason"], "maintenance");
    api.post("/v1/events", json!({"event_type": "b.missed", "payload": {}})).await;
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.delivery_queue WHERE state = 'dead'").await, 1);

    let body = json!({"since": since.to_rfc3339()});
    api.post(&format!("/v1/endpoints/{id}/recover"), body.clone()).await.assert_problem(409, None);
    api.post(&format!("/v1/endpoints/{id}/enable"), json!({})).await;
    let recovered = api.post(&format!("/v1/endpoints/{id}/recover"), body).await;
    assert_eq!(recovered.status, 200, "{recovered:?}");
    assert_eq!((recovered.body["requeued"].as_i64(), recovered.body["queued"].as_i64()), (Some(1), Some(1)));

    let worker = RunningWorker::start(&db, test_settings()).await;
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    let mut types: Vec<String> = got.iter().map(|r| r.json()["type"].as_str().unwrap().to_owned()).collect();
    types.sort();
    assert_eq!(types, vec!["a.queued", "b.missed"]);
    worker.stop().await;
}

#[tokio::test]
async fn an_endpoints_signature_scheme_is_set_changed_and_shown() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let plain = api.post("/v1/endpoints", json!({"url": "https://example.com/a"})).await;
    assert_eq!(
        (plain.body["signature"].clone(), plain.body["signature_header"].clone(), plain.body["signature_hash"].clone()),
        (json!("v1"), json!("X-Hookline-Signature"), json!("sha256"))
    );
    let seed = api
        .post(
            "/v1/endpoints",
            json!({"url": "https://example.com/b", "signature": "hmac_header", "signature_header": "X-Seed-Signature",
                   "signature_hash": "sha512"}),
        )
        .await;
    assert_eq!(seed.status, 201, "{seed:?}");
    assert_eq!(
        (seed.body["signature"].as_str(), seed.body["signature_hash"].as_str()),
        (Some("hmac_header"), Some("sha512"))
    );
    let path = format!("/v1/endpoints/{}", seed.body["id"].as_str().unwrap());
    let reset = api.patch(&path, json!({"signature_header": null, "signature": "v1"})).await;
    assert_eq!(
        (reset.body["signature"].as_str(), reset.body["signature_header"].as_str()),
        (Some("v1"), Some("X-Hookline-Signature"))
    );
}
