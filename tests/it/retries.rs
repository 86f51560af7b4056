//! Retries (SPEC §5): the schedule, dead letters, Retry-After, 410 and redirects.

use std::time::Duration;

use crate::support::receiver::{Reply, TestReceiver};
use crate::support::worker::{RunningWorker, test_settings};
use crate::support::{NewEndpoint, count, db::TestDb, eventually};

const WAIT: Duration = Duration::from_secs(15);

async fn delivery_state(db: &TestDb) -> (String, i32) {
    let row = db.client().await.query_one("SELECT state::text, attempts FROM hookline.deliveries", &[]).await.unwrap();
    (row.get(0), row.get(1))
}

async fn wait_for_state(db: &TestDb, state: &str) -> i32 {
    eventually(WAIT, &format!("the delivery to be {state}"), || async {
        let (now, attempts) = delivery_state(db).await;
        (now == state).then_some(attempts)
    })
    .await
}

#[tokio::test]
async fn failures_are_retried_on_schedule_until_success() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    receiver.script([Reply::status(500), Reply::status(502)]);
    NewEndpoint { url: &receiver.url, retry_schedule: Some(vec![0.2, 0.4, 5.0]), ..Default::default() }
        .insert(&db)
        .await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();

    let got = receiver.wait_for(3, WAIT).await;
    assert_eq!(wait_for_state(&db, "succeeded").await, 3);
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "webhook-id is the same on every retry");
    // Jitter is ±10%, so the gaps are at least 90% of the schedule.
    let first_gap = got[1].at - got[0].at;
    let second_gap = got[2].at - got[1].at;
    assert!(first_gap >= Duration::from_millis(180), "first retry after {first_gap:?}");
    assert!(second_gap >= Duration::from_millis(360), "second retry after {second_gap:?}");

    let attempts = db
        .client()
        .await
        .query("SELECT attempt, status_code, error_kind::text FROM hookline.attempts ORDER BY attempt", &[])
        .await
        .unwrap();
    let summary: Vec<(i32, Option<i32>, Option<String>)> =
        attempts.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(
        summary,
        vec![
            (1, Some(500), Some("http_status".into())),
            (2, Some(502), Some("http_status".into())),
            (3, Some(200), None)
        ]
    );
    worker.stop().await;
}

#[tokio::test]
async fn the_last_failed_attempt_makes_the_delivery_dead() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    receiver.always(Reply::status(500));
    NewEndpoint { url: &receiver.url, retry_schedule: Some(vec![0.05, 0.05]), ..Default::default() }.insert(&db).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();

    assert_eq!(wait_for_state(&db, "dead").await, 3, "first attempt plus two retries");
    let row = db
        .client()
        .await
        .query_one("SELECT last_status_code, last_error, completed_at IS NOT NULL FROM hookline.deliveries", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<i32>>(0), Some(500));
    assert!(row.get::<_, String>(1).contains("500"));
    assert!(row.get::<_, bool>(2));
    let failures: i32 = db
        .client()
        .await
        .query_one("SELECT consecutive_failures FROM hookline.endpoint_health", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(failures, 1, "one dead delivery is one failure in the run");
    assert_eq!(receiver.received().len(), 3);
    worker.stop().await;
}

#[tokio::test]
async fn retry_after_delays_the_next_attempt() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    receiver.script([Reply::status(429).header("retry-after", "1")]);
    NewEndpoint { url: &receiver.url, retry_schedule: Some(vec![0.01]), ..Default::default() }.insert(&db).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();

    let got = receiver.wait_for(2, WAIT).await;
    assert!(got[1].at - got[0].at >= Duration::from_millis(990), "waited {:?}", got[1].at - got[0].at);
    assert_eq!(wait_for_state(&db, "succeeded").await, 2);
    worker.stop().await;
}

#[tokio::test]
async fn gone_kills_the_delivery_and_disables_the_endpoint() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    receiver.always(Reply::status(410));
    NewEndpoint { url: &receiver.url, ..Default::default() }.insert(&db).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();

    assert_eq!(wait_for_state(&db, "dead").await, 1, "410 is not retried");
    let endpoint = eventually(WAIT, "the endpoint to be disabled", || async {
        let row =
            db.client().await.query_one("SELECT enabled, disabled_reason FROM hookline.endpoints", &[]).await.unwrap();
        (!row.get::<_, bool>(0)).then_some(row)
    })
    .await;
    assert_eq!(endpoint.get::<_, Option<String>>(1).as_deref(), Some("410 Gone"));
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    let queued: i64 =
        db.client().await.query_one("SELECT count(*) FROM hookline.deliveries", &[]).await.unwrap().get(0);
    assert_eq!(queued, 1, "a disabled endpoint gets nothing new");
    worker.stop().await;
}

