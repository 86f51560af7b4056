//! Batching (issue 13): an endpoint's due deliveries go together, cut by
//! max_events and max_bytes, signed as one message; one request is one
//! attempt of each delivery it carried, recorded once; a 413 halves it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use hookline::signing::SigningKey;
use hookline::worker::batch::{self, Job};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::api::TestApi;
use crate::support::drive::claim;
use crate::support::receiver::{Received, Reply, TestReceiver};
use crate::support::worker::{RunningWorker, WorkerSettings, spawn_process, test_settings};
use crate::support::{count, db::TestDb, endpoint_secret, eventually};

const WAIT: Duration = Duration::from_secs(20);

/// An endpoint batching as asked, retrying quickly.
async fn batching_endpoint(
    db: &TestDb,
    url: &str,
    max_events: i32,
    max_bytes: i32,
    wait_ms: i32,
    format: &str,
) -> Uuid {
    db.client()
        .await
        .query_one(
            "INSERT INTO hookline.endpoints (url, retry_schedule, batch_max_events, batch_max_bytes,
                                             batch_max_wait_ms, batch_format)
             VALUES ($1, '{0.05, 0.05}', $2, $3, $4, $5) RETURNING id",
            &[&url, &max_events, &max_bytes, &wait_ms, &format],
        )
        .await
        .unwrap()
        .get(0)
}

/// Sends `n` events in one statement; payloads carry their number and `pad`.
async fn send_events(db: &TestDb, n: i32, pad: usize) {
    db.client()
        .await
        .execute(
            "SELECT hookline.send('order.created', jsonb_build_object('n', i, 'pad', repeat('x', $2)))
               FROM generate_series(1, $1) AS i",
            &[&n, &(pad as i32)],
        )
        .await
        .unwrap();
}

/// The envelopes of a JSON-array request.
/// `per_key` events for each of `keys` ordering keys (`k1`…), in event
/// order n = 0, 1, … across the keys; each payload names its key and n.
async fn send_keyed_events(db: &TestDb, keys: i64, per_key: i64) {
    db.client()
        .await
        .execute(
            "INSERT INTO hookline.events (event_type, payload, ordering_key)
             SELECT 'order.updated', jsonb_build_object('key', 'k' || k, 'n', n), 'k' || k
               FROM generate_series(0, $2::bigint - 1) AS n, generate_series(1, $1::bigint) AS k
              ORDER BY n, k",
            &[&keys, &per_key],
        )
        .await
        .unwrap();
}

fn envelopes(request: &Received) -> Vec<Value> {
    request.json().as_array().expect("a JSON array body").clone()
}

