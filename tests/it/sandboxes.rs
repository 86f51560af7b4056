//! Sandboxes: a capture URL served by hookline, an endpoint delivering to
//! it past the private-address check (and nothing else past it), the last
//! 100 requests kept, expiry.

use std::time::Duration;

use hookline::config::NetworkPolicy;
use hookline::db::retention::{self, Retention};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::api::TestApi;
use crate::support::db::TestDb;
use crate::support::worker::{RunningWorker, test_settings};
use crate::support::{count, eventually};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_sandbox_captures_what_a_worker_delivers_with_the_signature_checked() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    // Private addresses refused, as in production: only the sandbox passes.
    let network = NetworkPolicy { sandbox_prefix: Some(format!("{}/sandbox/", api.base)), ..Default::default() };
    let worker = RunningWorker::start(&db, hookline::config::WorkerSettings { network, ..test_settings() }).await;

    let sandbox = api.post("/v1/sandboxes", json!({"event_types": ["order.*"]})).await;
    assert_eq!(sandbox.status, 201, "{sandbox:?}");
    let url = sandbox.body["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/sandbox/", api.base)), "{url}");
    let endpoint = api.get(&format!("/v1/endpoints/{}", sandbox.body["endpoint_id"].as_str().unwrap())).await;
    assert_eq!(endpoint.body["url"], url);
    // An endpoint at another path of the same listener is still refused.
    let elsewhere = api.post("/v1/endpoints", json!({"url": format!("{}/v1/stats", api.base)})).await;

    let sent = api.post("/v1/events", json!({"event_type": "order.created", "payload": {"order_id": 7}})).await;
    let id = sandbox.body["id"].as_str().unwrap();
    let requests = eventually(WAIT, "the sandbox to capture the delivery", || async {
        let requests = api.get(&format!("/v1/sandboxes/{id}/requests")).await;
        (requests.body["data"].as_array().is_some_and(|d| !d.is_empty())).then_some(requests)
    })
    .await;
    let captured = &requests.body["data"][0];
    assert_eq!(captured["method"], "POST");
    assert_eq!(captured["headers"]["webhook-id"], sent.body["id"]);
    assert_eq!(captured["signature_valid"], true, "{captured}");
    let body: Value = serde_json::from_str(captured["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["data"], json!({"order_id": 7}));

    let blocked = eventually(WAIT, "the other endpoint's attempt", || async {
        let path = format!("/v1/deliveries?endpoint_id={}", elsewhere.body["id"].as_str().unwrap());
        let deliveries = api.get(&path).await;
        let delivery = deliveries.body["data"][0]["id"].as_str()?.to_owned();
        let attempts = api.get(&format!("/v1/deliveries/{delivery}/attempts")).await;
        attempts.body["data"][0]["error_kind"].as_str().map(str::to_owned)
    })
    .await;
    assert_eq!(blocked, "blocked_address");
    worker.stop().await;
}

#[tokio::test]
async fn a_sandbox_keeps_its_last_hundred_requests_and_goes_when_it_expires() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let sandbox = api.post("/v1/sandboxes", json!({"tenant": "acme"})).await;
    let (id, url) = (sandbox.body["id"].as_str().unwrap(), sandbox.body["url"].as_str().unwrap().to_owned());
    let http = reqwest::Client::new();
    for n in 0..105 {
        let sent = http.put(&url).header("x-n", n.to_string()).body(format!("{{\"n\": {n}}}")).send().await.unwrap();
        assert_eq!(sent.status(), 204);
    }
    let requests = api.get(&format!("/v1/sandboxes/{id}/requests?limit=250")).await;
    let data = requests.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 100);
    assert_eq!(data[0]["headers"]["x-n"], "104", "newest first");
    assert_eq!(data[99]["headers"]["x-n"], "5");
    assert_eq!(data[0]["method"], "PUT");
    assert_eq!(data[0]["signature_valid"], false);
    assert!(data[0]["signature_error"].as_str().unwrap().contains("webhook-id"), "{}", data[0]);

    // Another tenant's token sees no such sandbox; an unknown token captures nothing.
    let globex = TestApi::token(&db, "globex", "read", Some("globex")).await;
    let other = api.call(Method::GET, &format!("/v1/sandboxes/{id}"), Some(&globex), None).await;
    other.assert_problem(404, None);
    let unknown = http.post(format!("{}/sandbox/nope", api.base)).body("{}").send().await.unwrap();
    assert_eq!(unknown.status(), 404);

    db.client()
        .await
        .execute("UPDATE hookline.sandboxes SET expires_at = now() - interval '1 second'", &[])
        .await
        .unwrap();
    assert_eq!(http.post(&url).body("{}").send().await.unwrap().status(), 404);
    api.get(&format!("/v1/sandboxes/{id}")).await.assert_problem(404, None);
    let done = retention::maintain(&mut db.client().await, Retention::default(), None).await.unwrap().unwrap();
    assert_eq!(done.sandboxes_deleted, 1);
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.endpoints").await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.sandbox_requests").await, 0);
}

#[tokio::test]
async fn deleting_a_sandbox_deletes_its_endpoint_and_a_sandbox_outlives_its_endpoint() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let first = api.post("/v1/sandboxes", json!({})).await;
    assert_eq!(api.delete(&format!("/v1/sandboxes/{}", first.body["id"].as_str().unwrap())).await.status, 204);
    let endpoint = format!("/v1/endpoints/{}", first.body["endpoint_id"].as_str().unwrap());
    api.get(&endpoint).await.assert_problem(404, None);

    // An endpoint pointed elsewhere since is the user's: it stays.
    let repurposed = api.post("/v1/sandboxes", json!({})).await;
    let endpoint_path = format!("/v1/endpoints/{}", repurposed.body["endpoint_id"].as_str().unwrap());
    api.patch(&endpoint_path, json!({"url": "https://example.com/hooks"})).await;
    assert_eq!(api.delete(&format!("/v1/sandboxes/{}", repurposed.body["id"].as_str().unwrap())).await.status, 204);
    assert_eq!(api.get(&endpoint_path).await.status, 200);

    let second = api.post("/v1/sandboxes", json!({})).await;
    let endpoint = format!("/v1/endpoints/{}", second.body["endpoint_id"].as_str().unwrap());
    assert_eq!(api.delete(&endpoint).await.status, 204);
    let left = api.get(&format!("/v1/sandboxes/{}", second.body["id"].as_str().unwrap())).await;
    assert_eq!(left.body["endpoint_id"], Value::Null, "{left:?}");
    let url = second.body["url"].as_str().unwrap();
    assert_eq!(reqwest::Client::new().post(url).body("{}").send().await.unwrap().status(), 204);
    let audit = api.get("/v1/audit-log").await.body.to_string();
    assert!(audit.contains("sandbox.create") && audit.contains("sandbox.delete"), "{audit}");
}
