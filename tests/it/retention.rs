//! Retention by partitions: partitions made ahead, rows in their own day's
//! partition, history past retention dropped whole, open work kept. Time
//! moves by the clock argument of `maintain`, not by waiting.

use chrono::{Duration, Utc};
use hookline::db::retention::{self, Maintained, Retention};
use uuid::Uuid;

use crate::support::db::TestDb;
use crate::support::drive::{claim, claim_at, complete, complete_at, outcome};
use crate::support::explain::Explaining;
use crate::support::{NewEndpoint, count};

async fn maintain_at(db: &TestDb, retention: Retention, days_later: i64) -> Maintained {
    let at = (days_later != 0).then(|| Utc::now() + Duration::days(days_later));
    retention::maintain(&mut db.client().await, retention, at).await.expect("maintain").expect("not locked")
}

/// The partition that holds the event with this id.
async fn partition_of_event(db: &TestDb, id: Uuid) -> String {
    db.client()
        .await
        .query_one(
            "SELECT c.relname::text FROM hookline.events AS e JOIN pg_class AS c ON c.oid = e.tableoid WHERE e.id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

/// An event whose id says it was made `days` from now.
async fn event_made_in(db: &TestDb, days: i64) -> Uuid {
    db.client()
        .await
        .query_one(
            "INSERT INTO hookline.events (id, event_type, payload)
             VALUES (overlay(hookline.uuid_v7_floor(now() + make_interval(days => $1))::text
                             PLACING left(replace(gen_random_uuid()::text, '-', ''), 3) FROM 16 FOR 3)::uuid,
                     'a.b', '{}')
             RETURNING id",
            &[&(days as i32)],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn partitions_are_made_ahead_and_take_the_rows_of_their_days() {
    let db = TestDb::new().await;
    let retention = Retention::default();
    let first = maintain_at(&db, retention, 0).await;
    assert!(first.created >= 4, "{first:?}");
    for table in ["events", "deliveries", "attempts", "batch_attempts"] {
        let ahead: bool = db
            .client()
            .await
            .query_one(
                "SELECT max(ends_at) > now() + interval '7 days' AND bool_and(ends_at - starts_at = interval '7 days')
                   FROM hookline.partitions WHERE table_name = $1 AND starts_at IS NOT NULL",
                &[&table],
            )
            .await
            .unwrap()
            .get(0);
        assert!(ahead, "{table}: a week ahead in partitions of 7 days");
    }
    assert_eq!(maintain_at(&db, retention, 0).await.created, 0, "made once");

    let in_five_days = event_made_in(&db, 5).await;
    assert!(partition_of_event(&db, in_five_days).await.starts_with("events_p"));

    // Nobody made the partitions of a day two months ahead: the default
    // partition takes its rows, and they move once the day's partition exists.
    let in_sixty_days = event_made_in(&db, 60).await;
    assert_eq!(partition_of_event(&db, in_sixty_days).await, "events_default");
    let long = Retention { history_days: 365, ..retention };
    maintain_at(&db, long, 58).await;
    assert!(partition_of_event(&db, in_sixty_days).await.starts_with("events_p"));
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.events_default").await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.events").await, 2);
}

#[tokio::test]
async fn history_past_retention_goes_whole_and_open_work_keeps_its_partitions() {
    let db = TestDb::new().await;
    NewEndpoint::default().insert(&db).await;
    let client = db.client().await;
    for key in ["a", "b"] {
        client
            .execute(
                "INSERT INTO hookline.events (event_type, payload, idempotency_key) VALUES ('a.b', '{}', $1)",
                &[&key],
            )
            .await
            .unwrap();
    }
    let worker = Uuid::now_v7();
    let claimed = claim(&db, worker).await;
    assert_eq!(claimed.len(), 2);
    complete(&db, worker, &claimed[0], 200).await;
    complete(&db, worker, &claimed[1], 500).await;
    let open = claimed[1].delivery_id;

    // 40 days on, with 30 kept: everything of today is past retention, but
    // one delivery is still being retried.
    let retention = Retention::default();
    let later = maintain_at(&db, retention, 40).await;
    for kept in ["events_legacy", "deliveries_legacy", "attempts_legacy"] {
        assert!(later.kept.contains(&kept.to_owned()), "{kept} kept: {later:?}");
    }
    assert!(later.dropped.contains(&"batch_attempts_legacy".to_owned()), "{later:?}");
    assert!(later.dropped.iter().any(|p| p.starts_with("deliveries_p")), "empty weeks go too: {later:?}");
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.deliveries").await, 2);
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.attempts").await, 2);
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.event_idempotency").await, 2);

    // The retried delivery still works from its kept partitions.
    let retried = claim_at(&db, worker, Some(Utc::now() + Duration::seconds(5))).await;
    assert_eq!(retried.iter().map(|c| c.delivery_id).collect::<Vec<_>>(), vec![open]);
    complete_at(&db, worker, &[outcome(&retried[0], 200)], Some(Utc::now() + Duration::seconds(5))).await;

    let after = maintain_at(&db, retention, 40).await;
    for dropped in ["events_legacy", "deliveries_legacy", "attempts_legacy"] {
        assert!(after.dropped.contains(&dropped.to_owned()), "{dropped} dropped: {after:?}");
    }
    assert!(after.kept.is_empty(), "{after:?}");
    assert_eq!(count(&db, "SELECT count(*) FROM pg_class WHERE relname LIKE '%\\_expired'").await, 0, "files gone too");
    for table in ["events", "deliveries", "attempts", "event_idempotency"] {
        assert_eq!(count(&db, &format!("SELECT count(*) FROM hookline.{table}")).await, 0, "{table}");
    }
    // A key whose event is gone can be used again.
    client
        .execute("INSERT INTO hookline.events (event_type, payload, idempotency_key) VALUES ('a.b', '{}', 'a')", &[])
        .await
        .unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.events").await, 1);
}

#[tokio::test]
async fn dead_letters_keep_their_partitions_until_replayed_or_discarded() {
    let db = TestDb::new().await;
    NewEndpoint { retry_schedule: Some(vec![]), ..Default::default() }.insert(&db).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    let worker = Uuid::now_v7();
    let claimed = claim(&db, worker).await;
    complete_at(
        &db,
        worker,
        &[hookline::db::deliveries::AttemptOutcome {
            next_state: hookline::domain::delivery::DeliveryState::Dead,
            retry_in_s: None,
            ..outcome(&claimed[0], 500)
        }],
        None,
    )
    .await;
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.delivery_queue WHERE state = 'dead'").await, 1);

    let retention = Retention::default();
    let kept = maintain_at(&db, retention, 40).await;
    assert!(kept.kept.contains(&"deliveries_legacy".to_owned()), "{kept:?}");
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.deliveries").await, 1);

    db.client().await.execute("DELETE FROM hookline.delivery_queue", &[]).await.unwrap();
    let dropped = maintain_at(&db, retention, 40).await;
    assert!(dropped.dropped.contains(&"deliveries_legacy".to_owned()), "{dropped:?}");
}

#[tokio::test]
async fn rollups_keep_their_own_longer_retention() {
    let db = TestDb::new().await;
    NewEndpoint::default().insert(&db).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    let worker = Uuid::now_v7();
    let claimed = claim(&db, worker).await;
    complete(&db, worker, &claimed[0], 200).await;
    hookline::db::rollups::fold(&db.client().await).await.unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.endpoint_hourly").await, 1);

    let retention = Retention { history_days: 30, stats_days: 60 };
    assert_eq!(maintain_at(&db, retention, 40).await.rollup_rows_deleted, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.endpoint_hourly").await, 1, "history gone, stats kept");
    assert_eq!(maintain_at(&db, retention, 61).await.rollup_rows_deleted, 2);
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.endpoint_hourly").await, 0);
}

#[tokio::test]
async fn an_existing_installation_is_partitioned_in_place_with_its_rows_triggers_and_grants() {
    let db = TestDb::empty().await;
    let mut admin = db.connect().await;
    hookline::db::migrate::migrate_until(&mut admin, 18).await.unwrap();
    NewEndpoint::default().insert(&db).await;
    // Mixed case: a name that must be quoted.
    let role = format!("\"Hl_Test_Producer_{}\"", Uuid::new_v4().simple());
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role};
             GRANT INSERT ON hookline.events TO {role};
             INSERT INTO hookline.events (event_type, payload, idempotency_key)
             SELECT 'a.b', jsonb_build_object('n', n), 'key-' || n FROM generate_series(1, 3) AS n;"
        ))
        .await
        .unwrap();
    // An attempt of before (this binary's claim needs today's schema).
    admin
        .batch_execute(
            "INSERT INTO hookline.attempts (delivery_id, endpoint_id, attempt, started_at, duration_ms, status_code,
                                            error_kind, worker)
             SELECT id, endpoint_id, 1, now(), 5, 500, 'http_status', gen_random_uuid()
               FROM hookline.deliveries ORDER BY id LIMIT 1",
        )
        .await
        .unwrap();

    hookline::db::migrate(&mut admin).await.unwrap();

    let legacy: Vec<(String, i64)> = admin
        .query(
            "SELECT c.relname::text, count(*) FROM hookline.deliveries AS d JOIN pg_class AS c ON c.oid = d.tableoid
              GROUP BY 1
             UNION ALL
             SELECT c.relname::text, count(*) FROM hookline.events AS e JOIN pg_class AS c ON c.oid = e.tableoid
              GROUP BY 1
             UNION ALL
             SELECT c.relname::text, count(*) FROM hookline.attempts AS a JOIN pg_class AS c ON c.oid = a.tableoid
              GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        legacy,
        vec![("attempts_legacy".into(), 1), ("deliveries_legacy".into(), 3), ("events_legacy".into(), 3)]
    );
    // The old table's bound was proven before the switch, not under its lock.
    let proven: bool = admin
        .query_one(
            "SELECT convalidated FROM pg_constraint WHERE conname = 'deliveries_below_partitions'
                AND conrelid = 'hookline.deliveries_legacy'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(proven);

    // A role granted INSERT on the old table has it on the new one.
    let granted: bool = admin
        .query_one("SELECT has_table_privilege($1, 'hookline.events', 'INSERT')", &[&role.trim_matches('"')])
        .await
        .unwrap()
        .get(0);
    assert!(granted);

    // The triggers moved to the new tables: a new event fans out, and a
    // used key is still refused.
    admin
        .batch_execute(
            "INSERT INTO hookline.events (event_type, payload, idempotency_key) VALUES ('a.b', '{}', 'key-4');
             INSERT INTO hookline.events (event_type, payload, idempotency_key) VALUES ('a.b', '{}', 'key-1');",
        )
        .await
        .unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.events").await, 4);
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.deliveries").await, 4);
    let worker = Uuid::now_v7();
    let queued = claim(&db, worker).await;
    assert_eq!(queued.len(), 4, "the deliveries of before and the new one");
    complete_at(&db, worker, &queued.iter().map(|c| outcome(c, 200)).collect::<Vec<_>>(), None).await;
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.deliveries WHERE state = 'succeeded'").await, 4);

    // Migrating again changes nothing; then the partitions come.
    hookline::db::migrate(&mut admin).await.unwrap();
    assert!(maintain_at(&db, Retention::default(), 0).await.created >= 4);
    admin.batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}")).await.unwrap();
}