async fn all_succeeded(db: &TestDb, n: i64) {
    eventually(WAIT, "every delivery to succeed", || async {
        let done = count(db, "SELECT count(*) FROM hookline.deliveries WHERE state = 'succeeded'").await;
        (done == n).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_backlog_goes_in_batches_each_signed_as_one_message() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    let endpoint = batching_endpoint(&db, &receiver.url, 10, 1 << 20, 0, "json").await;
    send_events(&db, 35, 0).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    all_succeeded(&db, 35).await;
    worker.stop().await;

    let requests = receiver.received();
    let key = SigningKey::from_secret(&endpoint_secret(&db, endpoint).await).unwrap();
    let mut event_ids = HashSet::new();
    for request in &requests {
        assert_eq!(request.header("content-type"), "application/json");
        let batch = envelopes(request);
        assert!((1..=10).contains(&batch.len()), "{} envelopes", batch.len());
        for envelope in &batch {
            assert_eq!(envelope["type"], "order.created");
            assert!(envelope["data"]["n"].is_i64());
            let id = envelope["id"].as_str().unwrap().to_owned();
            assert_ne!(id, request.header("webhook-id"), "the batch has its own webhook-id");
            event_ids.insert(id);
        }
        let timestamp: i64 = request.header("webhook-timestamp").parse().unwrap();
        assert!(key.verify(
            request.header("webhook-id"),
            timestamp,
            request.body.as_bytes(),
            request.header("webhook-signature")
        ));
    }
    assert_eq!(event_ids.len(), 35, "each event arrived");
    assert!(requests.len() <= 6, "a backlog of 35 goes in few requests, not {}", requests.len());

    // One attempt row per request, named by each delivery it carried.
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.attempts").await, 0);
    let recorded = count(&db, "SELECT count(*) FROM hookline.batch_attempts").await;
    assert_eq!(recorded, requests.len() as i64);
    let client = db.client().await;
    let delivery: Uuid = client.query_one("SELECT id FROM hookline.deliveries LIMIT 1", &[]).await.unwrap().get(0);
    let attempts = hookline::db::deliveries::attempts(&client, delivery).await.unwrap();
    assert_eq!(attempts.len(), 1);
    let batch_id = attempts[0].batch_id.expect("a batched attempt");
    let request = requests.iter().find(|r| r.header("webhook-id") == batch_id.to_string()).expect("its request");
    assert_eq!(attempts[0].batch_size, Some(envelopes(request).len() as i32));
    assert_eq!((attempts[0].attempt, attempts[0].status_code), (1, Some(200)));
}

/// The pages of history rows, by delivery (`ctid` is (page, item)).
async fn history_pages(db: &TestDb) -> HashMap<Uuid, String> {
    let rows = db
        .client()
        .await
        .query("SELECT id, split_part(trim(both '()' FROM ctid::text), ',', 1) FROM hookline.deliveries", &[])
        .await
        .unwrap();
    rows.iter().map(|row| (row.get(0), row.get(1))).collect()
}

#[tokio::test]
async fn a_batched_completion_updates_history_in_place() {
    // A completion ends whole pages of neighbouring history rows in one
    // transaction; each page keeps room for all their new versions (V29),
    // so none moves to another page, which would cost an entry in each of
    // the table's indexes.
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    batching_endpoint(&db, &receiver.url, 1000, 1 << 22, 0, "json").await;
    send_events(&db, 600, 0).await;
    let before = history_pages(&db).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    all_succeeded(&db, 600).await;
    worker.stop().await;

    let after = history_pages(&db).await;
    let moved = before.iter().filter(|(id, page)| after[*id] != **page).count();
    assert_eq!(moved, 0, "history rows that left their page, of {}", before.len());
    assert!(before.values().collect::<HashSet<_>>().len() > 2, "the rows span several pages");
}

/// How many deliveries each job carries.
fn job_sizes(jobs: &[Job]) -> Vec<usize> {
    jobs.iter().map(|job| job.delivery_ids().count()).collect()
}

#[tokio::test]
async fn a_fill_takes_whole_batches_of_a_backlog_as_far_as_the_free_slots_and_the_share_allow() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    batching_endpoint(&db, &receiver.url, 5, 1 << 20, 0, "json").await;
    send_events(&db, 100, 0).await;
    let worker = Uuid::now_v7();
    let client = db.client().await;
    let leased = || count(&db, "SELECT count(*) FROM hookline.delivery_queue WHERE lease_owner IS NOT NULL");

    // The claim's 10 fill two batches: a backlog, so whole batches follow,
    // one per free slot.
    let mut jobs = batch::jobs(claim(&db, worker).await);
    assert_eq!(job_sizes(&jobs), [5, 5]);
    batch::fill(&client, worker, 60.0, &mut jobs, 3, |_| 100).await.unwrap();
    assert_eq!(job_sizes(&jobs), [5; 5]);
    assert_eq!(leased().await, 25);

    // The endpoint's share room counts the batches the claim made.
    let mut jobs = batch::jobs(claim(&db, worker).await);
    batch::fill(&client, worker, 60.0, &mut jobs, 10, |_| 3).await.unwrap();
    assert_eq!(job_sizes(&jobs), [5; 3]);
    assert_eq!(leased().await, 25 + 15);

    // None taken twice.
    let ids: Vec<Uuid> = jobs.iter().flat_map(Job::delivery_ids).collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 15);
}

