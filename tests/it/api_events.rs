//! `/v1/events`, `/v1/deliveries` and `/v1/dead-letters` over HTTP.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::api::TestApi;
use crate::support::db::TestDb;
use crate::support::receiver::{Reply, TestReceiver};
use crate::support::worker::{RunningWorker, test_settings};
use crate::support::{count, eventually};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn an_event_posted_over_http_is_delivered_and_readable_with_its_deliveries() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let receiver = TestReceiver::start().await;
    let endpoint = api.post("/v1/endpoints", json!({"url": receiver.url})).await;
    let worker = RunningWorker::start(&db, test_settings()).await;

    let sent = api.post("/v1/events", json!({"event_type": "order.created", "payload": {"order_id": 42}})).await;
    assert_eq!(sent.status, 202, "{sent:?}");
    assert_eq!(sent.body["source"], "api");
    let id = sent.body["id"].as_str().unwrap().to_owned();
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("webhook-id"), id);
    assert_eq!(got[0].json()["data"], json!({"order_id": 42}));

    let event = eventually(WAIT, "the delivery to be recorded", || async {
        let event = api.get(&format!("/v1/events/{id}")).await;
        (event.body["deliveries"][0]["state"] == "succeeded").then_some(event)
    })
    .await;
    assert_eq!(event.body["deliveries"][0]["endpoint_id"], endpoint.body["id"]);
    let delivery = event.body["deliveries"][0]["id"].as_str().unwrap();
    let attempts = api.get(&format!("/v1/deliveries/{delivery}/attempts")).await;
    assert_eq!(attempts.body["data"][0]["attempt"], 1);
    assert_eq!(attempts.body["data"][0]["status_code"], 200);

    let listed = api.get("/v1/events?event_type=order.created").await;
    assert_eq!(listed.body["data"][0]["id"], id.as_str());
    assert_eq!(api.get("/v1/events?event_type=nothing").await.body["data"], json!([]));
    let by_state = api.get("/v1/deliveries?state=succeeded").await;
    assert_eq!(by_state.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(api.get("/v1/deliveries?state=dead").await.body["data"], json!([]));

    let metrics = api.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = metrics.body.as_str().unwrap();
    for line in [
        "hookline_queue_pending 0",
        "hookline_queue_dead 0",
        "hookline_deliveries_24h{state=\"succeeded\"} 1",
        "hookline_attempts_5m{outcome=\"success\"} 1",
        "hookline_attempt_duration_5m_ms_count 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
    }
    worker.stop().await;
}

#[tokio::test]
async fn the_idempotency_key_header_or_field_returns_the_first_event() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let client = reqwest::Client::new();
    let post = |key: &'static str| {
        client
            .post(format!("{}/v1/events", api.base))
            .bearer_auth(&api.admin)
            .header("Idempotency-Key", key)
            .json(&json!({"event_type": "a.b", "payload": {"n": 1}}))
            .send()
    };
    let first = post("k-1").await.unwrap();
    assert_eq!(first.status(), 202);
    let first: serde_json::Value = first.json().await.unwrap();
    let second = post("k-1").await.unwrap();
    assert_eq!(second.status(), 200);
    let second: serde_json::Value = second.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);
    let by_field = api.post("/v1/events", json!({"event_type": "a.b", "payload": {}, "idempotency_key": "k-1"})).await;
    assert_eq!((by_field.status, &by_field.body["id"]), (200, &first["id"]));
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.events").await, 1);
}

#[tokio::test]
async fn bad_events_are_rejected_by_field() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    api.post("/v1/events", json!({"payload": {}})).await.assert_problem(400, Some("event_type"));
    api.post("/v1/events", json!({"event_type": "a b", "payload": {}})).await.assert_problem(400, Some("event_type"));
    api.post("/v1/events", json!({"event_type": "a.b"})).await.assert_problem(400, Some("payload"));
    api.post("/v1/events", json!({"event_type": "a.b", "payload": {}, "tenant": ""}))
        .await
        .assert_problem(400, Some("tenant"));
    api.get("/v1/events?since=yesterday").await.assert_problem(400, Some("since"));
    api.get("/v1/deliveries?state=lost").await.assert_problem(400, Some("state"));
    api.get(&format!("/v1/events/{}", uuid::Uuid::now_v7())).await.assert_problem(404, None);
    let read = TestApi::token(&db, "reader", "read", None).await;
    let body = json!({"event_type": "a.b", "payload": {}});
    api.call(Method::POST, "/v1/events", Some(&read), Some(&body)).await.assert_problem(403, None);
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.events").await, 0);
}

