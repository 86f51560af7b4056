//! Broker destinations against the brokers this machine runs: Redis
//! (127.0.0.1:6379), NATS with JetStream (:4222), RabbitMQ (:5672,
//! guest/guest). Each test uses names of its own, so they run in parallel.

use std::time::Duration;

use hookline::config::{NetworkPolicy, WorkerSettings};
use hookline::signing::SigningKey;
use serde_json::{Value, json};

use crate::support::api::TestApi;
use crate::support::db::TestDb;
use crate::support::eventually;
use crate::support::worker::{RunningWorker, test_settings};

const WAIT: Duration = Duration::from_secs(15);

/// Stream entries as XRANGE answers them: id, then field and value pairs.
type Entries = Vec<(String, Vec<(String, Vec<u8>)>)>;

/// A name no other test run uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Checks a message's Standard Webhooks headers against the endpoint's secret.
fn assert_signed(secret: &str, header: impl Fn(&str) -> String, body: &[u8]) {
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
    let key = SigningKey::from_secret(secret).unwrap();
    assert!(key.verify(&header("webhook-id"), timestamp, body, &header("webhook-signature")), "signature");
}

/// The error kind of the first attempt of the endpoint's first delivery.
async fn first_error_kind(api: &TestApi, endpoint: &Value) -> String {
    eventually(WAIT, "an attempt", || async {
        let deliveries = api.get(&format!("/v1/deliveries?endpoint_id={}", endpoint["id"].as_str().unwrap())).await;
        let delivery = deliveries.body["data"][0]["id"].as_str()?.to_owned();
        let attempts = api.get(&format!("/v1/deliveries/{delivery}/attempts")).await;
        attempts.body["data"][0]["error_kind"].as_str().map(str::to_owned)
    })
    .await
}

#[tokio::test]
async fn a_redis_endpoint_gets_the_signed_envelope_in_its_stream() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let stream = unique("hl_test");
    let url = format!("redis://127.0.0.1:6379/0?stream={stream}&maxlen=1000");
    let endpoint = api.post("/v1/endpoints", json!({"url": url, "headers": {"x-team": "orders"}})).await;
    assert_eq!(endpoint.status, 201, "{endpoint:?}");
    let worker = RunningWorker::start(&db, test_settings()).await;
    let sent = api.post("/v1/events", json!({"event_type": "order.created", "payload": {"order_id": 1}})).await;

    let redis = redis::Client::open("redis://127.0.0.1:6379/0").unwrap();
    let mut connection = redis.get_multiplexed_async_connection().await.unwrap();
    let entries: Entries = eventually(WAIT, "the stream entry", || {
        let mut connection = connection.clone();
        let stream = stream.clone();
        async move {
            let reply: redis::Value =
                redis::cmd("XRANGE").arg(&stream).arg("-").arg("+").query_async(&mut connection).await.ok()?;
            let entries: Entries = redis::from_redis_value(reply).ok()?;
            (!entries.is_empty()).then_some(entries)
        }
    })
    .await;
    let field = |name: &str| {
        let (_, value) = entries[0].1.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name}"));
        String::from_utf8(value.clone()).unwrap()
    };
    assert_eq!(field("webhook-id"), sent.body["id"].as_str().unwrap());
    assert_eq!(field("x-team"), "orders");
    let body = field("body");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["data"], json!({"order_id": 1}));
    assert_signed(endpoint.body["secret"].as_str().unwrap(), field, body.as_bytes());
    let _: () = redis::cmd("DEL").arg(&stream).query_async(&mut connection).await.unwrap();
    worker.stop().await;
}

#[tokio::test]
async fn a_nats_endpoint_publishes_to_jetstream_with_the_webhook_id_as_message_id() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let stream_name = unique("HL_TEST");
    let subject = format!("{}.orders", stream_name.to_lowercase());
    let nats = async_nats::connect("nats://127.0.0.1:4222").await.unwrap();
    let jetstream = async_nats::jetstream::new(nats);
    let stream = jetstream
        .create_stream(async_nats::jetstream::stream::Config {
            name: stream_name.clone(),
            subjects: vec![format!("{}.>", stream_name.to_lowercase())],
            ..Default::default()
        })
        .await
        .unwrap();

    let endpoint = api.post("/v1/endpoints", json!({"url": format!("nats://127.0.0.1:4222/{subject}")})).await;
    assert_eq!(endpoint.status, 201, "{endpoint:?}");
    // A subject no stream takes: the broker refuses, the delivery is retried.
    let unheard =
        api.post("/v1/endpoints", json!({"url": format!("nats://127.0.0.1:4222/{}", unique("nobody"))})).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    let sent = api.post("/v1/events", json!({"event_type": "order.created", "payload": {"order_id": 2}})).await;

    let message = eventually(WAIT, "the JetStream message", || {
        let stream = stream.clone();
        let subject = subject.clone();
        async move { stream.get_last_raw_message_by_subject(&subject).await.ok() }
    })
    .await;
    let headers = message.headers.clone();
    let header = |name: &str| headers.get(name).map(|v| v.to_string()).unwrap_or_else(|| panic!("no {name}"));
    let dedupe_id = format!("{}:{}", endpoint.body["id"].as_str().unwrap(), sent.body["id"].as_str().unwrap());
    assert_eq!(header("Nats-Msg-Id"), dedupe_id, "one per endpoint and event, the same on retries");
    assert_eq!(serde_json::from_slice::<Value>(&message.payload).unwrap()["data"], json!({"order_id": 2}));
    assert_signed(endpoint.body["secret"].as_str().unwrap(), header, &message.payload);
    assert_eq!(first_error_kind(&api, &unheard.body).await, "broker_rejected");
    jetstream.delete_stream(&stream_name).await.unwrap();
    worker.stop().await;
}