#[tokio::test]
async fn whole_batches_cut_finer_by_their_bytes_than_the_free_slots_go_back_to_the_queue() {
    // Envelopes of ~730 bytes in batches of at most 10 events or 2,000
    // bytes: the fill takes 2,000 bytes of envelopes for each free slot,
    // but only two fit in a request; what finds no free slot is released,
    // not sent twice nor counted as an attempt.
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    batching_endpoint(&db, &receiver.url, 10, 2000, 0, "json").await;
    send_events(&db, 120, 600).await;
    let settings = WorkerSettings { concurrency: 4, endpoint_share: 4, claim_batch: 4, ..test_settings() };
    let worker = RunningWorker::start(&db, settings).await;
    all_succeeded(&db, 120).await;
    worker.stop().await;

    let mut seen = HashSet::new();
    for request in receiver.received() {
        assert!(request.body.len() <= 2000, "{} bytes", request.body.len());
        for envelope in envelopes(&request) {
            assert!(seen.insert(envelope["id"].as_str().unwrap().to_owned()), "sent twice: {envelope}");
        }
    }
    assert_eq!(seen.len(), 120);
    let attempts = count(&db, "SELECT count(*) FROM hookline.deliveries WHERE attempts <> 1").await;
    assert_eq!(attempts, 0, "every delivery took one attempt");
}

#[tokio::test]
async fn ndjson_batches_stay_within_max_bytes() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    batching_endpoint(&db, &receiver.url, 100, 2048, 0, "ndjson").await;
    send_events(&db, 12, 500).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    all_succeeded(&db, 12).await;
    worker.stop().await;

    let mut events = 0;
    for request in receiver.received() {
        assert_eq!(request.header("content-type"), "application/x-ndjson");
        assert!(request.body.len() <= 2048, "{} bytes", request.body.len());
        assert!(request.body.ends_with('\n'));
        for line in request.body.lines() {
            let envelope: Value = serde_json::from_str(line).expect("one envelope per line");
            assert_eq!(envelope["data"]["pad"].as_str().unwrap().len(), 500);
            events += 1;
        }
    }
    assert_eq!(events, 12);
}

#[tokio::test]
async fn a_413_halves_the_batch_and_each_half_is_a_new_attempt() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    receiver.script([Reply::status(413)]);
    batching_endpoint(&db, &receiver.url, 8, 1 << 20, 0, "json").await;
    send_events(&db, 8, 0).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    all_succeeded(&db, 8).await;
    worker.stop().await;

    let sizes: Vec<usize> = receiver.received().iter().map(|r| envelopes(r).len()).collect();
    assert_eq!(sizes, vec![8, 4, 4]);
    let client = db.client().await;
    let delivery: Uuid = client.query_one("SELECT id FROM hookline.deliveries LIMIT 1", &[]).await.unwrap().get(0);
    let attempts = hookline::db::deliveries::attempts(&client, delivery).await.unwrap();
    let seen: Vec<_> = attempts.iter().map(|a| (a.attempt, a.status_code, a.batch_size)).collect();
    assert_eq!(seen, vec![(1, Some(413), Some(8)), (2, Some(200), Some(4))]);
    let counts: Vec<i32> =
        client.query("SELECT attempts FROM hookline.deliveries", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(counts, vec![2; 8]);
}

