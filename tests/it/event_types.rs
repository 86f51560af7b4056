//! The event-type catalogue: `/v1/event-types`, payloads checked against a
//! type's schema over the API and from SQL, tenants' own types, and
//! HOOKLINE_STRICT_EVENT_TYPES.

use reqwest::Method;
use serde_json::{Value, json};
use tokio_postgres::error::SqlState;

use crate::support::api::TestApi;
use crate::support::count;
use crate::support::db::TestDb;

fn order_schema() -> Value {
    json!({
        "type": "object",
        "required": ["order_id"],
        "properties": {
            "order_id": {"type": "integer", "minimum": 1},
            "customer": {"$ref": "#/$defs/customer"},
        },
        "$defs": {"customer": {"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}}},
    })
}

#[tokio::test]
async fn a_type_is_created_read_changed_and_deleted_with_its_schema_and_an_audit_trail() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let created = api
        .post(
            "/v1/event-types",
            json!({"name": "order.created", "description": "An order was placed.", "schema": order_schema(),
                   "example": {"order_id": 7}}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.body["tenant"], Value::Null);
    assert_eq!(created.body["validation"], "off");
    assert_eq!(created.body["warnings_24h"], 0);

    let schema = api.get("/v1/event-types/order.created/schema").await;
    assert_eq!(schema.status, 200);
    assert_eq!(schema.content_type, "application/schema+json");
    assert_eq!(schema.body, order_schema());

    let again = api.post("/v1/event-types", json!({"name": "order.created"})).await;
    again.assert_problem(409, Some("name"));

    let changed =
        api.patch("/v1/event-types/order.created", json!({"validation": "enforce", "deprecated": true})).await;
    assert_eq!(changed.status, 200, "{changed:?}");
    assert_eq!(changed.body["validation"], "enforce");
    assert_eq!(api.get("/v1/event-types?deprecated=true").await.body["data"][0]["name"], "order.created");
    assert_eq!(api.get("/v1/event-types?deprecated=false").await.body["data"], json!([]));

    // Without a schema nothing could be enforced.
    api.patch("/v1/event-types/order.created", json!({"schema": null})).await.assert_problem(400, Some("validation"));
    assert_eq!(api.get("/v1/event-types/order.created").await.body["schema"], order_schema());

    assert_eq!(api.delete("/v1/event-types/order.created").await.status, 204);
    api.get("/v1/event-types/order.created").await.assert_problem(404, None);
    let audit = api.get("/v1/audit-log").await.body.to_string();
    for action in ["event_type.create", "event_type.update", "event_type.delete"] {
        assert!(audit.contains(action), "{action} not in {audit}");
    }
}

#[tokio::test]
async fn schemas_hookline_could_not_check_exactly_are_refused_naming_where() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let cases = [
        (json!({"type": "strin"}), "/type"),
        (json!({"properties": {"a": {"unevaluatedProperties": false}}}), "/properties/a/unevaluatedProperties"),
        (json!({"$ref": "https://example.com/schema.json"}), "/$ref"),
        (json!({"properties": {"a": {"pattern": "\\p{Letter}"}}}), "/properties/a/pattern"),
        (json!({"properties": {"a": {"pattern": "\\bword"}}}), "/properties/a/pattern"),
        (json!("a string"), ""),
    ];
    for (schema, pointer) in cases {
        let refused = api.post("/v1/event-types", json!({"name": "a.b", "schema": schema})).await;
        refused.assert_problem(400, Some("schema"));
        assert_eq!(refused.body["pointer"], pointer, "{refused:?}");
    }
    let example = api
        .post("/v1/event-types", json!({"name": "a.b", "schema": order_schema(), "example": {"order_id": "7"}}))
        .await;
    example.assert_problem(400, Some("example"));
    assert_eq!(example.body["pointer"], "/order_id");
    api.post("/v1/event-types", json!({"name": "a.b", "validation": "warn"}))
        .await
        .assert_problem(400, Some("validation"));
    api.post("/v1/event-types", json!({"name": "a.*"})).await.assert_problem(400, Some("name"));
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.event_types").await, 0);
}

#[tokio::test]
async fn enforce_refuses_a_payload_over_the_api_naming_the_pointer_and_stores_nothing() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    api.post("/v1/endpoints", json!({"url": "http://127.0.0.1:9/hook"})).await;
    let created = api
        .post("/v1/event-types", json!({"name": "order.created", "schema": order_schema(), "validation": "enforce"}))
        .await;
    assert_eq!(created.status, 201, "{created:?}");

    let refused = api
        .post(
            "/v1/events",
            json!({"event_type": "order.created", "payload": {"order_id": 1, "customer": {"name": "x"}}}),
        )
        .await;
    refused.assert_problem(422, Some("payload"));
    assert_eq!(refused.body["type"], "/problems/schema-violation");
    assert_eq!(refused.body["pointer"], "/customer/email");
    assert!(refused.body["detail"].as_str().unwrap().contains("is required"), "{refused:?}");

    let accepted = api.post("/v1/events", json!({"event_type": "order.created", "payload": {"order_id": 1}})).await;
    assert_eq!(accepted.status, 202, "{accepted:?}");
    assert_eq!(accepted.body["schema_warning"], Value::Null);
    // Other types are not checked.
    let other = api.post("/v1/events", json!({"event_type": "order.paid", "payload": "anything"})).await;
    assert_eq!(other.status, 202);
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.events").await, 2);
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.deliveries").await, 2);
}