/// The completion names the key range of the history rows it writes, so
/// the planner keeps only their partition: auto_explain reports the plan.
#[tokio::test]
async fn the_completion_writes_history_in_one_partition_only() {
    let db = TestDb::new().await;
    maintain_at(&db, Retention::default(), 0).await;
    NewEndpoint::default().insert(&db).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    let worker = Uuid::now_v7();
    let claimed = claim(&db, worker).await;
    let done = outcome(&claimed[0], 200);

    let explaining = Explaining::connect(&db).await;
    let no_requests: Vec<&hookline::db::deliveries::BatchAttempt> = Vec::new();
    let row = explaining
        .client
        .query_one(
            hookline::db::deliveries::DELIVERY_COMPLETE,
            &[
                &worker,
                &vec![&done],
                &3i32,
                &10.0f64,
                &600.0f64,
                &None::<chrono::DateTime<Utc>>,
                &no_requests,
                &done.delivery_id,
                &done.delivery_id,
            ],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1, "recorded");
    let plans = explaining.plans().await;
    assert!(plans.contains("on deliveries_legacy"), "the history update:\n{plans}");
    let other_partitions = plans.lines().filter(|l| l.contains("deliveries_p") || l.contains("deliveries_default"));
    assert_eq!(other_partitions.count(), 0, "no other partition of deliveries:\n{plans}");
}
