//! Flow control (SPEC §5): the circuit breaker, rate limits and max_in_flight
//! held across workers, and a hanging endpoint kept from delaying the rest.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hookline::config::CircuitSettings;
use uuid::Uuid;

use crate::support::api::TestApi;
use crate::support::receiver::{Reply, TestReceiver};
use crate::support::worker::{RunningWorker, WorkerSettings, spawn_process, test_settings};
use crate::support::{NewEndpoint, count, db::TestDb, eventually};

const WAIT: Duration = Duration::from_secs(20);

struct Circuit {
    state: String,
    cooldown_s: Option<f64>,
    retry_at: Option<DateTime<Utc>>,
}

async fn circuit(db: &TestDb, endpoint: Uuid) -> Circuit {
    let row = db
        .client()
        .await
        .query_one(
            "SELECT circuit_state, circuit_cooldown_s, circuit_retry_at FROM hookline.endpoint_state WHERE endpoint_id = $1",
            &[&endpoint],
        )
        .await
        .unwrap();
    Circuit { state: row.get(0), cooldown_s: row.get(1), retry_at: row.get(2) }
}

async fn attempts_started_between(db: &TestDb, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    db.client()
        .await
        .query_one("SELECT count(*) FROM hookline.attempts WHERE started_at > $1 AND started_at < $2", &[&from, &to])
        .await
        .unwrap()
        .get(0)
}

