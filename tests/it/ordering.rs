//! FIFO ordering per endpoint and per ordering key (issue 13): each lane's
//! events reach the receiver in order, one at a time, across workers,
//! retries, kills and dead heads; a stuck lane holds back only itself.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::support::api::TestApi;
use crate::support::receiver::{Received, Reply, TestReceiver};
use crate::support::worker::{RunningWorker, WorkerSettings, spawn_process, test_settings};
use crate::support::{count, db::TestDb, eventually};

const WAIT: Duration = Duration::from_secs(30);

/// An endpoint ordered by `ordering`, retrying quickly `retries` times.
async fn ordered_endpoint(db: &TestDb, url: &str, ordering: &str, retries: usize) -> uuid::Uuid {
    db.client()
        .await
        .query_one(
            "INSERT INTO hookline.endpoints (url, ordering, retry_schedule) VALUES ($1, $2, $3) RETURNING id",
            &[&url, &ordering, &vec![0.05f64; retries]],
        )
        .await
        .unwrap()
        .get(0)
}

/// Lets the endpoint's lanes move on past dead deliveries.
async fn skip_dead_ones(db: &TestDb, endpoint: uuid::Uuid) {
    let client = db.client().await;
    client
        .execute("UPDATE hookline.endpoints SET ordering_on_dead = 'skip' WHERE id = $1", &[&endpoint])
        .await
        .unwrap();
}

/// (key, n) of a request's event payload.
fn key_and_n(request: &Received) -> (String, i64) {
    let data = &request.json()["data"];
    (data["key"].as_str().unwrap().to_owned(), data["n"].as_i64().unwrap())
}

/// Checks every key's requests, in arrival order with the status each got:
/// they start at 0, never go back, and move on by one only after a 2xx
/// (a request repeated after a 2xx is a lease cut short: at least once).
/// Returns how many events each key got a 2xx for.
fn check_lanes(requests: &[(Received, u16)]) -> BTreeMap<String, i64> {
    let mut last: HashMap<String, (i64, bool)> = HashMap::new();
    let mut done = BTreeMap::new();
    for (request, status) in requests {
        let (key, n) = key_and_n(request);
        let ok = (200..300).contains(status);
        match last.get(&key) {
            None => assert_eq!(n, 0, "key {key} starts at its first event"),
            Some(&(prev, prev_ok)) => {
                let allowed = if prev_ok { [prev, prev + 1] } else { [prev, prev] };
                assert!(allowed.contains(&n), "key {key}: event {n} after event {prev} (2xx: {prev_ok})");
            }
        }
        last.insert(key.clone(), (n, ok));
        if ok {
            let best = done.entry(key).or_insert(-1);
            *best = (*best).max(n);
        }
    }
    done.into_iter().map(|(k, n)| (k, n + 1)).collect()
}

/// The requests with the status the script gave each (then 200).
fn with_status(received: Vec<Received>, script: &[u16]) -> Vec<(Received, u16)> {
    received.into_iter().enumerate().map(|(i, r)| (r, script.get(i).copied().unwrap_or(200))).collect()
}

#[tokio::test]
async fn each_key_arrives_in_order_across_two_workers_random_failures_and_a_killed_worker() {
    const KEYS: usize = 25;
    const PER_KEY: i64 = 8;
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    let mut rng = StdRng::seed_from_u64(13);
    let script: Vec<u16> = (0..400).map(|_| if rng.random_bool(0.25) { 500 } else { 200 }).collect();
    receiver.script(script.iter().map(|s| Reply::status(*s)));
    ordered_endpoint(&db, &receiver.url, "key", 30).await;

    let short_leases = [("HOOKLINE_LEASE_MAX_S", "2")];
    let mut process = spawn_process(&db, &short_leases);
    let settings = WorkerSettings { lease_max: Duration::from_secs(2), ..test_settings() };
    let worker = RunningWorker::start(&db, settings).await;

    // Each key's events in order, the keys interleaved at random, some
    // transactions carrying several.
    let mut next: Vec<i64> = vec![0; KEYS];
    let mut client = db.connect().await;
    while next.iter().any(|n| *n < PER_KEY) {
        let tx = client.transaction().await.unwrap();
        for _ in 0..rng.random_range(1..5) {
            let open: Vec<usize> = (0..KEYS).filter(|k| next[*k] < PER_KEY).collect();
            let Some(&k) = open.get(rng.random_range(0..open.len().max(1))) else { break };
            let key = format!("key-{k}");
            tx.execute(
                "SELECT hookline.send('order.changed', $1, ordering_key => $2)",
                &[&json!({"key": key, "n": next[k]}), &key],
            )
            .await
            .unwrap();
            next[k] += 1;
        }
        tx.commit().await.unwrap();
    }

    receiver.wait_for(60, WAIT).await;
    process.kill().unwrap();
    process.wait().unwrap();
    let _replacement = spawn_process(&db, &short_leases);

    let expected: BTreeMap<String, i64> = (0..KEYS).map(|k| (format!("key-{k}"), PER_KEY)).collect();
    eventually(WAIT, "every event of every key delivered", || async {
        (check_lanes(&with_status(receiver.received(), &script)) == expected).then_some(())
    })
    .await;
    eventually(WAIT, "the queue to empty", || async {
        (count(&db, "SELECT count(*) FROM hookline.delivery_queue").await == 0).then_some(())
    })
    .await;
    check_lanes(&with_status(receiver.received(), &script));
    let failed = script.iter().take(receiver.received().len()).filter(|s| **s == 500).count();
    assert!(failed > 20, "the heads were retried ({failed} failures)");
    worker.stop().await;
}

