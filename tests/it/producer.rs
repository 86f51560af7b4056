//! Producing events from SQL (SPEC §3): both forms, transactions, idempotency,
//! filters, and the NOTIFY that wakes workers.

use std::time::Duration;

use crate::support::{NewEndpoint, count, db::TestDb};

const DELIVERIES: &str = "SELECT count(*) FROM hookline.deliveries";

#[tokio::test]
async fn send_and_insert_fan_out_to_every_matching_endpoint() {
    let db = TestDb::new().await;
    NewEndpoint { event_types: &[], ..Default::default() }.insert(&db).await;
    NewEndpoint { event_types: &["order.*"], ..Default::default() }.insert(&db).await;
    NewEndpoint { event_types: &["order.created"], ..Default::default() }.insert(&db).await;
    NewEndpoint { event_types: &["user.created"], ..Default::default() }.insert(&db).await;

    let client = db.client().await;
    let id: uuid::Uuid = client
        .query_one("SELECT hookline.send('order.created', '{\"order_id\": 42}'::jsonb)", &[])
        .await
        .unwrap()
        .get(0);
    client
        .execute("INSERT INTO hookline.events (event_type, payload) VALUES ('order.shipped', '{}')", &[])
        .await
        .unwrap();

    let for_send = count(&db, &format!("SELECT count(*) FROM hookline.deliveries WHERE event_id = '{id}'")).await;
    assert_eq!(for_send, 3, "all-types, order.* and the exact filter match order.created");
    let for_insert = count(&db, "SELECT count(*) FROM hookline.deliveries WHERE event_type = 'order.shipped'").await;
    assert_eq!(for_insert, 2, "all-types and order.* match order.shipped");
    let source: String =
        client.query_one("SELECT source FROM hookline.events WHERE id = $1", &[&id]).await.unwrap().get(0);
    assert_eq!(source, "sql");
}

#[tokio::test]
async fn a_rolled_back_transaction_delivers_nothing() {
    let db = TestDb::new().await;
    NewEndpoint::default().insert(&db).await;
    let mut client = db.connect().await;

    let tx = client.transaction().await.unwrap();
    tx.execute("SELECT hookline.send('order.created', '{}')", &[]).await.unwrap();
    tx.execute("INSERT INTO hookline.events (event_type, payload) VALUES ('order.created', '{}')", &[]).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.events").await, 0);
    assert_eq!(count(&db, DELIVERIES).await, 0);

    let tx = client.transaction().await.unwrap();
    tx.execute("SELECT hookline.send('order.created', '{}')", &[]).await.unwrap();
    assert_eq!(count(&db, DELIVERIES).await, 0, "invisible before commit");
    tx.commit().await.unwrap();
    assert_eq!(count(&db, DELIVERIES).await, 1);
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_event_and_creates_nothing() {
    let db = TestDb::new().await;
    NewEndpoint::default().insert(&db).await;
    let client = db.client().await;
    let send = "SELECT hookline.send('order.created', $1, tenant => 'default', idempotency_key => 'order-42')";
    let first: uuid::Uuid = client.query_one(send, &[&serde_json::json!({"n": 1})]).await.unwrap().get(0);
    let second: uuid::Uuid = client.query_one(send, &[&serde_json::json!({"n": 2})]).await.unwrap().get(0);
    assert_eq!(first, second);

    let inserted = client
        .execute(
            "INSERT INTO hookline.events (event_type, payload, idempotency_key) VALUES ('order.created', '{}', 'order-42')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(inserted, 0, "a plain INSERT with a used key is skipped");
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.events").await, 1);
    assert_eq!(count(&db, DELIVERIES).await, 1);

    // Keys are per tenant.
    client
        .execute("INSERT INTO hookline.endpoints (url, tenant) VALUES ('http://127.0.0.1:9/', 'acme')", &[])
        .await
        .unwrap();
    let other: uuid::Uuid = client
        .query_one("SELECT hookline.send('order.created', '{}', tenant => 'acme', idempotency_key => 'order-42')", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(other, first);
    assert_eq!(count(&db, DELIVERIES).await, 2);
}

#[tokio::test]
async fn tenants_and_disabled_endpoints_are_not_fanned_out_to() {
    let db = TestDb::new().await;
    let acme = NewEndpoint { tenant: "acme", ..Default::default() }.insert(&db).await;
    NewEndpoint { tenant: "globex", ..Default::default() }.insert(&db).await;
    NewEndpoint { tenant: "acme", enabled: false, ..Default::default() }.insert(&db).await;

    db.client().await.execute("SELECT hookline.send('x.y', '{}', tenant => 'acme')", &[]).await.unwrap();
    let endpoints: Vec<uuid::Uuid> = db
        .client()
        .await
        .query("SELECT endpoint_id FROM hookline.deliveries", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(endpoints, vec![acme]);
}

#[tokio::test]
async fn event_type_patterns_match_exactly_or_by_prefix() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let cases = [
        (vec![], "anything", true),
        (vec!["*"], "anything", true),
        (vec!["order.created"], "order.created", true),
        (vec!["order.created"], "order.creat", false),
        (vec!["order.*"], "order.item.added", true),
        (vec!["order.*"], "order", false),
        (vec!["order.*"], "orders.created", false),
        (vec!["user.*", "order.paid"], "order.paid", true),
        (vec!["order_paid"], "orderXpaid", false),
        (vec!["100%"], "1000", false),
        (vec!["a\\b.*"], "a\\b.c", true),
    ];
    for (patterns, event_type, expected) in cases {
        let matched: bool = client
            .query_one("SELECT hookline.event_type_matches($1, $2)", &[&patterns, &event_type])
            .await
            .unwrap()
            .get(0);
        assert_eq!(matched, expected, "{patterns:?} vs {event_type}");
    }
}

/// A connection listening on the workers' channel, and its notifications.
async fn listen(db: &TestDb) -> (tokio_postgres::Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (listener, mut connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let _ = tx.send(n.channel().to_owned());
            }
        }
    });
    listener.batch_execute("LISTEN hookline_wake").await.unwrap();
    (listener, rx)
}

