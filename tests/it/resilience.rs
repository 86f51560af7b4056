//! Several workers, killed workers, SIGTERM, and lost database connections.

use std::collections::HashSet;
use std::time::Duration;

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
    rescuer.stop().await;
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