#[tokio::test]
async fn an_endpoint_lane_sends_one_at_a_time_in_event_order() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    receiver.always(Reply::status(200).after(Duration::from_millis(10)));
    ordered_endpoint(&db, &receiver.url, "endpoint", 3).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    db.client()
        .await
        .execute(
            "INSERT INTO hookline.events (event_type, payload)
             SELECT 'a.b', jsonb_build_object('key', 'all', 'n', n) FROM generate_series(0, 39) AS n",
            &[],
        )
        .await
        .unwrap();
    let got = receiver.wait_for(40, WAIT).await;
    let order: Vec<i64> = got.iter().map(|r| key_and_n(r).1).collect();
    assert_eq!(order, (0..40).collect::<Vec<_>>(), "the statement's row order");
    assert_eq!(receiver.most_concurrent(), 1, "one request in flight at a time");
    worker.stop().await;
}

#[tokio::test]
async fn a_lane_follows_commit_order_across_producers() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    ordered_endpoint(&db, &receiver.url, "key", 3).await;
    let send = "SELECT hookline.send('a.b', jsonb_build_object('key', 'k', 'n', $1::bigint), ordering_key => 'k')";
    let mut first = db.connect().await;
    let mut second = db.connect().await;
    let t1 = first.transaction().await.unwrap();
    t1.execute(send, &[&0i64]).await.unwrap();
    // The second producer's event waits for the first transaction's lane.
    let later = tokio::spawn(async move {
        let t2 = second.transaction().await.unwrap();
        t2.execute(send, &[&2i64]).await.unwrap();
        t2.commit().await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!later.is_finished(), "the second producer waits for the first to commit");
    t1.execute(send, &[&1i64]).await.unwrap();
    t1.commit().await.unwrap();
    later.await.unwrap();

    let worker = RunningWorker::start(&db, test_settings()).await;
    let got = receiver.wait_for(3, WAIT).await;
    let order: Vec<i64> = got.iter().map(|r| key_and_n(r).1).collect();
    assert_eq!(order, [0, 1, 2], "commit order: the first transaction's events, then the second's");
    worker.stop().await;
}

/// Sends `key`'s event `n` (and answers nothing about it).
async fn send(db: &TestDb, key: &str, n: i64) {
    db.client()
        .await
        .execute(
            "SELECT hookline.send('a.b', jsonb_build_object('key', $1::text, 'n', $2::bigint), ordering_key => $1)",
            &[&key, &n],
        )
        .await
        .unwrap();
}

/// The one dead letter in the queue.
async fn dead_letter(db: &TestDb) -> uuid::Uuid {
    let client = db.client().await;
    client.query_one("SELECT delivery_id FROM hookline.delivery_queue WHERE state = 'dead'", &[]).await.unwrap().get(0)
}

