//! The statistics views (SPEC §4) agree with what a receiver saw.

use std::time::Duration;

use chrono::Utc;
use hookline::db::deliveries::AttemptOutcome;
use hookline::domain::delivery::DeliveryState;
use serde_json::json;
use uuid::Uuid;

use crate::support::api::TestApi;
use crate::support::drive::{claim_at, complete_at, outcome};
use crate::support::receiver::{Reply, TestReceiver};
use crate::support::worker::{RunningWorker, test_settings};
use crate::support::{NewEndpoint, count, db::TestDb, eventually};

#[tokio::test]
async fn views_count_what_the_receiver_saw() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    // Three deliveries succeed; the fourth fails its only attempt and dies.
    receiver.script([Reply::status(200), Reply::status(200), Reply::status(200)]);
    receiver.always(Reply::status(500));
    let endpoint =
        NewEndpoint { url: &receiver.url, retry_schedule: Some(vec![]), ..Default::default() }.insert(&db).await;
    let worker =
        RunningWorker::start(&db, crate::support::worker::WorkerSettings { concurrency: 1, ..test_settings() }).await;
    let client = db.client().await;
    // One at a time, each recorded before the next is sent: a success
    // written together with the death would reset the failure run.
    for n in 0..4i32 {
        client.execute("SELECT hookline.send('order.created', jsonb_build_object('n', $1::int))", &[&n]).await.unwrap();
        eventually(Duration::from_secs(10), "the delivery to finish", || async {
            let finished =
                count(&db, "SELECT count(*) FROM hookline.deliveries WHERE state IN ('succeeded', 'dead')").await;
            (finished == i64::from(n) + 1).then_some(())
        })
        .await;
    }
    eventually(Duration::from_secs(10), "all deliveries finished", || async {
        (count(&db, "SELECT count(*) FROM hookline.deliveries WHERE state IN ('succeeded', 'dead')").await == 4)
            .then_some(())
    })
    .await;
    worker.stop().await;

    let stats = client
        .query_one(
            "SELECT total, succeeded, dead, pending, success_rate::float8, p50_ms, p99_ms FROM hookline.endpoint_stats_24h WHERE endpoint_id = $1",
            &[&endpoint],
        )
        .await
        .unwrap();
    assert_eq!(
        (stats.get::<_, i64>(0), stats.get::<_, i64>(1), stats.get::<_, i64>(2), stats.get::<_, i64>(3)),
        (4, 3, 1, 0)
    );
    assert_eq!(stats.get::<_, Option<f64>>(4), Some(0.75));
    let (p50, p99): (Option<f64>, Option<f64>) = (stats.get(5), stats.get(6));
    assert!(p50.is_some_and(|p| p >= 0.0) && p99 >= p50);

    let queue = client
        .query_one("SELECT pending, due_now, in_flight, dead, oldest_due_age_s FROM hookline.queue_stats", &[])
        .await
        .unwrap();
    assert_eq!(
        (queue.get::<_, i64>(0), queue.get::<_, i64>(1), queue.get::<_, i64>(2), queue.get::<_, i64>(3)),
        (0, 0, 0, 1)
    );
    assert_eq!(queue.get::<_, f64>(4), 0.0);

    let hourly = client
        .query_one("SELECT total, succeeded, dead, mean_attempts FROM hookline.delivery_stats_hourly WHERE event_type = 'order.created'", &[])
        .await
        .unwrap();
    assert_eq!((hourly.get::<_, i64>(0), hourly.get::<_, i64>(1), hourly.get::<_, i64>(2)), (4, 3, 1));
    assert_eq!(hourly.get::<_, f64>(3), 1.0);

    let health = client
        .query_one("SELECT enabled, consecutive_failures, last_success_at IS NOT NULL, last_failure_at IS NOT NULL, circuit_state FROM hookline.endpoint_health", &[])
        .await
        .unwrap();
    assert!(health.get::<_, bool>(0));
    assert_eq!(health.get::<_, i32>(1), 1);
    assert!(health.get::<_, bool>(2) && health.get::<_, bool>(3));
    assert_eq!(health.get::<_, String>(4), "closed");
}