#[tokio::test]
async fn a_failed_request_fails_every_delivery_in_it_and_counts_once_for_the_breaker() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    receiver.script([Reply::status(500)]);
    let endpoint = batching_endpoint(&db, &receiver.url, 100, 1 << 20, 0, "json").await;
    let client = db.client().await;
    client.execute("UPDATE hookline.endpoints SET retry_schedule = '{1}' WHERE id = $1", &[&endpoint]).await.unwrap();
    send_events(&db, 5, 0).await;
    // Two failed attempts open the circuit: the one request of five
    // deliveries must count as one.
    let settings = hookline::config::WorkerSettings {
        circuit: hookline::config::CircuitSettings { failures: 2, ..test_settings().circuit },
        ..test_settings()
    };
    let worker = RunningWorker::start(&db, settings).await;
    let state = eventually(WAIT, "the failed request to be recorded", || async {
        let row = client
            .query_one(
                "SELECT s.circuit_state::text, s.failed_attempts,
                        (SELECT count(*) FROM hookline.deliveries WHERE state = 'pending' AND attempts = 1)
                   FROM hookline.endpoint_state AS s WHERE s.endpoint_id = $1",
                &[&endpoint],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(2) == 5).then(|| (row.get::<_, String>(0), row.get::<_, i32>(1)))
    })
    .await;
    assert_eq!(state, ("closed".to_owned(), 1));
    all_succeeded(&db, 5).await;
    worker.stop().await;

    let sizes: Vec<usize> = receiver.received().iter().map(|r| envelopes(r).len()).collect();
    assert_eq!(sizes, vec![5, 5], "the failed batch is retried whole");
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.deliveries WHERE attempts = 2").await, 5);
    let failed = count(
        &db,
        "SELECT count(*) FROM hookline.batch_attempts WHERE status_code = 500 AND error_kind = 'http_status'",
    )
    .await;
    assert_eq!(failed, 1);
}

#[tokio::test]
async fn max_wait_ms_gathers_events_sent_one_by_one() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    batching_endpoint(&db, &receiver.url, 100, 1 << 20, 1000, "json").await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // idle, waiting for a NOTIFY
    for _ in 0..5 {
        send_events(&db, 1, 0).await;
    }
    all_succeeded(&db, 5).await;
    worker.stop().await;
    let sizes: Vec<usize> = receiver.received().iter().map(|r| envelopes(r).len()).collect();
    assert_eq!(sizes, vec![5], "five events within the wait go together");
}

#[tokio::test]
async fn the_api_sets_changes_and_clears_batch_settings() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let created = api.post("/v1/endpoints", json!({"url": "https://x.io/hook", "batch": {"max_events": 50}})).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(
        created.body["batch"],
        json!({"max_events": 50, "max_bytes": 1_048_576, "max_wait_ms": 0, "format": "json"})
    );
    let path = format!("/v1/endpoints/{}", created.body["id"].as_str().unwrap());
    let changed = api.patch(&path, json!({"batch": {"format": "ndjson", "max_wait_ms": 250}})).await;
    assert_eq!(
        changed.body["batch"],
        json!({"max_events": 50, "max_bytes": 1_048_576, "max_wait_ms": 250, "format": "ndjson"})
    );
    let cleared = api.patch(&path, json!({"batch": null})).await;
    assert_eq!(cleared.body["batch"], Value::Null);

    let cases = [
        (json!({"url": "https://x.io", "batch": {"max_events": 0}}), "batch.max_events"),
        (json!({"url": "https://x.io", "batch": {"max_events": 1001}}), "batch.max_events"),
        (json!({"url": "https://x.io", "batch": {"max_bytes": 10}}), "batch.max_bytes"),
        (json!({"url": "https://x.io", "batch": {"max_wait_ms": -1}}), "batch.max_wait_ms"),
        (json!({"url": "https://x.io", "batch": {"format": "xml"}}), "batch.format"),
        (json!({"url": "https://x.io", "batch": {"size": 3}}), "batch.size"),
        (json!({"url": "https://x.io", "batch": []}), "batch"),
        (json!({"url": "https://x.io", "batch": [5]}), "batch"),
        (json!({"url": "https://x.io", "batch": {"format": {"ndjson": null}}}), "batch.format"),
        (json!({"url": "https://x.io", "ordering": {"key": null}}), "ordering"),
    ];
    for (body, field) in cases {
        let reply = api.post("/v1/endpoints", body.clone()).await;
        assert_eq!(reply.status, 400, "{body} → {reply:?}");
        assert_eq!(reply.body["field"], field, "{body} → {reply:?}");
    }
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.endpoints").await, 1);
    for batch in [json!([]), json!("json"), json!({"max_events": "many"})] {
        let reply = api.patch(&path, json!({"batch": batch})).await;
        assert_eq!(reply.status, 400, "{batch} → {reply:?}");
        assert!(reply.body["field"].as_str().unwrap().starts_with("batch"), "{batch} → {reply:?}");
    }
    assert_eq!(api.get(&path).await.body["batch"], Value::Null, "a refused change changes nothing");
}

