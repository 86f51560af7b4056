//! Transformations: an endpoint's template writes what its receiver gets.

use std::time::Duration;

use hookline::signing::SigningKey;
use serde_json::json;

use crate::support::api::TestApi;
use crate::support::receiver::TestReceiver;
use crate::support::worker::{RunningWorker, test_settings};
use crate::support::{count, db::TestDb, endpoint_secret, eventually};

const WAIT: Duration = Duration::from_secs(10);

const TEMPLATE: &str = r#"{% set method = "PUT" %}{% set headers = {"X-Kind": type} %}
{"text": {{ "Order " ~ data.order ~ " paid by " ~ data.who }}, "tenant": {{ tenant }}, "event": {{ id }}}"#;

#[tokio::test]
async fn the_template_writes_body_method_and_headers_and_the_signature_covers_them() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let receiver = TestReceiver::start().await;
    let created = api.post("/v1/endpoints", json!({"url": receiver.url, "transformation": TEMPLATE})).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.body["transformation"], TEMPLATE);
    let endpoint: uuid::Uuid = created.body["id"].as_str().unwrap().parse().unwrap();
    let worker = RunningWorker::start(&db, test_settings()).await;

    let sent = api
        .post("/v1/events", json!({"event_type": "order.paid", "payload": {"order": 42, "who": "Bobby \"</script>\""}}))
        .await;
    assert_eq!(sent.status, 202, "{sent:?}");
    let event_id = sent.body["id"].as_str().unwrap().to_owned();
    let request = receiver.wait_for(1, WAIT).await.remove(0);
    worker.stop().await;

    assert_eq!(request.method, "PUT");
    assert_eq!(request.header("x-kind"), "order.paid");
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(
        request.json(),
        json!({"text": "Order 42 paid by Bobby \"</script>\"", "tenant": "default", "event": event_id})
    );
    let key = SigningKey::from_secret(&endpoint_secret(&db, endpoint).await).unwrap();
    let timestamp: i64 = request.header("webhook-timestamp").parse().unwrap();
    assert!(key.verify(&event_id, timestamp, request.body.as_bytes(), request.header("webhook-signature")));
}

#[tokio::test]
async fn a_template_that_fails_is_retried_and_a_fixed_one_delivers() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let receiver = TestReceiver::start().await;
    // It compiles, but fails for an event whose `n` is 0.
    let created = api
        .post(
            "/v1/endpoints",
            json!({"url": receiver.url, "transformation": "{{ 10 / data.n }}", "retry_schedule": [0.3, 0.3, 0.3, 0.3, 0.3]}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let path = format!("/v1/endpoints/{}", created.body["id"].as_str().unwrap());
    let worker = RunningWorker::start(&db, test_settings()).await;
    api.post("/v1/events", json!({"event_type": "a.b", "payload": {"n": 0}})).await;

    eventually(WAIT, "a failed transformation attempt", || async {
        (count(&db, "SELECT count(*) FROM hookline.attempts WHERE error_kind = 'transformation'").await > 0)
            .then_some(())
    })
    .await;
    assert!(receiver.received().is_empty(), "nothing was sent");
    let attempts = api.get(&format!("/v1/deliveries?endpoint_id={}", created.body["id"].as_str().unwrap())).await;
    let delivery = attempts.body["data"][0]["id"].as_str().unwrap().to_owned();
    let listed = api.get(&format!("/v1/deliveries/{delivery}/attempts")).await;
    assert_eq!(listed.body["data"][0]["error_kind"], "transformation", "{listed:?}");
    assert!(listed.body["data"][0]["error"].as_str().unwrap().contains("line 1"), "{listed:?}");

    let fixed = api.patch(&path, json!({"transformation": "{\"n\": {{ data.n }}}"})).await;
    assert_eq!(fixed.status, 200, "{fixed:?}");
    let request = receiver.wait_for(1, WAIT).await.remove(0);
    worker.stop().await;
    assert_eq!(request.json(), json!({"n": 0}));
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.deliveries WHERE state = 'succeeded'").await, 1);
    // The circuit took no notice: the endpoint never failed.
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.endpoint_state WHERE failed_attempts > 0").await, 0);
}

#[tokio::test]
async fn the_api_checks_templates_and_renders_samples() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    for (body, says) in [
        (json!({"url": "https://x.io", "transformation": "{{ data.x "}), "line 1"),
        (json!({"url": "https://x.io", "transformation": 7}), "string"),
    ] {
        let reply = api.post("/v1/endpoints", body.clone()).await;
        reply.assert_problem(400, Some("transformation"));
        assert!(reply.body["detail"].as_str().unwrap_or_default().contains(says), "{body} → {reply:?}");
    }
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.endpoints").await, 0);

    let created = api.post("/v1/endpoints", json!({"url": "https://x.io/hook", "http_method": "PATCH"})).await;
    let path = format!("/v1/endpoints/{}", created.body["id"].as_str().unwrap());
    let none = api.post(&format!("{path}/transformation/test"), json!({})).await;
    none.assert_problem(400, Some("template"));

    let rendered = api
        .post(
            &format!("{path}/transformation/test"),
            json!({"template": "{% set headers = {\"x-a\": \"b\"} %}[{{ type }}, {{ data.n }}]", "event_type": "x.y", "payload": {"n": 5}}),
        )
        .await;
    assert_eq!(rendered.status, 200, "{rendered:?}");
    assert_eq!(rendered.body, json!({"body": "[\"x.y\", 5]", "method": "PATCH", "headers": {"x-a": "b"}}));

    api.patch(&path, json!({"transformation": "{{ data }}"})).await;
    let own = api.post(&format!("{path}/transformation/test"), json!({})).await;
    assert_eq!(own.body["body"], "{\"test\":true}", "{own:?}");
    let failing = api.post(&format!("{path}/transformation/test"), json!({"template": "{{ 1 / 0 }}"})).await;
    failing.assert_problem(400, Some("template"));

    let cleared = api.patch(&path, json!({"transformation": null})).await;
    assert_eq!(cleared.body["transformation"], serde_json::Value::Null);
}

