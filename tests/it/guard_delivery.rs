//! What a receiver, a stale queue row or a stored setting must never do to
//! delivery (the security review of issue 9, worker side): repeat a delivery
//! forever, stall the claim for everyone, leak through a proxy, fill the
//! attempts table, send unsigned, reuse an attempt number, or reach an
//! address the guard should have refused.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::support::api::TestApi;
use crate::support::drive::claim;
use crate::support::receiver::{Reply, TestReceiver};
use crate::support::worker::{RunningWorker, WorkerSettings, spawn_process, test_settings};
use crate::support::{NewEndpoint, count, db::TestDb, eventually};

const WAIT: Duration = Duration::from_secs(15);

async fn delivery_state(db: &TestDb) -> (String, i32) {
    let row = db.client().await.query_one("SELECT state::text, attempts FROM hookline.deliveries", &[]).await.unwrap();
    (row.get(0), row.get(1))
}

async fn wait_for_state(db: &TestDb, wanted: &str, timeout: Duration) -> i32 {
    eventually(timeout, &format!("the delivery to be {wanted}"), || async {
        let (state, attempts) = delivery_state(db).await;
        (state == wanted).then_some(attempts)
    })
    .await
}

#[tokio::test]
async fn a_nul_byte_in_a_2xx_answer_is_delivered_once_and_recorded() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    receiver.always(Reply::status(200).body("ok\u{0}"));
    NewEndpoint { url: &receiver.url, ..Default::default() }.insert(&db).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();

    assert_eq!(wait_for_state(&db, "succeeded", WAIT).await, 1);
    assert_eq!(receiver.received().len(), 1, "exactly one request");
    let body: String =
        db.client().await.query_one("SELECT response_body FROM hookline.attempts", &[]).await.unwrap().get(0);
    assert_eq!(body, "ok\u{fffd}", "the NUL is replaced, the rest kept");
    worker.stop().await;
}

#[tokio::test]
async fn a_nul_byte_in_a_5xx_answer_still_follows_the_retry_schedule_to_dead() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    receiver.always(Reply::status(500).body("down\u{0}"));
    NewEndpoint { url: &receiver.url, retry_schedule: Some(vec![1.0, 1.0]), ..Default::default() }.insert(&db).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();

    assert_eq!(wait_for_state(&db, "dead", WAIT).await, 3);
    assert_eq!(receiver.received().len(), 3, "three requests, then dead");
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.attempts").await, 3);
    worker.stop().await;
}

#[tokio::test]
async fn an_outcome_the_database_refuses_still_ends_the_attempt() {
    let db = TestDb::new().await;
    // Whatever else the database may refuse one day: here, this one body.
    db.client()
        .await
        .batch_execute(
            "ALTER TABLE hookline.attempts ADD CONSTRAINT test_refuses_this_body
                CHECK (response_body IS DISTINCT FROM 'refuse me')",
        )
        .await
        .unwrap();
    let receiver = TestReceiver::start().await;
    receiver.always(Reply::status(200).body("refuse me"));
    NewEndpoint { url: &receiver.url, ..Default::default() }.insert(&db).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();

    assert_eq!(wait_for_state(&db, "succeeded", WAIT).await, 1);
    let row = db.client().await.query_one("SELECT response_body, error FROM hookline.attempts", &[]).await.unwrap();
    assert_eq!(row.get::<_, Option<String>>(0), None, "recorded without what was refused");
    assert!(row.get::<_, Option<String>>(1).is_some_and(|e| e.contains("refused")), "and says so");
    assert_eq!(receiver.received().len(), 1);
    worker.stop().await;
}