#[tokio::test]
async fn enforce_refuses_a_sql_producer_inside_its_own_transaction() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    api.post("/v1/event-types", json!({"name": "order.created", "schema": order_schema(), "validation": "enforce"}))
        .await;
    let mut client = db.client().await;

    // The producer's transaction: its own write and the event, both or neither.
    let tx = client.transaction().await.unwrap();
    tx.execute("CREATE TABLE orders (id int)", &[]).await.unwrap();
    tx.execute("INSERT INTO orders VALUES (1)", &[]).await.unwrap();
    let error = tx.query_one("SELECT hookline.send('order.created', '{\"order_id\": 0}')", &[]).await.unwrap_err();
    let db_error = error.as_db_error().unwrap();
    assert_eq!(error.code(), Some(&SqlState::CHECK_VIOLATION));
    assert_eq!(db_error.constraint(), Some("event_type_schema"));
    assert!(db_error.message().contains("at /order_id"), "{db_error:?}");
    let detail: Value = serde_json::from_str(db_error.detail().unwrap()).unwrap();
    assert_eq!(detail["pointer"], "/order_id");
    drop(tx); // rolled back: the producer's own write is gone too
    assert_eq!(count(&db, "SELECT count(*) FROM pg_tables WHERE tablename = 'orders'").await, 0);

    // A plain INSERT meets the same rule; a producer may ask first instead.
    let insert = client
        .execute("INSERT INTO hookline.events (event_type, payload) VALUES ('order.created', '[]')", &[])
        .await
        .unwrap_err();
    assert_eq!(insert.code(), Some(&SqlState::CHECK_VIOLATION));
    let asked = client
        .query_one("SELECT pointer, message FROM hookline.payload_violation('order.created', '{}')", &[])
        .await
        .unwrap();
    assert_eq!(asked.get::<_, Option<String>>(0).as_deref(), Some("/order_id"));
    let fine = client
        .query_one("SELECT pointer FROM hookline.payload_violation('order.created', '{\"order_id\": 3}')", &[])
        .await
        .unwrap();
    assert_eq!(fine.get::<_, Option<String>>(0), None);

    // One bad row refuses the whole statement.
    let batch = client
        .execute(
            "INSERT INTO hookline.events (event_type, payload)
             SELECT 'order.created', jsonb_build_object('order_id', n) FROM generate_series(0, 99) AS n",
            &[],
        )
        .await;
    assert!(batch.is_err());
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.events").await, 0);
}

