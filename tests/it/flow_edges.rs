//! Flow control's edge cases, driven through the claim and completion
//! functions directly, with the interleavings a worker fleet produces
//! rarely: expired leases, a shutdown mid-probe, a disabling that raced a
//! claim, a due probe stopped by max_in_flight, stragglers of a tripped
//! circuit, sessions in other time zones.

use uuid::Uuid;

use crate::support::drive::{claim, claim_at, complete, complete_at, outcome};
use crate::support::worker::test_settings;
use crate::support::{NewEndpoint, count, db::TestDb};

#[tokio::test]
async fn a_late_outcome_never_overwrites_a_newer_claim_of_the_same_delivery() {
    let db = TestDb::new().await;
    NewEndpoint { max_in_flight: Some(1), ..Default::default() }.insert(&db).await;
    let client = db.client().await;
    client.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    let worker = Uuid::now_v7();
    let first = claim(&db, worker).await.pop().unwrap();
    // The lease runs out (a slow flush, say) and the same worker claims it again.
    client
        .batch_execute(
            "UPDATE hookline.delivery_queue SET next_attempt_at = now() - interval '1 second';
             UPDATE hookline.endpoint_state SET leases = ARRAY[ROW(now() - interval '1 second', 1)::hookline.lease_batch]",
        )
        .await
        .unwrap();
    let taken_over = claim(&db, worker).await.pop().unwrap();
    assert_eq!((taken_over.delivery_id, taken_over.attempt), (first.delivery_id, 1), "a lost lease, not a new attempt");
    assert!(taken_over.lost.is_some());

    assert_eq!(complete(&db, worker, &first, 503).await, 0, "attempt 1's outcome is not ours any more");
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.delivery_queue WHERE lease_owner IS NOT NULL").await, 1);
    let lost = hookline::worker::complete::decide(
        &taken_over,
        hookline::worker::dispatch::Attempt::lost(&taken_over.lost.unwrap()),
        &test_settings(),
        0.0,
    );
    assert_eq!(complete_at(&db, worker, &[lost.outcome], None).await, 1, "the retry is scheduled");
    let retry_at = Some(chrono::Utc::now() + chrono::Duration::seconds(1));
    let second = claim_at(&db, worker, retry_at).await.pop().unwrap();
    assert_eq!((second.delivery_id, second.attempt, second.lost), (first.delivery_id, 2, None));
    assert_eq!(complete_at(&db, worker, &[outcome(&second, 200)], retry_at).await, 1);
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.deliveries WHERE state = 'succeeded'").await, 1);
    assert_eq!(
        count(&db, "SELECT hookline.lease_batches_live(leases, now())::bigint FROM hookline.endpoint_state").await,
        0
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM hookline.attempts WHERE (attempt, status_code) = (1, 503)").await,
        1,
        "attempt 1 is what its late outcome said, not a loss"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.attempts").await, 2, "attempt 1 and the retry");
}

#[tokio::test]
async fn a_probe_handed_back_at_shutdown_is_not_waited_for() {
    let db = TestDb::new().await;
    NewEndpoint::default().insert(&db).await;
    let client = db.client().await;
    client.execute("SELECT hookline.send('a.b', '{}') FROM generate_series(1, 3)", &[]).await.unwrap();
    client
        .execute(
            "UPDATE hookline.endpoint_state SET circuit_state = 'open', circuit_retry_at = now() - interval '1 second',
                    failed_attempts = 3, circuit_cooldown_s = 10",
            &[],
        )
        .await
        .unwrap();
    let worker = Uuid::now_v7();
    let probe = claim(&db, worker).await;
    assert_eq!(probe.len(), 1, "one probe");
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.delivery_queue WHERE state = 'held'").await, 2);

    let ids = vec![probe[0].delivery_id];
    client.query_one(hookline::db::deliveries::DELIVERY_RELEASE, &[&ids, &worker]).await.unwrap();
    let again = claim(&db, Uuid::now_v7()).await;
    assert_eq!(again.len(), 1, "the handed-back probe goes again instead of waiting for its old lease");
}

#[tokio::test]
async fn rows_of_an_endpoint_disabled_behind_a_claim_are_parked_not_sent() {
    let db = TestDb::new().await;
    let endpoint = NewEndpoint::default().insert(&db).await;
    let client = db.client().await;
    client.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    // As if the disabling trigger had skipped the row a claim was locking.
    client.batch_execute("ALTER TABLE hookline.endpoints DISABLE TRIGGER endpoints_after_write").await.unwrap();
    client.execute("UPDATE hookline.endpoints SET enabled = false, disabled_reason = 'gone'", &[]).await.unwrap();
    client.batch_execute("ALTER TABLE hookline.endpoints ENABLE TRIGGER endpoints_after_write").await.unwrap();

    assert!(claim(&db, Uuid::now_v7()).await.is_empty(), "nothing goes to a disabled endpoint");
    let row = client.query_one("SELECT state::text, last_error FROM hookline.deliveries", &[]).await.unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), ("dead".into(), "endpoint disabled: gone".into()));
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.delivery_queue WHERE state = 'dead'").await, 1);
    let dead: i64 = client
        .query_one("SELECT dead FROM hookline.endpoint_stats_24h WHERE endpoint_id = $1", &[&endpoint])
        .await
        .unwrap()
        .get(0);
    assert_eq!(dead, 1, "the rollup saw it die");
}