/// An endpoint's circuit open past HOOKLINE_DISABLE_AFTER_OPEN (or its own
/// `disable_after_open_s`) disables it, with an `endpoint.disabled` event
/// and its waiting deliveries dead; one open for less stays as it is. The
/// moment the circuit opened is kept by the database, whoever changes it.
#[tokio::test]
async fn an_endpoint_whose_circuit_stays_open_too_long_is_disabled() {
    use serde_json::{Value, json};
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let create = |url: &'static str, event_type: &'static str, disable_after_open_s: Option<i32>| {
        let api = &api;
        async move {
            let mut body = json!({"url": url, "event_types": [event_type], "retry_schedule": [3600, 3600]});
            if let Some(seconds) = disable_after_open_s {
                body["disable_after_open_s"] = json!(seconds);
            }
            let reply = api.post("/v1/endpoints", body).await;
            assert_eq!(reply.status, 201, "{reply:?}");
            assert_eq!(reply.body["disable_after_open_s"], json!(disable_after_open_s));
            Uuid::parse_str(reply.body["id"].as_str().unwrap()).unwrap()
        }
    };
    let own_limit = create("http://127.0.0.1:9/a", "a.b", Some(60)).await;
    let within_own = create("http://127.0.0.1:9/b", "a.b", Some(7200)).await;
    let by_default = create("http://127.0.0.1:9/c", "a.b", None).await;
    let closed = create("http://127.0.0.1:9/d", "other", Some(1)).await;
    let client = db.client().await;
    let opened_at = |id: Uuid| {
        let client = &client;
        async move {
            let sql = "SELECT circuit_opened_at FROM hookline.endpoint_state WHERE endpoint_id = $1";
            client.query_one(sql, &[&id]).await.unwrap().get::<_, Option<DateTime<Utc>>>(0)
        }
    };
    // Three circuits open (as completions would open them) for an hour, then
    // are back-dated: two opened 2 minutes ago, one an hour ago.
    client
        .execute(
            "UPDATE hookline.endpoint_state SET circuit_state = 'open', circuit_retry_at = now() + interval '1 hour'
              WHERE endpoint_id <> $1",
            &[&closed],
        )
        .await
        .unwrap();
    assert!(opened_at(within_own).await.is_some(), "opening stamps the time");
    assert_eq!(opened_at(closed).await, None, "a closed circuit has no opening time");
    let backdate =
        "UPDATE hookline.endpoint_state SET circuit_opened_at = now() - $2::text::interval WHERE endpoint_id = $1";
    for (id, ago) in [(own_limit, "2 minutes"), (within_own, "2 minutes"), (by_default, "1 hour")] {
        client.execute(backdate, &[&id, &ago]).await.unwrap();
    }
    client.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    // As the open circuits would have deferred them: no claim locks them while the endpoints are disabled.
    client
        .execute("UPDATE hookline.delivery_queue SET next_attempt_at = now() + interval '1 hour'", &[])
        .await
        .unwrap();

    let settings = WorkerSettings { disable_after_open: Duration::from_secs(1800), ..test_settings() };
    let worker = RunningWorker::start(&db, settings).await;
    let disabled = eventually(WAIT, "the long-open endpoints to be disabled", || async {
        let sql = "SELECT id FROM hookline.endpoints WHERE NOT enabled ORDER BY id";
        let rows = db.client().await.query(sql, &[]).await.unwrap();
        (rows.len() >= 2).then(|| rows.iter().map(|r| r.get::<_, Uuid>(0)).collect::<Vec<_>>())
    })
    .await;
    worker.stop().await;
    let mut expected = vec![own_limit, by_default];
    expected.sort();
    assert_eq!(disabled, expected, "{within_own} and {closed} stay enabled");
    let reason = api.get(&format!("/v1/endpoints/{own_limit}")).await.body["disabled_reason"].clone();
    assert!(reason.as_str().is_some_and(|r| r.starts_with("circuit open for more than 60 s")), "{reason}");
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.events WHERE event_type = 'endpoint.disabled'").await, 2);
    let parked = "SELECT count(*) FROM hookline.deliveries WHERE state = 'dead' AND last_error LIKE 'endpoint disabled: circuit open%'";
    assert_eq!(count(&db, parked).await, 2, "their waiting deliveries went to the dead-letter queue");
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.deliveries WHERE state = 'pending'").await, 1);

    // Half-open is not closed; closing forgets; enabling closes.
    let since = opened_at(within_own).await;
    client
        .execute(
            "UPDATE hookline.endpoint_state SET circuit_state = 'half_open' WHERE endpoint_id = $1",
            &[&within_own],
        )
        .await
        .unwrap();
    assert_eq!(opened_at(within_own).await, since);
    client
        .execute("UPDATE hookline.endpoint_state SET circuit_state = 'closed' WHERE endpoint_id = $1", &[&within_own])
        .await
        .unwrap();
    assert_eq!(opened_at(within_own).await, None);
    let reenabled =
        api.patch(&format!("/v1/endpoints/{own_limit}"), json!({"enabled": true, "disable_after_open_s": null})).await;
    assert_eq!((reenabled.status, &reenabled.body["disable_after_open_s"]), (200, &Value::Null), "{reenabled:?}");
    assert_eq!(opened_at(own_limit).await, None, "enabling closes the circuit");
}

/// What a new user saw: retry schedule [1, 1], three failing events, a
/// circuit that opens for a minute. Before, the retries waited for the
/// probe a minute out; now every delivery ends dead by its last scheduled
/// attempt, about 2 s after it was first sent.
#[tokio::test]
async fn a_long_outage_ends_every_delivery_by_its_last_scheduled_attempt() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    receiver.always(Reply::status(500));
    NewEndpoint { url: &receiver.url, retry_schedule: Some(vec![1.0, 1.0]), ..Default::default() }.insert(&db).await;
    let circuit_settings =
        CircuitSettings { failures: 3, cooldown: Duration::from_secs(60), cooldown_max: Duration::from_secs(600) };
    let worker = RunningWorker::start(&db, WorkerSettings { circuit: circuit_settings, ..test_settings() }).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}') FROM generate_series(1, 3)", &[]).await.unwrap();

    eventually(WAIT, "all three deliveries to be dead", || async {
        (count(&db, "SELECT count(*) FROM hookline.deliveries WHERE state = 'dead'").await == 3).then_some(())
    })
    .await;
    let expired = count(&db, "SELECT count(*) FROM hookline.attempts WHERE error_kind = 'circuit_open'").await;
    assert!(expired >= 1, "the open circuit ended them, not the last of their own attempts");
    assert_eq!(receiver.received().len() as i64 + expired, count(&db, "SELECT count(*) FROM hookline.attempts").await);
    assert_eq!(
        count(&db, "SELECT count(*) FROM hookline.delivery_queue WHERE state = 'dead'").await,
        3,
        "dead letters"
    );
    worker.stop().await;
}

