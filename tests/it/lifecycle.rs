//! The typed lifecycle contract: the Rust enums are the PostgreSQL enums,
//! the flow-control decisions are pure SQL functions checked here with
//! tables of cases, and the claim and completion take the clock as an
//! argument so tests move time instead of waiting for it.

use chrono::{DateTime, Duration, Utc};
use hookline::domain::delivery::{ClaimAction, DeliveryState, ErrorKind, QueueState};
use postgres_types::FromSql;
use uuid::Uuid;

use crate::support::drive::{claim_at, complete_at, outcome};
use crate::support::{NewEndpoint, count, db::TestDb};

/// Every label of a PostgreSQL enum, read back as the Rust enum.
async fn labels<T: for<'a> FromSql<'a>>(db: &TestDb, enum_type: &str) -> Vec<T> {
    let sql = format!("SELECT unnest(enum_range(NULL::hookline.{enum_type}))");
    db.client().await.query(&sql, &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn the_rust_enums_are_the_database_enums() {
    let db = TestDb::new().await;
    use DeliveryState as D;
    assert_eq!(labels::<DeliveryState>(&db, "delivery_state").await, [D::Pending, D::Succeeded, D::Dead, D::Cancelled]);
    assert_eq!(
        labels::<QueueState>(&db, "queue_state").await,
        [QueueState::Pending, QueueState::Held, QueueState::Dead, QueueState::Waiting]
    );
    let kinds = labels::<ErrorKind>(&db, "error_kind").await;
    assert_eq!(kinds.len(), 13);
    for kind in kinds {
        let text: String =
            db.client().await.query_one("SELECT $1::hookline.error_kind::text", &[&kind]).await.unwrap().get(0);
        assert_eq!(text, kind.as_str(), "as_str spells what the database stores");
    }
    assert_eq!(labels::<ClaimAction>(&db, "claim_action").await.len(), 10);
}

#[tokio::test]
async fn the_plain_claim_takes_what_is_plain_and_leaves_the_rest_to_flow_control() {
    let db = TestDb::new().await;
    let client = db.client().await;
    use ClaimAction as A;
    // (orphan, limited, in_share, within_wanted, stalled) → action
    let cases = [
        ((true, false, true, true, false), A::Limit),
        ((true, true, true, true, true), A::Limit),
        ((false, true, true, true, false), A::Limit),
        ((false, false, true, true, false), A::Claim),
        ((false, false, true, false, false), A::Leave),
        ((false, false, true, false, true), A::Leave),
        ((false, false, false, true, true), A::Limit),
        ((false, false, false, true, false), A::Leave),
    ];
    for ((orphan, limited, in_share, within, stalled), want) in cases {
        let got: ClaimAction = client
            .query_one(
                "SELECT hookline.plain_claim_action($1, $2, $3, $4, $5)",
                &[&orphan, &limited, &in_share, &within, &stalled],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            got, want,
            "orphan {orphan}, limited {limited}, in share {in_share}, within {within}, stalled {stalled}"
        );
    }
}

#[tokio::test]
async fn circuits_and_rate_limits_give_room_by_the_clock() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let at: DateTime<Utc> = "2026-12-01T12:00:00Z".parse().unwrap();
    type Moment = Option<DateTime<Utc>>;
    let s = |secs: f64| Some(at + Duration::milliseconds((secs * 1000.0) as i64));
    // (state, retry_at, probe_until) → room at `at`
    let circuits: [(&str, Moment, Moment, Option<i32>); 7] = [
        ("closed", None, None, None),
        ("open", s(1.0), None, Some(0)),
        ("open", s(-1.0), None, Some(1)),
        ("open", None, None, Some(1)),
        ("half_open", s(-5.0), s(10.0), Some(0)),
        ("half_open", s(-5.0), s(-0.1), Some(1)),
        ("half_open", None, None, Some(1)),
    ];
    for (state, retry_at, probe_until, want) in circuits {
        let got: Option<i32> = client
            .query_one("SELECT hookline.circuit_room($1, $2, $3, $4)", &[&state, &retry_at, &probe_until, &at])
            .await
            .unwrap()
            .get(0);
        assert_eq!(got, want, "{state} retry {retry_at:?} probe {probe_until:?}");
    }
    // (rate, tat) → starts allowed at `at`: 1.05/rate apart, one of burst.
    let rates: [(Option<i32>, Moment, Option<i32>); 7] = [
        (None, None, None),
        (Some(10), None, Some(1)),
        (Some(10), s(-10.0), Some(1)),
        (Some(10), s(0.0), Some(1)),
        (Some(10), s(0.06), Some(0)),
        (Some(10), s(0.05), Some(1)),
        (Some(1), s(3.0), Some(0)),
    ];
    for (rate, tat, want) in rates {
        let got: Option<i32> =
            client.query_one("SELECT hookline.rate_room($1, $2, $3)", &[&rate, &tat, &at]).await.unwrap().get(0);
        assert_eq!(got, want, "rate {rate:?}, tat {tat:?}");
    }
}

#[tokio::test]
async fn the_flow_control_claim_takes_the_least_room_and_moves_the_rest_aside_by_what_stopped_it() {
    let db = TestDb::new().await;
    let client = db.client().await;
    // (enabled, room, cap_free, circuit_room, rate_room, candidates) → allowance
    type Limits = (bool, i32, Option<i32>, Option<i32>, Option<i32>, i64);
    let allowances: [(Limits, i32); 6] = [
        ((true, 10, None, None, None, 4), 4),
        ((true, 2, None, None, None, 4), 2),
        ((true, 10, Some(3), None, Some(1), 4), 1),
        ((true, 10, Some(0), Some(1), None, 4), 0),
        ((false, 10, None, None, None, 4), 0),
        ((true, 10, Some(-2), None, None, 4), 0),
    ];
    for ((enabled, room, cap, circuit, rate, candidates), want) in allowances {
        let got: i32 = client
            .query_one(
                "SELECT hookline.claim_allowance($1, $2, $3, $4, $5, $6)",
                &[&enabled, &room, &cap, &circuit, &rate, &candidates],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(got, want, "enabled {enabled}, room {room}, cap {cap:?}, circuit {circuit:?}, rate {rate:?}");
    }
    use ClaimAction as A;
    struct Case {
        chosen: bool,
        enabled: bool,
        nth: i64,
        allowed: i32,
        circuit: &'static str,
        circuit_room: Option<i32>,
        taken: i64,
        cap_free: Option<i32>,
        rate_room: Option<i32>,
        room: i32,
        stalled: bool,
        overdue: bool,
        want: ClaimAction,
    }
    let base = Case {
        chosen: false,
        enabled: true,
        nth: 3,
        allowed: 2,
        circuit: "closed",
        circuit_room: None,
        taken: 2,
        cap_free: None,
        rate_room: None,
        room: 10,
        stalled: false,
        overdue: false,
        want: A::Leave,
    };
    let cases = [
        Case { chosen: true, nth: 1, want: A::Claim, ..base },
        Case { enabled: false, want: A::Park, ..base },
        Case { nth: 2, want: A::Leave, ..base },
        Case { circuit: "open", circuit_room: Some(0), allowed: 0, taken: 0, want: A::DeferToProbe, ..base },
        Case { circuit: "open", circuit_room: Some(0), allowed: 0, taken: 0, overdue: true, want: A::Expire, ..base },
        // Only an open circuit expires: a probe in flight decides first, and limits never end a delivery.
        Case {
            circuit: "half_open",
            circuit_room: Some(0),
            allowed: 0,
            taken: 0,
            overdue: true,
            want: A::Hold,
            ..base
        },
        Case { cap_free: Some(2), overdue: true, want: A::Hold, ..base },
        Case { chosen: true, nth: 1, overdue: true, want: A::Claim, ..base },
        Case { circuit: "half_open", circuit_room: Some(0), allowed: 0, taken: 0, want: A::Hold, ..base },
        Case { circuit: "open", circuit_room: Some(1), allowed: 1, taken: 1, want: A::Hold, ..base },
        Case {
            circuit: "open",
            circuit_room: Some(1),
            cap_free: Some(0),
            allowed: 0,
            taken: 0,
            nth: 1,
            want: A::RetryProbe,
            ..base
        },
        Case { cap_free: Some(2), want: A::Hold, ..base },
        Case { rate_room: Some(2), want: A::DeferByRate, ..base },
        Case { room: 2, stalled: true, want: A::Hold, ..base },
        Case { room: 2, stalled: false, want: A::Leave, ..base },
    ];
    for c in cases {
        let got: ClaimAction = client
            .query_one(
                "SELECT hookline.limited_claim_action($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                &[
                    &c.chosen,
                    &c.enabled,
                    &c.nth,
                    &c.allowed,
                    &c.circuit,
                    &c.circuit_room,
                    &c.taken,
                    &c.cap_free,
                    &c.rate_room,
                    &c.room,
                    &c.stalled,
                    &c.overdue,
                ],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(got, c.want, "expected {:?}", c.want);
    }
}

#[tokio::test]
async fn a_change_of_state_moves_a_delivery_between_the_counts() {
    let db = TestDb::new().await;
    let client = db.client().await;
    use DeliveryState as D;
    // (was, now, attempts before, after) → (succeeded, dead, cancelled, finished attempts)
    let cases = [
        ((D::Pending, D::Succeeded, 0, 1), (1, 0, 0, 1)),
        ((D::Pending, D::Pending, 1, 2), (0, 0, 0, 0)),
        ((D::Pending, D::Dead, 2, 3), (0, 1, 0, 3)),
        ((D::Dead, D::Pending, 3, 3), (0, -1, 0, -3)),
        ((D::Dead, D::Cancelled, 3, 3), (0, -1, 1, 0)),
        ((D::Pending, D::Cancelled, 0, 2), (0, 0, 1, 2)),
        ((D::Succeeded, D::Pending, 1, 1), (-1, 0, 0, -1)),
    ];
    for ((was, now, before, after), want) in cases {
        let row = client
            .query_one(
                "SELECT succeeded, dead, cancelled, finished_attempts, created_hour = date_trunc('hour', now(), 'UTC')
                   FROM hookline.transition_delta(gen_random_uuid(), 't', 'e', now(), $1, $2, $3, $4)",
                &[&was, &now, &before, &after],
            )
            .await
            .unwrap();
        assert!(row.get::<_, bool>(4), "counted in its creation hour (UTC)");
        let got: (i32, i32, i32, i32) = (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(got, want, "{was:?} → {now:?}");
    }
}

#[tokio::test]
async fn claims_and_completions_run_on_the_clock_they_are_given() {
    let db = TestDb::new().await;
    NewEndpoint { retry_schedule: Some(vec![30.0]), ..Default::default() }.insert(&db).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    let worker = Uuid::now_v7();
    let now = Utc::now();
    let first = claim_at(&db, worker, Some(now)).await;
    let retry = hookline::db::deliveries::AttemptOutcome { retry_in_s: Some(30.0), ..outcome(&first[0], 500) };
    assert_eq!(complete_at(&db, worker, &[retry], Some(now)).await, 1);

    assert!(claim_at(&db, worker, Some(now + Duration::seconds(29))).await.is_empty(), "not due yet");
    let second = claim_at(&db, worker, Some(now + Duration::seconds(31))).await;
    assert_eq!((second.len(), second[0].attempt), (1, 2), "due 30 s later, without waiting 30 s");
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.attempts").await, 1);
}

#[tokio::test]
async fn the_last_scheduled_attempt_falls_due_after_the_waits_that_are_left() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let since: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let schedule = vec![1.0, 10.0, 100.0];
    // (attempts made, seconds from `since` to the last attempt)
    let cases: [(i32, f64); 6] = [(0, 111.0), (1, 111.0), (2, 110.0), (3, 100.0), (4, 0.0), (9, 0.0)];
    for (attempts, after_s) in cases {
        let due: DateTime<Utc> = client
            .query_one("SELECT hookline.last_attempt_due($1, $2, $3)", &[&since, &attempts, &schedule])
            .await
            .unwrap()
            .get(0);
        assert_eq!((due - since).as_seconds_f64(), after_s, "after {attempts} attempt(s)");
    }
}

/// The case: an endpoint that fails, a retry schedule of [1, 1], a
/// circuit that opens for far longer. Each delivery is deferred no later than
/// its last scheduled attempt, and then ends dead with a `circuit_open`
/// attempt that was never sent — and the endpoint's dead-delivery run counts it.
#[tokio::test]
async fn an_open_circuit_defers_a_delivery_no_longer_than_its_retries_then_it_dies() {
    use hookline::worker::complete::decide;
    use hookline::worker::dispatch::Attempt;

    let db = TestDb::new().await;
    let endpoint = NewEndpoint { retry_schedule: Some(vec![1.0, 1.0]), ..Default::default() }.insert(&db).await;
    let client = db.client().await;
    client.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    let worker = Uuid::now_v7();
    let t0 = Utc::now() + Duration::seconds(1);
    let first = claim_at(&db, worker, Some(t0)).await;
    let failed =
        hookline::db::deliveries::AttemptOutcome { retry_in_s: Some(1.0), started_at: t0, ..outcome(&first[0], 503) };
    let attempt_1_at = failed.started_at;
    assert_eq!(complete_at(&db, worker, &[failed], Some(t0)).await, 1);
    // Other deliveries opened the circuit meanwhile, for an hour.
    client
        .execute(
            "UPDATE hookline.endpoint_state SET circuit_state = 'open', circuit_retry_at = $2, circuit_cooldown_s = 3600
              WHERE endpoint_id = $1",
            &[&endpoint, &(t0 + Duration::hours(1))],
        )
        .await
        .unwrap();

    let t1 = t0 + Duration::milliseconds(1500);
    assert!(claim_at(&db, worker, Some(t1)).await.is_empty(), "attempt 2 falls due, the circuit defers it");
    let deferred_to: DateTime<Utc> =
        client.query_one("SELECT next_attempt_at FROM hookline.delivery_queue", &[]).await.unwrap().get(0);
    let last_due = attempt_1_at + Duration::seconds(2);
    assert!(
        (deferred_to - last_due).abs() < Duration::milliseconds(1),
        "{deferred_to} is its last attempt's time {last_due}, not the probe's"
    );

    let t2 = deferred_to + Duration::milliseconds(10);
    let expired = claim_at(&db, worker, Some(t2)).await;
    assert_eq!((expired.len(), expired[0].attempt, expired[0].circuit_expired), (1, 2, true));
    let settings = crate::support::worker::test_settings();
    let attempt = Attempt::unsent(&expired[0]).expect("not to be sent");
    let decided = decide(&expired[0], attempt, &settings, 0.0);
    assert_eq!(
        (decided.outcome.next_state, decided.outcome.error_kind),
        (DeliveryState::Dead, Some(ErrorKind::CircuitOpen))
    );
    assert_eq!(decided.outcome.endpoint_down, None, "the circuit is not told about itself");
    assert_eq!(complete_at(&db, worker, &[decided.outcome], Some(t2)).await, 1);

    let history = client.query_one("SELECT state::text, attempts FROM hookline.deliveries", &[]).await.unwrap();
    assert_eq!((history.get::<_, String>(0).as_str(), history.get::<_, i32>(1)), ("dead", 2));
    assert_eq!(
        count(&db, "SELECT count(*) FROM hookline.delivery_queue WHERE state = 'dead'").await,
        1,
        "a dead letter"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM hookline.attempts WHERE attempt = 2 AND error_kind = 'circuit_open' AND status_code IS NULL").await,
        1
    );
    assert_eq!(
        count(&db, "SELECT consecutive_failures::bigint FROM hookline.endpoint_health").await,
        1,
        "counts toward auto-disable"
    );
}