/// A batching endpoint's template writes each element of the batch; the
/// signature covers the array; a member whose template fails is an attempt
/// of its own, and the others go without it.
#[tokio::test]
async fn in_a_batch_the_template_writes_each_element_and_a_failing_member_stays_behind() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let receiver = TestReceiver::start().await;
    let endpoint = api
        .post(
            "/v1/endpoints",
            json!({"url": receiver.url, "batch": {"max_events": 10, "max_wait_ms": 0},
                   "transformation": "{\"order\": {{ 10 // data.n }}}", "retry_schedule": [30]}),
        )
        .await;
    assert_eq!(endpoint.status, 201, "{endpoint:?}");
    let id: uuid::Uuid = endpoint.body["id"].as_str().unwrap().parse().unwrap();
    // One statement: the three are due together, and claimed together.
    db.client()
        .await
        .batch_execute(
            "INSERT INTO hookline.events (event_type, payload) SELECT 'a.b', jsonb_build_object('n', n)
                          FROM unnest(ARRAY[1, 0, 5]) AS n",
        )
        .await
        .unwrap();
    let worker = RunningWorker::start(&db, test_settings()).await;
    let request = receiver.wait_for(1, WAIT).await.remove(0);
    let failed = eventually(WAIT, "the failing member's attempt", || async {
        let n = count(&db, "SELECT count(*) FROM hookline.attempts WHERE error_kind = 'transformation'").await;
        (n > 0).then_some(n)
    })
    .await;
    worker.stop().await;

    // Unordered: the batch's elements come in claim order.
    let mut orders: Vec<i64> =
        request.json().as_array().unwrap().iter().map(|e| e["order"].as_i64().unwrap()).collect();
    orders.sort();
    assert_eq!(orders, [2, 10], "each element is the template's: {}", request.body);
    assert!(!request.body.contains('\n'), "compact JSON: {}", request.body);
    let key = SigningKey::from_secret(&endpoint_secret(&db, id).await).unwrap();
    let timestamp: i64 = request.header("webhook-timestamp").parse().unwrap();
    let webhook_id = request.header("webhook-id").to_owned();
    assert!(key.verify(&webhook_id, timestamp, request.body.as_bytes(), request.header("webhook-signature")));
    assert_eq!(failed, 1);
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.deliveries WHERE state = 'succeeded'").await, 2);
    assert_eq!(
        count(&db, "SELECT count(*) FROM hookline.deliveries WHERE state = 'pending'").await,
        1,
        "retried later"
    );
    assert_eq!(receiver.received().len(), 1);
}

/// An ordered batch: a member whose template fails holds back the later
/// events of its key, and the earlier ones still go.
#[tokio::test]
async fn in_an_ordered_batch_a_failing_template_holds_back_the_rest_of_its_key() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let receiver = TestReceiver::start().await;
    let endpoint = api
        .post(
            "/v1/endpoints",
            json!({"url": receiver.url, "ordering": "key", "batch": {"max_events": 10, "max_wait_ms": 0},
                   "transformation": "{\"order\": {{ 10 // data.n }}}", "retry_schedule": [30]}),
        )
        .await;
    assert_eq!(endpoint.status, 201, "{endpoint:?}");
    db.client()
        .await
        .batch_execute(
            "INSERT INTO hookline.events (event_type, payload, ordering_key)
             SELECT 'a.b', jsonb_build_object('n', n), 'k' FROM unnest(ARRAY[1, 0, 5]) WITH ORDINALITY AS t(n, i) ORDER BY i",
        )
        .await
        .unwrap();
    let worker = RunningWorker::start(&db, test_settings()).await;
    let request = receiver.wait_for(1, WAIT).await.remove(0);
    eventually(WAIT, "the failing and the held member's attempts", || async {
        let n = count(&db, "SELECT count(*) FROM hookline.attempts WHERE error_kind = 'transformation'").await;
        (n == 2).then_some(())
    })
    .await;
    worker.stop().await;
    assert_eq!(request.json(), json!([{"order": 10}]), "the key's first event went, alone: {}", request.body);
    let held: String = db
        .client()
        .await
        .query_one("SELECT error FROM hookline.attempts WHERE error LIKE '%earlier event%'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(held.contains("ordering key"), "{held}");
    assert_eq!(receiver.received().len(), 1, "nothing of the key went past its failed event");
}