#[tokio::test]
async fn dead_letters_are_listed_replayed_discarded_and_bulk_replayed() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let receiver = TestReceiver::start().await;
    receiver.script([Reply::status(500), Reply::status(500), Reply::status(500)]);
    api.post("/v1/endpoints", json!({"url": receiver.url, "retry_schedule": []})).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    for n in 0..3 {
        api.post("/v1/events", json!({"event_type": "a.b", "payload": {"n": n}})).await;
    }
    let dead = eventually(WAIT, "three dead letters", || async {
        let dead = api.get("/v1/dead-letters").await;
        (dead.body["data"].as_array().unwrap().len() == 3).then_some(dead)
    })
    .await;
    let ids: Vec<String> =
        dead.body["data"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_owned()).collect();

    let replayed = api.post(&format!("/v1/dead-letters/{}/replay", ids[0]), json!({})).await;
    assert_eq!(replayed.status, 202, "{replayed:?}");
    assert_eq!(api.delete(&format!("/v1/dead-letters/{}", ids[1])).await.status, 204);
    api.delete(&format!("/v1/dead-letters/{}", ids[1])).await.assert_problem(404, None);
    assert_eq!(api.get(&format!("/v1/deliveries/{}", ids[1])).await.body["state"], "cancelled");

    eventually(WAIT, "the replayed letter to succeed", || async {
        (api.get(&format!("/v1/deliveries/{}", ids[0])).await.body["state"] == "succeeded").then_some(())
    })
    .await;
    let bulk = api.post("/v1/dead-letters/replay", json!({"event_type": "a.b"})).await;
    assert_eq!(bulk.body["replayed"], 1, "{bulk:?}");
    eventually(WAIT, "the bulk-replayed letter to succeed", || async {
        (api.get(&format!("/v1/deliveries/{}", ids[2])).await.body["state"] == "succeeded").then_some(())
    })
    .await;
    assert_eq!(api.get("/v1/dead-letters").await.body["data"], json!([]));
    api.post(&format!("/v1/deliveries/{}/cancel", ids[0]), json!({})).await.assert_problem(409, None);
    let retried = api.post(&format!("/v1/deliveries/{}/retry", ids[0]), json!({})).await;
    assert_eq!(retried.status, 202, "a succeeded delivery can be sent again");
    receiver.wait_for(6, WAIT).await;
    let sent_again = eventually(WAIT, "the retried delivery to succeed again", || async {
        let d = api.get(&format!("/v1/deliveries/{}", ids[0])).await;
        (d.body["state"] == "succeeded").then_some(d)
    })
    .await;
    assert_eq!(sent_again.body["attempts"], 3, "attempt numbers continue: failed, replayed, retried");
    let stats = api.get("/v1/stats").await;
    assert_eq!(stats.status, 200);
    assert!(stats.body["dead"].is_i64() && stats.body["endpoints"] == 1, "{stats:?}");
    worker.stop().await;
}

#[tokio::test]
async fn concurrent_posts_each_get_their_own_answer_and_one_event_per_key() {
    let db = TestDb::new().await;
    let api = std::sync::Arc::new(TestApi::start(&db).await);
    let mut tasks = Vec::new();
    for n in 0..40 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let body = match n % 4 {
                0 => json!({"event_type": "a.same", "payload": {"n": n}, "idempotency_key": "same"}),
                1 => json!({"event_type": "a.bad", "payload": {"text": "nul \u{0000} here"}}),
                _ => json!({"event_type": "a.b", "payload": {"n": n}}),
            };
            (n, api.post("/v1/events", body).await)
        }));
    }
    let mut same_ids = std::collections::HashSet::new();
    let mut created_same = 0;
    for task in tasks {
        let (n, reply) = task.await.unwrap();
        match n % 4 {
            0 => {
                assert!(reply.status == 202 || reply.status == 200, "{reply:?}");
                created_same += usize::from(reply.status == 202);
                same_ids.insert(reply.body["id"].as_str().unwrap().to_owned());
            }
            1 => reply.assert_problem(400, None),
            _ => assert_eq!(reply.status, 202, "{reply:?}"),
        }
    }
    assert_eq!((created_same, same_ids.len()), (1, 1), "one event for one idempotency key");
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.events").await, 1 + 20);
}