#[tokio::test]
async fn redirects_are_failures_and_are_not_followed() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    let elsewhere = format!("{}/elsewhere", receiver.url);
    receiver.always(Reply::status(307).header("location", &elsewhere));
    NewEndpoint { url: &receiver.url, retry_schedule: Some(vec![]), ..Default::default() }.insert(&db).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();

    wait_for_state(&db, "dead").await;
    let paths: Vec<String> = receiver.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, vec!["/hook"]);
    worker.stop().await;
}

#[tokio::test]
async fn a_timeout_is_recorded_as_such_and_retried() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    receiver.script([Reply::status(200).after(Duration::from_secs(3))]);
    NewEndpoint { url: &receiver.url, timeout_ms: 200, retry_schedule: Some(vec![0.05]), ..Default::default() }
        .insert(&db)
        .await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();

    assert_eq!(wait_for_state(&db, "succeeded").await, 2);
    let kind: Option<String> = db
        .client()
        .await
        .query_one("SELECT error_kind::text FROM hookline.attempts WHERE attempt = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kind.as_deref(), Some("timeout"));
    worker.stop().await;
}

#[tokio::test]
async fn a_run_of_dead_deliveries_disables_the_endpoint_and_publishes_it() {
    let db = TestDb::new().await;
    let failing = TestReceiver::start().await;
    failing.always(Reply::status(500));
    let operator = TestReceiver::start().await;
    let endpoint =
        NewEndpoint { url: &failing.url, retry_schedule: Some(vec![]), ..Default::default() }.insert(&db).await;
    db.client()
        .await
        .execute(
            "UPDATE hookline.endpoints SET disable_after_failures = 3, event_types = '{order.*}' WHERE id = $1",
            &[&endpoint],
        )
        .await
        .unwrap();
    NewEndpoint { url: &operator.url, event_types: &["endpoint.disabled"], ..Default::default() }.insert(&db).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    let client = db.client().await;

    // Two failures, a success (the run resets), then three failures in a row.
    for reply in [500, 500, 200, 500, 500] {
        failing.script([Reply::status(reply)]);
        let before = failing.received().len();
        client.execute("SELECT hookline.send('order.created', '{}')", &[]).await.unwrap();
        failing.wait_for(before + 1, WAIT).await;
        eventually(WAIT, "the outcome to be recorded", || async {
            let open = count(&db, "SELECT count(*) FROM hookline.deliveries WHERE state = 'pending'").await;
            (open == 0).then_some(())
        })
        .await;
    }
    let still: bool =
        client.query_one("SELECT enabled FROM hookline.endpoints WHERE id = $1", &[&endpoint]).await.unwrap().get(0);
    assert!(still, "two failures after a success are below the threshold of 3");

    client.execute("SELECT hookline.send('order.created', '{}')", &[]).await.unwrap();
    let notice = operator.wait_for(1, WAIT).await;
    let event = notice[0].json();
    assert_eq!(event["type"], "endpoint.disabled");
    assert_eq!(event["data"]["endpoint_id"], endpoint.to_string());
    assert_eq!(event["data"]["reason"], "3 consecutive failed deliveries");
    let row = client
        .query_one("SELECT enabled, disabled_reason, consecutive_failures FROM hookline.endpoint_health WHERE endpoint_id = $1", &[&endpoint])
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0));
    assert_eq!(row.get::<_, i32>(2), 3);

    client.execute("UPDATE hookline.endpoints SET enabled = true WHERE id = $1", &[&endpoint]).await.unwrap();
    let reset: i32 = client
        .query_one("SELECT consecutive_failures FROM hookline.endpoint_health WHERE endpoint_id = $1", &[&endpoint])
        .await
        .unwrap()
        .get(0);
    assert_eq!(reset, 0, "enabling clears the run");
    worker.stop().await;
}