#[tokio::test]
async fn a_bulk_insert_wakes_idle_workers_with_one_notification() {
    let db = TestDb::new().await;
    NewEndpoint::default().insert(&db).await;
    let (listener, mut rx) = listen(&db).await;
    db.client()
        .await
        .execute("INSERT INTO hookline.idle_workers (worker_id) VALUES (gen_random_uuid())", &[])
        .await
        .unwrap();

    db.client()
        .await
        .execute(
            "INSERT INTO hookline.events (event_type, payload)
             SELECT 'bulk.created', jsonb_build_object('n', n) FROM generate_series(1, 1000) AS n",
            &[],
        )
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("a notification");
    assert_eq!(first.as_deref(), Some("hookline_wake"));
    // A round trip on the listener flushes anything else the server sent.
    listener.batch_execute("SELECT 1").await.unwrap();
    assert!(rx.try_recv().is_err(), "1,000 rows in one statement notify once");
    assert_eq!(count(&db, DELIVERIES).await, 1000);
}

#[tokio::test]
async fn disabling_an_endpoint_moves_its_queue_to_dead_letters() {
    let db = TestDb::new().await;
    let endpoint = NewEndpoint::default().insert(&db).await;
    let client = db.client().await;
    client.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    client
        .execute(
            "UPDATE hookline.endpoints SET enabled = false, disabled_reason = 'maintenance' WHERE id = $1",
            &[&endpoint],
        )
        .await
        .unwrap();
    let row = client.query_one("SELECT state::text, last_error FROM hookline.deliveries", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "dead");
    assert_eq!(row.get::<_, String>(1), "endpoint disabled: maintenance");
    let disabled_at_set: bool =
        client.query_one("SELECT disabled_at IS NOT NULL FROM hookline.endpoints", &[]).await.unwrap().get(0);
    assert!(disabled_at_set);
    client.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    assert_eq!(count(&db, DELIVERIES).await, 1, "nothing is queued while disabled");
}

#[tokio::test]
async fn producers_skip_the_notification_while_no_worker_is_idle() {
    let db = TestDb::new().await;
    NewEndpoint::default().insert(&db).await;
    let (listener, mut rx) = listen(&db).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    listener.batch_execute("SELECT 1").await.unwrap();
    assert!(rx.try_recv().is_err(), "busy workers are not notified");

    db.client()
        .await
        .execute("INSERT INTO hookline.idle_workers (worker_id) VALUES (gen_random_uuid())", &[])
        .await
        .unwrap();
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    let woken = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("an idle worker is notified");
    assert_eq!(woken.as_deref(), Some("hookline_wake"));
    assert_eq!(count(&db, DELIVERIES).await, 2);
}