#[tokio::test]
async fn queue_stats_sees_due_and_future_deliveries() {
    let db = TestDb::new().await;
    NewEndpoint::default().insert(&db).await;
    let client = db.client().await;
    client.execute("SELECT hookline.send('a.b', '{}') FROM generate_series(1, 3)", &[]).await.unwrap();
    client
        .execute(
            "UPDATE hookline.delivery_queue SET next_attempt_at = now() + interval '1 hour'
              WHERE delivery_id = (SELECT delivery_id FROM hookline.delivery_queue ORDER BY delivery_id LIMIT 1)",
            &[],
        )
        .await
        .unwrap();
    client.execute("UPDATE hookline.delivery_queue SET next_attempt_at = now() - interval '30 seconds' WHERE next_attempt_at < now()", &[]).await.unwrap();
    let queue =
        client.query_one("SELECT pending, due_now, oldest_due_age_s FROM hookline.queue_stats", &[]).await.unwrap();
    assert_eq!((queue.get::<_, i64>(0), queue.get::<_, i64>(1)), (3, 2));
    assert!(queue.get::<_, f64>(2) >= 30.0);
}

#[tokio::test]
async fn uuid_v7_floor_bounds_ids_by_creation_time() {
    let db = TestDb::new().await;
    let row = db
        .client()
        .await
        .query_one(
            "SELECT hookline.uuid_v7_floor(now() - interval '1 second') < hookline.uuid_v7(),
                    hookline.uuid_v7_floor(now() + interval '1 second') > hookline.uuid_v7()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0) && row.get::<_, bool>(1));
}

/// The views read hourly rollups plus the deltas not folded yet: every path
/// that changes a delivery's state (completion, replay, cancel) moves it
/// between the counts, and folding the deltas never changes what they show.
#[tokio::test]
async fn the_rollups_follow_every_change_of_state() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let endpoint = NewEndpoint::default().insert(&db).await;
    let client = db.client().await;
    client.execute("SELECT hookline.send('order.created', '{}') FROM generate_series(1, 4)", &[]).await.unwrap();
    let counts = || async {
        let day = client
            .query_one(
                "SELECT total, succeeded, dead, pending FROM hookline.endpoint_stats_24h WHERE endpoint_id = $1",
                &[&endpoint],
            )
            .await
            .unwrap();
        let hour = client
            .query_one(
                "SELECT total, succeeded, dead, cancelled, pending, mean_attempts FROM hookline.delivery_stats_hourly",
                &[],
            )
            .await
            .unwrap();
        let day: [i64; 4] = [day.get(0), day.get(1), day.get(2), day.get(3)];
        let hour: ([i64; 5], Option<f64>) =
            ([hour.get(0), hour.get(1), hour.get(2), hour.get(3), hour.get(4)], hour.get(5));
        (day, hour)
    };
    // What the views show is the same before and after the deltas are folded.
    let folded_counts = || async {
        let before = counts().await;
        hookline::db::rollups::fold(&db.client().await).await.unwrap();
        assert_eq!(count(&db, "SELECT count(*) FROM hookline.rollup_deltas").await, 0);
        assert_eq!(counts().await, before, "folding changed the numbers");
        before
    };
    assert_eq!(folded_counts().await, ([4, 0, 0, 4], ([4, 0, 0, 0, 4], None)));

    // One succeeds at once; one is refused twice, then succeeds (three
    // attempts); one is refused, then dies (two); the last stays pending.
    // (Refusals are 4xx: the endpoint answers, so its circuit stays closed.)
    let worker = Uuid::now_v7();
    let later = |s: i64| Some(Utc::now() + chrono::Duration::seconds(s));
    let first = claim_at(&db, worker, None).await;
    assert_eq!(first.len(), 4);
    let (d1, d2, d3) = (&first[0], &first[1], &first[2]);
    complete_at(&db, worker, &[outcome(d1, 200), outcome(d2, 400), outcome(d3, 400)], None).await;
    let second = claim_at(&db, worker, later(1)).await;
    assert_eq!(second.len(), 2, "the two retries");
    let dying = AttemptOutcome { next_state: DeliveryState::Dead, retry_in_s: None, ..outcome(&second[1], 400) };
    complete_at(&db, worker, &[outcome(&second[0], 400), dying], later(1)).await;
    let third = claim_at(&db, worker, later(2)).await;
    assert_eq!((third.len(), third[0].attempt), (1, 3));
    complete_at(&db, worker, &[outcome(&third[0], 200)], later(2)).await;
    assert_eq!(counts().await, ([4, 2, 1, 1], ([4, 2, 1, 0, 1], Some(2.0))), "the fourth is in flight");
    assert_eq!(folded_counts().await, ([4, 2, 1, 1], ([4, 2, 1, 0, 1], Some(2.0))));

    // The dead one is replayed and succeeds at its third attempt; the last is cancelled.
    let dead = second[1].delivery_id;
    assert_eq!(api.post(&format!("/v1/dead-letters/{dead}/replay"), json!({})).await.status, 202);
    assert_eq!(counts().await, ([4, 2, 0, 2], ([4, 2, 0, 0, 2], Some(2.0))));
    let replayed = claim_at(&db, worker, later(3)).await;
    assert_eq!((replayed.len(), replayed[0].attempt), (1, 3));
    complete_at(&db, worker, &[outcome(&replayed[0], 200)], later(3)).await;
    // The fourth, leased all along, is handed back unsent (as at a worker's
    // shutdown), then cancelled.
    let pending = first[3].delivery_id;
    hookline::db::deliveries::release(&client, worker, &[pending]).await.unwrap();
    assert_eq!(api.post(&format!("/v1/deliveries/{pending}/cancel"), json!({})).await.status, 200);
    assert_eq!(counts().await, ([4, 3, 0, 0], ([4, 3, 0, 1, 0], Some(7.0 / 4.0))));
    assert_eq!(folded_counts().await, ([4, 3, 0, 0], ([4, 3, 0, 1, 0], Some(7.0 / 4.0))));
}

