//! What one tenant or one stranger must never get from the API (the
//! security review of issue 9, API side): re-queue work for a deleted
//! endpoint, read a receiver's credentials, see another tenant's numbers or
//! tokens, learn another tenant's source, replay a webhook, make us look up
//! every guess, or smuggle framing headers into deliveries.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::api::TestApi;
use crate::support::db::TestDb;
use crate::support::{NewEndpoint, count};

#[tokio::test]
async fn a_delivery_of_a_deleted_endpoint_cannot_be_retried_or_replayed() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let endpoint = NewEndpoint::default().insert(&db).await;
    let client = db.client().await;
    client.execute("SELECT hookline.send('a.b', '{}') FROM generate_series(1, 3)", &[]).await.unwrap();
    // One of them is a dead letter when the endpoint goes.
    client
        .execute(
            "WITH d AS (SELECT delivery_id FROM hookline.delivery_queue LIMIT 1)
             UPDATE hookline.delivery_queue SET state = 'dead' WHERE delivery_id IN (SELECT delivery_id FROM d)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(api.delete(&format!("/v1/endpoints/{endpoint}")).await.status, 204);

    let ids: Vec<uuid::Uuid> =
        client.query("SELECT id FROM hookline.deliveries", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    for id in &ids {
        let retried = api.post(&format!("/v1/deliveries/{id}/retry"), json!({})).await;
        assert!(matches!(retried.status, 404 | 409), "{retried:?}");
        assert!(retried.content_type.starts_with("application/problem+json"), "{retried:?}");
        let replayed = api.post(&format!("/v1/dead-letters/{id}/replay"), json!({})).await;
        assert!(matches!(replayed.status, 404 | 409), "{replayed:?}");
    }
    let bulk = api.post("/v1/dead-letters/replay", json!({"endpoint_id": endpoint})).await;
    assert_eq!(bulk.body["replayed"], 0, "{bulk:?}");
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.delivery_queue").await, 0, "nothing was queued");
}

#[tokio::test]
async fn custom_header_values_are_secrets() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let credential = "Bearer receiver-credential-1234";
    let created = api
        .post(
            "/v1/endpoints",
            json!({"url": "https://example.com/hook", "headers": {"Authorization": credential, "X-Team": "blue"}}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.body["headers"]["Authorization"], credential, "shown with the secret, at creation");
    let id = created.body["id"].as_str().unwrap().to_owned();

    let reader = TestApi::token(&db, "reader", "read", None).await;
    for path in [format!("/v1/endpoints/{id}"), "/v1/endpoints".to_owned()] {
        let read = api.call(Method::GET, &path, Some(&reader), None).await;
        assert_eq!(read.status, 200);
        assert!(!read.body.to_string().contains("receiver-credential"), "{path}: {:?}", read.body);
    }
    let shown = api.get(&format!("/v1/endpoints/{id}")).await;
    assert_eq!(shown.body["headers"]["Authorization"], hookline::api::REDACTED, "names stay visible");

    // Sending the redacted value back keeps the stored one.
    let changed = api
        .patch(
            &format!("/v1/endpoints/{id}"),
            json!({"headers": {"Authorization": hookline::api::REDACTED, "X-Team": "red"}}),
        )
        .await;
    assert_eq!(changed.status, 200, "{changed:?}");
    assert!(!changed.body.to_string().contains("receiver-credential"));
    let secret = api.get(&format!("/v1/endpoints/{id}/secret")).await;
    assert_eq!(secret.body["headers"]["Authorization"], credential, "kept, and shown where the secret is");
    assert_eq!(secret.body["headers"]["X-Team"], "red");
    let reader_secret = api.call(Method::GET, &format!("/v1/endpoints/{id}/secret"), Some(&reader), None).await;
    assert_eq!(reader_secret.status, 403);

    let audit = api.get("/v1/audit-log").await;
    assert!(!audit.body.to_string().contains("receiver-credential"), "{:?}", audit.body);
    let stored: String =
        db.client().await.query_one("SELECT headers::text FROM hookline.endpoints", &[]).await.unwrap().get(0);
    assert!(stored.contains("receiver-credential"), "the worker still has it: {stored}");
}

#[tokio::test]
async fn statistics_are_scoped_to_the_tokens_tenant_and_metrics_need_a_token() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    NewEndpoint { tenant: "acme", ..Default::default() }.insert(&db).await;
    NewEndpoint { tenant: "globex", ..Default::default() }.insert(&db).await;
    let acme = TestApi::token(&db, "acme reader", "read", Some("acme")).await;
    let stats = |token: String| {
        let api = &api;
        async move { api.call(Method::GET, "/v1/stats", Some(&token), None).await.body }
    };
    let before = stats(acme.clone()).await;
    db.client()
        .await
        .execute("SELECT hookline.send('a.b', '{}', tenant => 'globex') FROM generate_series(1, 5)", &[])
        .await
        .unwrap();
    let after = stats(acme.clone()).await;
    assert_eq!(before, after, "globex's events do not move acme's numbers");
    assert_eq!(after["pending"], 0);
    assert_eq!(after["endpoints"], 1, "acme has one endpoint");
    let all = stats(api.admin.clone()).await;
    assert_eq!(all["pending"], 5, "{all:?}");
    assert_eq!(all["endpoints"], 2);
    let asked = api.get("/v1/stats?tenant=globex").await.body;
    assert_eq!(asked["pending"], 5, "{asked:?}");

    let anonymous = api.call(Method::GET, "/metrics", None, None).await;
    anonymous.assert_problem(401, None);
    let tenant_bound = api.call(Method::GET, "/metrics", Some(&acme), None).await;
    assert_eq!(tenant_bound.status, 403, "metrics are of every tenant");
    let reader = TestApi::token(&db, "prometheus", "read", None).await;
    let scraped = api.call(Method::GET, "/metrics", Some(&reader), None).await;
    assert_eq!(scraped.status, 200);
    assert!(scraped.body.as_str().unwrap().contains("hookline_queue_pending 5"), "{scraped:?}");
}