#[tokio::test]
async fn queue_rows_whose_endpoint_or_event_is_gone_are_ended_not_left_at_the_head() {
    let db = TestDb::new().await;
    let client = db.client().await;
    // More orphans than one claim looks at (the test workers claim 32).
    let gone = NewEndpoint::default().insert(&db).await;
    client.execute("SELECT hookline.send('a.b', '{}') FROM generate_series(1, 40)", &[]).await.unwrap();
    client.execute("DELETE FROM hookline.endpoints WHERE id = $1", &[&gone]).await.unwrap();
    // What a retry of them used to do: put them back in the queue.
    client
        .execute(
            "INSERT INTO hookline.delivery_queue (delivery_id, event_id, endpoint_id, next_attempt_at)
             SELECT id, event_id, endpoint_id, now() - interval '1 minute' FROM hookline.deliveries",
            &[],
        )
        .await
        .unwrap();
    // And one whose event was deleted by hand.
    let kept =
        NewEndpoint { url: "http://127.0.0.1:9/kept", event_types: &["x.y"], ..Default::default() }.insert(&db).await;
    client.execute("SELECT hookline.send('x.y', '{}')", &[]).await.unwrap();
    client.execute("DELETE FROM hookline.events WHERE event_type = 'x.y'", &[]).await.unwrap();

    let receiver = TestReceiver::start().await;
    NewEndpoint { url: &receiver.url, event_types: &["fresh"], ..Default::default() }.insert(&db).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    client.execute("SELECT hookline.send('fresh', '{}')", &[]).await.unwrap();

    receiver.wait_for(1, Duration::from_secs(2)).await;
    eventually(WAIT, "nothing left due", || async {
        (count(&db, "SELECT due_now FROM hookline.queue_stats").await == 0).then_some(())
    })
    .await;
    let ended = |reason: &'static str| {
        let db = &db;
        async move {
            count(
                db,
                &format!("SELECT count(*) FROM hookline.deliveries WHERE state = 'dead' AND last_error = '{reason}'"),
            )
            .await
        }
    };
    assert_eq!(ended("endpoint deleted").await, 40);
    assert_eq!(ended("event deleted").await, 1);
    eventually(WAIT, "orphans (and the fresh delivery) to leave the queue", || async {
        (count(&db, "SELECT count(*) FROM hookline.delivery_queue").await == 0).then_some(())
    })
    .await;
    // An idle worker is one that found nothing to claim: it is not spinning.
    eventually(WAIT, "the worker to be idle", || async {
        (count(&db, "SELECT count(*) FROM hookline.idle_workers").await == 1).then_some(())
    })
    .await;
    let _ = kept;
    worker.stop().await;
}

#[tokio::test]
async fn an_environment_proxy_cannot_carry_a_delivery_past_the_address_guard() {
    let db = TestDb::new().await;
    let proxy = TestReceiver::start().await;
    let proxy_url = proxy.url.trim_end_matches("/hook").to_owned();
    // `localhost` resolves to loopback, which the guard refuses by default.
    NewEndpoint { url: "http://localhost:9/hook", ..Default::default() }.insert(&db).await;
    let mut worker = spawn_process(
        &db,
        &[
            ("HOOKLINE_ALLOW_PRIVATE_NETWORKS", "false"),
            ("HTTP_PROXY", &proxy_url),
            ("HTTPS_PROXY", &proxy_url),
            ("ALL_PROXY", &proxy_url),
            ("http_proxy", &proxy_url),
        ],
    );
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();

    let kind = eventually(WAIT, "an attempt", || async {
        db.client()
            .await
            .query_opt("SELECT error_kind::text FROM hookline.attempts", &[])
            .await
            .unwrap()
            .map(|r| r.get::<_, Option<String>>(0))
    })
    .await;
    worker.kill().unwrap();
    worker.wait().unwrap();
    assert_eq!(kind.as_deref(), Some("blocked_address"));
    assert!(proxy.received().is_empty(), "nothing reached the proxy");
}

#[tokio::test]
async fn stored_response_headers_are_bounded_in_number_and_size() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    let mut reply = Reply::status(200);
    for n in 0..90 {
        reply = reply.header(&format!("x-filler-{n}"), &"v".repeat(2000));
    }
    receiver.always(reply);
    NewEndpoint { url: &receiver.url, ..Default::default() }.insert(&db).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();

    wait_for_state(&db, "succeeded", WAIT).await;
    let row = db
        .client()
        .await
        .query_one(
            "SELECT (SELECT count(*) FROM jsonb_object_keys(response_headers)), octet_length(response_headers::text)
               FROM hookline.attempts",
            &[],
        )
        .await
        .unwrap();
    let (headers, bytes): (i64, i32) = (row.get(0), row.get(1));
    assert!(headers <= hookline::worker::dispatch::RESPONSE_HEADERS_MAX as i64, "{headers} headers stored");
    assert!(bytes <= 2 * hookline::worker::dispatch::RESPONSE_HEADERS_MAX_CHARS as i32, "{bytes} bytes stored");
    worker.stop().await;
}

