//! Tokens, scopes, the audit log, and the problem documents every error uses.

use reqwest::Method;
use serde_json::json;

use crate::support::api::TestApi;
use crate::support::db::TestDb;

#[tokio::test]
async fn an_admin_creates_lists_and_deletes_tokens_and_the_audit_log_records_it() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;

    let created = api.post("/v1/tokens", json!({"name": "ci", "scope": "read"})).await;
    assert_eq!(created.status, 201, "{created:?}");
    let token = created.body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("hl_") && token.len() > 40);
    assert_eq!(created.body["scope"], "read");
    let id = created.body["id"].as_str().unwrap().to_owned();

    let listed = api.get("/v1/tokens").await;
    assert_eq!(listed.status, 200);
    let names: Vec<&str> =
        listed.body["data"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["ci", "test admin"], "newest first");
    assert!(!listed.body.to_string().contains(&token), "a list never shows a token");

    let read = api.call(Method::GET, "/v1/tokens", Some(&token), None).await;
    read.assert_problem(403, None);

    assert_eq!(api.delete(&format!("/v1/tokens/{id}")).await.status, 204);
    api.delete(&format!("/v1/tokens/{id}")).await.assert_problem(404, None);

    let audit = api.get("/v1/audit-log").await;
    let actions: Vec<&str> =
        audit.body["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["token.delete", "token.create"]);
    assert!(!audit.body.to_string().contains(&token), "the audit log never shows a token");
    assert_eq!(audit.body["data"][1]["token_name"], "test admin");
}

#[tokio::test]
async fn requests_without_a_valid_token_are_401_problems() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    api.call(Method::GET, "/v1/tokens", None, None).await.assert_problem(401, None);
    api.call(Method::GET, "/v1/tokens", Some("hl_not-a-token"), None).await.assert_problem(401, None);
}

#[tokio::test]
async fn bad_bodies_are_400_problems_naming_the_field() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    api.post("/v1/tokens", json!({"name": "x", "scope": "root"})).await.assert_problem(400, Some("scope"));
    api.post("/v1/tokens", json!({"name": 42, "scope": "read"})).await.assert_problem(400, Some("name"));
    api.post("/v1/tokens", json!({"name": "", "scope": "read"})).await.assert_problem(400, Some("name"));
    api.post("/v1/tokens", json!({"name": "x", "scope": "read", "colour": "red"}))
        .await
        .assert_problem(400, Some("colour"));
    api.post("/v1/tokens", json!({"name": "x", "scope": "read", "tenant": "a b"}))
        .await
        .assert_problem(400, Some("tenant"));
    api.raw(Method::POST, "/v1/tokens", "application/json", b"{\"name\": ".to_vec()).await.assert_problem(400, None);
    api.raw(Method::POST, "/v1/tokens", "text/plain", b"hello".to_vec()).await.assert_problem(415, None);
    api.raw(Method::POST, "/v1/tokens", "application/json", b"[\"x\", \"read\"]".to_vec())
        .await
        .assert_problem(400, None);
    api.get("/v1/tokens?limit=0").await.assert_problem(400, Some("limit"));
    api.get("/v1/tokens?cursor=zzz").await.assert_problem(400, Some("cursor"));
    api.get("/v1/nothing-here").await.assert_problem(404, None);
    let tokens = crate::support::count(&db, "SELECT count(*) FROM hookline.api_tokens").await;
    assert_eq!(tokens, 1, "nothing was written by a rejected request");
}

#[tokio::test]
async fn oversized_bodies_are_413_problems() {
    let db = TestDb::new().await;
    let api = TestApi::start_with_limit(&db, 1000).await;
    let big = json!({"name": "x".repeat(2000), "scope": "read"}).to_string().into_bytes();
    api.raw(Method::POST, "/v1/tokens", "application/json", big).await.assert_problem(413, None);
}

#[tokio::test]
async fn a_tenant_admin_sees_and_creates_only_its_tenant() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let acme = TestApi::token(&db, "acme admin", "admin", Some("acme")).await;
    let other = api
        .call(Method::POST, "/v1/tokens", Some(&acme), Some(&json!({"name": "x", "scope": "read", "tenant": "globex"})))
        .await;
    other.assert_problem(400, Some("tenant"));
    let own = api
        .call(Method::POST, "/v1/tokens", Some(&acme), Some(&json!({"name": "x", "scope": "read", "tenant": "acme"})))
        .await;
    assert_eq!(own.status, 201);
    let listed = api.call(Method::GET, "/v1/tokens", Some(&acme), None).await;
    let tenants: Vec<&str> =
        listed.body["data"].as_array().unwrap().iter().map(|t| t["tenant"].as_str().unwrap()).collect();
    assert_eq!(tenants, vec!["acme", "acme"]);
}