#[tokio::test]
async fn the_metrics_listener_serves_metrics_alone_without_a_token() {
    let db = TestDb::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let state =
        hookline::api::AppState::new(db.pool.clone(), crate::support::api::settings(1024), crate::support::test_keys());
    tokio::spawn(async move {
        let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
        let _ = poem::Server::new_with_acceptor(acceptor).run(hookline::api::metrics_app(state)).await;
    });
    let http = reqwest::Client::new();
    let metrics = http.get(format!("http://{address}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("hookline_queue_pending 0"));
    let api = http.get(format!("http://{address}/v1/endpoints")).send().await.unwrap();
    assert_eq!(api.status(), 404, "nothing else is served there");
}

#[tokio::test]
async fn a_tenant_admin_lists_its_tokens_however_many_others_exist() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let own = TestApi::token(&db, "acme admin", "admin", Some("acme")).await;
    for n in 0..5 {
        TestApi::token(&db, &format!("globex {n}"), "read", Some("globex")).await;
    }
    let page = api.call(Method::GET, "/v1/tokens?limit=2", Some(&own), None).await;
    assert_eq!(page.status, 200);
    let data = page.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{page:?}");
    assert_eq!(data[0]["name"], "acme admin");
    assert_eq!(page.body["next_cursor"], serde_json::Value::Null);
}

#[tokio::test]
async fn a_taken_source_name_tells_another_tenant_nothing_about_its_owner() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let globex = TestApi::token(&db, "globex", "write", Some("globex")).await;
    let acme = TestApi::token(&db, "acme", "write", Some("acme")).await;
    let body = json!({"name": "github", "scheme": "none", "event_type": "gh.push"});
    let first = api.call(Method::POST, "/v1/sources", Some(&globex), Some(&body)).await;
    assert_eq!(first.status, 201);
    let taken = api.call(Method::POST, "/v1/sources", Some(&acme), Some(&body)).await;
    taken.assert_problem(409, Some("name"));
    let text = taken.body.to_string();
    assert!(!text.contains("globex") && !text.contains(first.body["id"].as_str().unwrap()), "{text}");
    let listed = api.call(Method::GET, "/v1/sources", Some(&acme), None).await;
    assert_eq!(listed.body["data"], json!([]));
}