#[tokio::test]
async fn a_failing_endpoint_trips_its_circuit_and_a_single_probe_decides() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    receiver.always(Reply::status(503));
    let endpoint = NewEndpoint { url: &receiver.url, retry_schedule: Some(vec![0.05; 20]), ..Default::default() }
        .insert(&db)
        .await;
    let circuit_settings =
        CircuitSettings { failures: 3, cooldown: Duration::from_millis(400), cooldown_max: Duration::from_secs(5) };
    let worker = RunningWorker::start(&db, WorkerSettings { circuit: circuit_settings, ..test_settings() }).await;
    let client = db.client().await;
    client.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();

    let opened = eventually(WAIT, "the circuit to open", || async {
        let c = circuit(&db, endpoint).await;
        (c.state == "open").then_some(c)
    })
    .await;
    let opened_at = Utc::now();
    assert_eq!(receiver.received().len(), 3, "three failed attempts in a row open it");
    assert_eq!(opened.cooldown_s, Some(0.4));
    let health: String = client
        .query_one("SELECT circuit_state FROM hookline.endpoint_health WHERE endpoint_id = $1", &[&endpoint])
        .await
        .unwrap()
        .get(0);
    assert_eq!(health, "open");
    let api = TestApi::start(&db).await;
    let stats = api.get(&format!("/v1/endpoints/{endpoint}/stats")).await;
    assert_eq!((stats.body["circuit_state"].as_str(), stats.body["failed_attempts"].as_i64()), (Some("open"), Some(3)));
    assert!(stats.body["circuit_retry_at"].is_string(), "{stats:?}");
    let metrics = api.get("/metrics").await;
    let text = metrics.body.as_str().unwrap();
    assert!(text.contains("hookline_endpoints{circuit_state=\"open\"} 1"), "{text}");
    // While open, new deliveries cost no attempts: they wait for the probe.
    client.execute("SELECT hookline.send('a.b', '{}') FROM generate_series(1, 4)", &[]).await.unwrap();

    let reopened = eventually(WAIT, "the first probe to fail", || async {
        let c = circuit(&db, endpoint).await;
        (c.state == "open" && c.cooldown_s == Some(0.8)).then_some(c)
    })
    .await;
    assert_eq!(receiver.received().len(), 4, "one probe and nothing else");
    let first_retry_at = opened.retry_at.unwrap();
    assert_eq!(attempts_started_between(&db, opened_at, first_retry_at).await, 0, "no attempt while open");

    receiver.always(Reply::status(200));
    eventually(WAIT, "the second probe to close the circuit", || async {
        (circuit(&db, endpoint).await.state == "closed").then_some(())
    })
    .await;
    let second_retry_at = reopened.retry_at.unwrap();
    assert_eq!(attempts_started_between(&db, first_retry_at, second_retry_at).await, 1, "only the failed probe");
    eventually(WAIT, "every delivery to succeed", || async {
        (count(&db, "SELECT count(*) FROM hookline.deliveries WHERE state = 'succeeded'").await == 5).then_some(())
    })
    .await;
    // 3 failures, 2 probes, then one attempt for each of the 4 others.
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.attempts").await, 9);
    assert_eq!(receiver.received().len(), 9);
    let after: (i32, Option<f64>) = {
        let row = client
            .query_one(
                "SELECT failed_attempts, circuit_cooldown_s FROM hookline.endpoint_state WHERE endpoint_id = $1",
                &[&endpoint],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(after, (0, None), "closing resets the run and the cool-down");
    worker.stop().await;
}

#[tokio::test]
async fn the_circuit_moves_between_states_as_attempts_come_back() {
    let db = TestDb::new().await;
    let client = db.client().await;
    // (state, run, cool-down) and a batch's (downs, ups, downs since the last
    // up) → the next (state, run, cool-down), with a threshold of 3, a base
    // cool-down of 10 s and a cap of 40 s.
    type Breaker = (&'static str, i32, Option<f64>);
    type Batch = (i64, i64, i64);
    let cases: [(Breaker, Batch, Breaker); 10] = [
        (("closed", 0, None), (2, 0, 2), ("closed", 2, None)),
        (("closed", 2, None), (1, 0, 1), ("open", 3, Some(10.0))),
        (("closed", 2, None), (1, 1, 0), ("closed", 0, None)),
        (("closed", 0, None), (3, 1, 3), ("open", 3, Some(10.0))),
        (("open", 3, Some(10.0)), (1, 0, 1), ("open", 4, Some(10.0))),
        (("open", 3, Some(10.0)), (0, 1, 0), ("closed", 0, None)),
        (("half_open", 3, Some(10.0)), (1, 0, 1), ("open", 4, Some(20.0))),
        (("half_open", 5, Some(30.0)), (1, 0, 1), ("open", 6, Some(40.0))),
        (("half_open", 3, Some(10.0)), (0, 1, 0), ("closed", 0, None)),
        (("half_open", 3, Some(10.0)), (0, 0, 0), ("half_open", 3, Some(10.0))),
    ];
    for ((state, run, cooldown), (downs, ups, since), (want_state, want_run, want_cooldown)) in cases {
        let row = client
            .query_one(
                "SELECT next_state, next_run, next_cooldown_s, next_retry_at > now(), next_probe_until
                   FROM hookline.circuit_after($1, $2, $3, NULL, now(), $4, $5, $6, 3, 10, 40, now())",
                &[&state, &run, &cooldown, &downs, &ups, &since],
            )
            .await
            .unwrap();
        let got: (String, i32, Option<f64>) = (row.get(0), row.get(1), row.get(2));
        let case = format!("{state} run {run}, {downs} down / {ups} up ({since} since)");
        assert_eq!(got, (want_state.to_owned(), want_run, want_cooldown), "{case}");
        let opened_now = want_state == "open" && state != "open";
        assert_eq!(row.get::<_, Option<bool>>(3), opened_now.then_some(true), "retry time, {case}");
        let probe_until: Option<DateTime<Utc>> = row.get(4);
        assert_eq!(probe_until.is_some(), state != "half_open", "a verdict ends the probe, {case}");
    }
}

#[tokio::test]
async fn a_rate_limit_holds_across_two_worker_processes() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    NewEndpoint { url: &receiver.url, rate_limit_per_s: Some(5), ..Default::default() }.insert(&db).await;
    let mut workers = [spawn_process(&db, &[]), spawn_process(&db, &[])];
    db.client()
        .await
        .execute(
            "INSERT INTO hookline.events (event_type, payload) SELECT 'a.b', '{}' FROM generate_series(1, 30)",
            &[],
        )
        .await
        .unwrap();

    let got = receiver.wait_for(30, Duration::from_secs(30)).await;
    for worker in &mut workers {
        worker.kill().unwrap();
        worker.wait().unwrap();
    }
    let mut times: Vec<Instant> = got.iter().map(|r| r.at).collect();
    times.sort();
    let span = times[29] - times[0];
    assert!(span >= Duration::from_secs(5), "30 deliveries at 5/s took {span:?}");
    for (i, start) in times.iter().enumerate() {
        let in_window = times[i..].iter().take_while(|t| **t - *start < Duration::from_secs(1)).count();
        assert!(in_window <= 6, "{in_window} deliveries within a second from #{i}");
    }
    assert_eq!(receiver.received().len(), 30, "each delivered once");
    assert_eq!(count(&db, "SELECT count(DISTINCT worker) FROM hookline.attempts").await, 2, "both workers sent");
}

#[tokio::test]
async fn max_in_flight_holds_across_two_workers() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    receiver.always(Reply::status(200).after(Duration::from_millis(150)));
    NewEndpoint { url: &receiver.url, max_in_flight: Some(3), ..Default::default() }.insert(&db).await;
    // Each worker alone may send this endpoint two at once, so reaching three
    // takes both; max_in_flight must stop them at three together.
    let settings = || WorkerSettings { endpoint_share: 2, ..test_settings() };
    let workers = [RunningWorker::start(&db, settings()).await, RunningWorker::start(&db, settings()).await];
    db.client()
        .await
        .execute(
            "INSERT INTO hookline.events (event_type, payload) SELECT 'a.b', '{}' FROM generate_series(1, 30)",
            &[],
        )
        .await
        .unwrap();

    receiver.wait_for(30, WAIT).await;
    eventually(WAIT, "every delivery to succeed", || async {
        (count(&db, "SELECT count(*) FROM hookline.deliveries WHERE state = 'succeeded'").await == 30).then_some(())
    })
    .await;
    assert_eq!(receiver.most_concurrent(), 3);
    assert_eq!(receiver.received().len(), 30, "each delivered once");
    let leases: i32 = db
        .client()
        .await
        .query_one("SELECT hookline.lease_batches_live(leases, now()) FROM hookline.endpoint_state", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(leases, 0, "every slot was given back");
    for worker in workers {
        worker.stop().await;
    }
}

#[tokio::test]
async fn a_hanging_endpoint_does_not_delay_a_healthy_one() {
    let db = TestDb::new().await;
    let hanging = TestReceiver::start().await;
    // Hanging for longer than the test may take on a loaded machine: its
    // first two requests must still be open when the checks run.
    hanging.always(Reply::status(200).after(Duration::from_secs(60)));
    let healthy = TestReceiver::start().await;
    NewEndpoint { url: &hanging.url, event_types: &["slow.*"], timeout_ms: 120_000, ..Default::default() }
        .insert(&db)
        .await;
    NewEndpoint { url: &healthy.url, event_types: &["fast.*"], ..Default::default() }.insert(&db).await;
    let settings = WorkerSettings {
        concurrency: 8,
        endpoint_share: 2,
        shutdown_grace: Duration::from_millis(200),
        ..test_settings()
    };
    let worker = RunningWorker::start(&db, settings).await;
    let client = db.client().await;
    // A backlog for the hanging endpoint first, so it is at the head of the queue.
    client
        .execute(
            "INSERT INTO hookline.events (event_type, payload) SELECT 'slow.x', '{}' FROM generate_series(1, 2000)",
            &[],
        )
        .await
        .unwrap();
    hanging.wait_for(2, WAIT).await;
    for _ in 0..10 {
        client.execute("SELECT hookline.send('fast.x', '{}')", &[]).await.unwrap();
    }

    healthy.wait_for(10, WAIT).await;
    assert_eq!(hanging.received().len(), 2, "the hanging endpoint kept its share and no more");
    assert_eq!(hanging.most_concurrent(), 2);
    assert_eq!(
        count(&db, "SELECT count(*) FROM hookline.deliveries WHERE state = 'succeeded' AND event_type = 'slow.x'")
            .await,
        0,
        "the healthy endpoint did not wait for the hanging one"
    );
    let held = eventually(WAIT, "the stalled endpoint's backlog to be held", || async {
        let held = count(&db, "SELECT held FROM hookline.queue_stats").await;
        (held >= 1998).then_some(held)
    })
    .await;
    assert_eq!(held, 1998);
    worker.stop().await;
}