#[tokio::test]
async fn a_stored_secret_that_does_not_parse_is_never_sent_unsigned() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    let endpoint = NewEndpoint { url: &receiver.url, ..Default::default() }.insert(&db).await;
    let client = db.client().await;
    // As a row written before the table checked secrets would be.
    client
        .batch_execute(
            "ALTER TABLE hookline.endpoints DROP CONSTRAINT IF EXISTS endpoints_secret_valid;
             ALTER TABLE hookline.endpoints DROP CONSTRAINT IF EXISTS endpoints_secret_format",
        )
        .await
        .unwrap();
    client.execute("UPDATE hookline.endpoints SET secret = 'whsec_!!' WHERE id = $1", &[&endpoint]).await.unwrap();
    let worker = RunningWorker::start(&db, test_settings()).await;
    client.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();

    let kind = eventually(WAIT, "an attempt", || async {
        client
            .query_opt("SELECT error_kind::text FROM hookline.attempts LIMIT 1", &[])
            .await
            .unwrap()
            .map(|r| r.get::<_, Option<String>>(0))
    })
    .await;
    assert_eq!(kind.as_deref(), Some("invalid_secret"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.received().is_empty(), "nothing went out unsigned");
    worker.stop().await;
}

#[tokio::test]
async fn the_endpoints_table_refuses_secrets_that_cannot_sign() {
    let db = TestDb::new().await;
    let client = db.client().await;
    for bad in ["whsec_!!", "whsec_", "whsec_c2hvcnQ=", "whsec_not base64 at all"] {
        let refused = client
            .execute("INSERT INTO hookline.endpoints (url, secret) VALUES ('https://example.com', $1)", &[&bad])
            .await
            .expect_err(bad);
        assert_eq!(refused.code(), Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION), "{bad}: {refused}");
    }
    let previous = client
        .execute(
            "INSERT INTO hookline.endpoints (url, previous_secret) VALUES ('https://example.com', 'whsec_!!')",
            &[],
        )
        .await;
    assert!(previous.is_err(), "a previous secret must sign too");
    client
        .execute("INSERT INTO hookline.endpoints (url) VALUES ('https://example.com')", &[])
        .await
        .expect("generated secrets are valid");
}

#[tokio::test]
async fn attempt_numbers_only_grow_across_cancel_and_retry() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let receiver = TestReceiver::start().await;
    NewEndpoint { url: &receiver.url, ..Default::default() }.insert(&db).await;
    let client = db.client().await;
    client.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    let delivery: Uuid = client.query_one("SELECT id FROM hookline.deliveries", &[]).await.unwrap().get(0);

    // A worker claims it, then its lease runs out while the request is slow.
    let slow = claim(&db, Uuid::now_v7()).await;
    assert_eq!(slow.len(), 1);
    client.execute("UPDATE hookline.delivery_queue SET next_attempt_at = now() - interval '1 s'", &[]).await.unwrap();
    assert_eq!(api.post(&format!("/v1/deliveries/{delivery}/cancel"), json!({})).await.status, 200);
    assert_eq!(api.post(&format!("/v1/deliveries/{delivery}/retry"), json!({})).await.status, 202);

    let again = claim(&db, Uuid::now_v7()).await;
    assert_eq!(again.len(), 1);
    assert!(again[0].attempt > slow[0].attempt, "attempt {} after attempt {}", again[0].attempt, slow[0].attempt);
}

#[tokio::test]
async fn special_purpose_and_tunnelled_addresses_are_blocked() {
    let db = TestDb::new().await;
    let urls = [
        "http://198.18.0.1/",            // benchmarking
        "http://198.19.255.1/",          //   (the whole /15)
        "http://[::7f00:1]/",            // IPv4-compatible ::127.0.0.1
        "http://[2002:7f00:1::1]/",      // 6to4
        "http://[2001:0:4136:e378::1]/", // Teredo
        "http://[64:ff9b:1::a00:1]/",    // local-use NAT64
        "http://[100::1]/",              // discard-only
        "http://192.0.2.1/",             // documentation
        "http://198.51.100.1/",
        "http://203.0.113.1/",
        "http://[2001:db8::1]/",
        "http://[3fff::1]/",
    ];
    for url in urls {
        NewEndpoint { url, timeout_ms: 1000, ..Default::default() }.insert(&db).await;
    }
    let settings = WorkerSettings {
        network: hookline::config::NetworkPolicy::default(),
        retry_schedule: hookline::domain::retry::RetrySchedule::parse("").unwrap(),
        ..test_settings()
    };
    let worker = RunningWorker::start(&db, settings).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    eventually(WAIT, "an attempt per endpoint", || async {
        (count(&db, "SELECT count(*) FROM hookline.attempts").await == urls.len() as i64).then_some(())
    })
    .await;
    let rows = db
        .client()
        .await
        .query(
            "SELECT e.url, a.error_kind::text FROM hookline.attempts AS a JOIN hookline.endpoints AS e ON e.id = a.endpoint_id",
            &[],
        )
        .await
        .unwrap();
    for row in rows {
        let (url, kind): (String, Option<String>) = (row.get(0), row.get(1));
        assert_eq!(kind.as_deref(), Some("blocked_address"), "{url}");
    }
    worker.stop().await;
}