#[tokio::test]
async fn an_amqp_endpoint_publishes_with_confirms_and_a_message_no_queue_takes_is_retried() {
    use lapin::options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;

    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let connection = lapin::Connection::connect("amqp://guest:guest@127.0.0.1:5672", Default::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let queue = unique("hl_test");
    let options = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
    channel.queue_declare(queue.as_str().into(), options, FieldTable::default()).await.unwrap();
    let routing = format!("{queue}.#");
    channel
        .queue_bind(
            queue.as_str().into(),
            "amq.topic".into(),
            routing.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let endpoint = api.post("/v1/endpoints", json!({"url": "amqp://guest:guest@127.0.0.1:5672"})).await;
    assert_eq!(endpoint.status, 201, "{endpoint:?}");
    assert_eq!(endpoint.body["url"], "amqp://guest:********@127.0.0.1:5672", "the password is not shown");
    let id = endpoint.body["id"].as_str().unwrap();
    let kept =
        api.patch(&format!("/v1/endpoints/{id}"), json!({"url": endpoint.body["url"], "description": "x"})).await;
    assert_eq!(kept.status, 200, "sending the shown URL back keeps the password: {kept:?}");
    let worker = RunningWorker::start(&db, test_settings()).await;
    let event_type = format!("{queue}.created");
    let sent = api.post("/v1/events", json!({"event_type": event_type, "payload": {"order_id": 3}})).await;

    let message = eventually(WAIT, "the AMQP message", || {
        let channel = channel.clone();
        let queue = queue.clone();
        async move { channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }).await.ok().flatten() }
    })
    .await;
    let properties = &message.delivery.properties;
    assert_eq!(properties.message_id().as_ref().map(|m| m.to_string()), sent.body["id"].as_str().map(str::to_owned));
    let headers = properties.headers().clone().unwrap();
    let header = |name: &str| match headers.inner().get(name) {
        Some(lapin::types::AMQPValue::LongString(s)) => s.to_string(),
        other => panic!("{name}: {other:?}"),
    };
    let body = message.delivery.data.clone();
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["data"], json!({"order_id": 3}));
    assert_signed(endpoint.body["secret"].as_str().unwrap(), header, &body);

    // A routing key no queue is bound to: refused by the broker, not lost.
    let sent = api.post("/v1/events", json!({"event_type": unique("nobody"), "payload": {}})).await;
    assert_eq!(sent.status, 202);
    let failed = eventually(WAIT, "the unroutable attempt", || async {
        let attempts = api.get(&format!("/v1/deliveries?endpoint_id={id}&state=pending")).await;
        let delivery = attempts.body["data"][0]["id"].as_str()?.to_owned();
        let attempts = api.get(&format!("/v1/deliveries/{delivery}/attempts")).await;
        attempts.body["data"][0]["error_kind"].as_str().map(str::to_owned)
    })
    .await;
    assert_eq!(failed, "broker_rejected");

    // An exchange that does not exist: refused too, and only that endpoint's.
    let missing = format!("amqp://guest:guest@127.0.0.1:5672/%2f?exchange={}", unique("hl_missing"));
    let missing = api.post("/v1/endpoints", json!({"url": missing, "event_types": ["x.refused"]})).await;
    api.post("/v1/events", json!({"event_type": "x.refused", "payload": {}})).await;
    assert_eq!(first_error_kind(&api, &missing.body).await, "broker_rejected");
    worker.stop().await;
    let _ = connection.close(0, "done".into()).await;
}

#[tokio::test]
async fn broker_hosts_meet_the_same_address_check_as_http_hosts() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let endpoint = api.post("/v1/endpoints", json!({"url": "redis://127.0.0.1:6379/0"})).await;
    let strict = WorkerSettings { network: NetworkPolicy::default(), ..test_settings() };
    let worker = RunningWorker::start(&db, strict).await;
    api.post("/v1/events", json!({"event_type": "order.created", "payload": {}})).await;
    assert_eq!(first_error_kind(&api, &endpoint.body).await, "blocked_address");
    worker.stop().await;

    for (url, why) in [
        ("redis://127.0.0.1:6379/x", "database number"),
        ("redis://127.0.0.1:6379/0?maxlen=0", "maxlen"),
        ("redis://127.0.0.1:6379/0?streem=a", "unknown parameter"),
        ("nats://127.0.0.1:4222/orders.*", "NATS subject"),
        ("amqp://127.0.0.1/?exchange=x&queue=y", "unknown parameter"),
        ("ftp://127.0.0.1/", "URL"),
    ] {
        let refused = api.post("/v1/endpoints", json!({"url": url})).await;
        refused.assert_problem(400, Some("url"));
        assert!(refused.body["detail"].as_str().unwrap().contains(why), "{url}: {refused:?}");
    }
}

#[tokio::test]
async fn a_broker_that_is_down_is_a_connect_failure_and_retried() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    // Nothing listens on port 1.
    let mut endpoints = Vec::new();
    for url in ["nats://127.0.0.1:1/down", "amqp://guest:guest@127.0.0.1:1", "redis://127.0.0.1:1/0"] {
        endpoints.push(api.post("/v1/endpoints", json!({"url": url})).await.body);
    }
    let worker = RunningWorker::start(&db, test_settings()).await;
    api.post("/v1/events", json!({"event_type": "order.created", "payload": {}})).await;
    for endpoint in &endpoints {
        assert_eq!(first_error_kind(&api, endpoint).await, "connect", "{}", endpoint["url"]);
    }
    worker.stop().await;
}