/// (key, n) of each envelope of a request whose events carry them.
fn keys_and_ns(request: &Received) -> Vec<(String, i64)> {
    envelopes(request)
        .iter()
        .map(|e| (e["data"]["key"].as_str().unwrap().to_owned(), e["data"]["n"].as_i64().unwrap()))
        .collect()
}

/// Checks that, request after request (each with the status it got), every
/// key's events come in order: within a request consecutive and rising; a
/// request starts a key no later than its first event not yet delivered (a
/// failed request's events come again); returns how many each key got
/// delivered.
fn check_keys(requests: &[(Received, u16)]) -> HashMap<String, i64> {
    let mut delivered: HashMap<String, i64> = HashMap::new();
    for (request, status) in requests {
        let mut last_in_request: HashMap<String, i64> = HashMap::new();
        for (key, n) in keys_and_ns(request) {
            let next = delivered.get(&key).copied().unwrap_or(0);
            match last_in_request.get(&key) {
                Some(prev) => assert_eq!(n, prev + 1, "key {key}: {n} after {prev} in one request"),
                None => assert!(n <= next, "key {key}: {n} sent before {next} was delivered"),
            }
            last_in_request.insert(key, n);
        }
        if (200..300).contains(status) {
            for (key, last) in last_in_request {
                let next = delivered.entry(key).or_insert(0);
                *next = (*next).max(last + 1);
            }
        }
    }
    delivered
}

#[tokio::test]
async fn an_ordered_endpoint_batches_each_keys_events_in_order_through_failures_and_a_413() {
    const KEYS: i64 = 4;
    const PER_KEY: i64 = 12;
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    // The first request is too large; the half after it fails: its second
    // half must not go before it does. Then a failure now and then.
    let script = [413, 500, 200, 500, 200, 200, 500];
    receiver.script(script.iter().map(|s| Reply::status(*s)));
    let endpoint = batching_endpoint(&db, &receiver.url, 10, 1 << 20, 0, "json").await;
    let client = db.client().await;
    client
        .execute(
            "UPDATE hookline.endpoints SET ordering = 'key', retry_schedule = '{0.05,0.05,0.05,0.05,0.05,0.05}'
              WHERE id = $1",
            &[&endpoint],
        )
        .await
        .unwrap();
    send_keyed_events(&db, KEYS, PER_KEY).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    all_succeeded(&db, KEYS * PER_KEY).await;
    worker.stop().await;

    let received = receiver.received();
    let requests: Vec<(Received, u16)> =
        received.into_iter().enumerate().map(|(i, r)| (r, script.get(i).copied().unwrap_or(200))).collect();
    let first = keys_and_ns(&requests[0].0);
    assert_eq!(first.len(), 10, "the heads of the four keys, filled with what waits behind them");
    assert_eq!(first.iter().filter(|(_, n)| *n == 0).count(), 4);
    let delivered = check_keys(&requests);
    assert_eq!(delivered.len(), KEYS as usize);
    assert!(delivered.values().all(|n| *n == PER_KEY), "{delivered:?}");
    assert!(
        requests.iter().any(|(r, _)| keys_and_ns(r).windows(2).any(|w| w[0].0 == w[1].0)),
        "some request carried a key's consecutive events"
    );
}

