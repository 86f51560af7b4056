//! Several workers, killed workers, SIGTERM, and lost database connections.

use std::collections::HashSet;
use std::time::Duration;

use hookline::domain::delivery::DeliveryState;

use crate::support::drive;
use crate::support::receiver::{Reply, TestReceiver};
use crate::support::worker::{RunningWorker, spawn_process, test_settings};
use crate::support::{NewEndpoint, count, db::TestDb, eventually};

const WAIT: Duration = Duration::from_secs(20);
const LEASED: &str =
    "SELECT count(*) FROM hookline.delivery_queue WHERE lease_owner IS NOT NULL AND next_attempt_at > now()";

#[tokio::test]
async fn several_workers_share_one_queue_without_duplicates() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    NewEndpoint { url: &receiver.url, ..Default::default() }.insert(&db).await;
    let workers = [
        RunningWorker::start(&db, test_settings()).await,
        RunningWorker::start(&db, test_settings()).await,
        RunningWorker::start(&db, test_settings()).await,
    ];
    db.client()
        .await
        .execute(
            "INSERT INTO hookline.events (event_type, payload) SELECT 'bulk.n', jsonb_build_object('n', n) FROM generate_series(1, 600) n",
            &[],
        )
        .await
        .unwrap();

    let got = receiver.wait_for(600, WAIT).await;
    eventually(WAIT, "all deliveries recorded", || async {
        (count(&db, "SELECT count(*) FROM hookline.deliveries WHERE state = 'succeeded'").await == 600).then_some(())
    })
    .await;
    let distinct: HashSet<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(distinct.len(), 600);
    assert_eq!(receiver.received().len(), 600, "no event was delivered twice");
    let workers_used = count(&db, "SELECT count(DISTINCT worker) FROM hookline.attempts").await;
    assert!(workers_used >= 2, "the queue was shared ({workers_used} worker(s) did everything)");
    for worker in workers {
        worker.stop().await;
    }
}

#[tokio::test]
async fn a_killed_worker_loses_nothing_its_lease_expires_and_another_delivers() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    receiver.script([Reply::status(200).after(Duration::from_secs(30))]);
    NewEndpoint { url: &receiver.url, timeout_ms: 60_000, ..Default::default() }.insert(&db).await;
    let mut doomed = spawn_process(&db, &[("HOOKLINE_LEASE_MAX_S", "2")]);
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();

    receiver.wait_for(1, WAIT).await;
    doomed.kill().expect("kill -9"); // SIGKILL: no chance to clean up
    doomed.wait().unwrap();
    assert_eq!(count(&db, LEASED).await, 1, "the dead worker still holds the delivery");

    let rescuer = RunningWorker::start(&db, test_settings()).await;
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    let (state, attempts) = eventually(WAIT, "the redelivery to be recorded", || async {
        let row =
            db.client().await.query_one("SELECT state::text, attempts FROM hookline.deliveries", &[]).await.unwrap();
        let state: String = row.get(0);
        (state == "succeeded").then(|| (state, row.get::<_, i32>(1)))
    })
    .await;
    assert_eq!((state.as_str(), attempts), ("succeeded", 2));
    let recorded: Vec<(i32, Option<String>, Option<i32>)> = db
        .client()
        .await
        .query("SELECT attempt, error_kind::text, status_code FROM hookline.attempts ORDER BY attempt", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        recorded,
        [(1, Some("worker_lost".to_owned()), None), (2, None, Some(200))],
        "the lost attempt is recorded, then the retry"
    );
    rescuer.stop().await;
}