#[tokio::test]
async fn warn_accepts_the_payload_and_records_and_counts_where_it_fails() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    api.post("/v1/event-types", json!({"name": "order.created", "schema": order_schema(), "validation": "warn"})).await;
    let sent = api.post("/v1/events", json!({"event_type": "order.created", "payload": {"order_id": "x"}})).await;
    assert_eq!(sent.status, 202, "{sent:?}");
    assert_eq!(sent.body["schema_warning"]["pointer"], "/order_id");
    db.client()
        .await
        .execute(
            "SELECT hookline.send('order.created', '{\"order_id\": 5}'), hookline.send('order.created', '{}')",
            &[],
        )
        .await
        .unwrap();

    let id = sent.body["id"].as_str().unwrap();
    let event = api.get(&format!("/v1/events/{id}")).await;
    assert_eq!(event.body["schema_warning"]["message"], "expected integer, got string");
    let listed = api.get("/v1/events").await;
    let warnings: Vec<&Value> = listed.body["data"].as_array().unwrap().iter().map(|e| &e["schema_warning"]).collect();
    assert_eq!(warnings.iter().filter(|w| !w.is_null()).count(), 2, "{listed:?}");
    assert_eq!(api.get("/v1/event-types/order.created").await.body["warnings_24h"], 2);
    // Another tenant sees the shared type without the default tenant's warnings.
    let acme = TestApi::token(&db, "acme", "read", Some("acme")).await;
    let seen = api.call(Method::GET, "/v1/event-types/order.created", Some(&acme), None).await;
    assert_eq!(seen.body["warnings_24h"], 0, "{seen:?}");
    let metrics = api.get("/metrics").await;
    let line = "hookline_schema_warnings_24h{event_type=\"order.created\",tenant=\"\"} 2";
    assert!(metrics.body.as_str().unwrap().lines().any(|l| l == line), "no `{line}` in {metrics:?}");
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.events").await, 3);
}

#[tokio::test]
async fn a_tenants_own_type_applies_to_its_events_and_only_it_sees_and_changes_it() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let acme = TestApi::token(&db, "acme", "write", Some("acme")).await;
    let globex = TestApi::token(&db, "globex", "write", Some("globex")).await;
    api.post("/v1/event-types", json!({"name": "order.created", "schema": order_schema(), "validation": "enforce"}))
        .await;
    let own = json!({"name": "order.created", "schema": {"type": "object"}, "validation": "enforce"});
    let created = api.call(Method::POST, "/v1/event-types", Some(&acme), Some(&own)).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.body["tenant"], "acme");

    // acme's own type applies to acme's events; the shared one to globex's.
    let event = |token: &str| {
        let body = json!({"event_type": "order.created", "payload": {"no_order_id": true}});
        let token = token.to_owned();
        let api = &api;
        async move { api.call(Method::POST, "/v1/events", Some(&token), Some(&body)).await.status }
    };
    assert_eq!(event(&acme).await, 202);
    assert_eq!(event(&globex).await, 422);

    // Each tenant reads the type that applies to it; globex cannot change
    // acme's, nor the shared one.
    let read = |token: String| {
        let api = &api;
        async move { api.call(Method::GET, "/v1/event-types/order.created", Some(&token), None).await }
    };
    assert_eq!(read(acme.clone()).await.body["tenant"], "acme");
    assert_eq!(read(globex.clone()).await.body["tenant"], Value::Null);
    let acme_listed = api.call(Method::GET, "/v1/event-types", Some(&acme), None).await;
    assert_eq!(acme_listed.body["data"].as_array().unwrap().len(), 2);
    let globex_listed = api.call(Method::GET, "/v1/event-types", Some(&globex), None).await;
    assert_eq!(globex_listed.body["data"].as_array().unwrap().len(), 1);
    let patch = json!({"description": "mine now"});
    let shared = api.call(Method::PATCH, "/v1/event-types/order.created", Some(&globex), Some(&patch)).await;
    shared.assert_problem(403, None);
    let other = api.call(Method::PATCH, "/v1/event-types/order.created?tenant=acme", Some(&globex), Some(&patch)).await;
    other.assert_problem(404, None);
    assert_eq!(api.get("/v1/event-types/order.created?tenant=acme").await.body["schema"], json!({"type": "object"}));
}