#[tokio::test]
async fn hmac_sources_dedupe_on_the_providers_known_id_header_and_warn_without_one() {
    use hmac::{Hmac, KeyInit, Mac};
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let created = api
        .post(
            "/v1/sources",
            json!({"name": "gh", "scheme": "hmac_sha256", "secret": "s3cret", "event_type": "gh.push"}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.body["warnings"], json!([]), "GitHub's delivery header is known");

    let body = br#"{"zen": "Keep it logically awesome."}"#;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let headers =
        [("X-Hub-Signature-256", signature), ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958".into())];
    assert_eq!(api.inbound("gh", &headers, body).await.status, 202);
    let again = api.inbound("gh", &headers, body).await;
    assert_eq!((again.status, again.body["duplicate"].clone()), (200, json!(true)), "{again:?}");
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.events").await, 1);

    let custom = api
        .post(
            "/v1/sources",
            json!({"name": "acme", "scheme": "hmac_sha256", "secret": "s3cret", "event_type": "acme.x",
                   "signature_header": "X-Acme-Signature",
                   "signature_encoding": "base64"}),
        )
        .await;
    assert_eq!(custom.status, 201, "{custom:?}");
    let warnings = custom.body["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{custom:?}");
    assert!(warnings[0].as_str().unwrap().contains("id_header"), "{warnings:?}");
}

#[tokio::test]
async fn unknown_tokens_and_source_names_are_remembered_and_known_sources_verify_without_a_connection() {
    let db = TestDb::new().await;
    let pool = hookline::db::pool(&db.url, 1).unwrap();
    let api = TestApi::start_with_pool(&db, pool.clone(), crate::support::api::settings(1024 * 1024)).await;
    let created = api
        .post(
            "/v1/sources",
            json!({"name": "known", "scheme": "stripe",
        "secret": "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=", "event_type": "x.y"}),
        )
        .await;
    assert_eq!(created.status, 201);
    let stranger = "hl_not-a-token";
    api.call(Method::GET, "/v1/endpoints", Some(stranger), None).await.assert_problem(401, None);
    api.inbound("nobody", &[], b"{}").await.assert_problem(404, None);
    api.inbound("known", &[("Stripe-Signature", "t=1,v1=00".into())], b"{}").await.assert_problem(401, None);

    // Take the only connection: what is remembered needs none.
    let held = pool.get().await.unwrap();
    let quick = Duration::from_millis(900);
    let again = tokio::time::timeout(quick, api.call(Method::GET, "/v1/endpoints", Some(stranger), None)).await;
    again.expect("an unknown token is refused without the database").assert_problem(401, None);
    let again = tokio::time::timeout(quick, api.inbound("nobody", &[], b"{}")).await;
    again.expect("an unknown source is refused without the database").assert_problem(404, None);
    let forged =
        tokio::time::timeout(quick, api.inbound("known", &[("Stripe-Signature", "t=1,v1=00".into())], b"{}")).await;
    forged.expect("a forged request to a known source is refused without a connection").assert_problem(401, None);
    drop(held);
}

#[tokio::test]
async fn hop_by_hop_and_framing_headers_are_refused_and_custom_headers_are_bounded() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    for name in ["Transfer-Encoding", "connection", "TE", "upgrade", "expect", "keep-alive", "proxy-authorization"] {
        let created = api.post("/v1/endpoints", json!({"url": "https://example.com", "headers": {name: "x"}})).await;
        created.assert_problem(400, Some(&format!("headers.{name}")));
    }
    let many: serde_json::Map<String, serde_json::Value> = (0..51).map(|n| (format!("x-h-{n}"), json!("v"))).collect();
    api.post("/v1/endpoints", json!({"url": "https://example.com", "headers": many}))
        .await
        .assert_problem(400, Some("headers"));
    let long = "v".repeat(5000);
    api.post("/v1/endpoints", json!({"url": "https://example.com", "headers": {"x-long": long}}))
        .await
        .assert_problem(400, Some("headers.x-long"));
    assert_eq!(count(&db, "SELECT count(*) FROM hookline.endpoints").await, 0);
}