#[tokio::test]
async fn latency_percentiles_interpolate_within_their_bucket() {
    let db = TestDb::new().await;
    let row = db
        .client()
        .await
        .query_one(
            "SELECT hookline.histogram_percentiles(hookline.latency_histogram($1), '{0.5,0.99}'),
                    hookline.histogram_percentiles(hookline.latency_histogram('{}'), '{0.5}')",
            &[&[110i32, 120, 130, 140, 900].as_slice()],
        )
        .await
        .unwrap();
    let p: Vec<Option<f64>> = row.get(0);
    // Four of five in [100, 150): the median is 5/8 of the way through it.
    assert_eq!(p[0], Some(100.0 + 50.0 * (2.5 / 4.0)));
    // The top one in [700, 1000).
    let p99 = p[1].unwrap();
    assert!((700.0..1000.0).contains(&p99), "p99 {p99}");
    let empty: Vec<Option<f64>> = row.get(1);
    assert_eq!(empty, vec![None]);
}

/// Two workers complete, retry, kill and fold at the same time: what the
/// views show equals what the history says, before and after the last fold.
#[tokio::test]
async fn the_statistics_stay_exact_while_workers_complete_and_fold_concurrently() {
    let db = TestDb::new().await;
    let receiver = TestReceiver::start().await;
    // Every third request is refused (4xx: the circuit stays closed); the
    // first endpoint never retries, so some deliveries die, the others once.
    let refused = (0..240).map(|n| if n % 3 == 0 { Reply::status(400) } else { Reply::status(200) });
    receiver.script(refused);
    let mut endpoints = Vec::new();
    for retries in [vec![], vec![0.05], vec![0.05]] {
        let url = receiver.url.as_str();
        endpoints.push(NewEndpoint { url, retry_schedule: Some(retries), ..Default::default() }.insert(&db).await);
    }
    let workers = [RunningWorker::start(&db, test_settings()).await, RunningWorker::start(&db, test_settings()).await];
    // Folding as often as it can, beside the workers' own folds.
    let (done, mut stop) = tokio::sync::watch::channel(false);
    let pool = db.pool.clone();
    let folder = tokio::spawn(async move {
        let mut folds = 0;
        while !*stop.borrow() {
            folds += hookline::db::rollups::fold(&pool.get().await.unwrap()).await.unwrap().is_some() as u32;
            let _ = tokio::time::timeout(Duration::from_millis(5), stop.changed()).await;
        }
        folds
    });
    let client = db.client().await;
    for _ in 0..10 {
        client.execute("SELECT hookline.send('a.b', '{}') FROM generate_series(1, 10)", &[]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eventually(Duration::from_secs(30), "every delivery to finish", || async {
        (count(&db, "SELECT count(*) FROM hookline.deliveries WHERE state IN ('succeeded', 'dead')").await == 300)
            .then_some(())
    })
    .await;
    for worker in workers {
        worker.stop().await;
    }
    done.send(true).unwrap();
    assert!(folder.await.unwrap() > 5, "folds ran while deliveries completed");
    let truth = |sql: &'static str| {
        let client = &client;
        async move {
            let row = client.query_one(sql, &[]).await.unwrap();
            (row.get::<_, i64>(0), row.get::<_, i64>(1), row.get::<_, i64>(2))
        }
    };
    let check = || async {
        for endpoint in &endpoints {
            let history = client
                .query_one(
                    "SELECT count(*) FILTER (WHERE state = 'succeeded'), count(*) FILTER (WHERE state = 'dead'),
                            (SELECT count(*) FROM hookline.attempts WHERE endpoint_id = $1)
                       FROM hookline.deliveries WHERE endpoint_id = $1",
                    &[endpoint],
                )
                .await
                .unwrap();
            let views = client
                .query_one(
                    "SELECT s.succeeded, s.dead,
                            (SELECT sum(attempts)::bigint FROM hookline.endpoint_hourly_live WHERE endpoint_id = $1)
                       FROM hookline.endpoint_stats_24h AS s WHERE s.endpoint_id = $1",
                    &[endpoint],
                )
                .await
                .unwrap();
            let h: (i64, i64, i64) = (history.get(0), history.get(1), history.get(2));
            let v: (i64, i64, i64) = (views.get(0), views.get(1), views.get(2));
            assert_eq!(v, h, "endpoint {endpoint}: (succeeded, dead, attempts) by the views and by the history");
        }
        let by_type = truth(
            "SELECT sum(succeeded)::bigint, sum(dead)::bigint, round(avg(mean_attempts) * 100)::bigint
               FROM hookline.delivery_stats_hourly",
        )
        .await;
        let history = truth(
            "SELECT count(*) FILTER (WHERE state = 'succeeded'), count(*) FILTER (WHERE state = 'dead'),
                    round(avg(attempts) * 100)::bigint
               FROM hookline.deliveries",
        )
        .await;
        assert_eq!(by_type, history, "(succeeded, dead, mean attempts × 100) by type and hour");
    };
    check().await;
    hookline::db::rollups::fold(&client).await.unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.rollup_deltas").await, 0);
    check().await;
    assert!(count(&db, "SELECT count(*) FROM hookline.deliveries WHERE state = 'dead'").await > 0, "some died");
}

/// The overview's percentiles sum the hourly histograms bucket by bucket:
/// for one endpoint they are that endpoint's own (endpoint_stats_24h), and
/// another tenant's attempts are left out.
#[tokio::test]
async fn latency_percentiles_over_all_endpoints_sum_their_histograms() {
    let db = crate::support::db::TestDb::new().await;
    let mine = crate::support::NewEndpoint { tenant: "acme", ..Default::default() }.insert(&db).await;
    let theirs = crate::support::NewEndpoint { tenant: "globex", ..Default::default() }.insert(&db).await;
    let client = db.client().await;
    client
        .execute(
            "INSERT INTO hookline.endpoint_hourly (endpoint_id, hour, attempts, latency)
             VALUES ($1, date_trunc('hour', now(), 'UTC'), 4, hookline.latency_histogram('{10, 20, 30, 400}')),
                    ($2, date_trunc('hour', now(), 'UTC'), 2, hookline.latency_histogram('{9000, 9000}'))",
            &[&mine, &theirs],
        )
        .await
        .unwrap();
    let of = |tenant: Option<&'static str>| {
        let client = &client;
        async move {
            let row = client
                .query_one(
                    "SELECT hookline.latency_percentiles(now() - interval '1 day', $1, '{0.5,0.99}')",
                    &[&tenant],
                )
                .await
                .unwrap();
            row.get::<_, Option<Vec<f64>>>(0)
        }
    };
    let own: Vec<f64> = client
        .query_one("SELECT ARRAY[p50_ms, p99_ms] FROM hookline.endpoint_stats_24h WHERE endpoint_id = $1", &[&mine])
        .await
        .unwrap()
        .get(0);
    assert_eq!(of(Some("acme")).await, Some(own));
    let all = of(None).await.unwrap();
    assert!(all[1] > 5000.0, "globex's slow attempts count for everyone: {all:?}");
    assert_eq!(of(Some("nobody")).await, None, "no attempts, no percentiles");
}