#[tokio::test]
async fn strict_event_types_hold_endpoints_to_the_catalogue() {
    let db = TestDb::new().await;
    let api = TestApi::start_strict(&db).await;
    api.post("/v1/event-types", json!({"name": "order.created"})).await;
    let url = "http://127.0.0.1:9/hook";

    let unknown = api.post("/v1/endpoints", json!({"url": url, "event_types": ["order.created", "order.paid"]})).await;
    unknown.assert_problem(400, Some("event_types[1]"));
    let no_match = api.post("/v1/endpoints", json!({"url": url, "event_types": ["invoice.*"]})).await;
    no_match.assert_problem(400, Some("event_types[0]"));
    let endpoint = api.post("/v1/endpoints", json!({"url": url, "event_types": ["order.created", "order.*"]})).await;
    assert_eq!(endpoint.status, 201, "{endpoint:?}");
    let everything = api.post("/v1/endpoints", json!({"url": url})).await;
    assert_eq!(everything.status, 201);

    let path = format!("/v1/endpoints/{}", endpoint.body["id"].as_str().unwrap());
    api.patch(&path, json!({"event_types": ["order.refunded"]})).await.assert_problem(400, Some("event_types[0]"));
    // A type endpoints subscribe to stays until they let go of it.
    api.delete("/v1/event-types/order.created").await.assert_problem(409, None);
    assert_eq!(api.patch(&path, json!({"event_types": ["order.*"]})).await.status, 200);
    assert_eq!(api.delete("/v1/event-types/order.created").await.status, 204);
}

/// A schema check runs in the producer's statement, so it has a budget: a
/// payload larger than it may look at (256 KiB of JSON text) is a violation
/// at its top level, refused by enforce, recorded by warn.
#[tokio::test]
async fn a_payload_larger_than_a_check_may_look_at_is_a_violation() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let schema = json!({"type": "object"});
    api.post("/v1/event-types", json!({"name": "big.enforced", "schema": schema, "validation": "enforce"})).await;
    api.post("/v1/event-types", json!({"name": "big.warned", "schema": schema, "validation": "warn"})).await;
    let client = db.client().await;
    // `{"s": "xx…"}`: the string and 9 bytes around it.
    let send = |event_type: &'static str, bytes: i32| {
        let client = &client;
        async move {
            client
                .execute(
                    "INSERT INTO hookline.events (event_type, payload) SELECT $1, jsonb_build_object('s', repeat('x', $2 - 9))",
                    &[&event_type, &bytes],
                )
                .await
        }
    };
    assert!(send("big.enforced", 262_144).await.is_ok(), "256 KiB are checked");
    let refused = send("big.enforced", 262_145).await.unwrap_err();
    assert_eq!(refused.code(), Some(&SqlState::CHECK_VIOLATION));
    assert!(refused.as_db_error().unwrap().message().contains("262145 bytes"), "{refused:?}");

    send("big.warned", 300_000).await.unwrap();
    let warning: String =
        client.query_one("SELECT message FROM hookline.event_schema_warnings", &[]).await.unwrap().get(0);
    assert!(warning.contains("300000 bytes"), "{warning}");
    let over_api =
        api.post("/v1/events", json!({"event_type": "big.enforced", "payload": {"s": "x".repeat(300_000)}})).await;
    over_api.assert_problem(422, Some("payload"));
}