#[tokio::test]
async fn a_due_probe_stopped_by_max_in_flight_neither_spins_nor_blocks_the_queue() {
    let db = TestDb::new().await;
    let endpoint = NewEndpoint { max_in_flight: Some(1), ..Default::default() }.insert(&db).await;
    let client = db.client().await;
    client.execute("SELECT hookline.send('a.b', '{}') FROM generate_series(1, 3)", &[]).await.unwrap();
    // A request sent before the circuit opened still holds the only slot.
    client
        .execute(
            "UPDATE hookline.endpoint_state
                SET circuit_state = 'open', circuit_retry_at = now() - interval '1 second', circuit_cooldown_s = 10,
                    leases = ARRAY[ROW(now() + interval '30 seconds', 1)::hookline.lease_batch]
              WHERE endpoint_id = $1",
            &[&endpoint],
        )
        .await
        .unwrap();
    assert!(claim(&db, Uuid::now_v7()).await.is_empty());
    assert_eq!(count(&db, "SELECT due_now FROM hookline.queue_stats").await, 0, "nothing left due to spin on");
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.delivery_queue WHERE state = 'held'").await, 2);
    assert_eq!(
        count(&db, "SELECT count(*) FROM hookline.delivery_queue WHERE state = 'pending' AND next_attempt_at > now()")
            .await,
        1,
        "one waits a moment to be the probe"
    );
}

#[tokio::test]
async fn only_the_probe_decides_a_half_open_circuit() {
    let db = TestDb::new().await;
    NewEndpoint::default().insert(&db).await;
    let client = db.client().await;
    client.execute("SELECT hookline.send('a.b', '{}') FROM generate_series(1, 2)", &[]).await.unwrap();
    let worker = Uuid::now_v7();
    let stragglers = claim(&db, worker).await; // sent while the circuit was still closed
    client
        .execute(
            "UPDATE hookline.endpoint_state SET circuit_state = 'half_open', circuit_cooldown_s = 10,
                    failed_attempts = 3, circuit_probe_until = now() + interval '30 seconds'",
            &[],
        )
        .await
        .unwrap();
    let state = || async {
        let r = client
            .query_one("SELECT circuit_state, circuit_probe_until IS NOT NULL FROM hookline.endpoint_state", &[])
            .await
            .unwrap();
        (r.get::<_, String>(0), r.get::<_, bool>(1))
    };
    complete(&db, worker, &stragglers[0], 503).await;
    assert_eq!(state().await, ("half_open".into(), true), "a straggler's failure is no verdict");
    complete(&db, worker, &stragglers[1], 200).await;
    assert_eq!(state().await, ("half_open".into(), true), "nor is its success");
}

#[tokio::test]
async fn rollup_hours_are_utc_whatever_the_session_time_zone() {
    let db = TestDb::new().await;
    NewEndpoint::default().insert(&db).await;
    let client = db.connect().await;
    client.batch_execute("SET TIME ZONE 'Asia/Kolkata'").await.unwrap();
    client.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    let id: Uuid = client.query_one("SELECT id FROM hookline.deliveries", &[]).await.unwrap().get(0);
    client.query(hookline::db::deliveries::DELIVERY_CANCEL, &[&id, &"cancelled"]).await.unwrap();
    client.query(hookline::db::rollups::ROLLUP_FOLD, &[&1i64]).await.unwrap();
    let on_the_hour = count(
        &db,
        "SELECT count(*) FROM hookline.event_type_hourly
          WHERE cancelled = 1 AND hour = date_trunc('hour', now(), 'UTC')",
    )
    .await;
    assert_eq!(on_the_hour, 1);
}

#[tokio::test]
async fn a_stalled_endpoint_gets_its_room_and_no_more_its_backlog_held() {
    let db = TestDb::new().await;
    let endpoint = NewEndpoint::default().insert(&db).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}') FROM generate_series(1, 5)", &[]).await.unwrap();
    // This worker already sends the endpoint 2 of its share of 4, and they stopped finishing.
    let busy = [(endpoint, 2)];
    let request = hookline::db::deliveries::ClaimRequest {
        worker: Uuid::now_v7(),
        wanted: 10,
        scan: 10,
        lease_max_s: 60.0,
        share: 4,
        busy: &busy,
        stalled: &[endpoint],
        idle: None,
        at: None,
        default_schedule: &[1.0],
    };
    let claim = hookline::db::deliveries::claim(&db.client().await, &request).await.unwrap();
    assert_eq!(claim.deliveries.len(), 2, "the room left in its share, across both claims");
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.delivery_queue WHERE state = 'held'").await, 3);
    assert_eq!(count(&db, "SELECT due_now FROM hookline.queue_stats").await, 0, "nothing left in front of others");
}