#[tokio::test]
async fn an_endpoint_with_a_limit_gets_no_more_in_a_batch_than_the_limit_allows() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    receiver.always(Reply::status(200).after(Duration::from_millis(20)));
    let endpoint = batching_endpoint(&db, &receiver.url, 10, 1 << 20, 0, "json").await;
    let client = db.client().await;
    client
        .execute("UPDATE hookline.endpoints SET ordering = 'key', max_in_flight = 1 WHERE id = $1", &[&endpoint])
        .await
        .unwrap();
    send_keyed_events(&db, 2, 3).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    all_succeeded(&db, 6).await;
    worker.stop().await;
    let sizes: Vec<usize> = receiver.received().iter().map(|r| envelopes(r).len()).collect();
    assert_eq!(sizes, vec![1; 6], "max_in_flight 1: one delivery in flight, so one per request");
    assert_eq!(receiver.most_concurrent(), 1);
}

#[tokio::test]
async fn ordered_batches_keep_each_key_in_order_across_two_workers_failures_and_a_killed_worker() {
    const KEYS: i64 = 20;
    const PER_KEY: i64 = 10;
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    let mut rng = StdRng::seed_from_u64(7);
    let script: Vec<u16> = (0..400).map(|_| if rng.random_bool(0.25) { 500 } else { 200 }).collect();
    // The first answers slow enough that the kill finds them in flight.
    receiver.script(
        script
            .iter()
            .enumerate()
            .map(|(i, s)| Reply::status(*s).after(Duration::from_millis(if i < 4 { 1000 } else { 30 }))),
    );
    receiver.always(Reply::status(200).after(Duration::from_millis(30)));
    // Room for more than the 20 keys' heads, so batches carry followers.
    let endpoint = batching_endpoint(&db, &receiver.url, 30, 1 << 20, 0, "json").await;
    db.client()
        .await
        .execute(
            "UPDATE hookline.endpoints SET ordering = 'key', retry_schedule = array_fill(0.05::float8, ARRAY[30])
              WHERE id = $1",
            &[&endpoint],
        )
        .await
        .unwrap();

    let short_leases = [("HOOKLINE_LEASE_MAX_S", "2")];
    let mut process = spawn_process(&db, &short_leases);
    // Each key's events in order, the keys interleaved, a few per statement.
    let client = db.client().await;
    for n in 0..PER_KEY {
        client
            .execute(
                "INSERT INTO hookline.events (event_type, payload, ordering_key)
                 SELECT 'order.updated', jsonb_build_object('key', 'k' || k, 'n', $2::bigint), 'k' || k
                   FROM generate_series(1, $1::bigint) AS k ORDER BY random()",
                &[&KEYS, &n],
            )
            .await
            .unwrap();
    }
    // The first worker alone has sent its first batches: it dies with them.
    receiver.wait_for(2, WAIT).await;
    process.kill().unwrap();
    process.wait().unwrap();
    let settings = WorkerSettings { lease_max: Duration::from_secs(2), ..test_settings() };
    let worker = RunningWorker::start(&db, settings).await;
    let _second = spawn_process(&db, &short_leases);

    let statuses = |received: Vec<Received>| -> Vec<(Received, u16)> {
        received.into_iter().enumerate().map(|(i, r)| (r, script.get(i).copied().unwrap_or(200))).collect()
    };
    eventually(Duration::from_secs(60), "every event of every key delivered", || async {
        let delivered = check_keys(&statuses(receiver.received()));
        (delivered.len() == KEYS as usize && delivered.values().all(|n| *n == PER_KEY)).then_some(())
    })
    .await;
    eventually(WAIT, "the queue to empty", || async {
        (count(&db, "SELECT count(*) FROM hookline.delivery_queue").await == 0).then_some(())
    })
    .await;
    check_keys(&statuses(receiver.received()));
    let carried_followers = receiver.received().iter().any(|r| {
        let events = keys_and_ns(r);
        events.iter().any(|(key, n)| events.iter().any(|(k, m)| k == key && *m == n + 1))
    });
    assert!(carried_followers, "some batch carried a key's consecutive events");
    let lost = count(&db, "SELECT count(*) FROM hookline.attempts WHERE error_kind = 'worker_lost'").await;
    assert!(lost > 0, "the killed worker's batches were taken over");
    worker.stop().await;
}