async fn queue_states(db: &TestDb) -> Vec<String> {
    db.client()
        .await
        .query("SELECT state::text FROM hookline.delivery_queue ORDER BY lane_seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn a_dead_head_holds_back_its_key_alone_until_replayed_or_skipped() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    let endpoint = ordered_endpoint(&db, &receiver.url, "key", 0).await;
    let worker = RunningWorker::start(&db, test_settings()).await;

    receiver.script([Reply::status(500)]);
    send(&db, "stuck", 0).await;
    eventually(WAIT, "the head to die", || async { (queue_states(&db).await == ["dead"]).then_some(()) }).await;
    for n in 1..4 {
        send(&db, "stuck", n).await;
    }
    for n in 0..3 {
        send(&db, "free", n).await;
    }
    receiver.wait_for(4, WAIT).await;
    eventually(WAIT, "the other key to finish", || async {
        (queue_states(&db).await == ["dead", "waiting", "waiting", "waiting"]).then_some(())
    })
    .await;
    let sent: Vec<(String, i64)> = receiver.received().iter().map(key_and_n).collect();
    assert_eq!(sent, [("stuck".into(), 0), ("free".into(), 0), ("free".into(), 1), ("free".into(), 2)]);

    // Replaying the dead head sends it, then the rest of its key, in order.
    let head = dead_letter(&db).await;
    let mut client = db.client().await;
    let tx = client.transaction().await.unwrap();
    hookline::db::deliveries::requeue(&tx, head).await.unwrap();
    tx.commit().await.unwrap();
    let got = receiver.wait_for(8, WAIT).await;
    let stuck: Vec<i64> = got[4..].iter().map(|r| key_and_n(r).1).collect();
    assert_eq!(stuck, [0, 1, 2, 3]);

    // With `skip`, a dead head no longer holds its key back.
    receiver.script([Reply::status(500)]);
    send(&db, "stuck", 4).await;
    eventually(WAIT, "the new head to die", || async { (queue_states(&db).await == ["dead"]).then_some(()) }).await;
    send(&db, "stuck", 5).await;
    eventually(WAIT, "the next one to wait", || async {
        (queue_states(&db).await == ["dead", "waiting"]).then_some(())
    })
    .await;
    skip_dead_ones(&db, endpoint).await;
    let got = receiver.wait_for(10, WAIT).await;
    assert_eq!(key_and_n(&got[9]), ("stuck".into(), 5), "skipped past the dead one");
    send(&db, "stuck", 6).await;
    assert_eq!(key_and_n(&receiver.wait_for(11, WAIT).await[10]), ("stuck".into(), 6));
    worker.stop().await;
}

#[tokio::test]
async fn cancelling_a_waiting_lanes_head_lets_the_next_go() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    ordered_endpoint(&db, &receiver.url, "key", 0).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    receiver.script([Reply::status(500)]);
    send(&db, "k", 0).await;
    eventually(WAIT, "the head to die", || async { (queue_states(&db).await == ["dead"]).then_some(()) }).await;
    send(&db, "k", 1).await;
    eventually(WAIT, "the next to wait", || async { (queue_states(&db).await == ["dead", "waiting"]).then_some(()) })
        .await;
    let head = dead_letter(&db).await;
    let mut client = db.client().await;
    let tx = client.transaction().await.unwrap();
    assert!(hookline::db::deliveries::cancel(&tx, head, "discarded").await.unwrap());
    tx.commit().await.unwrap();
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(key_and_n(&got[1]), ("k".into(), 1));
    worker.stop().await;
}

#[tokio::test]
async fn the_api_orders_an_endpoint_by_key_and_takes_events_with_keys() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let receiver = TestReceiver::start().await;
    receiver.always(Reply::status(200).after(Duration::from_millis(5)));
    let created = api.post("/v1/endpoints", json!({"url": receiver.url, "ordering": "key"})).await;
    assert_eq!(
        (created.status, &created.body["ordering"], &created.body["ordering_on_dead"]),
        (201, &json!("key"), &json!("wait"))
    );
    let id = created.body["id"].as_str().unwrap().to_owned();
    let changed = api.patch(&format!("/v1/endpoints/{id}"), json!({"ordering_on_dead": "skip"})).await;
    assert_eq!(changed.body["ordering_on_dead"], "skip", "{changed:?}");
    api.patch(&format!("/v1/endpoints/{id}"), json!({"ordering": null})).await.assert_problem(400, Some("ordering"));

    let worker = RunningWorker::start(&db, test_settings()).await;
    for n in 0..12i64 {
        let key = ["a", "b", "c"][n as usize % 3];
        let sent = api
            .post("/v1/events", json!({"event_type": "a.b", "payload": {"key": key, "n": n / 3}, "ordering_key": key}))
            .await;
        assert_eq!((sent.status, &sent.body["ordering_key"]), (202, &json!(key)), "{sent:?}");
    }
    let got = receiver.wait_for(12, WAIT).await;
    let statuses: Vec<(Received, u16)> = got.into_iter().map(|r| (r, 200)).collect();
    let done = check_lanes(&statuses);
    assert_eq!(done.values().copied().collect::<Vec<_>>(), [4, 4, 4]);
    let too_long = "k".repeat(201);
    api.post("/v1/events", json!({"event_type": "a.b", "payload": {}, "ordering_key": too_long}))
        .await
        .assert_problem(400, Some("ordering_key"));
    worker.stop().await;
}

#[tokio::test]
async fn a_replayed_dead_delivery_of_a_skipping_lane_waits_behind_the_one_in_flight() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    let endpoint = ordered_endpoint(&db, &receiver.url, "key", 0).await;
    skip_dead_ones(&db, endpoint).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    receiver.script([Reply::status(500), Reply::status(200).after(Duration::from_millis(800))]);
    send(&db, "k", 0).await;
    eventually(WAIT, "the first to die", || async { (queue_states(&db).await == ["dead"]).then_some(()) }).await;
    send(&db, "k", 1).await;
    receiver.wait_for(2, WAIT).await;

    // Event 1 is in flight (its receiver takes 800 ms): the replayed event 0
    // goes to the back of the lane, after it, not beside it.
    let dead = dead_letter(&db).await;
    let mut client = db.client().await;
    let tx = client.transaction().await.unwrap();
    hookline::db::deliveries::requeue(&tx, dead).await.unwrap();
    tx.commit().await.unwrap();
    let got = receiver.wait_for(3, WAIT).await;
    assert_eq!(key_and_n(&got[2]), ("k".into(), 0));
    assert!(
        got[2].at.duration_since(got[1].at) >= Duration::from_millis(800),
        "sent only after the one in flight was answered"
    );
    assert_eq!(receiver.most_concurrent(), 1);
    worker.stop().await;
}
