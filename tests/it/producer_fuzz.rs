//! Bad input from SQL producers, as the API's is fuzzed: hostile event
//! types, payloads above HOOKLINE_MAX_PAYLOAD_BYTES, NUL bytes, deep
//! nesting, text that is not JSON. Each is a clear error inside the
//! producer's own transaction (a data exception, a check, or a limit), the
//! producer's other writes stay, and no worker is wedged by what got in.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::json;
use tokio_postgres::error::SqlState;

use crate::support::api::TestApi;
use crate::support::db::TestDb;
use crate::support::receiver::TestReceiver;
use crate::support::worker::{RunningWorker, test_settings};
use crate::support::{NewEndpoint, count};

const LIMIT: i32 = 4096;

async fn limit_payloads(db: &TestDb) {
    hookline::db::settings::store(&db.client().await, Some(LIMIT)).await.unwrap();
}

#[tokio::test]
async fn a_payload_above_the_limit_fails_in_the_producers_transaction_and_nothing_else() {
    let db = TestDb::new().await;
    limit_payloads(&db).await;
    NewEndpoint::default().insert(&db).await;
    let mut client = db.connect().await;
    client.batch_execute("CREATE TABLE orders (id integer)").await.unwrap();

    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO orders VALUES (1)", &[]).await.unwrap();
    let too_large = [
        "SELECT hookline.send('big', jsonb_build_object('x', repeat('a', 5000)))",
        // Compresses to far less than the limit: the limit is on the JSON text.
        "SELECT hookline.send('big', jsonb_build_object('x', repeat('a', 1000000)))",
        "INSERT INTO hookline.events (event_type, payload)
         SELECT 'big', jsonb_build_object('n', n, 'x', repeat('b', 5000)) FROM generate_series(1, 3) AS n",
    ];
    for statement in too_large {
        tx.batch_execute("SAVEPOINT s").await.unwrap();
        let error = tx.batch_execute(statement).await.expect_err(statement);
        assert_eq!(error.code(), Some(&SqlState::PROGRAM_LIMIT_EXCEEDED), "{error:?}");
        let message = error.as_db_error().unwrap().message();
        assert!(message.contains(&format!("more than the {LIMIT} allowed")), "{message}");
        tx.batch_execute("ROLLBACK TO SAVEPOINT s").await.unwrap();
    }
    tx.execute("SELECT hookline.send('small', jsonb_build_object('x', repeat('a', 4000)))", &[]).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(count(&db, "SELECT count(*) FROM orders").await, 1, "the producer's own write stayed");
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.events").await, 1, "only the payload within the limit");
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.deliveries").await, 1);

    // The API meets the same limit: a 413 naming the payload, nothing stored.
    let api = TestApi::start(&db).await;
    let big = json!({"event_type": "big", "payload": {"x": "a".repeat(5000)}});
    let reply = api.call(Method::POST, "/v1/events", Some(&api.admin), Some(&big)).await;
    reply.assert_problem(413, Some("payload"));
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.events").await, 1);
}

/// Event types and payloads a hostile or careless producer might send.
fn hostile_event_type(rng: &mut StdRng) -> String {
    let pick = rng.random_range(0..9);
    match pick {
        0 => String::new(),
        1 => "x".repeat(rng.random_range(199..=202)),
        2 => "a\0b".to_owned(),
        3 => "line\nbreak\r\n\tx".to_owned(),
        4 => "'; DROP TABLE hookline.events; --".to_owned(),
        5 => "\u{202e}txt.exe\u{200b}".to_owned(),
        6 => (0..rng.random_range(1..40)).map(|_| char::from_u32(rng.random_range(1..0x2FFF)).unwrap_or('?')).collect(),
        7 => "🦀".repeat(rng.random_range(1..80)),
        _ => "order.created".to_owned(),
    }
}

fn hostile_payload(rng: &mut StdRng) -> String {
    match rng.random_range(0..9) {
        0 => "[".repeat(rng.random_range(5_000..50_000)) + &"]".repeat(5),
        1 => format!("{}1{}", "[".repeat(2_000), "]".repeat(2_000)),
        2 => r#"{"nul": "a\u0000b"}"#.to_owned(),
        3 => json!({"big": "z".repeat(rng.random_range(4_000..20_000))}).to_string(),
        4 => "not json".to_owned(),
        5 => r#"{"n": 1e400, "m": -0.0}"#.to_owned(),
        6 => "\0".to_owned(),
        7 => json!({"k": "\u{1F980}\u{202e}", "dup": 1, "list": [null, true, {}]}).to_string(),
        _ => json!({"n": rng.random::<u32>()}).to_string(),
    }
}

#[tokio::test]
async fn hostile_sql_input_is_refused_clearly_or_delivered_and_never_wedges_a_worker() {
    let db = TestDb::new().await;
    limit_payloads(&db).await;
    let receiver = TestReceiver::start().await;
    NewEndpoint { url: &receiver.url, event_types: &[], ..Default::default() }.insert(&db).await;
    let mut client = db.connect().await;
    client.batch_execute("CREATE TABLE orders (id integer)").await.unwrap();

    let mut rng = StdRng::seed_from_u64(0x686f6f6b);
    let cases = 300;
    let (mut accepted, mut refused_by_class) = (0, std::collections::BTreeMap::<String, usize>::new());
    let tx = client.transaction().await.unwrap();
    for n in 0..cases {
        let (event_type, payload) = (hostile_event_type(&mut rng), hostile_payload(&mut rng));
        tx.execute("INSERT INTO orders VALUES ($1)", &[&n]).await.unwrap();
        tx.batch_execute("SAVEPOINT s").await.unwrap();
        match tx.execute("SELECT hookline.send($1, $2::text::jsonb)", &[&event_type, &payload]).await {
            Ok(_) => accepted += 1,
            Err(error) => {
                let code = error.code().map(|c| c.code().to_owned()).unwrap_or_default();
                // 22: a data exception (not JSON, a NUL, a number out of range), 23: a check
                // (the event type's length), 54: a limit (the payload's size, nesting depth).
                let class = code.get(..2).unwrap_or_default().to_owned();
                assert!(matches!(class.as_str(), "22" | "23" | "54"), "{event_type:?} / {payload:.80}: {error:?}");
                *refused_by_class.entry(class).or_default() += 1;
                tx.batch_execute("ROLLBACK TO SAVEPOINT s").await.unwrap();
            }
        }
    }
    tx.commit().await.unwrap();

    assert_eq!(count(&db, "SELECT count(*) FROM orders").await, cases as i64, "every producer write stayed");
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.events").await, accepted, "{refused_by_class:?}");
    assert!(accepted > 0 && refused_by_class.len() >= 3, "the cases cover both sides: {refused_by_class:?}");

    // What got in is delivered, and a plain event after it too.
    let worker = RunningWorker::start(&db, test_settings()).await;
    client.execute("SELECT hookline.send('after.all', '{}')", &[]).await.unwrap();
    let got = receiver.wait_for(accepted as usize + 1, Duration::from_secs(30)).await;
    // (Not parsed here: `1e400` is valid JSON that PostgreSQL keeps exactly, and delivered
    // as given, but more than serde_json's f64 can hold.)
    assert!(got.iter().any(|r| r.body.contains(r#""type":"after.all""#)), "the event after them arrived");
    worker.stop().await;
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.deliveries WHERE state = 'succeeded'").await, accepted + 1);
}