/// Lost leases driven by hand, the clock moved past each lease: every loss
/// is an attempt of its own, the retry waits for the schedule instead of
/// going out at once, and the second loss (HOOKLINE_MAX_WORKER_LOSSES=2)
/// makes the delivery dead.
#[tokio::test]
async fn a_delivery_whose_workers_keep_dying_waits_its_retries_and_dies_after_the_last_loss() {
    use hookline::worker::complete::decide;
    use hookline::worker::dispatch::Attempt;

    let db = TestDb::new().await;
    NewEndpoint {
        url: "http://127.0.0.1:9/hook",
        timeout_ms: 10_000,
        retry_schedule: Some(vec![30.0, 30.0, 30.0]),
        ..Default::default()
    }
    .insert(&db)
    .await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    let settings = hookline::config::WorkerSettings { max_worker_losses: 2, ..test_settings() };
    let lease = chrono::Duration::seconds(15); // the endpoint's timeout + 5 s
    let t0 = chrono::Utc::now() + chrono::Duration::seconds(1);

    let first = drive::claim_at(&db, uuid::Uuid::now_v7(), Some(t0)).await;
    assert_eq!((first.len(), first[0].attempt, first[0].lost), (1, 1, None));
    // Its worker dies. Before the lease ends nobody may take it; after, the next claim finds it lost.
    assert!(
        drive::claim_at(&db, uuid::Uuid::now_v7(), Some(t0 + lease - chrono::Duration::seconds(1))).await.is_empty()
    );
    let rescuer = uuid::Uuid::now_v7();
    let t1 = t0 + lease + chrono::Duration::seconds(1);
    let found = drive::claim_at(&db, rescuer, Some(t1)).await;
    assert_eq!(found.len(), 1);
    let lost = found[0].lost.expect("taken over as a lost lease");
    assert_eq!((found[0].attempt, lost.losses_before, lost.at), (1, 0, first[0].lease_until), "no new attempt counted");
    let decided = decide(&found[0], Attempt::lost(&lost), &settings, 0.0);
    assert_eq!(decided.outcome.next_state, DeliveryState::Pending);
    assert_eq!(decided.outcome.retry_in_s, Some(30.0), "the schedule's first delay, not at once");
    assert_eq!(decided.outcome.endpoint_down, None, "a lost worker says nothing about the endpoint");
    assert_eq!(drive::complete_at(&db, rescuer, &[decided.outcome], Some(t1)).await, 1);
    assert!(drive::claim_at(&db, uuid::Uuid::now_v7(), Some(t1 + chrono::Duration::seconds(29))).await.is_empty());

    // The retry goes out as attempt 2, and its worker dies too: the second loss is the last.
    let t2 = t1 + chrono::Duration::seconds(31);
    let second = drive::claim_at(&db, uuid::Uuid::now_v7(), Some(t2)).await;
    assert_eq!((second.len(), second[0].attempt, second[0].lost), (1, 2, None));
    let t3 = t2 + lease + chrono::Duration::seconds(1);
    let found = drive::claim_at(&db, rescuer, Some(t3)).await;
    let lost = found[0].lost.expect("lost again");
    assert_eq!((found[0].attempt, lost.losses_before), (2, 1));
    let decided = decide(&found[0], Attempt::lost(&lost), &settings, 0.0);
    assert_eq!(decided.outcome.next_state, DeliveryState::Dead, "retries were left, but losses were not");
    assert_eq!(drive::complete_at(&db, rescuer, &[decided.outcome], Some(t3)).await, 1);

    let history = db
        .client()
        .await
        .query_one("SELECT state::text, attempts, last_error FROM hookline.deliveries", &[])
        .await
        .unwrap();
    assert_eq!((history.get::<_, String>(0).as_str(), history.get::<_, i32>(1)), ("dead", 2));
    assert!(history.get::<_, String>(2).contains("lost by a worker 2 times"), "{history:?}");
    assert_eq!(
        count(&db, "SELECT count(*) FROM hookline.delivery_queue WHERE state = 'dead'").await,
        1,
        "a dead letter"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM hookline.attempts WHERE error_kind = 'worker_lost' AND status_code IS NULL")
            .await,
        2
    );
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_claims_nothing_more() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    receiver.always(Reply::status(200).after(Duration::from_millis(800)));
    NewEndpoint { url: &receiver.url, ..Default::default() }.insert(&db).await;
    db.client()
        .await
        .execute(
            "INSERT INTO hookline.events (event_type, payload) SELECT 'a.b', '{}' FROM generate_series(1, 10)",
            &[],
        )
        .await
        .unwrap();
    let mut worker = spawn_process(&db, &[("HOOKLINE_WORKER_CONCURRENCY", "4"), ("HOOKLINE_CLAIM_BATCH", "4")]);

    receiver.wait_for(4, WAIT).await;
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) }, 0);
    let status = tokio::task::spawn_blocking(move || worker.wait()).await.unwrap().unwrap();
    assert!(status.success(), "worker exited with {status}");

    let delivered = receiver.received().len() as i64;
    assert_eq!(delivered, 4, "nothing is claimed after SIGTERM");
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.deliveries WHERE state = 'succeeded'").await, delivered);
    assert_eq!(count(&db, LEASED).await, 0, "leases were handed back");
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.deliveries WHERE state = 'pending'").await, 10 - delivered);
    assert_eq!(
        count(&db, "SELECT count(*) FROM hookline.delivery_queue WHERE next_attempt_at <= now()").await,
        10 - delivered
    );

    receiver.always(Reply::status(200));
    let next = RunningWorker::start(&db, test_settings()).await;
    let got = receiver.wait_for(10, WAIT).await;
    let distinct: HashSet<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(distinct.len(), 10);
    next.stop().await;
}

#[tokio::test]
async fn a_worker_recovers_when_its_database_connections_are_cut() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    NewEndpoint { url: &receiver.url, ..Default::default() }.insert(&db).await;
    let worker = RunningWorker::start(&db, test_settings()).await;
    db.client().await.execute("SELECT hookline.send('before.cut', '{}')", &[]).await.unwrap();
    receiver.wait_for(1, WAIT).await;

    let admin = db.connect().await;
    let cut: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(cut >= 1, "the worker's connections were cut");
    admin.execute("SELECT hookline.send('after.cut', '{}')", &[]).await.unwrap();
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[1].json()["type"], "after.cut");
    worker.stop().await;
}
